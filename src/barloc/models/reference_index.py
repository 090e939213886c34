"""An inverted-file index over the nearest-reference encoder's reference profiles.

Each class's references are clustered into lists by spherical k-means. A query is compared
with the references in its ``nprobe`` closest lists of each class, not with every reference:
per query and class that is ``lists + nprobe x refs / lists`` similarities, which grows with
the square root of the class's references (``n_lists``) instead of linearly.

The bound: a class with at most ``nprobe`` lists (every class of up to ``EXACT_MAX``
references is one list) is searched exhaustively, so its distance is exact. Otherwise the
reported similarity is the highest among the probed lists' references: never above the true
nearest reference's, so the distance is an upper bound on the exact one, and equal to it
whenever the nearest reference sits in a probed list (``benchmarks/scale.py`` measures how often).

Similarities are cosines of k-mer frequency profiles. Profiles of up to ``DENSE_WIDTH``
columns (k <= 5) are held dense; longer ones stay sparse (CSR), and lists are picked on the
profile folded to ``DENSE_WIDTH`` columns (counts of k-mers by their last five bases).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy import sparse

#: profiles up to this width are held dense; wider ones fold to it to pick lists
DENSE_WIDTH = 1024
#: a class with at most this many references is one list: searched exhaustively, exactly
EXACT_MAX = 4096
#: spherical k-means iterations when the lists are built
KMEANS_ITERS = 10
#: queries compared at a time (their similarities to one list are a block of at most this x list size)
QUERY_BLOCK = 4096


def unit_rows(profiles: sparse.sparray | sparse.spmatrix | torch.Tensor | np.ndarray) -> sparse.csr_array:
    """``profiles`` as a float32 CSR array with rows of unit length (zero rows stay zero)."""
    if isinstance(profiles, torch.Tensor):
        profiles = profiles.detach().cpu().numpy()
    x = sparse.csr_array(profiles, dtype=np.float32)
    norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=1), dtype=np.float32)).ravel()
    scale = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
    return sparse.csr_array(sparse.diags_array(scale) @ x, dtype=np.float32)


def folded(x: sparse.csr_array) -> torch.Tensor:
    """Dense unit rows of ``x`` folded to at most ``DENSE_WIDTH`` columns (column mod width)."""
    width = x.shape[1]
    if width > DENSE_WIDTH:
        coo = x.tocoo()
        x = sparse.csr_array((coo.data, (coo.row, coo.col % DENSE_WIDTH)), shape=(x.shape[0], DENSE_WIDTH))
        x = unit_rows(x)
    return torch.from_numpy(x.toarray())


def n_lists(n_refs: int) -> int:
    """Lists for a class of ``n_refs`` references: one up to ``EXACT_MAX``, else about sqrt(n)."""
    return 1 if n_refs <= EXACT_MAX else math.ceil(math.sqrt(n_refs))


def spherical_kmeans(x: torch.Tensor, k: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(centroids (k, d) of unit length, each row's list) for unit rows ``x``; deterministic."""
    gen = torch.Generator().manual_seed(seed)
    cent = x[torch.randperm(len(x), generator=gen)[:k]].clone()
    for _ in range(KMEANS_ITERS + 1):
        assign = torch.cat([(x[i : i + QUERY_BLOCK] @ cent.T).argmax(1) for i in range(0, len(x), QUERY_BLOCK)])
        if _ == KMEANS_ITERS:
            break
        sums = torch.zeros_like(cent).index_add_(0, assign, x)
        norms = sums.norm(dim=1, keepdim=True)
        cent = torch.where(norms > 0, sums / norms.clamp_min(1e-12), cent)  # an empty list keeps its centroid
    return cent, assign


