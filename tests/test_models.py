"""Tests for recourse.models (adapters, sklearn conversion, training) and recourse.model_io."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from sklearn.datasets import make_classification
from sklearn.decomposition import PCA
from sklearn.ensemble import RandomForestClassifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import MinMaxScaler, StandardScaler
from torch import nn

from recourse.model_io import (
    file_sha256,
    load_classifier,
    module_from_spec,
    module_to_spec,
    save_classifier,
)
from recourse.models import Affine, TorchClassifier, from_sklearn, train_logistic, train_mlp


def _data(n_classes: int, n: int = 240, d: int = 6, seed: int = 0):
    X, y = make_classification(n_samples=n, n_features=d, n_informative=4, n_redundant=1,
                               n_classes=n_classes, random_state=seed)
    X = X * np.linspace(0.5, 20.0, d) + np.linspace(-3.0, 50.0, d)  # scalers must matter
    return X[:180], y[:180], X[180:], y[180:]


def _fit(est, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return est.fit(X, y)


ESTIMATORS = {
    "logreg": lambda: LogisticRegression(max_iter=100),
    "logreg_noint": lambda: LogisticRegression(max_iter=100, fit_intercept=False),
    **{f"mlp_{a}": (lambda a=a: MLPClassifier((7, 5), activation=a, max_iter=40, random_state=0))
       for a in ("relu", "tanh", "logistic", "identity")},
}
SCALERS = {
    "none": lambda: [],
    "std": lambda: [StandardScaler()],
    "minmax": lambda: [MinMaxScaler()],
    "std_nomean+minmax": lambda: [StandardScaler(with_mean=False), MinMaxScaler((-1, 2))],
    "std_nostd": lambda: [StandardScaler(with_std=False)],
}


CASES = [(e, s, k) for e in ESTIMATORS for s in SCALERS for k in (2, 3) if not (e == "logreg_noint" and k == 3)]


@pytest.mark.parametrize("est_name, scaler, n_classes", CASES)
def test_from_sklearn_matches_predict_proba(est_name: str, scaler: str, n_classes: int) -> None:
    Xtr, ytr, Xte, _ = _data(n_classes)
    steps = SCALERS[scaler]()
    model = ESTIMATORS[est_name]()
    est = make_pipeline(*steps, model) if steps else model
    _fit(est, Xtr, ytr)
    ref = est.predict_proba(Xte)

    clf64 = from_sklearn(est, dtype=torch.float64)
    assert clf64.classes == est.classes_.tolist()
    assert clf64.n_classes == n_classes and clf64.n_features == Xte.shape[1]
    assert clf64.output == ("logit" if n_classes == 2 else "logits")
    p64 = clf64.predict_proba(torch.tensor(Xte)).numpy()
    np.testing.assert_allclose(p64, ref, atol=1e-6, rtol=0)
    np.testing.assert_array_equal(np.asarray(clf64.classes)[clf64.predict(torch.tensor(Xte)).numpy()],
                                  est.predict(Xte))

    clf32 = from_sklearn(est)  # default float32
    assert clf32.dtype == torch.float32
    x32 = torch.tensor(Xte, dtype=torch.float32)
    p32 = clf32.predict_proba(x32)
    assert p32.dtype == torch.float32
    np.testing.assert_allclose(p32.double().numpy(), ref, atol=1e-5, rtol=0)


def test_from_sklearn_string_labels_and_passthrough() -> None:
    Xtr, ytr, Xte, _ = _data(3)
    labels = np.array(["a", "b", "c"])[ytr]
    est = _fit(Pipeline([("s", StandardScaler()), ("p", "passthrough"), ("m", LogisticRegression())]), Xtr, labels)
    clf = from_sklearn(est, dtype=torch.float64)
    assert clf.classes == ["a", "b", "c"]
    np.testing.assert_allclose(clf.predict_proba(torch.tensor(Xte)).numpy(), est.predict_proba(Xte), atol=1e-6)


@pytest.mark.parametrize(
    "est, name",
    [
        (RandomForestClassifier(n_estimators=2, random_state=0), "RandomForestClassifier"),
        (make_pipeline(PCA(2), LogisticRegression()), "PCA"),
        (make_pipeline(MinMaxScaler(clip=True), LogisticRegression()), "clip=True"),
    ],
)
def test_from_sklearn_unsupported(est, name: str) -> None:
    Xtr, ytr, _, _ = _data(2)
    _fit(est, Xtr, ytr)
    with pytest.raises(TypeError, match=name) as info:
        from_sklearn(est)
    assert "supported" in str(info.value)


def test_from_sklearn_rejects_multilabel_mlp_and_unfitted() -> None:
    Xtr, ytr, _, _ = _data(2)
    Y = np.stack([ytr, 1 - ytr], axis=1)
    est = _fit(MLPClassifier((4,), max_iter=5, random_state=0), Xtr, Y)
    with pytest.raises(TypeError, match="multilabel"):
        from_sklearn(est)
    with pytest.raises(ValueError, match="not fitted"):
        from_sklearn(LogisticRegression())
    with pytest.raises(TypeError, match="dtype"):
        from_sklearn(_fit(LogisticRegression(), Xtr, ytr), dtype=torch.int64)


# ---------------------------------------------------------------------- TorchClassifier
def test_output_kinds_consistent_multiclass() -> None:
    torch.manual_seed(0)
    lin = nn.Linear(5, 3).double()
    x = torch.randn(11, 5, dtype=torch.float64)
    a = TorchClassifier(lin, "logits")
    b = TorchClassifier(nn.Sequential(lin, nn.Softmax(dim=1)), "proba")
    assert a.n_classes == b.n_classes == 3 and a.classes == [0, 1, 2]
    assert a.logits(x).shape == b.logits(x).shape == (11, 3)
    torch.testing.assert_close(a.predict_proba(x), b.predict_proba(x), atol=1e-12, rtol=0)
    torch.testing.assert_close(a.predict_proba(x).sum(1), torch.ones(11, dtype=torch.float64))
    assert torch.equal(a.predict(x), lin(x).argmax(1))
    assert torch.equal(a.predict(x), b.predict(x))


def test_output_kinds_consistent_binary() -> None:
    torch.manual_seed(1)
    lin = nn.Linear(4, 1).double()
    x = torch.randn(9, 4, dtype=torch.float64)
    z = lin(x).squeeze(1)
    two = nn.Linear(4, 2).double()
    with torch.no_grad():  # logits [0, z]
        two.weight.copy_(torch.cat([torch.zeros(1, 4, dtype=torch.float64), lin.weight]))
        two.bias.copy_(torch.cat([torch.zeros(1, dtype=torch.float64), lin.bias]))
    variants = [
        TorchClassifier(lin, "logit"),                                              # (B, 1) logit
        TorchClassifier(nn.Sequential(lin, nn.Flatten(0)), "logit"),                # (B,) logit
        TorchClassifier(nn.Sequential(lin, nn.Sigmoid()), "proba"),                 # (B, 1) prob
        TorchClassifier(nn.Sequential(lin, nn.Sigmoid(), nn.Flatten(0)), "proba"),  # (B,) prob
        TorchClassifier(two, "logits"),
    ]
    expected = torch.stack([1 - torch.sigmoid(z), torch.sigmoid(z)], dim=1)
    for clf in variants:
        assert clf.n_classes == 2
        assert clf.logits(x).shape == (9, 2)
        torch.testing.assert_close(clf.predict_proba(x), expected, atol=1e-10, rtol=0)
        assert torch.equal(clf.predict(x), (z > 0).long())
    torch.testing.assert_close(variants[0].logits(x)[:, 1], z)
    assert torch.all(variants[0].logits(x)[:, 0] == 0)


def test_proba_clamping_is_finite() -> None:
    probs = torch.tensor([[1.0, 0.0], [0.5, 0.5]])
    clf = TorchClassifier(Affine(torch.ones(2), torch.zeros(2)), "proba")
    assert torch.isfinite(clf.logits(probs)).all()
    binary = TorchClassifier(nn.Sequential(nn.Flatten(0)), "proba", classes=["no", "yes"])
    z = binary.logits(torch.tensor([[0.0], [1.0], [0.5]]))
    assert torch.isfinite(z).all() and z[0, 1] < -50 and z[1, 1] > 50 and z[2, 1] == 0


def test_gradients_flow_to_inputs_only() -> None:
    Xtr, ytr, Xte, _ = _data(2)
    mlp = MLPClassifier((8,), activation="tanh", max_iter=30, random_state=0)
    clf = from_sklearn(_fit(make_pipeline(StandardScaler(), mlp), Xtr, ytr))
    assert not clf.module.training
    assert all(not p.requires_grad for p in clf.module.parameters())
    x = torch.tensor(Xte, dtype=torch.float32, requires_grad=True)
    (g,) = torch.autograd.grad(clf.logits(x)[:, 1].sum(), x)
    assert g.shape == x.shape and torch.isfinite(g).all()
    assert (g.abs().sum(1) > 0).all()
    (g2,) = torch.autograd.grad(clf.predict_proba(x)[:, 0].sum(), x)
    assert g2.abs().sum() > 0


def test_input_validation_and_dtype_following() -> None:
    clf = TorchClassifier(nn.Linear(3, 4), "logits", classes=list("abcd"))
    assert clf.n_features == 3 and clf.classes == ["a", "b", "c", "d"]
    out = clf.logits(torch.zeros(2, 3, dtype=torch.float64))
    assert out.dtype == torch.float64 and out.shape == (2, 4)
    with pytest.raises(ValueError, match="features"):
        clf.logits(torch.zeros(2, 5))
    assert clf.logits(torch.zeros(3)).shape == (1, 4)  # one unbatched row: a batch of one
    with pytest.raises(ValueError, match=r"\(B, D\)"):
        clf.logits(torch.zeros(1, 2, 3))
    with pytest.raises(TypeError, match="torch.Tensor"):
        clf.logits(np.zeros((2, 3)))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="output must be"):
        TorchClassifier(nn.Linear(3, 2), "probs")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="output='logit'"):
        TorchClassifier(nn.Linear(3, 1), "logits")
    with pytest.raises(ValueError, match="2 classes given but the module outputs 4"):
        TorchClassifier(nn.Linear(3, 4), "logits", classes=[0, 1])
    with pytest.raises(ValueError, match="n_features"):
        TorchClassifier(nn.Sequential(nn.ReLU()), "logits")
    with pytest.raises(TypeError, match="nn.Module"):
        TorchClassifier(lambda x: x, "logits")  # type: ignore[arg-type]
    relu = TorchClassifier(nn.Sequential(nn.ReLU()), "logits", n_features=3)
    assert relu.n_classes == 3
    clf.to(dtype=torch.float64)
    assert clf.dtype == torch.float64 and clf.logits(torch.zeros(1, 3)).dtype == torch.float32


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_follows_input_device() -> None:
    clf = TorchClassifier(nn.Linear(3, 2), "logits")
    x = torch.randn(4, 3, device="cuda")
    assert clf.logits(x).device == x.device and clf.device == x.device


# ---------------------------------------------------------------------- training
def test_train_mlp_accuracy_and_labels() -> None:
    X, y = make_classification(n_samples=600, n_features=8, n_informative=5, class_sep=2.0, random_state=3)
    labels = np.where(y == 1, 7, -2)
    clf = train_mlp(X, labels, epochs=40)
    assert clf.classes == [-2, 7] and clf.output == "logit" and clf.n_features == 8
    pred = np.asarray(clf.classes)[clf.predict(torch.tensor(X, dtype=torch.float32)).numpy()]
    assert (pred == labels).mean() > 0.9


def test_train_mlp_multiclass_and_deterministic() -> None:
    X, y = make_classification(n_samples=300, n_features=6, n_informative=4, n_classes=3,
                               class_sep=2.0, random_state=4)
    state, threads = torch.random.get_rng_state(), torch.get_num_threads()
    a = train_mlp(X, y + 10, epochs=25, seed=5)
    assert torch.equal(state, torch.random.get_rng_state())  # global RNG untouched
    assert torch.get_num_threads() == threads
    b = train_mlp(X, y + 10, epochs=25, seed=5)
    c = train_mlp(X, y + 10, epochs=25, seed=6)
    assert a.classes == [10, 11, 12] and a.output == "logits" and a.n_classes == 3
    sa, sb, sc = (m.module.state_dict() for m in (a, b, c))
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)
    x = torch.tensor(X, dtype=torch.float32)
    assert (a.predict(x).numpy() == y).mean() > 0.9


def test_train_mlp_validation() -> None:
    with pytest.raises(ValueError, match="at least 2 classes"):
        train_mlp(np.zeros((5, 2)), np.ones(5))
    with pytest.raises(ValueError, match="labels"):
        train_mlp(np.zeros((5, 2)), np.ones(4))


def test_train_logistic() -> None:
    Xtr, ytr, Xte, _ = _data(2)
    clf, est = train_logistic(Xtr, ytr, C=0.5, return_estimator=True)
    assert isinstance(est, LogisticRegression) and est.C == 0.5
    np.testing.assert_allclose(clf.predict_proba(torch.tensor(Xte, dtype=torch.float32)).double().numpy(),
                               est.predict_proba(Xte), atol=1e-5)
    assert isinstance(train_logistic(Xtr, ytr), TorchClassifier)


# ---------------------------------------------------------------------- model_io
def test_spec_round_trip_all_layer_types() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(
        Affine(torch.rand(4) + 0.5, torch.randn(4)),
        nn.Sequential(nn.Linear(4, 6), nn.LeakyReLU(0.3)),
        nn.Linear(6, 6, bias=False), nn.ELU(0.7), nn.Tanh(), nn.Identity(),
        nn.Linear(6, 5), nn.ReLU(), nn.Sigmoid(), nn.Linear(5, 3), nn.Flatten(), nn.Softmax(dim=-1),
    )
    spec, tensors = module_to_spec(net)
    assert json.loads(json.dumps(spec)) == spec
    assert [layer["type"] for layer in spec["layers"]][:3] == ["Affine", "Linear", "LeakyReLU"]
    rebuilt = module_from_spec(spec, tensors)
    x = torch.randn(7, 4)
    torch.testing.assert_close(rebuilt(x), net(x), atol=0, rtol=0)


def test_spec_validation() -> None:
    spec, tensors = module_to_spec(nn.Sequential(nn.Linear(3, 2), nn.ReLU()))
    bad_type = {"type": "Sequential", "layers": [{"type": "Conv2d"}]}
    with pytest.raises(ValueError, match="Conv2d"):
        module_from_spec(bad_type, {})
    with pytest.raises(ValueError, match="shape"):
        module_from_spec(spec, {**tensors, "0.weight": torch.zeros(2, 4)})
    with pytest.raises(ValueError, match="missing"):
        module_from_spec(spec, {"0.weight": tensors["0.weight"]})
    chain = {"type": "Sequential", "layers": [{"type": "Linear", "in_features": 3, "out_features": 2, "bias": False},
                                              {"type": "Linear", "in_features": 5, "out_features": 2, "bias": False}]}
    with pytest.raises(ValueError, match="in_features=5"):
        module_from_spec(chain, {"0.weight": torch.zeros(2, 3), "1.weight": torch.zeros(2, 5)})

    class MyLinear(nn.Linear):
        pass

    with pytest.raises(TypeError, match="MyLinear"):
        module_to_spec(nn.Sequential(MyLinear(2, 2)))


def _check_saved(tmp_path, clf: TorchClassifier, x: torch.Tensor) -> TorchClassifier:
    paths = save_classifier(clf, tmp_path / "m")
    assert sorted(p.name for p in paths) == ["model.json", "model.safetensors"]
    meta = json.loads((tmp_path / "m" / "model.json").read_text())
    assert meta["output"] == clf.output and meta["classes"] == clf.classes
    assert meta["n_features"] == clf.n_features and meta["tensors_sha256"] == file_sha256(paths[1])
    loaded = load_classifier(tmp_path / "m")
    assert loaded.classes == clf.classes and loaded.output == clf.output and loaded.dtype == clf.dtype
    assert torch.equal(loaded.predict_proba(x), clf.predict_proba(x))
    return loaded


def test_save_load_trained_mlp(tmp_path) -> None:
    X, y = make_classification(n_samples=200, n_features=5, random_state=0)
    clf = train_mlp(X, y + 3, epochs=3)
    _check_saved(tmp_path, clf, torch.tensor(X, dtype=torch.float32))


def test_save_load_converted_pipeline(tmp_path) -> None:
    Xtr, ytr, Xte, _ = _data(3)
    est = _fit(make_pipeline(MinMaxScaler(), StandardScaler(), MLPClassifier((6,), activation="tanh", max_iter=30,
                                                                             random_state=0)), Xtr, ytr)
    clf = from_sklearn(est, dtype=torch.float64)
    loaded = _check_saved(tmp_path, clf, torch.tensor(Xte))
    np.testing.assert_allclose(loaded.predict_proba(torch.tensor(Xte)).numpy(), est.predict_proba(Xte), atol=1e-6)


def test_load_rejects_tampered_or_missing_files(tmp_path) -> None:
    clf = from_sklearn(_fit(LogisticRegression(), *_data(2)[:2]))
    d = tmp_path / "m"
    json_path, st_path = save_classifier(clf, d)

    data = bytearray(st_path.read_bytes())
    data[-1] ^= 0xFF
    st_path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="model.safetensors.*SHA-256"):
        load_classifier(d)

    st_path.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{garbage")  # readable sha, invalid content
    meta = json.loads(json_path.read_text())
    meta["tensors_sha256"] = file_sha256(st_path)
    json_path.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="model.safetensors: cannot read safetensors"):
        load_classifier(d)

    st_path.unlink()
    with pytest.raises(ValueError, match="model.safetensors: file is missing"):
        load_classifier(d)

    save_classifier(clf, d)
    json_path.write_text("{not json")
    with pytest.raises(ValueError, match="model.json: not valid JSON"):
        load_classifier(d)
    json_path.unlink()
    with pytest.raises(ValueError, match="model.json: file is missing"):
        load_classifier(d)

    save_classifier(clf, d)
    meta = json.loads(json_path.read_text())
    meta["spec"]["layers"][0]["type"] = "Bilinear"
    json_path.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="model.json: invalid model description.*Bilinear"):
        load_classifier(d)


def test_custom_module_is_not_saved_and_export_format_refused(tmp_path) -> None:
    class Custom(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(3, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.lin(x) ** 2

    clf = TorchClassifier(Custom(), "logits")
    with pytest.raises(TypeError, match="Custom.*nn.Sequential") as info:
        save_classifier(clf, tmp_path / "c")
    assert "torch.export" in str(info.value)
    assert not (tmp_path / "c" / "model.json").exists()

    d = tmp_path / "e"
    d.mkdir()
    (d / "model.json").write_text(json.dumps({"format": "torch.export", "format_version": 1}))
    (d / "model.pt2").write_bytes(b"PK")
    with pytest.raises(ValueError, match="refusing to load a torch.export"):
        load_classifier(d)


def test_spec_round_trip_of_a_cnn_and_unsupported_options() -> None:
    """Convolutional layers share the one spec format (the vision bundles use it)."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 5, (3, 2), stride=(2, 1), bias=False),
                        nn.MaxPool2d(2), nn.Flatten(), nn.Linear(5 * 1 * 2, 2))
    spec, tensors = module_to_spec(net)
    assert json.loads(json.dumps(spec)) == spec
    assert spec["layers"][2] == {"type": "Conv2d", "in_channels": 4, "out_channels": 5, "kernel_size": [3, 2],
                                 "stride": [2, 1], "padding": [0, 0], "bias": False}
    rebuilt = module_from_spec(spec, tensors)
    x = torch.randn(2, 3, 6, 6)
    torch.testing.assert_close(rebuilt(x), net(x), atol=0, rtol=0)
    chain = json.loads(json.dumps(spec))
    chain["layers"][2]["in_channels"] = 3
    with pytest.raises(ValueError, match="in_channels=3"):
        module_from_spec(chain, tensors)
    for layer in (nn.Conv2d(3, 4, 3, dilation=2), nn.Conv2d(4, 4, 3, groups=2), nn.MaxPool2d(2, ceil_mode=True)):
        with pytest.raises(TypeError, match=type(layer).__name__):
            module_to_spec(nn.Sequential(layer))


