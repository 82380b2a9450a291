"""Checkpoints: reading a state dict without executing code, the JSON sidecar that names
a checkpoint's model and classes, writing both atomically, and fitting a state dict to a
net with an error that names the fix."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from ..core.errors import WeightsError

__all__ = ["apply_checkpoint", "load_state_dict", "read_sidecar", "save_checkpoint"]


_PREFIXES = ("module.", "model.", "net.", "_orig_mod.")


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict from ``.safetensors`` or ``.pt``/``.pth`` without executing code."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"checkpoint {path} does not exist: check the path given to --weights")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsError(
            f"cannot read checkpoint {path} ({type(exc).__name__}: {str(exc)[:120]}): it must be a "
            ".safetensors file or a .pt state dict saved with torch.save(model.state_dict())"
        ) from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"{path} holds no state dict (a mapping of names to tensors)")
    for prefix in _PREFIXES:
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items()}
    return state


def read_sidecar(path: Path) -> dict:
    """The JSON sidecar of a checkpoint (``x.safetensors`` → ``x.json``), or ``{}``."""
    side = path.with_suffix(".json")
    if side.is_file():
        try:
            data = json.loads(side.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            return {}
        return data if isinstance(data, dict) else {}  # a foreign JSON beside it: no sidecar
    return {}


def save_checkpoint(model: nn.Module, path: str | Path, sidecar: dict) -> Path:
    """``model``'s (a :class:`~layerscope.models.Model`) weights as ``path`` (.safetensors,
    the sidecar also in its metadata) and the JSON sidecar beside it (``model``,
    ``num_classes``, ``classes``, ``normalize``, …: what :func:`load_model` reads), each
    written atomically."""
    from safetensors.torch import save_file

    from ..core.files import atomic_path, write_json

    path = Path(path)
    state = {k: v.detach().contiguous().cpu() for k, v in model.net.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, tmp, metadata={"layerscope": json.dumps(sidecar)})
    write_json(path.with_suffix(".json"), sidecar)
    return path


def apply_checkpoint(net: nn.Module, state: dict[str, torch.Tensor], path: Path) -> None:
    own = net.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    mismatched = [k for k in own if k in state and own[k].shape != state[k].shape]
    if missing or unexpected or mismatched:
        parts = []
        if mismatched:
            k = mismatched[0]
            parts.append(
                f"{len(mismatched)} shape mismatches (e.g. {k}: checkpoint "
                f"{tuple(state[k].shape)} vs model {tuple(own[k].shape)})"
            )
        if missing:
            parts.append(f"{len(missing)} missing keys (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys (e.g. {unexpected[0]})")
        raise WeightsError(
            f"checkpoint {path} does not fit this model: {'; '.join(parts)}. Check the model name; "
            "if only the head differs, pass --num-classes (depth, train, layers) or put "
            '{"num_classes": N} in the JSON sidecar beside it'
        )
    net.load_state_dict(state)
