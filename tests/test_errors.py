"""Bad inputs a user may meet (README, "When something is wrong"): each is one line on stderr
that names the problem and the fix, exit code 2, no traceback, and no run directory left
behind to block the next attempt."""

import json
import struct
import zlib

import pytest
import torch
from PIL import Image

import layerscope as ls

D = ["depth", "--model", "resnet10", "--size", "32", "--iterations", "2", "--layers", "conv1"]
T = ["train", "--model", "smallcnn", "--size", "16", "--epochs", "1", "--batch-size", "8"]
G = ["generate", "--model", "resnet10", "--size", "16", "--iterations", "2", "--class", "0"]
M = ["merge", "--student", "resnet10", "--teacher", "resnet10", "--size", "16", "--steps", "2"]
S = ["similarity", "--model-a", "resnet10", "--size", "16", "--n", "16", "--batch-size", "8"]


def _bomb(path):
    """A PNG header claiming 20,000 × 20,000 pixels (PIL refuses it before decoding)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", 20000, 20000, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b""))


def _folder_with_a_corrupt_image(root):
    for label in ("a", "b"):
        (root / label).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (20, 20), (40 * i, 80, 120)).save(root / label / f"{i}.png")
    (root / "b" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")


CASES = {
    "iterations 0": ([*D, "--iterations", "0"], "--iterations must be at least 1"),
    "iterations -1": ([*D, "--iterations", "-1"], "--iterations must be at least 1"),
    "record-every 0": ([*D, "--record-every", "0"], "--record-every must be at least 1"),
    "unknown step": ([*D, "--step", "sgd"], "--step must be one of"),
    "unknown loss": ([*D, "--loss", "l2"], "--loss must be sum, mean or relative"),
    "unknown batching": ([*D, "--batching", "x"], "--batching must be"),
    "unknown normalize": (
        [*D, "--normalize", "x"],
        "--normalize must be one of none, imagenet, inception",
    ),
    "even blur kernel": ([*D, "--blur-kernel", "4"], "--blur-kernel must be an odd number"),
    "zero sigma": ([*D, "--sigma", "0,0"], "--no-blur"),
    "negative lr": ([*D, "--lr", "-0.1"], "--lr must be positive"),
    "jitter 0": ([*D, "--jitter", "0"], "--jitter is a crop side"),
    "jitter > image": ([*D, "--jitter", "40"], "larger than the 32×32 image"),
    "size 0": ([*D, "--size", "0"], "--size 0 is too small"),
    "size 1": ([*D, "--size", "1"], "--size 1 is too small"),
    "fixed-size model": (
        [*D, "--model", "vit_b_16", "--size", "64", "--layers", "conv_proj"],
        "use --size 224",
    ),
    "image is a directory": ([*D, "--image", "{tmp}"], "is a directory"),
    "decompression bomb": ([*D, "--image", "{tmp}/bomb.png"], "too large to decode"),
    "out is a file": ([*D, "--out", "{tmp}/bomb.png"], "is a file"),
    "out holds other files": ([*D, "--out", "{tmp}/mine"], "holds no layerscope run"),
    "resume nothing": ([*D, "--resume"], "nothing to resume"),
    "train out holds other files": ([*T, "--out", "{tmp}/mine"], "holds no layerscope run"),
    "similarity out holds other files": ([*S, "--out", "{tmp}/mine"], "holds no layerscope run"),
    "ablate out holds other files": (
        ["ablate", "--weights", "x.safetensors", "--out", "{tmp}/mine"],
        "holds no layerscope run",
    ),
    "unbalanced quotes": ([*D, "--image", '"chelsea'], "unbalanced double quotes"),
    "train lr -1": ([*T, "--lr", "-1"], "--lr must be a positive number"),
    "train n 0": ([*T, "--data", "noise", "--n", "0"], "--n must be at least 1"),
    "train empty folder": ([*T, "--data", "folder:{tmp}/empty"], "holds no images"),
    "train corrupt image in folder": ([*T, "--data", "folder:{tmp}/set"], "b/bad.png"),
    "train resume nothing": ([*T, "--resume"], "nothing to resume"),
    "ablate weights none": (
        ["ablate", "--weights", "none"],
        "--weights none is not a checkpoint",
    ),
    "train diverges": (
        [
            *T,
            "--data",
            "noise",
            "--n",
            "16",
            "--batch-size",
            "16",
            "--num-classes",
            "4",
            "--noise-classes",
            "4",
            "--optimizer",
            "sgd",
            "--lr",
            "1e38",
        ],
        "diverged at epoch 1 (",
    ),
    "train head smaller than the labels": ([*T, "--num-classes", "3"], "fewer than the 12"),
    "merge diverges": ([*M, "--lr", "1e6", "--iterations", "2"], "diverged at step 2 (rss"),
    "train num classes 0": ([*T, "--num-classes", "0"], "--num-classes must be at least 1"),
    "train size 4": ([*T, "--size", "4"], "--size must be at least 8"),
    "ablate orders 0": (["ablate", "--weights", "x.safetensors", "--orders", "0"], "--orders"),
    "ablate points 0": (["ablate", "--weights", "x.safetensors", "--points", "0"], "--points"),
    "ablate n 0": (["ablate", "--weights", "x.safetensors", "--n", "0"], "--n must be"),
    "similarity cka batch 3": ([*S, "--batch-size", "3"], "CKA needs --batch-size ≥ 4"),
    "similarity sizes": ([*S, "--model-b", "vit_b_16"], "use --size 224"),
    "generate combined one model": ([*G, "--mode", "combined"], "needs at least two models"),
    "generate difference three": (
        [*G, "--model", "resnet10,smallcnn,resnet18", "--mode", "difference"],
        "needs exactly two models",
    ),
    "generate class index": ([*G, "--class", "2000"], "not a class of this model; valid: 0..999"),
    "generate class name": ([*G, "--class", "tench"], "not a class name"),
    "generate preset": ([*G, "--preset", "x"], "unknown --preset 'x'"),
    "generate weights count": ([*G, "--weights", "none,none"], "give one per model"),
    "generate mode": ([*G, "--mode", "x"], "--mode must be one of"),
    "generate step": ([*G, "--step", "sgd"], "--step must be one of"),
    "generate bn prior -1": ([*G, "--bn-prior", "-1"], "--bn-prior must be at least 0"),
    "generate bn prior without BatchNorm": (
        [*G, "--model", "mlp:8", "--bn-prior", "0.1"],
        "needs a model with BatchNorm2d",
    ),
    "generate vector without target model": (
        [*G, "--target-from-image", "generated"],
        "needs --target-model",
    ),
    "generate missing target image": ([*G, "--target-from-image", "/nonexistent.png"], "not found"),
    "generate out holds other files": ([*G, "--out", "{tmp}/mine"], "holds no layerscope run"),
    "merge steps 0": ([*M, "--steps", "0"], "--steps must be at least 1"),
    "merge lr": ([*M, "--lr", "-1"], "--lr must be positive"),
    "merge images": ([*M, "--images", "{tmp}/nowhere"], "nor a folder"),
    "merge output sizes": (
        [*M, "--teacher", "smallcnn", "--student", "resnet10", "--images", "{tmp}/mine"],
        "same classes",
    ),
}


@pytest.mark.parametrize(("args", "needle"), list(CASES.values()), ids=list(CASES))
def test_bad_input_is_one_clear_line_and_leaves_nothing(run_cli, tmp_path, args, needle):
    _bomb(tmp_path / "bomb.png")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine")
    (tmp_path / "empty").mkdir()
    _folder_with_a_corrupt_image(tmp_path / "set")
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    if "--out" not in args:
        args += ["--out", str(tmp_path / "run")]
    code, _, err = run_cli(*args)
    assert code == 2, err
    assert needle in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "run").exists()
    assert (tmp_path / "mine" / "notes.txt").read_text() == "mine"


def _tiny_run(run_cli, out) -> None:
    code, _, err = run_cli(*D, "--out", str(out))
    assert code == 0, err


def test_corrupt_run_files_are_named(run_cli, tmp_path):
    out = tmp_path / "run"
    _tiny_run(run_cli, out)
    result = next(out.glob("targets/*/result.json"))
    result.write_text("{not json")
    code, _, err = run_cli("report", str(out))
    assert code == 2 and str(result) in err and "corrupt" in err
    (out / "config.json").write_text("")
    code, _, err = run_cli(*D, "--out", str(out), "--resume")
    assert code == 2 and "config.json is corrupt" in err


def test_a_failed_run_leaves_no_directory_that_blocks_the_next(run_cli, tmp_path, monkeypatch):
    monkeypatch.setenv("LAYERSCOPE_FAULT", "batch-start:1:raise")  # fails before any result
    out = tmp_path / "run"
    code, _, err = run_cli(*D, "--out", str(out))
    assert code == 2 and "fault injected at batch-start" in err
    assert not out.exists()
    mine = tmp_path / "mine"  # the user's own empty folder is kept, and left empty
    mine.mkdir()
    code, _, err = run_cli(*D, "--out", str(mine))
    assert code == 2 and mine.is_dir() and not any(mine.iterdir())
    monkeypatch.delenv("LAYERSCOPE_FAULT")
    assert run_cli(*D, "--out", str(out))[0] == 0  # nothing blocks the retry


def test_resume_refuses_options_that_differ_and_keeps_the_stored_ones(run_cli, tmp_path):
    out = tmp_path / "run"
    _tiny_run(run_cli, out)
    code, _, err = run_cli(*D, "--iterations", "5", "--out", str(out), "--resume")
    assert code == 2 and "--iterations (5 ≠ stored 2)" in err
    # the same values typed again, or nothing at all, are fine
    assert run_cli(*D, "--out", str(out), "--resume")[0] == 0
    assert run_cli("depth", "--out", str(out), "--resume")[0] == 0


def test_train_resume_keeps_the_stored_epochs_and_records_an_extension(run_cli, tmp_path):
    out = tmp_path / "t"
    args = ["train", "--model", "smallcnn", "--data", "noise", "--size", "16", "--n", "16"]
    args += ["--batch-size", "8", "--num-classes", "4", "--noise-classes", "4"]
    assert run_cli(*args, "--epochs", "1", "--out", str(out))[0] == 0
    assert run_cli("train", "--out", str(out), "--resume")[0] == 0
    assert not (out / "checkpoints" / "epoch_002.safetensors").exists()  # not trained to 20
    code, _, err = run_cli("train", "--out", str(out), "--resume", "--lr", "1")
    assert code == 2 and "--lr" in err
    assert run_cli("train", "--out", str(out), "--resume", "--epochs", "2")[0] == 0
    meta = json.loads((out / "config.json").read_text())
    # config.json says what the run now is (2 epochs) and the resume records the change
    assert meta["study"]["epochs"] == 2 and meta["resumed"][-1]["epochs"] == [1, 2]
    assert (out / "checkpoints" / "epoch_002.safetensors").is_file()


def test_similarity_and_ablate_do_not_offer_a_resume_they_lack(run_cli, tmp_path):
    out = tmp_path / "s"
    assert run_cli(*S, "--layers", "conv1", "--out", str(out))[0] == 0
    code, _, err = run_cli(*S, "--layers", "conv1", "--out", str(out))
    assert code == 2 and "cannot be resumed" in err and "pass --resume" not in err


def test_names_with_commas_in_quotes_and_names_that_slug_alike(run_cli, tmp_path):
    img = ls.load_image("chelsea", 32)
    names = [tmp_path / "a,b.png", tmp_path / "p q.png", tmp_path / "p-q.png"]
    for k, path in enumerate(names):
        ls.images.save_image((img * (0.5 + 0.2 * k)).clamp(0, 1), path)
    out = tmp_path / "run"
    quoted = ",".join(f'"{p}"' for p in names)
    code, _, err = run_cli(*D, "--image", quoted, "--out", str(out))
    assert code == 0, err
    rows = ls.tables.read_csv(out / "summary.csv")
    assert sorted(r["image"] for r in rows) == sorted(str(p) for p in names)
    assert len(list(out.glob("targets/*/result.json"))) == 3


def test_api_refuses_8_bit_pixel_values_and_integer_images(tiny):
    img = ls.load_image("chelsea", 32)
    with pytest.raises(ls.ImageError, match="divide by 255"):
        ls.invert(tiny, img * 255, ["conv1"], iterations=1)
    with pytest.raises(ls.ImageError, match="float"):
        ls.invert(tiny, (img * 255).to(torch.uint8), ["conv1"], iterations=1)


def test_a_descent_that_moves_away_from_its_target_is_not_reported_ok(tiny):
    """--step gradient --lr 100 moves away without a NaN: m_g ends far above where it began;
    --lr 1e9 takes pixels beyond ±1e4 at the first step, where the finiteness policy stops
    the row and keeps its last good input."""
    img = ls.load_image("chelsea", 32)
    cfg = ls.InversionConfig(iterations=5, record_every=5, step="gradient", blur=None)
    t = ls.invert(tiny, img, ["layer1"], config=cfg, lr=ls.Schedule(100, 100))["layer1"]
    assert t.final["embedding_distance"] > 100 * t.curve[0]["embedding_distance"]
    assert t.status == "diverged" and "lower --lr" in t.message and "m_g rose" in t.message
    t = ls.invert(tiny, img, ["layer1"], config=cfg, lr=ls.Schedule(1e9, 1e9))["layer1"]
    assert t.status == "diverged" and "exceeded ±10000 at iteration 0 (lr 1e+09)" in t.message
    assert float(t.reconstruction.abs().max()) < 2  # the input before the step that blew up
    # barely moving, against a reference shift of σ′ = 1/1000: m_g stays ~200× m_r
    stuck = ls.invert(
        tiny, img, ["layer1"], config=cfg, lr=ls.Schedule(1e-12, 1e-12), reference_sigma=1e-3
    )["layer1"]
    assert stuck.status == "not converged" and "× m_r" in stuck.message


def test_a_head_only_mismatch_points_to_num_classes_which_depth_has(run_cli, tmp_path):
    net = ls.load_model("smallcnn", num_classes=4).net
    torch.save(net.state_dict(), tmp_path / "four.pt")  # no sidecar
    args = ["depth", "--model", "smallcnn", "--weights", str(tmp_path / "four.pt"), "--size"]
    args += ["16", "--iterations", "1", "--layers", "conv1"]
    code, _, err = run_cli(*args, "--out", str(tmp_path / "a"))
    assert code == 2 and "--num-classes" in err and "shape mismatch" in err
    code, _, err = run_cli(*args, "--num-classes", "4", "--out", str(tmp_path / "b"))
    assert code == 0, err


def test_an_extended_train_run_interrupted_then_resumed_reaches_the_new_epochs(
    run_cli, tmp_path, monkeypatch
):
    """train --resume --epochs 3 on a 1-epoch run, Ctrl-C during epoch 3, then --resume with
    no options: it trains to 3 (the extension is the run's config now), not back to 1."""
    import signal

    out = tmp_path / "t"
    args = ["train", "--model", "smallcnn", "--data", "noise", "--size", "16", "--n", "16"]
    args += ["--batch-size", "8", "--num-classes", "4", "--noise-classes", "4"]
    assert run_cli(*args, "--epochs", "1", "--out", str(out))[0] == 0
    monkeypatch.setenv("LAYERSCOPE_FAULT", "checkpoint-written:2:SIGINT")  # in epoch 3
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        code, _, err = run_cli("train", "--out", str(out), "--resume", "--epochs", "3")
    finally:
        signal.signal(signal.SIGINT, old)
    assert code == 130 and "epochs 1–2 of 3 saved" in err, err
    monkeypatch.delenv("LAYERSCOPE_FAULT")
    assert run_cli("train", "--out", str(out), "--resume")[0] == 0
    assert [r["epoch"] for r in ls.tables.read_csv(out / "metrics.csv")] == [1, 2, 3]
    assert json.loads((out / "config.json").read_text())["study"]["epochs"] == 3


def test_the_listing_commands_refuse_bad_input_in_one_line(run_cli):
    code, _, err = run_cli("models", "--family", "bogus")
    assert code == 2 and "unknown --family 'bogus': choose from all, torchvision" in err
    code, _, err = run_cli("layers", "resnet10", "--size", "-4")
    assert code == 2 and "--size must be at least 8 pixels, not -4" in err


def test_one_input_guard_at_every_api_entry_point(tiny):
    """ls.invert, ls.activations, ls.merge: 8-bit values, integer images, normalised images
    and NaN are refused in one line naming the fix; class_scores refuses a bare tensor."""
    img = ls.load_image("chelsea", 32)
    normalised = img * 2 - 1  # [-1, 1]
    for call in (
        lambda x: ls.invert(tiny, x, ["conv1"], iterations=1),
        lambda x: ls.activations(tiny, x, ["conv1"]),
        lambda x: ls.merge(tiny, tiny, x, steps=1),
    ):
        with pytest.raises(ls.ImageError, match="divide by 255"):
            call(img * 255)
        with pytest.raises(ls.ImageError, match="float pixels"):
            call((img * 255).to(torch.uint8))
        with pytest.raises(ls.ImageError, match="normalisation inside the model"):
            call(normalised)
        with pytest.raises(ls.ImageError, match="NaN"):
            call(img * float("nan"))
    with pytest.raises(ls.ConfigError, match="GeneratedImage results"):
        ls.class_scores([tiny], img)


def test_invert_takes_a_step_size_as_a_pair_or_a_number(tiny, image32):
    pair = ls.invert(tiny, image32, ["conv1"], iterations=2, lr=(0.1, 0.01))
    assert pair.config.lr == ls.Schedule(0.1, 0.01)
    assert ls.InversionConfig(lr=0.05).lr == ls.Schedule(0.05, 0.05)
    with pytest.raises(ls.ConfigError, match="lr takes a Schedule"):
        ls.InversionConfig(lr="fast")


def test_a_damaged_result_file_is_named_in_one_line_and_resume_redoes_it(run_cli, tmp_path):
    out = tmp_path / "run"
    _tiny_run(run_cli, out)
    (target,) = out.glob("targets/*/reconstruction.safetensors")
    target.write_bytes(target.read_bytes()[:40])  # truncated by a full disk, say
    code, _, err = run_cli("report", str(out))
    assert code == 2 and f"{target} is damaged" in err and "--resume" in err
    assert len(err.strip().splitlines()) == 1
    import shutil

    shutil.rmtree(target.parent)  # what the message says to do
    assert run_cli(*D, "--out", str(out), "--resume")[0] == 0
    assert target.is_file() and run_cli("report", str(out))[0] == 0


def test_a_generation_that_blows_up_without_a_nan_is_diverged_and_not_scored(run_cli, tmp_path):
    """--step gradient --term-weights 1e12 took pixels to ±1.7e8, reported ``ok`` and scored:
    the one finiteness policy (finite.py) ends a row whose input leaves ±1e4 as well."""
    out = tmp_path / "g"
    code, text, err = run_cli(*G, "--step", "gradient", "--term-weights", "1e12", "--out", str(out))
    assert code == 0, err
    assert "diverged, not scored" in text and "exceeded ±10000 at octave 1" in text
    result = json.loads(next((out / "images").glob("*/result.json")).read_text())
    assert result["status"] == "diverged"
    assert not (out / "scores.csv").exists()  # nothing of it is scored


def test_the_finiteness_policy_names_the_first_bad_value_and_bounds_inputs():
    """The one policy of every loop that steps (finite.py), checked against hand-made values:
    a row is good only when its loss is finite and every input value within ±1e4."""
    from layerscope.finite import INPUT_LIMIT, Diverged, check_finite, rows_ok

    x = torch.zeros(5, 2, 3)
    x[1, 0, 0] = float("nan")
    x[2, 1, 2] = float("inf")
    x[3, 0, 1] = -2 * INPUT_LIMIT
    losses = torch.tensor([0.0, 0.0, 0.0, 0.0, float("nan")])
    assert rows_ok(losses, x).tolist() == [True, False, False, False, False]
    x[3, 0, 1] = -INPUT_LIMIT  # the bound itself is allowed
    assert rows_ok(losses, x).tolist()[3]
    net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2))
    check_finite("step 1", "fix", net=net, loss=1.0, rss=[1.0, 2.0], t=torch.ones(2))
    with torch.no_grad():
        net[1].bias[0] = float("inf")
    with pytest.raises(Diverged, match=r"^diverged at step 3 \(parameter 1.bias became"):
        check_finite("step 3", "lower --lr", loss=1.0, net=net)
    with pytest.raises(Diverged, match=r"^diverged at epoch 2 \(test_loss became nan\): fix$"):
        check_finite("epoch 2", "fix", train_loss=1.0, test_loss=float("nan"))
    with pytest.raises(Diverged, match=r"rss became non-finite"):
        check_finite("step 2", "fix", rss=[1.0, float("inf")])
    assert Diverged.status == "diverged" and issubclass(Diverged, ls.LayerscopeError)


