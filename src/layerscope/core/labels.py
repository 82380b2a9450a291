"""The one short-label rule for a weight state, used wherever one is shown: the terminal
tables, the figures, the report pages, the site and the recipes' verdicts (no torch import:
the site uses it)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["weights_label"]


def weights_label(weights) -> str:
    """The short label of a weight state: none, imagenet, or the checkpoint's file stem."""
    w = str(weights)
    return w if w in ("none", "imagenet") else Path(w).stem
