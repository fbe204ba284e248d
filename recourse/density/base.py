"""Density protocol, plugin registry and the class-conditional wrapper.

A density ``q̂`` enters the S-CFE objective as the plausibility term ``-τ·log q̂_t(y)``.
Every density is fitted on *scaled* target-class training points (numpy, on the host) and
evaluated in batched torch: ``log_prob(y, x)`` takes ``y`` and the anchors ``x`` as (B, D)
tensors and returns a (B,) tensor on ``y``'s device and in ``y``'s dtype, differentiable
with respect to ``y``.  Learned state is float64 on the host after ``fit``; ``to(...)`` moves it
(``log_prob`` also casts it to ``y`` on the fly, so ``to`` only saves the per-call copies).

State is saved without pickle: ``config()`` is JSON-serialisable (hyper-parameters as given
plus values chosen from data) and ``tensors()`` holds every learned array;
``from_state(config, tensors)`` rebuilds the fitted density.
"""
from __future__ import annotations

import math
from typing import Any, Callable, ClassVar, Iterable, Mapping, Protocol, TypeVar, runtime_checkable

import numpy as np
import torch
from torch import Tensor

from ..errors import RecourseError

__all__ = [
    "Density",
    "BaseDensity",
    "ClassConditionalDensity",
    "register_density",
    "get_density",
    "make_density",
    "available_densities",
    "default_density_weight",
    "UnknownDensityError",
    "FALLBACK_WEIGHT",
    "fit_class_conditional",
    "PreparedDensity",
]


@runtime_checkable
class Density(Protocol):
    """What the solver needs from a density plugin."""

    name: ClassVar[str]

    def fit(self, X: np.ndarray) -> "Density":
        """Fit on (N, D) target-class training points (scaled space); returns ``self``."""
        ...

    def log_prob(self, y: Tensor, x: Tensor) -> Tensor:
        """(B,) log-density of the rows of ``y``; ``x`` are the anchors aligned with ``y``."""
        ...

    def config(self) -> dict:
        """JSON-serialisable hyper-parameters and data-chosen values."""
        ...

    def tensors(self) -> dict[str, Tensor]:
        """All learned state as tensors (plain-string keys)."""
        ...

    @classmethod
    def from_state(cls, config: dict, tensors: dict[str, Tensor]) -> "Density":
        """Rebuild a fitted density from ``config()`` and ``tensors()`` without refitting."""
        ...

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> "Density":
        """Move (and optionally cast) the learned state; returns ``self``."""
        ...


# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------
_REGISTRY: dict[str, type] = {}

T = TypeVar("T", bound=type)

FALLBACK_WEIGHT = 0.1
"""τ of a registered plugin that declares no ``default_weight`` of its own."""


class UnknownDensityError(RecourseError):
    """A density name that no plugin is registered under (``name``; ``available``: the registered names)."""

    def __init__(self, name: Any):
        self.name = name
        self.available = available_densities()
        super().__init__(f"unknown density {name!r}; available densities: {', '.join(self.available)}")


def register_density(name: str) -> Callable[[T], T]:
    """Class decorator registering a density plugin under ``name`` (sets ``cls.name``).

    The plugin's class attribute ``default_weight`` (a finite τ ≥ 0, see
    :func:`default_density_weight`) is checked here; without one it gets :data:`FALLBACK_WEIGHT`.
    """
    if not isinstance(name, str) or not name:
        raise ValueError("density name must be a non-empty string")

    def decorator(cls: T) -> T:
        weight = getattr(cls, "default_weight", FALLBACK_WEIGHT)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight) or weight < 0:
            raise ValueError(f"density {name!r}: default_weight must be a finite number >= 0, got {weight!r}")
        existing = _REGISTRY.get(name)
        if existing is not None and existing.__qualname__ != cls.__qualname__:
            raise ValueError(f"density name {name!r} is already registered to {existing.__qualname__}")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return decorator


def available_densities() -> list[str]:
    """Sorted names of the registered densities."""
    return sorted(_REGISTRY)


def get_density(name: str) -> type:
    """The density class registered under ``name``; :class:`UnknownDensityError` (a
    ``ValueError``) listing the registered names otherwise."""
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise UnknownDensityError(name) from None


def default_density_weight(name: str) -> float:
    r"""The default weight τ of the plausibility term :math:`-\tau \log \hat q_t(y)` for density ``name``.

    The plugin class's ``default_weight`` (0.5 for ``"gmm"``, 2 for ``"kde"``, 0.5 for the k-NN
    gravity term; chosen by measurement against no density, docs/benchmarks.md), or
    :data:`FALLBACK_WEIGHT` for a plugin that declares none.  An unregistered name raises
    :class:`UnknownDensityError` naming it and listing the registered densities.
    """
    return float(getattr(get_density(name), "default_weight", FALLBACK_WEIGHT))


