"""k-NN density gravity (S-CFE): an unnormalised log-density pulling y toward dense data."""
from __future__ import annotations

import math
from typing import Mapping

import numpy as np
import torch
from torch import Tensor

from .base import BaseDensity, check_fit_input, register_density

_CDIST_ELEMENTS = 1 << 24  # max entries of one (rows, N) distance block in gravity()


@register_density("knn")
class KNNGravityDensity(BaseDensity):
    r"""k-NN density gravity as in S-CFE.

    For an anchor ``x`` (the original applicant) let :math:`p_1..p_k` be its ``k`` nearest
    training points (Euclidean, scaled space).  Each training point carries a density weight
    :math:`w_j = 1 / (r_j + \varepsilon)` where :math:`r_j` is the distance from :math:`p_j` to its
    own k-th nearest neighbour among the *other* training points (precomputed in ``fit``; small
    :math:`r_j` = dense region = large weight).  The gravity point is

    .. math::  g(x) = \frac{\sum_j w_j p_j}{\sum_j w_j},
               \qquad \log \hat q(y \mid x) = -\|y - g(x)\|^2 .

    ``log_prob`` is unnormalised, maximal (= 0) at ``y = g(x)``; its gradient ``-2 (y - g(x))``
    pulls ``y`` toward ``g``.  ``g`` is computed without gradient from ``x`` on every call
    (``torch.cdist`` + ``topk``, batched); ties between equidistant neighbours are broken by
    ``topk``.

    Parameters
    ----------
    k : number of neighbours (default 3).  With ``N <= k`` training points, ``g`` averages all
        ``N`` points and ``r_j`` uses the farthest other point (``r_j = 0`` when ``N = 1``).
    eps : added to ``r_j`` to keep weights finite for duplicated points (default 1e-8).

    Attributes
    ----------
    points_ (N, D) : training points.  radius_ (N,) : each point's k-th-neighbour distance.
    """

    name = "knn"
    default_weight = 0.5
    """default τ of the plausibility term (:func:`~recourse.density.base.default_density_weight`)"""
    _state_attrs = ("points_", "radius_")
    _param_names = ("k", "eps")

    def __init__(self, k: int = 3, eps: float = 1e-8):
        self.k = k
        self.eps = eps
        self.points_: Tensor | None = None
        self.radius_: Tensor | None = None

    def _validate_params(self) -> None:
        if isinstance(self.k, bool) or not isinstance(self.k, (int, np.integer)) or self.k < 1:
            raise ValueError(f"k must be a positive int, got {self.k!r}")
        if not (isinstance(self.eps, (int, float)) and math.isfinite(self.eps) and self.eps > 0):
            raise ValueError(f"eps must be a positive float, got {self.eps!r}")

    def fit(self, X: np.ndarray) -> "KNNGravityDensity":
        """Store the points and precompute each one's k-th-neighbour distance; returns self."""
        from sklearn.neighbors import NearestNeighbors

        self._validate_params()
        X = check_fit_input(X)
        n, d = X.shape
        self.n_features_in_ = d
        if n == 1:
            radius = np.zeros(1)
        else:
            m = min(int(self.k), n - 1) + 1  # +1: each point is its own nearest neighbour
            dist, _ = NearestNeighbors(n_neighbors=m).fit(X).kneighbors(X)
            radius = dist[:, -1]
        self.points_ = torch.from_numpy(np.ascontiguousarray(X))
        self.radius_ = torch.from_numpy(np.ascontiguousarray(radius, dtype=np.float64))
        return self

    @property
    def n_points_(self) -> int:
        self._check_is_fitted()
        return int(self.points_.shape[0])

    @torch.no_grad()
    def gravity(self, x: Tensor) -> Tensor:
        """(B, D) gravity points ``g(x)`` of the anchors ``x`` (no gradient; x's device/dtype)."""
        self._check_is_fitted()
        self._check_query(x, "x")
        x = x.detach()
        pts = self._state("points_", x)
        weight = 1.0 / (self._state("radius_", x) + self.eps)  # (N,)
        n = pts.shape[0]
        k = min(int(self.k), n)
        rows = max(1, _CDIST_ELEMENTS // n)
        out = []
        for start in range(0, x.shape[0], rows):  # chunks of rows, only to bound memory
            xb = x[start:start + rows]
            idx = torch.cdist(xb, pts).topk(k, dim=1, largest=False).indices  # (b, k)
            w = weight[idx]  # (b, k)
            out.append((w[:, :, None] * pts[idx]).sum(1) / w.sum(1, keepdim=True))
        return torch.cat(out, 0) if out else x.new_empty(0, self.n_features_in_)

    def log_prob(self, y: Tensor, x: Tensor | None = None) -> Tensor:
        """(B,) ``-||y - g(x)||^2``; ``x`` (anchors, same shape as ``y``) is required."""
        self._check_is_fitted()
        if x is None:
            raise ValueError("the knn density needs the anchors x (original points) to compute the gravity")
        self._check_query(y)
        if not isinstance(x, Tensor) or tuple(x.shape) != tuple(y.shape):
            raise ValueError(f"x must be a tensor with the same shape as y {tuple(y.shape)}")
        g = self.gravity(x.to(device=y.device, dtype=y.dtype))
        diff = y - g
        return -(diff * diff).sum(1)

    def prepare(self, x: Tensor) -> Tensor:
        """The gravity points ``g(x)`` (B, D): they depend on the anchors only, so once per batch."""
        return self.gravity(x)

    def value_and_grad(self, y: Tensor, state: Tensor | None = None, grad: bool = True) -> tuple[Tensor, Tensor | None]:
        """``-||y - g||^2`` and its gradient ``-2 (y - g)``; ``state`` = :meth:`prepare`'s gravity points."""
        diff = y - state.to(dtype=y.dtype)
        value = -(diff * diff).sum(1)
        return value, (-2.0 * diff if grad else None)

    def config(self) -> dict:
        self._check_is_fitted()
        return {
            "name": self.name,
            "k": int(self.k),
            "eps": float(self.eps),
            "n_points_": self.n_points_,
            "n_features_in_": int(self.n_features_in_),
        }

    def tensors(self) -> dict[str, Tensor]:
        """``{"points": (N, D), "radius": (N,)}``."""
        return self._tensors()

    @classmethod
    def from_state(cls, config: Mapping, tensors: Mapping[str, Tensor]) -> "KNNGravityDensity":
        cls._check_config_name(config)
        obj = cls(**{p: config[p] for p in cls._param_names if p in config})
        cls._load_tensors(obj, tensors)
        n, d = obj.points_.shape
        if obj.radius_.shape != (n,):
            raise ValueError("KNNGravityDensity.from_state: 'radius' must have one entry per point")
        obj.n_features_in_ = int(config.get("n_features_in_", d))
        if obj.n_features_in_ != d:
            raise ValueError("KNNGravityDensity.from_state: config does not match the tensors' shapes")
        return obj
