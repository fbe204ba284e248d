"""``recourse bench scfe``: S-CFE on the bundled data sets, with DiCE ("random") as a peer when installed.

Protocols (the held-out split of :meth:`recourse.data.Dataset.split`, the same as the bundle's):

* **wine** (the S-CFE paper's protocol): the 100 held-out rows, each pushed to the class the
  model does not predict (m = 2 by default).
* **german**: the held-out rows the model denies (predicts class 2), the first ``n`` of them (or
  all there are); target class 1, approved (m = 3 by default).

The model, the densities and the LOF models are loaded/fitted before timing; a warm-up
``explain`` on two rows (excluded from timing) makes the first timed call representative.  Then
ONE batched ``engine.explain`` call over all points is timed (wall clock).  Every metric is
recomputed from the returned raw counterfactuals by :mod:`recourse.metrics` (model re-called on
the decoded values, constraints re-checked), so S-CFE and the peer are measured alike.

Peer (optional ``bench`` extra, ``pip install -e .[bench]``): DiCE's model-agnostic "random"
method on the *same* torch model (through DiCE's "sklearn" backend: a wrapper whose
``predict_proba`` encodes raw DataFrames with the engine's encoder), the same points, one
counterfactual per query, immutable features held fixed (``features_to_vary`` = the mutable
features) and ``permitted_range`` = the schema's ranges (numeric) / levels (categorical,
ordinal).  DiCE neither limits the number of changes to m nor knows directions, so its
violations are counted with the same m and reported as they are (``violation_kinds`` says
which).  Note that DiCE 0.12's random sampler draws continuous values from
``uniform(low, high + 10**-precision)``, so some of its outputs lie one rounding step above the
permitted range; those count as range violations.  Conversions for DiCE: binary
features become the strings "True"/"False" (DiCE treats them as categorical) and outcomes the
class indices 0/1; its outputs are converted back (integers only when whole, so a fractional
value still counts as a type violation).  DiCE's own messages and progress bars are captured, not printed.
"""
from __future__ import annotations

import contextlib
import io
import math
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from recourse.bundle import Bundle, build_dataset_bundle, demo_bundle, load_bundle, recourse_home
from recourse.config import DEFAULT_DENSITY
from recourse.data import load_dataset
from recourse.errors import BundleError
from recourse.metrics import Evaluator
from recourse.results import to_jsonable
from recourse.scfe import RecourseEngine

from .common import sync as _sync
from .progress import Steps

BENCH_DATASETS = ("wine", "german", "adult")
BENCH_DENSITIES = ("kde", "gmm", "knn", "none")
BENCH_MODELS = ("mlp", "logistic", "gbm", "hgb", "forest")
BENCH_GRADIENTS = ("surrogate", "zeroth")
DICE_METHODS = ("random", "genetic")
ZEROTH_DIRECTIONS, ZEROTH_SIGMA = 16, 0.05
DEFAULT_M = {"wine": 2, "german": 3, "adult": 3}
DICE_MISSING = "not installed (pip install -e .[bench])"

__all__ = ["run_scfe_benchmark", "format_table", "benchmark_points", "run_dice_random", "run_dice", "DiceModel",
           "BENCH_MODELS", "BENCH_GRADIENTS", "DICE_METHODS", "BENCH_DATASETS", "BENCH_DENSITIES", "DEFAULT_M"]


# ---------------------------------------------------------------------- set-up
def _bundle(dataset: str, bundle_dir: str | Path | None, device: Any, seed: int, model: str = "mlp", *,
            progress: Any = None) -> Bundle:
    """Reuse (or build) the bundle: ``bundle_dir`` if given, else the cached demo bundle (mlp, seed 0)
    or ``$RECOURSE_HOME/bundles/<dataset>[-<model>][-seed<seed>]`` (``progress``: the stage callback
    of a build, :data:`recourse.bundle.StageProgress`)."""
    if bundle_dir is None and seed == 0 and model == "mlp":
        return demo_bundle(dataset, device=device)
    name = dataset + ("" if model == "mlp" else f"-{model}") + ("" if seed == 0 else f"-seed{seed}")
    path = Path(bundle_dir) if bundle_dir is not None else recourse_home() / "bundles" / name
    if (path / "metadata.json").is_file():
        try:
            loaded = load_bundle(path, device=device)
            if bundle_dir is not None or loaded.metadata.get("model") == model:  # a given bundle is used as it is
                return loaded
        except BundleError:
            pass
    build_dataset_bundle(dataset, path, model=model, seed=seed, progress=progress)
    return load_bundle(path, device=device)


