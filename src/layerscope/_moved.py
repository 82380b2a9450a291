"""The import paths of the flat layout keep working: ``layerscope.similarity`` is
``layerscope.engine.similarity``, ``layerscope.cli`` is ``layerscope.apps.cli``, and so on
(the same module object, so a patch through either name patches both). Resolved on first
import, so ``import layerscope`` loads nothing more than before."""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys

#: each module of the flat layout → the place it lives now
PLACES = {
    **dict.fromkeys(
        ("ablation", "data", "descent", "device", "efficientnet", "finite", "generation",
         "images", "inversion", "invertibility", "layers", "merging", "metrics", "models",
         "objectives", "param", "recognition", "results", "sensitivity", "similarity",
         "spectra", "training", "transforms"),
        "engine",
    ),
    **dict.fromkeys(("config", "errors", "faults", "files", "progress", "tables"), "core"),
    **dict.fromkeys(("lifecycle", "options", "runs"), "protocol"),
    **dict.fromkeys(("cli", "cluster", "recipes", "site", "sweep"), "apps"),
}  # fmt: skip


def new_name(name: str) -> str | None:
    """Where ``layerscope.X[.Y]`` of the flat layout lives now (None: it did not move)."""
    parts = name.split(".")
    if len(parts) < 2 or parts[0] != "layerscope" or parts[1] not in PLACES:
        return None
    return ".".join(["layerscope", PLACES[parts[1]], *parts[1:]])


class _Alias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path=None, target=None):
        return importlib.util.spec_from_loader(fullname, self) if new_name(fullname) else None

    def create_module(self, spec):
        module = importlib.import_module(new_name(spec.name))
        self.own_spec = module.__spec__  # the import system replaces it with the alias's
        return module

    def exec_module(self, module) -> None:  # the module ran under its own name
        module.__spec__ = self.own_spec


if not any(isinstance(f, _Alias) for f in sys.meta_path):
    sys.meta_path.append(_Alias())
