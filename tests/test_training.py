import json
import math

import pytest
import torch
from safetensors import safe_open

import layerscope as ls
from layerscope.data import DataUnavailable, load_dataset
from layerscope.studies.train import train
from layerscope.tables import read_csv
from layerscope.training import TrainConfig, checkpoints, latest_checkpoint


def test_data_sets_are_deterministic_from_the_seed():
    a, b = load_dataset("photos", "train", 32, seed=1), load_dataset("photos", "train", 32, seed=1)
    c = load_dataset("photos", "train", 32, seed=2)
    assert torch.equal(a[5][0], b[5][0]) and a[5][1] == b[5][1]
    assert not torch.equal(a[5][0], c[5][0])
    n1 = load_dataset("noise", "train", 8, seed=0, length=20, num_classes=7)
    n2 = load_dataset("noise", "train", 8, seed=0, length=20, num_classes=7)
    assert torch.equal(n1[3][0], n2[3][0]) and torch.equal(n1.labels, n2.labels)
    assert int(n1.labels.max()) < 7


def test_photo_splits_share_no_pixel():
    train_set, test_set = load_dataset("photos", "train", 32), load_dataset("photos", "test", 32)
    assert train_set.classes == test_set.classes
    for name, tr, te in zip(train_set.classes, train_set._photos, test_set._photos, strict=True):
        full = ls.load_image(name, None)[0]
        assert tr.shape[-1] + te.shape[-1] == full.shape[-1]
        assert torch.equal(torch.cat([tr, te], dim=-1), full)


def test_noise_is_the_seed_distribution():
    noise = load_dataset("noise", "train", 32, length=50)
    x = torch.stack([noise[i][0] for i in range(50)])
    assert abs(float(x.mean()) - 0.5) < 0.01 and abs(float(x.std()) - 0.25) < 0.01
    assert float(x.min()) < 0  # not clipped
    fresh = load_dataset("noise", "test", 32, length=50)
    assert not torch.equal(fresh[0][0], noise[0][0])


def test_missing_torchvision_data_names_the_fix(tmp_path):
    with pytest.raises(DataUnavailable, match="data_root"):
        load_dataset("cifar10", "train", root=tmp_path)
    with pytest.raises(DataUnavailable, match="closest: noise"):
        load_dataset("noize")


def _noise_config(**kw) -> TrainConfig:
    base = dict(
        model="smallcnn",
        data="noise",
        size=16,
        num_classes=10,
        batch_size=16,
        lr=3e-3,
        epochs=10,
        data_params={"length": 64, "num_classes": 10},
    )
    return TrainConfig(**(base | kw))


def test_a_tiny_net_memorises_noise_and_stays_at_chance(tmp_path):
    run = train(_noise_config(), out=tmp_path / "t")
    rows = read_csv(run / "metrics.csv")
    assert len(rows) == 10
    assert rows[-1]["train_accuracy"] >= 0.99
    assert rows[-1]["test_accuracy"] <= 0.3  # 10 labels: chance is 0.1
    # the last checkpoint, evaluated again from disk, still fits every training image
    model = ls.load_model(str(latest_checkpoint(run)))
    data = load_dataset("noise", "train", 16, length=64, num_classes=10)
    x = torch.stack([data[i][0] for i in range(64)])
    with torch.no_grad():
        acc = float((model(x).argmax(1) == data.labels).float().mean())
    assert acc >= 0.99


def test_checkpoints_round_trip_bit_exactly_with_a_sidecar(tmp_path):
    run = train(_noise_config(epochs=2), out=tmp_path / "t")
    ckpt = latest_checkpoint(run)
    side = json.loads(ckpt.with_suffix(".json").read_text())
    assert side["model"] == "smallcnn" and side["epoch"] == 2 and side["num_classes"] == 10
    with safe_open(str(ckpt), "pt") as f:
        assert json.loads(f.metadata()["layerscope"])["epoch"] == 2
        stored = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    model = ls.load_model(str(ckpt))  # the sidecar names the model
    assert model.name == "smallcnn"
    got = model.net.state_dict()
    assert stored.keys() == got.keys()
    assert all(torch.equal(stored[k], got[k]) for k in stored)


def test_resume_equals_an_uninterrupted_run(tmp_path):
    full = train(_noise_config(epochs=4), out=tmp_path / "full")
    part = train(_noise_config(epochs=2), out=tmp_path / "part")
    train(_noise_config(epochs=4), out=part, resume=True)  # extends the stored recipe
    a = ls.load_model(str(latest_checkpoint(full))).net.state_dict()
    b = ls.load_model(str(latest_checkpoint(part))).net.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    ra, rb = read_csv(full / "metrics.csv"), read_csv(part / "metrics.csv")
    assert [r["train_loss"] for r in ra] == pytest.approx([r["train_loss"] for r in rb], rel=1e-6)


