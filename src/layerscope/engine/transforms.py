"""Robustness transforms: what a descent step does to the image before the forward.

Each transform draws its random parameters from the descent's seeded generator and returns a
function of an image batch; the one descent loop (:func:`~layerscope.descent.descend`)
applies the drawn functions in order to the input and, through
:meth:`~layerscope.objectives.Objective.transformed`, to the source images of its layer-match
terms, so a target always shows the same view as the input. A new transform is a class with
``draw(generator, h, w)``; the loop does not change.

The list is written as a spec (``--transforms``, TOML, config.json): comma separated
``name:argument`` items, e.g. ``pad:12,jitter:8,scale:0.9-1.1,rotate:10,jitter:4`` (the
transforms of Olah et al. 2017, "Feature Visualization").
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..core.errors import ConfigError

__all__ = [
    "TRANSFORMS",
    "Jitter",
    "Pad",
    "RandomRotate",
    "RandomScale",
    "Resize",
    "Shift",
    "Transform",
    "draw_all",
    "parse_transforms",
]

View = Callable[[torch.Tensor], torch.Tensor]


def _uniform(generator: torch.Generator, lo: float, hi: float) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=generator))


class Transform:
    """One step's random view of the image: ``draw`` takes the random parameters from
    ``generator`` (shared by every row: a batched run equals its rows run one by one) and
    returns the view as a function of a ``(B, C, h, w)`` batch."""

    def draw(self, generator: torch.Generator, h: int, w: int) -> View:
        raise NotImplementedError

    def spec(self) -> str:
        raise NotImplementedError


@dataclass(frozen=True)
class Jitter(Transform):
    """Octave jitter: each step works on a random ``size×size`` crop (offsets uniform, from
    the seeded generator); the target is the same crop of the target image."""

    size: int

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ConfigError(f"--jitter is a crop side in pixels ≥ 1, not {self.size}")

    def check(self, h: int, w: int) -> None:
        if self.size > min(h, w):
            raise ConfigError(
                f"--jitter {self.size} is larger than the {h}×{w} image: use a crop side ≤ "
                f"{min(h, w)} (or a larger --size)"
            )

    def offsets(self, generator: torch.Generator, h: int, w: int) -> tuple[int, int]:
        self.check(h, w)
        oy = int(torch.randint(0, h - self.size + 1, (1,), generator=generator))
        ox = int(torch.randint(0, w - self.size + 1, (1,), generator=generator))
        return oy, ox

    def draw(self, generator: torch.Generator, h: int, w: int) -> View:
        oy, ox = self.offsets(generator, h, w)
        s = self.size
        return lambda t: t[:, :, oy : oy + s, ox : ox + s]

    def spec(self) -> str:
        return f"crop:{self.size}"


@dataclass(frozen=True)
class Shift(Transform):
    """A random crop ``pixels`` smaller on each axis (lucent's ``jitter(d)``): the image moves
    by up to ``pixels − 1`` in x and y."""

    pixels: int

    def __post_init__(self) -> None:
        if self.pixels < 1:
            raise ConfigError(f"transform jitter:{self.pixels}: the shift must be ≥ 1 pixel")

    def draw(self, generator: torch.Generator, h: int, w: int) -> View:
        d = self.pixels
        if d >= min(h, w):
            raise ConfigError(f"transform jitter:{d} shifts more than the {h}×{w} image")
        oy = int(torch.randint(0, d, (1,), generator=generator))
        ox = int(torch.randint(0, d, (1,), generator=generator))
        return lambda t: t[:, :, oy : oy + h - d, ox : ox + w - d]

    def spec(self) -> str:
        return f"jitter:{self.pixels}"


@dataclass(frozen=True)
class Pad(Transform):
    """``pixels`` of ``value`` on every side (no randomness)."""

    pixels: int
    value: float = 0.5

    def __post_init__(self) -> None:
        if self.pixels < 0:
            raise ConfigError(f"transform pad:{self.pixels}: padding must be ≥ 0")

    def draw(self, generator: torch.Generator, h: int, w: int) -> View:
        p, v = self.pixels, self.value
        return lambda t: F.pad(t, (p, p, p, p), value=v)

    def spec(self) -> str:
        return f"pad:{self.pixels}"


@dataclass(frozen=True)
class RandomScale(Transform):
    """Resize by a factor drawn uniformly from ``[low, high]`` (bilinear)."""

    low: float
    high: float

    def __post_init__(self) -> None:
        if not (0 < self.low <= self.high and math.isfinite(self.high)):
            raise ConfigError(
                f"transform scale:{self.low:g}-{self.high:g}: give 0 < low ≤ high (e.g. 0.9-1.1)"
            )

    def draw(self, generator: torch.Generator, h: int, w: int) -> View:
        f = _uniform(generator, self.low, self.high)
        size = (max(1, round(h * f)), max(1, round(w * f)))
        return lambda t: F.interpolate(t, size=size, mode="bilinear", align_corners=False)

    def spec(self) -> str:
        return f"scale:{self.low:g}-{self.high:g}"


@dataclass(frozen=True)
class RandomRotate(Transform):
    """Rotate about the centre by an angle drawn uniformly from ``[−degrees, degrees]``
    (bilinear, the corners filled by reflection)."""

    degrees: float

    def __post_init__(self) -> None:
        if not (0 <= self.degrees <= 180):
            raise ConfigError(f"transform rotate:{self.degrees:g}: give 0 to 180 degrees")

    def draw(self, generator: torch.Generator, h: int, w: int) -> View:
        a = math.radians(_uniform(generator, -self.degrees, self.degrees))
        c, s = math.cos(a), math.sin(a)

        def view(t: torch.Tensor) -> torch.Tensor:
            theta = torch.tensor([[c, -s, 0.0], [s, c, 0.0]], dtype=t.dtype, device=t.device)
            grid = F.affine_grid(theta.expand(t.shape[0], 2, 3), list(t.shape), False)
            return F.grid_sample(t, grid, "bilinear", "reflection", align_corners=False)

        return view

    def spec(self) -> str:
        return f"rotate:{self.degrees:g}"


@dataclass(frozen=True)
class Resize(Transform):
    """Resize to ``size×size`` (bilinear; no randomness): e.g. a 128-pixel image shown to the
    net at its training resolution, 224."""

    size: int

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ConfigError(f"transform resize:{self.size}: the side must be ≥ 1 pixel")

    def draw(self, generator: torch.Generator, h: int, w: int) -> View:
        size = (self.size, self.size)
        return lambda t: F.interpolate(t, size=size, mode="bilinear", align_corners=False)

    def spec(self) -> str:
        return f"resize:{self.size}"


def _range(arg: str) -> tuple[float, float]:
    lo, _, hi = arg.partition("-")
    return float(lo), float(hi or lo)


#: what a spec's names make (``name:argument``)
TRANSFORMS: dict[str, Callable[[str], Transform]] = {
    "pad": lambda a: Pad(int(a)),
    "jitter": lambda a: Shift(int(a)),
    "crop": lambda a: Jitter(int(a)),
    "scale": lambda a: RandomScale(*_range(a)),
    "rotate": lambda a: RandomRotate(float(a)),
    "resize": lambda a: Resize(int(a)),
}

#: Olah et al. 2017's robustness transforms (lucent's ``standard_transforms``, with scale and
#: rotation drawn from continuous ranges)
STANDARD = "pad:12,jitter:8,scale:0.9-1.1,rotate:10,jitter:4"


def parse_transforms(spec: str | Sequence[Transform] | None) -> tuple[Transform, ...]:
    """Transforms from a spec string (``pad:12,jitter:8,…``; the item ``standard`` stands for
    :data:`STANDARD`; empty for none) or as given."""
    if spec is None:
        return ()
    if not isinstance(spec, str):
        return tuple(spec)
    items = [s.strip() for s in spec.split(",")]
    items = [t for s in items for t in (STANDARD.split(",") if s == "standard" else [s])]
    out = []
    for item in items:
        if not item:
            continue
        name, _, arg = item.partition(":")
        if name not in TRANSFORMS:
            raise ConfigError(
                f"unknown transform {name!r} in --transforms {spec!r}: use "
                f"{', '.join(f'{k}:N' for k in TRANSFORMS)} (or 'standard')"
            )
        try:
            out.append(TRANSFORMS[name](arg))
        except ValueError:
            raise ConfigError(
                f"transform {item!r} in --transforms needs a number: e.g. pad:12, jitter:8, "
                "scale:0.9-1.1, rotate:10, crop:64"
            ) from None
    return tuple(out)


def draw_all(
    transforms: Sequence[Transform], generator: torch.Generator, h: int, w: int
) -> View | None:
    """One step's views of every transform, in order, as one function (None: no transforms).
    Each draws for the size its predecessors leave."""
    if not transforms:
        return None
    views = []
    probe = torch.zeros(1, 1, h, w)
    for t in transforms:
        v = t.draw(generator, *probe.shape[-2:])
        views.append(v)
        probe = v(probe)

    def view(x: torch.Tensor) -> torch.Tensor:
        for v in views:
            x = v(x)
        return x

    return view
