"""Parsing of the audit's command-line options and the bundled-population helper (library side of `recourse audit`)."""
from __future__ import annotations

import math
from pathlib import Path

from .io import AuditInputError


def parse_list(text: str | None, option: str) -> list[str]:
    """'a,b' → ['a', 'b'] (blank entries are an error naming the option)."""
    if text is None or not text.strip():
        return []
    items = [t.strip() for t in text.split(",")]
    if any(not t for t in items):
        raise AuditInputError(f"{option}: empty column name in {text!r}")
    return list(dict.fromkeys(items))


def parse_bins(specs: list[str] | None) -> dict[str, list[float]]:
    """['age=25,35,50'] → {'age': [25.0, 35.0, 50.0]} (edges of the bands of a numeric grouping column)."""
    out: dict[str, list[float]] = {}
    for spec in specs or []:
        name, sep, edges = spec.partition("=")
        if not sep or not name.strip():
            raise AuditInputError(f"--bins: expected COLUMN=EDGE,EDGE,..., got {spec!r}")
        try:
            values = sorted({float(e) for e in edges.split(",") if e.strip()})
        except ValueError:
            raise AuditInputError(f"--bins {name.strip()}: edges must be numbers, got {edges!r}") from None
        if not values or not all(math.isfinite(v) for v in values):
            raise AuditInputError(f"--bins {name.strip()}: give at least one finite edge")
        out[name.strip()] = values
    return out


def dataset_population(name: str, out: Path) -> Path:
    """The bundled data set's applicants as OUT/population-NAME.parquet (written once, so a resume finds it unchanged)."""
    from ..data import load_dataset

    from .run import make_out_dir

    make_out_dir(out)
    path = out / f"population-{name}.parquet"
    if not path.is_file():
        data = load_dataset(name)
        tmp = path.with_name(path.name + ".tmp")
        data.frame.to_parquet(tmp, index=False)
        tmp.replace(path)
    return path