def test_depth_study_loads_a_trained_checkpoint(tmp_path):
    """The net the descent runs is the checkpoint's: every tensor equals the file's (read
    with safetensors directly), differs from the initialisation, and the descent's starting
    distance m_g differs from the untrained net's (it asserted only status ok)."""
    from safetensors.torch import load_file

    run = train(_noise_config(epochs=1), out=tmp_path / "t")
    ckpt, init = latest_checkpoint(run), checkpoints(run)[0]
    model = ls.load_model("smallcnn", ckpt)
    stored, first = load_file(str(ckpt)), load_file(str(init))
    state = model.net.state_dict()
    matched = {k: next(s for s in stored if s.endswith(k)) for k in state}
    for k, s in matched.items():
        assert torch.equal(state[k], stored[s]), k
    assert any(not torch.equal(stored[s], first[s]) for s in matched.values())
    image = ls.load_image("chelsea", 16)
    trained = ls.invert(model, image, ["conv2"], iterations=3, record_every=3)["conv2"]
    untrained = ls.invert(ls.load_model("smallcnn", init), image, ["conv2"], iterations=3,
                          record_every=3)["conv2"]  # fmt: skip
    assert trained.status == "ok"
    m0 = trained.curve[0]["embedding_distance"], untrained.curve[0]["embedding_distance"]
    assert m0[0] != pytest.approx(m0[1], rel=1e-3)


def test_filter_canvas_has_one_min_max_tile_per_filter():
    from layerscope.report.figures import filter_canvas

    w = torch.randn(10, 3, 7, 7)
    canvas = filter_canvas(w, columns=4)
    assert canvas.shape == (3, 3 * 8 - 1, 4 * 8 - 1)  # 10 filters → 3 rows of 4
    for i in range(10):
        r, c = divmod(i, 4)
        tile = canvas[:, r * 8 : r * 8 + 7, c * 8 : c * 8 + 7]
        assert float(tile.min()) == 0.0 and float(tile.max()) == 1.0
        expected = (w[i] - w[i].min()) / (w[i].max() - w[i].min())
        torch.testing.assert_close(tile, expected)
    assert float(canvas[:, 16:, 16:].min()) == 1.0  # the two missing tiles stay blank


def test_training_effect_study_end_to_end(tmp_path, run_cli):
    ckpt = latest_checkpoint(train(_noise_config(epochs=1), out=tmp_path / "noise"))
    out = tmp_path / "effect"
    code, printed, err = run_cli(
        "study", "training-effect", "--model", "smallcnn", "--weights", f"none,{ckpt}",
        "--image", "chelsea", "--ood-image", "brick", "--size", "32", "--iterations", "3",
        "--layers", "conv1,conv3", "--out", str(out))  # fmt: skip
    assert code == 0, err
    for name in (
        "report.html",
        "filters.png",
        "filters.csv",
        "blur/report.html",
        "noblur/report.html",
    ):
        assert (out / name).is_file(), name
    assert "final distances · blur" in printed and "final distances · noblur" in printed
    blur = json.loads((out / "blur" / "config.json").read_text())["study"]["inversion"]
    noblur = json.loads((out / "noblur" / "config.json").read_text())["study"]["inversion"]
    assert blur["blur"] is not None and noblur["blur"] is None
    rows = read_csv(out / "noblur" / "summary.csv")
    assert {(r["image"], r["layer"]) for r in rows} == {
        (i, layer) for i in ("chelsea", "brick") for layer in ("conv1", "conv3")
    }
    assert len(rows) == 8  # two weight states × two images × two layers


def test_ablation_endpoints_plain_accuracy_and_chance(tmp_path):
    from layerscope.ablation import ablation_curve, default_ks
    from layerscope.training import loss_and_accuracy

    assert default_ks(64, 5)[0] == 0 and default_ks(64, 5)[-1] == 64
    run = train(
        _noise_config(
            data="photos", data_params={"length": 96}, size=16, epochs=3, num_classes=None
        ),
        out=tmp_path / "p",
    )
    model = ls.load_model(str(latest_checkpoint(run)))
    test_set = load_dataset("photos", "test", 16, augment=False)
    subset = torch.utils.data.Subset(test_set, list(range(120)))  # 10 of each of 12 classes
    loader = torch.utils.data.DataLoader(subset, batch_size=40)
    batches = list(loader)
    rows = ablation_curve(model, "conv3", batches, ks=[0, 64], orders=2)
    _, plain = loss_and_accuracy(model, loader, torch.device("cpu"))
    for r in rows:
        if r["k"] == 0:
            assert r["accuracy"] == pytest.approx(plain)
        else:  # every map of conv3 zeroed: one constant prediction, one class in twelve
            assert r["accuracy"] == pytest.approx(1 / 12)
        assert r["relative_accuracy"] == pytest.approx(r["accuracy"] / plain)  # of the intact net
    means = ablation_curve(model, "conv3", batches, ks=[0, 64], orders=1, mode="mean")
    assert means[0]["accuracy"] == pytest.approx(plain)


