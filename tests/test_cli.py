import json

import pytest
from safetensors.torch import load_file

import layerscope as ls
from layerscope.metrics import edge_energy
from layerscope.tables import read_csv

TINY = [
    "--model",
    "resnet10",
    "--image",
    "chelsea",
    "--size",
    "32",
    "--iterations",
    "6",
    "--record-every",
    "3",
]


def test_depth_cli_writes_every_artefact(run_cli, tmp_path):
    out = tmp_path / "run"
    code, stdout, err = run_cli(
        "depth",
        *TINY,
        "--weights",
        "none",
        "--layers",
        "conv1,conv5",
        "--out",
        str(out),
    )
    assert code == 0, err
    for name in (
        "config.json",
        "metrics.csv",
        "summary.csv",
        "sharpness.csv",
        "grid.png",
        "curves.png",
        "report.html",
    ):
        assert (out / name).is_file(), name
    sharp = {r["layer"]: r for r in read_csv(out / "sharpness.csv")}
    rec = load_file(
        str(out / "targets" / "resnet10__none__chelsea__conv1" / "reconstruction.safetensors")
    )
    image = ls.load_image("chelsea", 32)
    ratio = edge_energy(next(iter(rec.values())).reshape(1, 3, 32, 32)) / edge_energy(image)
    assert sharp["conv1"]["edge_ratio"] == pytest.approx(ratio.item(), rel=1e-9)
    rows = read_csv(out / "metrics.csv")
    assert {r["layer"] for r in rows} == {"conv1", "layer4"}
    assert sorted({r["iteration"] for r in rows}) == [0, 3, 6]
    assert {
        "model",
        "weights",
        "image",
        "embedding_distance",
        "reference_distance",
        "input_distance",
        "embedding_distance_rms",
    } <= rows[0].keys()
    for layer in ("conv1", "layer4"):
        d = out / "targets" / f"resnet10__none__chelsea__{layer}"
        assert (d / "reconstruction.png").is_file() and (d / "result.json").is_file()
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["study"]["inversion"]["iterations"] == 6
    html = (out / "report.html").read_text()
    assert "grid.png" in html and "layer4" in html
    assert "m_g<m_r" in stdout


