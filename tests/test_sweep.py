"""Sweeps on a local Ray (2 CPUs, a temporary home, one Ray for the whole session): cells
equal to the same runs made by hand, re-runs that do nothing, a killed worker retried, a
failing cell that fails alone, the sweep's site in the browser."""

from __future__ import annotations

import os
import signal
import tempfile
import threading
import time
from pathlib import Path

import pytest
import torch

import layerscope as ls
from browser import check_site
from layerscope.sweep import Grid, load_grid, sweep
from layerscope.tables import read_csv

TINY = {"model": "resnet10", "size": 32, "iterations": 4, "layers": "conv1,layer2"}


@pytest.fixture(scope="session")
def local_ray(tmp_path_factory):
    ray = pytest.importorskip("ray")
    home = tmp_path_factory.mktemp("home")
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # Ray's sockets need a short path
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HOME", str(home))
        mp.setenv("RAY_AUTH_MODE", "disabled")
        mp.setenv("RAY_USAGE_STATS_ENABLED", "0")
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _temp_dir=temp,
                 logging_level="ERROR")  # fmt: skip
        try:
            yield ray
        finally:
            ray.shutdown()


def _by_hand(tmp_path: Path, options: dict) -> Path:
    """The same run made in this process, one thread like a cell of one CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        name = "-".join(f"{k}{v}" for k, v in sorted(options.items()))
        return ls.run_study("depth", out=tmp_path / "hand" / name, **{**TINY, **options})
    finally:
        torch.set_num_threads(threads)


def _same_results(a: Path, b: Path) -> None:
    files = sorted(p.relative_to(a) for p in a.glob("targets/*/reconstruction.safetensors"))
    assert files and files == sorted(
        p.relative_to(b) for p in b.glob("targets/*/reconstruction.safetensors")
    )
    for f in files:
        assert (a / f).read_bytes() == (b / f).read_bytes(), f  # bit for bit
    ra, rb = read_csv(a / "metrics.csv"), read_csv(b / "metrics.csv")
    assert [r["embedding_distance"] for r in ra] == [r["embedding_distance"] for r in rb]


def test_a_grid_equals_the_same_runs_made_by_hand_and_a_rerun_does_nothing(
    local_ray, tmp_path, capsys
):
    grid = Grid("depth", TINY, {"image": ["chelsea", "coffee"], "seed": [0, 1]})
    table = sweep(grid, tmp_path / "sweep")
    rows = read_csv(table)
    assert len(rows) == 4 and {r["status"] for r in rows} == {"finished"}
    assert {(r["image"], r["seed"]) for r in rows} == {
        ("chelsea", 0), ("chelsea", 1), ("coffee", 0), ("coffee", 1)
    }  # fmt: skip
    assert all("median m_g/m_r" in r for r in rows)  # the study's summary numbers
    for r in rows:
        hand = _by_hand(tmp_path, {"image": r["image"], "seed": r["seed"]})
        _same_results(Path(r["run"]), hand)
        assert (tmp_path / "sweep" / "logs" / f"{r['cell']}.log").is_file()
    stamps = {r["cell"]: (Path(r["run"]) / "config.json").stat().st_mtime_ns for r in rows}
    capsys.readouterr()
    sweep(grid, tmp_path / "sweep")
    err = capsys.readouterr().err
    assert "4 of 4 cell(s) already finished" in err and "nothing to run" in err
    again = read_csv(table)
    assert [r["cell"] for r in again] == [r["cell"] for r in rows]
    for r in again:
        assert (Path(r["run"]) / "config.json").stat().st_mtime_ns == stamps[r["cell"]]


def test_the_same_cell_in_two_grids_is_one_directory(local_ray, tmp_path):
    """Cells are named by their config's hash: a second grid sharing one cell reuses it."""
    out = tmp_path / "sweep"
    first = read_csv(sweep(Grid("depth", TINY, {"seed": [0]}), out, site=False))
    second = read_csv(sweep(Grid("depth", TINY, {"seed": [0, 1]}), out, site=False))
    assert first[0]["cell"] in {r["cell"] for r in second}
    assert len(list((out / "cells").iterdir())) == 2


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


