"""Sweeps: a grid of runs of one study, each cell one Ray task through the studies' one
lifecycle, resumable cell by cell, on a local Ray or a cluster.

A grid file (TOML) names the study, a base config and the axes, with keys spelled as the
study's command-line options without their dashes::

    study = "depth"
    [config]
    model = "resnet18"
    layers = "conv1,layer4"
    iterations = 300
    [axes]                       # every combination of the axes' values
    image = ["coffee", "rocket", "chelsea"]
    seed = [0, 1, 2]
    [[cells]]                    # and/or explicit combinations
    image = "astronaut"
    seed = 7

Each cell's run directory is ``OUT/cells/<kind>-<hash of its config>``, so the same cell in
two sweeps into one folder is the same directory: a finished cell is skipped, an interrupted
one resumes (a study that cannot resume starts again), a worker that dies is retried up to
``retries`` times, a cell whose config is invalid or whose run raises fails alone with its
one-line error. At the end: ``OUT/sweep.csv`` (one row per cell: its axis values, status,
error, seconds, run directory and the study's summary numbers), each cell's log in
``OUT/logs/``, and the site of the sweep in ``OUT/site``.

``OUT`` must be a folder every node of the cluster reads and writes (a shared filesystem);
on one machine it is any folder.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.config import config_hash, loads_toml
from ..core.errors import ConfigError, LayerscopeError
from ..protocol.runs import is_finished
from .cluster import error_line, start_ray, tasks

__all__ = ["Cell", "Grid", "load_grid", "sweep"]


@dataclass(frozen=True)
class Cell:
    """One run of a sweep: its axis values, all its options, its directory name, and the
    config error that makes it fail before it runs (None when it is valid)."""

    axes: dict
    options: dict
    name: str
    error: str | None = None


@dataclass(frozen=True)
class Grid:
    study: str
    config: dict
    axes: dict
    cells: tuple[dict, ...] = ()
    retries: int = 3
    path: Path | None = None

    def combinations(self) -> list[dict]:
        """Every cell's axis values: the product of the axes, then the explicit cells."""
        out = []
        if self.axes:
            names = list(self.axes)
            for values in itertools.product(*(self.axes[n] for n in names)):
                out.append(dict(zip(names, values, strict=True)))
        out += [dict(c) for c in self.cells]
        return out or [{}]

    def expand(self) -> list[Cell]:
        """The cells, each with its config checked (an invalid one carries its error)."""
        from ..studies import get_study

        study = get_study(self.study)
        cells, seen = [], set()
        for values in self.combinations():
            options = {**self.config, **values}
            try:
                config = study.configure(options)
                name, error = f"{self.study}-{config_hash(config)}", None
            except LayerscopeError as exc:
                raw = {"study": self.study, "options": options}
                name, error = f"{self.study}-invalid-{config_hash(raw)}", str(exc)
            if name in seen:
                continue  # two combinations that configure the same run: one cell
            seen.add(name)
            cells.append(Cell(values, options, name, error))
        return cells


