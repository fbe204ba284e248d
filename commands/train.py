"""What ``recourse train`` does besides parsing: pick the source (a bundled data set or a table
with its schema), check the output directory, build the bundle."""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from . import CommandError
from .progress import progress_bar

if TYPE_CHECKING:
    from recourse.bundle import Bundle, StageProgress
    from recourse.schema import FeatureSchema


def check_max_changes(schema: "FeatureSchema", value: int) -> int:
    """``--max-changes`` checked against the schema (1 .. number of features)."""
    try:
        return schema.check_max_changes(value)
    except ValueError as exc:
        raise CommandError(f"--max-changes: {exc}") from None


def run_train(dataset: str | None, data: Path | None, schema: Path | None, target: str | None, out: Path | None,
              model: str, max_changes: int, seed: int, family: int = 0, progress: bool = False, *,
              na_values: tuple[str, ...] = (), drop_missing: bool = False, notes: list[str] | None = None,
              model_options: dict | None = None, force: bool = False) -> "Bundle":
    """Build and write a bundle from the bundled ``dataset``, or from the table ``data`` described
    by ``schema`` into ``out``; returns it.

    Bad options raise :class:`CommandError`; the library raises SchemaError, BundleError or
    DataInputError (whose messages name the parameter ``path`` for ``--data``).
    """
    table = TableOptions(na_values, drop_missing, notes if notes is not None else [], model_options or {}, force)
    with stage_bar(progress) as bar:
        return _build(dataset, data, schema, target, out, model, max_changes, seed, family, bar, table)


@dataclass
class TableOptions:
    """How ``--data`` is read: extra missing-value markers, and whether rows with a missing cell are left out."""

    na_values: tuple[str, ...] = ()
    drop_missing: bool = False
    notes: list[str] = field(default_factory=list)
    model_options: dict = field(default_factory=dict)
    force: bool = False


@contextmanager
def stage_bar(enabled: bool) -> Iterator["StageProgress | None"]:
    """The progress bar (:func:`commands.progress.progress_bar`, on stderr when it is a terminal)
    fed by :func:`recourse.bundle.build_bundle`'s stage callback."""
    with progress_bar(enabled, "train") as bar:
        yield bar


def _build(dataset: str | None, data: Path | None, schema: Path | None, target: str | None, out: Path | None,
           model: str, max_changes: int, seed: int, family: int, progress: "StageProgress | None",
           table: TableOptions) -> "Bundle":
    from recourse.bundle import build_bundle, build_dataset_bundle
    from recourse.data import all_entries_unless, is_bundle_dir, prepare_out_dir, read_training_table
    from recourse.errors import SchemaError
    from recourse.schema import FeatureSchema

    try:
        if dataset is not None:
            if data is not None or schema is not None:
                raise CommandError("give either a data set name or --data with --schema, not both")
            if out is not None:
                prepare_out_dir(out, all_entries_unless(is_bundle_dir), "a bundle's")
            return build_dataset_bundle(dataset, out, model=model, seed=seed, family=family, progress=progress,
                                        model_options=table.model_options, force=table.force)
        if data is None or schema is None or out is None:
            raise CommandError("give a data set name (german, wine, adult) or all of --data TABLE.csv --schema SCHEMA.json --out DIR")
        try:
            loaded = FeatureSchema.load(schema)
        except SchemaError as exc:
            raise CommandError(f"--schema {exc}") from None
        frame, labels = read_training_table(data, loaded, target, na_values=table.na_values,
                                            drop_missing=table.drop_missing, notes=table.notes)
        max_changes = check_max_changes(loaded, max_changes)
        prepare_out_dir(out, all_entries_unless(is_bundle_dir), "a bundle's")
        return build_bundle(loaded, frame, labels, out, model=model, max_changes=max_changes, seed=seed, family=family,
                            progress=progress, model_options=table.model_options, force=table.force)
    except OSError as exc:  # writing the bundle (disk full, permissions changed meanwhile)
        raise CommandError(f"--out: cannot write the bundle to {out or 'the demo location'} ({exc.strerror or exc})") from None
