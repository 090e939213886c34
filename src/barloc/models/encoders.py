"""Sequence encoders: each maps a batch to one fixed-size vector per sequence."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from scipy import sparse
from torch import nn

from barloc.encode import blosum62_embedding, iupac_matrix, vocab_size
from barloc.models.reference_index import DENSE_WIDTH, ReferenceIndex, build_lists, folded, unit_rows

#: encoder types whose input is a k-mer profile
KMER_TYPES = ("kmer", "nearest")
#: columns of a sparse profile matrix densified at a time by ``KmerEncoder.fit_standardizer``
#: (n x this x 4 bytes: 51 MB for 100,000 profiles; narrow blocks stay in cache, which makes
#: this faster than the dense matrix's own reduction). A multiple of 64, so torch's vectorised
#: reductions treat each column of a block as they would in the whole dense matrix: the
#: statistics are bit-identical (tests/test_model.py checks this).
STANDARDIZE_BLOCK = 128


def dense_rows(features: torch.Tensor | sparse.sparray | sparse.spmatrix, start: int, stop: int) -> torch.Tensor:
    """Rows ``start:stop`` of a k-mer profile matrix, a dense tensor or a scipy sparse matrix
    (:attr:`barloc.data.EncodedDataset.features`), as a dense float32 tensor."""
    if isinstance(features, torch.Tensor):
        return features[start:stop]
    return torch.from_numpy(features[start:stop].toarray())


def _column_blocks(features: sparse.sparray | sparse.spmatrix, width: int) -> Iterator[torch.Tensor]:
    """``features`` as dense C-ordered tensors of ``width`` columns each, left to right."""
    cols = sparse.csc_array(features)
    cols.sum_duplicates()
    n_rows, n_cols = cols.shape
    for a in range(0, n_cols, width):
        b = min(a + width, n_cols)
        lo, hi = cols.indptr[a], cols.indptr[b]
        block = np.zeros((n_rows, b - a), dtype=cols.dtype)
        block[cols.indices[lo:hi], np.repeat(np.arange(b - a), np.diff(cols.indptr[a : b + 1]))] = cols.data[lo:hi]
        yield torch.from_numpy(block)


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

    def fit_standardizer(self, features: torch.Tensor | sparse.sparray | sparse.spmatrix) -> None:
        """Per-feature mean and 1 / sd of the scaled profiles (a dense tensor, or a scipy
        sparse matrix, densified ``STANDARDIZE_BLOCK`` columns at a time, never whole)."""
        blocks = [features] if isinstance(features, torch.Tensor) else _column_blocks(features, STANDARDIZE_BLOCK)
        mean, sd = [], []
        for block in blocks:
            x = block * self.scale
            mean.append(x.mean(0))
            sd.append(x.std(0))
            del x
        self.mean.copy_(torch.cat(mean))
        self.inv_std.copy_(1.0 / torch.cat(sd).clamp_min(1e-3))

    def forward(self, batch: dict) -> torch.Tensor:
        return self.net((batch["features"] * self.scale - self.mean) * self.inv_std)


#: the references the last encoder set or loaded: {"buffers": its SIZED tensors, "index": their
#: ReferenceIndex}; an encoder given equal references (cross-fitting's fold models, the refit,
#: their reloads) points at these instead of holding a copy. One at a time: an index holds its
#: references' profiles.
_HELD: dict = {}


def _held_equals(parts: dict[str, torch.Tensor]) -> bool:
    """Whether ``parts`` (buffer name -> tensor) equal the held references' buffers."""
    held = _HELD.get("buffers", {})
    return bool(held) and all(
        name in held and held[name].shape == t.shape and torch.equal(held[name].cpu(), t.cpu())
        for name, t in parts.items()
    )


def _csr_parts(refs: sparse.csr_array) -> dict[str, torch.Tensor]:
    """The CSR buffers of unit profiles ``refs``."""
    return {
        "ref_indptr": torch.from_numpy(refs.indptr.astype(np.int64)),
        "ref_indices": torch.from_numpy(refs.indices.astype(np.int32, copy=False)),
        "ref_data": torch.from_numpy(refs.data),
    }


