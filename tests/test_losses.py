import numpy as np
import pytest
import torch
import torch.nn.functional as F

from barloc.losses import (
    class_weights,
    label_softmax_loss,
    make_loss,
    sigmoid_bce,
    sigmoid_focal_loss,
    softmax_cross_entropy,
    softmax_focal_loss,
    sparsemax,
    sparsemax_loss,
    sparsemax_probs,
)


def test_ce_matches_torch_with_weights_and_smoothing():
    torch.manual_seed(0)
    x, y = torch.randn(50, 4), torch.randint(0, 4, (50,))
    w = torch.tensor([0.5, 1.0, 2.0, 1.5])
    assert torch.allclose(softmax_cross_entropy(x, y), F.cross_entropy(x, y), atol=1e-6)
    assert torch.allclose(softmax_cross_entropy(x, y, w), F.cross_entropy(x, y, weight=w), atol=1e-6)
    assert torch.allclose(
        softmax_cross_entropy(x, y, label_smoothing=0.1), F.cross_entropy(x, y, label_smoothing=0.1), atol=1e-6
    )


def test_ce_gradient_is_p_minus_y():
    x = torch.randn(8, 3, requires_grad=True)
    y = torch.randint(0, 3, (8,))
    softmax_cross_entropy(x, y).backward()
    expected = (torch.softmax(x, 1) - F.one_hot(y, 3)) / 8
    assert torch.allclose(x.grad, expected.detach(), atol=1e-6)


def test_soft_targets_accept_probability_rows():
    x = torch.randn(5, 3)
    y = torch.randint(0, 3, (5,))
    assert torch.allclose(softmax_cross_entropy(x, y), softmax_cross_entropy(x, F.one_hot(y, 3).float()))


def test_focal_gamma_zero_is_ce_and_downweights_easy_examples():
    x = torch.tensor([[4.0, 0.0], [0.2, 0.0]])
    y = torch.tensor([0, 0])
    assert torch.allclose(softmax_focal_loss(x, y, gamma=0.0), softmax_cross_entropy(x, y))
    easy = softmax_focal_loss(x[:1], y[:1], 2.0) / softmax_cross_entropy(x[:1], y[:1])
    hard = softmax_focal_loss(x[1:], y[1:], 2.0) / softmax_cross_entropy(x[1:], y[1:])
    assert easy < hard < 1


def test_sigmoid_losses():
    x, y = torch.randn(10, 5), (torch.rand(10, 5) > 0.7).float()
    pw = torch.full((5,), 3.0)
    assert torch.allclose(sigmoid_bce(x, y, pw), F.binary_cross_entropy_with_logits(x, y, pos_weight=pw))
    assert torch.allclose(sigmoid_focal_loss(x, y, 0.0), F.binary_cross_entropy_with_logits(x, y))


def test_class_weights():
    w = class_weights([100, 10, 1], "inverse")
    assert np.isclose(w.mean(), 1) and w[2] / w[0] == 100
    e = class_weights([100, 10, 1], "effective", beta=0.9)
    assert e[0] < e[1] < e[2] and e[2] / e[0] < 100


def test_make_loss_dispatch():
    counts = np.array([30, 10])
    f = make_loss("multiclass", {"type": "focal", "gamma": 1.0, "class_weights": "inverse"}, counts, 40)
    assert f(torch.randn(4, 2), torch.tensor([0, 1, 1, 0])).ndim == 0
    g = make_loss("multilabel", {"type": "bce"}, counts, 40)
    assert g(torch.randn(4, 2), torch.ones(4, 2)).ndim == 0


def test_label_softmax_gradient_is_softmax_minus_labels_over_their_count():
    torch.manual_seed(1)
    x = torch.randn(4, 3, requires_grad=True)
    y = torch.tensor([[1.0, 0, 0], [1, 1, 0], [0, 0, 0], [1, 1, 1]])
    label_softmax_loss(x, y).backward()
    n = y.sum(1, keepdim=True)
    expected = (torch.softmax(x, 1) - y / n.clamp_min(1)) / 4
    expected[2] = 0  # a row without labels adds nothing
    assert torch.allclose(x.grad, expected.detach(), atol=1e-6)


def test_label_softmax_smoothing_moves_labelled_rows_only():
    x = torch.randn(3, 4, requires_grad=True)
    y = torch.tensor([[1.0, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 1]])
    label_softmax_loss(x, y, label_smoothing=0.2).backward()
    q = torch.tensor([[0.45, 0.45, 0.05, 0.05], [0.0, 0, 0, 0], [0.05, 0.05, 0.05, 0.85]])
    expected = (torch.softmax(x, 1) - q) / 3
    expected[1] = 0
    assert torch.allclose(x.grad, expected.detach(), atol=1e-6)


