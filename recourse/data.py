"""Tabular data: the bundled data sets and user tables.

The bundled data sets are German credit and Adult (census income; both shipped under
``datasets/``) and Wine (scikit-learn's copy).  Each loader returns a :class:`Dataset`: the
schema, a DataFrame of raw feature values (levels by name) and the labels.  Splits are seeded
and reproducible.

User tables (training tables, audit populations) go through one conversion,
:func:`coerce_table` (numbers parsed cell by cell, so only unparseable cells are reported), and
one error format, :func:`format_row_errors` (data rows numbered from 1, header not counted).
:func:`read_training_table` checks a training table up front: columns, rows, target values, and
at least :data:`MIN_CLASS_ROWS` rows of every class of the schema.
"""
from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from .errors import FieldError, RecordValidationError, RecourseError, SchemaError
from .schema import FeatureSchema, Target, shorten

MIN_CLASS_ROWS = 5
"""Fewest training rows of each class of the schema (the model and each class's density are fitted on them)."""
MAX_ROW_ERRORS = 20
"""Row errors shown before '... and N more'."""


class DataInputError(RecourseError):
    """A user table or output directory cannot be used; the message names the parameter (in
    backticks, e.g. `` `path` ``), file, row or column."""

DATASETS_DIR = Path(os.environ.get("RECOURSE_DATASETS", Path(__file__).resolve().parent.parent / "datasets"))
DATASETS = ("german", "wine", "adult", "diabetes")
DIRECTORIES = {"german": "german_credit", "german_credit": "german_credit", "wine": "wine", "adult": "adult",
               "diabetes": "diabetes"}
"""The folder of each bundled data set under :data:`DATASETS_DIR`."""


def dataset_schema(name: str) -> FeatureSchema:
    """A bundled data set's feature schema alone (its data not read)."""
    if name not in DIRECTORIES:
        raise ValueError(f"unknown data set {name!r}; bundled: {', '.join(DATASETS)}")
    return FeatureSchema.load(DATASETS_DIR / DIRECTORIES[name] / "schema.json")


@dataclass
class Dataset:
    """Schema + raw features + labels, with a seeded train/test split (``test_size`` rows held out)."""

    schema: FeatureSchema
    frame: pd.DataFrame
    labels: np.ndarray
    test_size: int
    seed: int = 0

    def split(self) -> tuple[pd.DataFrame, np.ndarray, pd.DataFrame, np.ndarray]:
        """(train features, train labels, test features, test labels)."""
        order = np.random.default_rng(self.seed).permutation(len(self.frame))
        test, train = order[: self.test_size], order[self.test_size :]
        f, y = self.frame, self.labels
        return (f.iloc[train].reset_index(drop=True), y[train], f.iloc[test].reset_index(drop=True), y[test])


def load_dataset(name: str) -> Dataset:
    """Load a bundled data set by name: "german" (or "german_credit"), "wine", "adult" or "diabetes" (a score target)."""
    if name in ("german", "german_credit"):
        return load_german()
    if name == "wine":
        return load_wine()
    if name == "adult":
        return load_adult()
    if name == "diabetes":
        return load_diabetes()
    raise ValueError(f"unknown data set {name!r}; bundled: {', '.join(DATASETS)}")


def load_german(directory: Path | None = None) -> Dataset:
    """German credit: codes (A11, ...) mapped to the schema's level names; 300 test rows."""
    directory = directory or DATASETS_DIR / DIRECTORIES["german"]
    schema = FeatureSchema.load(directory / "schema.json")
    raw = pd.read_csv(directory / "german.data", sep=r"\s+", header=None)
    names = schema.names + [schema.target.name]
    if raw.shape[1] != len(names):
        raise SchemaError(f"german.data has {raw.shape[1]} columns, the schema expects {len(names)}")
    raw.columns = names
    frame = pd.DataFrame(index=raw.index)
    for feat in schema.features:
        col = raw[feat.name]
        if feat.levels and any(lvl.code for lvl in feat.levels):
            mapping = {lvl.code: lvl.name for lvl in feat.levels}
            mapped = col.map(mapping)
            if mapped.isna().any():
                raise SchemaError(f"german.data: unknown code {col[mapped.isna()].iloc[0]!r} for '{feat.name}'")
            if feat.kind == "binary":
                mapped = mapped == feat.levels[1].name
            frame[feat.name] = mapped
        else:
            frame[feat.name] = col.astype(int if feat.kind == "integer" else float)
    labels = raw[schema.target.name].to_numpy()
    return Dataset(schema, frame, labels, test_size=300)