class NearestReferenceEncoder(nn.Module):
    """How close a barcode comes to each class's nearest reference barcode (``type: nearest``).

    Origin signal in a barcode is largely which haplotypes were sampled where: a query that
    matches a Pacific reference's haplotype exactly is good evidence for the Pacific, which a
    smooth k-mer composition model blurs. The encoding, per class c, is d_c = 1 - the highest
    cosine similarity between the query's k-mer profile and a class-c reference profile, given
    as (d_c, log(d_c + 1e-4)/10) and standardised; the head learns how strongly each distance
    speaks for each class. ``hidden > 0`` adds a :class:`KmerEncoder` of the profile beside it.

    The references are buffers, so they travel in the state_dict and ``barloc predict`` needs
    nothing else: unit profiles as CSR (``ref_indptr``, ``ref_indices``, ``ref_data``), their
    classes and groups, and the lists of the search index
    (:mod:`barloc.models.reference_index`: a class of more than ``EXACT_MAX`` references is
    searched in its ``nprobe`` closest lists, a smaller one exhaustively). They are all labelled
    records outside the test split with a hard label (training and validation), so a query is
    compared with as much of the library as possible. A labelled record never matches
    references of its own group (BOLD project, or itself; batch["group"], see
    :func:`barloc.data.group_ids`): a project's barcodes match each other far better than a
    new project's would, and the head must learn, and calibration measure, what a match to
    *another* project is worth, which is what a query has.

    The distances carry no trained parameter, so :meth:`prepare` computes a dataset's once
    (``EncodedDataset.distances``) rather than every epoch.
    """

    EPS = 1e-4
    #: buffers whose size depends on the references (resized when a state_dict is loaded)
    SIZED = ("ref_indptr", "ref_indices", "ref_data", "ref_class", "ref_group", "centroids", "list_class", "ref_list")

    def __init__(
        self,
        n_features: int,
        n_reference: int,
        n_classes: int,
        hidden: int = 0,
        dropout: float = 0.3,
        nprobe: int = 8,
    ) -> None:
        super().__init__()
        self.n_classes, self.n_features, self.nprobe = n_classes, n_features, nprobe
        self.register_buffer("ref_indptr", torch.zeros(n_reference + 1, dtype=torch.long))
        self.register_buffer("ref_indices", torch.zeros(0, dtype=torch.int32))
        self.register_buffer("ref_data", torch.zeros(0))
        self.register_buffer("ref_class", torch.zeros(n_reference, dtype=torch.long))
        self.register_buffer("ref_group", torch.full((n_reference,), -1, dtype=torch.long))
        self.register_buffer("centroids", torch.zeros(0, min(n_features, DENSE_WIDTH)))
        self.register_buffer("list_class", torch.zeros(0, dtype=torch.long))
        self.register_buffer("ref_list", torch.zeros(n_reference, dtype=torch.long))
        self.register_buffer("mean", torch.zeros(2 * n_classes))
        self.register_buffer("inv_std", torch.ones(2 * n_classes))
        self.kmer = KmerEncoder(n_features, hidden, dropout) if hidden > 0 else None
        self.out_dim = 2 * n_classes + (self.kmer.out_dim if self.kmer is not None else 0)
        self._index: ReferenceIndex | None = None

    def set_reference(
        self, features: torch.Tensor | sparse.sparray | sparse.spmatrix, classes: torch.Tensor, groups: torch.Tensor
    ) -> None:
        """Store the reference profiles (unit length; a dense tensor or a scipy sparse matrix),
        their class indices and group ids, and build the search index's lists. An encoder given
        the same references as the last one (cross-fitting's fold models) shares its buffers
        and index rather than holding a copy."""
        refs = unit_rows(features)
        refs.sort_indices()
        parts = _csr_parts(refs) | {"ref_class": classes.long().cpu(), "ref_group": groups.long().cpu()}
        if _held_equals(parts):
            self._adopt()
            return
        _HELD.clear()  # before building: the old references' index is not kept alive beside the new
        x = folded(refs) if refs.shape[0] else None
        centroids, list_class, ref_list = build_lists(refs, parts["ref_class"].numpy(), self.n_classes, x=x)
        parts |= {
            "centroids": centroids,
            "list_class": torch.from_numpy(list_class),
            "ref_list": torch.from_numpy(ref_list),
        }
        for name, t in parts.items():
            setattr(self, name, t.to(self.mean.device))
        self._build_index(ref_folded=x)

    def _adopt(self) -> None:
        """Point this encoder's reference buffers and index at the held ones."""
        for name, t in _HELD["buffers"].items():
            setattr(self, name, t)
        self._index = _HELD["index"]

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        # Model files before the index held the references dense, as ``ref``.
        if prefix + "ref" in state_dict:
            refs = unit_rows(state_dict.pop(prefix + "ref"))
            state_dict.update({prefix + name: t for name, t in _csr_parts(refs).items()})
            lists = build_lists(refs, state_dict[prefix + "ref_class"].numpy(), self.n_classes)
            state_dict[prefix + "centroids"] = lists[0]
            state_dict[prefix + "list_class"] = torch.from_numpy(lists[1])
            state_dict[prefix + "ref_list"] = torch.from_numpy(lists[2])
        incoming = {name: state_dict[prefix + name] for name in self.SIZED if prefix + name in state_dict}
        if len(incoming) == len(self.SIZED) and _held_equals(incoming):
            # The references already held (fit() reloading its best epoch, a fold model read
            # back): share them, and load the shared tensors onto themselves (no copy).
            self._adopt()
            state_dict.update({prefix + name: t for name, t in _HELD["buffers"].items()})
        else:
            for name, t in incoming.items():  # fresh tensors: never written into shared ones
                setattr(self, name, torch.empty_like(t, device=self.mean.device))
            self._index = None
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def index(self) -> ReferenceIndex:
        """The search structure over the references (built once from the buffers, on the CPU,
        and shared with encoders given the same references)."""
        return self._index if self._index is not None else self._build_index()

    def _build_index(self, ref_folded: torch.Tensor | None = None) -> ReferenceIndex:
        """Build the index from the buffers and hold it, with them, for encoders to share."""
        indptr = self.ref_indptr.cpu().numpy()
        if indptr[-1] < 2**31:  # int32 like the indices: scipy would otherwise copy both to int64
            indptr = indptr.astype(np.int32)
        refs = sparse.csr_array(
            (self.ref_data.cpu().numpy(), self.ref_indices.cpu().numpy(), indptr),
            shape=(len(self.ref_class), self.n_features),
        )
        self._index = ReferenceIndex(
            refs,
            self.ref_group.cpu().numpy(),
            self.centroids.cpu().float(),
            self.list_class.cpu().numpy(),
            self.ref_list.cpu().numpy(),
            self.n_classes,
            ref_folded=ref_folded,
        )
        _HELD.clear()
        _HELD.update(buffers={name: getattr(self, name) for name in self.SIZED}, index=self._index)
        return self._index

    def distances(
        self, features: torch.Tensor | sparse.sparray | sparse.spmatrix, groups: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(B, 2C) raw features; references of a row's own group (``groups``) are skipped."""
        best = self.index().best_similarity(unit_rows(features), groups, self.nprobe)
        d = (1.0 - best).clamp(0.0, 2.0)  # a class without any other-group reference gets 2
        out = torch.cat([d, torch.log(d + self.EPS) / 10], dim=1)
        return out.to(features.device) if isinstance(features, torch.Tensor) else out

    def prepare(self, ds) -> None:
        """Compute ``ds``'s raw distances once (``ds.distances``); its items then carry them, and
        their k-mer profiles only when the k-mer part needs them."""
        ds.distances = self.distances(ds.features, ds.groups)
        ds.features_needed = self.kmer is not None

    def fit_standardizer(self, distances: torch.Tensor, features=None) -> None:
        """Standardise the raw ``distances`` of the training records (and, with a k-mer part,
        their profiles ``features``)."""
        self.mean.copy_(distances.mean(0))
        self.inv_std.copy_(1.0 / distances.std(0).clamp_min(1e-3))
        if self.kmer is not None:
            self.kmer.fit_standardizer(features)

    def forward(self, batch: dict) -> torch.Tensor:
        raw = batch["distances"] if "distances" in batch else self.distances(batch["features"], batch.get("group"))
        z = (raw - self.mean) * self.inv_std
        return z if self.kmer is None else torch.cat([z, self.kmer(batch)], dim=1)


class SelfAttentionBlock(nn.Module):
    """Pre-norm transformer block over residues: multi-head self-attention, then a feed-forward
    layer, each added back to its input.

    Attention goes through ``F.scaled_dot_product_attention``, so on a GPU PyTorch picks a
    fused kernel (memory-efficient attention takes the boolean key mask; flash attention has no
    mask and is not used here). ``mask`` (B, L) is True at residues and False at padding: padded
    keys get no attention weight, so a sequence's output at its residues does not depend on how
    much padding its batch adds. Outputs at padded positions are meaningless and must be masked
    by the caller (the pooling does).
    """

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"attention_heads ({heads}) must divide the feature width ({dim})")
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.ff = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))
        self.drop = nn.Dropout(dropout)
        self.p_attn = dropout

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape  # (B, L, D)
        q, k, v = self.qkv(self.norm1(x)).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask[:, None, None, :], dropout_p=self.p_attn if self.training else 0.0
        )
        x = x + self.drop(self.proj(a.transpose(1, 2).reshape(b, n, d)))
        return x + self.drop(self.ff(self.norm2(x)))


