"""Single-direction ablation (Morcos et al. 2018): accuracy as k randomly chosen units of a
layer (feature maps of a convolution, features of a linear layer) are zeroed or set to their
mean, k from 0 to all, over several random orders.

Memorising networks (trained on noise or shuffled labels) are expected to lose accuracy
faster than generalising ones.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .layers import activations, channel_axis, replaced_output, resolve_layers
from .models import Model

__all__ = ["ablation_curve", "default_ks"]


def default_ks(units: int, points: int = 10) -> list[int]:
    """0, then about ``points`` counts spaced geometrically up to ``units`` (all)."""
    ks = {0, units}
    for i in range(1, points):
        ks.add(round(units ** (i / (points - 1))))
    return sorted(k for k in ks if 0 <= k <= units)


def _batches(data: Sequence[tuple[torch.Tensor, torch.Tensor]], device):
    for x, y in data:
        yield x.to(device), y.to(device)


@torch.no_grad()
def ablation_curve(
    model: Model,
    layer: str,
    data: Sequence[tuple[torch.Tensor, torch.Tensor]],
    ks: Sequence[int] | None = None,
    points: int = 10,
    orders: int = 3,
    mode: str = "zero",
    seed: int = 0,
    layout: str = "auto",
) -> list[dict]:
    """Accuracy on ``data`` (a list of (images, labels) batches) with ``k`` units of ``layer``
    ablated, for each k (default: :func:`default_ks` with ``points``) and each of ``orders``
    random unit orders (seeded).

    ``mode``: ``zero`` sets the units to 0, ``mean`` to their mean over ``data`` (per unit,
    and per position for convolutions — the unit's mean map). The units are the channels,
    found by ``layout`` (:func:`~layerscope.layers.channel_layout`: dim 1 for convolutions,
    the last one for Swin's NHWC stages and ViT tokens).
    """
    if mode not in ("zero", "mean"):
        raise ValueError(f"mode must be zero or mean, not {mode!r}")
    name = resolve_layers(model, [layer])[0]
    device = next(model.parameters()).device
    # one pass: the unit count and, for mode=mean, each unit's mean activation
    total, count, axis = None, 0, 1
    for x, _ in _batches(data, device):
        a = activations(model, x, [name])[name]
        axis = channel_axis(a, layout)
        s = a.double().sum(0)
        total = s if total is None else total + s
        count += a.shape[0]
    if total is None:
        raise ValueError("ablation needs at least one batch of data")
    mean = (total / count).float()
    units = mean.shape[axis - 1]
    ks = list(ks) if ks is not None else default_ks(units, points)
    if any(k < 0 or k > units for k in ks):
        raise ValueError(f"k must be within 0..{units} (units of {name})")
    rows = []
    for order in range(orders):
        perm = torch.randperm(units, generator=torch.Generator().manual_seed(seed * 7919 + order))
        for k in ks:
            keep = torch.ones(units, device=device)
            keep[perm[:k].to(device)] = 0
            shape = [1] * (mean.dim() + 1)
            shape[axis] = units
            keep_b = keep.view(shape)
            fill = 0 if mode == "zero" else mean.unsqueeze(0) * (1 - keep_b)

            def ablate(out, keep_b=keep_b, fill=fill):
                return out * keep_b + fill

            correct = seen = 0
            with replaced_output(model, name, ablate):
                for x, y in _batches(data, device):
                    correct += int((model(x).argmax(1) == y).sum())
                    seen += len(y)
            rows.append(
                {
                    "layer": name,
                    "order": order,
                    "k": k,
                    "units": units,
                    "fraction": k / units,
                    "accuracy": correct / seen,
                    "mode": mode,
                }
            )
    return rows