def make_density(name: str, **kwargs: Any) -> Density:
    """Instantiate the (unfitted) density ``name`` with hyper-parameters ``kwargs``."""
    return get_density(name)(**kwargs)


# --------------------------------------------------------------------------------------------
# Shared plumbing for the plugins
# --------------------------------------------------------------------------------------------
def check_fit_input(X: Any, *, what: str = "X") -> np.ndarray:
    """Validate training points: a finite, non-empty (N, D) float array (returned as float64)."""
    if isinstance(X, Tensor):
        X = X.detach().cpu().numpy()
    try:
        arr = np.asarray(X, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what} must be a numeric (N, D) array: {exc}") from None
    if arr.ndim != 2:
        raise ValueError(f"{what} must be a 2-D (N, D) array, got {arr.ndim} dimension(s)")
    if arr.shape[0] == 0:
        raise ValueError(f"{what} is empty: a density needs at least one training point")
    if arr.shape[1] == 0:
        raise ValueError(f"{what} has no features (shape {arr.shape})")
    if not np.isfinite(arr).all():
        raise ValueError(f"{what} contains NaN or infinite values")
    return arr


class BaseDensity:
    """Mixin with the checks and the ``to`` / ``repr`` logic shared by the plugins.

    Subclasses list the names of their learned tensor attributes in ``_state_attrs``,
    their constructor arguments in ``_param_names`` and set ``n_features_in_`` in ``fit``.
    """

    name: ClassVar[str] = "base"
    default_weight: ClassVar[float] = FALLBACK_WEIGHT
    """default τ of the plausibility term (see :func:`default_density_weight`)"""
    _state_attrs: ClassVar[tuple[str, ...]] = ()
    _param_names: ClassVar[tuple[str, ...]] = ()

    # -- sklearn-like helpers -------------------------------------------------------------
    def get_params(self) -> dict:
        return {p: getattr(self, p) for p in self._param_names}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    @property
    def is_fitted(self) -> bool:
        return all(getattr(self, a, None) is not None for a in self._state_attrs)

    def _check_is_fitted(self) -> None:
        if not self.is_fitted:
            raise ValueError(
                f"this {type(self).__name__} is not fitted yet: call fit(X) (or from_state) first"
            )

    def _check_query(self, y: Tensor, what: str = "y") -> None:
        if not isinstance(y, Tensor):
            raise ValueError(f"{what} must be a torch.Tensor, got {type(y).__name__}")
        if y.ndim != 2:
            raise ValueError(f"{what} must be a 2-D (B, D) tensor, got shape {tuple(y.shape)}")
        if y.shape[1] != self.n_features_in_:
            raise ValueError(
                f"{what} has {y.shape[1]} features but the density was fitted on {self.n_features_in_}"
            )
        if not y.is_floating_point():
            raise ValueError(f"{what} must be a floating-point tensor, got {y.dtype}")

    # -- the solver's fast path ----------------------------------------------------------
    def prepare(self, x: Tensor) -> Tensor | None:
        """Per-row state for :meth:`value_and_grad` from the anchors ``x`` (B, D) (default: ``x`` itself)."""
        return x

    def value_and_grad(self, y: Tensor, state: Tensor | None, grad: bool = True) -> tuple[Tensor, Tensor | None]:
        """(B,) ``log q̂(y)`` and, if ``grad``, its (B, D) gradient in ``y``; no input checks.

        ``state`` comes from :meth:`prepare` on the rows' anchors.  This default differentiates
        :meth:`log_prob` with autograd; the plugins override it with closed forms.
        """
        if not grad:
            with torch.no_grad():
                return self.log_prob(y, state), None
        with torch.enable_grad():
            y = y.detach().requires_grad_(True)
            value = self.log_prob(y, state)
            (g,) = torch.autograd.grad(value.sum(), y)
        return value.detach(), g

    def _state(self, attr: str, like: Tensor) -> Tensor:
        """Learned tensor ``attr`` on ``like``'s device and in its dtype (no copy if it already is)."""
        return getattr(self, attr).to(device=like.device, dtype=like.dtype)

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> "BaseDensity":
        """Move the learned state to ``device`` and (floating tensors) to ``dtype``; returns ``self``."""
        self._check_is_fitted()
        for attr in self._state_attrs:
            t: Tensor = getattr(self, attr)
            if dtype is not None and t.is_floating_point():
                t = t.to(device=device, dtype=dtype)
            else:
                t = t.to(device=device)
            setattr(self, attr, t)
        return self

    @property
    def device(self) -> torch.device:
        self._check_is_fitted()
        return getattr(self, self._state_attrs[0]).device

    @property
    def dtype(self) -> torch.dtype:
        self._check_is_fitted()
        return getattr(self, self._state_attrs[0]).dtype

    # -- state helpers --------------------------------------------------------------------
    def _tensors(self) -> dict[str, Tensor]:
        self._check_is_fitted()
        return {a.rstrip("_"): getattr(self, a).detach().contiguous() for a in self._state_attrs}

    @classmethod
    def _load_tensors(cls, obj: "BaseDensity", tensors: Mapping[str, Tensor]) -> None:
        missing = [a.rstrip("_") for a in cls._state_attrs if a.rstrip("_") not in tensors]
        if missing:
            raise ValueError(f"{cls.__name__}.from_state: missing tensor(s) {missing}")
        for a in cls._state_attrs:
            t = tensors[a.rstrip("_")]
            if not isinstance(t, Tensor):
                t = torch.as_tensor(np.asarray(t))
            setattr(obj, a, t.detach())

    @classmethod
    def _check_config_name(cls, config: Mapping) -> None:
        name = config.get("name", cls.name)
        if name != cls.name:
            raise ValueError(f"config is for density {name!r}, not {cls.name!r}")