def terminal_windows(tokens: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, L) masks of the first and of the last ``n`` residues of each row of ``tokens``
    (0 = padding, which sits at the end); a row shorter than ``n`` lies wholly in both."""
    real = tokens > 0
    pos = torch.arange(tokens.shape[1], device=tokens.device)[None, :]
    return real & (pos < n), real & (pos >= real.sum(1, keepdim=True) - n)


class Composition(nn.Module):
    """Residue composition of the whole sequence, of its first and last ``terminal`` residues,
    and its dipeptide frequencies, batch-normalised: the composition floor's features, computed
    from the tokens inside the network so the head sees them beside the learnt encoding.
    Targeting signals (transit peptides, signal peptides, C-terminal motifs) show as terminal
    composition that pooled convolutions can miss. Letters are the first ``letters`` tokens
    (the 20 standard amino acids, or A/C/G/T); ambiguity codes count for nothing."""

    def __init__(self, letters: int, terminal: int = 50) -> None:
        super().__init__()
        self.letters, self.terminal = letters, terminal
        self.out_dim = 3 * letters + letters * letters
        self.norm = nn.BatchNorm1d(self.out_dim)

    def features(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, out_dim) shares before normalisation; ``tokens`` padded with 0 at the end."""
        n = self.letters
        valid = (tokens >= 1) & (tokens <= n)
        idx = torch.where(valid, tokens - 1, torch.zeros_like(tokens))
        onehot = F.one_hot(idx, n).float() * valid[..., None]  # (B, L, n)

        def share(rows: torch.Tensor) -> torch.Tensor:
            counts = (onehot * rows[..., None]).sum(1)
            return counts / counts.sum(1, keepdim=True).clamp_min(1.0)

        pairs = valid[:, :-1] & valid[:, 1:]
        di = torch.zeros(tokens.shape[0], n * n, device=tokens.device)
        di.scatter_add_(1, idx[:, :-1] * n + idx[:, 1:], pairs.float())
        di = di / di.sum(1, keepdim=True).clamp_min(1.0)
        first, last = terminal_windows(tokens, self.terminal)
        return torch.cat([share(valid), share(first), share(last), di], 1)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.features(tokens)
        # A batch of one (the last of an epoch) cannot give batch statistics: use the running ones.
        training = self.training and x.shape[0] > 1
        return F.batch_norm(
            x,
            self.norm.running_mean,
            self.norm.running_var,
            self.norm.weight,
            self.norm.bias,
            training,
            self.norm.momentum,
            self.norm.eps,
        )


