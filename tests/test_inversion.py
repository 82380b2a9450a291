import itertools
import math

import pytest
import torch
import torchvision.transforms.functional as TF

import layerscope as ls
from layerscope.inversion import AdamStep, GaussianBlur, L1Loss, NormalizedStep, Schedule


def test_blur_kernel_sums_to_one_and_matches_torchvision():
    blur = GaussianBlur(3, Schedule(2.4, 0.4))
    for s in (2.4, 1.0, 0.4):
        assert math.isclose(float(blur.kernel(s).sum()), 1.0, rel_tol=1e-12)
        e = math.exp(-0.5 / s**2)  # closed form of the 3-tap kernel: [e, 1, e] / (1 + 2e)
        expected = torch.tensor([e, 1.0, e], dtype=torch.float64) / (1 + 2 * e)
        torch.testing.assert_close(blur.kernel(s), expected)
    # EXPERIMENTS.md §1: σ=2.4 is nearly a box filter, σ=0.4 nearly the identity
    assert float(blur.kernel(2.4).min()) > 0.32 and float(blur.kernel(0.4)[1]) > 0.91
    x = torch.rand(2, 3, 17, 13)
    for i in (0, 5):
        sigma = blur.sigma.at(i, 10)
        torch.testing.assert_close(blur(x, i, 10), TF.gaussian_blur(x, [3, 3], [sigma, sigma]))


def test_schedules_hit_their_end_points():
    s = Schedule(0.1, 0.02)
    assert s.at(0, 500) == 0.1 and math.isclose(s.at(500, 500), 0.02)
    assert math.isclose(s.at(250, 500), 0.06)


def test_l1_reductions():
    out, tgt = torch.randn(3, 4, 5), torch.randn(3, 4, 5)
    d = (out - tgt).abs().flatten(1)
    torch.testing.assert_close(L1Loss("sum", 0.15)(out, tgt), 0.15 * d.sum(1))
    torch.testing.assert_close(L1Loss("mean")(out, tgt), d.mean(1))
    torch.testing.assert_close(L1Loss("relative")(out, tgt), d.sum(1) / tgt.abs().flatten(1).sum(1))


