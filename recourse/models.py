"""Classifiers as differentiable, batched torch functions.

* :class:`TorchClassifier` wraps an ``nn.Module`` and always exposes logits of shape (B, C), C >= 2,
  whatever the module returns (one binary logit, C logits, or probabilities).
* :func:`from_sklearn` converts fitted scikit-learn models (``LogisticRegression``,
  ``MLPClassifier``, optionally behind ``StandardScaler`` / ``MinMaxScaler`` in a ``Pipeline``)
  into exact torch equivalents built from :class:`Affine`, ``nn.Linear`` and activations.
* :func:`train_mlp` / :func:`train_logistic` fit small reference models.

Everything is device-agnostic: a classifier follows the device of the tensors it is given.
"""
from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal, overload

import numpy as np
import torch
from torch import Tensor, nn

from .errors import BundleError, RecourseError

__all__ = [
    "Affine",
    "TorchClassifier",
    "OutputKind",
    "from_sklearn",
    "train_mlp",
    "train_logistic",
    "SUPPORTED_SKLEARN",
    "ModelKind",
    "UnknownModelKindError",
    "register_model_kind",
    "model_kinds",
    "get_model_kind",
]

OutputKind = Literal["logit", "logits", "proba"]
_OUTPUT_KINDS: tuple[str, ...] = ("logit", "logits", "proba")

SUPPORTED_SKLEARN = (
    "LogisticRegression (binary or multinomial), MLPClassifier (activation relu/tanh/logistic/identity, "
    "binary or multiclass), alone or as the last step of a Pipeline whose earlier steps are "
    "StandardScaler and/or MinMaxScaler(clip=False)"
)


class Affine(nn.Module):
    r"""Feature-wise affine map :math:`y = x \odot s + t` (the form of fitted scalers).

    ``scale`` and ``shift`` are buffers of shape (D,), so they move with ``.to()`` and are saved in
    the state dict, but are never trained.
    """

    scale: Tensor
    shift: Tensor

    def __init__(self, scale: Tensor, shift: Tensor) -> None:
        super().__init__()
        if not isinstance(scale, Tensor) or not isinstance(shift, Tensor):
            raise TypeError("Affine: scale and shift must be torch tensors")
        if scale.ndim != 1 or scale.shape != shift.shape:
            raise ValueError(
                f"Affine: scale and shift must be 1-D of equal shape, got {tuple(scale.shape)} "
                f"and {tuple(shift.shape)}"
            )
        self.register_buffer("scale", scale.detach().clone())
        self.register_buffer("shift", shift.detach().clone())

    @property
    def n_features(self) -> int:
        """Input (= output) dimension D."""
        return int(self.scale.shape[0])

    def forward(self, x: Tensor) -> Tensor:
        return x * self.scale + self.shift

    def extra_repr(self) -> str:
        return f"n_features={self.n_features}"


