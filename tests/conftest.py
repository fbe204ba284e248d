"""Shared fixtures: a private RECOURSE_HOME, the German schema/data, a tiny trained bundle, the German demo bundle.

Everything that is written (bundles) goes under pytest's ``tmp_path_factory``; ``RECOURSE_HOME`` is
pointed there for the whole session so nothing lands in the home directory.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recourse.schema import FeatureSchema

REPO = Path(__file__).resolve().parent.parent
GERMAN_SCHEMA = REPO / "datasets" / "german_credit" / "schema.json"


@pytest.fixture(scope="session", autouse=True)
def recourse_home(tmp_path_factory) -> Path:
    """A temporary RECOURSE_HOME for the whole session (restored afterwards)."""
    home = tmp_path_factory.mktemp("recourse_home")
    previous = os.environ.get("RECOURSE_HOME")
    os.environ["RECOURSE_HOME"] = str(home)
    yield home
    if previous is None:
        os.environ.pop("RECOURSE_HOME", None)
    else:
        os.environ["RECOURSE_HOME"] = previous


@pytest.fixture(scope="session")
def german_schema() -> FeatureSchema:
    return FeatureSchema.load(GERMAN_SCHEMA)


@pytest.fixture(scope="session")
def german_dataset():
    from recourse.data import load_dataset

    return load_dataset("german")


# ---------------------------------------------------------------------- tiny synthetic bundle
TINY_SCHEMA = {
    "name": "tiny",
    "target": {"name": "y", "classes": [0, 1], "favourable": 1, "labels": {"0": "denied", "1": "approved"}},
    "features": [
        {"name": "income", "kind": "continuous", "range": [0, 100], "precision": 1},
        {"name": "years", "kind": "integer", "range": [0, 40], "direction": "increase"},
        {"name": "owner", "kind": "binary"},
        {"name": "region", "kind": "categorical", "levels": ["north", "south", "east"], "immutable": True},
        {"name": "grade", "kind": "ordinal", "levels": ["low", "mid", "high"]},
    ],
}


def tiny_frame(n: int = 200, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """Raw rows for TINY_SCHEMA and a label that depends on income, years and grade."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "income": np.round(rng.uniform(0, 100, n), 1),
        "years": rng.integers(0, 41, n),
        "owner": rng.integers(0, 2, n).astype(bool),
        "region": rng.choice(["north", "south", "east"], n),
        "grade": rng.choice(["low", "mid", "high"], n),
    })
    grade = frame["grade"].map({"low": 0, "mid": 1, "high": 2}).to_numpy()
    score = frame["income"].to_numpy() / 100 + frame["years"].to_numpy() / 40 + 0.3 * grade + rng.normal(0, 0.1, n)
    labels = (score > np.median(score)).astype(int)
    return frame, labels


@pytest.fixture(scope="session")
def tiny_schema() -> FeatureSchema:
    return FeatureSchema.from_dict(TINY_SCHEMA)


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory, tiny_schema):
    """A logistic-model bundle with a GMM density on TINY_SCHEMA (fast to build)."""
    from recourse.bundle import build_bundle

    frame, labels = tiny_frame()
    out = tmp_path_factory.mktemp("bundles") / "tiny"
    return build_bundle(tiny_schema, frame, labels, out, model="logistic", densities=("gmm",))


@pytest.fixture(scope="session")
def tiny_engine(tiny_bundle):
    return tiny_bundle.engine()


# ---------------------------------------------------------------------- German demo bundle
@pytest.fixture(scope="session")
def german_bundle(tmp_path_factory):
    """The German demo bundle (MLP, all densities), built once per session into tmp."""
    from recourse.bundle import build_dataset_bundle

    out = tmp_path_factory.mktemp("bundles") / "german"
    return build_dataset_bundle("german", out)


@pytest.fixture(scope="session")
def german_engine(german_bundle):
    return german_bundle.engine()
