"""What a generation run is made of: its octave stages (:class:`Stage`), every constant
(:class:`GenerationConfig`) and the named presets (:data:`GENERATION_PRESETS`). The runs
themselves are :mod:`layerscope.generation`."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace

from ..core.errors import ConfigError
from .descent import STEPS, Schedule
from .param import image_param
from .transforms import parse_transforms

__all__ = ["GENERATION_PRESETS", "MODES", "GenerationConfig", "Stage"]

MODES = ("single", "combined", "difference")


@dataclass(frozen=True)
class Stage:
    """One octave: resize to ``size`` (bilinear), then ``iterations`` steps with ε and σ
    schedules, each step on a random ``crop×crop`` window when ``crop`` is set, growing the
    image by ``pad`` pixels per side after each step when ``pad`` > 0."""

    size: int
    iterations: int
    lr: Schedule
    sigma: Schedule | None = field(default_factory=lambda: Schedule(2.4, 0.8))
    crop: int | None = None
    pad: int = 0

    def __post_init__(self) -> None:
        if self.size < 1 or self.iterations < 1:
            raise ConfigError(
                f"an octave needs size ≥ 1 and iterations ≥ 1, not {self.size}, {self.iterations}"
            )
        if self.crop is not None and not 1 <= self.crop <= self.size:
            raise ConfigError(
                f"octave crop {self.crop} must be between 1 and the octave's size {self.size}"
            )
        if self.pad < 0:
            raise ConfigError(f"octave padding must be ≥ 0, not {self.pad}")

    def scaled(self, factor: float) -> Stage:
        crop = None if self.crop is None else max(1, round(self.crop * factor))
        return replace(self, size=max(1, round(self.size * factor)), crop=crop)


@dataclass(frozen=True)
class GenerationConfig:
    """Every constant of a generation run.

    ``C``: the class target (one value, or one per model); ``absolute``: ``|C − logit|`` (else
    ``C − logit``); ``weights``: per-model weights ``d, e, …`` (default ½ each for
    ``combined``, 1 for ``single`` and ``difference``); ``reference``: the reference code's
    arithmetic (``C`` 200, 400; ``absolute`` off; weights ½, ½ or 2, −2). Priors (off by
    default): ``input_l1·Σ|a|``, ``tv``·total variation, ``bn_prior``·BatchNorm statistics
    (first BatchNorm ×``bn_first``). ``output_scale``: the ``s`` of ``s·Σ|ŷ − O|`` (III-4).
    """

    stages: tuple[Stage, ...]
    step: str = "normalized"
    C: tuple[float, ...] = (200.0,)
    absolute: bool = True
    weights: tuple[float, ...] | None = None
    reference: bool = False
    input_l1: float = 0.0
    tv: float = 0.0
    bn_prior: float = 0.0
    bn_first: float = 10.0
    output_scale: float = 0.05
    blur_kernel: int = 3
    blur_strength: str = "fixed"  # "step": the blur fades with the step (GaussianBlur)
    init_mean: float = 0.7
    init_std: float = 1 / 20
    pad_value: float = 0.7
    record_every: int = 10
    seed: int = 0
    fold_batchnorm: bool = True
    precision: str = "fp32"
    compile: str = "off"
    copies: int = 1
    #: what the descent moves (:mod:`~layerscope.param`): pixel | fourier | decorrelated |
    #: fourier-decorrelated
    param: str = "pixel"
    #: robustness transforms drawn each step (:mod:`~layerscope.transforms`), after the
    #: octave's jitter crop: ``pad:12,jitter:8,scale:0.9-1.1,rotate:10`` or ``standard``
    transforms: str = ""

    def __post_init__(self) -> None:
        from .device import check_compile, check_precision

        image_param(self.param)
        parse_transforms(self.transforms)
        check_precision(self.precision)
        check_compile(self.compile)
        if self.copies < 1:
            raise ConfigError(f"--copies must be at least 1, not {self.copies}")
        if not self.stages:
            raise ConfigError("a generation needs at least one octave stage")
        if self.step not in STEPS:
            raise ConfigError(f"--step must be one of {', '.join(STEPS)}, not {self.step!r}")
        for name in ("input_l1", "tv", "bn_prior"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0):
                raise ConfigError(f"--{name.replace('_', '-')} must be ≥ 0, not {v:g}")
        if self.record_every < 1:
            raise ConfigError(f"--record-every must be at least 1, not {self.record_every}")

    @classmethod
    def preset(cls, name: str = "default", size: int | None = None, **overrides):
        """A named setting (:data:`GENERATION_PRESETS`); ``size`` rescales every octave so
        the first one has side ``size`` (crops scale with it)."""
        if name not in GENERATION_PRESETS:
            raise ConfigError(
                f"unknown --preset {name!r}: choose from {', '.join(GENERATION_PRESETS)}"
            )
        cfg = GENERATION_PRESETS[name]
        if size is not None:
            if size < 8:
                raise ConfigError(f"--size must be at least 8 pixels, not {size}")
            f = size / cfg.stages[0].size
            cfg = replace(cfg, stages=tuple(s.scaled(f) for s in cfg.stages))
        return replace(cfg, **overrides)

    @property
    def iterations(self) -> int:
        return sum(s.iterations for s in self.stages)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> GenerationConfig:
        d = dict(d)
        stages = []
        for s in d["stages"]:
            s = dict(s)
            s["lr"] = Schedule(**s["lr"])
            s["sigma"] = Schedule(**s["sigma"]) if s.get("sigma") else None
            stages.append(Stage(**s))
        d["stages"] = tuple(stages)
        d["C"] = tuple(d["C"])
        if d.get("weights") is not None:
            d["weights"] = tuple(d["weights"])
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


#: ``default``: two octaves for small nets on a CPU (normalised step, the first octave at
#: ``--size``, the second 1.25× larger with a jitter crop of the first size).
#: ``googlenet`` and ``inceptionv3``: the reference's class-image settings (EXPERIMENTS §2),
#: plain gradient steps. ``figure``: feature-visualisation images for a figure (Olah et al.
#: 2017): a scaled Fourier spectrum in decorrelated colour, the standard robustness
#: transforms, Adam at 0.05, the logit maximised from a grey start, one 128-pixel octave of
#: 256 steps (chosen by ``benchmarks/generation.py --figure``; docs/benchmarks.md).
GENERATION_PRESETS: dict[str, GenerationConfig] = {
    "default": GenerationConfig(
        stages=(
            Stage(64, 120, Schedule(0.05, 0.01), Schedule(1.0, 0.4)),
            Stage(80, 80, Schedule(0.03, 0.005), Schedule(0.8, 0.3), crop=64),
        ),
    ),
    "figure": GenerationConfig(
        stages=(Stage(128, 256, Schedule(0.05, 0.05), None),),
        step="adam",
        absolute=False,
        init_mean=0.5,
        init_std=0.01,
        param="fourier-decorrelated",
        transforms="standard",
    ),
    "googlenet": GenerationConfig(
        stages=(
            Stage(299, 220, Schedule(1.5, 1.0), Schedule(2.4, 0.8)),
            Stage(490, 500, Schedule(1.3, 0.45), Schedule(1.5, 0.4), crop=470),
        ),
        step="gradient",
    ),
    "inceptionv3": GenerationConfig(
        stages=(
            Stage(299, 100, Schedule(1.5, 1.0), Schedule(2.4, 0.8)),
            Stage(340, 100, Schedule(1.3, 0.45), Schedule(1.5, 0.4), crop=320),
            Stage(390, 100, Schedule(1.3, 0.45), Schedule(1.5, 0.4)),
        ),
        step="gradient",
    ),
}
