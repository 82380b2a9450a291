"""Files a run writes: every one atomically (a temporary file beside it, then a rename), so an
interrupted run leaves either the old file or the new one, never half of one; JSON read back
with an error that names the file when it is corrupt."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import LayerscopeError

__all__ = ["atomic_path", "read_json", "read_tensor", "save_figure", "write_json"]


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """``with atomic_path(p) as tmp: write(tmp)``: ``tmp`` replaces ``p`` only when the block
    ends without an exception (the parent folder is created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def save_figure(fig, path: str | Path, dpi: int = 110) -> Path:
    """A matplotlib figure written atomically (its format from ``path``'s suffix)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format=path.suffix.lstrip(".") or "png")
    return path


def write_json(path: str | Path, obj) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=1))
    return Path(path)


#: the keys each JSON file layerscope writes always holds (by file name): a file without
#: them is not one of ours, or was damaged
SHAPES: dict[str, tuple[str, ...]] = {
    "config.json": ("kind", "study"),
    "verdict.json": ("recipe", "verdict"),
    "sweep.json": ("study",),
}


def read_json(path: str | Path) -> dict:
    """A JSON file of a run: an object, with the keys its kind always holds (:data:`SHAPES`);
    a corrupt file or one of another shape is one line naming it and the fix."""
    path = Path(path)
    fix = "restore it or delete it (for a target's result.json: that target is redone on --resume)"
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise LayerscopeError(
            f"{path} is corrupt ({exc.__class__.__name__}: {str(exc)[:80]}): {fix}"
        ) from exc
    if not isinstance(data, dict):
        kind = {list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
            type(data), "number"
        )
        raise LayerscopeError(
            f"{path} is not a layerscope file (a JSON {kind}, not an object): {fix}"
        )
    missing = [k for k in SHAPES.get(path.name, ()) if k not in data]
    if missing:
        raise LayerscopeError(
            f"{path} is not a layerscope {path.name} (it lacks {', '.join(missing)}): {fix}"
        )
    return data


def read_tensor(path: str | Path, key: str):
    """The tensor ``key`` of a run's safetensors file; a missing, truncated or foreign file
    is one line naming it and the fix (delete the result's folder: ``--resume`` redoes it)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise LayerscopeError(
            f"{path} is missing: delete {path.parent} (--resume then redoes that result)"
        )
    try:
        return load_file(str(path))[key]
    except (SafetensorError, KeyError, OSError, ValueError) as exc:
        raise LayerscopeError(
            f"{path} is damaged ({exc.__class__.__name__}: {str(exc)[:80]}): delete "
            f"{path.parent} (--resume then redoes that result)"
        ) from exc
