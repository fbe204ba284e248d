"""Explanation manipulation: softplus surrogate, differentiable explainers vs captum, the target-map
and fragility attacks on a tiny trained CNN, the map metrics by hand, the CLI and the benchmark."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from typer.testing import CliRunner

from recourse.vision.manipulation import (EXPLAINERS, ball_box_projector, default_k, explainer_for, fragility_attack,
                                          gauss_legendre, random_perturbation, target_map_attack)
from recourse.vision.map_metrics import (average_ranks, center_of_mass, com_shift, fragility, mse, pearson, spearman, ssim,
                                         to_map, top_k_intersection, unit_max, unit_sum)
from recourse.vision.models import build_vision_bundle
from recourse.vision.smooth import count_relus, softplus_copy

torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
REPO = __import__("pathlib").Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    """The 8×8 digits CNN, trained once (a few seconds)."""
    return build_vision_bundle("digits", tmp_path_factory.mktemp("manip") / "digits", epochs=12)


@pytest.fixture(scope="module")
def batch(bundle):
    ad = bundle.adapter()
    split = bundle.split()
    x = torch.as_tensor(split.x_test[:48])
    y = torch.as_tensor(split.y_test[:48])
    ok = ad.predict(x) == y
    return ad, x[ok][:24], y[ok][:24]


# ------------------------------------------------------------------------------ surrogate
def test_softplus_copy_swaps_relus_and_keeps_weights(bundle):
    model = bundle.model
    smooth = softplus_copy(model, 5.0)
    assert count_relus(model) > 0 and count_relus(smooth) == 0
    assert sum(isinstance(m, nn.Softplus) for m in smooth.modules()) == count_relus(model)
    for (na, a), (nb, b) in zip(model.state_dict().items(), smooth.state_dict().items()):
        assert na == nb and torch.equal(a, b)
    with pytest.raises(ValueError, match="beta"):
        softplus_copy(model, 0.0)


def test_softplus_explanations_converge_to_the_relu_networks(batch):
    """As β grows the surrogate's maps approach the ReLU network's (gap shrinks, ends small)."""
    ad, x, y = batch
    for method in ("saliency", "gradxinput", "gradcam"):
        real = explainer_for(ad, method, x, y)(x)
        gaps = []
        for beta in (1.0, 10.0, 100.0, 1000.0, 10000.0):
            approx = explainer_for(ad, method, x, y, beta=beta)(x)
            gaps.append(float((approx - real).abs().sum() / real.abs().sum()))  # relative ℓ1 gap
        assert all(b < a for a, b in zip(gaps, gaps[1:])), (method, gaps)
        assert gaps[-1] < 0.02, (method, gaps)
        approx = explainer_for(ad, method, x, y, beta=10000.0)(x)
        live = (real.flatten(1).amax(1) > 0) & (approx.flatten(1).amax(1) > 0)  # a Grad-CAM map can be all zero
        close = (pearson(approx, real)[live] > 0.99).float()
        assert float(close.mean()) >= 0.9, (method, close)  # Grad-CAM's ReLU can still cut a faint map differently


# ------------------------------------------------------------------------------ explainers
def test_gauss_legendre_integrates_polynomials():
    a, w = gauss_legendre(4)
    assert abs(float(w.sum()) - 1) < 1e-6 and float(a.min()) > 0 and float(a.max()) < 1
    assert abs(float((w * a ** 5).sum()) - 1 / 6) < 1e-6  # exact up to degree 7


def test_differentiable_explainers_agree_with_captum(batch):
    pytest.importorskip("captum")
    from recourse.vision.explain import gradient_attribution

    ad, x, y = batch
    for method in ("saliency", "gradxinput", "ig", "gradcam"):
        mine = explainer_for(ad, method, x, y)(x)
        theirs = to_map(gradient_attribution(ad, x, method, y, ig_steps=8))
        assert torch.allclose(mine, theirs, atol=1e-5 * float(theirs.abs().max())), method


def test_smoothgrad_with_tiny_noise_is_saliency(batch):
    from recourse.vision.manipulation import ExplainerSettings

    ad, x, y = batch
    sg = explainer_for(ad, "smoothgrad", x, y, settings=ExplainerSettings(sg_samples=3, sg_sigma=1e-6))(x)
    same = ((sg - explainer_for(ad, "saliency", x, y)(x)).abs().flatten(1).amax(1) < 1e-4).float()
    assert float(same.mean()) >= 0.9  # noise of 1e-6 can still cross a ReLU/max-pool switch in an image


def test_explainers_are_differentiable_through_the_surrogate(batch):
    ad, x, y = batch
    for method in EXPLAINERS:
        e = explainer_for(ad, method, x[:4], y[:4], beta=10.0)
        xg = x[:4].clone().requires_grad_(True)
        (g,) = torch.autograd.grad(e(xg, create_graph=True).sum(), xg)
        assert torch.isfinite(g).all() and float(g.abs().sum()) > 0, method


# ------------------------------------------------------------------------------ attacks
def test_target_map_attack_reaches_a_target_with_the_prediction_unchanged(batch):
    """The target is the saliency map the real network gives at a hidden perturbation of x of
    ℓ∞ size 0.15 (a map known to be reachable); the attack finds it again."""
    ad, x, y = batch
    hidden = random_perturbation(ad, x, eps=0.15, seed=5)
    ok = ad.predict(hidden) == y
    x, y, hidden = x[ok], y[ok], hidden[ok]
    target = explainer_for(ad, "saliency", x, y)(hidden)
    res = target_map_attack(ad, x, target, "saliency", eps=0.15, steps=60)
    assert bool(res.kept.all())
    before, after = pearson(res.map_before, target), pearson(res.map_after, target)
    assert float(after.mean()) > float(before.mean()) + 0.05, (before.mean(), after.mean())
    assert float(after.median()) > 0.9 and float((after >= 0.8).float().mean()) >= 0.9, after
    assert float(mse(res.map_after, target).mean()) < 0.5 * float(mse(res.map_before, target).mean())
    assert float(res.delta.abs().max()) <= 0.15 + 1e-6
    assert float(res.x_adv.min()) >= 0 and float(res.x_adv.max()) <= 1


@pytest.mark.parametrize("objective", ["topk", "center"])
def test_fragility_attack_moves_the_map_more_than_random_noise(batch, objective):
    ad, x, y = batch
    res = fragility_attack(ad, x, "saliency", objective=objective, eps=0.1, steps=20)
    assert bool(res.kept.all())
    k = default_k(x.shape[-2:])
    attacked = fragility(res.map_before, res.map_after, k)
    noise = random_perturbation(ad, x, eps=0.1, seed=1)
    base = fragility(res.map_before, explainer_for(ad, "saliency", x, y)(noise), k)
    if objective == "topk":
        assert float(attacked["topk"].mean()) < float(base["topk"].mean())
    else:
        assert float(attacked["com_shift"].mean()) > float(base["com_shift"].mean())


def test_attack_rejects_bad_settings(batch):
    ad, x, y = batch
    with pytest.raises(ValueError, match="explainer"):
        explainer_for(ad, "lime", x, y)
    with pytest.raises(ValueError, match="objective"):
        fragility_attack(ad, x[:2], "saliency", objective="far")
    with pytest.raises(ValueError, match="norm"):
        ball_box_projector("l1", 0.1, torch.zeros(1, 4), torch.ones(1, 4))


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(["l2", "linf"]), st.floats(0.01, 3.0), st.integers(0, 2**31 - 1))
def test_projection_stays_in_ball_and_box(norm, eps, seed):
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(5, 12, generator=gen)
    lo, hi = -x, 1 - x  # δ with x + δ in [0, 1]
    w = 3 * torch.randn(5, 12, generator=gen)
    p = ball_box_projector(norm, eps, lo, hi)(w, torch.arange(5))
    assert bool((p >= lo - 1e-7).all() and (p <= hi + 1e-7).all())
    size = p.norm(dim=1) if norm == "l2" else p.abs().amax(1)
    assert bool((size <= eps * (1 + 1e-5)).all())
    inside = w.clamp(-0.001, 0.001).clamp(lo, hi)  # already feasible points stay put
    assert torch.allclose(ball_box_projector(norm, max(eps, 0.05), lo, hi)(inside, torch.arange(5)), inside)


# ------------------------------------------------------------------------------ metrics by hand
def test_top_k_intersection_by_hand():
    a = torch.tensor([[[5.0, 4.0], [1.0, 0.0]]])
    b = torch.tensor([[[0.0, 4.0], [5.0, 1.0]]])
    # top-2 of a: {(0,0), (0,1)}; of b: {(1,0), (0,1)} -> one shared
    assert float(top_k_intersection(a, b, 2)) == 0.5
    assert float(top_k_intersection(a, a, 3)) == 1.0


def test_spearman_by_hand_with_ties():
    assert average_ranks(torch.tensor([[10.0, 20.0, 20.0, 5.0]])).tolist() == [[2.0, 3.5, 3.5, 1.0]]
    a = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    b = torch.tensor([[1.0, 3.0, 2.0, 4.0]])
    # d = (0, 1, 1, 0): 1 - 6·2/(4·15) = 0.8
    assert abs(float(spearman(a, b)) - 0.8) < 1e-6
    assert abs(float(spearman(a, -a)) + 1) < 1e-6
    c = torch.tensor([[0.0, 0.0, 1.0, 2.0]])  # ranks 1.5 1.5 3 4 vs 1 2 3 4
    r1, r2 = np.array([1.5, 1.5, 3, 4]), np.array([1.0, 2, 3, 4])
    expected = np.corrcoef(r1, r2)[0, 1]
    assert abs(float(spearman(c, a)) - expected) < 1e-6
    scipy_stats = pytest.importorskip("scipy.stats")
    gen = torch.Generator().manual_seed(0)
    u = torch.randint(0, 4, (3, 30), generator=gen).float()
    v = torch.randint(0, 4, (3, 30), generator=gen).float()
    ours = spearman(u, v)
    for i in range(3):
        assert abs(float(ours[i]) - scipy_stats.spearmanr(u[i], v[i]).statistic) < 1e-5


def test_centre_of_mass_shift_by_hand():
    a = torch.zeros(1, 3, 3)
    a[0, 0, 0] = 1.0
    a[0, 0, 2] = 1.0  # centre (0, 1)
    b = torch.zeros(1, 3, 3)
    b[0, 2, 1] = 3.0  # centre (2, 1)
    assert center_of_mass(a).tolist() == [[0.0, 1.0]]
    assert abs(float(com_shift(a, b)) - 2.0) < 1e-6


def test_mse_pearson_ssim_by_hand():
    a = torch.tensor([[[2.0, 0.0], [0.0, 2.0]]])  # unit-max: 1 0 / 0 1
    b = torch.tensor([[[1.0, 1.0], [0.0, 0.0]]])  # unit-max: 1 1 / 0 0
    assert abs(float(mse(a, b)) - 0.5) < 1e-7  # (0 + 1 + 0 + 1) / 4
    assert abs(float(pearson(a, b))) < 1e-7  # centred (±1) patterns are orthogonal
    assert abs(float(pearson(a, 3 * a)) - 1) < 1e-6 and float(pearson(a, torch.ones_like(a))) == 0.0
    assert torch.allclose(unit_sum(a).sum((1, 2)), torch.ones(1)) and float(unit_max(a).max()) == 1.0
    metrics = pytest.importorskip("skimage.metrics")
    gen = torch.Generator().manual_seed(1)
    for shape in ((2, 8, 8), (2, 28, 28)):
        u, v = torch.rand(shape, generator=gen), torch.rand(shape, generator=gen)
        ours = ssim(u, v)
        for i in range(shape[0]):
            ref = metrics.structural_similarity(unit_max(u)[i].double().numpy(), unit_max(v)[i].double().numpy(), data_range=1.0)
            assert abs(float(ours[i]) - ref) < 1e-5
    assert abs(float(ssim(u, u)[0]) - 1) < 1e-6


def test_other_label_partner():
    from benchmarks.manipulation import other_label_partner

    labels = torch.tensor([1, 1, 2, 1, 3])
    p = other_label_partner(labels)
    assert p.tolist() == [2, 2, 3, 4, 0]
    assert bool((labels[p] != labels).all())


# ------------------------------------------------------------------------------ CLI
runner = CliRunner()


def _cli(*args):
    from cli import app

    return runner.invoke(app, list(args))


@pytest.mark.slow
def test_cli_attack_manipulate_writes_images_maps_and_json(bundle, tmp_path):
    pytest.importorskip("captum")
    out = tmp_path / "m"
    r = _cli("attack", "--method", "manipulate", "--explainer", "saliency", "--bundle", str(bundle.path), "--n", "2",
             "--target-image", "7", "--out", str(out), "--json")
    assert r.exit_code == 0, r.output
    report = json.loads(r.output)
    assert report["metrics"]["prediction_kept"] == 1.0 and "to_target_pearson" in report["metrics"]
    for f in ("000_original.png", "000_manipulated.png", "000_original_map.png", "000_target_map.png",
              "000_manipulated_map.png", "000_manipulated.npy", "000_target_map.npy", "metrics.json"):
        assert (out / f).is_file(), f
    tmap = tmp_path / "t.npy"
    np.save(tmap, np.eye(8, dtype=np.float32))
    r = _cli("attack", "--method", "manipulate", "--explainer", "gradcam", "--bundle", str(bundle.path), "--target-map",
             str(tmap), "--out", str(out), "--eps", "0.05")
    assert r.exit_code == 0, r.output
    assert "Pearson to the target" in r.output
    r = _cli("attack", "--method", "manipulate", "--explainer", "gradxinput", "--bundle", str(bundle.path), "--norm", "l2",
             "--out", str(tmp_path / "f"), "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["mode"] == "fragility (top-k)"


def test_axai_attacked_directly_moves_its_map_more_than_noise_and_keeps_the_class(batch):
    """AXAI has no gradient: the black-box random search on its own map keeps every prediction,
    stays in the ε ball and the pixel box, and moves the map's top pixels more than noise does."""
    from recourse.vision.explain import axai_density_map
    from recourse.vision.manipulation import axai_attack

    ad, x, _ = batch
    res = axai_attack(ad, x, eps=0.1, queries=15, seed=0)
    assert bool(res.kept.all())
    assert float((res.x_adv - x).abs().max()) <= 0.1 + 1e-6 and float(res.x_adv.min()) >= 0 and float(res.x_adv.max()) <= 1
    k = default_k(x.shape[-2:])
    attacked = fragility(res.map_before, axai_density_map(ad, res.x_adv)[0], k)
    noise = random_perturbation(ad, x, eps=0.1, seed=1)
    base = fragility(res.map_before, axai_density_map(ad, noise)[0], k)
    assert float(attacked["topk"].mean()) < float(base["topk"].mean())
    target = axai_density_map(ad, x[1:2])[0][0]
    aimed = axai_attack(ad, x, eps=0.1, queries=10, target_map=target, seed=0)
    from recourse.vision.map_metrics import pearson

    before = pearson(res.map_before, target.expand_as(res.map_before))
    after = pearson(axai_density_map(ad, aimed.x_adv)[0], target.expand_as(res.map_before))
    assert bool(aimed.kept.all()) and float(after.mean()) > float(before.mean())