def test_softmax_weight_adds_the_label_softmax_term_to_the_sigmoid_loss():
    torch.manual_seed(2)
    counts = np.array([30.0, 10.0, 3.0])
    x, y = torch.randn(6, 3), (torch.rand(6, 3) > 0.5).float()
    bce = make_loss("multilabel", {"type": "bce"}, counts, 40)(x, y)
    both = make_loss("multilabel", {"type": "bce", "softmax_weight": 0.5}, counts, 40)(x, y)
    assert torch.allclose(both, bce + 0.5 * label_softmax_loss(x, y))
    smooth = make_loss("multilabel", {"type": "bce", "softmax_weight": 0.5, "label_smoothing": 0.1}, counts, 40)(x, y)
    alone = make_loss("multilabel", {"type": "bce", "label_smoothing": 0.1}, counts, 40)(x, y)
    assert torch.allclose(smooth, alone + 0.5 * label_softmax_loss(x, y, 0.1))
    focal = make_loss("multilabel", {"type": "focal", "softmax_weight": 2.0}, counts, 40)(x, y)
    alone = make_loss("multilabel", {"type": "focal"}, counts, 40)(x, y)
    assert torch.allclose(focal, alone + 2.0 * label_softmax_loss(x, y))


def test_sparsemax_small_examples_by_hand():
    # z = [1, 0]: tau = 0 (support {1}, since 1 + 2 * 0 > 1 fails), so [1, 0];
    # z = [0.5, 0]: both in the support, tau = (0.5 - 1) / 2 = -0.25, so [0.75, 0.25];
    # z = [1, 0.8, -1]: support {1, 2}, tau = (1.8 - 1) / 2 = 0.4, so [0.6, 0.4, 0].
    z = torch.tensor([[1.0, 0.0], [0.5, 0.0], [0.0, 0.0]])
    assert torch.allclose(sparsemax(z), torch.tensor([[1.0, 0.0], [0.75, 0.25], [0.5, 0.5]]))
    assert torch.allclose(sparsemax(torch.tensor([1.0, 0.8, -1.0])), torch.tensor([0.6, 0.4, 0.0]))
    assert np.allclose(sparsemax_probs(np.array([[0.5, 0.0]])), [[0.75, 0.25]])


def test_sparsemax_is_a_sparse_projection_onto_the_simplex():
    torch.manual_seed(0)
    z = torch.randn(200, 10) * 3
    p = sparsemax(z)
    assert torch.allclose(p.sum(1), torch.ones(200), atol=1e-6) and (p >= 0).all()
    assert (p == 0).any(1).float().mean() > 0.9  # exact zeros, in almost every row at this scale
    assert ((p > 0).sum(1) > 1).any()  # and mass on several classes in some
    # the ordering of the logits is kept (ties allowed where both are zero), argmax included
    assert torch.equal(p.argmax(1), z.argmax(1))
    i, j = torch.triu_indices(10, 10, 1)
    assert ((z[:, i] > z[:, j]) <= (p[:, i] >= p[:, j])).all()
    # shift-invariant and safe for huge logits; float16 input comes back as float32
    assert torch.allclose(sparsemax(z + 1e4), p, atol=1e-3)
    assert torch.isfinite(sparsemax(z * 1e30)).all()
    assert sparsemax(z.half()).dtype == torch.float32
    # it is the Euclidean projection: no point of the simplex nearer (random ones checked)
    d = torch.distributions.Dirichlet(torch.ones(10)).sample((500,))
    for row in range(5):
        best = ((p[row] - z[row]) ** 2).sum()
        assert (((d - z[row]) ** 2).sum(1) >= best - 1e-5).all()
    # any dim, batched; numpy and torch agree
    assert torch.allclose(sparsemax(z.T, dim=0), p.T)
    assert np.allclose(sparsemax_probs(z.numpy()), p.numpy(), atol=1e-6)


def test_sparsemax_loss_gradient_is_sparsemax_minus_target():
    torch.manual_seed(1)
    x = torch.randn(16, 6, dtype=torch.float64, requires_grad=True)
    q = torch.zeros(16, 6, dtype=torch.float64)
    q[torch.arange(16), torch.randint(0, 6, (16,))] = 0.5
    q[torch.arange(16), torch.randint(0, 6, (16,))] += 0.5  # one or two locations a row
    loss = sparsemax_loss(x, q)
    loss.backward()
    assert torch.allclose(x.grad, (sparsemax(x) - q).detach() / 16, atol=1e-12)
    # the same gradient from finite differences of the loss value (it is C1 in the logits)
    assert torch.autograd.gradcheck(lambda z: sparsemax_loss(z, q), (x.detach().clone().requires_grad_(),))


def test_sparsemax_loss_is_zero_exactly_at_the_target_and_takes_class_indices():
    q = torch.tensor([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0]])
    z = torch.tensor([[2.0, 2.0, -5.0], [3.0, 0.0, 1.5]])  # sparsemax(z) == q
    assert torch.allclose(sparsemax(z), q)
    assert sparsemax_loss(z, q).item() == pytest.approx(0.0, abs=1e-7)
    assert sparsemax_loss(torch.zeros(2, 3), q).item() > 0
    y = torch.tensor([2, 0])
    assert torch.allclose(sparsemax_loss(z, y), sparsemax_loss(z, F.one_hot(y, 3).float()))
    # one-hot target: the paper's form -z_k + (sum over the support of z_j^2 - tau^2) / 2 + 1/2
    zk = torch.tensor([[0.3, -0.2, 0.6, -1.0]])
    p = sparsemax(zk)
    tau = (zk[0, p[0] > 0] - p[0, p[0] > 0]).mean()
    paper = -zk[0, 1] + 0.5 * (zk[0, p[0] > 0] ** 2 - tau**2).sum() + 0.5
    assert sparsemax_loss(zk, torch.tensor([1])).item() == pytest.approx(paper.item(), abs=1e-6)
