"""An inverted-file index over the nearest-reference encoder's reference profiles.

Each class's references are clustered into lists by spherical k-means. A query is compared
with the references in its ``nprobe`` closest lists of each class, not with every reference:
per query and class that is ``lists + nprobe x refs / lists`` similarities, which grows with
the square root of the class's references (``n_lists``) instead of linearly.

The bound: a class with at most ``nprobe`` lists (every class of up to ``EXACT_MAX``
references is one list) is searched exhaustively, so its distance is exact. Otherwise the
reported similarity is the highest among the probed lists' references (for sparse profiles,
among the ``CANDIDATES`` below): never above the true nearest reference's, so the distance is
an upper bound on the exact one, and equal to it whenever the nearest reference is among those
searched (``benchmarks/scale.py`` measures how often).

Similarities are cosines of k-mer frequency profiles. Profiles of up to ``DENSE_WIDTH``
columns (k <= 5) are held dense. Longer ones stay sparse (CSR): lists are picked on the
profile folded to ``DENSE_WIDTH`` columns (counts of k-mers by their last five bases), and
within the probed lists the ``CANDIDATES`` references closest by folded profile get their
exact cosine (the bound above holds: every distance is a real reference's exact one). The
index also holds every reference's folded profile, ``DENSE_WIDTH`` floats a reference.
"""

from __future__ import annotations

import hashlib
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
#: sparse profiles: references per query and class whose exact cosine is computed
CANDIDATES = 16
#: sparse profiles: queries whose candidates' exact cosines are computed at a time
EXACT_ROWS = 256


def unit_rows(profiles: sparse.sparray | sparse.spmatrix | torch.Tensor | np.ndarray) -> sparse.csr_array:
    """``profiles`` as a float32 CSR array with rows of unit length (zero rows stay zero)."""
    if isinstance(profiles, torch.Tensor):
        profiles = profiles.detach().cpu().numpy()
    x = sparse.csr_array(profiles, dtype=np.float32)
    x.sum_duplicates()
    lengths = np.diff(x.indptr)  # a bincount over row ids: empty rows (anywhere) sum to 0
    rows = np.repeat(np.arange(len(lengths)), lengths)
    norms = np.sqrt(np.bincount(rows, weights=np.square(x.data, dtype=np.float64), minlength=len(lengths)))
    scale = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0).astype(np.float32)
    data = x.data * np.repeat(scale, lengths)
    return sparse.csr_array((data, x.indices, x.indptr), shape=x.shape)