class ConvEncoder(nn.Module):
    """Embedding, parallel convolutions of several widths, then masked pooling.

    Pooling is "light attention" style (Staerk et al. 2021): a softmax over positions weights
    one projection of the features, concatenated with a masked max over positions. Padded
    positions get -inf scores so they never receive attention or win the max.
    DNA tokens embed as fixed fractional one-hot IUPAC vectors (N = 0.25 each base); protein
    tokens get a learned embedding. With ``attention_layers`` > 0, that many self-attention
    blocks (:class:`SelfAttentionBlock`) mix the convolution features across the whole sequence
    before pooling, so a signal at one terminus can be weighed against the rest. ``dilations``
    adds residual convolutions of width 3 at those dilations after the parallel ones, widening
    what one position sees to a whole signal or transit peptide (each adds 2 x dilation
    residues). ``terminal_pool`` > 0 also max-pools the features of the first and of the last
    that many residues on their own: targeting signals count only at their terminus, which
    whole-sequence pooling cannot tell.
    """

    def __init__(
        self,
        alphabet: str,
        embed_dim: int = 32,
        channels: int = 64,
        kernel_sizes: tuple[int, ...] = (3, 9, 15),
        dropout: float = 0.25,
        attention_layers: int = 0,
        attention_heads: int = 4,
        composition: bool = False,
        embed_init: str = "random",
        dilations: tuple[int, ...] = (),
        terminal_pool: int = 0,
    ) -> None:
        super().__init__()
        if alphabet == "dna":
            self.embed = nn.Embedding.from_pretrained(torch.from_numpy(iupac_matrix()), freeze=True, padding_idx=0)
            in_dim = 4
        else:
            self.embed = nn.Embedding(vocab_size(alphabet), embed_dim, padding_idx=0)
            if embed_init == "blosum62":  # a starting point that knows which residues substitute; still trained
                with torch.no_grad():
                    self.embed.weight.copy_(torch.from_numpy(blosum62_embedding(embed_dim)))
            in_dim = embed_dim
        self.convs = nn.ModuleList(nn.Conv1d(in_dim, channels, k, padding=k // 2) for k in kernel_sizes)
        width = channels * len(kernel_sizes)
        self.dilated = nn.ModuleList(nn.Conv1d(width, width, 3, padding=d, dilation=d) for d in dilations)
        self.terminal_pool = int(terminal_pool)
        self.blocks = nn.ModuleList(
            SelfAttentionBlock(width, attention_heads, dropout) for _ in range(attention_layers)
        )
        self.mix = nn.Conv1d(width, width, 1)
        self.attn = nn.Conv1d(width, width, 1)
        self.drop = nn.Dropout(dropout)
        self.composition = Composition(4 if alphabet == "dna" else 20) if composition else None
        pooled = 4 if self.terminal_pool else 2
        self.out_dim = pooled * width + (self.composition.out_dim if composition else 0)

    def forward(self, batch: dict) -> torch.Tensor:
        tokens = batch["tokens"]  # (B, L), 0 = padding
        mask = tokens > 0
        x = self.embed(tokens).transpose(1, 2)  # (B, C, L)
        x = torch.cat([F.gelu(conv(x)) for conv in self.convs], dim=1)
        for conv in self.dilated:  # padding zeroed first, so it never leaks into real positions
            x = x + F.gelu(conv(x * mask[:, None, :]))
        x = self.drop(x)
        if len(self.blocks):
            x = x.transpose(1, 2)  # (B, L, C)
            for block in self.blocks:
                x = block(x, mask)
            x = x.transpose(1, 2)
        values = self.mix(x)
        scores = self.attn(x).masked_fill(~mask[:, None, :], float("-inf"))
        attended = (torch.softmax(scores, dim=-1) * values).sum(-1)
        windows = [mask, *(terminal_windows(tokens, self.terminal_pool) if self.terminal_pool else ())]
        parts = [attended] + [values.masked_fill(~w[:, None, :], float("-inf")).amax(-1) for w in windows]
        if self.composition is not None:
            parts.append(self.composition(tokens))
        return torch.cat(parts, dim=1)


def build_encoder(
    cfg: dict, alphabet: str, n_features: int | None, n_reference: int | None = None, n_classes: int | None = None
) -> nn.Module:
    from barloc.config import block_defaults

    cfg = block_defaults("encoder", cfg)
    kind = cfg["type"]
    if kind == "kmer":
        return KmerEncoder(int(n_features), cfg["hidden"], cfg["dropout"])
    if kind == "nearest":
        return NearestReferenceEncoder(
            int(n_features), int(n_reference), int(n_classes), cfg["hidden"], cfg["dropout"], cfg["nprobe"]
        )
    if kind == "cnn":
        return ConvEncoder(
            alphabet,
            cfg["embed_dim"],
            cfg["channels"],
            tuple(cfg["kernel_sizes"]),
            cfg["dropout"],
            cfg["attention_layers"],
            cfg["attention_heads"],
            cfg["composition"],
            cfg["embed_init"],
            tuple(cfg["dilations"]),
            cfg["terminal_pool"],
        )
    raise ValueError(f"unknown encoder type {kind!r}")


def n_kmer_features(cfg: dict) -> int | None:
    from barloc.config import block_defaults

    cfg = block_defaults("encoder", cfg)
    return int(np.power(4, cfg["k"])) if cfg["type"] in KMER_TYPES else None
