"""Your model as it is: a scikit-learn pipeline on raw records, against DiCE on the same pipeline.
``recourse bench pipeline``.

Protocol: German credit's training split fits a ``Pipeline`` of a ``ColumnTransformer``
(``OneHotEncoder`` for the levels, ``StandardScaler`` for the numbers) and an estimator
(``logistic``: ``LogisticRegression``; ``hgb``: ``HistGradientBoostingClassifier``), as a lender
would, on the raw DataFrame.  The pipeline becomes a bundle (:func:`recourse.bundle.build_bundle`
with ``model=pipeline``: converted exactly, :mod:`recourse.pipelines`), whose engine answers the
first ``n`` held-out applicants the pipeline denies, timed in one batched call.  Every answer is
re-checked with the user's own ``pipeline.predict_proba`` on the raw counterfactual row.

Peer (optional ``bench`` extra): DiCE's model-agnostic "random" method on the *same fitted
pipeline* (DiCE's "sklearn" backend calls ``pipeline.predict_proba`` on raw rows), the same
points, features to vary = the schema's mutable ones, permitted ranges = the schema's.  Both are
measured by :class:`recourse.metrics.Evaluator` (validity, ℓ0, LOF, violations of the schema's
rules) and by the pipeline itself (``pipeline_approves``).
"""
from __future__ import annotations

import time
from typing import Any

import numpy as np
import pandas as pd

from recourse.results import to_jsonable

from .progress import Steps
from .scfe import DICE_MISSING, _frame_of, run_dice

ESTIMATORS = ("logistic", "hgb")


def german_pipeline(estimator: str, seed: int = 0):
    """(schema completed on the training split, train rows, their labels, held-out rows, fitted pipeline)."""
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    from recourse.data import load_dataset
    from recourse.encoding import complete_schema

    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown estimator {estimator!r}; choose from {', '.join(ESTIMATORS)}")
    data = load_dataset("german")
    train, labels, test, _ = data.split()
    schema = complete_schema(data.schema, train)
    levels = [f.name for f in schema.features if f.kind in ("categorical", "ordinal", "binary")]
    numbers = [f.name for f in schema.features if f.name not in levels]
    model = (LogisticRegression(max_iter=2000) if estimator == "logistic"
             else HistGradientBoostingClassifier(max_iter=60, random_state=seed))
    pipeline = Pipeline([("columns", ColumnTransformer([("levels", OneHotEncoder(handle_unknown="ignore"), levels),
                                                        ("numbers", StandardScaler(), numbers)])),
                         ("model", model)]).fit(train, labels)
    return schema, train, labels, test, pipeline


def run_pipeline_benchmark(estimator: str = "logistic", n: int = 50, peers: bool = True, seed: int = 0,
                           workdir: str | None = None, progress: Any = None) -> dict[str, Any]:
    """Run the protocol of the module docstring and return a JSON-ready dict (``progress``: told
    before each phase, :mod:`benchmarks.progress`; None: silent)."""
    import tempfile

    from recourse.bundle import build_bundle
    from recourse.metrics import Evaluator
    from recourse.pipelines import predict_proba_raw

    step = Steps(progress, 3 + int(peers))
    step("fitting the pipeline")
    schema, train, labels, test, pipeline = german_pipeline(estimator, seed)
    step("the pipeline as a bundle")
    tmp = tempfile.TemporaryDirectory(prefix="recourse-bench-pipeline-") if workdir is None else None
    started = time.perf_counter()
    bundle = build_bundle(schema, train, labels, f"{tmp.name if tmp else workdir}/bundle", model=pipeline)
    build_seconds = time.perf_counter() - started
    engine = bundle.engine()
    target = engine.classes.index(schema.target.favourable)

    def proba(rows: pd.DataFrame) -> np.ndarray:
        """The user's pipeline on raw rows, columns in the engine's class order."""
        raw = predict_proba_raw(pipeline, engine.encoder, rows)
        order = [list(pipeline.classes_).index(c) for c in engine.classes]
        return raw[:, order]

    rows = engine.validate(test)
    denied = rows[proba(rows)[:, target] < 0.5].head(n).reset_index(drop=True)
    targets = np.full(len(denied), target)
    evaluator = Evaluator(engine.schema, engine.predict_proba, bundle.train_encoded, bundle.train_labels).prepare()
    m = int(engine.config.max_changes)
    step("recourse for the denied applicants")
    engine.explain(denied.head(2))  # warm-up, not timed
    started = time.perf_counter()
    answers = engine.explain(denied)
    seconds = time.perf_counter() - started
    found = np.array([a.found for a in answers], dtype=bool)
    cfs = _frame_of([a.counterfactual for a in answers], engine.schema.names, found)
    ours = evaluator.summarise(denied, cfs, targets, m, found=found, seconds=seconds)
    ours["pipeline_approves"] = _approved(proba, cfs[found], target)
    result: dict[str, Any] = {"estimator": estimator, "bundle_model": bundle.metadata["model"], "n": len(denied),
                              "max_changes": m, "min_probability": engine.config.min_probability,
                              "build_seconds": round(build_seconds, 2), "recourse": ours, "peers": {}}
    if peers:
        train_labels = np.array([engine.classes.index(v) for v in labels])
        step("DiCE random on the same pipeline")
        kept: list[pd.DataFrame] = []
        dice = run_dice(engine, engine.validate(train), train_labels, denied, targets, m, evaluator, seed=seed,
                        method="random", proba=proba, keep=kept)
        if isinstance(dice, dict):
            dice["pipeline_approves"] = _approved(proba, kept[0], target)
            if dice.get("per_second"):
                result["speedup_vs_dice_random"] = ours["per_second"] / dice["per_second"]
        result["peers"]["dice_random"] = dice
    if tmp is not None:
        tmp.cleanup()
    step.finish()
    return to_jsonable(result)


def _approved(proba, frame: pd.DataFrame, target: int) -> dict[str, Any]:
    """How many of the counterfactual rows the user's pipeline itself puts in the target class."""
    if len(frame) == 0:
        return {"checked": 0, "approved": 0}
    p = proba(frame.reset_index(drop=True))[:, target]
    return {"checked": int(len(frame)), "approved": int((p >= 0.5).sum()), "min_probability": float(p.min())}


def format_pipeline_table(result: dict[str, Any]) -> str:
    """A terminal table of :func:`run_pipeline_benchmark`'s result."""
    lines = [f"German credit, raw pipeline ({result['bundle_model']}), {result['n']} denied applicants, "
             f"m = {result['max_changes']}, confidence {result['min_probability']}; bundle built in {result['build_seconds']} s",
             "method        validity  l0 mean  LOF    violations  approved by the pipeline  seconds  per s"]
    rows = [("recourse", result["recourse"])] + [(k, v) for k, v in result["peers"].items()]
    for name, r in rows:
        if not isinstance(r, dict):
            lines.append(f"{name:<13} {r}")
            continue
        ok = r.get("pipeline_approves", {})
        approved = f"{ok.get('approved')}/{ok.get('checked')}" if ok else "n/a"
        lines.append(f"{name:<13} {r['validity']:>8.1%}  {r['l0_mean']:>7.2f}  {r['lof_mean']:.3f}  {r['violations']:>10}  "
                     f"{approved:>24}  {r['seconds']:>7.2f}  {r['per_second']:>5.1f}")
    if "speedup_vs_dice_random" in result:
        lines.append(f"speed: {result['speedup_vs_dice_random']:.0f}x DiCE random")
    if result["peers"].get("dice_random") == DICE_MISSING:
        lines.append("DiCE: " + DICE_MISSING)
    return "\n".join(lines)