# --------------------------------------------------------------------------------------------
# Class-conditional wrapper
# --------------------------------------------------------------------------------------------
class ClassConditionalDensity:
    """One fitted density per target class: ``log q̂_{t_b}(y_b)`` for each row ``b``.

    ``log_prob`` evaluates each class's density once on the subset of rows whose target is that
    class and scatters the results back (a loop over classes, never over rows).
    """

    def __init__(self, densities: Mapping[int, Density]):
        if not densities:
            raise ValueError("ClassConditionalDensity needs at least one class density")
        self.densities: dict[int, Density] = {int(c): d for c, d in sorted(densities.items())}

    @property
    def classes(self) -> list[int]:
        return list(self.densities)

    def __getitem__(self, c: int) -> Density:
        return self.densities[int(c)]

    def swapped(self) -> "ClassConditionalDensity":
        """The two classes' densities exchanged (a score target asked for from its other side)."""
        if self.classes != [0, 1]:
            raise ValueError("only the densities of two classes can be swapped")
        return ClassConditionalDensity({0: self.densities[1], 1: self.densities[0]})

    def __repr__(self) -> str:
        inner = ", ".join(f"{c}: {d!r}" for c, d in self.densities.items())
        return f"ClassConditionalDensity({{{inner}}})"

    def log_prob(self, y: Tensor, x: Tensor | None, target: Tensor) -> Tensor:
        """(B,) ``log q̂_{target[b]}(y[b])``; ``x`` (anchors, may be None for KDE/GMM) aligned with y."""
        if not isinstance(y, Tensor) or y.ndim != 2:
            raise ValueError("y must be a 2-D (B, D) tensor")
        target = torch.as_tensor(target, device=y.device)
        if target.ndim != 1 or target.shape[0] != y.shape[0]:
            raise ValueError(f"target must have shape ({y.shape[0]},), got {tuple(target.shape)}")
        if target.is_floating_point() or target.is_complex():
            raise ValueError("target must be an integer (long) tensor of class labels")
        if x is not None and tuple(x.shape) != tuple(y.shape):
            raise ValueError(f"x must have the same shape as y {tuple(y.shape)}, got {tuple(x.shape)}")
        target = target.long()
        known = torch.tensor(self.classes, device=y.device, dtype=torch.long)
        if not bool(torch.isin(target, known).all()):
            bad = sorted(set(target.unique().tolist()) - set(self.classes))
            raise ValueError(f"target class(es) {bad} have no density; known classes: {self.classes}")
        out = y.new_zeros(y.shape[0])
        for c, dens in self.densities.items():
            idx = (target == c).nonzero().squeeze(1)
            if idx.numel() == 0:
                continue
            lp = dens.log_prob(y.index_select(0, idx), None if x is None else x.index_select(0, idx))
            out = out.index_copy(0, idx, lp.to(dtype=out.dtype))
        return out

    def prepare(self, x: Tensor, target: Tensor) -> "PreparedDensity":
        """The solver's fast path for rows with anchors ``x`` (B, D) and targets ``target`` (B,).

        Checks the targets once; the returned object evaluates ``log q̂_{t_b}(y_b)`` and its
        gradient without autograd or per-call checks (see :class:`PreparedDensity`).
        """
        target = torch.as_tensor(target, device=x.device).long()
        if target.ndim != 1 or target.shape[0] != x.shape[0]:
            raise ValueError(f"target must have shape ({x.shape[0]},), got {tuple(target.shape)}")
        present = sorted(set(target.unique().tolist()))
        unknown = sorted(set(present) - set(self.classes))
        if unknown:
            raise ValueError(f"target class(es) {unknown} have no density; known classes: {self.classes}")
        if len(present) == 1:
            dens = self.densities[present[0]]
            return PreparedDensity([(dens, None, dens.prepare(x))], target)
        parts = []
        for c in present:
            idx = (target == c).nonzero().squeeze(1)
            dens = self.densities[c]
            parts.append((dens, idx, dens.prepare(x.index_select(0, idx))))
        return PreparedDensity(parts, target)

    def config(self) -> dict:
        return {
            "classes": self.classes,
            "densities": {str(c): {"name": d.name, "config": d.config()} for c, d in self.densities.items()},
        }

    def tensors(self) -> dict[str, Tensor]:
        return {f"{c}/{k}": v for c, d in self.densities.items() for k, v in d.tensors().items()}

    @classmethod
    def from_state(cls, config: Mapping, tensors: Mapping[str, Tensor]) -> "ClassConditionalDensity":
        try:
            classes = [int(c) for c in config["classes"]]
            entries = config["densities"]
        except (KeyError, TypeError):
            raise ValueError("ClassConditionalDensity config needs 'classes' and 'densities'") from None
        densities: dict[int, Density] = {}
        for c in classes:
            entry = entries[str(c)]
            prefix = f"{c}/"
            sub = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
            densities[c] = get_density(entry["name"]).from_state(entry["config"], sub)
        return cls(densities)

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> "ClassConditionalDensity":
        for d in self.densities.values():
            d.to(device, dtype)
        return self


