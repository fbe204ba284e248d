"""Tests for recourse.density: KDE, GMM, k-NN gravity, registry and class-conditional wrapper."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from sklearn.mixture import GaussianMixture
from sklearn.neighbors import KernelDensity

from recourse.density import (
    ClassConditionalDensity,
    Density,
    GMMDensity,
    KDEDensity,
    KNNGravityDensity,
    available_densities,
    fit_class_conditional,
    get_density,
    make_density,
)

SMALL_GRID = [0.03, 0.06, 0.12, 0.25, 0.5]


def _blobs(n=80, d=3, seed=0):
    rng = np.random.default_rng(seed)
    centres = np.array([[0.25] * d, [0.7] * d])
    lab = rng.integers(0, 2, n)
    X = np.clip(centres[lab] + 0.08 * rng.standard_normal((n, d)), 0.0, 1.0)
    return X, lab


def _queries(b=7, d=3, seed=1, dtype=torch.float64):
    rng = np.random.default_rng(seed)
    return torch.tensor(rng.uniform(0.1, 0.9, (b, d)), dtype=dtype)


def _fitted(name, X):
    kwargs = {
        "kde": {"bandwidth": 0.1},
        "gmm": {"n_components": 2},
        "knn": {"k": 3},
    }[name]
    return make_density(name, **kwargs).fit(X)


# ------------------------------------------------------------------------------------------
# Agreement with scikit-learn
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("h", [0.05, 0.2])
def test_kde_matches_sklearn(h):
    X, _ = _blobs()
    y = _queries()
    ours = KDEDensity(bandwidth=h).fit(X).log_prob(y).numpy()
    ref = KernelDensity(kernel="gaussian", bandwidth=h).fit(X).score_samples(y.numpy())
    np.testing.assert_allclose(ours, ref, atol=1e-5, rtol=0)


def test_kde_cv_bandwidth_matches_sklearn_at_chosen_h():
    X, _ = _blobs(n=60)
    kde = KDEDensity(bandwidth_grid=SMALL_GRID).fit(X)
    assert kde.bandwidth_method_ == "cv"
    assert kde.bandwidth_ in SMALL_GRID
    y = _queries()
    ref = KernelDensity(bandwidth=kde.bandwidth_).fit(X).score_samples(y.numpy())
    np.testing.assert_allclose(kde.log_prob(y).numpy(), ref, atol=1e-5, rtol=0)


def test_gmm_matches_sklearn_same_seed():
    X, _ = _blobs()
    y = _queries()
    ours = GMMDensity(n_components=2, reg_covar=1e-3, random_state=0).fit(X)
    ref = GaussianMixture(2, covariance_type="diag", reg_covar=1e-3, max_iter=200, random_state=0).fit(X)
    np.testing.assert_allclose(ours.log_prob(y).numpy(), ref.score_samples(y.numpy()), atol=1e-5, rtol=0)


def test_gmm_from_sklearn_parameters_matches_score_samples():
    X, _ = _blobs(d=4)
    gm = GaussianMixture(3, covariance_type="diag", random_state=1).fit(X)
    dens = GMMDensity.from_state(
        {"n_components": 3},
        {
            "weights": torch.from_numpy(gm.weights_),
            "means": torch.from_numpy(gm.means_),
            "variances": torch.from_numpy(gm.covariances_),
        },
    )
    y = _queries(d=4)
    np.testing.assert_allclose(dens.log_prob(y).numpy(), gm.score_samples(y.numpy()), atol=1e-5, rtol=0)


# ------------------------------------------------------------------------------------------
# Gradients
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["kde", "gmm", "knn"])
def test_gradient_is_finite_nonzero_and_ascends(name):
    X, _ = _blobs()
    dens = _fitted(name, X)
    x = _queries()
    y = (x + 0.05).requires_grad_(True)
    lp = dens.log_prob(y, x)
    (grad,) = torch.autograd.grad(lp.sum(), y)
    assert torch.isfinite(grad).all()
    assert (grad.norm(dim=1) > 0).all()
    step = 1e-4 / grad.norm(dim=1, keepdim=True)
    with torch.no_grad():
        lp_after = dens.log_prob(y + step * grad, x)
    assert (lp_after > lp.detach()).all()


def test_gradient_matches_finite_differences_kde():
    X, _ = _blobs()
    dens = KDEDensity(bandwidth=0.15).fit(X)
    y = _queries(b=3).requires_grad_(True)
    (grad,) = torch.autograd.grad(dens.log_prob(y).sum(), y)
    eps = 1e-6
    fd = torch.zeros_like(y)
    with torch.no_grad():
        for j in range(y.shape[1]):
            e = torch.zeros_like(y)
            e[:, j] = eps
            fd[:, j] = (dens.log_prob(y + e) - dens.log_prob(y - e)) / (2 * eps)
    torch.testing.assert_close(grad, fd, atol=1e-5, rtol=1e-5)


# ------------------------------------------------------------------------------------------
# k-NN gravity
# ------------------------------------------------------------------------------------------
def _brute_gravity(P, x, k, eps):
    D = np.sqrt(((P[:, None, :] - P[None, :, :]) ** 2).sum(-1))
    r = np.sort(D, axis=1)[:, k]  # column 0 is the point itself
    w_all = 1.0 / (r + eps)
    out = []
    for xi in x:
        nn = np.argsort(np.sqrt(((P - xi) ** 2).sum(1)))[:k]
        w = w_all[nn]
        out.append((w[:, None] * P[nn]).sum(0) / w.sum())
    return np.array(out), r


def test_knn_gravity_matches_brute_force():
    rng = np.random.default_rng(3)
    P = rng.uniform(size=(25, 2))
    x = rng.uniform(size=(6, 2))
    dens = KNNGravityDensity(k=3, eps=1e-8).fit(P)
    expected, r = _brute_gravity(P, x, 3, 1e-8)
    np.testing.assert_allclose(dens.radius_.numpy(), r, atol=1e-12)
    np.testing.assert_allclose(dens.gravity(torch.from_numpy(x)).numpy(), expected, atol=1e-10)


def test_knn_dense_neighbour_weighs_more():
    # two neighbours equidistant from x: one in a tight cluster, one isolated
    P = np.array([[0.4, 0.5], [0.39, 0.52], [0.41, 0.48], [0.6, 0.5], [1.0, 1.0], [0.0, 0.0]])
    dens = KNNGravityDensity(k=2).fit(P)
    g = dens.gravity(torch.tensor([[0.5, 0.5]], dtype=torch.float64))[0]
    assert g[0] < 0.5  # pulled toward the dense cluster around x=0.4


def test_knn_log_prob_maximal_at_gravity():
    X, _ = _blobs()
    dens = KNNGravityDensity().fit(X)
    x = _queries()
    g = dens.gravity(x)
    assert not g.requires_grad
    torch.testing.assert_close(dens.log_prob(g, x), torch.zeros(x.shape[0], dtype=x.dtype))
    assert (dens.log_prob(g + 0.01, x) < 0).all()
    assert (dens.log_prob(x, x) <= 0).all()


def test_knn_fewer_points_than_k():
    P = np.array([[0.1, 0.2], [0.3, 0.4]])
    dens = KNNGravityDensity(k=5).fit(P)
    g = dens.gravity(torch.tensor([[0.0, 0.0]], dtype=torch.float64))
    np.testing.assert_allclose(g.numpy(), P.mean(0, keepdims=True), atol=1e-12)  # equal radii
    one = KNNGravityDensity(k=3).fit(P[:1])
    np.testing.assert_allclose(one.gravity(torch.zeros(2, 2, dtype=torch.float64)).numpy(), np.repeat(P[:1], 2, 0))


def test_knn_requires_anchors():
    dens = KNNGravityDensity().fit(_blobs()[0])
    with pytest.raises(ValueError, match="anchors"):
        dens.log_prob(_queries())


# ------------------------------------------------------------------------------------------
# Data-driven hyper-parameters
# ------------------------------------------------------------------------------------------
def test_kde_bandwidth_choice_stored_in_config():
    X, _ = _blobs(n=60)
    for bw, method in [("scott", "scott"), ("silverman", "silverman"), (0.2, "given")]:
        kde = KDEDensity(bandwidth=bw).fit(X)
        assert kde.bandwidth_ > 0 and kde.bandwidth_method_ == method
        cfg = kde.config()
        json.dumps(cfg)
        assert cfg["bandwidth_"] == kde.bandwidth_ and cfg["bandwidth"] == bw
    cv = KDEDensity(bandwidth_grid=SMALL_GRID).fit(X)
    cfg = cv.config()
    assert cfg["bandwidth"] == "cv" and cfg["bandwidth_"] == cv.bandwidth_ > 0
    assert len(cfg["cv_scores_"]) == len(SMALL_GRID)
    # tight data chooses a smaller bandwidth than spread data
    tight = KDEDensity(bandwidth_grid=SMALL_GRID).fit(0.5 + 0.2 * (X - 0.5))
    assert tight.bandwidth_ < cv.bandwidth_


def test_kde_cv_falls_back_to_scott_with_few_points():
    X = _blobs(n=6)[0]
    kde = KDEDensity().fit(X)
    assert kde.bandwidth_method_.startswith("scott")
    assert kde.bandwidth_ == pytest.approx(KDEDensity(bandwidth="scott").fit(X).bandwidth_)
    one = KDEDensity().fit(X[:1])
    assert np.isfinite(one.log_prob(_queries()).numpy()).all()


def test_kde_subsamples_large_data():
    rng = np.random.default_rng(0)
    X = rng.uniform(size=(300, 2))
    kde = KDEDensity(bandwidth=0.1, max_points=50).fit(X)
    assert kde.subsampled_ and kde.n_points_ == 50 and kde.n_samples_seen_ == 300
    assert kde.points_.shape == (50, 2)
    again = KDEDensity(bandwidth=0.1, max_points=50).fit(X)
    assert torch.equal(kde.points_, again.points_)  # seeded
    assert not KDEDensity(bandwidth=0.1, max_points=None).fit(X).subsampled_


def test_gmm_bic_chooses_components_in_range():
    X, _ = _blobs(n=120, d=2)
    gmm = GMMDensity().fit(X)
    assert 1 <= gmm.n_components_ <= 5
    assert gmm.n_components_ >= 2  # two well separated blobs
    cfg = gmm.config()
    json.dumps(cfg)
    assert cfg["n_components"] == "bic" and cfg["n_components_"] == gmm.n_components_
    assert len(cfg["bic_"]) == 5 and int(np.argmin(cfg["bic_"])) + 1 == gmm.n_components_
    # cap N // 5
    small = GMMDensity().fit(X[:12])
    assert small.n_components_ <= 2 and len(small.bic_) == 2
    tiny = GMMDensity().fit(X[:3])
    assert tiny.n_components_ == 1
    assert gmm.weights_.shape == (gmm.n_components_,)
    torch.testing.assert_close(gmm.weights_.sum(), torch.tensor(1.0, dtype=torch.float64))


def test_gmm_too_many_components():
    with pytest.raises(ValueError, match="exceeds"):
        GMMDensity(n_components=10).fit(_blobs(n=5)[0])


# ------------------------------------------------------------------------------------------
# Round trip
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["kde", "gmm", "knn"])
def test_round_trip_from_state(name):
    X, _ = _blobs()
    dens = _fitted(name, X)
    cfg = json.loads(json.dumps(dens.config()))
    tens = {k: v.clone() for k, v in dens.tensors().items()}
    assert all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in tens.items())
    rebuilt = get_density(name).from_state(cfg, tens)
    assert rebuilt.config() == dens.config()
    x = _queries()
    y = x + 0.03
    assert torch.equal(rebuilt.log_prob(y, x), dens.log_prob(y, x))


def test_round_trip_safetensors(tmp_path):
    safetensors_torch = pytest.importorskip("safetensors.torch")
    X, lab = _blobs()
    cc = fit_class_conditional("knn", X, lab)
    safetensors_torch.save_file(cc.tensors(), tmp_path / "d.safetensors")
    rebuilt = ClassConditionalDensity.from_state(
        json.loads(json.dumps(cc.config())), safetensors_torch.load_file(tmp_path / "d.safetensors")
    )
    x = _queries()
    t = torch.tensor([0, 1, 1, 0, 1, 0, 0])
    assert torch.equal(rebuilt.log_prob(x + 0.02, x, t), cc.log_prob(x + 0.02, x, t))


def test_from_state_missing_tensor():
    X, _ = _blobs()
    dens = KDEDensity(bandwidth=0.1).fit(X)
    with pytest.raises(ValueError, match="missing"):
        KDEDensity.from_state(dens.config(), {})
    with pytest.raises(ValueError, match="not 'kde'"):
        KDEDensity.from_state({**dens.config(), "name": "gmm"}, dens.tensors())


# ------------------------------------------------------------------------------------------
# Class-conditional wrapper
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["kde", "gmm", "knn"])
def test_class_conditional_matches_separate(name):
    X, lab = _blobs()
    kwargs = {"kde": {"bandwidth": 0.1}, "gmm": {"n_components": 2}, "knn": {}}[name]
    cc = fit_class_conditional(name, X, lab, **kwargs)
    assert cc.classes == [0, 1]
    x = _queries(b=9)
    y = (x + 0.02).requires_grad_(True)
    target = torch.tensor([1, 0, 0, 1, 1, 0, 1, 0, 0])
    lp = cc.log_prob(y, x, target)
    sep = {c: make_density(name, **kwargs).fit(X[lab == c]).log_prob(y, x) for c in (0, 1)}
    expected = torch.where(target == 1, sep[1], sep[0])
    torch.testing.assert_close(lp, expected, atol=1e-12, rtol=0)
    (grad,) = torch.autograd.grad(lp.sum(), y)
    (grad_ref,) = torch.autograd.grad(expected.sum(), y)
    torch.testing.assert_close(grad, grad_ref)


def test_class_conditional_state_and_errors():
    X, lab = _blobs()
    lab = np.where(lab == 1, 7, -1)
    cc = fit_class_conditional("gmm", X, lab, n_components=1)
    assert cc.classes == [-1, 7]
    assert set(cc.tensors()) == {f"{c}/{k}" for c in (-1, 7) for k in ("weights", "means", "variances")}
    rebuilt = ClassConditionalDensity.from_state(json.loads(json.dumps(cc.config())), cc.tensors())
    y = _queries(b=4)
    t = torch.tensor([7, -1, 7, 7])
    assert torch.equal(rebuilt.log_prob(y, None, t), cc.log_prob(y, None, t))
    with pytest.raises(ValueError, match="no density"):
        cc.log_prob(y, None, torch.tensor([7, 3, 7, 7]))
    with pytest.raises(ValueError, match="target"):
        cc.log_prob(y, None, torch.tensor([7, -1]))
    with pytest.raises(ValueError, match="no training points"):
        fit_class_conditional("gmm", X, lab, classes=[7, 2])
    only = fit_class_conditional("kde", X, lab, classes=[7], bandwidth=0.1)
    assert only.classes == [7]
    cc.to("cpu", torch.float32)
    assert cc.log_prob(y.float(), None, t).dtype == torch.float32


# ------------------------------------------------------------------------------------------
# Registry and input validation
# ------------------------------------------------------------------------------------------
def test_registry():
    assert available_densities() == ["gmm", "kde", "knn"]
    assert get_density("kde") is KDEDensity
    assert get_density("gmm") is GMMDensity
    assert get_density("knn") is KNNGravityDensity
    dens = make_density("kde", bandwidth=0.3)
    assert isinstance(dens, KDEDensity) and dens.bandwidth == 0.3 and dens.name == "kde"
    assert isinstance(dens, Density)
    with pytest.raises(ValueError, match="unknown density 'flow'.*gmm, kde, knn"):
        get_density("flow")
    with pytest.raises(ValueError, match="available"):
        make_density("nope")


@pytest.mark.parametrize("name", ["kde", "gmm", "knn"])
def test_fit_and_log_prob_errors(name):
    dens = make_density(name)
    with pytest.raises(ValueError, match="not fitted"):
        dens.log_prob(_queries(), _queries())
    with pytest.raises(ValueError, match="empty"):
        dens.fit(np.zeros((0, 3)))
    with pytest.raises(ValueError, match="NaN"):
        dens.fit(np.array([[0.1, np.nan], [0.2, 0.3]]))
    with pytest.raises(ValueError, match="2-D"):
        dens.fit(np.zeros(5))
    X, _ = _blobs()
    dens = _fitted(name, X)
    with pytest.raises(ValueError, match="features"):
        dens.log_prob(_queries(d=4), _queries(d=4))
    with pytest.raises(ValueError, match="2-D"):
        dens.log_prob(_queries()[0], _queries()[0])


def test_bad_hyper_parameters():
    X, _ = _blobs()
    with pytest.raises(ValueError, match="bandwidth"):
        KDEDensity(bandwidth=-1.0).fit(X)
    with pytest.raises(ValueError, match="bandwidth"):
        KDEDensity(bandwidth="wide").fit(X)
    with pytest.raises(ValueError, match="n_components"):
        GMMDensity(n_components="aic").fit(X)
    with pytest.raises(ValueError, match="k must"):
        KNNGravityDensity(k=0).fit(X)


# ------------------------------------------------------------------------------------------
# dtype / device
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["kde", "gmm", "knn"])
def test_float32(name):
    X, _ = _blobs()
    dens = _fitted(name, X)
    x64 = _queries()
    ref = dens.log_prob(x64 + 0.02, x64)
    assert ref.dtype == torch.float64
    # casting on the fly (state stays float64)
    x32 = x64.float()
    y32 = (x32 + 0.02).requires_grad_(True)
    lp = dens.log_prob(y32, x32)
    assert lp.dtype == torch.float32
    # after .to(dtype=...), state is float32 too
    assert dens.to(x32.device, dtype=torch.float32) is dens
    assert all(t.dtype == torch.float32 for t in dens.tensors().values())
    assert dens.dtype == torch.float32
    lp = dens.log_prob(y32, x32)
    assert lp.dtype == torch.float32 and lp.device == y32.device
    torch.testing.assert_close(lp.double(), ref, rtol=1e-4, atol=1e-4)
    (grad,) = torch.autograd.grad(lp.sum(), y32)
    assert grad.dtype == torch.float32 and torch.isfinite(grad).all()
    # back to float64: unchanged results
    dens.to(dtype=torch.float64)
    torch.testing.assert_close(dens.log_prob(x64 + 0.02, x64), ref, rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", ["kde", "gmm", "knn"])
def test_cuda(name):
    X, _ = _blobs()
    dens = _fitted(name, X)
    x = _queries()
    ref = dens.log_prob(x + 0.02, x)
    dens.to("cuda")
    xc = x.cuda()
    lp = dens.log_prob(xc + 0.02, xc)
    assert lp.device.type == "cuda"
    torch.testing.assert_close(lp.cpu(), ref)


# ---------------------------------------------------------------------- default weights τ
def test_default_density_weight_is_the_plugin_class_attribute():
    from recourse.density import UnknownDensityError, available_densities, default_density_weight, get_density
    from recourse.density.base import _REGISTRY, FALLBACK_WEIGHT, BaseDensity, register_density

    assert {n: default_density_weight(n) for n in ("kde", "gmm", "knn")} == {"kde": 2.0, "gmm": 0.5, "knn": 0.5}
    for name in available_densities():
        assert default_density_weight(name) == get_density(name).default_weight
    with pytest.raises(UnknownDensityError, match=r"unknown density 'nope'; available densities: .*kde") as info:
        default_density_weight("nope")
    assert isinstance(info.value, ValueError) and info.value.name == "nope" and "knn" in info.value.available
    with pytest.raises(UnknownDensityError):
        get_density("nope")

    class Plain(BaseDensity):  # a new plugin without its own τ gets the fallback
        pass

    class Heavy(BaseDensity):
        default_weight = 3.0

    try:
        register_density("test-plain")(Plain)
        register_density("test-heavy")(Heavy)
        assert default_density_weight("test-plain") == FALLBACK_WEIGHT
        assert default_density_weight("test-heavy") == 3.0

        class Bad(BaseDensity):
            default_weight = float("nan")

        with pytest.raises(ValueError, match="default_weight"):
            register_density("test-bad")(Bad)
        assert "test-bad" not in available_densities()
    finally:
        for name in ("test-plain", "test-heavy", "test-bad"):
            _REGISTRY.pop(name, None)