# ---------------------------------------------------------------------- model kinds
def test_model_kinds_are_one_registry() -> None:
    from recourse.models import ModelKind, UnknownModelKindError, get_model_kind, model_kinds, register_model_kind
    from recourse.trees import TREE_MODELS, train_tree_model

    assert model_kinds()[:2] == ["mlp", "logistic"]
    assert set(model_kinds()) >= {"mlp", "logistic", "gbm", "hgb", "forest"}
    assert TREE_MODELS == tuple(k for k in model_kinds() if not get_model_kind(k).differentiable)
    assert isinstance(get_model_kind("forest"), ModelKind) and get_model_kind("mlp").differentiable
    with pytest.raises(UnknownModelKindError, match=r"unknown model kind 'svm'; choose one of mlp, logistic") as info:
        get_model_kind("svm")
    assert isinstance(info.value, ValueError) and info.value.name == "svm"
    with pytest.raises(ValueError, match="unknown tree model 'mlp'"):
        train_tree_model("mlp", np.zeros((4, 2)), np.array([0, 1, 0, 1]))
    rng = np.random.default_rng(0)
    x = rng.random((40, 3))
    y = (x[:, 0] > 0.5).astype(int)
    clf = get_model_kind("logistic").train(x, y, seed=0)
    assert isinstance(clf, TorchClassifier)
    forest = get_model_kind("forest").train(x, y, seed=0)
    assert forest.predict_proba(x).shape == (40, 2)
    with pytest.raises(ValueError, match="already registered"):
        register_model_kind("mlp", differentiable=True)(lambda x, y, seed=0: None)