def test_a_worker_killed_midway_is_retried_and_its_cell_equals_an_uninterrupted_run(
    local_ray, tmp_path
):
    """The worker stops itself after its first saved target (a fault point, once), the test
    kills it with SIGKILL; Ray retries the task and the retry resumes what was saved."""
    out = tmp_path / "sweep"
    once = tmp_path / "stopped-once"
    env = {"LAYERSCOPE_FAULT": "target-saved:1:SIGSTOP", "LAYERSCOPE_FAULT_ONCE": str(once)}
    grid = Grid("depth", TINY, {"seed": [3]})
    done: dict = {}
    worker = threading.Thread(target=lambda: done.update(table=sweep(grid, out, env=env)))
    worker.start()
    deadline, pid = time.time() + 120, None
    while time.time() < deadline and pid is None:
        logs = list((out / "logs").glob("*.log")) if (out / "logs").is_dir() else []
        if logs and once.exists():
            pid = int(logs[0].read_text().split("pid ", 1)[1].split(",", 1)[0])
        time.sleep(0.2)
    assert pid is not None, "the cell never reached its first saved target"
    while _state(pid) not in ("T", "t", "gone") and time.time() < deadline:
        time.sleep(0.1)
    saved = list((out / "cells").glob("*/targets/*/result.json"))
    assert len(saved) == 1  # stopped midway: one target of two on disk
    os.kill(pid, signal.SIGKILL)
    worker.join(timeout=180)
    rows = read_csv(done["table"])
    assert rows[0]["status"] == "finished", rows[0]
    log = (out / "logs" / f"{rows[0]['cell']}.log").read_text()
    assert log.count("cell ") == 2 and "resuming" in log  # two attempts, the second resumed
    _same_results(Path(rows[0]["run"]), _by_hand(tmp_path, {"seed": 3}))


def test_an_invalid_cell_and_a_failing_one_fail_alone(local_ray, tmp_path):
    grid = Grid("depth", TINY, {"iterations": [3, -1]},
                cells=({"image": "/nonexistent.png"},))  # fmt: skip
    rows = read_csv(sweep(grid, tmp_path / "sweep"))
    status = {(r["iterations"], r["image"]): (r["status"], r["error"]) for r in rows}
    assert status[(3, "")][0] == "finished"
    invalid = status[(-1, "")]
    assert invalid[0] == "failed" and "iterations" in invalid[1] and "\n" not in invalid[1]
    missing = status[("", "/nonexistent.png")]
    assert missing[0] == "failed" and "not found" in missing[1], missing


def test_the_sweep_folder_is_one_site_that_passes_the_browser_checks(local_ray, tmp_path):
    out = tmp_path / "sweep"
    sweep(Grid("depth", TINY, {"image": ["chelsea", "rocket"]}), out)
    index = out / "site" / "index.html"
    visited = check_site(index, tmp_path / "shots")
    assert sum(p.startswith("runs/") and p.endswith("/report.html") for p in visited) == 2


def test_the_command_runs_a_grid_file_and_names_a_failed_cell(local_ray, tmp_path, run_cli):
    grid = tmp_path / "grid.toml"
    grid.write_text(
        'study = "depth"\n[config]\nmodel = "resnet10"\nsize = 32\niterations = 3\n'
        'layers = "conv1"\n[axes]\nlayers = ["conv1", "layer9"]\n'
    )
    code, out, err = run_cli("sweep", str(grid), "--out", str(tmp_path / "s"))
    assert code == 0, err
    assert "1 failed, 1 finished" in out and "layer9" in out


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[axes]\nseed = [0]\n", "names no study"),
        ('study = "depth"\n[axes]\nseed = 3\n', "must be a non-empty list"),
        ('study = "depht"\n', "unknown study 'depht'"),
        ('study = "depth"\nbogus = 1\n', "unknown key(s) bogus"),
        ('study = "depth"\n[axes\n', "not valid TOML"),
        ('study = "depth"\nconfig = 5\n', "config must be a table"),
        ('study = "depth"\naxes = 5\n', "axes must be a table"),
        ('study = "depth"\ncells = [1, 2]\n', "cells must be tables"),
        ('study = "depth"\nretries = true\n', "retries must be a whole number"),
        ("study = 5\n", "study must be a name in quotes"),
    ],
)
def test_a_bad_grid_file_is_one_line(tmp_path, run_cli, text, needle):
    path = tmp_path / "grid.toml"
    path.write_text(text)
    with pytest.raises(ls.LayerscopeError, match=None) as info:
        load_grid(path)
    assert needle in str(info.value)
    code, _, err = run_cli("sweep", str(path), "--out", str(tmp_path / "s"))
    assert code == 2 and needle in err and "Traceback" not in err


def test_reproduce_with_an_address_runs_the_recipe_as_a_task(local_ray, tmp_path):
    """The run is made by a Ray task and the verdict judged here; it equals the same recipe
    run in this process, bit for bit."""
    from layerscope.recipes import reproduce

    small = {"model": "resnet10", "size": "32", "iterations": "4"}
    there = reproduce("IV-2", sets=small, out=tmp_path / "there", address="auto")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        here = reproduce("IV-2", sets=small, out=tmp_path / "here")
    finally:
        torch.set_num_threads(threads)
    assert (tmp_path / "there" / "verdict.json").is_file()
    assert [o.measured for o in there.outcomes] == [o.measured for o in here.outcomes]
    _same_results(tmp_path / "there", tmp_path / "here")