class ReferenceIndex:
    """Search structure over unit reference profiles ``refs`` (CSR) with their classes and
    groups; ``centroids``/``list_class``/``ref_list`` describe the lists (see :func:`build_lists`)."""

    def __init__(
        self,
        refs: sparse.csr_array,
        ref_class: np.ndarray,
        ref_group: np.ndarray,
        centroids: torch.Tensor,
        list_class: np.ndarray,
        ref_list: np.ndarray,
        n_classes: int,
    ) -> None:
        self.refs, self.n_classes = refs, n_classes
        self.dense = torch.from_numpy(refs.toarray()) if refs.shape[1] <= DENSE_WIDTH else None
        self.ref_group = torch.from_numpy(np.asarray(ref_group, dtype=np.int64))
        self.centroids = centroids
        order = np.argsort(ref_list, kind="stable")
        bounds = np.searchsorted(ref_list[order], np.arange(len(list_class) + 1))
        self.members = [order[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
        self.class_lists = [np.flatnonzero(list_class == c) for c in range(n_classes)]

    def _sims(self, q: sparse.csr_array, qd: torch.Tensor | None, rows: np.ndarray, refs: np.ndarray) -> torch.Tensor:
        """Cosines of queries ``rows`` against references ``refs``, (len(rows), len(refs))."""
        if self.dense is not None:
            return qd[rows] @ self.dense[refs].T
        return torch.from_numpy((q[rows] @ self.refs[refs].T).toarray().astype(np.float32, copy=False))

    def best_similarity(self, q: sparse.csr_array, groups: torch.Tensor | None, nprobe: int) -> torch.Tensor:
        """(n, classes): each query's highest cosine with a reference of each class outside its
        own group (-1 where a class has none); ``q`` unit rows."""
        n = q.shape[0]
        best = torch.full((n, self.n_classes), -1.0)
        if n == 0:
            return best
        for a in range(0, n, QUERY_BLOCK):
            qb = q[a : a + QUERY_BLOCK]
            gb = None if groups is None else groups[a : a + QUERY_BLOCK].cpu()
            best[a : a + qb.shape[0]] = self._block(qb, gb, nprobe)
        return best

    def _block(self, q: sparse.csr_array, groups: torch.Tensor | None, nprobe: int) -> torch.Tensor:
        n = q.shape[0]
        qd = torch.from_numpy(q.toarray()) if self.dense is not None else None
        qf = None
        best = torch.full((n, self.n_classes), -1.0)
        everyone = np.arange(n)
        for c, lists in enumerate(self.class_lists):
            if len(lists) == 0:
                continue
            if len(lists) <= nprobe:  # every list: exhaustive
                probes = [(everyone, np.concatenate([self.members[m] for m in lists]))]
            else:
                if qf is None:
                    qf = qd if qd is not None else folded(q)
                top = (qf @ self.centroids[lists].T).topk(nprobe, dim=1).indices.numpy()
                rows = np.repeat(everyone, nprobe)
                probed = top.ravel()
                order = np.argsort(probed, kind="stable")
                cuts = np.flatnonzero(np.diff(probed[order])) + 1
                probes = [(rows[part], self.members[lists[probed[part[0]]]]) for part in np.split(order, cuts)]
            for rows, refs in probes:
                if len(refs) == 0:
                    continue
                sim = self._sims(q, qd, rows, refs)
                if groups is not None:
                    sim = sim.masked_fill(groups[rows][:, None] == self.ref_group[refs][None, :], -1.0)
                r = torch.from_numpy(rows)
                best[r, c] = torch.maximum(best[r, c], sim.max(1).values)
        return best


def build_lists(refs: sparse.csr_array, ref_class: np.ndarray, n_classes: int, seed: int = 0):
    """(centroids (lists, width), list_class (lists,), ref_list (refs,)) for unit rows ``refs``:
    each class's references clustered into :func:`n_lists` lists."""
    x = folded(refs) if refs.shape[0] else torch.zeros(0, min(refs.shape[1], DENSE_WIDTH))
    cents, list_class = [], []
    ref_list = np.zeros(refs.shape[0], dtype=np.int64)
    for c in range(n_classes):
        idx = np.flatnonzero(ref_class == c)
        if len(idx) == 0:
            continue
        k = n_lists(len(idx))
        if k == 1:
            cent = torch.nn.functional.normalize(x[idx].sum(0, keepdim=True), dim=1)
            assign = torch.zeros(len(idx), dtype=torch.long)
        else:
            cent, assign = spherical_kmeans(x[idx], k, seed + c)
        ref_list[idx] = assign.numpy() + len(list_class)
        cents.append(cent)
        list_class += [c] * len(cent)
    width = x.shape[1]
    centroids = torch.cat(cents) if cents else torch.zeros(0, width)
    return centroids, np.asarray(list_class, dtype=np.int64), ref_list