def _input_dim(module: nn.Module) -> int | None:
    """Input dimension read from the first ``nn.Linear`` / :class:`Affine` in ``module``, if any."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            return int(m.in_features)
        if isinstance(m, Affine):
            return m.n_features
    return None


def _plain_label(c: Any) -> int | float | str:
    """Turn numpy scalars into plain Python scalars (JSON-serialisable labels)."""
    if isinstance(c, np.generic):
        c = c.item()
    if not isinstance(c, (int, str, float)) or (isinstance(c, float) and not np.isfinite(c)):
        raise TypeError(f"class labels must be int, str, bool or finite float, got {c!r} "
                        f"of type {type(c).__name__}")
    return c


class TorchClassifier:
    r"""A classifier as a differentiable torch function of a (B, D) batch.

    ``output`` says what ``module(x)`` returns:

    * ``"logit"``: one binary logit z, shape (B,) or (B, 1); logits are :math:`[0, z]`.
    * ``"logits"``: C >= 2 logits, shape (B, C).
    * ``"proba"``: probabilities, (B, C) -> logits :math:`\log \max(p, \text{tiny})`; or the
      positive-class probability p, shape (B,) or (B, 1) -> logits
      :math:`[0, \log p - \log(1 - p)]` (both terms clamped at tiny).

    The module is put in eval mode and its parameters get ``requires_grad=False`` (in place):
    gradients are only needed with respect to the inputs.  ``classes`` are the labels of the
    logit columns (default ``0..C-1``).  C is inferred from ``classes``, from ``output="logit"``,
    or from a probe forward pass on zeros of shape (1, n_features), ``n_features`` being read from
    the first ``nn.Linear`` / :class:`Affine` layer when not given.
    """

    def __init__(
        self,
        module: nn.Module,
        output: OutputKind = "logits",
        classes: Sequence[int | str] | None = None,
        n_features: int | None = None,
    ) -> None:
        if not isinstance(module, nn.Module):
            raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
        if output not in _OUTPUT_KINDS:
            raise ValueError(f"output must be one of {_OUTPUT_KINDS}, got {output!r}")
        if n_features is not None and (isinstance(n_features, bool) or not isinstance(n_features, int)
                                       or n_features < 1):
            raise ValueError(f"n_features must be a positive int, got {n_features!r}")
        self.module = module.eval()
        self.module.requires_grad_(False)
        self.output: OutputKind = output
        self.n_features: int | None = n_features if n_features is not None else _input_dim(module)
        self._fallback_device = torch.empty(0).device
        self._fallback_dtype = torch.get_default_dtype()

        n_probe = self._probe_n_classes()
        if classes is not None:
            labels = [_plain_label(c) for c in classes]
            if len(set(labels)) != len(labels):
                raise ValueError(f"classes must be distinct, got {labels}")
            if n_probe is not None and len(labels) != n_probe:
                raise ValueError(f"{len(labels)} classes given but the module outputs {n_probe} classes")
            self.classes: list[int | float | str] = labels
        elif n_probe is not None:
            self.classes = list(range(n_probe))
        else:
            raise ValueError(
                "cannot infer the number of classes: pass classes=..., or n_features=... "
                "(no nn.Linear/Affine layer to read the input dimension from)"
            )
        if len(self.classes) < 2:
            raise ValueError(f"a classifier needs at least 2 classes, got {len(self.classes)}")

    # ------------------------------------------------------------------ properties
    @property
    def n_classes(self) -> int:
        """Number of classes C (columns of :meth:`logits`)."""
        return len(self.classes)

    @property
    def device(self) -> torch.device:
        """Device of the module's parameters/buffers."""
        anchor = self._anchors()[0]
        return self._fallback_device if anchor is None else anchor.device

    @property
    def dtype(self) -> torch.dtype:
        """Floating dtype of the module's parameters/buffers."""
        anchor = self._anchors()[1]
        return self._fallback_dtype if anchor is None else anchor.dtype

    def _tensors(self):
        yield from self.module.parameters()
        yield from self.module.buffers()

    def _anchors(self) -> tuple[Tensor | None, Tensor | None]:
        """(first tensor, first floating tensor) of the module, found once and kept.

        ``module.to(...)`` moves parameters and buffers in place (the same objects), so the
        kept tensors always report the module's current device and dtype; looking them up
        again on every call would cost more than a small forward pass.
        """
        anchors = self.__dict__.get("_anchor_cache")
        if anchors is None:
            tensors = list(self._tensors())
            first = tensors[0] if tensors else None
            floating = next((t for t in tensors if t.is_floating_point()), None)
            anchors = self.__dict__["_anchor_cache"] = (first, floating)
        return anchors

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> TorchClassifier:
        """Move/cast the module in place; returns ``self``."""
        if dtype is not None and not dtype.is_floating_point:
            raise TypeError(f"dtype must be a floating dtype, got {dtype}")
        self.module.to(device=device, dtype=dtype)
        self.__dict__.pop("_anchor_cache", None)
        if device is not None:
            self._fallback_device = torch.device(device)
        if dtype is not None:
            self._fallback_dtype = dtype
        return self

    # ------------------------------------------------------------------ evaluation
    def _probe_n_classes(self) -> int | None:
        if self.output == "logit":
            return 2
        if self.n_features is None:
            return None
        with torch.no_grad():
            out = self.module(torch.zeros(1, self.n_features, device=self.device, dtype=self.dtype))
        if not isinstance(out, Tensor):
            raise TypeError(f"module must return a Tensor, got {type(out).__name__}")
        if out.ndim == 1 or (out.ndim == 2 and out.shape[1] == 1):
            if self.output == "proba":
                return 2
            raise ValueError(
                f"output='logits' expects (B, C) with C >= 2 but the module returns shape "
                f"{tuple(out.shape)}; use output='logit' for a single binary logit"
            )
        if out.ndim != 2:
            raise ValueError(f"module must return a (B, C) tensor, got shape {tuple(out.shape)}")
        return int(out.shape[1])

    def _check_input(self, x: Tensor) -> Tensor:
        if not isinstance(x, Tensor):
            raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
        if x.ndim == 1:  # one row: a batch of one
            x = x.unsqueeze(0)
        if x.ndim != 2:
            raise ValueError(f"x must be a (B, D) tensor or one (D,) row, got shape {tuple(x.shape)}")
        if self.n_features is not None and x.shape[1] != self.n_features:
            raise ValueError(f"x has {x.shape[1]} features but the classifier expects {self.n_features}")
        if x.device != self.device:
            self.to(device=x.device)  # follow the data: outputs live on the input's device
        return x.to(self.dtype)

    def logits(self, x: Tensor) -> Tensor:
        """Logits (B, C), C >= 2, differentiable w.r.t. ``x``; in ``x``'s floating dtype and device."""
        out_dtype = x.dtype if isinstance(x, Tensor) and x.is_floating_point() else None
        z = self._logits(self._check_input(x))
        return z if out_dtype is None else z.to(out_dtype)

    def _logits(self, x: Tensor) -> Tensor:
        out = self.module(x)
        b = x.shape[0]
        if not isinstance(out, Tensor):
            raise TypeError(f"module must return a Tensor, got {type(out).__name__}")
        if out.ndim not in (1, 2) or out.shape[0] != b:
            raise ValueError(f"module returned shape {tuple(out.shape)} for a batch of {b} rows")
        single = out.ndim == 1 or out.shape[1] == 1
        if self.output == "logit":
            if not single:
                raise ValueError(f"output='logit' expects shape (B,) or (B, 1), got {tuple(out.shape)}")
            z = out.reshape(b)
            return torch.stack([torch.zeros_like(z), z], dim=1)
        if self.output == "logits":
            if single or out.shape[1] != self.n_classes:
                raise ValueError(f"output='logits' expects shape (B, {self.n_classes}), got {tuple(out.shape)}")
            return out
        tiny = torch.finfo(out.dtype).tiny
        if single:
            p = out.reshape(b)
            z = torch.log(p.clamp_min(tiny)) - torch.log((1.0 - p).clamp_min(tiny))
            return torch.stack([torch.zeros_like(z), z], dim=1)
        if out.shape[1] != self.n_classes:
            raise ValueError(f"output='proba' expects shape (B, {self.n_classes}), got {tuple(out.shape)}")
        return torch.log(out.clamp_min(tiny))

    def binary_logit(self, x: Tensor) -> Tensor | None:
        r"""For ``output="logit"``: the single logit z (B,) of ``x`` (logits are [0, z]), else None.

        A shortcut for margins: the target-class margin of row b is then exactly
        :math:`\pm z_b` (+ for class 1), the same numbers :meth:`logits` gives without building them.
        """
        if self.output != "logit":
            return None
        out = self.module(self._check_input(x))
        if not isinstance(out, Tensor) or out.shape[0] != x.shape[0] or not (
                out.ndim == 1 or (out.ndim == 2 and out.shape[1] == 1)):
            return None  # let logits() raise its precise error
        return out.reshape(-1).to(x.dtype)

    def predict_proba(self, x: Tensor) -> Tensor:
        r"""Class probabilities (B, C): :math:`\mathrm{softmax}(\text{logits}(x))`."""
        return torch.softmax(self.logits(x), dim=1)

    def predict(self, x: Tensor) -> Tensor:
        """Predicted class index (B,) (argmax of the logits); map with ``classes`` for labels."""
        return self.logits(x).argmax(dim=1)

    def __call__(self, x: Tensor) -> Tensor:
        """Alias of :meth:`logits`."""
        return self.logits(x)

    def __repr__(self) -> str:
        return (f"TorchClassifier(output={self.output!r}, classes={self.classes}, "
                f"n_features={self.n_features}, device={self.device}, dtype={self.dtype})")