def _engine(bundle: Bundle, gradient: str, device: Any, seed: int) -> RecourseEngine:
    """The bundle's engine; ``gradient="zeroth"`` steers with zeroth-order estimates on the real model.

    Zeroth order (models with a ``verifier``, i.e. tree ensembles): the solver's classifier is
    :class:`~recourse.surrogate.ZerothOrderClassifier` (antithetic Gaussian smoothing,
    q = ZEROTH_DIRECTIONS directions, σ = ZEROTH_SIGMA) around the real model instead of the
    distilled surrogate; verification is on the real model either way.
    """
    if gradient not in BENCH_GRADIENTS:
        raise ValueError(f"unknown gradient {gradient!r}; choose from {', '.join(BENCH_GRADIENTS)}")
    if gradient == "surrogate" or bundle.verifier is None:
        return bundle.engine(device=device)
    from recourse.surrogate import ZerothOrderClassifier

    base = bundle.engine(device=device)
    zo = ZerothOrderClassifier(bundle.verifier, directions=ZEROTH_DIRECTIONS, sigma=ZEROTH_SIGMA, seed=seed)
    return RecourseEngine(bundle.schema, zo, bundle.densities, bundle.train_encoded, bundle.train_labels,
                          config=base.config, device=device, verifier=bundle.verifier)


def benchmark_points(dataset: str, engine: RecourseEngine, n: int) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """(raw query rows, their positions in the held-out split, target class indices) of the protocol:
    Wine's held-out rows each pushed to the other class; for the credit-like data sets (German,
    Adult) the held-out rows the model does not give the schema's favourable class."""
    _, _, test, _ = load_dataset(dataset).split()
    rows = engine.validate(test)
    pred = engine.predict_proba(engine.encoder.encode(rows)).argmax(axis=1)
    if dataset == "wine":
        positions = np.arange(min(n, len(rows)))
        targets = 1 - pred[positions]  # the class the model does not predict
    else:
        favourable = engine.classes.index(engine.schema.target.favourable)
        positions = np.flatnonzero(pred != favourable)[:n]
        targets = np.full(len(positions), favourable)
    return rows.iloc[positions].reset_index(drop=True), positions, targets.astype(np.int64)


def _frame_of(records: list[Any], columns: list[str], found: np.ndarray) -> pd.DataFrame:
    """Counterfactual records as a DataFrame aligned with the queries (NaN rows where none)."""
    out = pd.DataFrame([r if ok else {} for r, ok in zip(records, found)], columns=columns)
    return out.astype(object)