def test_a_sweep_folder_follows_the_run_folder_rules(local_ray, tmp_path):
    """Never overwrite: a user's folder with its own sweep.csv, a run directory, a file, or a
    sweep of another study is refused in one line before any cell runs; a second grid of the
    same study merges (sweep.csv keeps the first grid's rows); a second sweep while the first
    holds the folder is refused (the lock)."""
    import fcntl

    from layerscope.lifecycle import LOCK_NAME

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "sweep.csv").write_text("my own numbers\n")
    with pytest.raises(ls.LayerscopeError, match="holds no sweep"):
        sweep(Grid("depth", TINY, {"seed": [0]}), mine, site=False)
    assert (mine / "sweep.csv").read_text() == "my own numbers\n"
    run = ls.run_study("depth", out=tmp_path / "run", **TINY)
    with pytest.raises(ls.LayerscopeError, match="is a run directory"):
        sweep(Grid("depth", TINY, {"seed": [0]}), run, site=False)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ls.LayerscopeError, match="is a file"):
        sweep(Grid("depth", TINY, {"seed": [0]}), tmp_path / "file", site=False)
    out = tmp_path / "sweep"
    sweep(Grid("depth", TINY, {"seed": [0]}), out, site=False)
    rows = read_csv(sweep(Grid("depth", TINY, {"seed": [1]}), out, site=False))
    assert sorted(r["seed"] for r in rows) == [0, 1]  # both grids' rows
    with pytest.raises(ls.LayerscopeError, match="holds a sweep of depth"):
        sweep(Grid("conditioning", {"model": "resnet10", "size": 8}, {"seed": [0]}), out)
    fd = os.open(out / LOCK_NAME, os.O_RDWR | os.O_CREAT)  # another process holds it
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(ls.LayerscopeError, match="in use by a running layerscope"):
            sweep(Grid("depth", TINY, {"seed": [2]}), out, site=False)
    finally:
        os.close(fd)
    assert len(list((out / "cells").iterdir())) == 2  # the refused grid ran no cell


def test_ray_that_cannot_answer_is_one_line_before_any_work(local_ray, tmp_path):
    """A share no node can give waits forever in Ray: refused before any cell is submitted;
    an address where nothing listens is refused within seconds (Ray retries it for minutes)."""
    from layerscope import cluster

    grid = Grid("depth", TINY, {"seed": [0]})
    with pytest.raises(ls.LayerscopeError, match="--cpus-per-cell 3: no node"):
        sweep(grid, tmp_path / "a", cpus_per_cell=3, site=False)
    with pytest.raises(ls.LayerscopeError, match=r"--gpus-per-cell 1: no node .* a GPU"):
        sweep(grid, tmp_path / "b", gpus_per_cell=1, site=False)
    assert not (tmp_path / "a" / "cells").exists() and not (tmp_path / "b" / "cells").exists()
    start = time.time()
    for address in ("127.0.0.1:1", "no-such-host.invalid:6379"):
        with pytest.raises(ls.LayerscopeError, match="cannot join the Ray cluster"):
            cluster._reachable(address, timeout=2)
    with pytest.raises(ls.LayerscopeError, match="is not HOST:PORT"):
        cluster._reachable("localhost")
    assert time.time() - start < 30


def test_a_grid_whose_every_cell_is_invalid_lists_each_cells_error(tmp_path, run_cli):
    """It said "name at least one run directory" (the site of no cell) and hid the errors."""
    grid = tmp_path / "grid.toml"
    grid.write_text('study = "depth"\n[config]\nmodel = "resnet10"\n[axes]\n'
                    "iterations = [0, -1]\n")  # fmt: skip
    code, out, err = run_cli("sweep", str(grid), "--out", str(tmp_path / "s"))
    assert code == 0, err
    text = " ".join(out.split())  # the terminal wraps long lines
    assert "2 failed" in text and "not 0" in text and "not -1" in text and "no site" in text
    rows = read_csv(tmp_path / "s" / "sweep.csv")
    assert {r["status"] for r in rows} == {"failed"} and not (tmp_path / "s" / "site").exists()


def test_ctrl_c_of_the_driver_writes_the_table_and_the_rerun_goes_on(local_ray, tmp_path,
                                                                      monkeypatch):  # fmt: skip
    """Ctrl-C of the driver ended with exit 130, no line and no sweep.csv: now the cells that
    finished are in the table, one line says how to go on, and the rerun skips them."""
    import layerscope.sweep as sweeps

    real = sweeps._wait

    def one_then_ctrl_c(ray, pending, results, retries, bar):
        first = next(iter(pending))
        real(ray, {first: pending.pop(first)}, results, retries, bar)
        raise KeyboardInterrupt

    monkeypatch.setattr(sweeps, "_wait", one_then_ctrl_c)
    grid, out = Grid("depth", TINY, {"seed": [0, 1]}), tmp_path / "sweep"
    with pytest.raises(ls.Interrupted, match=r"1 of 2 cell\(s\) finished .* rerun the same"):
        sweep(grid, out, site=False)
    rows = read_csv(out / "sweep.csv")
    assert sorted(r["status"] for r in rows) == ["finished", "interrupted"]
    assert not (out / ".layerscope.lock").exists()
    monkeypatch.setattr(sweeps, "_wait", real)
    rows = read_csv(sweep(grid, out, site=False))
    assert [r["status"] for r in rows] == ["finished", "finished"], rows
