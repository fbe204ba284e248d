r"""Score targets: a regression model (a credit score, a predicted default rate) and the favourable
side of a threshold, read as a binary decision so that every part of the engine applies unchanged.

A score model :math:`f` and a target "at least τ" (s = +1) or "at most τ" (s = −1) give the
binary logit

.. math::  z(x) = s\,\frac{f(x) - \tau}{\sigma}, \qquad f(x) = \tau + s\,\sigma\,z(x),

with σ the training scores' standard deviation (so the solver's margin κ and the loss weights
keep their usual sizes).  :math:`z > 0` exactly when the score is on the favourable side: the
decision classes are :data:`~recourse.schema.NOT_REACHED` and :data:`~recourse.schema.REACHED`.
The fold is exact for every model kind: a network gets one more affine layer (the closed-form
margin gradient and the linear MILP see an ordinary binary model), a tree ensemble gets its
output scaled and shifted (:meth:`~recourse.trees.TreeEnsemble.with_affine_output`: the exact
tree search applies).  Another threshold τ′ (and side s′) is again affine in z:
:math:`z' = s's\,z + s'(\tau - \tau')/\sigma` (:meth:`ScoreReading.refold`), so a request may ask
for its own threshold without a second model.

Training (:func:`train_regressor`): ``linear`` (ridge regression, its penalty chosen by
cross-validation), ``mlp`` (scikit-learn's MLPRegressor on standardised scores with early
stopping on 20 % of the rows), ``gbm``, ``hgb``, ``forest`` (scikit-learn's tree-ensemble
regressors, exported exactly).  A model trained elsewhere: a scikit-learn linear regressor,
MLPRegressor (alone or after StandardScaler / MinMaxScaler in a Pipeline), a tree-ensemble
regressor, or a torch module mapping the scaled encoding to one score per row.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from .errors import FieldError, OptionsError
from .models import Affine, TorchClassifier, _linear, _MLP_ACTIVATIONS, _scaler_layer
from .schema import MAX_ABS_VALUE, ScoreTarget, show_value
from .trees import TreeEnsemble, is_tree_regressor, regressor_trees

REGRESSORS = ("linear", "mlp", "gbm", "hgb", "forest")
"""The model kinds a score target can be trained with (``model`` of :func:`recourse.bundle.build_bundle`)."""


@dataclass(frozen=True)
class ScoreReading:
    """How a folded binary logit z reads as the score: :math:`f = \\tau + s\\,\\sigma\\,z`."""

    threshold: float
    direction: int
    scale: float

    @classmethod
    def of(cls, target: ScoreTarget, scale: float) -> "ScoreReading":
        return cls(target.threshold, target.direction, float(scale))

    def score(self, z: np.ndarray) -> np.ndarray:
        """The score of folded logits ``z``."""
        return self.threshold + self.direction * self.scale * np.asarray(z, dtype=np.float64)

    def fold(self) -> tuple[float, float]:
        """(a, b) with z = a·f + b."""
        return self.direction / self.scale, -self.direction * self.threshold / self.scale

    def refold(self, other: ScoreTarget) -> tuple[float, float]:
        r"""(a, b) with :math:`z' = a z + b`: the logit of ``other``'s threshold from this one's."""
        s, s2 = self.direction, other.direction
        return float(s2 * s), float(s2 * (self.threshold - other.threshold) / self.scale)


def affine_output(model: Any, a: float, b: float) -> Any:
    """``model`` (a :class:`TorchClassifier` with one output) with its output z replaced by a·z + b;
    a committee of such models member by member."""
    members = getattr(model, "members", None)
    if members is not None:
        from .committee import Committee

        return Committee([affine_output(m, a, b) for m in members])
    module = model.module
    if isinstance(module, TreeEnsemble):
        new = module.with_affine_output(a, b)
        out = TorchClassifier(new, output="logit", classes=model.classes, n_features=new.in_features)
        return out.to(model.device, model.dtype)
    dtype, device = model.dtype, model.device
    head = Affine(torch.tensor([a], dtype=dtype, device=device), torch.tensor([b], dtype=dtype, device=device))
    layers = list(module) if isinstance(module, nn.Sequential) else [module]
    n = getattr(model, "n_features", None)
    return TorchClassifier(nn.Sequential(*layers, head), output="logit", classes=model.classes,
                           n_features=n if isinstance(n, int) else None).to(device, dtype)


def fold_regressor(regressor: Any, reading: ScoreReading, classes: list[Any], n_features: int) -> TorchClassifier:
    """The binary classifier z = a·f + b of a score model (an ``nn.Module`` or a :class:`TreeEnsemble`)."""
    a, b = reading.fold()
    if isinstance(regressor, TreeEnsemble):
        trees = regressor.with_affine_output(a, b)
        return TorchClassifier(trees, output="logit", classes=classes, n_features=trees.in_features)
    raw = TorchClassifier(regressor, output="logit", classes=classes, n_features=n_features)
    return affine_output(raw, a, b)


# ---------------------------------------------------------------------- models trained elsewhere
def regressor_module(model: Any, n_features: int) -> nn.Module | TreeEnsemble:
    """A score model as torch: a tree-ensemble regressor exactly (:func:`~recourse.trees.regressor_trees`),
    a scikit-learn linear regressor or MLPRegressor (after scalers in a Pipeline) as layers, a torch
    module as it is.  Anything else raises ``TypeError`` naming what is supported."""
    from sklearn.base import is_regressor
    from sklearn.pipeline import Pipeline

    if isinstance(model, nn.Module):
        return model
    if is_tree_regressor(model):
        return regressor_trees(model)
    layers: list[nn.Module] = []
    final = model
    if type(model) is Pipeline:
        *front, final = [s for _, s in model.steps]
        layers += [_scaler_layer(step, torch.float64, None) for step in front if step not in (None, "passthrough")]
    from sklearn.neural_network import MLPRegressor

    if type(final) is MLPRegressor:
        if final.activation not in _MLP_ACTIVATIONS or final.n_outputs_ != 1:
            raise TypeError("unsupported MLPRegressor: one output and a relu/tanh/logistic/identity activation")
        for i, (w, bias) in enumerate(zip(final.coefs_, final.intercepts_)):
            layers.append(_linear(np.asarray(w, dtype=np.float64).T, np.asarray(bias), torch.float64, None))
            if i < len(final.coefs_) - 1:
                layers.append(_MLP_ACTIVATIONS[final.activation]())
    elif is_regressor(final) and hasattr(final, "coef_") and hasattr(final, "intercept_"):
        coef = np.asarray(final.coef_, dtype=np.float64).reshape(-1)
        if coef.size != n_features and not layers:
            raise TypeError(f"{type(final).__name__}: {coef.size} coefficients for {n_features} encoded columns")
        intercept = np.asarray(final.intercept_, dtype=np.float64).reshape(-1)[:1]
        layers.append(_linear(coef[None, :], intercept if intercept.size else np.zeros(1), torch.float64, None))
    else:
        raise TypeError(f"unsupported score model {type(model).__name__}; supported: a scikit-learn linear regressor "
                        "(LinearRegression, Ridge, Lasso, ...) or MLPRegressor, alone or after StandardScaler / "
                        "MinMaxScaler in a Pipeline; RandomForest, ExtraTrees, GradientBoosting or "
                        "HistGradientBoosting regressors; or a torch module giving one score per row")
    return nn.Sequential(*layers).float()


def predict_scores(model: nn.Module | TreeEnsemble, x: np.ndarray) -> np.ndarray:
    """f(x) of a score model (torch) on scaled rows."""
    with torch.no_grad():
        param = next(iter(model.parameters()), None) if not isinstance(model, TreeEnsemble) else None
        dtype = param.dtype if param is not None else torch.float64
        return model(torch.as_tensor(x, dtype=dtype)).double().reshape(len(x)).numpy()


# ---------------------------------------------------------------------- training
def train_regressor(kind: str, x: np.ndarray, y: np.ndarray, seed: int = 0, options: Mapping[str, Any] | None = None) -> Any:
    """Fit a score model of ``kind`` (:data:`REGRESSORS`) on scaled rows ``x`` and scores ``y``; the
    fitted scikit-learn estimator (convert it with :func:`regressor_module`)."""
    from sklearn.ensemble import GradientBoostingRegressor, HistGradientBoostingRegressor, RandomForestRegressor
    from sklearn.linear_model import RidgeCV
    from sklearn.neural_network import MLPRegressor
    from sklearn.pipeline import Pipeline

    options = dict(options or {})
    if kind not in REGRESSORS:
        raise ValueError(f"a score target is fitted with one of {', '.join(REGRESSORS)}, not {kind!r}")
    hidden = tuple(options.pop("hidden", (20, 20)))
    if options:
        raise ValueError(f"model_options: unknown option(s) {', '.join(sorted(options))} for a score model")
    y = np.asarray(y, dtype=np.float64)
    if kind == "linear":
        return RidgeCV(alphas=np.logspace(-3, 3, 13)).fit(x, y)
    if kind == "mlp":
        mean, sd = float(y.mean()), float(y.std()) or 1.0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            net = MLPRegressor(hidden_layer_sizes=hidden, alpha=1e-3, early_stopping=True, validation_fraction=0.2,
                               max_iter=2000, n_iter_no_change=20, random_state=seed).fit(x, (y - mean) / sd)
        return _Destandardised(net, mean, sd)
    if kind == "gbm":
        return GradientBoostingRegressor(n_estimators=200, max_depth=3, learning_rate=0.05, subsample=0.8,
                                         random_state=seed).fit(x, y)
    if kind == "hgb":
        return HistGradientBoostingRegressor(max_iter=200, learning_rate=0.05, random_state=seed).fit(x, y)
    return RandomForestRegressor(n_estimators=200, min_samples_leaf=3, random_state=seed, n_jobs=1).fit(x, y)


class _Destandardised:
    """An MLPRegressor fitted on standardised scores, predicting the scores themselves."""

    def __init__(self, net: Any, mean: float, sd: float):
        self.net, self.mean, self.sd = net, mean, sd

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.net.predict(x) * self.sd + self.mean

    def module(self, n_features: int) -> nn.Module:
        layers = list(regressor_module(self.net, n_features))
        layers.append(Affine(torch.tensor([self.sd], dtype=torch.float32), torch.tensor([self.mean], dtype=torch.float32)))
        return nn.Sequential(*layers)


def as_module(estimator: Any, n_features: int) -> nn.Module | TreeEnsemble:
    """The torch form of a trained score model (:func:`train_regressor`'s or a user's)."""
    if isinstance(estimator, _Destandardised):
        return estimator.module(n_features)
    return regressor_module(estimator, n_features)


def regression_scores(predicted: np.ndarray, actual: np.ndarray, target: ScoreTarget) -> dict[str, float]:
    """R², mean absolute error and the accuracy of the reached / not reached decision."""
    actual = np.asarray(actual, dtype=np.float64)
    predicted = np.asarray(predicted, dtype=np.float64)
    residual = float(np.sum((actual - predicted) ** 2))
    total = float(np.sum((actual - actual.mean()) ** 2)) or 1.0
    reached_true, reached_pred = reached(actual, target), reached(predicted, target)
    return {"r2": round(1.0 - residual / total, 4), "mae": round(float(np.mean(np.abs(actual - predicted))), 6),
            "accuracy": round(float(np.mean(reached_true == reached_pred)), 4),
            "majority": round(float(max(reached_true.mean(), 1 - reached_true.mean())), 4)}


def reached(scores: np.ndarray, target: ScoreTarget) -> np.ndarray:
    """Class index per score: 1 where the score is on the favourable side of the threshold (inclusive)."""
    s = np.asarray(scores, dtype=np.float64)
    return (s >= target.threshold if target.direction > 0 else s <= target.threshold).astype(np.int64)


# ---------------------------------------------------------------------- a request's threshold
def requested_target(value: Any, base: ScoreTarget) -> ScoreTarget | None:
    """The score target a request asks for with ``{"at_least": v}`` or ``{"at_most": v}``; None for
    anything else (no target, or classes, which the engine checks as for any model).  A bad threshold
    object raises :class:`OptionsError` naming ``target``."""
    if not isinstance(value, Mapping):
        return None
    keys = set(value)
    unknown = keys - {"at_least", "at_most"}
    if unknown or len(keys) != 1:
        raise OptionsError([FieldError("target", "give exactly one of at_least or at_most, got "
                                                 + (", ".join(sorted(map(str, keys))) or "neither"))])
    (side, number), = value.items()
    if isinstance(number, np.generic):
        number = number.item()
    if isinstance(number, bool) or not isinstance(number, (int, float)) or not math.isfinite(number) \
            or abs(number) > MAX_ABS_VALUE:
        raise OptionsError([FieldError(f"target.{side}", f"must be a finite number, got {show_value(number)}")])
    return base.with_threshold(**{side: float(number)})
