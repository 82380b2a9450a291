"""Studies: one module per study (config dataclass → run() → run directory), each owning its
report page (``report(run_dir)``)."""

from __future__ import annotations

import importlib
from pathlib import Path

from ..errors import LayerscopeError
from ..report import read_meta

__all__ = ["REPORTS", "build_report"]

#: run kind (``config.json``) → the study module that draws its page
REPORTS = {
    "depth": "depth",
    "training-effect": "training_effect",
    "similarity": "similarity",
    "similarity-training": "similarity",
    "sensitivity": "sensitivity",
    "lose-spatial-info": "lose_spatial_info",
    "invertible": "invertible",
    "relu-bound": "relu_bound",
    "fc-widths": "fc_widths",
    "conditioning": "conditioning",
    "generate": "generation",
    "merge": "merge",
}


def build_report(run_dir: str | Path) -> Path:
    """(Re)build the report of any run directory from what it saved."""
    kind = read_meta(run_dir).get("kind")
    if kind not in REPORTS:
        raise LayerscopeError(f"no report for runs of kind {kind!r}")
    module = importlib.import_module(f"{__name__}.{REPORTS[kind]}")
    return module.report(Path(run_dir))
