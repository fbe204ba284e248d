"""The default density measurably moves answers toward where favourable applicants live.

The acceptance measure of the density's default weight (docs/benchmarks.md): on the `bench scfe`
points of Wine and German credit, the answers with the bundle's default density have a lower
target-class LOF and a higher yNN than those without a density, with the same validity and no
rule broken.
"""
from __future__ import annotations

import pytest

from benchmarks.scfe import run_scfe_benchmark
from recourse.config import DEFAULT_DENSITY


@pytest.mark.parametrize("dataset", ["wine", "german"])
def test_the_default_density_beats_no_density_on_lof_and_ynn(dataset):
    plausible = run_scfe_benchmark(dataset, peers=False)  # the bundle's default density at its default weight
    plain = run_scfe_benchmark(dataset, density="none", peers=False)
    assert plausible["density"] == DEFAULT_DENSITY and plain["density"] == "none"
    assert plausible["validity"] == plain["validity"] and plausible["violations"] == plain["violations"] == 0
    assert plausible["lof_mean"] < plain["lof_mean"], (plausible["lof_mean"], plain["lof_mean"])
    assert plausible["ynn_mean"] > plain["ynn_mean"], (plausible["ynn_mean"], plain["ynn_mean"])
