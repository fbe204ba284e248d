"""The ``recourse`` command: a thin shell (parse, call, format) over the library, the command
bodies in :mod:`commands` and the benchmarks in :mod:`benchmarks`.

Library errors name parameters (``out``, ``chunk_size``); :func:`fail_with` prints them with
the flags that set them (:func:`commands.flags.cli_message`)."""
from __future__ import annotations

import json
import sys
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import typer

if TYPE_CHECKING:
    import torch

    from recourse.schema import FeatureSchema

app = typer.Typer(add_completion=False, rich_markup_mode=None, no_args_is_help=True, help="Sparse, plausible, actionable recourse for tabular models.")
bench_app = typer.Typer(add_completion=False, rich_markup_mode=None, no_args_is_help=True, help="Benchmarks that print figures.")
app.add_typer(bench_app, name="bench")

BAD_INPUT = 2
MAX_CHANGES_LIMIT = 1000
"""Parse-time bound of --max-changes (each command then refuses more than the schema's number of features)."""
SEED_MAX = 2**32 - 1
"""Largest --seed (the seed reaches numpy and scikit-learn, which take 0 .. 2**32 - 1)."""


class DensityName(str, Enum):
    """The registered densities and none (``tests/test_architecture.py`` checks this list against
    the registry; a static list keeps ``--help`` from importing torch)."""

    kde = "kde"
    gmm = "gmm"
    knn = "knn"
    none = "none"


class ModelKind(str, Enum):
    """The registered model kinds (checked against :func:`recourse.models.model_kinds` by the tests)."""

    mlp = "mlp"
    logistic = "logistic"
    linear = "linear"
    gbm = "gbm"
    hgb = "hgb"
    forest = "forest"


class BenchModel(str, Enum):
    """The model kinds the classification benchmarks build bundles of (no score models)."""

    mlp = "mlp"
    logistic = "logistic"
    gbm = "gbm"
    hgb = "hgb"
    forest = "forest"


class DatasetName(str, Enum):
    german = "german"
    wine = "wine"
    adult = "adult"
    diabetes = "diabetes"


class BenchDataset(str, Enum):
    """The data sets the benchmarks compare on (classification targets)."""

    german = "german"
    wine = "wine"
    adult = "adult"


class KeyRole(str, Enum):
    client = "client"
    auditor = "auditor"
    admin = "admin"


class GradientKind(str, Enum):
    surrogate = "surrogate"
    zeroth = "zeroth"