def test_ablate_cli_compares_checkpoints(run_cli, tmp_path):
    noise = latest_checkpoint(train(_noise_config(epochs=3), out=tmp_path / "n"))
    photos = latest_checkpoint(
        train(
            _noise_config(data="photos", data_params={"length": 48}, epochs=1, num_classes=None),
            out=tmp_path / "p",
        )
    )
    out = tmp_path / "ab"
    code, _, err = run_cli("ablate", "--weights", f"{noise},{photos}",
                                 "--layers", "conv2,conv3", "--orders", "2", "--points", "3",
                                 "--n", "48", "--out", str(out))  # fmt: skip
    assert code == 0, err
    rows = read_csv(out / "ablation.csv")
    assert (out / "ablation.png").is_file()
    splits = {str(r["weights"]): r["split"] for r in rows}
    assert splits[str(noise)] == "train"  # memorising net: judged on what it memorised
    assert {r["layer"] for r in rows} == {"conv2", "conv3"}
    assert {r["order"] for r in rows} == {0, 1}


def test_group_spectrum_equals_numpy_svd():
    import numpy as np

    from layerscope.spectra import group_spectrum

    acts = torch.randn(12, 5, 3, 3)
    sv, shares = group_spectrum(acts, k=4)
    m = acts.flatten(1).double().numpy()
    s = np.linalg.svd(m - m.mean(0), compute_uv=False)
    np.testing.assert_allclose(sv, s[:4], rtol=1e-10)
    np.testing.assert_allclose(shares, (s**2 / (s**2).sum())[:4], rtol=1e-10)
    assert sum(shares) <= 1 + 1e-12
    assert group_spectrum(torch.zeros(3, 4), k=5) == ([0.0] * 5, [0.0] * 5)  # no variance


def test_training_records_activation_spectra_every_epoch(tmp_path):
    run = train(
        _noise_config(
            epochs=2, spectra_layers=["conv1", "conv3"], spectra_images=2, spectra_group=4
        ),
        out=tmp_path / "s",
    )
    rows = read_csv(run / "spectra.csv")
    assert {r["epoch"] for r in rows} == {0, 1, 2}
    assert {r["split"] for r in rows} == {"train", "test"}
    assert {r["sigma"] for r in rows} == {0.2, 0.1, 0.01}
    for key in {(r["epoch"], r["split"], r["layer"], r["sigma"]) for r in rows}:
        shares = [
            r["share"] for r in rows if (r["epoch"], r["split"], r["layer"], r["sigma"]) == key
        ]
        assert len(shares) == 4 and sum(shares) <= 1 + 1e-9
        assert shares == sorted(shares, reverse=True)
    assert (run / "spectra.png").is_file()


@pytest.mark.slow
def test_the_scaled_noise_recipe_memorises(tmp_path):
    """The seed's recipe scaled for a CPU: ResNet-18, 1,000 noise images at 64 px, Adam 1e-4,
    batch 128, no shuffle, 1000-way head. Measured: 94% train accuracy at epoch 3, 100% at 4."""
    config = TrainConfig(
        model="resnet18",
        data="noise",
        size=64,
        batch_size=128,
        lr=1e-4,
        epochs=5,
        data_params={"length": 1000, "num_classes": 100},
    )
    rows = read_csv(train(config, out=tmp_path / "noise") / "metrics.csv")
    assert rows[-1]["train_accuracy"] >= 0.99
    assert rows[-1]["test_accuracy"] <= 0.05  # 100 labels: chance is 0.01


