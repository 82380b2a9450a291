"""Run directories: one place that names them, refuses to overwrite, reads and writes their
``config.json`` (the study config, its kind, versions and device). The lifecycle around a run
(lock, resume, interruption, clean-up) is :mod:`layerscope.lifecycle`."""

from __future__ import annotations

import platform
from datetime import datetime
from pathlib import Path

import torch

from ..core.errors import LayerscopeError
from ..core.files import read_json, write_json

__all__ = ["new_run_dir", "open_run", "record_step", "write_meta"]


def new_run_dir(kind: str, root: str | Path = "runs") -> Path:
    """``runs/<date-time>-<kind>``."""
    stamp = datetime.now().strftime("%Y-%m-%d-%H%M%S")
    return Path(root) / f"{stamp}-{kind}"


def open_run(
    out: str | Path | None, kind: str, resume: bool, resumable: bool = True
) -> tuple[Path, dict | None]:
    """The run directory (``out`` or a new dated one) and, when resuming, its stored
    ``config.json``. Nothing is written here. Refused: a file as ``out``; a directory that
    holds a run, without ``resume``; a non-empty directory that holds no run (its files would
    be overwritten); ``resume`` with nothing to resume."""
    run_dir = Path(out) if out is not None else new_run_dir(kind)
    if run_dir.exists() and not run_dir.is_dir():
        raise LayerscopeError(f"--out {run_dir} is a file: give a directory")
    cfg = run_dir / "config.json"
    if cfg.exists():
        if not resume:
            fix = "pass --resume to continue it, or another --out" if resumable else (
                f"choose another --out ({kind} runs cannot be resumed)"
            )  # fmt: skip
            raise LayerscopeError(f"{run_dir} already holds a run: {fix}")
        stored = read_json(cfg)
        if stored.get("kind") != kind:
            raise LayerscopeError(
                f"{run_dir} holds a {stored.get('kind')!r} run, not a {kind!r} run: resume it "
                "with its own command, or choose another --out"
            )
        return run_dir, stored
    if run_dir.is_dir() and any(p.name != ".layerscope.lock" for p in run_dir.iterdir()):
        raise LayerscopeError(
            f"{run_dir} is not empty and holds no layerscope run (no config.json): its files "
            "would be overwritten; choose a new or empty --out"
        )
    if resume:
        raise LayerscopeError(f"nothing to resume in {run_dir}: run without --resume to start")
    return run_dir, None


def write_meta(run_dir: Path, kind: str, study: dict, device: str | None = None, **extra) -> None:
    """Write ``config.json`` once (a resumed run keeps the one it started with)."""
    from .._version import __version__

    cfg = run_dir / "config.json"
    if cfg.exists():
        return
    meta = {
        "kind": kind,
        "study": study,
        "created": datetime.now().isoformat(timespec="seconds"),
        "layerscope": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": device,
    } | extra
    write_json(cfg, meta)


def is_finished(run_dir: str | Path) -> bool:
    """The run in ``run_dir`` carries its "finished" mark (False for no run or a damaged
    ``config.json``)."""
    try:
        return bool(read_json(Path(run_dir) / "config.json").get("finished"))
    except Exception:  # missing or damaged: not a finished run
        return False


def record_step(run_dir: Path, **how) -> None:
    """Record in ``config.json`` how the descent's step ran (e.g. compiled, or eager and why)."""
    cfg = run_dir / "config.json"
    meta = read_json(cfg)
    meta.setdefault("step", {}).update(how)
    write_json(cfg, meta)