def test_resume_redoes_only_missing_targets(run_cli, tmp_path):
    """30 steps: long enough that a resumed target computed differently (e.g. with conv1
    folded because it was no longer pending) would end visibly elsewhere."""
    out = tmp_path / "run"
    args = ["depth", *TINY, "--iterations", "30", "--layers", "conv1,layer2", "--out", str(out)]
    assert run_cli(*args)[0] == 0
    before = read_csv(out / "metrics.csv")
    kept = out / "targets" / "resnet10__none__chelsea__conv1" / "result.json"
    stamp = kept.stat().st_mtime_ns
    lost = out / "targets" / "resnet10__none__chelsea__layer2"
    for f in lost.iterdir():
        f.unlink()
    lost.rmdir()
    code, _, err = run_cli(*args)
    assert code == 2 and "--resume" in err
    assert run_cli(*args, "--resume")[0] == 0
    assert kept.stat().st_mtime_ns == stamp
    after = read_csv(out / "metrics.csv")
    assert [r["layer"] for r in after] == [r["layer"] for r in before]
    for a, b in zip(after, before, strict=True):
        assert a["embedding_distance"] == b["embedding_distance"]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--model", "resnet51"], "resnet50"),
        (["--model", "resnet10", "--layers", "layer5"], "closest: layer4"),
        (["--model", "resnet10", "--image", "/nonexistent.png"], "not found"),
        (["--model", "resnet10", "--weights", "missing.safetensors"], "checkpoint"),
        (["--model", "smallcnn", "--size", "4"], "--size"),
    ],
)
def test_errors_are_one_line_without_traceback(run_cli, tmp_path, args, needle):
    code, _, err = run_cli("depth", *args, "--iterations", "1", "--out", str(tmp_path / "r"))
    assert code == 2
    assert needle in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_corrupt_image_error(run_cli, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    code, _, err = run_cli(
        "depth",
        "--model",
        "resnet10",
        "--image",
        str(bad),
        "--out",
        str(tmp_path / "r"),
    )
    assert code == 2 and "corrupt" in err


def test_layers_command_lists_names_aliases_and_shapes(run_cli):
    code, out, _ = run_cli("layers", "resnet10", "--size", "64")
    assert code == 0
    assert "layer4" in out and "conv5" in out and "512×2×2" in out


def test_report_command_rebuilds_the_page(run_cli, tmp_path):
    out = tmp_path / "run"
    assert run_cli("depth", *TINY, "--layers", "conv1", "--out", str(out))[0] == 0
    (out / "report.html").unlink()
    assert run_cli("report", str(out))[0] == 0
    assert (out / "report.html").is_file()


def test_paper_preset_from_the_cli(run_cli, tmp_path):
    out = tmp_path / "run"
    code, _, err = run_cli(
        "depth",
        "--preset",
        "paper",
        "--model",
        "resnet10",
        "--size",
        "32",
        "--iterations",
        "2",
        "--layers",
        "conv1",
        "--reference-sigma",
        "1/25",
        "--out",
        str(out),
    )
    assert code == 0, err
    inv = json.loads((out / "config.json").read_text())["study"]["inversion"]
    assert inv["step"] == "gradient" and inv["loss"] == {"reduction": "sum", "scale": 0.15}
    assert inv["seed"] == 999 and inv["reference_sigma"] == pytest.approx(1 / 25)


def test_every_engine_option_reaches_the_config(run_cli, tmp_path):
    out = tmp_path / "run"
    code, _, err = run_cli(
        "depth",
        *TINY,
        "--layers",
        "layer1",
        "--no-blur",
        "--jitter",
        "24",
        "--step",
        "adam",
        "--lr",
        "0.05,0.01",
        "--loss",
        "mean",
        "--loss-scale",
        "2",
        "--seed",
        "5",
        "--batching",
        "staged",
        "--device",
        "cpu",
        "--out",
        str(out),
    )
    assert code == 0, err
    inv = json.loads((out / "config.json").read_text())["study"]["inversion"]
    assert inv["blur"] is None and inv["jitter"] == {"size": 24} and inv["step"] == "adam"
    assert inv["lr"] == {"start": 0.05, "end": 0.01} and inv["loss"] == {
        "reduction": "mean",
        "scale": 2.0,
    }
    assert inv["seed"] == 5 and inv["batching"] == "staged"


def test_bad_device_is_a_clear_error(run_cli, tmp_path):
    code, _, err = run_cli("depth", *TINY, "--device", "gpu7", "--out", str(tmp_path / "r"))
    assert code == 2 and "--device" in err


def test_models_command_lists_families(run_cli):
    code, out, _ = run_cli("models", "--family", "builtin")
    assert code == 0 and "resnet10" in out and "mlp:" in out and "torchvision" not in out


def test_train_cli_writes_checkpoints_and_curves(run_cli, tmp_path):
    out = tmp_path / "train"
    code, stdout, err = run_cli(
        "train",
        "--model",
        "smallcnn",
        "--data",
        "photos",
        "--size",
        "16",
        "--n",
        "48",
        "--epochs",
        "2",
        "--batch-size",
        "16",
        "--lr",
        "1e-3",
        "--out",
        str(out),
    )
    assert code == 0, err
    assert (out / "checkpoints" / "epoch_002.safetensors").is_file()
    assert (out / "checkpoints" / "epoch_002.json").is_file() and (out / "training.png").is_file()
    assert len(read_csv(out / "metrics.csv")) == 2 and "test acc" in stdout
    code, _, err = run_cli(
        "train",
        "--data",
        "cifar10",
        "--data-root",
        str(tmp_path),
        "--out",
        str(tmp_path / "c"),
    )
    assert code == 2 and "--data-root" in err


def test_restarts_spread_is_small_where_the_layer_is_injective_and_large_after_pooling(
    run_cli, tmp_path
):
    """conv1 of a ResNet (64×16×16 outputs for 3×32×32 inputs) is injective: descents from
    different a0 meet; after layer4's pooling they stay apart while matching it as well."""
    out = tmp_path / "run"
    args = ["depth", "--model", "resnet10", "--size", "32", "--iterations", "60"]
    code, stdout, err = run_cli(*args, "--layers", "conv1,layer4", "--restarts", "3", "--out",
                                str(out))  # fmt: skip
    assert code == 0, err
    rows = {r["layer"]: r for r in read_csv(out / "restarts.csv")}
    assert rows["conv1"]["restarts"] == 3
    assert rows["conv1"]["spread"] < 0.1 * rows["layer4"]["spread"]
    assert (out / "restarts.png").is_file() and "Restarts" in (out / "report.html").read_text()
    assert len(read_csv(out / "summary.csv")) == 6 and "layer4 r2" in stdout


def test_edge_energy_against_a_step_edge():
    """A vertical 0 → 1 step in a W-wide image: 1/(W − 1) across, nothing down; doubling the
    contrast doubles it."""
    import torch

    x = torch.zeros(1, 3, 8, 10, dtype=torch.float64)
    x[..., 5:] = 1.0
    assert edge_energy(x).item() == pytest.approx(1 / 9, abs=1e-12)
    assert edge_energy(2 * x).item() == pytest.approx(2 / 9, abs=1e-12)


def test_structure_measures_tell_the_photos_edges_from_noise():
    """Edge agreement and luminance correlation where the answer is known: the image itself
    1, its negative −1 in luminance, noise ≈ 0 in both although its edge energy is many
    times the photo's (what edge_energy alone reads as 'sharper'); a blurred copy keeps most
    of the photo's edges; the luminance correlation equals numpy's Pearson coefficient."""
    import numpy as np
    import torch
    from torchvision.transforms.functional import gaussian_blur

    from layerscope.images import load_image
    from layerscope.metrics import edge_agreement, luminance_correlation

    photo = load_image("brick", 96).double()
    noise = torch.rand(photo.shape, generator=torch.Generator().manual_seed(0)).double()
    blurred = gaussian_blur(photo, [5, 5], [1.0, 1.0])
    assert edge_agreement(photo, photo).item() == pytest.approx(1.0)
    assert luminance_correlation(photo, photo).item() == pytest.approx(1.0)
    assert luminance_correlation(1 - photo, photo).item() == pytest.approx(-1.0)
    assert abs(edge_agreement(noise, photo).item()) < 0.1
    assert abs(luminance_correlation(noise, photo).item()) < 0.1
    assert edge_energy(noise).item() > 3 * edge_energy(photo).item()  # noise looks "sharper"
    assert edge_agreement(blurred, photo).item() > 0.5
    y = lambda x: (x[0, 0] * 0.299 + x[0, 1] * 0.587 + x[0, 2] * 0.114).flatten().numpy()  # noqa: E731
    direct = np.corrcoef(y(blurred), y(photo))[0, 1]
    assert luminance_correlation(blurred, photo).item() == pytest.approx(direct, rel=1e-9)


def test_messages_print_user_input_as_typed_never_as_markup(run_cli, tmp_path):
    """Rich markup in an image name or a folder name is text, in errors and in results."""
    tiny = ["depth", "--model", "resnet10", "--size", "32", "--iterations", "2", "--layers",
            "conv1", "--judge", "none"]  # fmt: skip
    code, _, err = run_cli(*tiny, "--image", "[/x].png", "--out", str(tmp_path / "a"))
    assert code == 2 and "image '[/x].png' not found" in err and "Traceback" not in err
    out = tmp_path / "runs[bold]"
    code, text, err = run_cli(*tiny, "--out", str(out))
    assert code == 0, err
    assert f"results: {out}" in text.replace("\n", "")


def test_a_full_disk_is_one_line_and_resume_completes_once_space_is_freed(
    run_cli, tmp_path, monkeypatch
):
    import errno

    from layerscope.results import TargetResult

    real, calls = TargetResult.save, []

    def save(self, directory):
        calls.append(self.layer)
        if len(calls) == 2:  # the disk fills up while the second target is written
            raise OSError(errno.ENOSPC, "No space left on device", str(directory))
        return real(self, directory)

    monkeypatch.setattr(TargetResult, "save", save)
    out = tmp_path / "run"
    args = ["depth", "--model", "resnet10", "--size", "32", "--iterations", "3", "--layers",
            "conv1,layer1", "--judge", "none", "--batching", "per-layer"]  # fmt: skip
    code, _, err = run_cli(*args, "--out", str(out))
    assert code == 2 and "no space left on the device" in err and "--resume" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert len(list(out.glob("targets/*/result.json"))) == 1  # the first target is kept
    monkeypatch.setattr(TargetResult, "save", real)
    code, _, err = run_cli("depth", "--out", str(out), "--resume")
    assert code == 0, err
    assert len(list(out.glob("targets/*/result.json"))) == 2


def test_a_malformed_fault_hook_is_one_line(run_cli, tmp_path, monkeypatch):
    monkeypatch.setenv("LAYERSCOPE_FAULT", "target-saved:one")
    args = ["--size", "32", "--iterations", "2", "--layers", "conv1", "--judge", "none"]
    code, _, err = run_cli("depth", "--model", "resnet10", *args, "--out", str(tmp_path / "r"))
    assert code == 2 and "is not POINT:N:SIGNAL" in err and "Traceback" not in err