class PreparedDensity:
    r"""``log q̂_{t_b}(y_b)`` and :math:`\nabla_y` for a fixed batch of rows (from :meth:`ClassConditionalDensity.prepare`).

    ``parts`` lists, per target class present, (density, row indices or None for all rows,
    per-row state of those rows).  :meth:`take` restricts to a subset of the rows.
    """

    def __init__(self, parts: list[tuple[Any, Tensor | None, Tensor | None]], target: Tensor):
        self.parts = parts
        self.target = target

    def take(self, rows: Tensor) -> "PreparedDensity":
        """The same for the rows ``rows`` (indices into this batch)."""
        if len(self.parts) == 1 and self.parts[0][1] is None:
            dens, _, state = self.parts[0]
            return PreparedDensity([(dens, None, None if state is None else state.index_select(0, rows))],
                                   self.target.index_select(0, rows))
        # several classes: map each class's rows to positions in the subset
        position = torch.full((self.target.shape[0],), -1, dtype=torch.long, device=rows.device)
        position[rows] = torch.arange(rows.shape[0], device=rows.device)
        parts = []
        for dens, idx, state in self.parts:
            where = position[idx]
            keep = (where >= 0).nonzero().squeeze(1)
            if keep.numel() == 0:
                continue
            parts.append((dens, where.index_select(0, keep), None if state is None else state.index_select(0, keep)))
        return PreparedDensity(parts, self.target.index_select(0, rows))

    def value_and_grad(self, y: Tensor, grad: bool = True) -> tuple[Tensor, Tensor | None]:
        """(B,) log-densities and, if ``grad``, their (B, D) gradients in ``y``."""
        if len(self.parts) == 1 and self.parts[0][1] is None:
            dens, _, state = self.parts[0]
            return dens.value_and_grad(y, state, grad)
        value = y.new_zeros(y.shape[0])
        gradient = torch.zeros_like(y) if grad else None
        for dens, idx, state in self.parts:
            v, g = dens.value_and_grad(y.index_select(0, idx), state, grad)
            value = value.index_copy(0, idx, v.to(value.dtype))
            if grad:
                gradient = gradient.index_copy(0, idx, g.to(gradient.dtype))
        return value, gradient


def fit_class_conditional(
    name: str,
    X: np.ndarray,
    labels: np.ndarray,
    classes: Iterable[int] | None = None,
    **kwargs: Any,
) -> ClassConditionalDensity:
    """Fit one ``name`` density (hyper-parameters ``kwargs``) per class on ``X[labels == c]``.

    ``classes`` defaults to the sorted unique labels.
    """
    X = check_fit_input(X)
    labels = np.asarray(labels.detach().cpu().numpy() if isinstance(labels, Tensor) else labels).reshape(-1)
    if labels.shape[0] != X.shape[0]:
        raise ValueError(f"labels has {labels.shape[0]} entries but X has {X.shape[0]} rows")
    cls = get_density(name)
    classes = np.unique(labels).tolist() if classes is None else list(classes)
    densities: dict[int, Density] = {}
    for c in classes:
        mask = labels == c
        if not mask.any():
            raise ValueError(f"no training points with label {c!r}: cannot fit its density")
        densities[int(c)] = cls(**kwargs).fit(X[mask])
    return ClassConditionalDensity(densities)
