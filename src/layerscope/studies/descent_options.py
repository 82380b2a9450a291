"""The depth descent's options, shared by every study that runs it (depth,
training-effect): one declaration of each flag, its parsing and the config fields it sets."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from ..core.config import config_to_dict
from ..engine.inversion import InversionConfig
from ..protocol.options import Option, number, pair

__all__ = ["DEFAULT_ITERATIONS", "DESCENT_OPTIONS"]

#: The embedded default (``layerscope depth``, ``make demo``): a real ImageNet-trained net
#: against its untrained twin, every stage, a photo of an ImageNet class and a texture unlike
#: ImageNet's photos; 200 steps at 224 px fit in 5 minutes on 2 CPU cores.
DEFAULT_ITERATIONS = 200


def _preset(data: dict, name: str) -> None:
    """``--preset``: the descent's constants (``paper``/``blog``: Badger 2022's and his
    blog post's, at 299 px, the net fed [0, 1] pixels as his code fed ResNet-50)."""
    inversion = InversionConfig.preset(name)
    if name == "default":
        inversion = replace(inversion, iterations=DEFAULT_ITERATIONS)
    data["inversion"] = inversion.to_dict()
    if name in ("paper", "blog"):
        data["size"] = 299
        data["normalize"] = "none"  # the sources' protocol: the net sees [0, 1] pixels


def _blur(data: dict, on: bool) -> None:
    """``--blur/--no-blur`` (applied after ``--sigma`` and ``--blur-kernel``: off wins)."""
    inv = data["inversion"]
    inv["blur"] = (inv.get("blur") or config_to_dict(InversionConfig().blur)) if on else None


def _blur_field(key: str) -> Callable[[dict, object], None]:
    def apply(data: dict, value) -> None:
        inv = data["inversion"]
        inv["blur"] = (inv.get("blur") or config_to_dict(InversionConfig().blur)) | {key: value}

    return apply


def _loss_field(key: str) -> Callable[[dict, object], None]:
    def apply(data: dict, value) -> None:
        data["inversion"]["loss"] = data["inversion"]["loss"] | {key: value}

    return apply


def _schedule(name: str) -> Callable[[object], dict]:
    parse = pair(name)
    return lambda v: dict(zip(("start", "end"), parse(v), strict=True))


#: The descent's options, shared by every study that runs it (depth, training-effect).
DESCENT_OPTIONS = (
    Option("preset", "default | paper | blog | fast (paper/blog: Badger's constants).",
           path="inversion", apply=_preset),
    Option("iterations", "Descent steps (paper 500).", "inversion.iterations", int),
    Option("step", "gradient (seed) | normalized | adam.", "inversion.step"),
    Option("lr", "Step size START,END (linear schedule).", "inversion.lr",
           parse=_schedule("lr")),
    Option("blur_kernel", "Blur kernel size.", "inversion.blur.kernel_size", int,
           apply=_blur_field("kernel_size")),
    Option("sigma", "Blur σ START,END (linear schedule).", "inversion.blur.sigma",
           parse=_schedule("sigma"), apply=_blur_field("sigma")),
    Option("blur_strength", "step (default: the blur fades with the step size) | fixed "
           "(Badger's).", "inversion.blur.strength", apply=_blur_field("strength")),
    Option("blur", "Gaussian blur after each step (--no-blur: off).", "inversion.blur", bool,
           apply=_blur),
    Option("loss", "L1 reduction: sum (seed) | mean | relative.", "inversion.loss.reduction",
           apply=_loss_field("reduction")),
    Option("loss_scale", "Loss scale s (seed: 0.15).", "inversion.loss.scale", parse=number,
           apply=_loss_field("scale")),
    Option("reference_sigma", "σ′ of a′ = a + N(0, σ′), e.g. 1/18.",
           "inversion.reference_sigma", parse=number),
    Option("jitter", "Random crop side for octave jitter (off).", "inversion.jitter", int,
           parse=lambda v: {"size": v}),
    Option("transforms", "Robustness transforms each step, seen by the target too: e.g. "
           "jitter:4,rotate:5 (off).", "inversion.transforms"),
    Option("param", "What the descent moves: pixel (the papers') | fourier | decorrelated | "
           "fourier-decorrelated.", "inversion.param"),
    Option("record_every", "Record distances every k steps.", "inversion.record_every", int),
    Option("seed", "Seed of a0, a′ and jitter (paper: 999).", "inversion.seed", int),
    Option("batching", "auto | staged | per-layer.", "inversion.batching"),
    Option("precision", "fp32 | tf32 (CUDA) | bf16 (autocast); a, the step and metrics stay "
           "float32.", "inversion.precision"),
    Option("max_batch", "Most targets per batch (out of memory: the batch is halved and goes "
           "on).", "inversion.max_batch", int),
    Option("compile", "off | on | auto (CUDA): the step through torch.compile (a CUDA graph).",
           "inversion.compile"),
)  # fmt: skip