# ---------------------------------------------------------------------- scikit-learn conversion
def _t(a: Any, dtype: torch.dtype, device: torch.device | str | None) -> Tensor:
    return torch.as_tensor(np.asarray(a, dtype=np.float64), device=device).to(dtype)


def _scaler_layer(step: Any, dtype: torch.dtype, device: torch.device | str | None) -> Affine:
    r"""StandardScaler: :math:`(x-\mu)/\sigma = x \cdot (1/\sigma) - \mu/\sigma`; MinMaxScaler: :math:`x \cdot s + m`."""
    from sklearn.preprocessing import MinMaxScaler, StandardScaler

    if type(step) is StandardScaler:
        d = int(step.n_features_in_)
        # sklearn stores mean_ even when with_mean=False: the flags decide what transform() does
        mean = np.asarray(step.mean_, dtype=np.float64) if step.with_mean else np.zeros(d)
        sd = np.asarray(step.scale_, dtype=np.float64) if step.with_std else np.ones(d)
        return Affine(_t(1.0 / sd, dtype, device), _t(-mean / sd, dtype, device))
    if type(step) is MinMaxScaler:
        if step.clip:
            raise TypeError("unsupported step MinMaxScaler(clip=True); supported: " + SUPPORTED_SKLEARN)
        return Affine(_t(step.scale_, dtype, device), _t(step.min_, dtype, device))
    raise TypeError(f"unsupported pipeline step {type(step).__name__}; supported: {SUPPORTED_SKLEARN}")