def load_wine(directory: Path | None = None) -> Dataset:
    """Wine: class 0 against the rest (labels 0/1); 100 held-out rows as in the S-CFE protocol."""
    from sklearn.datasets import load_wine as sk_load_wine

    directory = directory or DATASETS_DIR / DIRECTORIES["wine"]
    schema = FeatureSchema.load(directory / "schema.json")
    bunch = sk_load_wine()
    frame = pd.DataFrame(np.round(bunch.data, 2), columns=schema.names)
    labels = (bunch.target != 0).astype(int)
    return Dataset(schema, frame, labels, test_size=100)


def load_diabetes(directory: Path | None = None) -> Dataset:
    """Diabetes progression (a score target): scikit-learn's bundled raw copy, sex as its level
    name, labels the progression one year later; 100 held-out rows."""
    from sklearn.datasets import load_diabetes as sk_load_diabetes

    directory = directory or DATASETS_DIR / DIRECTORIES["diabetes"]
    schema = FeatureSchema.load(directory / "schema.json")
    bunch = sk_load_diabetes(scaled=False)
    frame = pd.DataFrame(bunch.data, columns=schema.names)
    frame["age"] = frame["age"].astype(int)
    frame["sex"] = frame["sex"].astype(int).astype(str)
    return Dataset(schema, frame, np.asarray(bunch.target, dtype=np.float64), test_size=100)


def load_adult(directory: Path | None = None) -> Dataset:
    """Adult (census income): the shipped sample of 6,000 rows, levels by name as in the source,
    labels the schema's classes ('<=50K' / '>50K'); 1,000 held-out rows."""
    directory = directory or DATASETS_DIR / DIRECTORIES["adult"]
    schema = FeatureSchema.load(directory / "schema.json")
    raw = pd.read_csv(directory / "adult.csv", skipinitialspace=True, dtype=str)
    missing = [c for c in schema.names + [schema.target.name] if c not in raw.columns]
    if missing:
        raise SchemaError(f"adult.csv: missing columns {missing}")
    raw = raw.apply(lambda col: col.str.strip())
    frame = pd.DataFrame(index=raw.index)
    for feat in schema.features:
        col = raw[feat.name]
        if feat.is_numeric:
            frame[feat.name] = col.astype(int if feat.kind == "integer" else float)
        else:
            unknown = ~col.isin(feat.level_names)
            if unknown.any():
                raise SchemaError(f"adult.csv: unknown value {col[unknown].iloc[0]!r} for '{feat.name}'")
            frame[feat.name] = col
    by_key = {str(c): c for c in schema.target.classes}
    target = raw[schema.target.name].str.rstrip(".")  # the source's test file writes '>50K.'
    unknown = ~target.isin(list(by_key))
    if unknown.any():
        raise SchemaError(f"adult.csv: unknown label {target[unknown].iloc[0]!r}; classes: {list(by_key)}")
    labels = np.array([by_key[v] for v in target], dtype=object)
    return Dataset(schema, frame, labels, test_size=1000)