# ---------------------------------------------------------------------- S-CFE
def run_scfe_benchmark(
    dataset: str = "wine",
    density: str | None = DEFAULT_DENSITY,
    n: int = 100,
    max_changes: int | None = None,
    bundle_dir: str | Path | None = None,
    peers: bool = True,
    device: str | torch.device | None = None,
    seed: int = 0,
    model: str = "mlp",
    gradient: str = "surrogate",
    dice_methods: tuple[str, ...] = DICE_METHODS,
    alternatives: int | None = None,
    min_probability: float | None = None,
    progress: Any = None,
    density_weight: float | None = None,
) -> dict[str, Any]:
    """Run the protocol of ``dataset`` (see the module docstring) and return a JSON-ready dict.

    ``density_weight``: τ of the plausibility term (None: the density's default weight).
    ``min_probability``: the confidence every answer must reach (None: the bundle's); the result's
    ``probability`` holds the quantiles (min, 10 %, median, 90 %) of the answers' target-class
    probabilities and ``below_min_probability`` the number of answers under the minimum.

    ``model``: the bundle's model kind (mlp, logistic, or a tree ensemble gbm, hgb, forest whose
    bundle holds a distilled surrogate); ``gradient``: for tree ensembles, steer the solver with
    the surrogate ("surrogate") or zeroth-order estimates on the real model ("zeroth"); answers
    are verified on the real model either way, and DiCE runs on the real model too.
    ``dice_methods``: the DiCE peers to run (``peers.dice_random``, ``peers.dice_genetic``).
    ``alternatives``: K, also time ``explain(alternatives=K)`` on the same points and report
    ``alternatives`` = {k, seconds, share_two_plus (share of the rows with any recourse that get
    ≥ 2 distinct verified alternatives), mean_count, diversity_mean (mean pairwise Jaccard
    distance, over rows with ≥ 2), violations (constraint checks of every alternative)}.

    Keys: ``dataset, density, n, max_changes, found, validity, l0_mean, l0_std, l2_mean, l2_std,
    cost_mean, lof_mean, lof_std, ynn_mean, redundancy_mean, violations, seconds, per_second,
    no_recourse`` (list of ``{index, reason}``, ``index`` = position in the held-out split),
    ``device, torch_threads, bundle_hash, peers`` (and ``speedup_vs_dice_random`` when DiCE ran).
    ``seed`` seeds torch and DiCE's sampling; a seed other than 0 (without ``bundle_dir``) trains
    its own bundle with that seed.  ``progress``: told ``progress(done, total, stage)`` before each
    phase (:mod:`benchmarks.progress`; None: silent).
    """
    if dataset not in BENCH_DATASETS:
        raise ValueError(f"unknown benchmark data set {dataset!r}; choose from {', '.join(BENCH_DATASETS)}")
    density_name = None if density in (None, "none", False) else str(density)
    if density_name is not None and density_name not in BENCH_DENSITIES:
        raise ValueError(f"unknown density {density!r}; choose from {', '.join(BENCH_DENSITIES)}")
    if model not in BENCH_MODELS:
        raise ValueError(f"unknown model {model!r}; choose from {', '.join(BENCH_MODELS)}")
    if gradient not in BENCH_GRADIENTS:
        raise ValueError(f"unknown gradient {gradient!r}; choose from {', '.join(BENCH_GRADIENTS)}")
    unknown = [d for d in dice_methods if d not in DICE_METHODS]
    if unknown:
        raise ValueError(f"unknown DiCE method {unknown[0]!r}; choose from {', '.join(DICE_METHODS)}")
    m = int(max_changes) if max_changes is not None else DEFAULT_M[dataset]
    step = Steps(progress, 4 + (alternatives is not None) + (len(dice_methods) if peers else 0))
    torch.manual_seed(seed)
    step("bundle")
    bundle = _bundle(dataset, bundle_dir, device, seed, model, progress=step.nested("bundle"))
    engine = _engine(bundle, gradient, device, seed)
    if density_weight is not None:
        engine = engine.with_config(density_weight=float(density_weight))
    step("points")
    queries, positions, targets = benchmark_points(dataset, engine, n)
    target_values = [engine.classes[t] for t in targets]
    evaluator = Evaluator(engine.schema, engine.predict_proba, bundle.train_encoded, bundle.train_labels).prepare()

    # warm-up (not timed): kernels, the engine's LOF models, the density's caches
    step("warm-up")
    if len(queries):
        engine.explain(queries.head(2), max_changes=m, density=density_name, target=target_values[:2],
                       min_probability=min_probability)
    step(f"S-CFE on {len(queries)} points")
    _sync(engine.device)
    started = time.perf_counter()
    answers = engine.explain(queries, max_changes=m, density=density_name, target=target_values,
                             min_probability=min_probability)
    _sync(engine.device)
    seconds = time.perf_counter() - started

    found = np.array([a.found for a in answers], dtype=bool)
    cfs = _frame_of([a.counterfactual for a in answers], engine.schema.names, found)
    summary = evaluator.summarise(queries, cfs, targets, m, found=found, seconds=seconds)
    result: dict[str, Any] = {"dataset": dataset, "model": bundle.metadata.get("model", model),
                              "gradient": gradient if bundle.verifier is not None else "exact",
                              "density": density_name or "none",
                              "density_weight": engine.config.with_(density=density_name).tau(), "max_changes": m}
    result.update(summary)
    queries_count = getattr(engine.classifier, "queries", None)
    if queries_count is not None:
        result["model_queries_per_row"] = queries_count / max(len(queries), 1)
    if bundle.metadata.get("surrogate"):
        result["surrogate"] = bundle.metadata["surrogate"]
    level = min_probability if min_probability is not None else engine.config.min_probability
    probs = np.array([a.counterfactual_decision.probability for a in answers if a.found])
    result["min_probability"] = level
    result["probability"] = ({name: float(np.quantile(probs, q)) for name, q in
                              (("min", 0.0), ("q10", 0.1), ("median", 0.5), ("q90", 0.9))} if probs.size else {})
    result["below_min_probability"] = int((probs < (level or 0.0) - 1e-9).sum())
    result["no_recourse"] = [{"index": int(positions[i]), "reason": answers[i].message}
                             for i in np.flatnonzero(~found)]
    if alternatives is not None:
        step(f"alternatives (K={int(alternatives)})")
        result["alternatives"] = _alternatives_summary(engine, queries, target_values, m, density_name, int(alternatives))
    result["device"] = str(engine.device)
    result["torch_threads"] = torch.get_num_threads()
    result["bundle_hash"] = bundle.hash
    result["peers"] = {}
    if peers:
        train, y_train, _, _ = load_dataset(dataset).split()
        labels = np.array([engine.classes.index(v) if v in engine.classes else int(v) for v in y_train])
        for method in dice_methods:
            step(f"DiCE {method}")
            dice = run_dice(engine, engine.validate(train), labels, queries, targets, m, evaluator, seed=seed,
                            method=method)
            result["peers"][f"dice_{method}"] = dice
            if isinstance(dice, dict) and dice.get("per_second"):
                result[f"speedup_vs_dice_{method}"] = result["per_second"] / dice["per_second"]
    step.finish()
    return to_jsonable(result)


