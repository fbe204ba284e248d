"""Gaussian kernel density estimate, evaluated in batched torch."""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from .base import BaseDensity, check_fit_input, register_density

def _exp_floor(dtype: torch.dtype) -> float:
    """Smallest exponent worth evaluating: a little above log(smallest normal number) of ``dtype``."""
    return math.log(torch.finfo(dtype).tiny) + 4.0


DEFAULT_BANDWIDTH_GRID: tuple[float, ...] = tuple(float(h) for h in np.geomspace(1e-2, 1.0, 16))


def scott_bandwidth(X: np.ndarray) -> float:
    r"""Scott's rule on the scaled data: :math:`h = \bar\sigma\, N^{-1/(D+4)}`.

    :math:`\bar\sigma = \sqrt{\operatorname{mean}_d \operatorname{Var}(X_{:,d})}`; zero-variance
    data (e.g. one point) uses :math:`\bar\sigma = 1`, the width of the scaled feature range.
    """
    n, d = X.shape
    return _data_scale(X) * n ** (-1.0 / (d + 4))


def silverman_bandwidth(X: np.ndarray) -> float:
    r"""Silverman's rule: :math:`h = \bar\sigma\,\big(4 / (N (D + 2))\big)^{1/(D+4)}` (same :math:`\bar\sigma`)."""
    n, d = X.shape
    return _data_scale(X) * (4.0 / (n * (d + 2))) ** (1.0 / (d + 4))


def _data_scale(X: np.ndarray) -> float:
    sigma = float(np.sqrt(np.mean(np.var(X, axis=0, ddof=1)))) if X.shape[0] > 1 else 0.0
    return sigma if sigma > 0 else 1.0


