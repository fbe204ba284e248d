"""Image side: bundles, adapter, each attack on a tiny trained CNN, metrics by hand, explainers, CLI."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from recourse.errors import BundleError
from recourse.vision.adapter import ImageAdapter, LogitCache
from recourse.vision.attacks import (blurred_mask_divisor, fbs_attack, frozen_support, fw_attack, gaussian_kernel, gse_attack,
                                     pgd_attack, start_lambda)
from recourse.vision.counterfactual import (cheapest_valid, knn_gravity, runner_up, scfe_images, scfe_images_cheapest,
                                            top_other_classes)
from recourse.vision.explain import axai, concept_probe, segment, segment_density
from recourse.vision.metrics import (acp, adversarial_saliency_map, anc, attack_summary, brightening_share, d20,
                                     default_patch, interpretability_score, l2, useful_gradient_split)
from recourse.vision.models import build_vision_bundle, default_bundle_dir, load_bundle
from recourse.core.prox import prox_lp_box

torch.set_num_threads(max(1, min(2, torch.get_num_threads())))


@pytest.fixture(scope="module")
def digits_bundle(recourse_home):
    """The digits CNN, trained once (about a second) at the default bundle place."""
    return build_vision_bundle("digits", default_bundle_dir("digits"), epochs=12)


@pytest.fixture(scope="module")
def batch(digits_bundle):
    ad = digits_bundle.adapter()
    split = digits_bundle.split()
    x = torch.as_tensor(split.x_test[:40])
    y = torch.as_tensor(split.y_test[:40])
    ok = ad.predict(x) == y
    x, y = x[ok][:16], y[ok][:16]
    t = (y + 3) % 10
    return ad, x, y, t


# ------------------------------------------------------------------------------ bundles
def test_bundle_accuracy_roundtrip_and_tamper(digits_bundle, tmp_path):
    assert digits_bundle.meta["test_accuracy"] > 0.85
    again = load_bundle(digits_bundle.path)
    x = torch.as_tensor(digits_bundle.split().x_test[:5])
    assert torch.allclose(again.model(x), digits_bundle.model(x), atol=1e-6)
    bad = tmp_path / "bad"
    bad.mkdir()
    for f in ("model.json", "model.safetensors"):
        (bad / f).write_bytes((digits_bundle.path / f).read_bytes())
    data = bytearray((bad / "model.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (bad / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(BundleError, match="SHA-256"):
        load_bundle(bad)
    with pytest.raises(BundleError, match="not a vision bundle"):
        load_bundle(tmp_path)
    (bad / "model.json").write_text("[1, 2]")
    with pytest.raises(BundleError, match="model.json: expected a JSON object"):
        load_bundle(bad)
    (bad / "model.json").write_text('{"format": "other/1"}')
    with pytest.raises(BundleError, match="unsupported bundle format 'other/1'"):
        load_bundle(bad)
    (bad / "model.json").write_text("{broken")
    with pytest.raises(BundleError, match="model.json: not valid JSON"):
        load_bundle(bad)


def test_bundle_layers_are_the_one_network_format(digits_bundle, tmp_path):
    """model.json's layers are the tabular classifiers' spec; a version-1 bundle (the older vision
    layer vocabulary) still loads, to the same network."""
    import json
    import shutil

    from recourse.model_io import module_to_spec

    meta = json.loads((digits_bundle.path / "model.json").read_text())
    assert meta["version"] == 2 and meta["layers"] == module_to_spec(digits_bundle.model)[0]["layers"]
    legacy = []
    for layer in meta["layers"]:
        kind = layer["type"]
        if kind == "Conv2d":
            layer = {"type": kind, "in": layer["in_channels"], "out": layer["out_channels"],
                     "kernel": layer["kernel_size"], "stride": layer["stride"], "padding": layer["padding"]}
        elif kind == "Linear":
            layer = {"type": kind, "in": layer["in_features"], "out": layer["out_features"]}
        elif kind == "MaxPool2d":
            layer = {"type": kind, "kernel": layer["kernel_size"][0]}
        else:
            layer = {"type": kind}
        legacy.append(layer)
    old = tmp_path / "v1"
    shutil.copytree(digits_bundle.path, old)
    (old / "model.json").write_text(json.dumps({**meta, "version": 1, "layers": legacy}))
    again = load_bundle(old)
    x = torch.as_tensor(digits_bundle.split().x_test[:5])
    assert torch.equal(again.model(x), digits_bundle.model(x))
    # the new vocabulary under version 1 is refused, naming the layer
    (old / "model.json").write_text(json.dumps({**meta, "version": 1, "layers": [{"type": "Linear", "in": 4}]}))
    with pytest.raises(BundleError, match=r"layers\.0\.Linear\.out_features: Field required"):
        load_bundle(old)


# ------------------------------------------------------------------------------ attacks
def _check(res, x, ad, max_pixels=None):
    assert res.x_adv.shape == x.shape
    assert float(res.x_adv.min()) >= float(ad.lower.min()) - 1e-6 and float(res.x_adv.max()) <= float(ad.upper.max()) + 1e-6
    # success flags are what the model says on the returned images
    pred = ad.predict(res.x_adv)
    expect = pred == res.aims if res.targeted else pred != res.aims
    assert torch.equal(expect, res.success)
    if max_pixels is not None:
        assert float(acp(res.delta[res.success]).float().mean()) <= max_pixels


@pytest.mark.parametrize("targeted", [False, True])
def test_gse_succeeds_and_is_group_sparse(batch, targeted):
    ad, x, y, t = batch
    res = gse_attack(ad, x, y, targets=t if targeted else None, search_steps=3, max_iter=100)
    _check(res, x, ad)
    assert float(res.success.float().mean()) >= (1.0 if not targeted else 0.9)
    pgd_res = pgd_attack(ad, x, y, targets=t if targeted else None, steps=10)
    s = res.success & pgd_res.success
    assert float(acp(res.delta[s]).float().mean()) < float(acp(pgd_res.delta[s]).float().mean())


@pytest.mark.parametrize("p", [0.0, 0.5, 2.0 / 3.0, 1.0])
def test_fbs_succeeds_for_every_p(batch, p):
    ad, x, y, t = batch
    res = fbs_attack(ad, x, y, p=p, lam=0.02, max_iter=100)
    _check(res, x, ad)
    assert float(res.success.float().mean()) >= 0.9
    tres = fbs_attack(ad, x, y, targets=t, p=p, lam=0.02, max_iter=100)
    _check(tres, x, ad)
    assert float(tres.success.float().mean()) >= 0.8


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_pgd_succeeds(batch, norm):
    ad, x, y, t = batch
    eps = (0.5, 1.0, 2.0, 4.0) if norm == "l2" else (0.1, 0.2, 0.4)
    res = pgd_attack(ad, x, y, norm=norm, eps=eps, steps=10)
    _check(res, x, ad)
    assert bool(res.success.all())
    if norm == "linf":
        assert float(res.delta.abs().max()) <= 0.4 + 1e-6
    tres = pgd_attack(ad, x, y, targets=t, norm=norm, eps=eps, steps=10)
    assert float(tres.success.float().mean()) >= 0.9


def test_fw_attack_modes(batch):
    ad, x, y, t = batch
    res = fw_attack(ad, x, y, q=0.9, steps=30)
    _check(res, x, ad)
    assert float(res.success.float().mean()) >= 0.9
    assert float(res.delta.flatten(1).abs().sum(1).max()) <= 0.1 * 64 + 1e-4  # inside the l1 ball
    tres = fw_attack(ad, x, targets=t, q=0.9, steps=30)
    assert float(tres.success.float().mean()) >= 0.8
    # label-targeted toward the true label raises its probability; prediction-targeted keeps the prediction
    lab = fw_attack(ad, x, y, mode="label", eps=2.0, steps=10)
    p0 = torch.softmax(ad.logits(x), 1).gather(1, y[:, None])
    p1 = torch.softmax(ad.logits(lab.x_adv), 1).gather(1, y[:, None])
    assert bool((p1 >= p0 - 1e-6).all())
    pred = fw_attack(ad, x, mode="prediction", eps=2.0, steps=10)
    assert bool(pred.success.all())
    with pytest.raises(ValueError):
        fw_attack(ad, x, mode="label")


def test_any_value_range_and_early_stop(batch):
    """A model on [-1, 1] images (the digits CNN after an affine map) is attacked inside [-1, 1]."""
    ad, x, y, _ = batch
    shifted = nn.Sequential(_Affine(0.5, 0.5), ad.model)
    ad2 = ImageAdapter(shifted, -1.0, 1.0)
    x2 = 2 * x - 1
    res = gse_attack(ad2, x2, y, search_steps=2, max_iter=60)
    _check(res, x2, ad2)
    assert float(res.success.float().mean()) >= 0.9
    assert float(res.x_adv.min()) >= -1.0 and float(res.x_adv.max()) <= 1.0
    # early stop: an attack that starts fooled does nothing
    fooled = fbs_attack(ad, res.x_adv[:4] * 0.5 + 0.5, y[:4], p=0)
    assert torch.equal(fooled.success, ad.predict(res.x_adv[:4] * 0.5 + 0.5) != y[:4])
    assert float(fooled.delta[fooled.success].abs().sum()) == 0.0


class _Affine(nn.Module):
    def __init__(self, a: float, b: float):
        super().__init__()
        self.a, self.b = a, b

    def forward(self, x):
        return self.a * x + self.b


def test_gse_lambda_map_divisor():
    w = torch.zeros(1, 1, 7, 7)
    w[0, 0, 3, 3] = 0.5
    div = blurred_mask_divisor(w, gaussian_kernel(5, 1.5), q=0.25)
    assert div[0, 3, 3] > div[0, 3, 5] > 1.0  # near the perturbed pixel: 1 + blur
    assert float(div[0, 0, 0]) == 0.25       # outside the 5×5 window: q
    assert torch.equal(blurred_mask_divisor(torch.zeros(1, 1, 7, 7), gaussian_kernel(), 0.25), torch.ones(1, 7, 7))
    k = gaussian_kernel(5, 1.5)
    assert abs(float(k.sum()) - 1) < 1e-6 and float(k[0, 0, 2, 2]) == float(k.max())


def test_gse_frozen_support_is_the_lowered_lambda_pixels():
    lam0 = torch.tensor([1.0, 2.0])
    lam_map = torch.tensor([[[0.5, 1.0], [4.0, 0.9]], [[2.0, 2.0], [2.0, 2.0]]])
    v = frozen_support(lam_map, lam0, channels=3)
    assert v.shape == (2, 12)
    assert v[0].view(3, 2, 2)[0].tolist() == [[True, False], [False, True]]  # λ < λ0, not ≤
    assert torch.equal(v[0].view(3, 2, 2)[0], v[0].view(3, 2, 2)[2])         # shared by the channels
    assert not bool(v[1].any())                                              # λ never lowered: V = ∅


def test_gse_start_lambda_is_the_first_step_threshold():
    torch.manual_seed(0)
    grad = torch.randn(4, 30)
    lo, hi = torch.full((4, 30), -0.5), torch.full((4, 30), 0.5)
    lam = start_lambda(grad, 1.0, lo, hi, frac=1.0)
    first = lambda scale: (prox_lp_box(-grad, (lam * scale)[:, None], 0.5, lo, hi) != 0).any(1)
    assert bool(first(0.99).all()) and not bool(first(1.01).any())
    assert torch.allclose(start_lambda(grad, 1.0, lo, hi), 0.01 * lam)


def test_gse_runs_phase_two_on_the_frozen_support(batch):
    ad, x, y, _ = batch
    res = gse_attack(ad, x[:6], y[:6], k_hat=3, max_iter=60, search_steps=1, lam=0.5, early_stop=False)
    assert res.delta.shape == x[:6].shape  # runs with a small k̂ and a large λ (phase 2 on V)
    assert torch.isfinite(res.delta).all()


def test_channels_last_adapter_and_logit_cache_change_nothing(batch, digits_bundle):
    ad, x, y, _ = batch
    plain = ImageAdapter(build_like(digits_bundle), 0.0, 1.0, channels_last=False, chunk=None)
    assert torch.allclose(plain.logits(x), ad.logits(x), atol=1e-5)
    sliced = ImageAdapter(build_like(digits_bundle), 0.0, 1.0, chunk=3)  # 16 rows in slices of 3
    grads = []
    for a in (plain, sliced):
        xg = x.clone().requires_grad_(True)
        z = a.logits(xg)
        grads.append(torch.autograd.grad(z.logsumexp(1).sum(), xg)[0])
        assert torch.allclose(z, plain.logits(x), atol=1e-5)
    assert torch.allclose(grads[0], grads[1], atol=1e-5)
    assert torch.equal(sliced.predict(x), plain.predict(x))
    cache = LogitCache()
    w = torch.randn(len(x), x[0].numel()) * 0.3
    rows = torch.arange(len(x))
    with torch.no_grad():
        cache.store(w, rows, ad.logits(x + w.view_as(x)))
    w2 = w.clone()
    w2[::2] += 0.5  # half the rows moved: those are recomputed, the others come from the cache
    z = cache.logits(ad, w2, rows, x + w2.view_as(x))
    assert torch.allclose(z, ad.logits(x + w2.view_as(x)), atol=1e-5)
    assert torch.equal(cache.logits(ad, w, rows, x + w.view_as(x)), cache.z)


def build_like(vb):
    from recourse.model_io import module_from_spec, module_to_spec

    return module_from_spec(*module_to_spec(vb.model))


# ------------------------------------------------------------------------------ metrics by hand
def test_metrics_hand_computed():
    d = torch.zeros(2, 2, 6, 6)
    # image 0: (0,0) and (0,1) adjacent, (1,2) only diagonal to (0,1), (4,4) alone -> 4 pixels, 3 clusters (4-conn.)
    d[0, 0, 0, 0] = 3.0
    d[0, 1, 0, 1] = -4.0
    d[0, 0, 1, 2] = 1.0
    d[0, 1, 4, 4] = 2.0
    d[0, 0, 4, 4] = 2.0  # both channels of one pixel count once
    # image 1: unchanged
    assert acp(d).tolist() == [4, 0]
    assert anc(d).tolist() == [3, 0]
    assert l2(d)[0].item() == pytest.approx(math.sqrt(9 + 16 + 1 + 4 + 4))
    e = torch.zeros(1, 1, 6, 6)
    e[0, 0, 0, 0] = 1.0
    e[0, 0, 5, 5] = 1.0
    assert d20(e, 3).tolist() == [2]    # each corner lies in exactly one 3×3 window
    e[0, 0, 2, 2] = 1.0
    assert d20(e, 3).tolist() == [10]   # (2,2) lies in 9 windows; one of them also holds (0,0)
    assert d20(torch.ones(1, 1, 6, 6), 3).tolist() == [16]
    assert default_patch((28, 28)) == 8 and default_patch((8, 8)) == 3
    s = attack_summary(d, torch.tensor([True, False]), seconds=2.0, patch=3)
    assert s["asr"] == 0.5 and s["acp"] == 4 and s["anc"] == 3 and s["seconds_per_image"] == 1.0


def test_interpretability_score_hand_computed():
    asm = torch.arange(16.0).reshape(1, 1, 4, 4)
    delta = torch.zeros(1, 1, 4, 4)
    delta.view(-1)[15] = 3.0   # ASM 15: above every percentile
    delta.view(-1)[0] = 4.0    # ASM 0: below
    is_ = interpretability_score(asm, delta, nus=(50, 90))
    assert is_[0].tolist() == pytest.approx([0.6, 0.6])
    delta.view(-1)[12] = 4.0   # ASM 12: above the median (7.5), below the 90th percentile (13.5)
    assert interpretability_score(asm, delta, nus=(50, 90))[0].tolist() == pytest.approx([5 / math.sqrt(41), 3 / math.sqrt(41)])


def test_adversarial_saliency_map_of_a_linear_model():
    lin = nn.Sequential(nn.Flatten(), nn.Linear(4, 3, bias=False))
    w = torch.tensor([[1.0, -2.0, 0.5, 0.0], [-1.0, 1.0, 2.0, -3.0], [0.0, 0.0, 0.0, 0.0]])
    lin[1].weight.data = w
    x = torch.zeros(1, 1, 2, 2)
    asm = adversarial_saliency_map(lin, x, torch.tensor([0]), torch.tensor([1])).flatten()
    gt, gl = w[1], w[0]
    keep = (gt >= 0) | (gl <= 0)
    assert torch.allclose(asm, torch.where(keep, gt * gl.abs(), torch.zeros(4)))
    assert asm.tolist() == pytest.approx([0.0, 2.0, 1.0, 0.0])


def test_brightening_share_hand_computed():
    delta = torch.tensor([[3.0, -4.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]).view(2, 1, 2, 2)
    assert brightening_share(delta).tolist() == pytest.approx([9 / 25, 0.0])


def test_useful_gradient_split_of_a_linear_model():
    lin = nn.Sequential(nn.Flatten(), nn.Linear(4, 2, bias=False))
    lin[1].weight.data = torch.tensor([[0.0, 0.0, 0.0, 0.0], [-2.0, 1.0, 3.0, -1.0]])  # g = ∇(Z_1 − Z_0)
    x = torch.tensor([1.0, 1.0, 0.0, 0.0]).view(1, 1, 2, 2)  # two bright pixels, two dark
    out = useful_gradient_split(lin, x, torch.tensor([0]), torch.tensor([1]), top=2)
    # bright pixels can only go down: gains [2, 0]; dark ones only up: gains [3, 0]
    assert out["bright_pixel_share"] == 0.5
    assert out["useful_gain_bright"] == pytest.approx(1.0) and out["useful_gain_dark"] == pytest.approx(1.5)
    assert out["bright_share_of_top_2"] == 0.5


# ------------------------------------------------------------------------------ explainers
def test_segment_density_and_axai(batch):
    seg = torch.tensor([[[0, 0, 1], [2, 2, 1], [2, 2, 1]]])
    attacked = torch.tensor([[[1, 0, 1], [0, 1, 1], [0, 0, 0]]], dtype=torch.bool)
    dens, size = segment_density(attacked, seg)
    assert dens[0].tolist() == pytest.approx([0.5, 2 / 3, 0.25]) and size[0].tolist() == [2, 3, 4]
    ad, x, _, _ = batch
    for method, kw in (("grid", {"grid": (2, 2)}), ("slic", {"n_segments": 6}), ("quickshift", {"kernel_size": 1, "max_dist": 4})):
        res = axai(ad, x[:4], k=2, segmentation=method, segment_kwargs=kw)
        assert res.segments.shape == (4, 8, 8) and res.top.shape == (4, 2)
        chosen = res.density.gather(1, res.top)
        rest = res.density.clone().scatter_(1, res.top, -2.0).amax(1)
        assert bool((chosen.min(1).values >= rest).all())          # the top-K densest segments
        for i in range(4):
            assert set(res.segments[i][res.mask[i]].unique().tolist()) == set(res.top[i].tolist())
    grid = segment(x[:2], "grid", grid=(2, 4))
    assert grid[0].unique().numel() == 8


def test_concept_probe_moves_toward_the_class(batch):
    ad, *_ = batch
    res = concept_probe(ad, [0, 3, 7], (1, 8, 8), steps=30, q=0.8)
    prob0 = torch.softmax(ad.logits(res.x), 1)[torch.arange(3), res.aims]
    prob1 = torch.softmax(ad.logits(res.x_adv), 1)[torch.arange(3), res.aims]
    assert bool((prob1 > prob0).all()) and float(res.success.float().mean()) >= 2 / 3


def test_captum_baselines(batch):
    pytest.importorskip("captum")
    from recourse.vision.explain import captum_surrogate, gradient_attribution

    ad, x, y, _ = batch
    for m in ("saliency", "smoothgrad", "ig", "gradcam"):
        a = gradient_attribution(ad, x[:3], m, y[:3])
        assert a.shape == x[:3].shape and torch.isfinite(a).all() and float(a.abs().sum()) > 0
    seg = segment(x[:2], "grid", grid=(2, 2))
    for m in ("lime", "kernelshap"):
        w, secs = captum_surrogate(ad, x[:2], seg, m, n_samples=30)
        assert w.shape == (2, 4) and secs > 0


def test_scfe_images_respects_m(batch, digits_bundle):
    ad, x, y, _ = batch
    t = runner_up(ad, x)
    xtr = torch.as_tensor(digits_bundle.split().x_train)
    g = knn_gravity(x, t, xtr, ad.predict(xtr))
    res = scfe_images(ad, x, t, m=6, gravity=g, c0=10.0, search_steps=2, max_iter=100, warm_budgets=(20,), warm_iter=30)
    changed = ((res.x_cf - res.x).flatten(1) != 0).sum(1)
    assert int(changed.max()) <= 6
    assert torch.equal(res.valid, ad.predict(res.x_cf) == t)
    assert float(res.valid.float().mean()) >= 0.8


def test_top_other_classes(batch):
    ad, x, _, _ = batch
    cand = top_other_classes(ad, x, 3)
    z = ad.logits(x)
    pred = z.argmax(1)
    assert cand.shape == (len(x), 3) and not bool((cand == pred[:, None]).any())
    zc = z.gather(1, cand)
    assert bool((zc[:, :-1] >= zc[:, 1:]).all())
    assert torch.equal(cand[:, 0], runner_up(ad, x))
    with pytest.raises(ValueError, match="k must be"):
        top_other_classes(ad, x, 10)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(b=st.integers(1, 5), k=st.integers(1, 4), seed=st.integers(0, 10_000))
def test_cheapest_valid_picks_the_closest_valid_candidate(b, k, seed):
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(b, 1, 3, 3, generator=gen)
    x_cf = x[:, None] + torch.randn(b, k, 1, 3, 3, generator=gen)
    valid = torch.rand(b, k, generator=gen) < 0.6
    pick = cheapest_valid(x_cf, x, valid)
    dist = (x_cf - x[:, None]).flatten(2).norm(dim=2)
    for i in range(b):
        if valid[i].any():
            assert valid[i, pick[i]]
            assert float(dist[i, pick[i]]) <= float(dist[i][valid[i]].min()) + 1e-6
        else:
            assert int(pick[i]) == 0


@pytest.mark.slow
def test_scfe_cheapest_target_is_valid_sparse_and_no_worse_than_runner_up(batch, digits_bundle):
    ad, x, _, _ = batch
    k, m = 3, 6
    cand = top_other_classes(ad, x, k)
    xtr = torch.as_tensor(digits_bundle.split().x_train)
    g = knn_gravity(x.repeat_interleave(k, 0), cand.reshape(-1), xtr, ad.predict(xtr)).view(len(x), k, *x.shape[1:])
    res = scfe_images_cheapest(ad, x, cand, gravity=g, m=m, c0=10.0, search_steps=2, max_iter=100, warm_budgets=(20,), warm_iter=30)
    changed = ((res.x_cf - res.x).flatten(1) != 0).sum(1)
    assert int(changed.max()) <= m
    assert torch.equal(res.valid, ad.predict(res.x_cf) == res.targets)       # verified by the model
    assert torch.equal(res.targets, cand.gather(1, res.rank[:, None]).squeeze(1))
    rows_valid = res.rows.valid.view(len(x), k)
    assert torch.equal(res.valid, rows_valid.any(1))                          # valid whenever any candidate is
    assert float(res.valid.float().mean()) >= float(rows_valid[:, 0].float().mean())
    assert float(res.valid.float().mean()) >= 0.9
    # the explicit-target path still answers a fixed class
    t = torch.full((len(x),), 3, dtype=torch.long)
    one = scfe_images(ad, x, t, m=m, c0=10.0, search_steps=1, max_iter=60, warm_budgets=())
    assert torch.equal(one.targets, t) and torch.equal(one.valid, ad.predict(one.x_cf) == t)


# ------------------------------------------------------------------------------ CLI
runner = CliRunner()


def _cli(*args):
    from cli import app

    return runner.invoke(app, list(args))


@pytest.mark.slow
def test_cli_attack_writes_figures_and_metrics(digits_bundle, tmp_path):
    out = tmp_path / "a"
    r = _cli("attack", "--method", "gse", "--dataset", "digits", "--n", "2", "--out", str(out), "--json")
    assert r.exit_code == 0, r.output
    report = json.loads(r.output)
    assert report["metrics"]["asr"] == 1.0
    for f in ("000_original.png", "000_adversarial.png", "000_perturbation_x5.png", "000_changed_pixels.png", "000_axai_segments.png", "metrics.json"):
        assert (out / f).is_file()
    for method in ("fbs", "pgd", "fw"):
        r = _cli("attack", "--method", method, "--dataset", "digits", "--target", "3", "--out", str(tmp_path / method))
        assert r.exit_code == 0, r.output
    img = tmp_path / "img.npy"
    np.save(img, digits_bundle.split().x_test[0])
    assert _cli("attack", "--method", "pgd", "--dataset", "digits", "--image", str(img), "--out", str(tmp_path / "i")).exit_code == 0


def test_cli_explain_image(digits_bundle, tmp_path):
    for method in ("axai", "probe", "saliency", "ig", "gradcam"):
        if method in ("saliency", "ig", "gradcam") and not _has_captum():
            continue
        r = _cli("explain-image", "--method", method, "--dataset", "digits", "--target", "2", "--out", str(tmp_path / method), "--json")
        assert r.exit_code == 0, r.output
        assert (tmp_path / method / "metrics.json").is_file()
        assert any(p.suffix == ".png" for p in (tmp_path / method).iterdir())


def _has_captum() -> bool:
    try:
        import captum  # noqa: F401
    except ImportError:
        return False
    return True


def test_cli_bad_input(digits_bundle, tmp_path):
    r = _cli("attack", "--method", "nope")
    assert r.exit_code == 2 and "--method" in r.output and "Traceback" not in r.output
    r = _cli("attack", "--method", "gse", "--dataset", "digits", "--image", str(tmp_path / "missing.png"))
    assert r.exit_code == 2 and "--image" in r.output and "no such file" in r.output
    r = _cli("attack", "--method", "gse", "--bundle", str(tmp_path / "nobundle"))
    assert r.exit_code == 2 and "--bundle" in r.output
    r = _cli("attack", "--method", "gse", "--dataset", "digits", "--target", "12")
    assert r.exit_code == 2 and "--target" in r.output
    r = _cli("attack", "--method", "fbs", "--dataset", "digits", "--p", "0.3")
    assert r.exit_code == 2 and "--p" in r.output
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((5, 5)))
    r = _cli("attack", "--method", "pgd", "--dataset", "digits", "--image", str(bad))
    assert r.exit_code == 2 and "shape" in r.output
    r = _cli("explain-image", "--method", "lime")
    assert r.exit_code == 2 and "--method" in r.output
    r = _cli("attack", "--method", "gse", "--dataset", "digits", "--index", "100000")
    assert r.exit_code == 2 and "--index" in r.output


@pytest.mark.slow
def test_cli_bench_vision_small(digits_bundle):
    r = _cli("bench", "vision", "--bundle", str(digits_bundle.path), "--n", "6", "--n-explain", "2", "--lime-samples", "20",
             "--search-steps", "1", "--max-iter", "30", "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["n"] == 6 and len(out["attacks"]) == 10
    assert set(out["is_curves"]) == {"GSE", "FBS p=0", "FBS p=1/2", "FBS p=1", "PGD-l2"}
    assert {"validity", "l2", "l0", "lof", "seconds"} <= set(out["scfe"])
    assert "axai_seconds_per_image" in out["explainers"] and "acceptance" in out
