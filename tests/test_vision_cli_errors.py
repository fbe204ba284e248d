"""Bad input to the image commands and vision bundles: clear errors naming the option, file or key."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from commands.vision import attack_text, explain_text, run_attack
from recourse.errors import BundleError
from recourse.vision import models as vm
from recourse.vision.models import build_vision_bundle, default_bundle_dir, load_bundle

runner = CliRunner()


def cli(*args: str):
    from cli import app

    return runner.invoke(app, list(args))


@pytest.fixture(scope="module")
def digits(recourse_home):
    """The digits CNN at its default place (a few epochs: only shapes and plumbing matter here)."""
    return build_vision_bundle("digits", default_bundle_dir("digits"), epochs=3)


def edited(digits, tmp_path: Path, **changes: Any) -> Path:
    """A copy of the digits bundle whose model.json has ``changes`` (value None deletes the key)."""
    copy = tmp_path / "vb"
    shutil.copytree(digits.path, copy)
    meta = json.loads((copy / "model.json").read_text())
    for key, value in changes.items():
        if value is None:
            meta.pop(key, None)
        else:
            meta[key] = value
    (copy / "model.json").write_text(json.dumps(meta))
    return copy


# ------------------------------------------------------------------------------ C: model.json keys
@pytest.mark.parametrize("changes, message", [
    ({"layers": None}, r"layers: Field required"),
    ({"layers": "x"}, r"layers: Input should be a valid list"),
    ({"layers": [{"type": "Conv3d"}]}, r"layers\.0: Input tag 'Conv3d' found using 'type' does not match"),
    ({"layers": [{"type": "Linear", "in_features": 64}]}, r"layers\.0\.Linear\.out_features: Field required"),
    ({"input_shape": None}, r"input_shape: Field required"),
    ({"value_range": None}, r"value_range: Field required"),
    ({"dataset": None}, r"dataset: Field required"),
    ({"value_range": [1, 0]}, r"value_range: the pixel box needs lower < upper, got \[1\.0, 0\.0\]"),
    ({"value_range": [0, "x"]}, r"value_range\.1: Input should be a valid number"),
    ({"dataset": "cifar"}, r"dataset: Input should be 'digits' or 'mnist'"),
    ({"input_shape": [1, 9, 9]}, r"input_shape: \[1, 9, 9\] is not the shape of the 'digits' images \[1, 8, 8\]"),
    ({"dataset": "mnist", "input_shape": [1, 28, 28]}, r"input_shape \[1, 28, 28\] does not fit the layers"),
    ({"classes": [0, 1, 2]}, r"the layers output shape \(10,\) for one image, expected \(3,\)"),
])
def test_bad_model_json_keys_are_named(digits, tmp_path, changes, message):
    path = edited(digits, tmp_path, **changes)
    with pytest.raises(BundleError, match=message) as info:
        load_bundle(path)
    assert "model.json" in str(info.value)
    r = cli("attack", "--method", "pgd", "--bundle", str(path), "--out", str(tmp_path / "o"))
    assert r.exit_code == 2 and "--bundle" in r.output and "model.json" in r.output and "Traceback" not in r.output


def test_weights_that_do_not_fit_the_layers(digits, tmp_path):
    layers = json.loads((digits.path / "model.json").read_text())["layers"]
    layers[-1]["out_features"] = 7
    path = edited(digits, tmp_path, layers=layers)
    with pytest.raises(BundleError, match=r"model\.safetensors: weights do not fit the layers of model\.json"):
        load_bundle(path)


# ------------------------------------------------------------------------------ B: damaged demo bundle
def test_damaged_demo_bundle_is_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setenv("RECOURSE_HOME", str(tmp_path / "home"))
    built = []

    def quick_build(dataset, out, **kw):
        built.append(dataset)
        return build_vision_bundle(dataset, out, epochs=1)

    monkeypatch.setattr(vm, "build_vision_bundle", quick_build)
    vm.demo_vision_bundle("digits")
    spec = default_bundle_dir("digits") / "model.json"
    for damage in ("{broken", json.dumps({**json.loads(spec.read_text()), "layers": "x"})):
        spec.write_text(damage)
        assert vm.demo_vision_bundle("digits").meta["dataset"] == "digits"
    weights = default_bundle_dir("digits") / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8] + b"\0" * 8)
    r = cli("attack", "--method", "pgd", "--dataset", "digits", "--out", str(tmp_path / "o"), "--json")
    assert r.exit_code == 0, r.output
    assert built == ["digits"] * 4
    with pytest.raises(ValueError, match="device: 'foo'"):  # a bad device is not a reason to rebuild
        vm.demo_vision_bundle("digits", device="foo")
    assert len(built) == 4


# ------------------------------------------------------------------------------ D: --out
def test_out_that_cannot_be_a_folder(digits, tmp_path):
    afile = tmp_path / "taken"
    afile.write_text("mine")
    for args in (("attack", "--method", "pgd"), ("explain-image", "--method", "axai")):
        r = cli(*args, "--dataset", "digits", "--out", str(afile))
        assert r.exit_code == 2 and "--out" in r.output and "is not a directory" in r.output and "Traceback" not in r.output
        r = cli(*args, "--dataset", "digits", "--out", "/proc/x")
        assert r.exit_code == 2 and "--out" in r.output and "Traceback" not in r.output
    assert afile.read_text() == "mine"


def test_out_never_overwrites_other_files(digits, tmp_path):
    out = tmp_path / "nested" / "out"
    r = cli("attack", "--method", "pgd", "--dataset", "digits", "--out", str(out))  # parents are created
    assert r.exit_code == 0, r.output
    r = cli("attack", "--method", "fw", "--dataset", "digits", "--out", str(out))  # an earlier run's folder is reused
    assert r.exit_code == 0, r.output
    (out / "notes.txt").write_text("keep me")
    r = cli("attack", "--method", "pgd", "--dataset", "digits", "--out", str(out))
    assert r.exit_code == 2 and "--out" in r.output and "notes.txt" in r.output
    assert (out / "notes.txt").read_text() == "keep me"
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "metrics.json").write_text('{"accuracy": 0.9}')
    (theirs / "tmp").mkdir()
    r = cli("explain-image", "--method", "axai", "--dataset", "digits", "--out", str(theirs))
    assert r.exit_code == 2 and "metrics.json" in r.output and "tmp" in r.output
    assert (theirs / "metrics.json").read_text() == '{"accuracy": 0.9}'


# ------------------------------------------------------------------------------ E: --device
@pytest.mark.parametrize("device", ["foo", "cuda:99"] + ([] if torch.cuda.is_available() else ["cuda"]))
def test_bad_device(digits, tmp_path, device):
    for args in (("attack", "--method", "pgd"), ("explain-image", "--method", "axai")):
        r = cli(*args, "--dataset", "digits", "--device", device, "--out", str(tmp_path / "o"))
        assert r.exit_code == 2 and "--device" in r.output and "Traceback" not in r.output, r.output


# ------------------------------------------------------------------------------ F: .npy range
def test_npy_outside_the_value_range_is_refused(digits, tmp_path):
    img = tmp_path / "digit255.npy"
    np.save(img, digits.split().x_test[0] * 255)
    r = cli("attack", "--method", "pgd", "--dataset", "digits", "--image", str(img), "--out", str(tmp_path / "o"))
    assert r.exit_code == 2 and "Traceback" not in r.output
    assert "digit255.npy" in r.output and "[0, 255]" in r.output and "[0, 1]" in r.output
    assert not (tmp_path / "o").exists()


# ------------------------------------------------------------------------------ G: notes and names
def test_ignored_options_and_short_batches_are_said(digits, tmp_path):
    r = cli("attack", "--method", "gse", "--p", "0.3", "--dataset", "digits", "--out", str(tmp_path / "g"), "--json")
    assert r.exit_code == 0, r.output
    assert any("--p 0.3 is ignored" in note for note in json.loads(r.output)["notes"])
    last = len(digits.split().y_test) - 1
    r = cli("attack", "--method", "pgd", "--dataset", "digits", "--index", str(last), "--n", "5",
            "--out", str(tmp_path / "n"), "--json")
    report = json.loads(r.output)
    assert report["n_images"] == 1 and len(report["images"]) == 1
    assert any("1 image(s)" in note for note in report["notes"])
    r = cli("explain-image", "--method", "axai", "--dataset", "digits", "--k", "1000", "--out", str(tmp_path / "k"), "--json")
    assert r.exit_code == 0, r.output
    report = json.loads(r.output)
    assert report["segments_kept"][0] == len(report["density"][0]) < 1000
    assert any("--k 1000" in note for note in report["notes"])
    assert "note: --k 1000" in explain_text(report)


def test_image_file_is_named_in_the_report(digits, tmp_path):
    img = tmp_path / "seven.npy"
    np.save(img, digits.split().x_test[0])
    report = run_attack("pgd", vb=digits, image=img, index=0, n=1, target=None, p=None, norm="l2", lam=None,
                        out=tmp_path / "o", device=None)
    assert report["images"][0]["file"] == "seven.npy" and report["images"][0]["index"] is None
    text = attack_text(report)
    assert "image seven.npy:" in text and "image None" not in text
