"""Do the promises hold when the model is retrained?  ``recourse bench robustness``.

Protocol: the bundle's engine answers the benchmark points of ``bench scfe`` (German: the
held-out applicants the model denies; Wine: the held-out rows, each pushed to the other class)
once per confidence level (``min_probability``: none, i.e. the model merely picks the target, and
the given levels).  Then the bundle's model is refitted ``refits`` times with the same recipe
(the same model kind and hyper-parameters) on bootstrap resamples of the same training rows,
each with a new seed, and every verified counterfactual is shown to every refit.  Reported per
level: the invalidation rate (share of answers a refit no longer puts in the target class),
mean and worst over the refits, and what the level costs (validity, cost, ℓ0, time, answer
probabilities).  The refits are never seen by the engine.

The robust mode (``robust=True``: the committee of the model and the ``family`` refits stored in
a bundle, :mod:`recourse.committee`) is measured the same way on a bundle built with that family
(the same main model: the same recipe and seed as the demo bundle); its family is fitted with
other seeds and resamples (:data:`recourse.bundle.FAMILY_SEED`) than the fresh refits that judge
it, so it is never judged by a model it was verified against.
"""
from __future__ import annotations

import time
from typing import Any, Sequence

import numpy as np
import pandas as pd

from recourse.bundle import build_dataset_bundle, demo_bundle
from recourse.data import load_dataset
from recourse.models import get_model_kind

from .progress import Steps
from .scfe import BENCH_MODELS, benchmark_points

LEVELS = (None, 0.6, 0.7, 0.8)
"""Confidence levels compared by default (None: no minimum beyond the model's decision)."""
ROBUST_LEVELS = (0.6,)
"""Confidence levels of the robust mode compared by default."""
ROBUSTNESS_MODELS = BENCH_MODELS
"""Model kinds the benchmark refits: the benchmarks' classification kinds (a family only for the
differentiable ones, mlp and logistic)."""


def refit_models(dataset: str, bundle: Any, refits: int, seed: int = 1, *, step: Steps | None = None) -> list[Any]:
    """``refits`` models of the bundle's kind and recipe (its options, and the choices it made on
    validation rows, e.g. the MLP's weight decay), each fitted on a bootstrap resample of its training split
    (``step``: told before each refit)."""
    data = load_dataset(dataset)
    train, labels, _, _ = data.split()
    engine = bundle.engine()
    x = engine.encoder.encode(engine.validate(train))
    kind = get_model_kind(str(bundle.metadata.get("model", "mlp"))).configured(**bundle.metadata.get("recipe", {}))
    rng = np.random.default_rng(seed)
    models = []
    for k in range(refits):
        if step is not None:
            step(f"refit {k + 1}/{refits}")
        rows = rng.integers(0, len(x), len(x))
        model = kind.train(x[rows], np.asarray(labels)[rows], seed + 1000 + k)
        models.append(model if kind.differentiable else _tree(model))
    return models


def _tree(estimator: Any) -> Any:
    from recourse.trees import tree_classifier

    return tree_classifier(estimator)


def run_robustness_benchmark(dataset: str = "german", refits: int = 10, n: int = 100,
                             levels: Sequence[float | None] = LEVELS, seed: int = 1, family: int = 8,
                             robust_levels: Sequence[float | None] = ROBUST_LEVELS, progress: Any = None,
                             model: str = "mlp") -> dict[str, Any]:
    """Invalidation rates per mode and confidence level (see the module docstring); a JSON-ready dict.

    ``family``: refits in the robust mode's committee (0: no robust mode).  ``model``: the
    bundle's model kind (the demo recipe ``mlp``, or ``logistic``; a family needs a
    differentiable kind, tree ensembles are measured without one).  ``progress``: told
    ``progress(done, total, stage)`` before the bundle, each refit and each mode
    (:mod:`benchmarks.progress`; None: silent)."""
    import tempfile

    if model not in ROBUSTNESS_MODELS:
        raise ValueError(f"unknown model {model!r}; choose from {', '.join(ROBUSTNESS_MODELS)}")
    family = family if get_model_kind(model).differentiable else 0
    robust = robust_levels if family else ()
    step = Steps(progress, 2 + refits + len(levels) + len(robust))
    own = family or model != "mlp"  # the demo bundle is the MLP without a family
    tmp = tempfile.TemporaryDirectory(prefix="recourse-robust-") if own else None
    try:
        step(f"bundle (family of {family})" if family else "bundle")
        built = time.perf_counter()
        bundle = (build_dataset_bundle(dataset, tmp.name, model=model, family=family, progress=step.nested("bundle"))
                  if tmp is not None else demo_bundle(dataset))
        build_seconds = time.perf_counter() - built
        result = _run(dataset, bundle, refits, n, levels, seed, robust, build_seconds, step)
        step.finish()
        return result
    finally:
        if tmp is not None:
            tmp.cleanup()