def _alternatives_summary(engine: RecourseEngine, queries: pd.DataFrame, target_values: list[Any], m: int,
                          density: str | None, k: int) -> dict[str, Any]:
    """``explain(alternatives=k)`` on the benchmark points: timing, share with ≥ 2, diversity, violations."""
    from recourse.constraints import violations

    _sync(engine.device)
    started = time.perf_counter()
    answers = engine.explain(queries, max_changes=m, density=density, target=target_values, alternatives=k)
    _sync(engine.device)
    seconds = time.perf_counter() - started
    found = [a for a in answers if a.found]
    counts = np.array([len(a.alternatives) for a in found])
    diversity = [a.diversity for a in found if a.diversity is not None]
    bad = 0
    for a in found:
        cfs = pd.DataFrame([alt.counterfactual for alt in a.alternatives], columns=engine.schema.names)
        orig = pd.DataFrame([a.applicant] * len(cfs), columns=engine.schema.names)
        bad += sum(bool(v) for v in violations(engine.schema, orig, cfs, m))
    cheaper = sum(any(alt.metrics["cost"] < a.alternatives[0].metrics["cost"] - 1e-9 for alt in a.alternatives[1:])
                  for a in found)
    return {"k": k, "seconds": seconds, "rows_with_recourse": len(found),
            "share_two_plus": float((counts >= 2).mean()) if len(found) else float("nan"),
            "mean_count": float(counts.mean()) if len(found) else float("nan"),
            "diversity_mean": float(np.mean(diversity)) if diversity else float("nan"),
            "violations": int(bad), "rows_with_a_cheaper_alternative": int(cheaper)}


# ---------------------------------------------------------------------- DiCE peer
class DiceModel:
    """A scikit-learn-like classifier over raw feature frames for DiCE's "sklearn" backend.

    ``predict_proba(df)`` turns DiCE's frame back into our raw types (see :func:`from_dice`),
    encodes it with the engine's encoder and calls the engine's torch model.
    """

    def __init__(self, engine: RecourseEngine, proba: Any = None):
        self.engine = engine
        self.proba = proba
        """Optional ``proba(raw frame) -> (N, C)`` in the engine's class order: the user's own model
        (e.g. a raw scikit-learn pipeline) instead of the engine's."""
        self.classes_ = np.arange(len(engine.classes))

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        raw = from_dice(self.engine.schema, pd.DataFrame(frame, columns=self.engine.schema.names))
        if self.proba is not None:
            return np.asarray(self.proba(raw), dtype=float)
        return self.engine.predict_proba(self.engine.encoder.encode(raw))

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        return self.predict_proba(frame).argmax(axis=1)


def to_dice(schema, frame: pd.DataFrame) -> pd.DataFrame:
    """Our raw records as DiCE takes them: binaries as "True"/"False", levels as strings."""
    out = frame[schema.names].copy()
    for feat in schema.features:
        if feat.kind == "binary":
            out[feat.name] = out[feat.name].map(lambda v: "True" if bool(v) else "False").astype(object)
        elif not feat.is_numeric:
            out[feat.name] = out[feat.name].astype(str).astype(object)
        elif feat.kind == "integer":
            out[feat.name] = out[feat.name].astype(np.int64)
        else:
            out[feat.name] = out[feat.name].astype(float)
    return out


