"""Population input and per-applicant output: chunked CSV/Parquet reading, atomic part files, merging.

Input is read in chunks of ``chunk_size`` rows (CSV via pandas' chunked reader, Parquet via
pyarrow record batches re-cut to ``chunk_size``), so memory is bounded by one chunk whatever
the population size.  Chunk k always holds rows ``k·chunk_size … (k+1)·chunk_size − 1``; that
is what makes a resumed run skip exactly the chunks already written.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd

from ..errors import RecourseError
from ..schema import FeatureSchema


class AuditInputError(RecourseError):
    """Bad audit input (file, column, value or option); the message names the field and the problem."""


def population_format(path: Path) -> str:
    """'csv' or 'parquet' from the file name; anything else is an input error."""
    suffix = path.suffix.lower()
    if suffix in (".csv", ".txt"):
        return "csv"
    if suffix in (".parquet", ".pq"):
        return "parquet"
    raise AuditInputError(f"{path}: unsupported population file type '{suffix}'; give a .csv or .parquet file")


def read_columns(path: Path) -> list[str]:
    """Column names of a population file (raises AuditInputError when unreadable)."""
    _check_file(path)
    try:
        if population_format(path) == "csv":
            return list(pd.read_csv(path, nrows=0).columns)
        import pyarrow.parquet as pq

        return list(pq.ParquetFile(path).schema_arrow.names)
    except AuditInputError:
        raise
    except Exception as exc:  # pandas / pyarrow raise many kinds for malformed files
        raise AuditInputError(f"{path}: cannot read the population ({exc.__class__.__name__}: {exc})") from None


def read_head(path: Path, n: int) -> pd.DataFrame:
    """The first ``n`` rows (to choose default bins of numeric grouping columns that are not model inputs)."""
    for _, chunk in iter_chunks(path, n, read_columns(path)):
        return chunk
    return pd.DataFrame(columns=read_columns(path))


def count_rows(path: Path) -> int:
    """Number of data rows (Parquet: from the metadata; CSV: newline count minus the header)."""
    if population_format(path) == "parquet":
        import pyarrow.parquet as pq

        return int(pq.ParquetFile(path).metadata.num_rows)
    lines, last = 0, b"\n"
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            lines += block.count(b"\n")
            last = block[-1:]
    return max(lines + (last != b"\n") - 1, 0)


def check_columns(path: Path, columns: list[str], schema: FeatureSchema, group_by: list[str]) -> None:
    """Every schema feature and every group-by column must be a column of the population."""
    missing = [c for c in schema.names if c not in columns]
    if missing:
        raise AuditInputError(f"{path}: missing column{'s' if len(missing) > 1 else ''} {', '.join(repr(m) for m in missing)} "
                              f"(one column per schema feature is required: {', '.join(schema.names)})")
    unknown = [g for g in group_by if g not in columns]
    if unknown:
        raise AuditInputError(f"`group_by`: unknown column {', '.join(repr(u) for u in unknown)}; "
                              f"columns of {path.name}: {', '.join(columns)}")


def iter_chunks(path: Path, chunk_size: int, columns: list[str]) -> Iterator[tuple[int, pd.DataFrame]]:
    """(chunk index, DataFrame of ``columns``) for consecutive blocks of ``chunk_size`` rows."""
    try:
        if population_format(path) == "csv":
            reader = pd.read_csv(path, usecols=columns, chunksize=chunk_size)
            for k, chunk in enumerate(reader):
                yield k, chunk[columns].reset_index(drop=True)
            return
        import pyarrow as pa
        import pyarrow.parquet as pq

        pending: list = []
        size, k = 0, 0
        for batch in pq.ParquetFile(path).iter_batches(batch_size=chunk_size, columns=columns):
            pending.append(batch)
            size += batch.num_rows
            while size >= chunk_size:
                table = pa.Table.from_batches(pending)
                yield k, table.slice(0, chunk_size).to_pandas()[columns]
                k += 1
                rest = table.slice(chunk_size)
                pending, size = rest.to_batches(), rest.num_rows
        if size:
            yield k, pa.Table.from_batches(pending).to_pandas()[columns]
    except AuditInputError:
        raise
    except (ValueError, OSError, UnicodeDecodeError) as exc:
        raise AuditInputError(f"{path}: cannot read the population ({exc.__class__.__name__}: {exc})") from None


@dataclass(frozen=True)
class ChunkSource:
    """Where chunk k of a population lies in its file, so that a worker reads only its own rows.

    Parquet: the row groups that overlap rows [k·size, (k+1)·size) (from the file's metadata).
    CSV: ``offsets[k]``, the byte offset of the chunk's first line (one pass over the file, as in
    :func:`count_rows`; a quoted cell must not hold a line break).  ``read(k)`` gives the same
    DataFrame as the k-th item of :func:`iter_chunks`.
    """

    path: str
    fmt: str
    columns: tuple[str, ...]
    chunk_size: int
    rows: int
    header: tuple[str, ...] = ()
    offsets: tuple[int, ...] = ()

    @classmethod
    def of(cls, path: Path, chunk_size: int, columns: list[str]) -> "ChunkSource":
        fmt = population_format(path)
        where = str(Path(path).resolve())  # workers resolve no relative path against their own folder
        if fmt == "parquet":
            return cls(where, fmt, tuple(columns), chunk_size, count_rows(path))
        offsets, rows = _line_offsets(path, chunk_size)  # one pass: the offsets and the row count
        return cls(where, fmt, tuple(columns), chunk_size, rows, tuple(read_columns(path)), tuple(offsets))

    @property
    def n_chunks(self) -> int:
        return -(-self.rows // self.chunk_size)

    def read(self, k: int) -> pd.DataFrame:
        """Rows [k·size, (k+1)·size) of the columns, read from the file by whoever calls it."""
        columns = list(self.columns)
        start = k * self.chunk_size
        size = min(self.chunk_size, self.rows - start)
        try:
            if self.fmt == "csv":
                with open(self.path, "rb") as fh:
                    fh.seek(self.offsets[k])
                    chunk = pd.read_csv(fh, header=None, names=list(self.header), usecols=columns, nrows=size)
                return chunk[columns].reset_index(drop=True)
            import pyarrow as pa
            import pyarrow.parquet as pq

            file = pq.ParquetFile(self.path)
            meta, first, groups, first_row = file.metadata, 0, [], None
            for g in range(meta.num_row_groups):
                n = meta.row_group(g).num_rows
                if first + n > start and first < start + size:
                    groups.append(g)
                    first_row = first if first_row is None else first_row
                first += n
            table = file.read_row_groups(groups, columns=columns) if groups else pa.table({c: [] for c in columns})
            return table.slice(start - (first_row or 0), size).to_pandas()[columns]
        except (ValueError, OSError, UnicodeDecodeError) as exc:
            raise AuditInputError(f"{self.path}: cannot read the population ({exc.__class__.__name__}: {exc})") from None


def _line_offsets(path: Path, chunk_size: int) -> tuple[list[int], int]:
    """Byte offsets of data lines 0, size, 2·size, ... of a CSV file (line 0 follows the header), and
    its number of data rows (as :func:`count_rows` counts them)."""
    offsets, line, position, last = [], -1, 0, b"\n"  # line -1 is the header
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            last = block[-1:]
            start = 0
            while True:
                end = block.find(b"\n", start)
                if end < 0:
                    break
                line += 1
                if line % chunk_size == 0:
                    offsets.append(position + end + 1)
                start = end + 1
            position += len(block)
    return offsets, max(line + (last != b"\n"), 0)


def _check_file(path: Path) -> None:
    if not path.exists():
        raise AuditInputError(f"{path}: no such file")
    if not path.is_file():
        raise AuditInputError(f"{path}: not a file")
    if not os.access(path, os.R_OK):
        raise AuditInputError(f"{path}: cannot read (permission denied)")


# ---------------------------------------------------------------------- part files
def part_path(parts: Path, k: int) -> Path:
    return parts / f"part-{k:06d}.parquet"


def write_part(frame: pd.DataFrame, parts: Path, k: int) -> Path:
    """Write chunk k's per-applicant table atomically (temporary file, then rename)."""
    parts.mkdir(parents=True, exist_ok=True)
    final = part_path(parts, k)
    tmp = final.with_suffix(".parquet.tmp")
    frame.to_parquet(tmp, index=False)
    os.replace(tmp, final)
    return final