def load_grid(path: str | Path) -> Grid:
    """A grid file; its faults (no study, an axis that is not a list, an unknown study) are
    one line naming the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"no grid file {path}: write one (see `layerscope sweep --help`)")
    data = loads_toml(path.read_text(), where=f"grid {path}")
    where = f"grid {path.name}"
    unknown = set(data) - {"study", "config", "axes", "cells", "retries"}
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}: a grid has "
                          "study, [config], [axes], [[cells]] and retries")  # fmt: skip
    if "study" not in data:
        raise ConfigError(f'{where} names no study: add study = "depth" (or another kind)')
    if not isinstance(data["study"], str):
        raise ConfigError(f'{where}: study must be a name in quotes (study = "depth"), '
                          f"not {data['study']!r}")  # fmt: skip
    config, axes, cells = data.get("config", {}), data.get("axes", {}), data.get("cells", [])
    if not isinstance(config, dict):
        raise ConfigError(f"{where}: config must be a table ([config] with option = value "
                          f"lines), not {config!r}")  # fmt: skip
    if not isinstance(axes, dict):
        raise ConfigError(f"{where}: axes must be a table ([axes] with option = [values] "
                          f"lines), not {axes!r}")  # fmt: skip
    if not isinstance(cells, list) or not all(isinstance(c, dict) for c in cells):
        raise ConfigError(f"{where}: cells must be tables ([[cells]] with option = value "
                          f"lines), not {cells!r}")  # fmt: skip
    for name, values in axes.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{where}: axis {name!r} must be a non-empty list of values")
    from ..studies import get_study

    get_study(data["study"])  # an unknown study lists the known ones
    retries = data.get("retries", 3)
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ConfigError(f"{where}: retries must be a whole number ≥ 0, not {retries!r}")
    return Grid(data["study"], dict(config), dict(axes), tuple(cells), retries, path)


# --- what runs inside a Ray worker --------------------------------------------------------


def _cell_work(kind: str, options: dict, run_dir: str, log: str) -> dict:
    """Run one cell in this (worker) process (:func:`~layerscope.cluster.tasks` set its
    threads and working directory), its output in ``log``. Finished: nothing to do; a stored
    run resumes (a study that cannot resume starts again in an emptied directory)."""
    import torch

    from ..protocol.lifecycle import execute
    from ..studies import get_study

    threads = torch.get_num_threads()
    out = Path(run_dir)
    Path(log).parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with open(log, "a") as f, contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
        print(f"cell {out.name}: pid {os.getpid()}, {threads} thread(s), options {options}",
              flush=True)  # fmt: skip
        study = get_study(kind)
        config = study.configure(options)
        if (out / "config.json").is_file():
            if is_finished(out):  # the table reads its time from the run
                return {"status": "finished", "note": "already finished"}
            if study.resumable:
                print("resuming what an earlier attempt saved", flush=True)
                execute(study, None, out, resume=True)
                return {"status": "finished", "seconds": time.perf_counter() - start}
        if out.is_dir():
            print("starting again: an earlier attempt left a run that cannot resume", flush=True)
            shutil.rmtree(out)
        execute(study, config, out)
        print(f"finished in {time.perf_counter() - start:.1f} s", flush=True)
    return {"status": "finished", "seconds": time.perf_counter() - start}


# --- the driver ---------------------------------------------------------------------------


def sweep(
    grid: str | Path | Grid,
    out: str | Path | None = None,
    address: str | None = None,
    cpus_per_cell: float = 1,
    gpus_per_cell: float | None = None,
    progress: bool = False,
    env: dict | None = None,
    site: bool = True,
) -> Path:
    """Run every cell of ``grid`` (a grid file or a :class:`Grid`) as Ray tasks into ``out``
    (default ``runs/sweep-<grid file's name>``); returns ``sweep.csv``'s path. ``cpus_per_cell``:
    the CPUs each cell asks for, and its PyTorch's threads; ``gpus_per_cell``: its share of
    a GPU (fractions pack small cells onto one card; None: one whole GPU where the cluster has
    any, else none — a cell without a share sees no GPU). ``env``: environment variables of the
    cells' workers."""
    if isinstance(grid, (str, Path)):
        grid = load_grid(grid)
    if cpus_per_cell <= 0 or (gpus_per_cell is not None and gpus_per_cell < 0):
        raise LayerscopeError("--cpus-per-cell must be above 0 and --gpus-per-cell at least 0")
    if out is None:
        stem = grid.path.stem if grid.path is not None else grid.study
        out = Path("runs") / f"sweep-{stem}"
    out = Path(out).absolute()
    from ..protocol.lifecycle import _sigterm_as_interrupt, locked, prepare_out

    prepare_out(out)  # a file or a folder that cannot be written: one line
    _check_sweep_folder(out, grid)
    # a second sweep into this folder is refused while this one runs; SIGTERM is Ctrl-C
    with locked(out), _sigterm_as_interrupt():
        return _sweep(grid, out, address, cpus_per_cell, gpus_per_cell, progress, env, site)


#: the file that makes a folder a sweep's: its study and the hash of its grid
SWEEP_MARK = "sweep.json"


def _grid_hash(grid: Grid) -> str:
    from ..core.config import config_hash

    return config_hash({"config": grid.config, "axes": grid.axes, "cells": grid.cells})


def _check_sweep_folder(out: Path, grid: Grid) -> None:
    """``out`` follows the run-folder rules: new or empty (then marked as a sweep of this
    study), or a sweep folder of the same study (grids merge there: a cell two grids share
    is one directory, and sweep.csv keeps the rows of every grid run there); a run
    directory, a folder of other files (a user's own sweep.csv) or a sweep of another study
    is refused in one line."""
    from ..core.files import read_json, write_json

    mark = out / SWEEP_MARK
    if (out / "config.json").is_file():
        raise LayerscopeError(f"--out {out} is a run directory: give the sweep a folder of its own")
    if mark.is_file():
        try:
            theirs = read_json(mark)
        except Exception:
            theirs = {}
        if not isinstance(theirs, dict) or theirs.get("study") != grid.study:
            study = theirs.get("study") if isinstance(theirs, dict) else None
            raise LayerscopeError(
                f"--out {out} holds a sweep of {study or 'another study'}, not of "
                f"{grid.study}: choose another --out"
            )
        grids = list(theirs.get("grids", []))
        if _grid_hash(grid) not in grids:
            write_json(mark, theirs | {"grids": [*grids, _grid_hash(grid)]})
        return
    others = [p.name for p in out.iterdir() if not p.name.startswith(".")]
    if others:
        raise LayerscopeError(
            f"--out {out} is not empty and holds no sweep ({', '.join(sorted(others)[:3])}…): "
            "its files would be overwritten; choose a new or empty --out"
        )
    write_json(mark, {"study": grid.study, "grids": [_grid_hash(grid)]})


def _sweep(grid, out, address, cpus_per_cell, gpus_per_cell, progress, env, site) -> Path:
    cells = grid.expand()
    results: dict[str, dict] = {}
    todo = []
    for c in cells:
        if c.error is not None:
            results[c.name] = {"status": "failed", "error": c.error}
        elif is_finished(out / "cells" / c.name):
            results[c.name] = {"status": "finished", "note": "already finished"}
        else:
            todo.append(c)
    skipped = sum(r.get("note") == "already finished" for r in results.values())
    from ..core.progress import note

    if skipped:
        note(f"sweep: {skipped} of {len(cells)} cell(s) already finished in {out}: skipped")
    if todo:
        resources = (cpus_per_cell, gpus_per_cell, grid.retries)
        try:
            _run(grid.study, todo, out, address, resources, env, progress, results)
        except KeyboardInterrupt:  # Ctrl-C, SIGTERM: the table says what finished
            for c in todo:
                results.setdefault(c.name, {"status": "interrupted"})
            path = _write_table(grid, cells, results, out)
            finished = sum(r.get("status") == "finished" for r in results.values())
            from ..core.errors import Interrupted

            raise Interrupted(
                f"interrupted: {finished} of {len(cells)} cell(s) finished in {out} (table "
                f"{path}); rerun the same command to go on: finished cells are skipped, "
                "interrupted ones resume"
            ) from None
    else:
        note(f"sweep: nothing to run ({len(cells)} cell(s), every one finished or invalid)")
    path = _write_table(grid, cells, results, out)
    if site and (out / "cells").is_dir():  # no cell ran (every one invalid): no site
        from .site import build_site

        build_site([out / "cells"], out / "site")
    return path


#: how long a Ctrl-C'd sweep waits for its cancelled cells' workers to end (seconds)
CANCEL_WAIT_S = 20.0


def _run(kind, todo, out, address, resources, env, progress, results) -> None:
    cpus, gpus, retries = resources
    if gpus is None:  # a machine with GPUs: each cell gets one unless told its share
        gpus = 1.0 if start_ray(address).cluster_resources().get("GPU", 0) > 0 else 0.0
    ray, submit = tasks(cpus, gpus, retries, env, address)
    pending = {}
    for c in todo:
        ref = submit(_cell_work, kind, c.options, str(out / "cells" / c.name),
                     str(out / "logs" / f"{c.name}.log"))  # fmt: skip
        pending[ref] = c
    from ..core.progress import progress_bar

    with progress_bar(len(todo), enabled=progress, description="sweep") as bar:
        try:
            _wait(ray, pending, results, retries, bar)
        except KeyboardInterrupt:
            for ref in pending:  # what they saved stays; the next sweep resumes them
                with contextlib.suppress(Exception):
                    ray.cancel(ref, force=True)
            # a killed worker dies a moment later: until then it holds its cell's lock, and a
            # rerun started at once found the cell "in use" (bounded: a stuck kill still ends)
            with contextlib.suppress(Exception):
                ray.wait(list(pending), num_returns=len(pending), timeout=CANCEL_WAIT_S)
            raise


def _wait(ray, pending: dict, results: dict, retries: int, bar) -> None:
    """Collect the cells' results as they come (``pending``: reference → cell)."""
    failed = done = 0
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1, timeout=2.0)
        for ref in ready:
            c = pending.pop(ref)
            try:
                results[c.name] = ray.get(ref)
                done += 1
            except ray.exceptions.RayTaskError as exc:
                results[c.name] = {"status": "failed", "error": error_line(exc)}
                failed += 1
            except ray.exceptions.RayError as exc:  # its worker died, past its retries
                why = f"its worker died {retries + 1} time(s): {error_line(exc)}"
                results[c.name] = {"status": "failed", "error": why}
                failed += 1
            bar.advance()
        bar.describe(f"done {done} · running {len(pending)} · failed {failed}")


