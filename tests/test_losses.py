import numpy as np
import torch
import torch.nn.functional as F

from barloc.losses import (
    class_weights,
    make_loss,
    sigmoid_bce,
    sigmoid_focal_loss,
    softmax_cross_entropy,
    softmax_focal_loss,
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
