"""The optional self-attention block of the CNN encoder: SDPA with a key padding mask."""

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from barloc.config import check_config
from barloc.errors import InputError
from barloc.models import ConvEncoder
from barloc.models.encoders import SelfAttentionBlock, build_encoder

SCHEMA = Path(__file__).resolve().parents[1] / "workflow" / "schemas" / "config.schema.yaml"


def _padded(seqs):
    return torch.nn.utils.rnn.pad_sequence(seqs, batch_first=True)


def test_padding_does_not_change_a_sequence_with_attention():
    torch.manual_seed(0)
    enc = ConvEncoder(
        "protein", embed_dim=8, channels=4, kernel_sizes=(3, 5), attention_layers=2, attention_heads=2
    ).eval()
    short = torch.tensor([3, 5, 7, 9, 2, 11])
    alone = enc({"tokens": short[None]})[0]
    # The same sequence next to much longer ones: 0 to 40 padding tokens after it.
    for extra in (1, 7, 40):
        batch = _padded([short, torch.randint(1, 20, (len(short) + extra,)), torch.randint(1, 20, (3,))])
        assert torch.allclose(enc({"tokens": batch})[0], alone, atol=1e-5)


def test_padded_keys_get_no_attention_weight():
    """Changing the features at padded positions leaves every real position's output alone."""
    torch.manual_seed(1)
    block = SelfAttentionBlock(8, 2, 0.0).eval()
    x = torch.randn(2, 10, 8)
    mask = torch.ones(2, 10, dtype=torch.bool)
    mask[0, 6:] = False
    y = block(x, mask)
    x2 = x.clone()
    x2[0, 6:] = 1e3 * torch.randn(4, 8)
    y2 = block(x2, mask)
    assert torch.allclose(y[0, :6], y2[0, :6], atol=1e-5)
    assert torch.allclose(y[1], y2[1])


def test_block_uses_scaled_dot_product_attention(monkeypatch):
    calls = []
    real = F.scaled_dot_product_attention

    def spy(*args, **kwargs):
        calls.append(kwargs.get("attn_mask"))
        return real(*args, **kwargs)

    monkeypatch.setattr(F, "scaled_dot_product_attention", spy)
    enc = build_encoder(
        {"type": "cnn", "channels": 4, "kernel_sizes": [3], "attention_layers": 1, "attention_heads": 2},
        "protein",
        None,
    )
    enc.eval()({"tokens": _padded([torch.tensor([1, 2, 3]), torch.tensor([4, 5])])})
    assert len(calls) == 1 and calls[0].dtype == torch.bool and calls[0].shape == (2, 1, 1, 3)
    assert calls[0][1, 0, 0].tolist() == [True, True, False]


def test_no_attention_layers_keeps_the_old_state_dict():
    enc = build_encoder({"type": "cnn", "channels": 4, "kernel_sizes": [3]}, "protein", None)
    assert not any(k.startswith("blocks.") for k in enc.state_dict())


def test_heads_must_divide_the_width():
    with pytest.raises(ValueError, match="attention_heads"):
        ConvEncoder("protein", channels=5, kernel_sizes=(3,), attention_layers=1, attention_heads=2)


def _config(encoder):
    return {
        "seed": 1,
        "trainer": {"threads": 1},
        "tasks": {
            "loc": {
                "kind": "multilabel",
                "alphabet": "protein",
                "reference": "x.csv",
                "format": "deeploc",
                "encoder": encoder,
            }
        },
    }


def test_schema_accepts_and_checks_attention_keys():
    check_config(_config({"type": "cnn", "attention_layers": 1, "attention_heads": 4}), SCHEMA)
    with pytest.raises(InputError, match="attention_layers"):
        check_config(_config({"type": "cnn", "attention_layers": -1}), SCHEMA)
    with pytest.raises(InputError, match="attention_heads"):
        check_config(_config({"type": "cnn", "attention_heads": 0}), SCHEMA)
