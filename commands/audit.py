"""What ``recourse audit`` does besides parsing: its list and ``--bins`` options, the bundled
population, and the call of :func:`recourse.audit.run_audit`."""
from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import CommandError

if TYPE_CHECKING:
    from recourse.audit import AuditResult


def parse_list(text: str | None, option: str) -> list[str]:
    """'a,b' → ['a', 'b'] (blank entries are an error naming the option)."""
    if text is None or not text.strip():
        return []
    items = [t.strip() for t in text.split(",")]
    if any(not t for t in items):
        raise CommandError(f"{option}: empty column name in {text!r}")
    return list(dict.fromkeys(items))


def parse_bins(specs: list[str] | None) -> dict[str, list[float]]:
    """['age=25,35,50'] → {'age': [25.0, 35.0, 50.0]} (edges of the bands of a numeric grouping column)."""
    out: dict[str, list[float]] = {}
    for spec in specs or []:
        name, sep, edges = spec.partition("=")
        if not sep or not name.strip():
            raise CommandError(f"--bins: expected COLUMN=EDGE,EDGE,..., got {spec!r}")
        try:
            values = sorted({float(e) for e in edges.split(",") if e.strip()})
        except ValueError:
            raise CommandError(f"--bins {name.strip()}: edges must be numbers, got {edges!r}") from None
        if not values or not all(math.isfinite(v) for v in values):
            raise CommandError(f"--bins {name.strip()}: give at least one finite edge")
        out[name.strip()] = values
    return out


def dataset_population(name: str, out: Path) -> Path:
    """The bundled data set's applicants as OUT/population-NAME.parquet (written once, so a resume finds it unchanged)."""
    from recourse.audit.run import make_out_dir
    from recourse.data import load_dataset

    make_out_dir(out)
    path = out / f"population-{name}.parquet"
    if not path.is_file():
        data = load_dataset(name)
        tmp = path.with_name(path.name + ".tmp")
        data.frame.to_parquet(tmp, index=False)
        tmp.replace(path)
    return path


def run_audit_command(population: Path | None, dataset: str | None, bundle: Path | None, out: Path, *, group_by: str,
                      protected: str | None, bins: list[str] | None, density: str | bool | None,
                      engine: str, scheduler: str | None, progress: bool, fresh: bool,
                      **config: Any) -> "AuditResult":
    """Audit ``population`` (or the bundled ``dataset``'s applicants) with the bundle in
    ``bundle`` (default: the demo bundle of ``dataset``, else German credit) into ``out``.

    ``density``: a density name, None for none, True for the bundle's; ``config``: the remaining
    :class:`~recourse.audit.AuditConfig` fields (max_changes, chunk_size, ..., output_format).
    Bad options raise :class:`CommandError`; the library raises AuditInputError, BundleError or
    SchemaError (a bundle's schema the current rules refuse).
    """
    from recourse.audit import AuditConfig, run_audit
    from recourse.bundle import demo_bundle, load_bundle

    from .progress import progress_enabled

    if (population is None) == (dataset is None):
        raise CommandError("give a population file or --dataset NAME (not both)")
    loaded = load_bundle(bundle) if bundle is not None else demo_bundle(dataset if dataset is not None else "german")
    source = population if population is not None else dataset_population(str(dataset), out)
    audit_config = AuditConfig(group_by=parse_list(group_by, "--group-by"),
                               protected=parse_list(protected, "--protected") if protected else None,
                               bins=parse_bins(bins), density=density, **config)
    return run_audit(source, out, loaded, audit_config, engine_kind=engine, scheduler=scheduler,
                     progress=progress_enabled(progress), fresh=fresh)