def _linear(w: np.ndarray, b: np.ndarray | None, dtype: torch.dtype, device: Any) -> nn.Linear:
    """``nn.Linear`` computing x @ w.T + b with w of shape (out, in)."""
    out_f, in_f = w.shape
    lin = nn.Linear(in_f, out_f, bias=b is not None, device=device, dtype=dtype)
    with torch.no_grad():
        lin.weight.copy_(_t(w, dtype, device))
        if b is not None:
            lin.bias.copy_(_t(b, dtype, device))
    return lin


_MLP_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU, "tanh": nn.Tanh, "logistic": nn.Sigmoid, "identity": nn.Identity,
}


def _final_layers(est: Any, dtype: torch.dtype, device: Any) -> tuple[list[nn.Module], OutputKind]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier

    if type(est) is LogisticRegression:
        if not hasattr(est, "coef_"):
            raise ValueError("LogisticRegression is not fitted")
        coef = np.asarray(est.coef_, dtype=np.float64)
        k = len(est.classes_)
        multi = getattr(est, "multi_class", "auto")  # removed in recent scikit-learn (always multinomial)
        if k > 2 and (multi == "ovr" or (multi == "auto" and getattr(est, "solver", "") == "liblinear")):
            raise TypeError("unsupported estimator LogisticRegression with one-vs-rest multiclass; "
                            "supported: " + SUPPORTED_SKLEARN)
        bias = np.asarray(est.intercept_, dtype=np.float64) if est.fit_intercept else None
        if bias is not None and bias.shape[0] != coef.shape[0]:
            bias = np.broadcast_to(bias, (coef.shape[0],))
        return [_linear(coef, bias, dtype, device)], ("logit" if k == 2 else "logits")
    if type(est) is MLPClassifier:
        if not hasattr(est, "coefs_"):
            raise ValueError("MLPClassifier is not fitted")
        if est.activation not in _MLP_ACTIVATIONS:
            raise TypeError(f"unsupported MLPClassifier activation {est.activation!r}; supported: "
                            f"{sorted(_MLP_ACTIVATIONS)}")
        binarizer = getattr(est, "_label_binarizer", None)
        if getattr(binarizer, "y_type_", None) == "multilabel-indicator":
            raise TypeError("unsupported estimator multilabel MLPClassifier; supported: " + SUPPORTED_SKLEARN)
        layers: list[nn.Module] = []
        n = len(est.coefs_)
        for i, (w, b) in enumerate(zip(est.coefs_, est.intercepts_)):
            layers.append(_linear(np.asarray(w, dtype=np.float64).T, np.asarray(b), dtype, device))
            if i < n - 1:
                layers.append(_MLP_ACTIVATIONS[est.activation]())
        if est.out_activation_ == "logistic" and est.n_outputs_ == 1:
            return layers, "logit"
        if est.out_activation_ == "softmax":
            return layers, "logits"
        raise TypeError(f"unsupported MLPClassifier output activation {est.out_activation_!r}")
    raise TypeError(f"unsupported estimator {type(est).__name__}; supported: {SUPPORTED_SKLEARN}")


