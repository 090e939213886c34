"""The CNN encoder's dilated residual convolutions and terminal pooling (synthetic tokens)."""

import pytest
import torch

from barloc.models import ConvEncoder
from barloc.models.encoders import build_encoder


def _features_before_pooling(enc: ConvEncoder, tokens: torch.Tensor) -> torch.Tensor:
    seen = []
    hook = enc.mix.register_forward_hook(lambda mod, args, out: seen.append(args[0]))
    enc({"tokens": tokens})
    hook.remove()
    return seen[0]


def test_dilations_widen_what_a_position_sees():
    """Width 3, then dilations 2 and 4: a residue reaches 1 + 2 + 4 = 7 positions, no further."""
    torch.manual_seed(0)
    tokens = torch.randint(1, 21, (1, 30))
    changed = tokens.clone()
    changed[0, 0] = tokens[0, 0] % 20 + 1
    for dilations, reach in (((), 1), ((2, 4), 7)):
        enc = ConvEncoder("protein", 8, 4, (3,), 0.0, dilations=dilations).eval()
        moved = (_features_before_pooling(enc, tokens) - _features_before_pooling(enc, changed)).abs().amax(1)[0]
        assert (moved[: reach + 1] > 0).all()
        assert torch.equal(moved[reach + 1 :], torch.zeros(30 - reach - 1))


@pytest.mark.parametrize("window", [3, 20])  # 20: the sequence is shorter than its windows
def test_padding_does_not_change_a_sequence_with_dilations_and_terminal_pool(window):
    torch.manual_seed(1)
    enc = ConvEncoder("protein", 8, 4, (3, 5), 0.0, dilations=(2, 4), terminal_pool=window, composition=True).eval()
    short = torch.randint(1, 21, (9,))
    alone = enc({"tokens": short[None]})[0]
    assert torch.isfinite(alone).all()
    for extra in (1, 6, 40):
        other = torch.randint(1, 21, (len(short) + extra,))
        batch = torch.nn.utils.rnn.pad_sequence([short, other], batch_first=True)
        assert torch.allclose(enc({"tokens": batch})[0], alone, atol=1e-5)


def test_terminal_pool_reads_only_its_termini():
    """Width-1 convolutions: the N- and C-terminal parts move only with residues in their window."""
    torch.manual_seed(2)
    enc = ConvEncoder("protein", 8, 4, (1,), 0.0, terminal_pool=3).eval()
    width = 4
    assert enc.out_dim == 4 * width
    tokens = torch.randint(1, 21, (1, 12))

    def parts(t):
        out = enc({"tokens": t})[0]
        return out[2 * width : 3 * width], out[3 * width :]

    n_term, c_term = parts(tokens)
    for pos, n_moves, c_moves in ((6, False, False), (1, True, False), (10, False, True)):
        t = tokens.clone()
        t[0, pos] = tokens[0, pos] % 20 + 1
        n2, c2 = parts(t)
        assert (not torch.equal(n2, n_term)) == n_moves
        assert (not torch.equal(c2, c_term)) == c_moves


def test_config_keys_reach_the_encoder():
    enc = build_encoder(
        {"type": "cnn", "channels": 4, "kernel_sizes": [3], "dilations": [2], "terminal_pool": 5}, "protein", None
    )
    assert [c.dilation[0] for c in enc.dilated] == [2] and enc.terminal_pool == 5
    plain = build_encoder({"type": "cnn", "channels": 4, "kernel_sizes": [3]}, "protein", None)
    assert len(plain.dilated) == 0 and plain.terminal_pool == 0 and plain.out_dim == 2 * 4