@register_density("kde")
class KDEDensity(BaseDensity):
    r"""Gaussian kernel density estimate (isotropic, one bandwidth ``h``).

    .. math::
        \log \hat q(y) = \operatorname{logsumexp}_i\Big(-\frac{\|y - x_i\|^2}{2h^2}\Big)
                         - \log N - \frac{D}{2}\log(2\pi h^2),

    identical to ``sklearn.neighbors.KernelDensity(kernel="gaussian", bandwidth=h)``.
    ``x`` (the anchors) is ignored.

    Parameters
    ----------
    bandwidth : ``"cv"`` (default), ``"scott"``, ``"silverman"`` or a positive float.
        ``"cv"`` picks ``h`` from ``bandwidth_grid`` by ``cv``-fold (shuffled, seeded)
        cross-validated log-likelihood with ``GridSearchCV(KernelDensity(...))``; with fewer than
        10 points it falls back to Scott's rule.  Scott/Silverman use the rules of thumb scaled by
        the root mean per-feature variance (see :func:`scott_bandwidth`).
    bandwidth_grid : candidate bandwidths for ``"cv"``; default 16 log-spaced values in [0.01, 1]
        (the scaled feature space is the unit box).
    cv : number of folds for ``"cv"`` (default 5).
    max_points : at most this many training points are kept (default 2000).  Larger ``X`` is
        replaced by a uniform random subsample without replacement (seeded by ``random_state``)
        *before* choosing the bandwidth, so that fitting and each ``log_prob`` call stay cheap
        (a ``log_prob`` call costs O(B · max_points · D)).  ``None`` keeps every point.
    random_state : seed for the subsample and the CV folds (default 0).

    Attributes
    ----------
    bandwidth_ : the bandwidth used.  bandwidth_method_ : how it was chosen.
    points_ : (n_points_, D) kernel centres.  n_samples_seen_ : N before subsampling.
    subsampled_ : whether ``X`` was subsampled.  cv_scores_ : mean held-out log-likelihood per
    grid value (``"cv"`` only, else ``None``).
    """

    name = "kde"
    default_weight = 2.0
    """default τ of the plausibility term (:func:`~recourse.density.base.default_density_weight`):
    the smallest measured weight at which the KDE beats no density on LOF and yNN on German
    credit and Wine (three seeds each); below it the German answers barely move; docs/benchmarks.md"""
    _state_attrs = ("points_",)
    _param_names = ("bandwidth", "bandwidth_grid", "cv", "max_points", "random_state")

    def __init__(
        self,
        bandwidth: str | float = "cv",
        bandwidth_grid: Sequence[float] | None = None,
        cv: int = 5,
        max_points: int | None = 2000,
        random_state: int | None = 0,
    ):
        self.bandwidth = bandwidth
        self.bandwidth_grid = bandwidth_grid
        self.cv = cv
        self.max_points = max_points
        self.random_state = random_state
        self.points_: Tensor | None = None

    # ------------------------------------------------------------------------------------
    def _validate_params(self) -> None:
        b = self.bandwidth
        if isinstance(b, str):
            if b not in ("cv", "scott", "silverman"):
                raise ValueError(f"bandwidth must be 'cv', 'scott', 'silverman' or a positive float, got {b!r}")
        elif isinstance(b, bool) or not isinstance(b, (int, float)) or not math.isfinite(b) or b <= 0:
            raise ValueError(f"bandwidth must be 'cv', 'scott', 'silverman' or a positive float, got {b!r}")
        if self.bandwidth_grid is not None:
            grid = np.asarray(self.bandwidth_grid, dtype=np.float64).reshape(-1)
            if grid.size == 0 or not np.all(np.isfinite(grid)) or np.any(grid <= 0):
                raise ValueError("bandwidth_grid must be a non-empty sequence of positive floats")
        if not isinstance(self.cv, int) or self.cv < 2:
            raise ValueError(f"cv must be an int >= 2, got {self.cv!r}")
        if self.max_points is not None and (not isinstance(self.max_points, int) or self.max_points < 1):
            raise ValueError(f"max_points must be a positive int or None, got {self.max_points!r}")

    def fit(self, X: np.ndarray) -> "KDEDensity":
        """Keep (a subsample of) ``X`` as kernel centres and choose the bandwidth; returns self."""
        self._validate_params()
        X = check_fit_input(X)
        n, d = X.shape
        self.n_samples_seen_ = n
        self.n_features_in_ = d
        self.subsampled_ = self.max_points is not None and n > self.max_points
        if self.subsampled_:
            rng = np.random.default_rng(self.random_state)
            X = X[np.sort(rng.choice(n, size=self.max_points, replace=False))]
        self.n_points_ = X.shape[0]
        self.cv_scores_: list[float] | None = None

        if isinstance(self.bandwidth, str):
            if self.bandwidth == "cv" and X.shape[0] >= 10:
                self.bandwidth_, self.cv_scores_ = self._cv_bandwidth(X)
                self.bandwidth_method_ = "cv"
            elif self.bandwidth == "silverman":
                self.bandwidth_, self.bandwidth_method_ = silverman_bandwidth(X), "silverman"
            else:  # "scott", or "cv" with fewer than 10 points
                self.bandwidth_ = scott_bandwidth(X)
                self.bandwidth_method_ = "scott" if self.bandwidth == "scott" else "scott (cv fallback: < 10 points)"
        else:
            self.bandwidth_, self.bandwidth_method_ = float(self.bandwidth), "given"
        self.bandwidth_ = float(self.bandwidth_)
        self.points_ = torch.from_numpy(np.ascontiguousarray(X))
        return self

    def _cv_bandwidth(self, X: np.ndarray) -> tuple[float, list[float]]:
        from sklearn.model_selection import GridSearchCV, KFold
        from sklearn.neighbors import KernelDensity

        grid = DEFAULT_BANDWIDTH_GRID if self.bandwidth_grid is None else self.bandwidth_grid
        grid = [float(h) for h in grid]
        folds = KFold(n_splits=min(self.cv, X.shape[0]), shuffle=True, random_state=self.random_state)
        with np.errstate(divide="ignore", invalid="ignore"):
            search = GridSearchCV(KernelDensity(kernel="gaussian"), {"bandwidth": grid}, cv=folds)
            search.fit(X)
        scores = np.asarray(search.cv_results_["mean_test_score"], dtype=np.float64)
        scores = np.where(np.isfinite(scores), scores, -np.inf)
        best = int(np.argmax(scores))  # first (smallest) of tied maxima
        if not np.isfinite(scores[best]):
            best = len(grid) - 1  # every candidate underflowed: take the widest kernel
        return grid[best], [float(s) if np.isfinite(s) else None for s in scores]

    # ------------------------------------------------------------------------------------
    def log_prob(self, y: Tensor, x: Tensor | None = None) -> Tensor:
        """(B,) Gaussian-KDE log-density of the rows of ``y`` (``x`` is ignored)."""
        self._check_is_fitted()
        self._check_query(y)
        pts, sq_pts = self._points(y)
        h2 = self.bandwidth_ ** 2
        # ||y - p||^2 = ||y||^2 - 2 y.p + ||p||^2 without materialising (B, N, D)
        sq = ((y * y).sum(1, keepdim=True) - 2.0 * (y @ pts.T) + sq_pts[None, :]).clamp_min(0.0)
        a = sq * (-0.5 / h2)
        top = a.amax(1, keepdim=True).detach()
        # exponents below log(tiny) add nothing to the sum but make exp() crawl through subnormals
        s = (a - top).clamp_min(_exp_floor(y.dtype)).exp().sum(1)
        return s.log() + top[:, 0] - self._const()

    def prepare(self, x: Tensor) -> None:
        """No per-row state (the anchors are ignored)."""
        return None

    def value_and_grad(self, y: Tensor, state: Tensor | None = None, grad: bool = True) -> tuple[Tensor, Tensor | None]:
        r"""Log-density and its gradient in closed form, without autograd.

        With :math:`a_i = -\|y - p_i\|^2 / 2h^2` and :math:`w = \operatorname{softmax}(a)`:
        :math:`\nabla_y \log\hat q(y) = (\sum_i w_i p_i - y) / h^2`.
        """
        pts, pts_t, half_sq = self._kernel_state(y)
        h2 = self.bandwidth_ ** 2
        # a = (2 y·p − ||p||² − ||y||²) / 2h², at most 0
        a = torch.addmm(half_sq, y, pts_t, alpha=1.0 / h2)
        a = a.sub_((y * y).sum(1, keepdim=True), alpha=0.5 / h2).clamp_max_(0.0)
        top = a.amax(1, keepdim=True)
        w = a.sub_(top).clamp_min_(_exp_floor(y.dtype)).exp_()
        s = w.sum(1, keepdim=True)
        value = s.log().add_(top).view(-1).sub_(self._const())
        if not grad:
            return value, None
        return value, torch.mm(w, pts).div_(s).sub_(y).div_(h2)

    def _kernel_state(self, like: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Kernel centres on ``like``'s device/dtype, transposed, and −||p||²/2h² (cached)."""
        pts = self._state("points_", like)
        cache = getattr(self, "_kernel_cache", None)
        if cache is None or cache[0] is not pts:
            cache = (pts, pts.t().contiguous(), (pts * pts).sum(1) * (-0.5 / self.bandwidth_ ** 2))
            self._kernel_cache = cache
        return cache

    def _points(self, like: Tensor) -> tuple[Tensor, Tensor]:
        """Kernel centres on ``like``'s device/dtype and their squared norms (cached)."""
        pts = self._state("points_", like)
        cache = getattr(self, "_sq_cache", None)
        if cache is None or cache[0] is not pts:
            cache = (pts, (pts * pts).sum(1))
            self._sq_cache = cache
        return cache

    def _const(self) -> float:
        return math.log(self.points_.shape[0]) + 0.5 * self.n_features_in_ * math.log(2.0 * math.pi * self.bandwidth_ ** 2)

    def config(self) -> dict:
        self._check_is_fitted()
        return {
            "name": self.name,
            "bandwidth": self.bandwidth if isinstance(self.bandwidth, str) else float(self.bandwidth),
            "bandwidth_grid": None if self.bandwidth_grid is None else [float(h) for h in self.bandwidth_grid],
            "cv": int(self.cv),
            "max_points": None if self.max_points is None else int(self.max_points),
            "random_state": self.random_state,
            "bandwidth_": float(self.bandwidth_),
            "bandwidth_method_": self.bandwidth_method_,
            "cv_scores_": self.cv_scores_,
            "n_samples_seen_": int(self.n_samples_seen_),
            "n_points_": int(self.n_points_),
            "n_features_in_": int(self.n_features_in_),
            "subsampled_": bool(self.subsampled_),
        }

    def tensors(self) -> dict[str, Tensor]:
        """``{"points": (n_points_, D)}``."""
        return self._tensors()

    @classmethod
    def from_state(cls, config: Mapping, tensors: Mapping[str, Tensor]) -> "KDEDensity":
        cls._check_config_name(config)
        obj = cls(**{p: config[p] for p in cls._param_names if p in config})
        cls._load_tensors(obj, tensors)
        try:
            obj.bandwidth_ = float(config["bandwidth_"])
        except KeyError:
            raise ValueError("KDEDensity.from_state: config lacks the fitted 'bandwidth_'") from None
        n, d = obj.points_.shape
        obj.n_features_in_ = int(config.get("n_features_in_", d))
        obj.n_points_ = int(config.get("n_points_", n))
        obj.n_samples_seen_ = int(config.get("n_samples_seen_", n))
        obj.subsampled_ = bool(config.get("subsampled_", False))
        obj.bandwidth_method_ = config.get("bandwidth_method_", "given")
        obj.cv_scores_ = config.get("cv_scores_")
        if obj.points_.ndim != 2 or obj.points_.shape[1] != obj.n_features_in_:
            raise ValueError("KDEDensity.from_state: 'points' does not match n_features_in_")
        return obj
