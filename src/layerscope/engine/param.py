"""Image parameterisations: what the descent moves, and how it becomes an image.

``pixel`` (the papers' and every preset's but ``figure``): the descent moves the pixels
themselves, unbounded, as Badger's code does. ``fourier``: it moves a 2-D spectrum scaled by
``1/f^decay`` (low frequencies first, so an equal step changes coarse structure more than
fine noise); ``decorrelated``: it moves colour in a decorrelated basis (the square root of
ImageNet's colour covariance, so a step in each channel is a step along a principal colour
axis); ``fourier-decorrelated``: both (Olah et al. 2017, "Feature Visualization"). Every
parameterisation but ``pixel`` ends in a sigmoid, so the image is always in (0, 1).

A parameterisation maps the latent to the image (:meth:`ImageParam.image`, differentiable)
and an image back to its latent (:meth:`ImageParam.latent`): the descent starts from an
image (a0, the last octave's result), moves the latent, and hands back images, so octaves,
blur and padding work on images whatever the parameterisation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..core.errors import ConfigError

__all__ = ["PARAMS", "ImageParam", "image_param"]

#: The square root of ImageNet's colour covariance (its columns are the principal colour axes
#: scaled by their standard deviations), as published with Olah et al. 2017; normalised below
#: so its largest column has unit norm.
_COLOUR_SQRT = torch.tensor(
    [[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]], dtype=torch.float64
)
_COLOUR = _COLOUR_SQRT / _COLOUR_SQRT.norm(dim=0).max()
#: keeps the sigmoid's inverse finite on a saturated pixel
_EDGE = 1e-4


@dataclass(frozen=True)
class ImageParam:
    """``fourier``: the latent is a scaled spectrum; ``decorrelate``: colours in the
    decorrelated basis; ``decay``: the spectrum's ``1/f^decay`` (1 in Olah et al.)."""

    fourier: bool = False
    decorrelate: bool = False
    decay: float = 1.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.decay) and self.decay >= 0):
            raise ConfigError(f"--decay must be a number ≥ 0, not {self.decay}")

    @property
    def name(self) -> str:
        parts = (("fourier", self.fourier), ("decorrelated", self.decorrelate))
        return "-".join(p for p, on in parts if on) or "pixel"

    @property
    def is_pixel(self) -> bool:
        return not (self.fourier or self.decorrelate)

    def _scale(self, h: int, w: int, like: torch.Tensor) -> torch.Tensor:
        fy = torch.fft.fftfreq(h, dtype=torch.float64)[:, None]
        fx = torch.fft.rfftfreq(w, dtype=torch.float64)[None, :]
        f = (fy**2 + fx**2).sqrt().clamp_min(1.0 / max(h, w))
        return (1.0 / f**self.decay).to(like.device, like.real.dtype)

    def _colour(self, like: torch.Tensor) -> torch.Tensor:
        return _COLOUR.to(like.device, like.dtype)

    def image(self, z: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
        """The ``(B, 3, h, w)`` image of latent ``z`` (``size``: the image's ``h, w``, needed
        under ``fourier``, where ``z`` is ``(B, 3, h, w//2+1, 2)``)."""
        if self.is_pixel:
            return z
        y = z
        if self.fourier:
            h, w = size if size is not None else (z.shape[2], 2 * (z.shape[3] - 1))
            spectrum = torch.view_as_complex(z.contiguous()) * self._scale(h, w, z)
            y = torch.fft.irfft2(spectrum, s=(h, w), norm="ortho")
        if self.decorrelate:
            y = torch.einsum("bchw,dc->bdhw", y, self._colour(y))
        return torch.sigmoid(y)

    def latent(self, x: torch.Tensor) -> torch.Tensor:
        """The latent whose image is ``x`` (pixels clamped into (0, 1) first, where the
        parameterisation ends in a sigmoid)."""
        if self.is_pixel:
            return x
        y = torch.logit(x.clamp(_EDGE, 1 - _EDGE))
        if self.decorrelate:
            inv = torch.linalg.inv(_COLOUR).to(y.device, y.dtype)
            y = torch.einsum("bchw,dc->bdhw", y, inv)
        if self.fourier:
            h, w = y.shape[-2:]
            spectrum = torch.fft.rfft2(y, norm="ortho") / self._scale(h, w, y)
            y = torch.view_as_real(spectrum).contiguous()
        return y


#: What ``--param`` takes.
PARAMS: dict[str, ImageParam] = {
    "pixel": ImageParam(),
    "fourier": ImageParam(fourier=True),
    "decorrelated": ImageParam(decorrelate=True),
    "fourier-decorrelated": ImageParam(fourier=True, decorrelate=True),
}


def image_param(name: str | ImageParam, decay: float = 1.0) -> ImageParam:
    """A parameterisation by name (:data:`PARAMS`) or as given."""
    if isinstance(name, ImageParam):
        return name
    if name not in PARAMS:
        raise ConfigError(f"--param must be one of {', '.join(PARAMS)}, not {name!r}")
    p = PARAMS[name]
    return p if p.is_pixel else ImageParam(p.fourier, p.decorrelate, decay)
