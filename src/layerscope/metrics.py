"""Distances of the depth study (seed part IV), per row of a batch, accumulated in float64.

``m_g = ‖O(a) − O(a_g)‖₂`` (:func:`embedding_distance`), ``m_i = ‖a_g − a‖₂``
(:func:`input_distance`) and the reference ``m_r = ‖O(a) − O(a′)‖₂`` with
``a′ = a + N(0, σ′)`` (:func:`shifted`). Each is reported as an L2 norm over all elements
(the seeds' "sum") and as a root mean square per element, so layers of different sizes compare.
"""

from __future__ import annotations

import math

import torch

__all__ = ["l2", "rms", "shifted"]


def l2(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Row-wise ``‖a − b‖₂`` over all non-batch elements, float64, shape ``(batch,)``."""
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}")
    return (a.detach().double() - b.detach().double()).flatten(1).norm(dim=1)


def rms(distance: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """An L2 distance divided by √(elements per row): the root-mean-square difference."""
    return distance / math.sqrt(like[0].numel())


def shifted(image: torch.Tensor, sigma: float, generator: torch.Generator) -> torch.Tensor:
    """``a′ = a + N(0, σ′)``: the slightly shifted reference input (not clipped, as the seeds)."""
    noise = torch.randn(image.shape, generator=generator, dtype=image.dtype)
    return image + sigma * noise.to(image.device)
