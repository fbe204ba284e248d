"""Reproducible bundles: the same data, recipe and seed give the same model, densities and
decisions, whatever the number of threads the machine gives torch and the linear-algebra
libraries (the usual difference between two machines with the same locked dependencies)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

BUILD = """
import hashlib, json, sys
from pathlib import Path
import torch
torch.set_num_threads(int(sys.argv[2]))
from recourse.bundle import build_dataset_bundle
from recourse.data import load_dataset
bundle = build_dataset_bundle("german", sys.argv[1], model="mlp")
_, _, test, _ = load_dataset("german").split()
[decisions], = [bundle.engine().predict(test)[:1]]
files = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(Path(sys.argv[1]).iterdir())
         if p.name != "metadata.json"}
print(json.dumps({"files": files, "decisions": [d.value for d in decisions],
                  "test_accuracy": bundle.metadata["training"]["test_accuracy"]}))
"""


def _build(out: Path, threads: int) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "OPENBLAS_NUM_THREADS": str(threads), "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", BUILD, str(out), str(threads)], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_the_german_demo_bundle_is_the_same_with_one_or_two_threads(tmp_path):
    one, two = _build(tmp_path / "one", 1), _build(tmp_path / "two", 2)
    assert one["files"] == two["files"]  # weights, densities, training rows: byte for byte
    assert one["decisions"] == two["decisions"] and one["test_accuracy"] == two["test_accuracy"]
