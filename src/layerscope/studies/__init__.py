"""Studies: one module per study, each declaring itself once as a
:class:`~layerscope.lifecycle.Study` (kind, config, work, report, summary) and registered here.

Adding a study: write its module (a ``Config`` dataclass, ``work(config, run)``,
``report(run_dir)``, ``summary(run_dir)``, ``STUDY = Study(...)``) and add its module name to
:data:`MODULES`. Every study then runs through :func:`layerscope.lifecycle.execute`.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from ..core.errors import ConfigError, LayerscopeError
from ..protocol.lifecycle import Study
from ..report import read_meta

__all__ = ["MODULES", "build_report", "get_study", "register", "registry", "run_study"]

#: The registry: one line per study module (each defines ``STUDY``, or ``STUDIES`` for several).
MODULES = (
    "depth",
    "training_effect",
    "train",
    "ablation",
    "similarity",
    "sensitivity",
    "lose_spatial_info",
    "invertible",
    "relu_bound",
    "fc_widths",
    "conditioning",
    "generation",
    "merge",
)

_REGISTRY: dict[str, Study] = {}
_LOADED: list[bool] = []  # non-empty once every module of MODULES is registered


def register(study: Study, registry: dict[str, Study] | None = None) -> Study:
    """Add ``study`` to the registry; a second study with the same kind is refused."""
    registry = _REGISTRY if registry is None else registry
    if study.kind in registry and registry[study.kind] is not study:
        first, second = registry[study.kind].work.__module__, study.work.__module__
        raise LayerscopeError(
            f"two studies declare the kind {study.kind!r} ({first} and {second}): a kind is "
            "unique; rename one"
        )
    registry[study.kind] = study
    return study


def registry() -> dict[str, Study]:
    """Every registered study by kind (importing the study modules on first use; a module
    that fails to import fails every call, never leaves a half-filled registry)."""
    if not _LOADED:
        for name in MODULES:
            module = importlib.import_module(f"{__name__}.{name}")
            for study in getattr(module, "STUDIES", None) or (module.STUDY,):
                register(study)
        _LOADED.append(True)
    return dict(_REGISTRY)


def get_study(kind: str) -> Study:
    """The study of ``kind``; an unknown kind is an error listing the known ones."""
    known = registry()
    if kind not in known:
        raise LayerscopeError(f"unknown study {kind!r}: choose from {', '.join(sorted(known))}")
    return known[kind]


def build_report(run_dir: str | Path) -> Path:
    """(Re)build the report of any run directory from what it saved."""
    kind = read_meta(run_dir).get("kind")
    study = registry().get(kind)
    if study is None or study.report is None:
        raise LayerscopeError(f"no report for runs of kind {kind!r}")
    return study.report(Path(run_dir))


def run_study(
    kind: str,
    config=None,
    out: str | Path | None = None,
    resume: bool = False,
    progress: bool = False,
    **options,
) -> Path:
    """Run any study by its kind through the one lifecycle; returns the run directory.

    ``config``: the study's config (``DepthConfig(...)``), or None; ``options``: settings as
    the command line spells them (``iterations=20``, ``blur_kernel=5``, ``model="resnet10"``)
    applied on top of ``config`` (or the defaults). ``resume``: continue ``out``."""
    study = get_study(kind)
    if config is not None and not isinstance(config, study.config):
        raise ConfigError(
            f"config is a {type(config).__name__}, and {kind} runs take a "
            f"{study.config.__name__} (or options: run_study({kind!r}, iterations=20, ...))"
        )
    options = {k: _named(v) for k, v in options.items()}
    if options or (config is None and not resume):
        config = study.configure(options, base=config)
    from ..protocol.lifecycle import execute

    return execute(study, config, out, resume, progress)


def _named(value):
    """An option's value with every network object in it (an ``ls.Model``, any
    ``nn.Module``) replaced by the name it is registered under for this process
    (:func:`~layerscope.models.register_model`)."""
    from torch import nn

    from ..engine.models import register_model

    if isinstance(value, nn.Module):
        return register_model(value)
    if isinstance(value, (list, tuple)) and any(isinstance(v, nn.Module) for v in value):
        return [register_model(v) if isinstance(v, nn.Module) else v for v in value]
    return value