def test_ablation_finds_the_channels_of_an_nhwc_layer():
    """Swin-style stages keep channels last: the units are those 5 channels, not the 4 rows."""
    from torch import nn

    from layerscope.ablation import ablation_curve

    class ToNHWC(nn.Module):
        def forward(self, x):
            return x.permute(0, 2, 3, 1)

    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 5, 3, padding=1), ToNHWC(), nn.Linear(5, 5), nn.Flatten(), nn.Linear(80, 3)
    )
    model = ls.Model(net, "nhwc-net")
    x = torch.rand(12, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    y = torch.arange(12) % 3
    rows = ablation_curve(model, "1", [(x, y)], ks=[0, 2, 5], orders=2)
    assert {r["units"] for r in rows} == {5}
    with torch.no_grad():  # all channels zeroed = the rest of the net on zeros
        blank = net[2:](torch.zeros(12, 4, 4, 5)).argmax(1)
    full = next(r for r in rows if r["k"] == 5)
    assert full["accuracy"] == pytest.approx(float((blank == y).float().mean()))


def test_ablation_shares_the_layers_before_a_cut_point(tmp_path, monkeypatch):
    """The points of a curve ride through the rest of the net as one batch after the layers
    before the ablated one ran once; the accuracies equal one forward per point."""
    import layerscope.ablation as abl
    from layerscope.layers import cut_points

    run = train(_noise_config(epochs=6), out=tmp_path / "t")
    model = ls.load_model(str(latest_checkpoint(run)))
    data = load_dataset("noise", "train", 16, length=64, num_classes=10)
    x, y = torch.stack([data[i][0] for i in range(64)]), data.labels[:64]
    assert "conv2" in cut_points(model, ["conv2"])

    def curves():
        return [abl.ablation_curve(model, "conv2", [(x, y)], points=5, orders=2, mode=mode)
                for mode in ("zero", "mean")]  # fmt: skip

    shared = curves()
    monkeypatch.setattr(abl, "cut_points", lambda *a: frozenset())  # one forward per point
    single = curves()
    for a, b in zip(shared, single, strict=True):
        assert [r["accuracy"] for r in a] == [r["accuracy"] for r in b]
    zero = [r["accuracy"] for r in shared[0]]
    assert zero[0] > 0.3 and min(zero) < zero[0]  # above chance (0.1), and the curve moves


def test_filter_concentration_against_closed_forms():
    """A cosine at one DFT frequency holds all its energy in its conjugate pair (1.0); a delta
    spreads it evenly over the k² frequencies (2/k²); white noise lies in between, far below
    the cosine."""
    from layerscope.metrics import filter_concentration

    k = 7
    x = torch.arange(k, dtype=torch.float64)
    grating = torch.cos(2 * math.pi * 2 * x / k).expand(k, k).clone()  # frequency 2 along one axis
    delta = torch.zeros(k, k, dtype=torch.float64)
    delta[3, 3] = 1.0
    w = torch.stack([grating, delta]).unsqueeze(1).expand(2, 3, k, k)
    share = filter_concentration(w)
    assert share[0].item() == pytest.approx(1.0, abs=1e-12)
    assert share[1].item() == pytest.approx(2 / k**2, abs=1e-12)
    noise = filter_concentration(
        torch.randn(64, 3, k, k, generator=torch.Generator().manual_seed(0))
    )
    assert float(noise.mean()) < 0.25
    with pytest.raises(ValueError, match="out × in × k × k"):
        filter_concentration(torch.zeros(3, 3))


def test_digits_are_real_handwritten_digits_split_by_seed_and_learnable(tmp_path):
    """scikit-learn's load_digits offline: 1,797 images split 1,437 / 360 by the seed, in
    [0, 1], ten classes; a small net learns them well above chance (10%) in three epochs."""
    import numpy as np
    from sklearn.datasets import load_digits

    from layerscope.data import load_dataset
    from layerscope.studies.train import train
    from layerscope.tables import read_csv
    from layerscope.training import TrainConfig

    tr, te = load_dataset("digits", "train", 8), load_dataset("digits", "test", 8)
    assert (len(tr), len(te)) == (1437, 360) and tr.classes == [str(i) for i in range(10)]
    assert float(tr.x.min()) >= 0 and float(tr.x.max()) <= 1
    # at 8 px the images are sklearn's own, /16: every train image is one of them
    ref = {tuple(np.round(r.ravel() / 16.0, 6)) for r in load_digits().images}
    assert tuple(np.round(tr.x[0, 0].numpy().ravel(), 6)) in ref
    other = load_dataset("digits", "test", 8, seed=1)
    assert not torch.equal(other.x, te.x) and torch.equal(load_dataset("digits", "test", 8).x, te.x)
    cfg = TrainConfig(model="smallcnn", data="digits", size=16, epochs=3, batch_size=64,
                      lr=3e-3, device="cpu")  # fmt: skip
    run = train(cfg, out=tmp_path / "run")
    assert read_csv(run / "metrics.csv")[-1]["test_accuracy"] > 0.5