def _run(dataset: str, bundle: Any, refits: int, n: int, levels: Sequence[float | None], seed: int,
         robust_levels: Sequence[float | None], build_seconds: float, step: Steps | None = None) -> dict[str, Any]:
    step = step if step is not None else Steps(None, 0)
    engine = bundle.engine()
    step("points")
    rows, _, targets = benchmark_points(dataset, engine, n)
    target_values = [engine.classes[t] for t in targets]
    started = time.perf_counter()
    models = refit_models(dataset, bundle, refits, seed, step=step)
    refit_seconds = time.perf_counter() - started
    out: dict[str, Any] = {"dataset": dataset, "model": bundle.metadata.get("model"), "n": len(rows),
                           "refits": refits, "refit_seconds": round(refit_seconds, 2),
                           "family": len(bundle.family), "bundle_seconds": round(build_seconds, 2), "levels": []}
    modes = [(False, level) for level in levels] + [(True, level) for level in robust_levels]
    for robust, level in modes:
        step(f"{'robust' if robust else 'model'} mode, min probability {'none' if level is None else level}")
        t0 = time.perf_counter()
        answers = engine.with_config(min_probability=level, robust=robust).explain(rows, target=target_values)
        seconds = time.perf_counter() - t0
        found = [a for a in answers if a.found]
        probs = np.array([a.counterfactual_decision.probability for a in found])
        entry: dict[str, Any] = {
            "mode": "robust" if robust else "model", "min_probability": level,
            "found": len(found), "validity": len(found) / max(len(rows), 1),
            "cost_mean": float(np.mean([a.metrics["cost"] for a in found])) if found else None,
            "l0_mean": float(np.mean([a.metrics["l0"] for a in found])) if found else None,
            "seconds": round(seconds, 3),
            "probability_quantiles": ({f"q{int(q * 100)}": float(np.quantile(probs, q)) for q in (0.0, 0.1, 0.5, 0.9)}
                                      if found else {}),
        }
        if found:
            cf = engine.encoder.encode(pd.DataFrame([a.counterfactual for a in found], columns=engine.schema.names))
            want = np.array([engine.classes.index(a.target.value) for a in found])
            rates = []
            for model in models:
                p = model.predict_proba(_tensor(cf, model)).detach().double().cpu().numpy()
                index = [list(map(str, model.classes)).index(str(engine.classes[w])) for w in want]
                rates.append(float((p.argmax(1) != np.asarray(index)).mean()))
            entry["invalidation_mean"] = float(np.mean(rates))
            entry["invalidation_worst"] = float(np.max(rates))
        out["levels"].append(entry)
    return out


def _tensor(x: np.ndarray, model: Any) -> Any:
    import torch

    return torch.as_tensor(x, dtype=torch.float32, device=getattr(model, "device", None))


def format_robustness_table(result: dict[str, Any]) -> str:
    """The benchmark as a text table."""
    head = (f"robustness to refits: {result['dataset']} ({result['model']}), {result['n']} points, "
            f"{result['refits']} refits on bootstrap resamples ({result['refit_seconds']:.1f} s)")
    if result.get("family"):
        head += f"; robust mode: the model and {result['family']} stored refits (other seeds and resamples)"
    lines = [head, "mode    min prob  valid  invalidated (mean / worst)  cost   l0    p10    p50    time s",
             "------  --------  -----  --------------------------  -----  ----  -----  -----  ------"]
    for e in result["levels"]:
        level = "none" if e["min_probability"] is None else f"{e['min_probability']:.2f}"
        level = f"{e.get('mode', 'model'):<6}  {level:>8}"
        q = e.get("probability_quantiles", {})
        inv = (f"{e['invalidation_mean']:6.1%} / {e['invalidation_worst']:6.1%}" if "invalidation_mean" in e
               else "n/a")
        lines.append(f"{level}  {e['validity']:5.0%}  {inv:>26}  {e['cost_mean'] or 0:5.2f}  {e['l0_mean'] or 0:4.2f}"
                     f"  {q.get('q10', float('nan')):5.3f}  {q.get('q50', float('nan')):5.3f}  {e['seconds']:6.2f}")
    return "\n".join(lines)
