"""Run directories: one place that names them, refuses to overwrite, and reads and writes their
``config.json`` (the study config, its kind, versions and device)."""

from __future__ import annotations

import json
import platform
from datetime import datetime
from pathlib import Path

import torch

from .errors import LayerscopeError

__all__ = ["new_run_dir", "open_run", "write_meta"]


def new_run_dir(kind: str, root: str | Path = "runs") -> Path:
    """``runs/<date-time>-<kind>``."""
    stamp = datetime.now().strftime("%Y-%m-%d-%H%M%S")
    return Path(root) / f"{stamp}-{kind}"


def open_run(out: str | Path | None, kind: str, resume: bool) -> tuple[Path, dict | None]:
    """The run directory (``out`` or a new dated one) and, when resuming, its stored
    ``config.json``. A directory that holds a run is never overwritten without ``resume``."""
    run_dir = Path(out) if out is not None else new_run_dir(kind)
    cfg = run_dir / "config.json"
    if cfg.exists():
        if not resume:
            raise LayerscopeError(
                f"{run_dir} already holds a run: pass --resume to continue it, or another --out"
            )
        return run_dir, json.loads(cfg.read_text())
    if resume and run_dir.exists() and any(run_dir.iterdir()):
        raise LayerscopeError(f"{run_dir} has no config.json to resume from")
    return run_dir, None


def write_meta(run_dir: Path, kind: str, study: dict, device: str | None = None, **extra) -> None:
    """Write ``config.json`` once (a resumed run keeps the one it started with)."""
    from . import __version__

    cfg = run_dir / "config.json"
    if cfg.exists():
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    meta = {
        "kind": kind,
        "study": study,
        "created": datetime.now().isoformat(timespec="seconds"),
        "layerscope": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": device,
    } | extra
    cfg.write_text(json.dumps(meta, indent=1))
