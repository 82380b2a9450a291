"""The training study: ``layerscope train`` as a study like the others (its engine and work
live in :mod:`layerscope.training`, which the other studies use too)."""

from __future__ import annotations

from ..training import STUDY, TrainConfig, report, summary, train

__all__ = ["STUDY", "TrainConfig", "report", "summary", "train"]
