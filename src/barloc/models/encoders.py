"""Sequence encoders: each maps a batch to one fixed-size vector per sequence."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from barloc.encode import iupac_matrix, vocab_size


class KmerEncoder(nn.Module):
    """MLP over a k-mer frequency profile (alignment-free; robust to length differences).

    ``hidden=0`` passes the profile straight to the head: multinomial logistic regression,
    which small reference libraries often favour over a hidden layer.
    """

    def __init__(self, n_features: int, hidden: int = 256, dropout: float = 0.3) -> None:
        super().__init__()
        # Profiles are frequencies (~1/n_features each); rescale so the average feature is 1,
        # otherwise the first layer starts with near-zero activations and learns slowly.
        self.scale = float(n_features)
        # Per-feature standardisation, set from the training profiles by ``fit_standardizer``
        # (identity until then); buffers, so they travel in the state_dict.
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("inv_std", torch.ones(n_features))
        if hidden == 0:
            self.out_dim = n_features
            self.net = nn.Dropout(dropout)
            return
        self.out_dim = hidden
        self.net = nn.Sequential(
            nn.Dropout(dropout / 2),
            nn.Linear(n_features, hidden),
            nn.GELU(),
            nn.LayerNorm(hidden),
            nn.Dropout(dropout),
        )

    def fit_standardizer(self, features: torch.Tensor) -> None:
        x = features * self.scale
        self.mean.copy_(x.mean(0))
        self.inv_std.copy_(1.0 / x.std(0).clamp_min(1e-3))

    def forward(self, batch: dict) -> torch.Tensor:
        return self.net((batch["features"] * self.scale - self.mean) * self.inv_std)


class ConvEncoder(nn.Module):
    """Embedding, parallel convolutions of several widths, then masked pooling.

    Pooling is "light attention" style (Staerk et al. 2021): a softmax over positions weights
    one projection of the features, concatenated with a masked max over positions. Padded
    positions get -inf scores so they never receive attention or win the max.
    DNA tokens embed as fixed fractional one-hot IUPAC vectors (N = 0.25 each base); protein
    tokens get a learned embedding.
    """

    def __init__(
        self,
        alphabet: str,
        embed_dim: int = 32,
        channels: int = 64,
        kernel_sizes: tuple[int, ...] = (3, 9, 15),
        dropout: float = 0.25,
    ) -> None:
        super().__init__()
        if alphabet == "dna":
            self.embed = nn.Embedding.from_pretrained(torch.from_numpy(iupac_matrix()), freeze=True, padding_idx=0)
            in_dim = 4
        else:
            self.embed = nn.Embedding(vocab_size(alphabet), embed_dim, padding_idx=0)
            in_dim = embed_dim
        self.convs = nn.ModuleList(nn.Conv1d(in_dim, channels, k, padding=k // 2) for k in kernel_sizes)
        width = channels * len(kernel_sizes)
        self.mix = nn.Conv1d(width, width, 1)
        self.attn = nn.Conv1d(width, width, 1)
        self.drop = nn.Dropout(dropout)
        self.out_dim = 2 * width

    def forward(self, batch: dict) -> torch.Tensor:
        tokens = batch["tokens"]  # (B, L), 0 = padding
        mask = tokens > 0
        x = self.embed(tokens).transpose(1, 2)  # (B, C, L)
        x = torch.cat([F.gelu(conv(x)) for conv in self.convs], dim=1)
        x = self.drop(x)
        values = self.mix(x)
        scores = self.attn(x).masked_fill(~mask[:, None, :], float("-inf"))
        attended = (torch.softmax(scores, dim=-1) * values).sum(-1)
        maxed = values.masked_fill(~mask[:, None, :], float("-inf")).amax(-1)
        return torch.cat([attended, maxed], dim=1)


def build_encoder(cfg: dict, alphabet: str, n_features: int | None) -> nn.Module:
    kind = cfg.get("type", "cnn")
    if kind == "kmer":
        return KmerEncoder(int(n_features), cfg.get("hidden", 256), cfg.get("dropout", 0.3))
    if kind == "cnn":
        return ConvEncoder(
            alphabet,
            cfg.get("embed_dim", 32),
            cfg.get("channels", 64),
            tuple(cfg.get("kernel_sizes", (3, 9, 15))),
            cfg.get("dropout", 0.25),
        )
    raise ValueError(f"unknown encoder type {kind!r}")


def n_kmer_features(cfg: dict) -> int | None:
    return int(np.power(4, cfg.get("k", 6))) if cfg.get("type") == "kmer" else None
