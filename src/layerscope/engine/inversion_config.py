"""Every constant of a depth descent (:class:`InversionConfig`) and the named presets
(:data:`PRESETS`: default, paper, blog, fast). The descent itself is
:mod:`layerscope.inversion`."""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..core.config import Config
from ..core.errors import ConfigError
from .descent import (
    STEPS,
    GaussianBlur,
    Jitter,
    Schedule,
)
from .device import (
    check_compile,
    check_precision,
)
from .objectives import L1Loss
from .param import image_param
from .transforms import parse_transforms

__all__ = ["PRESETS", "InversionConfig"]


@dataclass(frozen=True)
class InversionConfig(Config):
    """Every constant of the descent. ``preset("paper")`` reproduces Badger's code."""

    iterations: int = 500
    lr: Schedule = Schedule(0.1, 0.001)
    step: str = "normalized"
    loss: L1Loss = L1Loss("sum", 1.0)
    blur: GaussianBlur | None = GaussianBlur(strength="step")  # Badger's: "fixed"
    jitter: Jitter | None = None
    init_mean: float = 0.7
    init_std: float = 1 / 20
    reference_sigma: float = 1 / 18
    record_every: int = 10
    seed: int = 0
    batching: str = "auto"
    fold_batchnorm: bool = True
    precision: str = "fp32"
    max_batch: int | None = None
    compile: str = "off"
    #: what the descent moves (:mod:`~layerscope.param`; the papers': pixel)
    param: str = "pixel"
    #: robustness transforms drawn each step, seen by the target too
    #: (:mod:`~layerscope.transforms`; e.g. ``jitter:4,rotate:5``)
    transforms: str = ""

    def __post_init__(self) -> None:
        image_param(self.param)
        parse_transforms(self.transforms)
        if not isinstance(self.lr, Schedule):  # lr=(0.1, 0.01) or lr=0.05 from Python
            object.__setattr__(self, "lr", _schedule(self.lr))
        check_precision(self.precision)
        check_compile(self.compile)
        if self.max_batch is not None and self.max_batch < 1:
            raise ConfigError(f"--max-batch must be at least 1, not {self.max_batch}")
        if self.step not in STEPS:
            raise ConfigError(f"--step must be one of {', '.join(STEPS)}, not {self.step!r}")
        if self.iterations < 1:
            raise ConfigError(f"--iterations must be at least 1, not {self.iterations}")
        if self.record_every < 1:
            raise ConfigError(f"--record-every must be at least 1, not {self.record_every}")
        if self.batching not in ("auto", "staged", "per-layer"):
            raise ConfigError(
                f"--batching must be auto, staged or per-layer, not {self.batching!r}"
            )
        if self.lr.start <= 0 or self.lr.end < 0:
            raise ConfigError(
                f"--lr must be positive (START > 0, END ≥ 0), not {self.lr.start:g},{self.lr.end:g}"
            )
        if not self.reference_sigma > 0:
            raise ConfigError(f"--reference-sigma must be > 0, not {self.reference_sigma:g}")
        if not self.init_std >= 0:
            raise ConfigError(f"init_std must be ≥ 0, not {self.init_std:g}")

    @classmethod
    def preset(cls, name: str = "default", **overrides) -> InversionConfig:
        """``default`` (normalised step, the blur fading with the step: converges without
        tuning and does not lose ground late), ``paper`` (Badger's
        code: N 500, ε 0.1, loss 0.15·ΣL1, σ 2.4→0.4, seed 999, σ′ 1/18), ``blog`` (N 220,
        ε 2.5→1.5, σ′ 1/25), ``fast`` (Adam, fewer steps to the same quality)."""
        if name not in PRESETS:
            raise ConfigError(f"unknown --preset {name!r}: choose from {', '.join(PRESETS)}")
        return replace(PRESETS[name], **overrides)


def _schedule(value) -> Schedule:
    """A step size as given from Python: a Schedule, (start, end), or one number."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return Schedule(float(value), float(value))
    if isinstance(value, dict):
        return Schedule(**value)
    try:
        start, end = value
        return Schedule(float(start), float(end))
    except (TypeError, ValueError):
        raise ConfigError(
            f"--lr takes a Schedule(start, end), a (start, end) pair or one number, not {value!r}"
        ) from None


PRESETS: dict[str, InversionConfig] = {
    "default": InversionConfig(),
    "paper": InversionConfig(
        iterations=500,
        lr=Schedule(0.1, 0.1),
        step="gradient",
        loss=L1Loss("sum", 0.15),
        blur=GaussianBlur(3, Schedule(2.4, 0.4)),
        seed=999,
        reference_sigma=1 / 18,
    ),
    "blog": InversionConfig(
        iterations=220,
        lr=Schedule(2.5, 1.5),
        step="gradient",
        loss=L1Loss("sum", 1.0),
        blur=GaussianBlur(3, Schedule(2.4, 0.4)),
        seed=999,
        reference_sigma=1 / 25,
    ),
    "fast": InversionConfig(iterations=200, lr=Schedule(0.05, 0.002), step="adam"),
}