def from_dice(schema, frame: pd.DataFrame) -> pd.DataFrame:
    """DiCE's records back in our raw types; integers only where whole (else left fractional)."""
    out = frame.reset_index(drop=True)[schema.names].copy().astype(object)
    for feat in schema.features:
        col = out[feat.name]
        if feat.kind == "binary":
            out[feat.name] = col.map(lambda v: v if isinstance(v, (bool, np.bool_)) else str(v).strip().lower() in ("true", "1", "1.0"))
        elif feat.is_numeric:
            values = pd.to_numeric(col, errors="coerce").to_numpy(dtype=float)
            whole = np.isfinite(values) & (np.abs(values - np.round(values)) <= 1e-9)
            if feat.kind == "integer" and whole.all():
                out[feat.name] = np.round(values).astype(np.int64)
            else:
                out[feat.name] = values
        else:
            out[feat.name] = col.astype(str)
    return out


def run_dice_random(engine: RecourseEngine, train: pd.DataFrame, train_labels: np.ndarray, queries: pd.DataFrame,
                    targets: np.ndarray, max_changes: int, evaluator: Evaluator, seed: int = 0) -> dict[str, Any] | str:
    """DiCE "random" on the same model and points (see :func:`run_dice`)."""
    return run_dice(engine, train, train_labels, queries, targets, max_changes, evaluator, seed=seed, method="random")


def run_dice(engine: RecourseEngine, train: pd.DataFrame, train_labels: np.ndarray, queries: pd.DataFrame,
             targets: np.ndarray, max_changes: int, evaluator: Evaluator, seed: int = 0,
             method: str = "random", proba: Any = None, keep: list | None = None) -> dict[str, Any] | str:
    """DiCE ``method`` ("random" or "genetic") on the same model and points; metrics as for S-CFE
    (or why it could not run).  The model is the engine's real model (``engine.predict_proba``,
    i.e. the verifier for tree ensembles).

    ``train``: the raw training rows (DiCE's data description); ``train_labels``: their class indices;
    ``proba``: DiCE queries this function of raw frames instead (see :class:`DiceModel`); ``keep``:
    a list that receives DiCE's counterfactual rows (a DataFrame of the rows it answered).
    """
    if method not in DICE_METHODS:
        raise ValueError(f"unknown DiCE method {method!r}; choose from {', '.join(DICE_METHODS)}")
    try:
        import dice_ml
    except ImportError:
        return DICE_MISSING
    schema = engine.schema
    train = to_dice(schema, train)
    outcome = "__class__"
    train[outcome] = np.asarray(train_labels).astype(int)
    continuous = [f.name for f in schema.features if f.is_numeric]
    data = dice_ml.Data(dataframe=train, continuous_features=continuous, outcome_name=outcome)
    model = dice_ml.Model(model=DiceModel(engine, proba), backend="sklearn")
    explainer = dice_ml.Dice(data, model, method=method)
    to_vary = [f.name for f in schema.features if not f.immutable and f.actionable]  # the schema's actionable features
    permitted = {}
    for f in schema.features:
        if f.name not in to_vary:
            continue
        if f.is_numeric:
            permitted[f.name] = [float(f.range[0]), float(f.range[1])]
        elif f.kind == "binary":
            permitted[f.name] = ["False", "True"]
        else:
            permitted[f.name] = [lvl for lvl in f.level_names if lvl in set(train[f.name])]
    desired: Any = int(targets[0]) if len(set(targets.tolist())) == 1 else "opposite"
    query_frame = to_dice(schema, queries)

    extra: dict[str, Any] = {"random_seed": seed} if method == "random" else {}

    def call(frame: pd.DataFrame) -> Any:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()), \
                warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return explainer.generate_counterfactuals(
                frame, total_CFs=1, desired_class=desired, features_to_vary=to_vary,
                permitted_range=permitted, verbose=False, **extra)

    state = np.random.get_state()  # DiCE draws from numpy's global generator: seed it, then restore it
    try:
        np.random.seed(seed)
        call(query_frame.head(1))  # warm-up, not timed
        np.random.seed(seed)
        started = time.perf_counter()
        explanation = call(query_frame)
        seconds = time.perf_counter() - started
    except Exception as exc:  # DiCE failing is reported, not fatal to the benchmark
        return f"failed: {type(exc).__name__}: {exc}"
    finally:
        np.random.set_state(state)
    rows, found = [], np.zeros(len(queries), dtype=bool)
    for i, example in enumerate(explanation.cf_examples_list):
        cf = example.final_cfs_df_sparse if example.final_cfs_df_sparse is not None else example.final_cfs_df
        if cf is not None and len(cf):
            rows.append(from_dice(schema, cf.head(1)).iloc[0].to_dict())
            found[i] = True
        else:
            rows.append({})
    cfs = pd.DataFrame(rows, columns=schema.names).astype(object)
    if keep is not None:
        keep.append(cfs[found].reset_index(drop=True))
    summary = evaluator.summarise(queries, cfs, targets, max_changes, found=found, seconds=seconds)
    summary["method"] = (f"dice_ml {method}, total_CFs=1, "
                         + ("sample_size=1000, " if method == "random" else "")
                         + "posthoc sparsity 0.1 (DiCE defaults)")
    try:
        from importlib.metadata import version

        summary["dice_ml_version"] = version("dice-ml")
    except Exception:  # pragma: no cover
        pass
    return summary


