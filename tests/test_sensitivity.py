"""Sensitivity to diffeomorphisms vs noise: the sampler against its definition, the measures
against closed forms and independent float64 sums, the two-points task, the CLI."""

import math

import numpy as np
import pytest
import torch

import layerscope as ls
from layerscope.data import TwoPoints, load_dataset
from layerscope.sensitivity import RandomDiffeo, matched_noise, measure


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def crops():
    data = load_dataset("photos", "test", 24, 0)
    return torch.stack([data[i][0] for i in range(48)])


class _Fn(torch.nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


def test_zero_temperature_is_the_identity(crops):
    rd = RandomDiffeo(temperature=0.0, generator=_gen())
    torch.testing.assert_close(rd(crops), crops, atol=1e-6, rtol=0)


@pytest.mark.parametrize("cut", [2, 3, 5, 15])
@pytest.mark.parametrize("delta", [0.5, 1.0, 2.0])
def test_measured_rms_displacement_is_the_requested_delta(cut, delta):
    """δ is defined as the RMS pixel displacement over the image: measured over 3,000 fields
    (relative standard error ≈ 1%), also for a non-square image."""
    for h, w in ((32, 32), (24, 40)):
        rd = RandomDiffeo(displacement=delta, cut=cut, generator=_gen(cut))
        u = rd.fields(3000, h, w)
        rms = float(u.double().pow(2).sum(1).mean().sqrt())
        assert rms == pytest.approx(delta, rel=0.05)
        assert rd.displacement_for(h, w) == pytest.approx(delta, rel=1e-12)


def test_fields_have_no_energy_above_the_cut_off():
    """The discrete sine transform (DST-I on the interior pixels) recovers each mode exactly:
    nothing at √(k² + l²) > c, something below."""
    n, cut = 33, 3.5
    u = RandomDiffeo(displacement=1.0, cut=cut, generator=_gen()).fields(8, n, n).double()
    m = torch.arange(1, n - 1, dtype=torch.float64)
    basis = torch.sin(math.pi * m[:, None] * m[None, :] / (n - 1))  # sin(kπ s_p), k, p = 1..n-2
    coef = torch.einsum("bayx,kx,ly->bakl", u[..., 1:-1, 1:-1], basis, basis) * (2 / (n - 1)) ** 2
    r = (m[:, None] ** 2 + m[None, :] ** 2).sqrt()
    inside = float(coef[..., r <= cut].abs().max())
    assert float(coef[..., r > cut].abs().max()) < 1e-6 * inside  # float32 fields: rounding only


def test_deformations_keep_the_range_and_the_border_and_differ_per_image(crops):
    x = crops[:1].expand(4, -1, -1, -1).contiguous()
    y = RandomDiffeo(displacement=1.5, cut=5, generator=_gen(3))(x)
    assert float(y.min()) >= float(x.min()) - 1e-6 and float(y.max()) <= float(x.max()) + 1e-6
    for edge in (y[..., 0, :] - x[..., 0, :], y[..., -1, :] - x[..., -1, :],
                 y[..., :, 0] - x[..., :, 0], y[..., :, -1] - x[..., :, -1]):  # fmt: skip
        assert float(edge.abs().max()) < 1e-5
    assert float((y[0] - y[1]).abs().max()) > 1e-2  # each image its own field
    again = RandomDiffeo(displacement=1.5, cut=5, generator=_gen(3))(x)
    assert torch.equal(y, again)


def test_matched_noise_has_exactly_the_deformations_norm(crops):
    deformed = RandomDiffeo(displacement=1.0, generator=_gen())(crops)
    eta = matched_noise(crops, deformed, _gen(1))
    torch.testing.assert_close(
        eta.flatten(1).norm(dim=1), (deformed - crops).flatten(1).norm(dim=1), rtol=1e-5, atol=0
    )


def test_invalid_deformations_are_clear_errors():
    with pytest.raises(ls.ConfigError, match="ln c = 0"):
        RandomDiffeo(displacement=1.0, cut=1)
    lo, hi = RandomDiffeo.temperature_range(32, 3)
    assert lo == pytest.approx(1 / (math.pi * 32**2 * math.log(3)))
    assert hi == pytest.approx(4 / (math.pi**3 * 9 * math.log(3)))
    with pytest.raises(ls.ConfigError, match="outside the valid interval"):
        RandomDiffeo(displacement=8.0, cut=3).check(32, 32)
    with pytest.raises(ls.ConfigError, match="outside the valid interval"):
        RandomDiffeo(temperature=lo / 4, cut=3).check(32, 32)


def test_identity_gives_r_equal_to_one_and_d_from_an_independent_sum(crops):
    rows = measure(_Fn(lambda x: x), crops, ["output"], batch_size=16, seed=4)
    (row,) = rows
    assert row["R"] == pytest.approx(1.0, abs=1e-6)
    # the same deformations again, summed in float64 numpy over all distinct pairs
    deformed = RandomDiffeo(displacement=1.0, generator=_gen(4))
    d = np.concatenate(
        [(deformed(b) - b).flatten(1).double().pow(2).sum(1).numpy() for b in crops.split(16)]
    )
    a = crops.flatten(1).double().numpy()
    pairs = [((a[i] - a[j]) ** 2).sum() for i in range(len(a)) for j in range(len(a)) if i != j]
    assert row["D"] == pytest.approx(d.mean() / np.mean(pairs), rel=1e-6)
    assert row["denominator"] == pytest.approx(np.mean(pairs), rel=1e-9)


def test_a_constant_function_moves_under_nothing(crops):
    (row,) = measure(_Fn(lambda x: torch.ones(len(x), 5)), crops, ["output"], batch_size=16)
    assert row["D"] == 0 and row["G"] == 0


def test_pooling_lowers_d_and_low_pass_alone_leaves_r_above_one(crops):
    ident = measure(_Fn(lambda x: x), crops, ["output"], batch_size=16)[0]
    gap = measure(_Fn(lambda x: x.mean((2, 3))), crops, ["output"], batch_size=16)[0]
    avg = measure(_Fn(torch.nn.AvgPool2d(2)), crops, ["output"], batch_size=16)[0]
    assert gap["D"] < ident["D"]
    assert avg["R"] > 1  # averaging removes noise more than smooth deformations


def test_median_estimator_equals_a_direct_numpy_computation(crops):
    row = measure(_Fn(lambda x: x), crops[:20], ["output"], estimator="median", batch_size=10)[0]
    rd = RandomDiffeo(displacement=1.0, generator=_gen(0))
    noise_gen = _gen(1)
    d, g = [], []
    for b in crops[:20].split(10):
        deformed = rd(b)
        d.append((deformed - b).flatten(1).pow(2))
        g.append(matched_noise(b, deformed, noise_gen).flatten(1).pow(2))
    d, g = torch.cat(d).double().numpy(), torch.cat(g).double().numpy()
    a = crops[:20].flatten(1).double().numpy()
    den = np.median([((a[i] - a[j]) ** 2).sum() for i in range(20) for j in range(i + 1, 20)])
    assert row["D"] == pytest.approx(np.median(d, 0).sum() / den, rel=1e-5)
    assert row["G"] == pytest.approx(np.median(g, 0).sum() / den, rel=1e-5)
    assert row["R"] < 1  # biased: the mean estimator gives exactly 1 here


def test_all_layers_in_one_pass_and_depth_ordering(crops):
    tiny = ls.load_model("resnet10", seed=0)
    rows = measure(tiny, crops[:16], "all", batch_size=8, bootstrap=20)
    assert [r["layer"] for r in rows][-1] == "output" and rows[-1]["depth"] == 1.0
    assert [r["depth"] for r in rows] == sorted(r["depth"] for r in rows)
    assert all(r["D"] > 0 and r["G"] > 0 and r["R_err"] > 0 for r in rows)


def test_two_points_labels_and_balance():
    data = TwoPoints("train", size=28, length=400, seed=0)
    labels = [data[i][1] for i in range(400)]
    assert sum(labels) == 200  # balanced
    for i in range(40):
        img, label = data[i]
        pts = (img[0] > 0).nonzero().double()
        assert len(pts) == 2 and float(img.max()) == 28**2 / 2
        dist = float((pts[0] - pts[1]).norm())
        assert (dist >= 15) if label else (dist < 13)
    near = TwoPoints(size=10, xi=3, gap=2, norm="linf", length=20)
    p = near.distance(torch.tensor([[0, 0]]), torch.tensor([[1, 1]]))
    assert float(p) == 1.0 and float(near.distance(torch.tensor([0, 0]), torch.tensor([3, 4]))) == 4
    with pytest.raises(ls.LayerscopeError, match="empty class"):
        TwoPoints(size=10, xi=20)


def test_sensitivity_cli_writes_every_artefact(run_cli, tmp_path):
    out = tmp_path / "s"
    code, stdout, err = run_cli(
        "sensitivity", "--model", "resnet10", "--size", "24", "--n", "12", "--batch-size", "6",
        "--displacement", "0.5,1", "--bootstrap", "10", "--out", str(out),
    )  # fmt: skip
    assert code == 0, err
    for name in ("config.json", "sensitivity.csv", "pooling.csv", "sensitivity.png",
                 "examples.png", "report.html"):  # fmt: skip
        assert (out / name).is_file(), name
    rows = ls.tables.read_csv(out / "sensitivity.csv")
    assert {r["displacement"] for r in rows} == {0.5, 1.0}
    assert {"D", "G", "R", "D_err", "temperature", "cut", "depth", "n"} <= rows[0].keys()
    assert "R_f" in stdout
    (out / "report.html").unlink()
    assert run_cli("report", str(out))[0] == 0 and (out / "report.html").is_file()


def test_lose_spatial_info_study_end_to_end_and_resume(run_cli, tmp_path):
    out = tmp_path / "lsi"
    args = ["study", "lose-spatial-info", "--nets", "smallcnn@twopoints,mlp:16,16@twopoints"]
    args += ["--epochs", "1", "--n-train", "64", "--n", "8", "--out", str(out)]
    code, stdout, err = run_cli(*args)
    assert code == 0, err
    assert "smallcnn on twopoints" in stdout and "mlp:16,16 on twopoints" in stdout
    rows = ls.tables.read_csv(out / "summary.csv")
    assert {(r["model"], r["state"]) for r in rows} == {
        (m, s) for m in ("smallcnn", "mlp:16,16") for s in ("initial", "trained")
    }
    sens = ls.tables.read_csv(out / "sensitivity" / "smallcnn-twopoints" / "sensitivity.csv")
    first = min(sens, key=lambda r: r["depth"])
    trained = next(r for r in rows if (r["model"], r["state"]) == ("smallcnn", "trained"))
    assert trained["decades"] == pytest.approx(
        math.log10(
            next(r["R"] for r in sens if r["layer"] == first["layer"] and "001" in r["weights"])
            / trained["R_output"]
        )
    )
    initial = next(r for r in rows if (r["model"], r["state"]) == ("smallcnn", "initial"))
    assert trained["decades_over_initial"] == pytest.approx(
        trained["decades"] - initial["decades"], abs=1e-12
    )
    for name in ("report.html", "lose_spatial_info.png"):
        assert (out / name).is_file()
    stamp = (out / "sensitivity" / "smallcnn-twopoints" / "sensitivity.csv").stat().st_mtime_ns
    assert run_cli("study", "lose-spatial-info", "--out", str(out), "--resume")[0] == 0
    assert (
        out / "sensitivity" / "smallcnn-twopoints" / "sensitivity.csv"
    ).stat().st_mtime_ns == stamp
    code, _, err = run_cli("study", "lose-spatial-info", "--nets", "smallcnn@twopint")
    assert code == 2 and "unknown data set 'twopint'" in err


def test_filter_homogeneity_is_one_for_pooling_filters_and_one_over_f2_at_random():
    from layerscope.sensitivity import filter_homogeneity

    with torch.random.fork_rng():
        torch.manual_seed(0)  # the test's own draw, whatever ran before it
        net = torch.nn.Sequential(torch.nn.Conv2d(3, 512, 3), torch.nn.Conv2d(512, 64, 5))
    (first, second) = filter_homogeneity(net)
    # sign-symmetric iid entries: E[F²·mean(w)²/‖w‖²] = 1/F² exactly; 1,536 and 32,768 filters
    # (spreads of the mean: 3% and 0.8%)
    assert first["homogeneity"] == pytest.approx(1 / 9, rel=0.15)
    assert second["homogeneity"] == pytest.approx(1 / 25, rel=0.05)
    with torch.no_grad():
        net[0].weight.fill_(0.3)  # an average-pooling filter
        net[1].weight.copy_(
            torch.tensor([-1.0, 1.0]).repeat(64, 512, 13)[..., :25].view(64, 512, 5, 5)
        )
    (first, second) = filter_homogeneity(net)
    assert first["homogeneity"] == pytest.approx(1.0)
    assert second["homogeneity"] == pytest.approx(1 / 25 / 25, rel=1e-9)  # mean 1/25, ‖w‖² 25


@pytest.mark.slow
def test_scale_detection_net_becomes_stable_to_deformations_with_depth_only_after_training(
    tmp_path,
):
    """The papers' headline on the task where it is known: a pooling CNN trained on two-points
    images has R_f falling by more than a decade from its first layer to the output, and G_f
    rising; at initialisation it does not (measured: 1.85 vs −0.13 decades, 6 epochs)."""
    from layerscope.studies.lose_spatial_info import LoseSpatialInfoConfig, run

    config = LoseSpatialInfoConfig(nets=[["smallcnn", "twopoints"]], epochs=6, n_train=2400, n=300)
    out = run(config, out=tmp_path / "lsi")
    rows = {r["state"]: r for r in ls.tables.read_csv(out / "summary.csv")}
    assert rows["trained"]["test_accuracy"] > 0.9
    assert rows["trained"]["decades"] > 1.0 and rows["initial"]["decades"] < 0.5
    assert rows["trained"]["G_output"] > 10 * rows["trained"]["G_first"]


def test_per_channel_sensitivities_and_the_whole_layer_as_their_weighted_mean(crops):
    """For f = identity the channels are R, G, B: each channel's D_f from an independent
    float64 sum, and the whole image's D_f their average weighted by each channel's spread."""
    from layerscope.sensitivity import _Accumulator

    rd = RandomDiffeo(displacement=1.0, generator=_gen(5))
    acc = _Accumulator(False)
    deformed = rd(crops)
    acc.update(torch.cat([crops, deformed, crops]))
    per = acc.channel_sensitivities()
    a, d = crops.double().numpy(), (deformed - crops).double().numpy()
    n = len(a)
    expected, dens = [], []
    for c in range(3):
        ac = a[:, c].reshape(n, -1)
        den = np.mean([((ac[i] - ac[j]) ** 2).sum() for i in range(n) for j in range(n) if i != j])
        expected.append((d[:, c] ** 2).reshape(n, -1).sum(1).mean() / den)
        dens.append(den)
    np.testing.assert_allclose(per.numpy(), expected, rtol=1e-6)
    whole = float(torch.cat(acc.d).mean()) / acc.pair_mean()
    assert whole == pytest.approx(np.dot(expected, dens) / np.sum(dens), rel=1e-6)
    row = measure(_Fn(lambda x: x), crops, ["output"], batch_size=16, bootstrap=0)[0]
    assert row["channels"] == 3 and row["D_channel_q25"] <= row["D_channel_median"]


def test_ctrl_c_inside_a_nested_training_run_keeps_it_and_the_study_resumes(
    run_cli, tmp_path, monkeypatch
):
    """Ctrl-C in the first net's second epoch: the nested training run keeps its first epoch,
    so the study's directory is kept too (it was deleted whole), and --resume finishes it."""
    import signal

    out = tmp_path / "lsi"
    args = ["study", "lose-spatial-info", "--nets", "smallcnn@twopoints", "--epochs", "2"]
    args += ["--n-train", "64", "--n", "8", "--out", str(out)]
    monkeypatch.setenv("LAYERSCOPE_FAULT", "checkpoint-written:2:SIGINT")
    # Ctrl-C as a terminal gives it, whatever this test process inherited (a parent that
    # ignores SIGINT, e.g. `make test &`, would otherwise swallow the signal)
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        code, _, err = run_cli(*args)
    finally:
        signal.signal(signal.SIGINT, old)
    assert code == 130, err
    assert "0 of 1 nets finished" in err and "--resume" in err
    ckpts = out / "train" / "smallcnn-twopoints" / "checkpoints"
    assert (ckpts / "epoch_001.safetensors").is_file() and (out / "config.json").is_file()
    monkeypatch.delenv("LAYERSCOPE_FAULT")
    code, _, err = run_cli("study", "lose-spatial-info", "--out", str(out), "--resume")
    assert code == 0, err
    assert (ckpts / "epoch_002.safetensors").is_file() and (out / "summary.csv").is_file()
