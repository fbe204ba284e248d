"""The population run: stream the population in chunks through the engine, write one part per chunk, resume.

Each chunk is validated, scored by the model, the denied applicants go through the engine in
one batch (``engine.explain``), the protected attributes are probed, and — for linear bundles —
the exact MILP answers are added.  The per-applicant table of chunk k is written atomically to
``OUT/parts/part-k.parquet``; a run started again with the same input and settings skips the
chunks whose part exists, so nothing is lost or counted twice.  The final stage (stability
sample, aggregates, report, merged table) reads the parts back, selected columns only.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pandas as pd

from ..data import DATASETS, all_entries_unless, coerce_table, format_row_errors, prepare_out_dir
from ..errors import OptionsError, RecordValidationError
from ..options import RequestOptions
from .io import (AuditInputError, check_columns, count_rows, done_chunks, iter_chunks, merge_parts, part_path,
                 population_format, read_columns, write_part)
from .probe import probe_chunk, protected_values

STATE_FILE = "state.json"
STATE_VERSION = 1


@dataclass
class AuditConfig:
    """Settings of one audit (all but ``engine``/``scheduler``/``progress`` enter the resume fingerprint)."""

    group_by: list[str] = field(default_factory=list)
    protected: list[str] | None = None          # default: the group-by columns that are model inputs
    bins: dict[str, list[float]] = field(default_factory=dict)  # numeric group columns; default quartiles
    max_changes: int | None = None               # default: the bundle's m
    density: str | None | bool = True            # True: the bundle's density
    chunk_size: int = 2000
    stability_n: int = 200
    stability_noise: float = 0.1                 # noise σ as a fraction of each feature's cost scale
    bootstrap: int = 1000
    exact: str = "auto"                          # auto (linear bundles), on, off
    exact_limit: int | None = None               # exact answers only for denied rows with row_id < limit
    seed: int = 0
    output_format: str = "parquet"               # per-applicant table: parquet or csv

    def fingerprint(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class AuditPlan:
    """What every chunk needs, fixed before the run (and saved in the state file for a resume)."""

    config: AuditConfig
    columns: list[str]          # columns read from the population
    features: list[str]         # schema features
    max_changes: int
    density: str | None | bool
    bins: dict[str, list[float]]
    protected: dict[str, list]  # feature -> [(value, band)]
    favourable: int             # index of the favourable class
    exact: bool

    def to_json(self) -> dict[str, Any]:
        return {"config": self.config.fingerprint(), "columns": self.columns, "max_changes": self.max_changes,
                "density": self.density, "bins": self.bins, "exact": self.exact}


# ---------------------------------------------------------------------- planning
def train_raw_values(engine, names: list[str]) -> dict[str, np.ndarray]:
    """Raw training values of numeric features (decoded from the bundle's scaled training rows)."""
    out = {}
    if engine.train_encoded is None:
        return out
    for fc in engine.encoder.layout:
        feat = fc.feature
        if feat.name in names and feat.is_numeric:
            lo, hi = feat.range
            out[feat.name] = lo + engine.train_encoded[:, fc.start] * (hi - lo)
    return out


def default_bins(values: np.ndarray, integer: bool) -> list[float]:
    """Quartile edges (rounded to whole numbers for integer columns) of the finite values, duplicates dropped."""
    values = values[np.isfinite(values)]
    if values.size == 0:
        raise ValueError("no numeric values to choose band edges from")
    q = np.quantile(values, [0.25, 0.5, 0.75])
    if integer:
        q = np.round(q)
    return sorted({float(v) for v in q})


def make_plan(engine, population: Path | None, columns: list[str], config: AuditConfig,
              first_chunk: pd.DataFrame | None) -> AuditPlan:
    """Check the options against the schema and the population; fix bins, probe values, m, exactness."""
    schema = engine.schema
    if config.chunk_size < 1:
        raise AuditInputError(f"`chunk_size`: must be at least 1, got {config.chunk_size}")
    if config.exact not in ("auto", "on", "off"):
        raise AuditInputError(f"`exact`: expected auto, on or off, got {config.exact!r}")
    if config.output_format not in ("parquet", "csv"):
        raise AuditInputError(f"`output_format`: expected parquet or csv, got {config.output_format!r}")
    if population is not None:
        check_columns(population, columns, schema, config.group_by)
    numeric_groups = [g for g in dict.fromkeys([*config.group_by, *(config.protected or [])])
                      if (g in schema.names and schema.feature(g).is_numeric)
                      or (g not in schema.names and first_chunk is not None and g in first_chunk
                          and pd.api.types.is_numeric_dtype(first_chunk[g]) and not pd.api.types.is_bool_dtype(first_chunk[g]))]
    for name in config.bins:
        if name not in config.group_by:
            raise AuditInputError(f"`bins`: '{name}' is not a `group_by` column")
        if name not in numeric_groups:
            raise AuditInputError(f"`bins`: '{name}' is not a numeric column (its values are categories and are grouped "
                                  "as they are); `bins` applies to numeric grouping columns only")
    protected = config.protected if config.protected is not None else [g for g in config.group_by if g in schema.names]
    unknown = [p for p in protected if p not in schema.names]
    if unknown:
        raise AuditInputError(f"`protected`: {', '.join(repr(u) for u in unknown)} is not a model input "
                              f"(schema features: {', '.join(schema.names)})")
    train = train_raw_values(engine, numeric_groups)
    bins: dict[str, list[float]] = {}
    for g in sorted(numeric_groups):
        if g in config.bins:
            bins[g] = sorted(float(v) for v in config.bins[g])
        elif g in train:
            bins[g] = default_bins(train[g], schema.feature(g).kind == "integer")
        elif first_chunk is not None:
            try:
                bins[g] = default_bins(pd.to_numeric(first_chunk[g], errors="coerce").to_numpy(dtype=float), False)
            except ValueError:
                raise AuditInputError(f"`group_by`: column '{g}' has no values in the first {len(first_chunk)} rows to choose "
                                      f"its bands from (all missing); give the band edges as `bins[{g!r}]`") from None
    try:  # the one options policy (recourse.options): above the number of features means every feature
        m = engine.resolve(RequestOptions(max_changes=config.max_changes)).config.max_changes
    except OptionsError as exc:
        raise AuditInputError("; ".join(f"`{e.field}`: {e.message}" for e in exc.errors)) from None
    favourable = engine.classes.index(schema.target.favourable) if schema.target else 1
    exact = False
    if config.exact != "off":
        from ..milp import linear_consequences, linear_margin

        exact = linear_margin(engine, favourable) is not None
        if config.exact == "on" and not exact:
            raise AuditInputError("`exact='on'`: the bundle's model is not a linear (logistic-regression) binary model")
        if exact and not linear_consequences(engine.encoder.action_set):
            if config.exact == "on":
                raise AuditInputError("`exact='on'`: the schema's consequences move a feature off its lattice (an "
                                      "effect would need snapping), which the exact (MILP) reference does not model; "
                                      "use exact='off'")
            exact = False
    read = list(dict.fromkeys(schema.names + [g for g in config.group_by if g not in schema.names]))
    return AuditPlan(config, read, schema.names, m, config.density, bins,
                     protected_values(schema, protected, bins, train), favourable, exact)


# ---------------------------------------------------------------------- one chunk
def validate_chunk(engine, chunk: pd.DataFrame, offset: int, source: str) -> pd.DataFrame:
    """Validated records of the schema features; errors name the population row (1-based, header excluded)."""
    try:
        return engine.validate(coerce_table(chunk[engine.schema.names], engine.schema))
    except RecordValidationError as exc:
        raise AuditInputError(format_row_errors(exc.errors, source, offset)) from None


def action_key(action) -> str:
    """A short, groupable name of one action: 'decrease duration', 'purpose → used car', 'telephone on'."""
    a, b = action.from_, action.to
    if isinstance(b, bool) or isinstance(a, bool):
        return f"{action.feature} {'on' if b else 'off'}"
    if isinstance(b, str) and isinstance(a, str):
        return f"{action.feature} → {b}"
    return f"{'increase' if float(b) > float(a) else 'decrease'} {action.feature}"


def process_chunk(engine, chunk: pd.DataFrame, k: int, plan: AuditPlan, source: str = "population") -> pd.DataFrame:
    """Per-applicant table for chunk k: decision, recourse status, changes, cost, actions, LOF, probe, exact."""
    offset = k * plan.config.chunk_size
    frame = validate_chunk(engine, chunk, offset, source)
    n = len(frame)
    x = engine.encoder.encode(frame)
    probs = engine.predict_proba(x)
    pred = probs.argmax(1)
    denied = pred != plan.favourable
    out = pd.DataFrame({"row_id": np.arange(offset, offset + n, dtype=np.int64)})
    for name in plan.features:
        out[f"x_{name}"] = frame[name].to_numpy()
    for g in plan.config.group_by:
        if g not in plan.features:
            out[f"g_{g}"] = chunk[g].to_numpy()
    out["denied"] = denied
    out["p_favourable"] = probs[:, plan.favourable]
    status = np.where(denied, "no_recourse_found", "approved").astype(object)
    n_changes = np.where(denied, -1, 0).astype(np.int64)
    cost = np.where(denied, np.nan, 0.0)
    l2 = np.where(denied, np.nan, 0.0)
    lof = np.full(n, np.nan)
    actions = np.full(n, "", dtype=object)
    keys = np.full(n, "", dtype=object)
    cfs = np.full(n, "", dtype=object)
    message = np.full(n, "", dtype=object)
    rows = np.flatnonzero(denied)
    if rows.size:
        answers = engine.explain(frame.iloc[rows].reset_index(drop=True), max_changes=plan.max_changes, density=plan.density)
        for i, r in zip(rows, answers):  # unpack result objects (no numerics here)
            message[i] = r.message
            if r.status == "already_favourable":  # cannot happen (same model), kept for safety
                status[i], n_changes[i], cost[i] = "approved", 0, 0.0
                continue
            if not r.found:
                continue
            status[i] = "recourse_found"
            n_changes[i] = int(r.metrics["l0"])
            cost[i], l2[i], lof[i] = r.metrics["cost"], r.metrics["l2"], r.metrics["lof"]
            actions[i] = " | ".join(a.text for a in r.actions)
            keys[i] = ";".join(action_key(a) for a in r.actions)
            cfs[i] = json.dumps({a.feature: a.to for a in [*r.actions, *r.consequences]}, default=_plain)
    out["status"] = status
    out["n_changes"] = n_changes
    out["cost"] = cost
    out["l2"] = l2
    out["lof"] = lof
    out["actions"] = actions.astype(str)
    out["action_keys"] = keys.astype(str)
    out["counterfactual"] = cfs.astype(str)
    out["message"] = message.astype(str)
    for name, flips in probe_chunk(engine, frame, pred, plan.protected, plan.bins, x).items():
        out[f"probe_{name}"] = flips
    if plan.exact:
        _add_exact(engine, frame, out, rows, plan)
    return out


def group_column(plan_features: list[str], name: str) -> str:
    """Column of the per-applicant table that holds group-by column ``name``."""
    return f"x_{name}" if name in plan_features else f"g_{name}"


def _add_exact(engine, frame: pd.DataFrame, out: pd.DataFrame, rows: np.ndarray, plan: AuditPlan) -> None:
    from ..milp import exact_recourse

    limit = plan.config.exact_limit
    if limit is not None:  # exact answers for the denied applicants among the first `limit` rows
        rows = rows[out["row_id"].to_numpy()[rows] < limit]
    status = np.full(len(out), "", dtype=object)
    cost = np.full(len(out), np.nan)
    changes = np.full(len(out), -1, dtype=np.int64)
    if rows.size:
        res = exact_recourse(engine, frame.iloc[rows].reset_index(drop=True), plan.max_changes, plan.favourable)
        status[rows], cost[rows], changes[rows] = res.status, res.cost, res.n_changes
    out["exact_status"] = status.astype(str)
    out["exact_cost"] = cost
    out["exact_n_changes"] = changes


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else str(value)


# ---------------------------------------------------------------------- the run
def fingerprint(population: Path, bundle_hash: str, plan: AuditPlan) -> str:
    """Hash of the input file (name, size, mtime), the bundle and the plan: a resume must match it."""
    st = population.stat()
    data = json.dumps({"input": str(population.resolve()), "size": st.st_size, "mtime": st.st_mtime_ns,
                       "bundle": bundle_hash, "plan": plan.to_json(), "version": STATE_VERSION}, sort_keys=True, default=str)
    return hashlib.sha256(data.encode()).hexdigest()


def is_audit_dir(out: Path) -> bool:
    """Whether ``out`` holds an audit (its state file) or only the bundled population an audit writes first."""
    ours = {f"population-{name}.parquet" for name in DATASETS}
    return (out / STATE_FILE).is_file() or all(p.is_file() and p.name in ours for p in out.iterdir())


def make_out_dir(out: Path) -> None:
    """Create the output directory, or raise an AuditInputError saying why not; a non-empty
    directory that holds no audit is refused, so that no file of the user's is overwritten."""
    prepare_out_dir(out, all_entries_unless(is_audit_dir), "an audit's (state.json and its outputs)", AuditInputError)


def _read_state(state: Path) -> dict[str, Any]:
    """The saved state of an earlier audit in OUT; a damaged file raises AuditInputError."""
    try:
        previous = json.loads(state.read_text())
    except (OSError, ValueError) as exc:  # unreadable, not UTF-8, not JSON
        raise AuditInputError(f"`out`: {state} is damaged ({exc.__class__.__name__}); use `fresh=True` to start over, "
                              "or a new `out` directory") from None
    if not isinstance(previous, dict):
        raise AuditInputError(f"`out`: {state} is damaged (not a JSON object); use `fresh=True` to start over, "
                              "or a new `out` directory")
    return previous


def prepare_out(out: Path, fp: str, fresh: bool) -> Path:
    """Create OUT (and OUT/parts); refuse to mix two different audits in one directory."""
    make_out_dir(out)
    parts = out / "parts"
    state = out / STATE_FILE
    if state.is_file():
        previous = {} if fresh else _read_state(state)
        if previous.get("fingerprint") != fp:
            if not fresh and not previous.get("stopped_by_input"):  # a run stopped by bad input may start over
                raise AuditInputError(f"`out`: {out} holds an audit of a different population, bundle or settings; "
                                      "use a new `out` directory or `fresh=True` to start over")
            for p in parts.glob("part-*"):
                p.unlink()
        elif fresh:
            for p in parts.glob("part-*"):
                p.unlink()
    parts.mkdir(parents=True, exist_ok=True)
    state.write_text(json.dumps({"fingerprint": fp, "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}))
    return parts


def mark_stopped(out: Path, reason: str) -> None:
    """Record in the state file that bad input stopped the run: the next run on ``out`` (with the
    input fixed) starts over instead of refusing a different population."""
    state = out / STATE_FILE
    data = _read_state(state) if state.is_file() else {}
    data["stopped_by_input"] = reason[:500]
    state.write_text(json.dumps(data))


def pending_chunks(population: Path, plan: AuditPlan, parts: Path) -> Iterator[tuple[int, pd.DataFrame]]:
    """Chunks of the population whose part is not written yet."""
    done = done_chunks(parts)
    for k, chunk in iter_chunks(population, plan.config.chunk_size, plan.columns):
        if k not in done:
            yield k, chunk


def run_population(engine, population: Path, plan: AuditPlan, parts: Path, *, progress: bool = True,
                   on_chunk: Callable[[int], None] | None = None) -> dict[str, Any]:
    """In-process population run; returns timing figures.  ``on_chunk(k)`` is called after each part is written."""
    total = count_rows(population)
    done_rows = sum(min(plan.config.chunk_size, total - k * plan.config.chunk_size) for k in done_chunks(parts)
                    if k * plan.config.chunk_size < total)
    started = time.perf_counter()
    processed = 0
    with _progress(total, done_rows, progress) as bar:
        for k, chunk in pending_chunks(population, plan, parts):
            table = process_chunk(engine, chunk, k, plan, source=str(population))
            write_part(table, parts, k)
            processed += len(table)
            bar.update(len(table))
            if on_chunk is not None:
                on_chunk(k)
    return {"rows_processed": processed, "rows_resumed": done_rows, "seconds": time.perf_counter() - started}


def _progress(total: int, initial: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="applicant", disable=not enabled, desc="audit", dynamic_ncols=True)


__all__ = ["AuditConfig", "AuditPlan", "make_plan", "process_chunk", "run_population", "prepare_out", "fingerprint",
           "pending_chunks", "group_column", "action_key", "merge_parts", "read_columns", "population_format", "part_path"]
