"""One finiteness policy for every loop that steps (the descent of inputs, the training of
parameters in ``train``, ``merge`` and the studies that train): a non-finite loss, input or
parameter after a step, or an input beyond :data:`INPUT_LIMIT`, ends the row or the run as
``diverged``, named with the step where it happened and the option that fixes it. A diverged
row is recorded with that status (its last good input kept for inspection, never ``ok``); a
diverged run raises :class:`Diverged` before anything of that step is saved.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

from ..core.errors import LayerscopeError

__all__ = ["DIVERGED", "INPUT_LIMIT", "Diverged", "check_finite", "row_message", "rows_ok"]

#: the status of a row or run that left the finite
DIVERGED = "diverged"

#: an input (pixels, in [0, 1] for an image) beyond ±this has blown up although still finite:
#: four orders of magnitude outside any image (``generate --term-weights 1e12`` reached ±1.7e8
#: and was reported ``ok``; a sound descent overshoots [0, 1] by ~0.1)
INPUT_LIMIT = 1e4


class Diverged(LayerscopeError):
    """A loop that trains parameters left the finite: nothing of the step was saved."""

    status = DIVERGED


def rows_ok(losses: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Per row of a batch of inputs: the loss finite and every value of ``x`` finite and within
    ±:data:`INPUT_LIMIT` (one reduction, on the device; NaN fails the comparison)."""
    return torch.isfinite(losses) & (x.flatten(1).abs().amax(1) <= INPUT_LIMIT)


def row_message(where: str, lr: float, fix: str) -> str:
    """Why a descended row stopped, in one line: where (``iteration 12``, ``octave 2,
    iteration 30``), the step size then, and the fix."""
    return (
        f"the loss or the input became non-finite or exceeded ±{INPUT_LIMIT:g} at {where} "
        f"(lr {lr:g}): {fix}"
    )


def _first_bad(values: dict[str, object]) -> str | None:
    for name, value in values.items():
        if isinstance(value, torch.nn.Module):
            params = [p for p in value.parameters() if p.is_floating_point()]
            if not params or bool(torch.stack([torch.isfinite(p).all() for p in params]).all()):
                continue  # one host read when all is well
            bad = next(n for n, p in value.named_parameters() if not bool(torch.isfinite(p).all()))
            return f"parameter {bad} became non-finite"
        elif isinstance(value, torch.Tensor):
            if not bool(torch.isfinite(value).all()):
                return f"{name} became non-finite"
        elif isinstance(value, Iterable) and not isinstance(value, str):
            if not all(math.isfinite(float(v)) for v in value):
                return f"{name} became non-finite"
        elif not math.isfinite(float(value)):
            return f"{name} became {float(value)}"
    return None


def check_finite(where: str, fix: str, **values: object) -> None:
    """Raise :class:`Diverged` naming ``where`` (``epoch 3``, ``step 40``), the first value
    of ``values`` (numbers, tensors, lists of numbers, modules: their parameters) that is not
    finite, and ``fix``; nothing when all are finite (one host read per tensor)."""
    bad = _first_bad(values)
    if bad is not None:
        raise Diverged(f"diverged at {where} ({bad}): {fix}")