def done_chunks(parts: Path) -> set[int]:
    """Chunk indices whose part file is complete (temporary files are ignored)."""
    if not parts.is_dir():
        return set()
    return {int(p.stem.split("-")[1]) for p in parts.glob("part-*.parquet")}


def read_parts(parts: Path, columns: list[str] | None = None) -> pd.DataFrame:
    """The per-applicant table (selected columns) from all part files, in row order."""
    files = sorted(parts.glob("part-*.parquet"))
    if not files:
        return pd.DataFrame(columns=columns or [])
    frame = pd.concat([pd.read_parquet(f, columns=columns) for f in files], ignore_index=True)
    return frame.sort_values("row_id", kind="stable").reset_index(drop=True) if "row_id" in frame else frame


def merge_parts(parts: Path, out: Path, fmt: str) -> Path:
    """Concatenate the part files into one table, streaming one part at a time (bounded memory)."""
    files = sorted(parts.glob("part-*.parquet"))
    target = out / f"applicants.{fmt}"
    tmp = target.with_name(target.name + ".tmp")
    if fmt == "parquet":
        import pyarrow.parquet as pq

        writer = None
        for f in files:
            table = pq.read_table(f)
            if writer is None:
                writer = pq.ParquetWriter(tmp, table.schema)
            writer.write_table(table.cast(writer.schema))
        if writer is not None:
            writer.close()
        else:
            pd.DataFrame().to_parquet(tmp)
    else:
        with open(tmp, "w", newline="") as fh:
            for i, f in enumerate(files):
                pd.read_parquet(f).to_csv(fh, index=False, header=(i == 0))
    os.replace(tmp, target)
    return target


