r"""Local outlier factor of query points against a reference set (novelty mode), in numpy.

The one LOF scorer of the project: the tabular plausibility metric (k = 30, :mod:`recourse.metrics`)
and the image one (k = 50, :mod:`recourse.vision.counterfactual`) both use :class:`NoveltyLOF`.
For reference points :math:`o` with k nearest other reference points :math:`N_k(o)` (the point
itself excluded by index, so a duplicate is a neighbour at distance 0),

.. math::
    \operatorname{kdist}(o) = \max_{p\in N_k(o)} d(o, p),\qquad
    \operatorname{reach}(p, o) = \max\big(\operatorname{kdist}(o),\, d(p, o)\big),

    \operatorname{lrd}(p) = 1 \big/ \Big(\operatorname{mean}_{o\in N_k(p)} \operatorname{reach}(p, o) + 10^{-10}\Big),
    \qquad \operatorname{LOF}(q) = \operatorname{mean}_{o\in N_k(q)} \operatorname{lrd}(o) / \operatorname{lrd}(q),

with :math:`N_k(q)` the k nearest reference points of a query q (all of them candidates).  This
is scikit-learn's ``LocalOutlierFactor(novelty=True)``: ``score_samples(q)`` = :math:`-\operatorname{LOF}(q)`
(with ``k = min(k, n − 1)`` as scikit-learn does), computed from public definitions only.
Distances are Euclidean; neighbours are pre-selected with the Gram expansion
:math:`\|a\|^2 + \|b\|^2 - 2a\cdot b` (fast BLAS), then their distances recomputed from differences
(exact), so only ties at the k-th distance may pick another, equidistant, neighbour.
"""
from __future__ import annotations

import numpy as np

__all__ = ["NoveltyLOF"]

_GRAM_BLOCK = 1 << 22
"""elements of one (rows, points) block of pre-selection distances"""
_DIFF_BLOCK = 1 << 20
"""elements of one (rows, candidates, features) block of differences (small: allocation dominates)"""


def _knn(queries: np.ndarray, points: np.ndarray, k: int, exclude_self: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(distances, indices), each (N, k), of the k nearest ``points`` of each query, by increasing distance.

    ``exclude_self``: the queries are ``points`` themselves and row i may not pick point i.
    """
    n_q, (n, d) = len(queries), points.shape
    dist_out = np.empty((n_q, k))
    idx_out = np.empty((n_q, k), dtype=np.int64)
    c = min(n - (1 if exclude_self else 0), k + max(8, k // 2))  # candidates: k plus some slack
    sq_points = np.einsum("ij,ij->i", points, points)
    rows = max(1, _GRAM_BLOCK // max(1, n))
    sub = max(1, _DIFF_BLOCK // max(1, c * d))
    for s in range(0, n_q, rows):
        q = queries[s:s + rows]
        approx = np.einsum("ij,ij->i", q, q)[:, None] + sq_points[None, :] - 2.0 * (q @ points.T)
        if exclude_self:
            approx[np.arange(len(q)), np.arange(s, s + len(q))] = np.inf
        cand = np.argpartition(approx, c - 1, axis=1)[:, :c] if c < n else np.argsort(approx, axis=1)[:, :c]
        exact = np.empty(cand.shape)
        for t in range(0, len(q), sub):
            diff = points[cand[t:t + sub]]
            np.subtract(q[t:t + sub, None, :], diff, out=diff)
            exact[t:t + sub] = np.sqrt(np.einsum("ijk,ijk->ij", diff, diff))
        order = np.argsort(exact, axis=1, kind="stable")[:, :k]
        dist_out[s:s + rows] = np.take_along_axis(exact, order, axis=1)
        idx_out[s:s + rows] = np.take_along_axis(cand, order, axis=1)
    return dist_out, idx_out


class NoveltyLOF:
    r"""LOF of query points against the reference set ``points`` (N, D) with ``n_neighbors`` = k.

    Fitting computes each reference point's k-distance and lrd once (see the module docstring);
    :meth:`lof` then costs one k-NN query per row.  ``k`` is capped at ``n − 1``; at least two
    reference points are needed.
    """

    def __init__(self, points: np.ndarray, n_neighbors: int = 20):
        points = np.ascontiguousarray(points, dtype=np.float64)
        if points.ndim != 2 or len(points) < 2:
            raise ValueError(f"LOF needs a (N, D) reference set with N >= 2, got shape {points.shape}")
        if int(n_neighbors) < 1:
            raise ValueError(f"n_neighbors must be >= 1, got {n_neighbors}")
        self.points = points
        self.k = min(int(n_neighbors), len(points) - 1)
        dist, idx = _knn(points, points, self.k, exclude_self=True)
        self.kdist = dist[:, -1]
        self.lrd = self._lrd(dist, idx)

    def _lrd(self, dist: np.ndarray, idx: np.ndarray) -> np.ndarray:
        """lrd from the (N, k) neighbour distances and indices: 1 / (mean reach-dist + 1e-10)."""
        return 1.0 / (np.maximum(dist, self.kdist[idx]).mean(1) + 1e-10)

    def lof(self, queries: np.ndarray) -> np.ndarray:
        """(N,) LOF of each query row (≈ 1 for inliers, larger for outliers)."""
        q = np.ascontiguousarray(queries, dtype=np.float64).reshape(len(queries), -1)
        if q.shape[1] != self.points.shape[1]:
            raise ValueError(f"queries have {q.shape[1]} features, the reference set {self.points.shape[1]}")
        if len(q) == 0:
            return np.zeros(0)
        dist, idx = _knn(q, self.points, self.k)
        return (self.lrd[idx] / self._lrd(dist, idx)[:, None]).mean(1)

    def score_samples(self, queries: np.ndarray) -> np.ndarray:
        """scikit-learn's sign convention: :math:`-\\operatorname{LOF}` (larger = more normal)."""
        return -self.lof(queries)