def from_sklearn(
    estimator: Any,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> TorchClassifier:
    r"""Exact torch equivalent of a fitted scikit-learn classifier.

    Builds ``nn.Sequential([Affine...,] Linear, act, ..., Linear)``:

    * ``StandardScaler`` -> ``Affine(1/sigma, -mu/sigma)``; ``MinMaxScaler`` -> ``Affine(scale_, min_)``.
    * ``LogisticRegression``: binary -> one logit :math:`w^\top x + b` (``output="logit"``, so
      :math:`p_1 = \sigma(z)`); multiclass -> C logits, :math:`p = \mathrm{softmax}(Wx + b)`.
    * ``MLPClassifier``: ``Linear`` + hidden activation per layer; binary -> one logit (sklearn's
      logistic output), multiclass -> logits (sklearn's softmax output).

    ``classes`` of the result is ``estimator.classes_.tolist()``.  Anything else raises
    ``TypeError`` naming the unsupported step/class.
    """
    from sklearn.pipeline import Pipeline

    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating torch dtype, got {dtype!r}")
    layers: list[nn.Module] = []
    final = estimator
    if isinstance(estimator, Pipeline):
        if type(estimator) is not Pipeline:
            raise TypeError(f"unsupported estimator {type(estimator).__name__}; supported: {SUPPORTED_SKLEARN}")
        steps = [s for _, s in estimator.steps]
        final = steps[-1]
        for step in steps[:-1]:
            if step is None or step == "passthrough":
                continue
            layers.append(_scaler_layer(step, dtype, device))
    if final is None or isinstance(final, str):
        raise TypeError(f"unsupported final step {final!r}; supported: {SUPPORTED_SKLEARN}")
    head, output = _final_layers(final, dtype, device)
    layers.extend(head)
    n_features = getattr(estimator, "n_features_in_", None)
    return TorchClassifier(
        nn.Sequential(*layers),
        output=output,
        classes=np.asarray(final.classes_).tolist(),
        n_features=None if n_features is None else int(n_features),
    )


# ---------------------------------------------------------------------- training
def _check_xy(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    X = np.asarray(X)
    y = np.asarray(y)
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D (n_rows, n_features), got shape {X.shape}")
    if y.ndim != 1 or y.shape[0] != X.shape[0]:
        raise ValueError(f"y must be 1-D with {X.shape[0]} labels, got shape {y.shape}")
    if not np.issubdtype(X.dtype, np.number) or not np.isfinite(X.astype(np.float64)).all():
        raise ValueError("X must be numeric and finite")
    classes, y_idx = np.unique(y, return_inverse=True)
    if len(classes) < 2:
        raise ValueError(f"y must contain at least 2 classes, got {classes.tolist()}")
    return X.astype(np.float32), y_idx, classes


@contextmanager
def _cpu_threads(n: int, active: bool) -> Iterator[None]:
    """Temporarily set torch's intra-op CPU threads (tiny networks are fastest on one thread)."""
    prev = torch.get_num_threads()
    if active and prev != n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if active and torch.get_num_threads() != prev:
            torch.set_num_threads(prev)


def train_mlp(
    X: np.ndarray,
    y: np.ndarray,
    hidden: Sequence[int] = (20, 20),
    epochs: int = 80,
    lr: float = 1e-2,
    batch_size: int = 64,
    weight_decay: float = 1e-4,
    seed: int = 0,
    device: torch.device | str | None = None,
) -> TorchClassifier:
    """Train a D -> hidden... -> C ReLU network with Adam (float32).

    Binary: one logit output with ``BCEWithLogitsLoss`` (``output="logit"``); multiclass: C logits
    with ``CrossEntropyLoss``.  Labels may be any sortable values; ``classes`` of the result are the
    sorted unique labels and logit column j is ``classes[j]``.  Deterministic for a fixed ``seed``
    (initialisation and shuffling use their own seeded RNG; the global torch RNG is left untouched).
    On CPU, training runs on one intra-op thread (restored afterwards): for such small layers
    threading only adds overhead, by an order of magnitude on a busy machine.
    """
    Xf, y_idx, classes = _check_xy(X, y)
    if epochs < 1 or batch_size < 1 or any(int(h) < 1 for h in hidden):
        raise ValueError("epochs, batch_size and hidden sizes must be positive")
    n, d = Xf.shape
    k = len(classes)
    binary = k == 2
    widths = [d, *map(int, hidden), 1 if binary else k]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        layers: list[nn.Module] = []
        for i in range(len(widths) - 1):
            layers.append(nn.Linear(widths[i], widths[i + 1]))
            if i < len(widths) - 2:
                layers.append(nn.ReLU())
        net = nn.Sequential(*layers).to(device)
    gen = torch.Generator().manual_seed(seed)
    xt = torch.as_tensor(Xf, device=device)
    if binary:
        yt = torch.as_tensor(y_idx, dtype=torch.float32, device=device)
        loss_fn: nn.Module = nn.BCEWithLogitsLoss()
    else:
        yt = torch.as_tensor(y_idx, dtype=torch.long, device=device)
        loss_fn = nn.CrossEntropyLoss()
    weights = [p for name, p in net.named_parameters() if name.endswith("weight")]
    biases = [p for name, p in net.named_parameters() if not name.endswith("weight")]
    opt = torch.optim.Adam([{"params": weights, "weight_decay": weight_decay}, {"params": biases, "weight_decay": 0.0}],
                           lr=lr)
    net.train()
    with _cpu_threads(1, active=xt.device.type == "cpu"):
        for _ in range(epochs):
            perm = torch.randperm(n, generator=gen).to(xt.device)
            for start in range(0, n, batch_size):
                idx = perm[start:start + batch_size]
                out = net(xt[idx])
                loss = loss_fn(out.squeeze(1), yt[idx]) if binary else loss_fn(out, yt[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
    return TorchClassifier(net, output="logit" if binary else "logits", classes=classes.tolist(), n_features=d)


@overload
def train_logistic(X: np.ndarray, y: np.ndarray, C: float = ..., seed: int = ..., *,
                   max_iter: int = ..., dtype: torch.dtype = ...,
                   return_estimator: Literal[False] = ...) -> TorchClassifier: ...
@overload
def train_logistic(X: np.ndarray, y: np.ndarray, C: float = ..., seed: int = ..., *,
                   max_iter: int = ..., dtype: torch.dtype = ...,
                   return_estimator: Literal[True]) -> tuple[TorchClassifier, Any]: ...
def train_logistic(
    X: np.ndarray,
    y: np.ndarray,
    C: float = 1.0,
    seed: int = 0,
    *,
    max_iter: int = 1000,
    dtype: torch.dtype = torch.float32,
    return_estimator: bool = False,
) -> TorchClassifier | tuple[TorchClassifier, Any]:
    r"""Fit ``sklearn.linear_model.LogisticRegression(C=C)`` (L2, lbfgs; multinomial when C > 2)
    and convert it with :func:`from_sklearn`.

    Returns the ``TorchClassifier``, or ``(classifier, fitted LogisticRegression)`` when
    ``return_estimator=True`` (e.g. to compare with scikit-learn or inspect ``coef_``).
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    X = np.asarray(X)
    _check_xy(X, y)
    est = LogisticRegression(C=C, max_iter=max_iter, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X, np.asarray(y))
    clf = from_sklearn(est, dtype=dtype)
    return (clf, est) if return_estimator else clf


# ---------------------------------------------------------------------- model kinds
@dataclass(frozen=True)
class ModelKind:
    """A kind of model that ``recourse train --model`` / :func:`recourse.bundle.build_bundle` can fit.

    ``train(x, y, seed)`` fits it on scaled rows ``x`` with class labels ``y``.  A
    ``differentiable`` kind returns a :class:`TorchClassifier` the solver uses directly; any other
    returns a fitted scikit-learn estimator (a tree ensemble), which is exported exactly as the
    verifier and distilled into a differentiable surrogate that steers the solver.
    """

    name: str
    train: Callable[[np.ndarray, np.ndarray, int], Any]
    differentiable: bool
    about: str = ""
    options: tuple[tuple[str, Any], ...] = ()
    """Recipe options bound by :meth:`configured` (e.g. the MLP's ``hidden`` sizes)."""

    def configured(self, **options: Any) -> "ModelKind":
        """This kind with recipe options bound (``hidden=(32, 16)`` for ``mlp``, ``C=0.5`` for
        ``logistic``); an option the trainer does not take raises ``ValueError`` naming it."""
        if not options:
            return self
        import inspect

        if self.options:  # bind onto the registered trainer: the options so far, then these
            return get_model_kind(self.name).configured(**{**dict(self.options), **options})
        accepted = set(inspect.signature(self.train).parameters) - {"x", "y", "seed"}
        unknown = sorted(set(options) - accepted)
        if unknown:
            raise ValueError(f"model_options: the {self.name} recipe takes {', '.join(sorted(accepted)) or 'no options'}, "
                             f"not {', '.join(unknown)}")
        base = self.train

        def train(x: np.ndarray, y: np.ndarray, seed: int = 0) -> Any:
            return base(x, y, seed, **options)

        return ModelKind(self.name, train, self.differentiable, self.about, tuple(sorted(options.items())))


class UnknownModelKindError(RecourseError):
    """A model kind no trainer is registered under (``name``; ``available``: the registered kinds)."""

    def __init__(self, name: Any):
        self.name = name
        self.available = model_kinds()
        super().__init__(f"unknown model kind {name!r}; choose one of {', '.join(self.available)}")


_MODEL_KINDS: dict[str, ModelKind] = {}


def register_model_kind(name: str, *, differentiable: bool, about: str = "") -> Callable[[Callable], Callable]:
    """Decorator registering ``train(x, y, seed=0)`` as the model kind ``name`` (the one list of
    kinds: the CLI's ``--model`` choices, bundles and benchmarks read :func:`model_kinds`)."""
    if not isinstance(name, str) or not name:
        raise ValueError("model kind name must be a non-empty string")

    def decorator(train: Callable) -> Callable:
        existing = _MODEL_KINDS.get(name)
        if existing is not None and existing.train.__qualname__ != train.__qualname__:
            raise ValueError(f"model kind {name!r} is already registered to {existing.train.__qualname__}")
        _MODEL_KINDS[name] = ModelKind(name, train, bool(differentiable), about)
        return train

    return decorator


def _load_model_plugins() -> None:
    from . import trees  # noqa: F401  (registers the tree ensembles)


def model_kinds() -> list[str]:
    """Names of the registered model kinds, in registration order (``mlp`` first: the default)."""
    _load_model_plugins()
    return list(_MODEL_KINDS)


def get_model_kind(name: str) -> ModelKind:
    """The registered :class:`ModelKind` ``name``; :class:`UnknownModelKindError` (a ``ValueError``) otherwise."""
    _load_model_plugins()
    try:
        return _MODEL_KINDS[name]
    except (KeyError, TypeError):
        raise UnknownModelKindError(name) from None


WEIGHT_DECAYS = (1e-4, 1e-3, 3e-3, 1e-2, 2e-2, 3e-2)
"""The MLP recipe's weight decays, one chosen on validation rows (:func:`choose_weight_decay`)."""


def choose_weight_decay(x: np.ndarray, y: np.ndarray, hidden: Sequence[int], seed: int = 0,
                        decays: Sequence[float] = WEIGHT_DECAYS) -> float:
    r"""The weight decay of :data:`WEIGHT_DECAYS` whose network, fitted on a seeded, stratified 80 %
    of the rows, has the lowest log-loss on the other 20 % (ties: the stronger decay).  Under 100
    rows (or a class with fewer than 5) there is nothing to validate on: 1e-3."""
    y = np.asarray(y)
    classes, counts = np.unique(y, return_counts=True)
    if len(y) < 100 or counts.min() < 5:
        return 1e-3
    rng = np.random.default_rng(seed)
    held = np.concatenate([rng.permutation(np.flatnonzero(y == c))[: max(1, len(np.flatnonzero(y == c)) // 5)]
                           for c in classes])
    train = np.setdiff1d(np.arange(len(y)), held)
    index = np.searchsorted(classes, y[held])
    losses = []
    for decay in decays:
        model = train_mlp(x[train], y[train], hidden=tuple(hidden), weight_decay=decay, seed=seed)
        with torch.no_grad():
            proba = model.predict_proba(torch.as_tensor(x[held], dtype=torch.float32)).double().cpu().numpy()
        losses.append(float(-np.log(np.clip(proba[np.arange(len(held)), index], 1e-12, 1.0)).mean()))
    best = min(losses)
    return max(d for d, loss in zip(decays, losses) if loss <= best + 1e-9)


@register_model_kind("mlp", differentiable=True,
                     about="d→20→20→1 ReLU network (torch, Adam), weight decay chosen on validation rows; "
                           "hidden sizes can be set")
def _train_mlp_kind(x: np.ndarray, y: np.ndarray, seed: int = 0, hidden: Sequence[int] = (20, 20),
                    weight_decay: float | None = None) -> TorchClassifier:
    if isinstance(hidden, (str, bytes)) or not hidden or any(isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in hidden):
        raise BundleError(f"model_options: hidden must be one or more whole numbers ≥ 1, got {hidden!r}")
    if weight_decay is not None and (isinstance(weight_decay, bool) or not isinstance(weight_decay, (int, float))
                                     or not 0 <= weight_decay < 1):
        raise BundleError(f"model_options: weight_decay must be a number in [0, 1), got {weight_decay!r}")
    decay = choose_weight_decay(x, y, hidden, seed) if weight_decay is None else float(weight_decay)
    model = train_mlp(x, y, hidden=tuple(hidden), weight_decay=decay, seed=seed)
    model.recipe = {"weight_decay": decay}
    return model


@register_model_kind("logistic", differentiable=True, about="L2 logistic regression (scikit-learn, lbfgs)")
def _train_logistic_kind(x: np.ndarray, y: np.ndarray, seed: int = 0, C: float = 1.0) -> TorchClassifier:
    return train_logistic(x, y, C=C, seed=seed)


@register_model_kind("linear", differentiable=True,
                     about="the linear model of the target: logistic regression for classes (as logistic), ridge "
                           "regression for a score target (recourse.scores)")
def _train_linear_kind(x: np.ndarray, y: np.ndarray, seed: int = 0, C: float = 1.0) -> TorchClassifier:
    return train_logistic(x, y, C=C, seed=seed)
