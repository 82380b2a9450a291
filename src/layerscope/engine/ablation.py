"""Single-direction ablation (Morcos et al. 2018): accuracy as k randomly chosen units of a
layer (feature maps of a convolution, features of a linear layer) are zeroed or set to their
mean, k from 0 to all, over several random orders.

Memorising networks (trained on noise or shuffled labels) are expected to lose accuracy
faster than generalising ones.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .layers import channel_axis, cut_points, read_unchecked, replaced_output, resolve_layers
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
        a = read_unchecked(model, x, [name])[name]
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
    variants = []  # (order, k, keep mask, fill), every curve point
    shape = [1] * (mean.dim() + 1)
    shape[axis] = units
    for order in range(orders):
        perm = torch.randperm(units, generator=torch.Generator().manual_seed(seed * 7919 + order))
        for k in ks:
            keep = torch.ones(units, device=device)
            keep[perm[:k].to(device)] = 0
            keep_b = keep.view(shape)
            fill = 0 if mode == "zero" else mean.unsqueeze(0) * (1 - keep_b)
            variants.append((order, k, keep_b, fill))
    correct = _count_correct(model, name, data, device, variants)
    seen = sum(len(y) for _, y in data)
    # accuracy with none of the units ablated, per order: the curves compared across nets are
    # relative to it (a memorising net at 100% and a generalising one at 60% start apart)
    intact = {order: c / seen for (order, k, _, _), c in zip(variants, correct, strict=True)
              if k == 0}  # fmt: skip
    return [
        {"layer": name, "order": order, "k": k, "units": units, "fraction": k / units,
         "accuracy": c / seen, "mode": mode,
         "relative_accuracy": (c / seen) / intact[order] if intact.get(order) else float("nan")}
        for (order, k, _, _), c in zip(variants, correct, strict=True)
    ]  # fmt: skip


#: rows per forward when the curve's points share one pass through the layers before the cut
ROWS_PER_FORWARD = 512


def _count_correct(model: Model, name: str, data, device, variants: list) -> list[int]:
    """Correct predictions for each ablation variant. At a cut point (nothing after the layer
    uses an earlier value: ResNet stages, sequential nets) the layers before it run once per
    batch and its output is replicated, one copy per variant, through the rest of the net;
    elsewhere each variant is a full forward."""
    correct = [0] * len(variants)
    shared = name in cut_points(model, [name])
    for x, y in _batches(data, device):
        step = max(1, ROWS_PER_FORWARD // len(x)) if shared else 1
        for start in range(0, len(variants), step):
            chunk = variants[start : start + step]

            def ablate(out, chunk=chunk):
                return torch.cat([out * keep_b + fill for _, _, keep_b, fill in chunk])

            with replaced_output(model, name, ablate):
                pred = model(x).argmax(1).view(len(chunk), len(x))
            for i in range(len(chunk)):
                correct[start + i] += int((pred[i] == y).sum())
    return correct
