r"""Any ``predict_proba`` callable as the model whose decisions count (XGBoost, LightGBM, a remote model…).

The solver needs gradients, so a black box :math:`p(x)` (a function of the scaled encoding,
``(N, D) float64 → (N, C)`` probabilities in the schema's class order) gets a distilled MLP
surrogate (:func:`recourse.surrogate.distill`) that steers the search; every answer is verified
on the black box itself (:class:`ProbaModel` is the engine's ``verifier``).  A callable cannot
be stored without pickle, and a bundle never unpickles anything, so a black-box bundle stores
only the surrogate (``model.*``) and the densities; the callable is supplied again at load time:

>>> bundle = build_black_box_bundle(schema, train, labels, "out/", xgb.predict_proba)
>>> bundle = with_black_box(load_bundle("out/"), xgb.predict_proba)   # later, another process
>>> bundle.engine().explain(applicant)

The bundle's metadata records that its verifier is external; ``Bundle.engine()`` refuses to run
until :func:`with_black_box` has supplied it, so no answer is ever verified on the surrogate alone.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from .encoding import TabularEncoder, complete_schema
from .errors import BundleError
from .schema import FeatureSchema

ProbaFn = Callable[[np.ndarray], np.ndarray]


class ProbaModel:
    r"""A numpy ``predict_proba`` on scaled rows as a classifier for the engine (no gradients).

    ``logits`` are :math:`\log p` (clipped at 1e-12), so the engine's margin test
    :math:`Z_t - \max_{j\ne t} Z_j > 0` is "the black box picks the target class".
    """

    output = "proba"

    def __init__(self, predict_proba: ProbaFn, classes: Sequence[Any], device: str | torch.device = "cpu"):
        if not callable(predict_proba):
            raise TypeError("predict_proba must be callable: (N, D) scaled rows → (N, C) probabilities")
        self.fn = predict_proba
        self.classes = list(classes)
        self.device = torch.device(device)

    def to(self, device: Any = None, dtype: Any = None) -> "ProbaModel":
        if device is not None:
            self.device = torch.device(device)
        return self

    def predict_proba(self, x: Tensor) -> Tensor:
        p = np.asarray(self.fn(x.detach().double().cpu().numpy()), dtype=np.float64)
        if p.ndim != 2 or p.shape != (x.shape[0], len(self.classes)):
            raise ValueError(f"predict_proba returned shape {p.shape}; expected ({x.shape[0]}, {len(self.classes)})")
        return torch.as_tensor(p, device=x.device, dtype=x.dtype)

    def logits(self, x: Tensor) -> Tensor:
        return self.predict_proba(x).clamp_min(1e-12).log()


def with_black_box(bundle: Any, predict_proba: ProbaFn) -> Any:
    """The bundle with ``predict_proba`` as its verifier (the model whose decisions count)."""
    return replace(bundle, verifier=ProbaModel(predict_proba, bundle.classifier.classes))


def build_black_box_bundle(schema: FeatureSchema, train: pd.DataFrame, labels: np.ndarray, out: str | Path,
                           predict_proba: ProbaFn, *, seed: int = 0, **kwargs: Any) -> Any:
    """Distil a surrogate from ``predict_proba`` on ``train`` and save a bundle (the surrogate, the
    densities; no callable) to ``out``; returns it with the black box attached (:func:`with_black_box`).

    ``kwargs`` go to :func:`recourse.bundle.build_bundle` (densities, max_changes, test, …).
    """
    from .bundle import _numeric_columns, build_bundle
    from .surrogate import distill

    if schema.target is None:
        raise BundleError("the schema needs a target (name, classes, favourable) to build a bundle")
    completed = complete_schema(schema, train)
    encoder = TabularEncoder(completed)
    x = encoder.encode(train)
    box = ProbaModel(predict_proba, completed.target.classes)
    surrogate, fidelity = distill(box, x, [fc.slice for fc in encoder.layout], _numeric_columns(encoder),
                                  seed=seed, teacher=predict_proba)
    surrogate.classes = list(completed.target.classes)
    bundle = build_bundle(schema, train, labels, out, model=surrogate, seed=seed,
                          external_model=f"predict_proba callable (surrogate agreement on training rows "
                                         f"{fidelity.train_agreement:.4f})", **kwargs)
    return with_black_box(bundle, predict_proba)