def test_normalized_step_moves_each_row_by_lr_rms():
    x, g = torch.zeros(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    g[1] *= 1000
    new = NormalizedStep()(x, g, 0.01)
    rms = new.flatten(1).pow(2).mean(1).sqrt()
    torch.testing.assert_close(rms, torch.full((2,), 0.01))


def test_adam_step_equals_torch_optim_adam():
    torch.manual_seed(0)
    x0 = torch.randn(2, 3, 5, 5)
    grads = [torch.randn_like(x0) for _ in range(5)]
    step, x = AdamStep(), x0.clone()
    step.reset(x)
    p = x0.clone().requires_grad_(True)
    opt = torch.optim.Adam([p], lr=0.05)
    for g in grads:
        x = step(x, g, 0.05)
        p.grad = g.clone()
        opt.step()
    torch.testing.assert_close(x, p.detach())


def test_paper_preset_is_the_seed_code():
    p = ls.InversionConfig.preset("paper")
    assert (p.iterations, p.lr, p.step, p.seed) == (500, Schedule(0.1, 0.1), "gradient", 999)
    assert p.loss == L1Loss("sum", 0.15) and p.blur == GaussianBlur(3, Schedule(2.4, 0.4))
    assert (p.init_mean, p.init_std, p.reference_sigma) == (0.7, 1 / 20, 1 / 18)
    b = ls.InversionConfig.preset("blog")
    assert (b.iterations, b.lr, b.reference_sigma) == (220, Schedule(2.5, 1.5), 1 / 25)


def test_embedding_distance_decreases_and_only_the_input_gets_a_gradient(tiny, image32):
    r = ls.invert(tiny, image32, ["layer2"], iterations=40, record_every=10)
    mg = [row["embedding_distance"] for row in r["layer2"].curve]
    assert all(b < a for a, b in itertools.pairwise(mg))  # strictly decreasing
    assert mg[-1] < 0.6 * mg[0]
    assert all(p.grad is None for p in tiny.parameters())


def test_distances_match_an_independent_float64_computation(tiny, image32):
    r = ls.invert(tiny, image32, ["layer1"], iterations=5, record_every=5, seed=7)
    t = r["layer1"]
    net = tiny.double()
    try:
        with torch.no_grad():
            img = image32.double()
            noise = torch.randn(image32.shape, generator=torch.Generator().manual_seed(8)).double()

            def f(z):
                return net.net.layer1(net.net.maxpool(net.net.relu(net.net.bn1(net.net.conv1(z)))))

            m_r = float((f(img) - f(img + noise / 18)).norm())
            m_g = float((f(img) - f(t.reconstruction.double())).norm())
            m_i = float((t.reconstruction.double() - img).norm())
    finally:
        tiny.float()
    final = t.final
    assert math.isclose(final["reference_distance"], m_r, rel_tol=1e-4)
    assert math.isclose(final["embedding_distance"], m_g, rel_tol=1e-4)
    assert math.isclose(final["input_distance"], m_i, rel_tol=1e-6)
    # ‖a′ − a‖ ≈ σ′·√(3·32·32) for Gaussian noise
    assert abs(final["reference_input_distance"] / (math.sqrt(3 * 32 * 32) / 18) - 1) < 0.05


def test_batched_run_equals_targets_run_one_by_one(image32):
    # float64: in float32 a batch of 2 and a batch of 1 take different convolution kernels, and
    # the L1 gradient's signs turn last-bit differences into visible ones over many steps.
    model = ls.load_model("resnet10", seed=0).double()
    layers = ["conv1", "layer1", "layer3"]
    cfg = ls.InversionConfig(iterations=15, record_every=5, batching="staged", seed=3)
    batched = ls.invert(model, image32.double(), layers, config=cfg)
    for layer in layers:
        alone = ls.invert(model, image32.double(), [layer], config=cfg)[layer]
        torch.testing.assert_close(
            batched[layer].reconstruction, alone.reconstruction, atol=1e-10, rtol=0
        )
        for a, b in zip(batched[layer].curve, alone.curve, strict=True):
            assert math.isclose(a["embedding_distance"], b["embedding_distance"], rel_tol=1e-9)


def test_conv1_before_pooling_reconstructs_far_better_than_layer4(tiny, image48):
    r = ls.invert(tiny, image48, ["conv1", "layer4"], iterations=150, record_every=150)
    assert r["conv1"].final["input_distance"] < 0.5 * r["layer4"].final["input_distance"]


def test_a_diverging_target_stops_alone_and_says_why(tiny, image32):
    # conv1's initial L1 sum is ~940, layer4's ~6: a scale of 1e37 overflows float32 for conv1
    # only, and the scale-free normalised step keeps layer4's descent unchanged.
    cfg = ls.InversionConfig(iterations=10, record_every=5, batching="staged")
    r = ls.invert(tiny, image32, ["conv1", "layer4"], config=cfg, loss=L1Loss("sum", 1e37))
    ref = ls.invert(tiny, image32, ["layer4"], config=cfg)
    assert r["conv1"].status == "diverged" and r["layer4"].status == "ok"
    assert "non-finite" in r["conv1"].message and "--lr" in r["conv1"].message
    assert r["conv1"].reconstruction.shape == image32.shape
    torch.testing.assert_close(r["layer4"].reconstruction, ref["layer4"].reconstruction)


def test_jitter_crops_and_still_converges(tiny, image48):
    r = ls.invert(tiny, image48, ["layer1"], iterations=40, record_every=20, jitter=ls.Jitter(40))
    c = r["layer1"].curve
    assert c[-1]["embedding_distance"] < c[0]["embedding_distance"]


def test_bad_images_are_rejected(tiny):
    with pytest.raises(ValueError, match="1×3×H×W"):
        ls.invert(tiny, torch.rand(2, 3, 8, 8), ["conv1"], iterations=1)
    nan = torch.full((1, 3, 32, 32), float("nan"))
    with pytest.raises(ValueError, match="NaN"):
        ls.invert(tiny, nan, ["conv1"], iterations=1)


def test_results_save_and_load(tiny, image32, tmp_path):
    r = ls.invert(tiny, image32, ["conv1", "layer2"], iterations=4, record_every=2)
    r.save(tmp_path)
    back = ls.InversionResult.load(tmp_path)
    assert back.config == r.config
    assert {t.layer for t in back.targets} == {"conv1", "layer2"}
    for t in back.targets:
        torch.testing.assert_close(t.reconstruction, r[t.layer].reconstruction)
        for a, b in zip(t.curve, r[t.layer].curve, strict=True):
            assert a.keys() == b.keys()
            assert all(a[k] == pytest.approx(b[k], nan_ok=True) for k in a)


def test_folded_batchnorm_gives_the_same_descent(image32):
    model = ls.load_model("resnet10", seed=0).double()
    cfg = ls.InversionConfig(iterations=8, record_every=4)
    on = ls.invert(model, image32.double(), ["layer2"], config=cfg)["layer2"]
    off = ls.invert(model, image32.double(), ["layer2"], config=cfg, fold_batchnorm=False)["layer2"]
    torch.testing.assert_close(on.reconstruction, off.reconstruction, atol=1e-8, rtol=0)
