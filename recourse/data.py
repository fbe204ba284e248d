"""The bundled data sets: German credit (shipped under ``datasets/``) and Wine (scikit-learn's copy).

Each loader returns a :class:`Dataset`: the schema, a DataFrame of raw feature values (levels by
name) and the labels.  Splits are seeded and reproducible.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import SchemaError
from .schema import FeatureSchema

DATASETS_DIR = Path(os.environ.get("RECOURSE_DATASETS", Path(__file__).resolve().parent.parent / "datasets"))
DATASETS = ("german", "wine")


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
    """Load a bundled data set by name ("german" or "wine")."""
    if name in ("german", "german_credit"):
        return load_german()
    if name == "wine":
        return load_wine()
    raise ValueError(f"unknown data set {name!r}; bundled: {', '.join(DATASETS)}")


def load_german(directory: Path | None = None) -> Dataset:
    """German credit: codes (A11, ...) mapped to the schema's level names; 300 test rows."""
    directory = directory or DATASETS_DIR / "german_credit"
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

    directory = directory or DATASETS_DIR / "wine"
    schema = FeatureSchema.load(directory / "schema.json")
    bunch = sk_load_wine()
    frame = pd.DataFrame(np.round(bunch.data, 2), columns=schema.names)
    labels = (bunch.target != 0).astype(int)
    return Dataset(schema, frame, labels, test_size=100)