CANNOT_FIT = {  # sizes beyond any machine's memory (petabytes), refused before any work
    "depth size": (["depth", "--model", "resnet10", "--size", "3000000"], "one descent at"),
    "depth restarts": ([*D, "--restarts", "1000000000000"], "keeping 1,000,000,000,000 recon"),
    "generate copies": ([*G, "--copies", "1000000000000"], "copies of each class image"),
    "sensitivity cut": (["sensitivity", "--cut", "1e9", "--n", "4"], "1,000,000,000 modes"),
    "invertible size": (["study", "invertible", "--size", "2000"], "in float64 needs about"),
}


@pytest.mark.parametrize("case", CANNOT_FIT, ids=list(CANNOT_FIT))
def test_work_that_cannot_fit_is_refused_up_front_with_the_estimate(case, run_cli, tmp_path):
    """depth --restarts 1000000 ran for minutes, sensitivity --cut 1e9 was killed by the
    kernel: each is refused in one line with the memory estimate and the option to lower."""
    args, needle = CANNOT_FIT[case]
    out = tmp_path / "run"
    code, _, err = run_cli(*args, "--out", str(out))
    assert code == 2 and needle in err, err
    assert "of memory (estimate), more than the" in err and err.count("\n") == 1
    assert not out.exists()


def test_the_descent_engine_refuses_a_row_that_cannot_fit_and_chunks_a_batch(tiny, monkeypatch):
    """The engine's estimate (activations up to the deepest target, scaled from a probe) is
    held against the machine's memory: with the memory made small, one row is refused; with
    room for two rows, four targets on the CPU run in chunks of two and give the same results."""
    from layerscope import device, inversion

    image = ls.load_image("chelsea", 32)
    layers = ["conv1", "layer1", "layer2", "layer3"]
    whole = ls.invert(tiny, image, layers, iterations=3, batching="staged")
    row = inversion.row_bytes(tiny, (32, 32), ["layer3"])
    assert row > 4 * 3 * 32 * 32 * 4  # the activations count, not only the input
    monkeypatch.setattr(device, "memory_of", lambda d="cpu": int(row / 2))
    with pytest.raises(ls.ConfigError, match=r"^one descent at 32×32 .* more than the 0\.0 GB"):
        ls.invert(tiny, image, layers, iterations=3)
    monkeypatch.setattr(device, "memory_of", lambda d="cpu": int(row * 4.5))
    monkeypatch.setattr(inversion, "memory_of", device.memory_of)
    seen = []

    def watch(chunk, *args):
        seen.append(len(chunk))
        return inversion.descend_batch(chunk, *args)

    jobs = [inversion.Job(tiny, image, "image", layer) for layer in layers]
    config = ls.InversionConfig(iterations=3, batching="staged")
    chunked = inversion.invert_jobs(jobs, config, run_batch=watch)
    assert seen == [2, 2]
    for t in chunked:  # the same descents (a batch's size changes float32 kernels' rounding)
        torch.testing.assert_close(t.reconstruction, whole[t.layer].reconstruction,
                                   atol=1e-3, rtol=0)  # fmt: skip