def folded(x: sparse.csr_array) -> torch.Tensor:
    """Dense unit rows of ``x`` folded to at most ``DENSE_WIDTH`` columns (column mod width)."""
    n, width = x.shape
    if width <= DENSE_WIDTH:
        return torch.from_numpy(x.toarray())
    out = np.zeros((n, DENSE_WIDTH), dtype=np.float32)
    for a in range(0, n, QUERY_BLOCK):  # bincount over a block's cells at a time
        part = x[a : a + QUERY_BLOCK]
        m = part.shape[0]
        rows = np.repeat(np.arange(m, dtype=np.int64), np.diff(part.indptr))
        cells = rows * DENSE_WIDTH + part.indices % DENSE_WIDTH
        out[a : a + m] = np.bincount(cells, weights=part.data, minlength=m * DENSE_WIDTH).reshape(m, DENSE_WIDTH)
    return torch.nn.functional.normalize(torch.from_numpy(out), dim=1)


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
        ref_group: np.ndarray,
        centroids: torch.Tensor,
        list_class: np.ndarray,
        ref_list: np.ndarray,
        n_classes: int,
        ref_folded: torch.Tensor | None = None,
    ) -> None:
        """``ref_folded``: :func:`folded` ``refs``, if already computed (:func:`build_lists` needs it too)."""
        self.refs, self.n_classes = refs, n_classes
        self.ref_folded = folded(refs) if ref_folded is None else ref_folded
        self.dense = self.ref_folded if refs.shape[1] <= DENSE_WIDTH else None
        self.ref_group = torch.from_numpy(np.asarray(ref_group, dtype=np.int64))
        self.centroids = centroids
        order = np.argsort(ref_list, kind="stable")
        bounds = np.searchsorted(ref_list[order], np.arange(len(list_class) + 1))
        self.members = [order[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
        self.class_lists = [np.flatnonzero(list_class == c) for c in range(n_classes)]
        # Reference records searched before, by (nprobe, group, profile digest): cross-fitting's
        # fold models share their references and score the same training records again. Rows
        # of no reference group (queries, test records) are not kept, so the memo stays within
        # one entry a reference.
        self.memo: dict[tuple, np.ndarray] = {}

    def _sims(self, q: sparse.csr_array, qd: torch.Tensor | None, rows: np.ndarray, refs: np.ndarray) -> torch.Tensor:
        """Cosines of queries ``rows`` against references ``refs``, (len(rows), len(refs))."""
        if self.dense is not None:
            return qd[rows] @ self.dense[refs].T
        return torch.from_numpy((q[rows] @ self.refs[refs].T).toarray().astype(np.float32, copy=False))

    def best_similarity(self, q: sparse.csr_array, groups: torch.Tensor | None, nprobe: int) -> torch.Tensor:
        """(n, classes): each query's highest cosine with a reference of each class outside its
        own group (-1 where a class has none); ``q`` unit rows."""
        n = q.shape[0]
        q.sort_indices()
        g = None if groups is None else groups.cpu().numpy()
        kept = np.zeros(n, dtype=bool) if g is None else g >= 0  # a reference group: remembered
        keys = {
            i: (
                nprobe,
                int(g[i]),
                hashlib.blake2b(q.indices[a:b].tobytes() + q.data[a:b].tobytes(), digest_size=16).digest(),
            )
            for i, a, b in zip(np.flatnonzero(kept), q.indptr[:-1][kept], q.indptr[1:][kept])
        }
        best = torch.full((n, self.n_classes), -1.0)
        todo = np.array([i for i in range(n) if keys.get(i) not in self.memo], dtype=np.int64) if keys else np.arange(n)
        for a in range(0, len(todo), QUERY_BLOCK):
            rows = todo[a : a + QUERY_BLOCK]
            best[rows] = self._block(q[rows], None if g is None else torch.from_numpy(g[rows]), nprobe)
        for i, key in keys.items():
            if key in self.memo:
                best[i] = torch.from_numpy(self.memo[key])
            else:
                self.memo[key] = best[i].numpy().copy()
        return best

    def _block(self, q: sparse.csr_array, groups: torch.Tensor | None, nprobe: int) -> torch.Tensor:
        n = q.shape[0]
        qd = torch.from_numpy(q.toarray()) if self.dense is not None else None
        qf = qd if qd is not None else folded(q)
        best = torch.full((n, self.n_classes), -1.0)
        everyone = np.arange(n)
        for c, lists in enumerate(self.class_lists):
            if len(lists) == 0:
                continue
            if len(lists) <= nprobe:  # every list: exhaustive, exact, EXACT_MAX references at a time
                members = np.concatenate([self.members[m] for m in lists])
                for r in range(0, len(members), EXACT_MAX):
                    refs = members[r : r + EXACT_MAX]
                    sim = self._masked(self._sims(q, qd, everyone, refs), groups, everyone, refs)
                    best[:, c] = torch.maximum(best[:, c], sim.max(1).values)
                continue
            top = (qf @ self.centroids[lists].T).topk(nprobe, dim=1).indices.numpy()
            rows = np.repeat(everyone, nprobe)
            probed = top.ravel()
            order = np.argsort(probed, kind="stable")
            cuts = np.flatnonzero(np.diff(probed[order])) + 1
            probes = [(rows[part], self.members[lists[probed[part[0]]]]) for part in np.split(order, cuts)]
            if qd is not None:
                for rows, refs in probes:
                    if len(refs):
                        sim = self._masked(qd[rows] @ self.dense[refs].T, groups, rows, refs)
                        r = torch.from_numpy(rows)
                        best[r, c] = torch.maximum(best[r, c], sim.max(1).values)
            else:
                best[:, c] = self._exact_best(q, self._candidates(qf, groups, probes, n))
        return best

    def _masked(
        self, sim: torch.Tensor, groups: torch.Tensor | None, rows: np.ndarray, refs: np.ndarray
    ) -> torch.Tensor:
        """``sim`` with references of each query's own group at -1."""
        if groups is None:
            return sim
        return sim.masked_fill(groups[rows][:, None] == self.ref_group[refs][None, :], -1.0)

    def _candidates(self, qf: torch.Tensor, groups, probes: list, n: int) -> torch.Tensor:
        """(n, CANDIDATES) references closest to each query by folded profile in its probed
        lists, outside its group (-1: none)."""
        score = torch.full((n, CANDIDATES), -2.0)
        cand = torch.full((n, CANDIDATES), -1, dtype=torch.long)
        for rows, refs in probes:
            if len(refs) == 0:
                continue
            sim = self._masked(qf[rows] @ self.ref_folded[refs].T, groups, rows, refs)
            sim = sim.masked_fill(sim <= -1.0, -2.0)  # own group: never a candidate
            t = min(CANDIDATES, len(refs))
            s_new, i_new = sim.topk(t, dim=1)
            r = torch.from_numpy(rows)
            both_s = torch.cat([score[r], s_new], 1)
            both_i = torch.cat([cand[r], torch.from_numpy(refs)[i_new].masked_fill(s_new <= -2.0, -1)], 1)
            keep = both_s.topk(CANDIDATES, dim=1).indices
            score[r], cand[r] = both_s.gather(1, keep), both_i.gather(1, keep)
        return cand

    def _exact_best(self, q: sparse.csr_array, cand: torch.Tensor) -> torch.Tensor:
        """Each query's highest exact cosine among its candidate references (-1: none): sparse
        row-by-row products, so memory grows with the k-mers present, never with 4^k."""
        out = torch.full((len(cand),), -1.0)
        for a in range(0, len(cand), EXACT_ROWS):
            c = cand[a : a + EXACT_ROWS].numpy()
            owner, slot = np.nonzero(c >= 0)
            if len(owner) == 0:
                continue
            pairs = q[owner + a].multiply(self.refs[c[owner, slot]])
            dots = np.asarray(pairs.sum(axis=1), dtype=np.float32).ravel()
            best = np.full(len(c), -1.0, dtype=np.float32)
            np.maximum.at(best, owner, dots)
            out[a : a + len(c)] = torch.from_numpy(best)
        return out


def build_lists(
    refs: sparse.csr_array, ref_class: np.ndarray, n_classes: int, seed: int = 0, x: torch.Tensor | None = None
):
    """(centroids (lists, width), list_class (lists,), ref_list (refs,)) for unit rows ``refs``:
    each class's references clustered into :func:`n_lists` lists. ``x``: :func:`folded` ``refs``,
    if already computed."""
    if x is None:
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