# ---------------------------------------------------------------------- user tables
def coerce_table(frame: pd.DataFrame, schema: FeatureSchema) -> pd.DataFrame:
    """Undo the table reader's type guesses in the schema's columns, cell by cell, before validation.

    A numeric column read as text because of one bad cell gets its numbers back from the text
    cells (the bad cells stay text, so validation names exactly them); in a binary column 'true'/'false' (any case)
    and 0/1 become bools and other text (e.g. the level names 'no'/'yes') is left for the
    schema to judge; numbers in a categorical/ordinal column become level names ('2', not '2.0').
    """
    out = frame.copy()
    for feat in schema.features:
        if feat.name not in out:
            continue
        col = out[feat.name]
        typed = pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col)  # not text: left to validation
        if feat.is_numeric and not typed:
            cells = col.astype(object)
            text = cells.map(lambda v: isinstance(v, str))
            num = pd.to_numeric(cells.where(text), errors="coerce")
            out[feat.name] = cells.where(~(text & num.notna()), num.astype(object))
        elif feat.kind == "binary" and not typed:
            out[feat.name] = pd.Series([_as_bool(v) for v in col.astype(object)], index=col.index, dtype=object)
        elif feat.kind in ("categorical", "ordinal") and typed:
            out[feat.name] = pd.Series([_level_text(v) for v in col.astype(object)], index=col.index, dtype=object)
    return out


def _as_bool(value: Any) -> Any:
    """True/False for 'true'/'false' (any case) or 0/1 text; anything else unchanged."""
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("true", "false"):
            return text == "true"
        try:
            number = float(text)
        except ValueError:
            return value
        return bool(number) if number in (0.0, 1.0) else value
    return value


def _level_text(value: Any) -> Any:
    """A number read from a level column as the level's name: 2.0 → '2', 1.5 → '1.5'; missing stays missing."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return value
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def format_row_errors(errors: list[FieldError], source: str, offset: int = 0) -> str:
    """'SOURCE: rows do not fit the schema:' and one line per error, 'row N, column 'C': problem'.

    ``errors`` come from :meth:`FeatureSchema.validate_records` (fields ``"i.column"``, i 0-based);
    N = ``offset`` + i + 1 counts data rows from 1, the header not counted (as a spreadsheet shows
    them, minus the header line).  At most :data:`MAX_ROW_ERRORS` lines, then '... and K more'.
    """
    lines = []
    for e in errors[:MAX_ROW_ERRORS]:
        row, sep, column = e.field.partition(".")
        if row.isdigit():
            where = f"row {offset + int(row) + 1}" + (f", column '{column}'" if sep else "")
        else:
            where = e.field
        lines.append(f"  - {where}: {e.message}")
    if len(errors) > MAX_ROW_ERRORS:
        lines.append(f"  ... and {len(errors) - MAX_ROW_ERRORS} more")
    lines.append("  (rows are numbered from 1, not counting the header)")
    return f"{source}: rows do not fit the schema:\n" + "\n".join(lines)


def read_table(path: str | Path, na_values: Sequence[str] = (), field: str = "path") -> pd.DataFrame:
    """A CSV table as people have them: spaces after the separators trimmed, the given missing-value
    markers (e.g. '?') read as missing beside pandas' own (empty cells, 'NA', 'NaN', ...)."""
    path = Path(path)
    if not path.exists():
        raise DataInputError(f"`{field}` {path}: no such file")
    if not path.is_file():
        raise DataInputError(f"`{field}` {path}: not a file")
    try:
        return pd.read_csv(path, skipinitialspace=True, na_values=list(na_values) or None)
    except Exception as exc:  # pandas raises many kinds for malformed tables
        raise DataInputError(f"`{field}` {path}: cannot read the table ({exc.__class__.__name__}: {shorten(str(exc), 200)})") from None