def fail(message: str, code: int = BAD_INPUT) -> None:
    """Print an error for a person (no traceback) and exit."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def fail_with(exc: BaseException, code: int = BAD_INPUT, **flags: str) -> None:
    """Print a library or command error with the parameters it names as flags (``flags``: extra
    name → flag for this command) and exit."""
    from commands.flags import cli_message

    fail(cli_message(exc, **flags), code)


def parse_device(text: Optional[str]) -> "torch.device":
    """--device as a torch device, or exit 2 saying why it cannot be used."""
    from recourse.runtime import parse_device as parse

    try:
        return parse(text)
    except ValueError as exc:
        fail(f"--{exc}")


def open_bundle(bundle: Optional[Path]):
    from recourse.bundle import demo_bundle, load_bundle
    from recourse.errors import BundleError, SchemaError

    try:
        return load_bundle(bundle) if bundle is not None else demo_bundle("german")
    except (BundleError, SchemaError) as exc:  # SchemaError: a bundle's schema.json the current rules refuse
        fail_with(exc)


@app.command()
def explain(
    file: Path = typer.Argument(..., help="Applicants: a JSON object of feature values or a list of them, or a .csv or .parquet table (one per row); a column holding the past decision is left out."),
    bundle: Optional[Path] = typer.Option(None, help="Model bundle directory (default: the German credit demo bundle, built on first use)."),
    max_changes: Optional[int] = typer.Option(None, "--max-changes", "-m", help="Most features the recourse may change; more than the number of features means no limit (default: the bundle's)."),
    density: Optional[DensityName] = typer.Option(None, help="Plausibility term (default: the bundle's)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of text."),
    alternatives: Optional[int] = typer.Option(None, "--alternatives", "-k", help="Also show up to K (1 to 10) verified counterfactuals that change different feature sets, ordered by cost."),
    cost_weight: Optional[list[str]] = typer.Option(None, "--cost-weight", help="FEATURE=W: make changing FEATURE W times as expensive (repeatable), e.g. present_employment=5."),
    fix: Optional[list[str]] = typer.Option(None, "--fix", help="FEATURE: the applicant cannot change it (repeatable), e.g. --fix duration."),
    min_probability: Optional[float] = typer.Option(None, "--min-probability", help="The least probability of the favourable decision every answer must have, 0 to 1 exclusive (default: the bundle's)."),
    limit: Optional[list[str]] = typer.Option(None, "--limit", help="FEATURE=LOW:HIGH: the values the applicant can reach (repeatable; numbers, or level names of an ordinal; an empty end is open), e.g. credit_amount=1000: or savings=:'500 to 1000 DM'."),
    robust: bool = typer.Option(False, "--robust", help="Verify every answer with the model and each of its stored refits, so that it survives retraining (a bundle trained with --family)."),
    at_least: Optional[float] = typer.Option(None, "--at-least", help="A bundle that decides a score: the score to reach, at least this (instead of the bundle's threshold)."),
    at_most: Optional[float] = typer.Option(None, "--at-most", help="A bundle that decides a score: the score to reach, at most this (instead of the bundle's threshold)."),
    progress: bool = typer.Option(True, help="Show a progress bar over the applicants of a large batch (on stderr, when it is a terminal; RECOURSE_PROGRESS=1 shows it anyway)."),
) -> None:
    """Explain a decision and find the recourse: what to change to obtain the favourable decision (or the score asked for)."""
    from commands.explain import explain_rows, is_chunked
    from commands.flags import options_problem
    from commands.progress import progress_bar
    from recourse.errors import OptionsError, RecordValidationError
    from recourse.options import RequestOptions
    from recourse.report import format_recourse
    from recourse.schema import json_type, shorten

    from recourse.data import DataInputError, read_applicants

    loaded = open_bundle(bundle)
    if at_least is not None and at_most is not None:
        fail("--at-least, --at-most: give one of them (the score must be at least one value or at most one value)")
    score_asked = {"at_least": at_least} if at_least is not None else {"at_most": at_most} if at_most is not None else None
    if score_asked is not None and loaded.schema.score_target is None:
        fail("--at-least, --at-most: this bundle decides classes, not a score; they apply to a bundle trained on a score target")
    try:
        payload, notes = read_applicants(file, loaded.schema)
    except DataInputError as exc:
        fail(str(exc))
    if not isinstance(payload, (dict, list)):
        fail(f"invalid applicant in {file}: expected an applicant object or a list of them, got {json_type(payload)}")
    if payload == []:
        fail(f"{file}: holds no applicants (an empty list); give an applicant object or a list of them")
    for note in notes:
        typer.echo(f"note: {note}", err=True)
    try:  # the library's one options policy; the command line only parses
        options = RequestOptions(max_changes=max_changes, alternatives=alternatives,
                                 cost_weights=_parse_cost_weights(cost_weight or []) or None,
                                 density=density.value if density is not None else None,
                                 fixed=list(fix) if fix else None, limits=_parse_limits(limit or []) or None,
                                 min_probability=min_probability, robust=robust or None, target=score_asked)
        engine = loaded.engine()
        bad: dict[int, list] = {}
        with progress_bar(progress and is_chunked(payload), "explain", unit="applicant") as bar:
            try:  # a large batch in chunks (commands/explain.py), answered as by one call
                results = explain_rows(engine, payload, options, progress=bar)
            except RecordValidationError as exc:
                bad = _bad_rows(exc, payload)
                if not bad or len(bad) == len(payload):
                    raise
                good = [row for i, row in enumerate(payload) if i not in bad]
                answered = iter(explain_rows(engine, good, options, progress=bar))
                results = [None if i in bad else next(answered) for i in range(len(payload))]
    except OptionsError as exc:
        fail(options_problem(exc.errors))
    except RecordValidationError as exc:
        lines = "\n".join(f"  - {_row_field(e.field, file)}: {e.message}" for e in exc.errors)
        fail(f"invalid applicant in {file}:\n{lines}")
    number = (lambda i: i + 1) if _is_table(file) else (lambda i: i)  # table rows from 1, list items from 0
    where = (lambda i: f"row {number(i)}") if _is_table(file) else (lambda i: f"item {i}")
    if as_json:
        data = [r.to_dict() if r is not None else
                {"status": "invalid", "row": number(i), "errors": [{"field": f, "message": m} for f, m in bad[i]]}
                for i, r in enumerate(results)]
        typer.echo(json.dumps(data[0] if isinstance(payload, dict) else data, indent=2))
    else:
        typer.echo("\n\n".join(format_recourse(r, engine.schema) if r is not None else
                                f"{where(i)}: invalid, not explained:\n" + "\n".join(f"  - {shorten(f)}: {m}" for f, m in bad[i])
                                for i, r in enumerate(results)))
    if bad:
        rows = ", ".join(where(i) for i in sorted(bad))
        typer.echo(f"error: {len(bad)} of {len(payload)} applicants in {file} are invalid and were not explained ({rows}); "
                   "the others were", err=True)
        raise typer.Exit(PARTIAL)


PARTIAL = 3
"""Exit code of ``explain`` when some applicants of a batch were invalid (the others were answered)."""


def _bad_rows(exc: Any, payload: Any) -> dict[int, list[tuple[str, str]]]:
    """(field, message) errors by row index of a batch (fields ``"3.age"`` → row 3, ``"age"``);
    empty for a single applicant or an error that names no row."""
    if not isinstance(payload, list):
        return {}
    rows: dict[int, list[tuple[str, str]]] = {}
    for e in exc.errors:
        head, _, rest = e.field.partition(".")
        if not head.isdigit():
            return {}
        rows.setdefault(int(head), []).append((rest or head, e.message))
    return rows


def _is_table(file: Path) -> bool:
    """A CSV or Parquet table (rows counted from 1), not a JSON list (items counted from 0)."""
    return file.suffix.lower() in (".csv", ".parquet", ".pq")


def _row_field(field: str, file: Path) -> str:
    """``3.age`` as the reader counts: 'row 4, age' for a CSV table (rows from 1), the field otherwise."""
    from recourse.schema import shorten

    head, sep, rest = field.partition(".")
    if _is_table(file) and head.isdigit():
        return f"row {int(head) + 1}" + (f", {shorten(rest)}" if sep else "")
    return shorten(field)


def _parse_limits(items: list[str]) -> dict[str, list[Any]]:
    """``["FEATURE=LOW:HIGH", ...]`` → {feature: [low, high]}: numbers where they parse, else level
    names, an empty end open (None); each feature once (the options policy checks the rest)."""
    from recourse.schema import shorten

    out: dict[str, list[Any]] = {}
    for item in items:
        name, sep, span = item.partition("=")
        name = name.strip()
        low, colon, high = span.partition(":")
        if not (sep and name and colon):
            fail(f"invalid --limit {shorten(repr(item))}: expected FEATURE=LOW:HIGH, e.g. credit_amount=1000:3000 "
                 "or duration=:24 (an empty end is open)")
        if name in out:
            fail(f"invalid --limit: {shorten(repr(name))} is given more than once")
        out[name] = [_limit_end(low), _limit_end(high)]
    return out


def _limit_end(text: str) -> Any:
    """One end of a --limit: None when empty, a number when it parses as one, else a level name."""
    text = text.strip().strip("'\"")
    if not text:
        return None
    try:
        return float(text) if any(c in text for c in ".eE") else int(text)
    except ValueError:
        return text


def _parse_cost_weights(items: list[str]) -> dict[str, float]:
    """``["FEATURE=W", ...]`` → {feature: W}, each feature once (the syntax only: the ranges and the
    names are the options policy's, :mod:`recourse.options`)."""
    from recourse.schema import shorten

    out: dict[str, float] = {}
    for item in items:
        name, sep, value = item.partition("=")
        name = name.strip()
        try:
            weight = float(value) if sep and name else None
        except ValueError:
            weight = None
        if weight is None:
            fail(f"invalid --cost-weight {shorten(repr(item))}: expected FEATURE=W with W a number > 0, e.g. present_employment=5")
        if name in out:
            fail(f"invalid --cost-weight: {shorten(repr(name))} is given more than once")
        out[name] = weight
    return out


@app.command()
def train(
    dataset: Optional[DatasetName] = typer.Argument(None, help="A bundled data set: german, wine, adult or diabetes (a score target)."),
    data: Optional[Path] = typer.Option(None, help="Your own table (CSV) with one column per schema feature and the target column."),
    schema: Optional[Path] = typer.Option(None, help="Feature schema JSON for --data."),
    target: Optional[str] = typer.Option(None, help="Target column in --data (default: the schema's target name)."),
    out: Optional[Path] = typer.Option(None, help="Bundle directory to write (default for data sets: the demo bundle location)."),
    model: ModelKind = typer.Option(ModelKind.mlp, help="Model to train: mlp (d→20→20→1), logistic (or linear: logistic for classes, ridge regression for a score target), or a tree ensemble: gbm, hgb, forest (with a distilled surrogate for the solver)."),
    max_changes: int = typer.Option(3, "--max-changes", min=1, max=MAX_CHANGES_LIMIT, help="Default m stored in a bundle built from --data (at most the number of features)."),
    seed: int = typer.Option(0, min=0, max=SEED_MAX, help="Random seed (0 to 2**32 - 1)."),
    family: int = typer.Option(0, "--family", min=0, max=64, help="Also fit K refits of the model (same recipe, bootstrap resamples) for robust requests (explain --robust); mlp and logistic only."),
    as_json: bool = typer.Option(False, "--json", help="Print the bundle's path and metadata as JSON."),
    progress: bool = typer.Option(True, help="Show a progress bar of the stages (on stderr)."),
    na_value: list[str] = typer.Option([], "--na-value", help="A text that marks a missing cell in --data, e.g. '?' (repeatable; empty cells and NA are missing anyway)."),
    drop_missing: bool = typer.Option(False, "--drop-missing", help="Leave out the rows of --data with a missing cell (counted in a note) instead of refusing the table."),
    hidden: Optional[str] = typer.Option(None, "--hidden", help="Hidden layer sizes of the mlp, e.g. 32,16 (default 20,20)."),
    force: bool = typer.Option(False, "--force", help="Write the bundle even when its held-out accuracy is no better than always answering the most frequent class."),
) -> None:
    """Build a model bundle (schema, weights, densities, metadata) in seconds.

    --out must be a new or empty directory, or an earlier bundle (which is replaced)."""
    from commands import CommandError
    from commands.train import run_train
    from recourse.data import DataInputError
    from recourse.errors import BundleError, SchemaError

    try:
        notes: list[str] = []
        options: dict = {}
        if hidden is not None:
            if model is not ModelKind.mlp:
                fail("--hidden: sets the sizes of the mlp's hidden layers; give it with --model mlp")
            try:
                options["hidden"] = [int(h) for h in hidden.split(",")]
            except ValueError:
                fail(f"--hidden: expected whole numbers separated by commas, e.g. 32,16; got {hidden!r}")
        bundle = run_train(dataset.value if dataset is not None else None, data, schema, target, out, model.value,
                           max_changes, seed, family, progress=progress, na_values=tuple(na_value),
                           drop_missing=drop_missing, notes=notes, model_options=options, force=force)
    except (CommandError, SchemaError, BundleError, DataInputError) as exc:
        fail_with(exc, path="--data")
    for note in notes:
        typer.echo(f"note: {note}", err=True)
    meta = bundle.metadata
    if as_json:
        typer.echo(json.dumps({"path": str(bundle.path), **{k: meta.get(k) for k in (
            "dataset", "model", "classes", "densities", "defaults", "training", "family", "hash")}}, indent=2))
        return
    typer.echo(f"bundle written to {bundle.path}")
    typer.echo(f"  model {meta['model']}, classes {meta['classes']}, densities {', '.join(meta['densities'])}")
    training = meta["training"]
    if meta.get("score"):  # a score target (regression)
        typer.echo(f"  training R² {training['r2']}, mean absolute error {training['mae']}, "
                   f"decision accuracy {training['accuracy']}, built in {training['seconds']} s")
        for split, words in (("test", f"on the {training.get('test_rows')} test rows"),
                             ("holdout", f"the recipe refitted on 80 % of the rows, scored on the other {training.get('holdout_rows')}")):
            if f"{split}_r2" in training:
                typer.echo(f"  {'test' if split == 'test' else 'held-out'}: R² {training[f'{split}_r2']}, mean absolute error "
                           f"{training[f'{split}_mae']}, decision accuracy {training[f'{split}_accuracy']} (the more frequent "
                           f"side alone: {training.get(f'{split}_majority')}) ({words})")
        typer.echo(f"  hash {meta['hash']}")
        return
    typer.echo(f"  training accuracy {training['accuracy']}, built in {training['seconds']} s")
    for split, words in (("test", f"on the {training.get('test_rows')} test rows"),
                         ("holdout", f"the recipe refitted on 80 % of the rows, scored on the other {training.get('holdout_rows')}")):
        if f"{split}_accuracy" in training:
            auc = training.get(f"{split}_auc")
            typer.echo(f"  {'test' if split == 'test' else 'held-out'}: accuracy {training[f'{split}_accuracy']} "
                       f"(most frequent class alone: {training.get(f'{split}_majority')}), AUC {auc if auc is not None else 'n/a'}, "
                       f"Brier {training.get(f'{split}_brier')} ({words})")
    if meta.get("family"):
        typer.echo(f"  family of {meta['family']['size']} refits for robust requests")
    typer.echo(f"  hash {meta['hash']}")


@bench_app.command("scfe")
def bench_scfe(
    dataset: BenchDataset = typer.Option(BenchDataset.german, help="wine (100 held-out rows, each pushed to the other class) or german, adult (denied test applicants)."),
    density: DensityName = typer.Option(DensityName.gmm, help="Plausibility term."),
    n: int = typer.Option(100, min=1, help="Number of query points."),
    max_changes: Optional[int] = typer.Option(None, "--max-changes", "-m", min=1, max=MAX_CHANGES_LIMIT, help="m (default 2 for wine, 3 otherwise)."),
    peers: bool = typer.Option(True, help="Also run DiCE random and genetic on the same model and points when dice-ml is installed."),
    device: Optional[str] = typer.Option(None, help="torch device, e.g. cuda (default: cpu)."),
    model: BenchModel = typer.Option(BenchModel.mlp, help="Bundle model: mlp, logistic, or a tree ensemble gbm, hgb, forest (built under $RECOURSE_HOME on first use)."),
    gradient: GradientKind = typer.Option(GradientKind.surrogate, help="Tree ensembles: steer with the distilled surrogate or zeroth-order estimates on the real model (answers verified on the real model either way)."),
    alternatives: Optional[int] = typer.Option(None, "--alternatives", min=1, help="Also measure explain --alternatives K on the same points (share with >= 2, diversity)."),
    min_probability: Optional[float] = typer.Option(None, "--min-probability", min=0.0, max=1.0, help="Confidence every answer must reach (default: the bundle's)."),
    density_weight: Optional[float] = typer.Option(None, "--density-weight", min=0.0, help="Weight τ of the plausibility term (default: the density's own: gmm 0.5, kde 2, knn 0.5)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    progress: bool = typer.Option(True, help="Show a progress bar (on stderr, when it is a terminal; RECOURSE_PROGRESS=1 shows it anyway)."),
) -> None:
    """S-CFE on Wine or German credit: validity, sparsity, proximity, plausibility, violations, time."""
    from benchmarks.scfe import format_table, run_scfe_benchmark
    from commands.progress import progress_bar

    dev = parse_device(device)
    with progress_bar(progress, "bench scfe") as bar:
        result = run_scfe_benchmark(dataset.value, density=density.value, n=n, max_changes=max_changes, peers=peers,
                                    device=dev, model=model.value, gradient=gradient.value,
                                    alternatives=alternatives, min_probability=min_probability, progress=bar,
                                    density_weight=density_weight)
    typer.echo(json.dumps(result, indent=2) if as_json else format_table(result))


@bench_app.command("robustness")
def bench_robustness(
    dataset: BenchDataset = typer.Option(BenchDataset.german, help="The bench scfe points of german, wine or adult."),
    refits: int = typer.Option(10, min=1, max=100, help="Refits of the bundle's model on bootstrap resamples (new seeds)."),
    n: int = typer.Option(100, min=1, help="Number of query points."),
    family: int = typer.Option(8, "--family", min=0, max=64, help="Refits in the robust mode's committee (fitted with other seeds than the judging refits; 0: no robust mode)."),
    model: BenchModel = typer.Option(BenchModel.mlp, help="Bundle model: the demo recipe mlp, or logistic; tree ensembles (gbm, hgb, forest) without a robust mode."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    progress: bool = typer.Option(True, help="Show a progress bar (on stderr, when it is a terminal; RECOURSE_PROGRESS=1 shows it anyway)."),
) -> None:
    """Do answers survive a retraining of the model? Invalidation on refits per mode and confidence level."""
    from benchmarks.robustness import format_robustness_table, run_robustness_benchmark
    from commands.progress import progress_bar

    with progress_bar(progress, "bench robustness") as bar:
        result = run_robustness_benchmark(dataset.value, refits=refits, n=n, family=family, progress=bar,
                                          model=model.value)
    typer.echo(json.dumps(result, indent=2) if as_json else format_robustness_table(result))


@bench_app.command("exact")
def bench_exact(
    dataset: BenchDataset = typer.Option(BenchDataset.german, help="The bench scfe points of german, adult or wine."),
    model: BenchModel = typer.Option(BenchModel.logistic, help="Bundle model (logistic: also compared with the exact MILP optimum)."),
    n: int = typer.Option(200, min=1, help="Number of query points."),
    density: DensityName = typer.Option(DensityName.gmm, help="Plausibility term."),
    max_changes: Optional[int] = typer.Option(None, "--max-changes", "-m", min=1, max=MAX_CHANGES_LIMIT, help="m (default 2 for wine, 3 otherwise)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    progress: bool = typer.Option(True, help="Show a progress bar (on stderr, when it is a terminal; RECOURSE_PROGRESS=1 shows it anyway)."),
) -> None:
    """How close to the optimum, and is every "no recourse" proven? The engine with and without its exact step."""
    from benchmarks.exact import format_exact_table, run_exact_benchmark
    from commands.progress import progress_bar

    with progress_bar(progress, "bench exact") as bar:
        result = run_exact_benchmark(dataset.value, model=model.value, n=n, density=density.value, max_changes=max_changes,
                                     progress=bar)
    typer.echo(json.dumps(result, indent=2) if as_json else format_exact_table(result))


class PipelineEstimator(str, Enum):
    logistic = "logistic"
    hgb = "hgb"


@bench_app.command("pipeline")
def bench_pipeline(
    estimator: PipelineEstimator = typer.Option(PipelineEstimator.logistic, help="The pipeline's estimator after its ColumnTransformer."),
    n: int = typer.Option(50, min=1, help="Number of denied held-out applicants."),
    peers: bool = typer.Option(True, help="Also run DiCE random on the same fitted pipeline when dice-ml is installed."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    progress: bool = typer.Option(True, help="Show a progress bar (on stderr, when it is a terminal; RECOURSE_PROGRESS=1 shows it anyway)."),
) -> None:
    """Your model as it is: a scikit-learn pipeline on raw German-credit records, against DiCE on the same pipeline."""
    from benchmarks.pipelines import format_pipeline_table, run_pipeline_benchmark
    from commands.progress import progress_bar

    with progress_bar(progress, "bench pipeline") as bar:
        result = run_pipeline_benchmark(estimator.value, n=n, peers=peers, progress=bar)
    typer.echo(json.dumps(result, indent=2) if as_json else format_pipeline_table(result))


log_app = typer.Typer(add_completion=False, rich_markup_mode=None, no_args_is_help=True,
                      help="The service's explanation log: purge old answers, erase one answer (both recorded).")
app.add_typer(log_app, name="log")


def _open_log(database: Optional[str]):
    from commands import CommandError
    from commands.log import open_existing_log
    from commands.serve import database_target

    try:
        return open_existing_log(database_target(database))
    except CommandError as exc:
        fail(str(exc))


@log_app.command("purge")
def log_purge(
    older_than: float = typer.Option(..., "--older-than", min=0.0, help="Delete every answer older than this many days."),
    database: Optional[str] = typer.Option(None, metavar="PATH|URL", help="The explanation log: a file path or a postgresql:// URL (default: $RECOURSE_DATABASE, else $RECOURSE_HOME/service/explanations.sqlite3)."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Delete every stored answer older than DAYS for good (a retention limit); the purge is recorded."""
    from commands.log import who

    log = _open_log(database)
    try:
        count = log.purge(older_than, by=who())
    finally:
        log.close()
    if as_json:  # also recorded in the log's erasures
        typer.echo(json.dumps({"purged": count, "older_than_days": older_than}))
    else:
        typer.echo(f"purged {count} answer(s) older than {older_than:g} day(s)")


@log_app.command("erase")
def log_erase(
    answer_id: str = typer.Argument(..., help="The id of the answer to erase (32 hexadecimal digits)."),
    database: Optional[str] = typer.Option(None, metavar="PATH|URL", help="The explanation log: a file path or a postgresql:// URL (default: $RECOURSE_DATABASE, else $RECOURSE_HOME/service/explanations.sqlite3)."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Erase one stored answer for good (e.g. on the applicant's request); the erasure is recorded."""
    from api.log import ID_DIGITS, is_answer_id
    from commands.log import who

    if not is_answer_id(answer_id):
        fail(f"{answer_id!r} is not an answer id ({ID_DIGITS} hexadecimal digits)")
    log = _open_log(database)
    try:
        erased = log.erase(answer_id, by=who())
    finally:
        log.close()
    if not erased:
        fail(f"no answer with id {answer_id} in the log")
    typer.echo(json.dumps({"erased": answer_id}) if as_json else f"erased answer {answer_id}")


promises_app = typer.Typer(add_completion=False, rich_markup_mode=None, no_args_is_help=True,
                           help="Promises across model versions: do earlier answers hold under a new bundle?")
app.add_typer(promises_app, name="promises")


@promises_app.command("check")
def promises_check(
    log: str = typer.Option(..., "--log", metavar="PATH|URL", help="The service's explanation log: its SQLite file or postgresql:// URL."),
    bundle: Optional[Path] = typer.Option(None, help="The new model bundle (default: the German credit demo bundle)."),
    group_by: Optional[str] = typer.Option(None, "--group-by", help="Comma-separated applicant features to count by, e.g. status_sex,age."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON (every promise, kept or broken)."),
) -> None:
    """Re-verify every stored recourse answer with a new bundle: how many would it break, for whom, which."""
    from commands import CommandError
    from commands.promises import format_promise_report, run_promise_check

    loaded = open_bundle(bundle)
    groups = [g.strip() for g in (group_by or "").split(",") if g.strip()]
    try:
        report = run_promise_check(log, loaded, groups)
    except CommandError as exc:
        fail(str(exc))
    typer.echo(json.dumps(report.to_dict(), indent=2) if as_json else format_promise_report(report))


schema_app = typer.Typer(add_completion=False, rich_markup_mode=None, no_args_is_help=True, help="Feature schemas.")
app.add_typer(schema_app, name="schema")


@schema_app.command("infer")
def schema_infer(
    table: Path = typer.Argument(..., help="A CSV table, one column per feature (and the target)."),
    target: Optional[str] = typer.Option(None, help="The column holding the decision (the schema's target)."),
    out: Optional[Path] = typer.Option(None, help="Write the draft here (a new file); default: print it."),
    na_value: list[str] = typer.Option(["?"], "--na-value", help="A text that marks a missing cell (repeatable; default '?')."),
    name: Optional[str] = typer.Option(None, help="The schema's name (default: the table's file name)."),
) -> None:
    """Draft a schema from a table for you to review: kinds, ranges, levels, protected-looking
    columns immutable, a note on every guess; what to review is printed on stderr."""
    from recourse.data import DataInputError, read_table
    from recourse.schema_draft import draft_schema

    try:
        frame = read_table(table, na_value, field="table")
        if out is not None and out.exists():
            fail(f"--out {out}: already exists; give a new file name (the draft never overwrites a file)")
        draft = draft_schema(frame, target, name or table.stem)
    except DataInputError as exc:
        fail_with(exc, table="TABLE")
    except ValueError as exc:
        fail_with(exc)
    text = json.dumps(draft.schema, indent=2, ensure_ascii=False) + "\n"
    if out is None:
        typer.echo(text, nl=False)
    else:
        try:
            out.write_text(text)
        except OSError as exc:
            fail(f"--out {out}: cannot write ({exc.strerror or exc})")
        typer.echo(f"draft schema with {len(draft.schema['features'])} features written to {out}", err=True)
    from commands.flags import cli_message

    for note in draft.notes:
        typer.echo(f"review: {cli_message(ValueError(note))}", err=True)


keys_app = typer.Typer(add_completion=False, rich_markup_mode=None, no_args_is_help=True, help="API keys for the HTTP service.")
app.add_typer(keys_app, name="keys")


@keys_app.command("new")
def keys_new(
    name: str = typer.Option("default", help="A name for the key (kept beside its digest)."),
    file: Optional[Path] = typer.Option(None, "--file", help="Also append the key file line to FILE (a new file is created with mode 0600)."),
    role: KeyRole = typer.Option(KeyRole.client, "--role", help="client: reads only the answers it asked for; auditor: reads every stored answer; admin: reads and erases any."),
    as_json: bool = typer.Option(False, "--json", help="Print the key, its key-file line and the file written as JSON."),
) -> None:
    """Make a new API key: prints the key (give it to the client) and the line for the key file."""
    from api.keys import add_to_key_file, hash_key, new_key

    key = new_key()
    if file is not None:
        try:
            add_to_key_file(file, name, hash_key(key), role.value)
        except ValueError as exc:
            fail(f"--name {exc}")
        except OSError as exc:
            fail(f"--file {file}: cannot write it ({exc.strerror or exc})")
    line = f"{name} {'' if role is KeyRole.client else f'role={role.value} '}{hash_key(key)}"
    if as_json:
        typer.echo(json.dumps({"key": key, "key_file_line": line, "role": role.value,
                               "written_to": str(file) if file is not None else None}))
        return
    typer.echo(f"key:        {key}")
    typer.echo(f"key file:   {line}")
    if file is not None:
        typer.echo(f"written to: {file}")


@app.command()
def serve(
    bundle: Optional[Path] = typer.Option(None, help="Model bundle directory (default: the German credit demo bundle)."),
    host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
    port: int = typer.Option(8080, min=1, max=65535, help="Port."),
    workers: int = typer.Option(2, min=1, help="Worker processes (one per core is a good start)."),
    threads: int = typer.Option(16, min=1, help="Request threads per worker (their requests share micro-batched solves)."),
    api_keys: Optional[Path] = typer.Option(None, "--api-keys", help="Key file: one 'NAME [role=auditor|admin] sha256:<hex>' line per key (see `recourse keys new`); a client key reads only its own stored answers."),
    no_auth: bool = typer.Option(False, "--no-auth", help="Accept requests without an API key (local demos only)."),
    database: Optional[str] = typer.Option(None, metavar="PATH|URL", help="The explanation log: an SQLite file (one machine) or a postgresql://USER@HOST:PORT/DB URL (one log for several instances). Default: $RECOURSE_DATABASE, else $RECOURSE_HOME/service/explanations.sqlite3."),
    max_batch: int = typer.Option(1000, min=1, help="Most applicants per batch request."),
    time_limit: float = typer.Option(5.0, min=0.01, help="Solver seconds per engine call."),
    log_sync: str = typer.Option("full", metavar="full|normal", help="Explanation-log durability: full (survives power loss) or normal (survives a killed process)."),
    batch_wait_ms: float = typer.Option(8.0, "--batch-wait-ms", min=0.0, max=1000.0, help="Micro-batching: wait at most this long for concurrent requests to join a solve (0: never wait)."),
    cors_origin: Optional[list[str]] = typer.Option(None, "--cors-origin", help="A web origin whose pages may call the API from a browser, e.g. https://app.example (repeatable; * for any)."),
) -> None:
    """Run the HTTP recourse service (gunicorn, threaded workers) until interrupted."""
    from commands import CommandError
    from commands.serve import check_log_sync, key_digests, key_roles, service_config

    try:
        digests = key_digests(api_keys, no_auth)
        roles = key_roles(api_keys)
        check_log_sync(log_sync)
        if no_auth:
            typer.echo("warning: authentication is OFF (--no-auth); use this only for local demos", err=True)
        config = service_config(bundle, digests, no_auth, database, max_batch, time_limit, log_sync, batch_wait_ms, roles,
                                list(cors_origin or []))
    except CommandError as exc:
        fail(str(exc))
    from api.server import serve as run_server  # after the bundle's own process: no torch state before the fork

    run_server(config, host=host, port=port, workers=workers, threads=threads)  # checks the settings first (exit 2)


@bench_app.command("http")
def bench_http(
    clients: str = typer.Option("1,8,32", help="Comma-separated concurrent client counts."),
    seconds: float = typer.Option(30.0, min=1.0, help="Seconds per client level."),
    workers: int = typer.Option(2, min=1, help="Server worker processes."),
    threads: int = typer.Option(32, min=1, help="Request threads per worker."),
    batch_size: int = typer.Option(500, min=1, help="Applicants per batch request."),
    kill_test: bool = typer.Option(True, help="Also kill -9 the server mid-load and check every returned answer is still stored."),
    burst: bool = typer.Option(False, "--burst", help="Also the overload scenario: 20 clients post 1,000-row batches with 3 alternatives and hang up after 3 s; rows shed and the latency of the next request."),
    log_sync: str = typer.Option("full", metavar="full|normal", help="The server's --log-sync: full or normal."),
    database: Optional[list[str]] = typer.Option(None, "--database", metavar="sqlite|URL", help="The log's back end: sqlite (a fresh file) or a postgresql:// URL (a fresh schema in that database, dropped afterwards); repeat to measure several in one run (default: sqlite)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    progress: bool = typer.Option(True, help="Show a progress bar (on stderr, when it is a terminal; RECOURSE_PROGRESS=1 shows it anyway)."),
) -> None:
    """Load-test `recourse serve` on loopback: latency per client level, batch throughput, kill -9 durability."""
    from benchmarks.http import SQLITE, run_load_tests
    from commands import CommandError
    from commands.bench import parse_clients, parse_databases
    from commands.progress import progress_bar
    from commands.serve import check_log_sync

    try:
        levels = parse_clients(clients)
        check_log_sync(log_sync)
        databases = parse_databases(database or [SQLITE])
    except CommandError as exc:
        fail(str(exc))
    with progress_bar(progress, "bench http") as bar:
        results = run_load_tests(databases, levels, seconds, workers, threads, batch_size, kill_test=kill_test,
                                 log_sync=log_sync, progress=bar)
        if burst:
            from benchmarks.http import abandoned_burst

            results[-1]["abandoned_burst"] = abandoned_burst(workers=workers, threads=threads, progress=bar)
    if as_json:
        typer.echo(json.dumps(results[0] if len(results) == 1 else {"runs": results}, indent=2))
        return
    for result in results:
        if len(results) > 1:
            typer.echo(f"log: {result['server']['database']}")
        _echo_http(result)


def _echo_http(result: dict) -> None:
    """One `bench http` run as a table."""
    typer.echo(f"{'clients':>8} {'requests':>9} {'errors':>7} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>8}  "
               "CPU ms per request (server + clients)")
    for lv in result["levels"]:
        server, clients = lv.get("server_cpu_ms"), lv.get("client_cpu_ms")
        cpu = "-" if server is None else f"{server} + {clients}"
        typer.echo(f"{lv['clients']:>8} {lv['requests']:>9} {lv['errors']:>7} {lv['p50_ms']:>8} {lv['p99_ms']:>8} "
                   f"{lv['per_second']:>8}  {cpu}")
    b = result["batch"]
    typer.echo(f"batch of {b['batch_size']}: {b['recourses_per_second']} recourses/s (median {b['median_seconds']} s, errors {b['errors']})")
    if "kill_9" in result:
        k = result["kill_9"]
        typer.echo(f"kill -9: {k['answers_returned_before_kill']} answers returned, {k['missing_after_restart']} missing after restart, "
                   f"{k['different_bytes']} different")
    if "abandoned_burst" in result:
        a = result["abandoned_burst"]
        typer.echo(f"burst: {a['rows_sent']} rows sent by {a['clients']} clients who hang up after {a['hang_up_seconds']} s; "
                   f"shed {a['rows_shed']}, solved {a['rows_solved']}, answers logged "
                   f"{a['answers_logged']}; the next request: {a['next_request_status']} in {a['next_request_ms']} ms")


class AuditEngine(str, Enum):
    inprocess = "inprocess"
    dask = "dask"


@app.command()
def audit(
    population: Optional[Path] = typer.Argument(None, help="Population table (CSV or Parquet), one column per schema feature (extra columns may be grouped by)."),
    dataset: Optional[DatasetName] = typer.Option(None, help="Audit a bundled data set's applicants instead of a file."),
    bundle: Optional[Path] = typer.Option(None, help="Model bundle directory (default: the demo bundle of --dataset, else German credit)."),
    group_by: str = typer.Option("", "--group-by", help="Comma-separated grouping columns, e.g. status_sex,age (numeric ones are binned; rows with no value form the group '(missing)')."),
    out: Path = typer.Option(Path("audit"), help="Output directory (report.html, summary.json, applicants.parquet|csv)."),
    max_changes: Optional[int] = typer.Option(None, "--max-changes", "-m", help="Most features a recourse may change; more than the number of features means no limit (default: the bundle's)."),
    density: Optional[DensityName] = typer.Option(None, help="Plausibility term (default: the bundle's)."),
    bins: Optional[list[str]] = typer.Option(None, "--bins", help="Band edges of a numeric grouping column, e.g. age=25,35,50 (repeatable; default: training quartiles)."),
    protected: Optional[str] = typer.Option(None, help="Comma-separated attributes for the discrimination probe (default: the --group-by columns that are model inputs)."),
    chunk_size: int = typer.Option(2000, min=1, help="Applicants per chunk (memory is bounded by one chunk)."),
    engine: AuditEngine = typer.Option(AuditEngine.inprocess, help="inprocess (default) or dask."),
    scheduler: Optional[str] = typer.Option(None, help="Dask scheduler address for --engine dask, e.g. tcp://10.0.0.5:8786."),
    fmt: str = typer.Option("parquet", "--format", metavar="parquet|csv", help="Per-applicant table format: parquet or csv."),
    stability_n: int = typer.Option(200, min=0, help="Denied applicants in the stability sample."),
    bootstrap: int = typer.Option(1000, min=10, help="Bootstrap replicates for the confidence intervals."),
    exact: str = typer.Option("auto", metavar="auto|on|off", help="Exact MILP answers: auto (linear bundles), on, off."),
    exact_limit: Optional[int] = typer.Option(None, min=0, help="Exact answers only for rows before this row number."),
    seed: int = typer.Option(0, min=0, max=SEED_MAX, help="Random seed (bootstrap, stability sample; 0 to 2**32 - 1)."),
    fresh: bool = typer.Option(False, help="Discard a previous (partial) audit in --out instead of resuming it."),
    progress: bool = typer.Option(True, help="Show a progress bar."),
    as_json: bool = typer.Option(False, "--json", help="Print summary.json instead of text."),
) -> None:
    """Audit a population: who has recourse, at what cost, is the burden fair (resumable; in-process or Dask)."""
    from commands import CommandError
    from commands.audit import run_audit_command
    from recourse.audit.io import AuditInputError
    from recourse.audit.text import format_summary
    from recourse.errors import BundleError, SchemaError

    try:
        result = run_audit_command(
            population, dataset.value if dataset is not None else None, bundle, out, group_by=group_by,
            protected=protected, bins=bins, density=True if density is None else (None if density is DensityName.none else density.value),
            engine=engine.value, scheduler=scheduler, progress=progress, fresh=fresh, max_changes=max_changes,
            chunk_size=chunk_size, stability_n=stability_n, bootstrap=bootstrap, exact=exact, exact_limit=exact_limit,
            seed=seed, output_format=fmt)
    except (CommandError, AuditInputError, BundleError, SchemaError) as exc:
        fail_with(exc)
    typer.echo(json.dumps(result.summary, indent=2) if as_json else format_summary(result.summary, str(out)))


@bench_app.command("audit")
def bench_audit(
    n: int = typer.Option(100_000, min=1, help="Applicants (resampled from German credit with noise)."),
    gap_n: int = typer.Option(2_000, "--gap-n", min=1, help="Applicants for the MILP-gap part (logistic bundle)."),
    chunk_size: int = typer.Option(2_000, min=1, help="Applicants per chunk."),
    seed: int = typer.Option(0, min=0, max=SEED_MAX, help="Random seed."),
    dask_workers: Optional[str] = typer.Option(None, "--dask-workers", help="Instead: the same audit in-process and on local Dask clusters of these worker counts, e.g. 1,2 (wall time, peak memory, identical tables)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    progress: bool = typer.Option(True, help="Show each audit's progress bar (on stderr, when it is a terminal; RECOURSE_PROGRESS=1 shows it anyway)."),
) -> None:
    """Audit throughput (applicants/s, wall time, peak RSS) and the APG-vs-MILP optimality gap."""
    from commands.progress import progress_enabled

    show = progress_enabled(progress)
    if dask_workers is not None:
        from benchmarks.audit import format_dask_scaling, run_dask_scaling

        try:
            counts = tuple(int(w) for w in dask_workers.split(","))
            if not counts or min(counts) < 1:
                raise ValueError
        except ValueError:
            fail(f"--dask-workers: expected worker counts ≥ 1 separated by commas, e.g. 1,2; got {dask_workers!r}")
        result = run_dask_scaling(n, counts, chunk_size=chunk_size, seed=seed, progress=show)
        typer.echo(json.dumps(result, indent=2) if as_json else format_dask_scaling(result))
        return
    from benchmarks.audit import format_benchmark, run_audit_benchmark

    result = run_audit_benchmark(n, gap_n=gap_n, chunk_size=chunk_size, seed=seed, progress=show)
    typer.echo(json.dumps(result, indent=2) if as_json else format_benchmark(result))


@bench_app.command("engine")
def bench_engine(
    density: DensityName = typer.Option(DensityName.gmm, help="Plausibility term."),
    max_changes: Optional[int] = typer.Option(None, "--max-changes", "-m", min=1, max=MAX_CHANGES_LIMIT, help="m (default: the bundle's, 3)."),
    repeats: Optional[int] = typer.Option(None, min=1, help="Timed calls per batch size (default 30/30/10/5)."),
    device: Optional[str] = typer.Option(None, help="torch device, e.g. cuda (default: cpu)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    progress: bool = typer.Option(True, help="Show a progress bar (on stderr, when it is a terminal; RECOURSE_PROGRESS=1 shows it anyway)."),
) -> None:
    """Latency and throughput of engine.explain on German credit: batches of 1, 8, 100 and 500 denied applicants."""
    from benchmarks.engine import format_engine_table, run_engine_benchmark
    from commands.progress import progress_bar

    dev = parse_device(device)
    with progress_bar(progress, "bench engine", unit="call") as bar:
        result = run_engine_benchmark(density=density.value, max_changes=max_changes, repeats=repeats, device=dev,
                                      progress=bar)
    typer.echo(json.dumps(result, indent=2) if as_json else format_engine_table(result))


class AttackMethod(str, Enum):
    gse = "gse"
    fbs = "fbs"
    pgd = "pgd"
    fw = "fw"
    manipulate = "manipulate"


class ImageExplainer(str, Enum):
    axai = "axai"
    probe = "probe"
    saliency = "saliency"
    smoothgrad = "smoothgrad"
    ig = "ig"
    gradcam = "gradcam"


class VisionData(str, Enum):
    digits = "digits"
    mnist = "mnist"


class Segmenter(str, Enum):
    slic = "slic"
    quickshift = "quickshift"
    grid = "grid"


class PgdNorm(str, Enum):
    l2 = "l2"
    linf = "linf"


def _vision_call(fn, **kwargs):
    """Run a vision command body; bad input and missing optional packages become clear errors."""
    from commands import CommandError
    from recourse.vision.explain import MissingDependency

    try:
        return fn(**kwargs)
    except CommandError as exc:
        fail_with(exc)
    except MissingDependency as exc:
        fail(str(exc), code=1)


def _vision_bundle_path(bundle: Optional[Path]) -> Optional[str]:
    """--bundle of a vision benchmark as a path string (None: the default bundle); exits 2 when it
    is not a vision bundle."""
    if bundle is not None and not (bundle / "model.json").is_file():
        fail(f"--bundle: {bundle}: not a vision bundle (no model.json)")
    return str(bundle) if bundle is not None else None


@app.command("attack")
def attack_cmd(
    method: AttackMethod = typer.Option(..., "--method", help="gse (group-wise sparse), fbs (forward-backward, prox of λ‖·‖ₚᵖ), pgd, fw (ℓ1-q Frank-Wolfe), manipulate (the explanation, not the class)."),
    image: Optional[Path] = typer.Option(None, help="An image file (PNG/JPEG, or .npy in the model's value range); default: test images of --dataset."),
    dataset: VisionData = typer.Option(VisionData.mnist, help="Bundled data set and CNN (trained on first use, seconds)."),
    bundle: Optional[Path] = typer.Option(None, help="A vision bundle directory (model.json + model.safetensors)."),
    index: int = typer.Option(0, help="First test image to attack."),
    n: int = typer.Option(1, min=1, help="Number of test images."),
    target: Optional[int] = typer.Option(None, help="Target class (targeted attack); default: untargeted."),
    p: float = typer.Option(0.5, help="FBS penalty exponent: 0, 0.5, 2/3 or 1."),
    lam: Optional[float] = typer.Option(None, "--lambda", min=0.0, help="Initial λ for gse/fbs."),
    norm: Optional[PgdNorm] = typer.Option(None, help="Norm of the ball: pgd (default l2) and manipulate (default linf)."),
    explainer: Optional[str] = typer.Option(None, help="manipulate: the explainer attacked: saliency, gradxinput, ig, smoothgrad, gradcam, or axai (a black-box random search, linf)."),
    target_map: Optional[Path] = typer.Option(None, "--target-map", help="manipulate: a .npy map (H, W) to drive the explanation to."),
    target_image: Optional[int] = typer.Option(None, "--target-image", help="manipulate: drive the explanation to that of this test image."),
    eps: Optional[float] = typer.Option(None, help="manipulate: perturbation budget (default 0.1 in linf, 1.0 in l2)."),
    out: Path = typer.Option(Path("attack-out"), help="Directory for the PNG figures and metrics.json."),
    device: Optional[str] = typer.Option(None, help="torch device, e.g. cuda (default: cpu)."),
    as_json: bool = typer.Option(False, "--json", help="Print the metrics as JSON."),
    progress: bool = typer.Option(True, help="Show a progress bar over the images (on stderr, when it is a terminal; RECOURSE_PROGRESS=1 shows it anyway)."),
) -> None:
    """Attack images: adversarial example, perturbation x5, changed pixels, AXAI segments (PNG) and metrics (JSON).

    --method manipulate attacks the explanation instead, keeping the prediction: towards --target-map or the
    map of --target-image, or (neither) away from itself; writes images and maps (.npy, PNG) and metrics.json."""
    from commands.progress import progress_bar
    from commands.vision import attack_text, open_vision_bundle, run_attack

    vb = _vision_call(open_vision_bundle, bundle=bundle, dataset=dataset.value, device=device)
    with progress_bar(progress, "attack", unit="image") as bar:
        report = _vision_call(run_attack, method=method.value, vb=vb, image=image, index=index, n=n, target=target, p=p,
                              norm=norm.value if norm else None, lam=lam, out=out, device=device, explainer=explainer,
                              target_map=target_map, target_image=target_image, eps=eps, progress=bar)
    typer.echo(json.dumps(report, indent=2, default=float) if as_json else attack_text(report))


@app.command("explain-image")
def explain_image_cmd(
    method: ImageExplainer = typer.Option(..., "--method", help="axai, probe (concept probing), or captum's saliency, smoothgrad, ig, gradcam."),
    image: Optional[Path] = typer.Option(None, help="An image file (PNG/JPEG or .npy); default: test images of --dataset."),
    dataset: VisionData = typer.Option(VisionData.mnist, help="Bundled data set and CNN."),
    bundle: Optional[Path] = typer.Option(None, help="A vision bundle directory."),
    index: int = typer.Option(0, help="First test image."),
    n: int = typer.Option(1, min=1, help="Number of test images."),
    target: Optional[int] = typer.Option(None, help="Class to explain (gradient methods) or to probe (probe; default all)."),
    k: int = typer.Option(3, min=1, help="AXAI: number of segments kept."),
    segmentation: Segmenter = typer.Option(Segmenter.slic, help="AXAI segmentation."),
    out: Path = typer.Option(Path("explain-out"), help="Directory for the PNG figures and metrics.json."),
    device: Optional[str] = typer.Option(None, help="torch device (default: cpu)."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Explain image predictions with AXAI, concept probing or a gradient baseline; writes PNGs and metrics.json."""
    from commands.vision import explain_text, open_vision_bundle, run_explain

    vb = _vision_call(open_vision_bundle, bundle=bundle, dataset=dataset.value, device=device)
    report = _vision_call(run_explain, method=method.value, vb=vb, image=image, index=index, n=n, target=target, k=k,
                          segmentation=segmentation.value, out=out, device=device)
    typer.echo(json.dumps(report, indent=2, default=float) if as_json else explain_text(report))


@bench_app.command("vision")
def bench_vision(
    n: int = typer.Option(1000, min=1, help="Correctly classified test images to attack."),
    n_explain: int = typer.Option(50, "--n-explain", min=1, help="Images for AXAI vs captum Lime/KernelShap timing."),
    lime_samples: int = typer.Option(1000, "--lime-samples", min=10, help="Samples for captum Lime and KernelShap."),
    search_steps: int = typer.Option(6, "--search-steps", min=1, help="Outer λ search steps (GSE; FBS uses half)."),
    max_iter: int = typer.Option(200, "--max-iter", min=10, help="Inner iterations of GSE and FBS."),
    scfe: bool = typer.Option(True, help="Also run S-CFE on MNIST (m = 25)."),
    peers: bool = typer.Option(True, help="Also time captum's Lime and KernelShap (needs captum)."),
    bundle: Optional[Path] = typer.Option(None, help="Vision bundle (default: the MNIST-5k CNN, trained on first use)."),
    device: Optional[str] = typer.Option(None, help="torch device (default: cpu)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    progress: bool = typer.Option(True, help="Show a progress bar (on stderr, when it is a terminal; RECOURSE_PROGRESS=1 shows it anyway)."),
) -> None:
    """Attacks (GSE, FBS p=0, 1/2, 1, PGD-l2; untargeted and targeted), IS curves, S-CFE MNIST, AXAI vs Lime/KernelShap."""
    from recourse.errors import BundleError
    from benchmarks.vision import format_vision_table, run_vision_benchmark
    from commands.progress import progress_bar

    bundle_path = _vision_bundle_path(bundle)
    parse_device(device)  # refuse an unusable --device before any work
    try:
        with progress_bar(progress, "bench vision") as bar:
            result = run_vision_benchmark(n, n_explain=n_explain, lime_samples=lime_samples, search_steps=search_steps,
                                          max_iter=max_iter, scfe=scfe, peers=peers, bundle=bundle_path, device=device,
                                          progress=bar)
    except BundleError as exc:
        fail(f"--bundle: {exc}")
    typer.echo(json.dumps(result, indent=2, default=str) if as_json else format_vision_table(result))


@bench_app.command("manipulation")
def bench_manipulation(
    dataset: VisionData = typer.Option(VisionData.mnist, help="Bundled data set and CNN (trained on first use)."),
    n: int = typer.Option(200, min=1, help="Correctly classified test images to attack."),
    eps: str = typer.Option("0.05,0.1", help="Comma-separated perturbation budgets (radius of the --norm ball)."),
    norm: PgdNorm = typer.Option(PgdNorm.linf, help="Ball of the perturbation: linf or l2."),
    steps: int = typer.Option(20, min=1, help="Projected gradient steps per attack."),
    threshold: float = typer.Option(0.8, min=-1.0, max=1.0, help="Success: Pearson(manipulated map, target map) at least this."),
    axai: bool = typer.Option(True, help="Also measure AXAI on the perturbations found (transfer)."),
    defences: bool = typer.Option(True, help="Also attack the softplus-smoothed explanations."),
    bundle: Optional[Path] = typer.Option(None, help="Vision bundle (default: the data set's CNN, trained on first use)."),
    out: Optional[Path] = typer.Option(None, help="Folder for the figures (original, target and manipulated maps)."),
    device: Optional[str] = typer.Option(None, help="torch device (default: cpu)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    progress: bool = typer.Option(True, help="Show a progress bar (on stderr, when it is a terminal; RECOURSE_PROGRESS=1 shows it anyway)."),
) -> None:
    """Explanation manipulation: target-map success and fragility per explainer and budget, defences, AXAI (attacked directly and by transfer)."""
    from recourse.errors import BundleError
    from benchmarks.manipulation import format_manipulation_table, run_manipulation_benchmark
    from commands.progress import progress_bar
    from commands.vision import parse_budgets

    bundle_path = _vision_bundle_path(bundle)
    budgets = _vision_call(parse_budgets, text=eps)
    parse_device(device)
    try:  # missing captum (the maps are scored with it) is reported by _vision_call
        with progress_bar(progress, "bench manipulation") as bar:
            result = _vision_call(run_manipulation_benchmark, n=n, dataset=dataset.value, bundle=bundle_path, eps=budgets,
                                  norm=norm.value, steps=steps, threshold=threshold, with_axai=axai,
                                  defences=defences, out=out, device=device, progress=bar)
    except BundleError as exc:
        fail(f"--bundle: {exc}")
    typer.echo(json.dumps(result, indent=2, default=str) if as_json else format_manipulation_table(result))


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except ModuleNotFoundError as exc:
        from recourse.extras import missing_extra_message

        hint = missing_extra_message(exc)
        if hint is None:
            raise
        typer.echo(f"error: {hint}", err=True)
        sys.exit(BAD_INPUT)


if __name__ == "__main__":
    main()
