"""Diagonal-covariance Gaussian mixture, fitted with scikit-learn, evaluated in batched torch."""
from __future__ import annotations

import math
import warnings
from typing import Mapping

import numpy as np
import torch
from torch import Tensor

from .base import BaseDensity, check_fit_input, register_density


@register_density("gmm")
class GMMDensity(BaseDensity):
    r"""Gaussian mixture with diagonal covariances.

    .. math::
        \log \hat q(y) = \operatorname{logsumexp}_k\Big(\log\pi_k
            - \tfrac12 \sum_d \big[\log(2\pi\sigma^2_{kd}) + (y_d - \mu_{kd})^2/\sigma^2_{kd}\big]\Big),

    identical to ``GaussianMixture(covariance_type="diag").score_samples``.  ``x`` is ignored.

    Parameters
    ----------
    n_components : ``"bic"`` (default) or a positive int.  ``"bic"`` fits every
        ``k = 1 .. K`` with ``K = max(1, min(max_components, N // 5))`` and keeps the lowest BIC.
    max_components : upper end of the BIC search (default 5).
    reg_covar : variance floor added to each diagonal (default 1e-3, in scaled units).
    n_init, max_iter : passed to ``GaussianMixture`` (defaults 1 and 200).
    random_state : seed for the k-means initialisation (default 0).

    Attributes
    ----------
    n_components_ : number of components used.  bic_ : BIC of ``k = 1, 2, ...`` (``"bic"`` only).
    weights_ (K,), means_ (K, D), variances_ (K, D) : mixture parameters as tensors.
    converged_ : whether EM converged for the kept model.
    """

    name = "gmm"
    default_weight = 0.5
    """default τ of the plausibility term (:func:`~recourse.density.base.default_density_weight`):
    the smallest of the weights measured (0.2–1 all beat no density on LOF and yNN on German
    credit and Wine, three seeds each) with the larger gain; docs/benchmarks.md"""
    _state_attrs = ("weights_", "means_", "variances_")
    _param_names = ("n_components", "max_components", "reg_covar", "n_init", "max_iter", "random_state")

    def __init__(
        self,
        n_components: str | int = "bic",
        max_components: int = 5,
        reg_covar: float = 1e-3,
        n_init: int = 1,
        max_iter: int = 200,
        random_state: int | None = 0,
    ):
        self.n_components = n_components
        self.max_components = max_components
        self.reg_covar = reg_covar
        self.n_init = n_init
        self.max_iter = max_iter
        self.random_state = random_state
        self.weights_: Tensor | None = None
        self.means_: Tensor | None = None
        self.variances_: Tensor | None = None

    def _validate_params(self) -> None:
        k = self.n_components
        if isinstance(k, str):
            if k != "bic":
                raise ValueError(f"n_components must be 'bic' or a positive int, got {k!r}")
        elif isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"n_components must be 'bic' or a positive int, got {k!r}")
        if isinstance(self.max_components, bool) or not isinstance(self.max_components, (int, np.integer)) \
                or self.max_components < 1:
            raise ValueError(f"max_components must be a positive int, got {self.max_components!r}")
        if not (isinstance(self.reg_covar, (int, float)) and math.isfinite(self.reg_covar) and self.reg_covar >= 0):
            raise ValueError(f"reg_covar must be a non-negative float, got {self.reg_covar!r}")

    def _fit_one(self, X: np.ndarray, k: int):
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.mixture import GaussianMixture

        gm = GaussianMixture(
            n_components=k,
            covariance_type="diag",
            reg_covar=self.reg_covar,
            n_init=self.n_init,
            max_iter=self.max_iter,
            random_state=self.random_state,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            gm.fit(X)
        return gm

    def fit(self, X: np.ndarray) -> "GMMDensity":
        """Fit the mixture (choosing the number of components by BIC if asked); returns self."""
        self._validate_params()
        X = check_fit_input(X)
        n, d = X.shape
        self.n_features_in_ = d
        self.n_samples_seen_ = n
        self.bic_: list[float] | None = None
        if self.n_components == "bic":
            k_max = max(1, min(int(self.max_components), n // 5))
            models, bics = [], []
            for k in range(1, k_max + 1):
                gm = self._fit_one(X, k)
                models.append(gm)
                bics.append(float(gm.bic(X)))
            best = int(np.argmin(bics))
            gm, self.bic_ = models[best], bics
        else:
            if int(self.n_components) > n:
                raise ValueError(f"n_components={self.n_components} exceeds the number of training points ({n})")
            gm = self._fit_one(X, int(self.n_components))
        self.n_components_ = int(gm.n_components)
        self.converged_ = bool(gm.converged_)
        self.weights_ = torch.from_numpy(np.ascontiguousarray(gm.weights_, dtype=np.float64))
        self.means_ = torch.from_numpy(np.ascontiguousarray(gm.means_, dtype=np.float64))
        self.variances_ = torch.from_numpy(np.ascontiguousarray(gm.covariances_, dtype=np.float64))
        return self

    def log_prob(self, y: Tensor, x: Tensor | None = None) -> Tensor:
        """(B,) mixture log-density of the rows of ``y`` (``x`` is ignored)."""
        self._check_is_fitted()
        self._check_query(y)
        w, mu, var = (self._state(a, y) for a in self._state_attrs)
        # (B, K, D) is small: K <= max_components
        diff = y[:, None, :] - mu[None, :, :]
        quad = (diff * diff / var[None]).sum(-1)  # (B, K)
        log_norm = torch.log(2.0 * math.pi * var).sum(-1)  # (K,)
        comp = torch.log(w)[None, :] - 0.5 * (log_norm[None, :] + quad)
        return torch.logsumexp(comp, dim=1)

    def prepare(self, x: Tensor) -> None:
        """No per-row state (the anchors are ignored)."""
        return None

    def value_and_grad(self, y: Tensor, state: Tensor | None = None, grad: bool = True) -> tuple[Tensor, Tensor | None]:
        r"""Log-density and its gradient in closed form, without autograd.

        With responsibilities :math:`r_k = \operatorname{softmax}_k(\text{comp}_k)`:
        :math:`\nabla_y \log\hat q(y) = \sum_k r_k (\mu_k - y) / \sigma^2_k`.
        """
        w, mu, var = (self._state(a, y) for a in self._state_attrs)
        cache = getattr(self, "_grad_cache", None)
        if cache is None or cache[0] is not mu or cache[1] is not var or cache[2] is not w:
            cache = (mu, var, w, 1.0 / var, torch.log(w) - 0.5 * torch.log(2.0 * math.pi * var).sum(-1))
            self._grad_cache = cache
        _, _, _, inv, const = cache
        diff = y[:, None, :] - mu[None, :, :]  # (B, K, D), K small
        scaled = diff * inv[None]
        comp = const[None, :] - 0.5 * (diff * scaled).sum(-1)  # (B, K)
        value = torch.logsumexp(comp, dim=1)
        if not grad:
            return value, None
        r = torch.softmax(comp, dim=1)
        return value, -(r[:, :, None] * scaled).sum(1)

    def config(self) -> dict:
        self._check_is_fitted()
        return {
            "name": self.name,
            "n_components": self.n_components if isinstance(self.n_components, str) else int(self.n_components),
            "max_components": int(self.max_components),
            "reg_covar": float(self.reg_covar),
            "n_init": int(self.n_init),
            "max_iter": int(self.max_iter),
            "random_state": self.random_state,
            "n_components_": int(self.n_components_),
            "bic_": self.bic_,
            "converged_": bool(self.converged_),
            "n_samples_seen_": int(self.n_samples_seen_),
            "n_features_in_": int(self.n_features_in_),
        }

    def tensors(self) -> dict[str, Tensor]:
        """``{"weights": (K,), "means": (K, D), "variances": (K, D)}``."""
        return self._tensors()

    @classmethod
    def from_state(cls, config: Mapping, tensors: Mapping[str, Tensor]) -> "GMMDensity":
        cls._check_config_name(config)
        obj = cls(**{p: config[p] for p in cls._param_names if p in config})
        cls._load_tensors(obj, tensors)
        k, d = obj.means_.shape
        if obj.weights_.shape != (k,) or obj.variances_.shape != (k, d):
            raise ValueError("GMMDensity.from_state: weights/means/variances shapes disagree")
        obj.n_components_ = int(config.get("n_components_", k))
        obj.n_features_in_ = int(config.get("n_features_in_", d))
        if obj.n_components_ != k or obj.n_features_in_ != d:
            raise ValueError("GMMDensity.from_state: config does not match the tensors' shapes")
        obj.bic_ = config.get("bic_")
        obj.converged_ = bool(config.get("converged_", True))
        obj.n_samples_seen_ = config.get("n_samples_seen_")
        return obj
