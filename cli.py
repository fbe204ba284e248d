"""The ``recourse`` command: a thin shell over the library (parse, call, format)."""
from __future__ import annotations

import json
import sys
from enum import Enum
from pathlib import Path
from typing import Any, Optional

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Sparse, plausible, actionable recourse for tabular models.")
bench_app = typer.Typer(add_completion=False, no_args_is_help=True, help="Benchmarks that print figures.")
app.add_typer(bench_app, name="bench")

BAD_INPUT = 2


class DensityName(str, Enum):
    kde = "kde"
    gmm = "gmm"
    knn = "knn"
    none = "none"


class DatasetName(str, Enum):
    german = "german"
    wine = "wine"


class ModelKind(str, Enum):
    mlp = "mlp"
    logistic = "logistic"


def fail(message: str, code: int = BAD_INPUT) -> None:
    """Print an error for a person (no traceback) and exit."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def read_json(path: Path) -> Any:
    try:
        text = path.read_text()
    except FileNotFoundError:
        fail(f"{path}: no such file")
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as exc:
        fail(f"{path}: cannot read ({exc.__class__.__name__})")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        fail(f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})")


def open_bundle(bundle: Optional[Path]):
    from recourse.bundle import demo_bundle, load_bundle
    from recourse.errors import BundleError

    try:
        return load_bundle(bundle) if bundle is not None else demo_bundle("german")
    except BundleError as exc:
        fail(str(exc))


@app.command()
def explain(
    file: Path = typer.Argument(..., help="Applicant JSON: one object of feature values, or a list of them."),
    bundle: Optional[Path] = typer.Option(None, help="Model bundle directory (default: the German credit demo bundle, built on first use)."),
    max_changes: Optional[int] = typer.Option(None, "--max-changes", "-m", min=1, help="Most features the recourse may change (default: the bundle's)."),
    density: Optional[DensityName] = typer.Option(None, help="Plausibility term (default: the bundle's)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of text."),
) -> None:
    """Explain a decision and find the recourse: what to change to obtain the favourable decision."""
    from recourse.errors import RecordValidationError
    from recourse.report import format_recourse

    payload = read_json(file)
    engine = open_bundle(bundle).engine()
    kwargs: dict[str, Any] = {"max_changes": max_changes}
    if density is not None:
        kwargs["density"] = None if density is DensityName.none else density.value
    try:
        results = engine.explain(payload, **kwargs)
    except RecordValidationError as exc:
        lines = "\n".join(f"  - {e.field}: {e.message}" for e in exc.errors)
        fail(f"invalid applicant in {file}:\n{lines}")
    if as_json:
        data = [r.to_dict() for r in results]
        typer.echo(json.dumps(data[0] if isinstance(payload, dict) else data, indent=2))
    else:
        typer.echo("\n\n".join(format_recourse(r, engine.schema) for r in results))


@app.command()
def train(
    dataset: Optional[DatasetName] = typer.Argument(None, help="A bundled data set: german or wine."),
    data: Optional[Path] = typer.Option(None, help="Your own table (CSV) with one column per schema feature and the target column."),
    schema: Optional[Path] = typer.Option(None, help="Feature schema JSON for --data."),
    target: Optional[str] = typer.Option(None, help="Target column in --data (default: the schema's target name)."),
    out: Optional[Path] = typer.Option(None, help="Bundle directory to write (default for data sets: the demo bundle location)."),
    model: ModelKind = typer.Option(ModelKind.mlp, help="Model to train: mlp (d→20→20→1) or logistic."),
    max_changes: int = typer.Option(3, "--max-changes", min=1, help="Default m stored in a bundle built from --data."),
    seed: int = typer.Option(0, help="Random seed."),
) -> None:
    """Build a model bundle (schema, weights, densities, metadata) in seconds."""
    from recourse.bundle import build_bundle, build_dataset_bundle
    from recourse.errors import BundleError, SchemaError

    try:
        if dataset is not None:
            if data is not None or schema is not None:
                fail("give either a data set name or --data with --schema, not both")
            bundle = build_dataset_bundle(dataset.value, out, model=model.value, seed=seed)
        else:
            if data is None or schema is None or out is None:
                fail("give a data set name (german, wine) or all of --data TABLE.csv --schema SCHEMA.json --out DIR")
            bundle = _train_from_table(data, schema, target, out, model.value, max_changes, seed, build_bundle)
    except (SchemaError, BundleError) as exc:
        fail(str(exc))
    meta = bundle.metadata
    typer.echo(f"bundle written to {bundle.path}")
    typer.echo(f"  model {meta['model']}, classes {meta['classes']}, densities {', '.join(meta['densities'])}")
    typer.echo(f"  training accuracy {meta['training']['accuracy']}"
               + (f", test accuracy {meta['training']['test_accuracy']}" if "test_accuracy" in meta["training"] else "")
               + f", built in {meta['training']['seconds']} s")
    typer.echo(f"  hash {meta['hash']}")


def _train_from_table(data: Path, schema_path: Path, target: Optional[str], out: Path, model: str, max_changes: int, seed: int, build_bundle):
    import pandas as pd

    from recourse.schema import FeatureSchema

    schema = FeatureSchema.load(schema_path)
    if not data.is_file():
        fail(f"{data}: no such file")
    try:
        table = pd.read_csv(data)
    except Exception as exc:  # pandas raises many kinds for malformed tables
        fail(f"{data}: cannot read the table ({exc})")
    target = target or (schema.target.name if schema.target else None)
    if not target:
        fail("no --target given and the schema names no target")
    missing = [c for c in schema.names + [target] if c not in table.columns]
    if missing:
        fail(f"{data}: missing columns {missing}")
    if schema.target is None or schema.target.name != target:
        fail(f"the schema's target must describe the column '{target}' (name, classes, favourable)")
    try:
        records = schema.validate_records(table[schema.names].to_dict(orient="records"))
    except Exception as exc:
        errors = getattr(exc, "errors", [])
        shown = "\n".join(f"  - row {e.field}: {e.message}" for e in errors[:20])
        fail(f"{data}: rows do not fit the schema:\n{shown}" + (f"\n  ... and {len(errors) - 20} more" if len(errors) > 20 else ""))
    frame = pd.DataFrame(records, columns=schema.names)
    return build_bundle(schema, frame, table[target].to_numpy(), out, model=model, max_changes=max_changes, seed=seed)


@bench_app.command("scfe")
def bench_scfe(
    dataset: DatasetName = typer.Option(DatasetName.german, help="wine (100 held-out rows, each pushed to the other class) or german (denied test applicants)."),
    density: DensityName = typer.Option(DensityName.kde, help="Plausibility term."),
    n: int = typer.Option(100, min=1, help="Number of query points."),
    max_changes: Optional[int] = typer.Option(None, "--max-changes", "-m", min=1, help="m (default 2 for wine, 3 for german)."),
    peers: bool = typer.Option(True, help="Also run DiCE random on the same model and points when dice-ml is installed."),
    device: Optional[str] = typer.Option(None, help="torch device, e.g. cuda (default: cpu)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """S-CFE on Wine or German credit: validity, sparsity, proximity, plausibility, violations, time."""
    from recourse.bench import format_table, run_scfe_benchmark

    result = run_scfe_benchmark(dataset.value, density=density.value, n=n, max_changes=max_changes, peers=peers, device=device)
    typer.echo(json.dumps(result, indent=2) if as_json else format_table(result))


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