def read_training_table(path: str | Path, schema: FeatureSchema, target: str | None = None, *,
                        na_values: Sequence[str] = (), drop_missing: bool = False,
                        notes: list[str] | None = None) -> tuple[pd.DataFrame, np.ndarray]:
    """Validated feature rows (schema columns, normalised values) and labels (the schema's class
    values) of a CSV training table; every problem raises :class:`DataInputError` naming it.

    ``na_values``: extra missing-value markers; ``drop_missing``: leave out the rows with a missing
    cell in a schema column or the target (their count is appended to ``notes``) instead of
    reporting them."""
    path = Path(path)
    table = read_table(path, na_values)
    if schema.target is None:
        raise DataInputError("`schema`: the schema names no target (name, classes, favourable); training needs one")
    target = target or schema.target.name
    missing = [c for c in schema.names + [target] if c not in table.columns]
    if missing:
        raise DataInputError(f"`path` {path}: missing columns {missing}")
    if schema.target.name != target:
        raise DataInputError(f"`target` {target}: the schema's target describes the column '{schema.target.name}'; "
                             f"the schema's target must describe the column '{target}' (name, classes, favourable), "
                             f"or give `target={schema.target.name!r}`")
    if table.empty:
        raise DataInputError(f"`path` {path}: no data rows (the table has only a header)")
    if drop_missing:
        complete = table[schema.names + [target]].notna().all(axis=1)
        if not complete.all():
            if notes is not None:
                notes.append(f"{int((~complete).sum())} of {len(table)} rows with a missing cell left out")
            table = table[complete].reset_index(drop=True)
        if table.empty:
            raise DataInputError(f"`path` {path}: every row has a missing cell in a schema column or the target")
    try:
        records = schema.validate_records(coerce_table(table[schema.names], schema).to_dict(orient="records"))
    except RecordValidationError as exc:
        raise DataInputError(format_row_errors(exc.errors, f"`path` {path}")) from None
    if schema.score_target is not None:
        labels = score_values(table[target], schema.score_target.name, f"`path` {path}")
    else:
        labels = class_values(table[target], schema.target, f"`path` {path}")
        check_class_rows(labels, schema.target, f"`path` {path}")
    return pd.DataFrame(records, columns=schema.names), labels


def read_applicants(path: str | Path, schema: FeatureSchema) -> tuple[dict | list, list[str]]:
    """Applicants from a JSON file (one object, or a list of them) or a table, CSV or Parquet (one per
    row; CSV: spaces after the commas trimmed; cells converted as in :func:`coerce_table`), and notes for the
    reader.  A column or key holding the schema's target (the past decision) is left out: the
    decision to explain is the model's.  Problems raise :class:`DataInputError` naming the file."""
    from .schema import read_json_file

    path = Path(path)
    notes: list[str] = []
    target = schema.target.name if schema.target is not None else None
    if path.suffix.lower() in (".csv", ".parquet", ".pq"):
        if not path.is_file():
            raise DataInputError(f"{path}: no such file")
        try:
            table = pd.read_csv(path, skipinitialspace=True) if path.suffix.lower() == ".csv" else pd.read_parquet(path)
        except ImportError:
            raise
        except Exception as exc:  # pandas / pyarrow raise many kinds for malformed tables
            raise DataInputError(f"{path}: cannot read the table ({exc.__class__.__name__}: {shorten(str(exc), 200)})") from None
        if table.empty:
            raise DataInputError(f"{path}: no data rows (the table has only a header)")
        if target is not None and target in table.columns and target not in schema.names:
            table = table.drop(columns=[target])
            notes.append(f"the column '{target}' (the past decision) is left out: the model decides")
        cells = coerce_table(table, schema).astype(object).where(table.notna(), None)
        return cells.to_dict(orient="records"), notes
    try:
        payload = read_json_file(path, DataInputError)
    except DataInputError as exc:
        if path.suffix.lower() not in (".json", "") and "not valid JSON" in str(exc):
            raise DataInputError(f"{exc} (applicants come as JSON, or as a table in a .csv file)") from None
        raise
    rows = [payload] if isinstance(payload, dict) else payload if isinstance(payload, list) else []
    if target is not None and target not in schema.names and any(isinstance(r, dict) and target in r for r in rows):
        for r in rows:
            if isinstance(r, dict):
                r.pop(target, None)
        notes.append(f"the key '{target}' (the past decision) is left out: the model decides")
    return payload, notes