def test_cli_attack_manipulate_axai(bundle, tmp_path):
    r = _cli("attack", "--method", "manipulate", "--explainer", "axai", "--bundle", str(bundle.path), "--n", "3",
             "--out", str(tmp_path / "ax"), "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["mode"] == "fragility (top-k)" and all(i["prediction_kept"] for i in out["images"])
    assert (tmp_path / "ax" / "000_manipulated_map.png").is_file()


def test_cli_attack_manipulate_bad_input(bundle, tmp_path):
    base = ("attack", "--method", "manipulate", "--bundle", str(bundle.path), "--out", str(tmp_path / "o"))
    cases = [((), "--explainer"), (("--explainer", "axai", "--norm", "l2"), "linf ball only"), (("--explainer", "lime"), "--explainer"),
             (("--explainer", "ig", "--target-image", "3", "--target-map", str(tmp_path / "t.npy")), "give one"),
             (("--explainer", "ig", "--target-image", "99999"), "--target-image"),
             (("--explainer", "ig", "--target-map", str(tmp_path / "none.npy")), "no such file"),
             (("--explainer", "ig", "--eps", "-1"), "--eps")]
    bad = tmp_path / "bad.npy"
    np.save(bad, np.ones((5, 5)))
    zero = tmp_path / "zero.npy"
    np.save(zero, np.zeros((8, 8)))
    cases += [(("--explainer", "ig", "--target-map", str(bad)), "shape"), (("--explainer", "ig", "--target-map", str(zero)), "all zero")]
    for extra, message in cases:
        r = _cli(*base, *extra)
        assert r.exit_code == 2, (extra, r.output)
        assert message in r.output and "Traceback" not in r.output, (extra, r.output)
    r = _cli("bench", "manipulation", "--eps", "0.1,nope")
    assert r.exit_code == 2 and "--eps" in r.output


@pytest.mark.slow
@pytest.mark.integration
def test_bench_manipulation_subprocess(bundle, tmp_path):
    pytest.importorskip("captum")
    cmd = [sys.executable, str(REPO / "cli.py"), "bench", "manipulation", "--bundle", str(bundle.path), "--n", "6",
           "--eps", "0.05,0.1", "--steps", "4", "--out", str(tmp_path / "fig"), "--json"]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=600)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["n"] == 6 and len(out["rows"]) == 2 * (len(EXPLAINERS) + 2)
    assert {row["explainer"] for row in out["rows"]} >= set(EXPLAINERS)
    for row in out["rows"]:
        assert 0 <= row["success_rate"] <= 1 and row["prediction_kept_target"] == 1.0 and row["prediction_kept_fragility"] == 1.0
        assert 0 <= row["frag_topk"] <= 1 and -1 <= row["frag_spearman"] <= 1
    assert any(r["kind"] == "fragility" for r in out["axai"]) and "eps=0.1" in out["summary"]
    assert all((tmp_path / "fig" / p.split("/")[-1]).is_file() for p in out["figures"])