def _took(run_dir: Path) -> float:
    """A finished run's wall time from its config.json (created → finished), in seconds; 0
    when it has none (a cell that did not run)."""
    from datetime import datetime

    from ..core.files import read_json

    try:
        meta = read_json(run_dir / "config.json")
        start, end = (datetime.fromisoformat(meta[k]) for k in ("created", "finished"))
    except Exception:
        return 0.0
    return (end - start).total_seconds()


def _write_table(grid: Grid, cells: list[Cell], results: dict, out: Path) -> Path:
    from ..core.files import atomic_path
    from ..core.tables import write_csv
    from ..studies import get_study

    study = get_study(grid.study)
    axis_names = list(dict.fromkeys(k for c in cells for k in c.axes))
    rows = []
    for c in cells:
        r = results.get(c.name, {"status": "not run"})
        run_dir = out / "cells" / c.name
        row: dict[str, Any] = {k: c.axes.get(k, "") for k in axis_names}
        row |= {"cell": c.name, "status": r.get("status", ""), "error": r.get("error", ""),
                "seconds": round(float(r.get("seconds", _took(run_dir))), 2),
                "run": str(run_dir) if run_dir.is_dir() else ""}  # fmt: skip
        if r.get("status") == "finished" and run_dir.is_dir():
            try:
                row |= {k: v for k, v in study.summary(run_dir).items() if k not in row}
            except Exception as exc:  # the table still lists the cell
                row["error"] = f"no summary: {type(exc).__name__}"
        rows.append(row)
    path = out / "sweep.csv"
    if path.is_file():  # the rows of earlier grids run here stay, behind this grid's
        from ..core.tables import read_csv

        mine = {r["cell"] for r in rows}
        with contextlib.suppress(Exception):  # a damaged table: this grid's rows replace it
            rows += [r for r in read_csv(path) if r.get("cell") not in mine]
    with atomic_path(path) as tmp:
        write_csv(tmp, rows)
    return path