# ---------------------------------------------------------------------- synthetic populations
def resample_population(frame: pd.DataFrame, schema: FeatureSchema, n: int, seed: int = 0,
                        noise: float = 0.25, switch: float = 0.05) -> pd.DataFrame:
    """``n`` applicants resampled (with replacement) from ``frame``, with noise.

    Numeric features get Gaussian noise of ``noise`` × cost scale (rounded to the feature's
    lattice, clipped to its range); each categorical/ordinal/binary value is redrawn from the
    feature's marginal with probability ``switch``.
    """
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(frame), n)
    out = frame.iloc[idx].reset_index(drop=True).copy()
    for feat in schema.features:
        col = out[feat.name]
        if feat.is_numeric:
            values = col.to_numpy(dtype=float)
            scale = feat.cost_scale or max(float(np.std(values)), 1.0)
            values = values + rng.normal(0.0, noise * scale, n)
            lo, hi = feat.range if feat.range is not None else (values.min(), values.max())
            values = np.clip(values, lo, hi)
            if feat.kind == "integer":
                out[feat.name] = np.round(values).astype(np.int64)
            else:
                out[feat.name] = np.round(values, feat.precision) if feat.precision is not None else values
        else:
            swap = rng.random(n) < switch
            donors = frame[feat.name].to_numpy()[rng.integers(0, len(frame), n)]
            out[feat.name] = np.where(swap, donors, col.to_numpy())
            if feat.kind == "binary":
                out[feat.name] = out[feat.name].astype(bool)
    return out
