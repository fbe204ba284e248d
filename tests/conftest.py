"""Shared fixtures: a private RECOURSE_HOME, the German schema/data, a tiny trained bundle, the German demo bundle,
and a fresh explanation log on each back end (SQLite, and PostgreSQL on a throwaway server, tests/pg.py).

Everything that is written (bundles) goes under pytest's ``tmp_path_factory``; ``RECOURSE_HOME`` is
pointed there for the whole session so nothing lands in the home directory.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd
import pytest
from hypothesis import settings

from recourse.schema import FeatureSchema

REPO = Path(__file__).resolve().parent.parent
GERMAN_SCHEMA = REPO / "datasets" / "german_credit" / "schema.json"

# Property tests draw new examples on every run where they are developed (the default profile);
# the CI entry point (.ci/run) asks for the "ci" profile: the same examples every run, so a
# commit lands or not on its own merits. A failure found locally prints the example to pin.
settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


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


# ---------------------------------------------------------------------- explanation-log back ends
LOG_BACKENDS = ("sqlite", "postgresql")
"""The back ends the log tests run on (``-k sqlite`` or ``-k postgresql`` picks one)."""


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """The URL of a throwaway PostgreSQL server started for this test run and stopped after it
    (:mod:`tests.pg`).  Where none can be started the tests that need it are skipped, unless
    ``RECOURSE_REQUIRE_POSTGRES=1`` (set by ``.ci/run``): then they fail."""
    from tests.pg import ThrowawayPostgres, unavailable

    def missing(reason: str) -> None:
        if os.environ.get("RECOURSE_REQUIRE_POSTGRES") == "1":
            pytest.fail(reason)
        pytest.skip(reason)

    reason = unavailable()
    if reason:
        missing(reason)
    server = ThrowawayPostgres()
    try:
        server.start()
    except (RuntimeError, OSError) as exc:
        server.stop()
        missing(f"could not start a throwaway PostgreSQL server: {exc}")
    yield server.url
    server.stop()


@contextmanager
def fresh_database(backend: str, request, folder: Path) -> Iterator[Path | str]:
    """The ``database`` setting of a new, empty log on ``backend``: a file in ``folder``, or a
    PostgreSQL URL whose connections use a schema of their own (dropped afterwards)."""
    if backend == "sqlite":
        yield folder / "log.sqlite3"
        return
    from api.log.postgres import scratch_schema

    with scratch_schema(request.getfixturevalue("postgres_url")) as url:
        yield url


@pytest.fixture(params=LOG_BACKENDS)
def log_database(request, tmp_path) -> Iterator[Path | str]:
    """A new, empty explanation log's ``database`` setting, once per back end."""
    with fresh_database(request.param, request, tmp_path) as database:
        yield database
