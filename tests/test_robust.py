"""The robust mode: a committee of the model and its stored refits verifies (and steers) every answer.

The committee's margin is the worst member's, with the worst member's gradient; a bundle built
with a family stores the refits (hashed like every file, refused when tampered with); a robust
answer is put in the target class, at the call's confidence, by every member; the option is
checked once for Python, the CLI and HTTP.
"""
from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from recourse.bundle import FAMILY_SEED, build_bundle, load_bundle
from recourse.committee import Committee
from recourse.errors import BundleError, OptionsError
from recourse.models import train_mlp
from recourse.objective import MarginGradient, logit_margin
from tests.conftest import tiny_frame


@pytest.fixture(scope="module")
def family_bundle(tmp_path_factory, tiny_schema):
    frame, labels = tiny_frame(300, seed=3)
    out = tmp_path_factory.mktemp("family") / "tiny-mlp"
    return build_bundle(tiny_schema, frame, labels, out, model="mlp", densities=("gmm",), family=3)


def _members(seed: int = 0) -> list:
    rng = np.random.default_rng(seed)
    x = rng.random((80, 4))
    y = (x[:, 0] + x[:, 1] > 1).astype(int)
    return [train_mlp(x, y, hidden=(6,), epochs=5, seed=k) for k in range(3)]


@settings(max_examples=25, deadline=None, database=None)
@given(seed=st.integers(0, 10_000), target=st.integers(0, 1))
def test_committee_margin_is_the_worst_members_with_its_gradient(seed, target):
    members = _members()
    committee = Committee(members)
    x = torch.as_tensor(np.random.default_rng(seed).random((6, 4)), dtype=torch.float32)
    t = torch.full((6,), target, dtype=torch.long)
    each = torch.stack([logit_margin(m.logits(x), t) for m in members])
    torch.testing.assert_close(committee.target_margin(x, t), each.amin(0))
    margin, grad = MarginGradient(committee)(x, t)
    torch.testing.assert_close(margin, each.amin(0), rtol=1e-5, atol=1e-5)
    xx = x.clone().requires_grad_(True)
    worst = each.argmin(0)
    (ref,) = torch.autograd.grad(sum(logit_margin(members[int(k)].logits(xx[i:i + 1]), t[i:i + 1]).sum()
                                     for i, k in enumerate(worst)), xx)
    torch.testing.assert_close(grad, ref, rtol=1e-4, atol=1e-5)
    # decisions and probabilities are the bundle's model's own
    torch.testing.assert_close(committee.predict_proba(x), members[0].predict_proba(x))


def test_a_family_is_stored_hashed_and_loaded(family_bundle):
    meta = family_bundle.metadata
    assert meta["family"]["size"] == 3 and meta["family"]["seed"] == FAMILY_SEED
    assert {f"family-{k}.{ext}" for k in range(3) for ext in ("json", "safetensors")} <= set(meta["files"])
    again = load_bundle(family_bundle.path)
    assert len(again.family) == 3
    x = torch.as_tensor(again.train_encoded[:5], dtype=torch.float32)
    for a, b in zip(family_bundle.family, again.family):
        torch.testing.assert_close(a.logits(x), b.logits(x))
    # the refits differ from the model and from each other (bootstrap resamples, new seeds)
    logits = [m.logits(x) for m in [again.classifier, *again.family]]
    assert all(not torch.allclose(logits[0], other) for other in logits[1:])


def test_a_tampered_or_missing_refit_is_refused(family_bundle, tmp_path):
    copy = tmp_path / "b"
    shutil.copytree(family_bundle.path, copy)
    data = (copy / "family-1.safetensors").read_bytes()
    (copy / "family-1.safetensors").write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(BundleError, match="family-1.safetensors does not match its recorded hash"):
        load_bundle(copy)
    (copy / "family-1.safetensors").unlink()
    with pytest.raises(BundleError, match="missing file family-1.safetensors"):
        load_bundle(copy)


def test_robust_answers_hold_for_every_member(family_bundle):
    engine = family_bundle.engine()
    frame, _ = tiny_frame(60, seed=9)
    pred = engine.predict_proba(engine.encoder.encode(frame)).argmax(1)
    rows = frame.iloc[np.flatnonzero(pred == 0)[:20]].reset_index(drop=True)
    plain = engine.explain(rows)
    robust = engine.explain(rows, robust=True, min_probability=0.7)
    found = [r for r in robust if r.found]
    assert found, [r.message for r in robust]
    cf = engine.encoder.encode(pd.DataFrame([r.counterfactual for r in found]))
    x = torch.as_tensor(cf, dtype=torch.float32)
    for member in [engine.classifier, *engine.family]:
        p = member.predict_proba(x)[:, 1].numpy()
        assert (p >= 0.7 - 1e-6).all(), p
    # every robust answer is an answer the model itself gives at 0.7, so the plain search has one too
    # (it may be cheaper: no refit has to agree with it)
    assert all(plain[i].found for i, r in enumerate(robust) if r.found)


def test_the_robust_option_is_checked_once(tiny_engine, family_bundle):
    frame, _ = tiny_frame(3)
    with pytest.raises(OptionsError) as info:
        tiny_engine.explain(frame, robust=True)
    assert info.value.errors[0].field == "robust" and "no committee of refits" in info.value.errors[0].message
    with pytest.raises(OptionsError) as info:
        family_bundle.engine().explain(frame, robust="yes")
    assert info.value.errors[0].field == "robust"
    with pytest.raises(BundleError, match="family: refits need the recipe"):
        from sklearn.linear_model import LogisticRegression

        from recourse.encoding import TabularEncoder, complete_schema
        rows, labels = tiny_frame(50)
        schema = complete_schema(family_bundle.schema, rows)
        model = LogisticRegression().fit(TabularEncoder(schema).encode(rows), labels)
        build_bundle(family_bundle.schema, rows, labels, family_bundle.path.parent / "x", model=model, family=2)


def test_robust_from_the_command_line_and_http(family_bundle, tmp_path):
    import cli
    from api import ServiceConfig, create_app
    from api.keys import hash_key

    frame, _ = tiny_frame(40, seed=11)
    engine = family_bundle.engine()
    pred = engine.predict_proba(engine.encoder.encode(frame)).argmax(1)
    applicant = engine.validate(frame.iloc[[int(np.flatnonzero(pred == 0)[0])]]).to_dict(orient="records")[0]
    path = tmp_path / "a.json"
    path.write_text(json.dumps(applicant))
    runner = CliRunner()
    done = runner.invoke(cli.app, ["explain", str(path), "--bundle", str(family_bundle.path), "--robust", "--json"])
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["status"] in ("recourse_found", "no_recourse_found")
    german = "datasets/german_credit/examples/denied_applicant.json"
    refused = runner.invoke(cli.app, ["explain", german, "--robust"])  # the demo bundle has no family
    assert refused.exit_code == 2 and "--robust: this bundle has no committee of refits" in refused.output
    app = create_app(ServiceConfig(database=tmp_path / "log.sqlite3", api_key_hashes=[hash_key("k")]), bundle=family_bundle)
    client = app.test_client()
    auth = {"Authorization": "Bearer k"}
    ok = client.post("/v1/recourse", json={"applicant": applicant, "robust": True}, headers=auth)
    assert ok.status_code == 200, ok.get_data(as_text=True)
    bad = client.post("/v1/recourse", json={"applicant": applicant, "robust": "yes"}, headers=auth)
    assert bad.status_code == 422 and bad.get_json()["errors"][0]["field"] == "robust"