def class_values(column: pd.Series, target: Target, source: str) -> np.ndarray:
    """The target column as the schema's class values ('1', 1 and 1.0 all name class 1); values
    that are no class raise :class:`DataInputError` naming the rows (numbered from 1)."""
    by_key = {str(c): c for c in target.classes}
    out, bad = [], []
    for i, value in enumerate(column.tolist()):
        key = _level_text(value)
        key = key.strip() if isinstance(key, str) else key
        if key in by_key:
            out.append(by_key[key])
        else:
            bad.append(FieldError(f"{i}.{target.name}", f"{_describe(value)} is not a class of the schema's target "
                                  f"(classes: {', '.join(map(str, target.classes))})"))
    if bad:
        raise DataInputError(format_row_errors(bad, source))
    return np.array(out, dtype=object if any(isinstance(c, str) for c in target.classes) else np.int64)


def score_values(column: pd.Series, name: str, source: str) -> np.ndarray:
    """The target column of a score target as finite numbers; other cells raise
    :class:`DataInputError` naming the rows (numbered from 1)."""
    numbers = pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64)
    bad = [FieldError(f"{i}.{name}", f"{_describe(value)} is not a number (a score target holds numbers)")
           for i, value in enumerate(column.tolist()) if not np.isfinite(numbers[i])]
    if bad:
        raise DataInputError(format_row_errors(bad, source))
    return numbers


def _describe(value: Any) -> str:
    """A table cell for a message: 'a missing value', '5' for 5.0, 'yes' quoted, long text shortened."""
    text = _level_text(value)
    if text is None or (isinstance(text, float) and np.isnan(text)):
        return "a missing value"
    return shorten(repr(text) if isinstance(value, str) else text)


def check_class_rows(labels: np.ndarray, target: Target, source: str) -> None:
    """Every class of the schema's target needs at least :data:`MIN_CLASS_ROWS` training rows."""
    counts = Counter(map(str, labels))
    short = [f"class {c!r}" + (f" ({target.labels[str(c)]})" if str(c) in target.labels else "")
             + f" has {counts[str(c)]} row{'' if counts[str(c)] == 1 else 's'}"
             for c in target.classes if counts[str(c)] < MIN_CLASS_ROWS]
    if short:
        raise DataInputError(f"{source}: every class of the target '{target.name}' (`target`) needs at least {MIN_CLASS_ROWS} "
                             f"rows to fit the model and its density, but " + ", ".join(short))


def prepare_out_dir(out: Path, foreign: Callable[[Path], list[str]], holds: str,
                    error: type[ValueError] = DataInputError) -> None:
    """Create the output directory ``out``, or accept an existing one in which ``foreign(out)``
    names nothing (it is empty or holds only our own earlier output, which may be replaced);
    otherwise raise ``error`` listing the foreign entries, before a file is written."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise error(f"`out`: {out} exists and is not a directory")
    try:
        strangers = sorted(foreign(out)) if out.is_dir() else []
    except OSError as exc:
        raise error(f"`out`: cannot read {out} ({exc.strerror or exc})") from None
    if strangers:
        shown = ", ".join(strangers[:3]) + (f" and {len(strangers) - 3} more" if len(strangers) > 3 else "")
        raise error(f"`out`: {out} holds files that are not {holds} ({shown}); nothing was written "
                    "(give a new or empty directory so that no file of yours is overwritten)")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise error(f"`out`: cannot create {out} ({exc.strerror or exc})") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise error(f"`out`: {out} is not writable")


def all_entries_unless(owned: Callable[[Path], bool]) -> Callable[[Path], list[str]]:
    """A ``foreign`` test for :func:`prepare_out_dir`: nothing when ``owned(directory)``, else every entry."""
    return lambda directory: [] if owned(directory) else [p.name for p in directory.iterdir()]


def is_bundle_dir(path: Path) -> bool:
    """Whether ``path`` holds a bundle (it has metadata.json), which building a bundle into it may replace."""
    return (Path(path) / "metadata.json").is_file()
