"""Interruptions and crashes in a real subprocess, stopped by a real signal at a chosen point
(``layerscope.faults``): what is left on disk, what the user is told, and that ``--resume``
then gives exactly what an uninterrupted run gives."""

import os
import signal
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from layerscope.tables import read_csv

pytestmark = pytest.mark.faults

DEPTH = ["depth", "--model", "resnet10", "--image", "chelsea", "--size", "32"]
DEPTH += ["--iterations", "30", "--record-every", "10", "--layers", "conv1,layer1,layer3"]
TRAIN = ["train", "--model", "smallcnn", "--data", "noise", "--size", "16", "--n", "48"]
TRAIN += ["--noise-classes", "4", "--num-classes", "4", "--batch-size", "16", "--lr", "3e-3"]


def _default_signals() -> None:
    """In the child, before Python starts: SIGINT and SIGTERM as a terminal gives them. A parent
    that ignores SIGINT (``make test &``, ``nohup``, some CI runners) passes SIG_IGN on, and a
    Python started with SIGINT ignored never raises KeyboardInterrupt: the test would then
    measure the parent's disposition, not layerscope."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)


def _layerscope(*args: str, fault: str | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="2", LAYERSCOPE_FAULT=fault or "")
    return subprocess.run(
        [sys.executable, "-m", "layerscope", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        preexec_fn=_default_signals,
    )


def _here(*args: str) -> subprocess.CompletedProcess:
    """``layerscope ARGS`` in this process: the uninterrupted references and the resumes
    need no real signal, and each process spends ~9 s importing torch and torchvision."""
    import contextlib
    import io

    from layerscope import cli

    out, err, argv = io.StringIO(), io.StringIO(), sys.argv
    sys.argv = ["layerscope", *args]
    code = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            cli.main()
    except SystemExit as exc:
        code = exc.code or 0
    finally:
        sys.argv = argv
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


def _reconstructions(run):
    return {
        d.name: load_file(str(d / "reconstruction.safetensors"))["reconstruction"]
        for d in sorted((run / "targets").iterdir())
    }


@pytest.fixture(scope="module")
def full_depth(tmp_path_factory):
    """The uninterrupted depth run the interrupted ones are compared with (made once)."""
    full = tmp_path_factory.mktemp("faults") / "full"
    assert _here(*DEPTH, "--out", str(full)).returncode == 0
    return full


@pytest.fixture(scope="module")
def full_train(tmp_path_factory):
    full = tmp_path_factory.mktemp("faults") / "train"
    assert _here(*TRAIN, "--epochs", "3", "--out", str(full)).returncode == 0
    return full


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_ctrl_c_keeps_finished_targets_and_resume_equals_an_uninterrupted_run(
    tmp_path, full_depth, sig
):
    """Ctrl-C (SIGINT), or SIGTERM from a scheduler or ``kill``, after the first target: what
    was finished is kept, one line says so, and ``--resume`` ends where an uninterrupted run
    ends. Before BatchNorm was folded per batch, conv1 (a target with a BatchNorm after it)
    stayed unfolded for every target of the first attempt and was folded on resume, so the
    resumed layer1 and layer3 ended 1e-3 away after 20 steps. Now equal to the last bit."""
    full, part = full_depth, tmp_path / "part"
    cut = _layerscope(*DEPTH, "--out", str(part), fault=f"target-saved:1:{sig}")
    assert cut.returncode == 130, cut.stderr
    assert "interrupted: 1 of 3 targets saved" in cut.stderr and "--resume" in cut.stderr
    assert "Traceback" not in cut.stderr
    assert len(list(part.glob("targets/*/result.json"))) == 1
    assert not (part / ".layerscope.lock").exists()
    again = _here(*DEPTH, "--out", str(part), "--resume")
    assert again.returncode == 0, again.stderr
    a, b = _reconstructions(full), _reconstructions(part)
    assert a.keys() == b.keys() and len(a) == 3
    for key in a:
        assert torch.equal(a[key], b[key]), key
    ra, rb = read_csv(full / "metrics.csv"), read_csv(part / "metrics.csv")
    assert [r["embedding_distance"] for r in ra] == [r["embedding_distance"] for r in rb]


@pytest.mark.parametrize("epoch", [1, 2])
def test_a_kill_between_checkpoint_and_resume_state_is_redone_on_resume(
    tmp_path, full_train, epoch
):
    """SIGKILL right after epoch N's weights are written, before its resume state: resume
    says so in one line, redoes epoch N (not twice, not from a mismatched state) and ends
    where an uninterrupted run ends, bit for bit."""
    full, part = full_train, tmp_path / "part"
    killed = _layerscope(
        *TRAIN, "--epochs", "3", "--out", str(part), fault=f"checkpoint-written:{epoch}:SIGKILL"
    )
    assert killed.returncode == -signal.SIGKILL
    assert (part / "checkpoints" / f"epoch_{epoch:03d}.safetensors").is_file()  # the orphan
    again = _here("train", "--out", str(part), "--resume")
    assert again.returncode == 0, again.stderr
    assert f"epoch_{epoch:03d}.safetensors had no saved resume state" in again.stderr
    assert not list(part.rglob("*.tmp"))
    rows = read_csv(part / "metrics.csv")
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    for name in ("epoch_001", "epoch_003"):
        a = load_file(str(full / "checkpoints" / f"{name}.safetensors"))
        b = load_file(str(part / "checkpoints" / f"{name}.safetensors"))
        assert all(torch.equal(a[k], b[k]) for k in a), name


GENERATE = ["generate", "--model", "resnet10", "--size", "16", "--iterations", "8"]
GENERATE += ["--class", "0,1", "--copies", "2", "--bn-prior", "0.01"]


def _images(run):
    return {
        d.name: load_file(str(d / "image.safetensors"))["image"]
        for d in sorted((run / "images").iterdir())
    }


def test_a_resumed_generate_with_the_batchnorm_prior_equals_an_uninterrupted_one(tmp_path):
    """The BatchNorm prior couples the rows of a batch (its statistics): a resumed run made
    only the missing classes, in a smaller batch, and its images differed by 0.10. Chunks now
    come from the config alone and a chunk with an image missing is redone whole."""
    full, part = tmp_path / "full", tmp_path / "part"
    assert _here(*GENERATE, "--out", str(full)).returncode == 0
    cut = _layerscope(*GENERATE, "--out", str(part), fault="image-saved:2:SIGTERM")
    assert cut.returncode == 130, cut.stderr
    assert "interrupted: 2 images saved" in cut.stderr and "Traceback" not in cut.stderr
    resumed = _here(*GENERATE, "--out", str(part), "--resume")
    assert resumed.returncode == 0, resumed.stderr
    a, b = _images(full), _images(part)
    assert sorted(a) == sorted(b) and len(a) == 4
    for key in a:
        assert torch.equal(a[key], b[key]), key
    again = tmp_path / "again"  # and a repeated run gives the same bits
    assert _here(*GENERATE, "--out", str(again)).returncode == 0
    assert all(torch.equal(a[k], v) for k, v in _images(again).items())


EFFECT = ["study", "training-effect", "--model", "resnet10", "--weights", "none", "--size", "32"]
EFFECT += ["--iterations", "6", "--layers", "conv1,layer2"]


def test_an_interrupted_training_effect_study_resumes_to_the_same_reconstructions(tmp_path):
    """SIGTERM in its second depth run (the one without blur): the first run and the saved
    target are kept, and --resume ends where an uninterrupted study ends."""
    full, part = tmp_path / "full", tmp_path / "part"
    assert _here(*EFFECT, "--out", str(full)).returncode == 0
    # blur: 4 targets (two images × two layers), then noblur's first
    cut = _layerscope(*EFFECT, "--out", str(part), fault="target-saved:5:SIGTERM")
    assert cut.returncode == 130, cut.stderr
    assert "--resume" in cut.stderr and "Traceback" not in cut.stderr
    assert (part / "blur" / "report.html").is_file() and not (part / "noblur/report.html").exists()
    resumed = _here(*EFFECT, "--out", str(part), "--resume")
    assert resumed.returncode == 0, resumed.stderr
    for sub in ("blur", "noblur"):
        a, b = _reconstructions(full / sub), _reconstructions(part / sub)
        assert sorted(a) == sorted(b) and len(a) == 4
        for key in a:
            assert torch.equal(a[key], b[key]), (sub, key)


def test_a_terminated_lose_spatial_info_study_is_kept_and_resumes(tmp_path):
    """SIGTERM in the first net's second epoch (a real signal to a real process): the study's
    directory stays (it was deleted whole while the message pointed inside it) and --resume
    finishes it from the saved epoch."""
    out = tmp_path / "lsi"
    args = ["study", "lose-spatial-info", "--nets", "smallcnn@twopoints", "--epochs", "2"]
    args += ["--n-train", "64", "--n", "8", "--out", str(out)]
    cut = _layerscope(*args, fault="checkpoint-written:2:SIGTERM")
    assert cut.returncode == 130, cut.stderr
    assert "0 of 1 nets finished" in cut.stderr and f"--resume --out {out}" in cut.stderr
    ckpts = out / "train" / "smallcnn-twopoints" / "checkpoints"
    assert (ckpts / "epoch_001.safetensors").is_file()
    resumed = _here("study", "lose-spatial-info", "--out", str(out), "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert (ckpts / "epoch_002.safetensors").is_file() and (out / "summary.csv").is_file()


def test_a_second_process_on_the_same_out_is_refused_while_the_first_runs(tmp_path):
    """Two depth runs started at once into one --out both exited 0, with one's config and the
    other's results: the lifecycle's lock refuses the second real process, which leaves the
    first's files alone; once the first has stopped, --resume continues it."""
    import time

    out = tmp_path / "r"
    slow = [*DEPTH[:-1], "conv1", "--iterations", "100000", "--out", str(out)]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    first = subprocess.Popen(
        [sys.executable, "-m", "layerscope", *slow], env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=_default_signals,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not (out / "config.json").is_file() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert (out / "config.json").is_file(), first.stderr
        stored = (out / "config.json").read_text()
        other = [*DEPTH[:-1], "layer1", "--iterations", "2", "--out", str(out)]
        for args in (other, [*other, "--resume"]):
            second = _here(*args)
            assert second.returncode == 2 and "in use by a running layerscope" in second.stderr
        assert (out / "config.json").read_text() == stored  # the first run's, intact
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=60)
    assert first.returncode == 130
