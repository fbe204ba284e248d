"""Any predict_proba callable as the model: a distilled surrogate steers, the callable verifies; nothing pickled."""
from __future__ import annotations

import functools
import json

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

import recourse.bundle
import recourse.surrogate
from recourse.blackbox import ProbaModel, build_black_box_bundle, with_black_box
from recourse.bundle import load_bundle
from recourse.errors import BundleError
from recourse.encoding import TabularEncoder, complete_schema
from recourse.surrogate import distill


@pytest.fixture(scope="module")
def black_box(tiny_schema, tmp_path_factory):
    from conftest import tiny_frame

    frame, labels = tiny_frame(300)
    encoder = TabularEncoder(complete_schema(tiny_schema, frame))
    model = LogisticRegression(C=10.0).fit(encoder.encode(frame), labels)
    calls = {"rows": 0}

    def predict_proba(x: np.ndarray) -> np.ndarray:  # an opaque callable (think XGBoost, a remote model)
        calls["rows"] += len(x)
        return model.predict_proba(x)

    out = tmp_path_factory.mktemp("bundles") / "blackbox"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(recourse.bundle, "distill", functools.partial(distill, synthetic=1500, epochs=10))
        mp.setattr(recourse.surrogate, "distill", functools.partial(distill, synthetic=1500, epochs=10))
        bundle = build_black_box_bundle(tiny_schema, frame, labels, out, predict_proba, densities=("gmm",),
                                        default_density="gmm")
    return bundle, out, model, predict_proba, calls, frame


def test_answers_are_verified_on_the_callable(black_box):
    bundle, out, model, predict_proba, calls, frame = black_box
    assert isinstance(bundle.verifier, ProbaModel)
    engine = bundle.engine()
    x = engine.encoder.encode(frame)
    denied = frame[model.predict(x) == 0].head(10)
    before = calls["rows"]
    results = engine.explain(denied, alternatives=2)
    assert calls["rows"] > before  # the callable was asked
    found = [r for r in results if r.found]
    assert len(found) >= 8
    cfs = pd.DataFrame([a.counterfactual for r in found for a in r.alternatives], columns=engine.schema.names)
    assert (model.predict(engine.encoder.encode(cfs)) == 1).all()


def test_bundle_stores_no_callable_and_takes_it_at_load(black_box):
    bundle, out, model, predict_proba, calls, frame = black_box
    assert not any(p.suffix in (".pkl", ".pickle", ".joblib") for p in out.iterdir())
    json.loads((out / "metadata.json").read_text())
    loaded = load_bundle(out)
    assert loaded.verifier is None and json.loads((out / "metadata.json").read_text())["verifier"]["format"] == "external"
    with pytest.raises(BundleError, match="with_black_box"):  # never answers on the surrogate alone
        loaded.engine()
    attached = with_black_box(loaded, predict_proba)
    row = frame.head(3)
    p = attached.engine().predict_proba(attached.engine().encoder.encode(row))
    assert np.allclose(p, model.predict_proba(attached.engine().encoder.encode(row)), atol=1e-6)


def test_bad_callable_output_is_reported():
    import torch

    box = ProbaModel(lambda x: np.ones((len(x), 3)), classes=[0, 1])
    with pytest.raises(ValueError, match="shape"):
        box.predict_proba(torch.zeros(2, 4))
    with pytest.raises(TypeError):
        ProbaModel("not callable", classes=[0, 1])