# ---------------------------------------------------------------------- human output
def format_table(result: dict[str, Any]) -> str:
    """A plain-text table of S-CFE and its peers for one benchmark result."""
    cols = [("validity", "valid", "{:.2f}"), ("l0_mean", "l0", "{:.2f}"), ("l2_mean", "l2", "{:.3f}"),
            ("lof_mean", "LOF", "{:.2f}"), ("ynn_mean", "yNN", "{:.2f}"), ("redundancy_mean", "redund.", "{:.2f}"),
            ("violations", "viol.", "{:d}"), ("seconds", "seconds", "{:.2f}"), ("per_second", "CF/s", "{:.1f}")]

    def cell(row: dict, key: str, fmt: str) -> str:
        v = row.get(key)
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return "-"
        try:
            return fmt.format(int(v) if fmt == "{:d}" else v)
        except (ValueError, TypeError):
            return str(v)

    tau = f" τ={result['density_weight']:g}" if result.get("density_weight") else ""
    rows = [(f"S-CFE ({result.get('density')}{tau}" + (f", {result['gradient']}" if result.get("gradient") not in (None, "exact") else "")
              + ")", result)]
    notes = []
    for name, peer in (result.get("peers") or {}).items():
        if isinstance(peer, dict):
            rows.append((name.replace("_", " "), peer))
        else:
            notes.append(f"{name}: {peer}")
    header = ["method"] + [c[1] for c in cols]
    body = [[label] + [cell(r, k, f) for k, _, f in cols] for label, r in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *body)]
    line = lambda cells: "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))  # noqa: E731
    out = [f"{result.get('dataset')}: n={result.get('n')}, m={result.get('max_changes')}, model={result.get('model', 'mlp')}, "
           f"device={result.get('device')}, torch threads={result.get('torch_threads')}",
           line(header), line(["-" * w for w in widths])]
    out += [line(b) for b in body]
    for method in DICE_METHODS:
        if f"speedup_vs_dice_{method}" in result:
            out.append(f"speed-up vs DiCE {method}: {result[f'speedup_vs_dice_{method}']:.1f}x")
    alt = result.get("alternatives")
    if isinstance(alt, dict):
        out.append(f"alternatives (K={alt['k']}): {alt['share_two_plus']:.0%} of {alt['rows_with_recourse']} rows with "
                   f"recourse get >= 2 distinct, mean {alt['mean_count']:.2f}, diversity {alt['diversity_mean']:.2f}, "
                   f"violations {alt['violations']}, {alt['seconds']:.2f} s")
    if "model_queries_per_row" in result:
        out.append(f"real-model queries per row (zeroth order): {result['model_queries_per_row']:.0f}")
    out += notes
    if result.get("no_recourse"):
        out.append(f"no recourse for {len(result['no_recourse'])} point(s): "
                   + ", ".join(str(r["index"]) for r in result["no_recourse"][:10])
                   + (" ..." if len(result["no_recourse"]) > 10 else ""))
    return "\n".join(out)
