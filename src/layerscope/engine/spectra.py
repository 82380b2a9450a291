"""Singular-value spectra of perturbed activations (the inner-activations post, seed 003).

For each image ``a``: a group of ``a`` and ``group − 1`` noisy copies ``a + N(0, σ)``; the
group's activations at a layer form a ``group × features`` matrix, centred over the group;
its singular values ``s_i`` and explained-variance shares ``s_i² / Σ_j s_j²`` say how many
directions the layer keeps for noise of that size. A first share near 1 means the layer maps
the whole noise ball onto one direction (it discards the noise); a falling first share means
more of the noise passes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .layers import read_unchecked, resolve_layers

__all__ = ["activation_spectra", "group_spectrum"]


def group_spectrum(acts: torch.Tensor, k: int) -> tuple[list[float], list[float]]:
    """Top-``k`` singular values and explained-variance shares of a ``group × …`` activation
    matrix, centred over the group (float64)."""
    m = acts.detach().flatten(1).double()
    m = m - m.mean(0, keepdim=True)
    s = torch.linalg.svdvals(m)
    energy = float((s**2).sum())
    shares = (s**2 / energy).tolist() if energy > 0 else [0.0] * len(s)
    pad = max(0, k - len(s))
    return s[:k].tolist() + [0.0] * pad, shares[:k] + [0.0] * pad


@torch.no_grad()
def activation_spectra(
    model: torch.nn.Module,
    images: torch.Tensor,
    layers: str | Sequence[str],
    sigmas: Sequence[float] = (0.2, 0.1, 0.01),
    group: int = 16,
    k: int = 4,
    seed: int = 0,
) -> list[dict]:
    """Rows (layer, sigma, component, singular_value, share), averaged over ``images``.

    The noise is drawn from a generator seeded by ``seed``, so the same images give the same
    groups at every epoch: changes over training come from the model alone.
    """
    if group < 2:
        raise ValueError("a group needs the image and at least one noisy copy (group ≥ 2)")
    names = resolve_layers(model, layers)
    device = next(model.parameters()).device
    sums: dict[tuple[str, float], tuple[list[float], list[float]]] = {}
    for s_idx, sigma in enumerate(sigmas):
        gen = torch.Generator().manual_seed(seed * 1_000_003 + s_idx)
        for img in images:
            noise = torch.randn((group - 1, *img.shape), generator=gen) * sigma
            batch = torch.cat([img.unsqueeze(0), img.unsqueeze(0) + noise]).to(device)
            acts = read_unchecked(model, batch, names)
            for name in names:
                sv, sh = group_spectrum(acts[name], k)
                acc = sums.setdefault((name, sigma), ([0.0] * k, [0.0] * k))
                for i in range(k):
                    acc[0][i] += sv[i] / len(images)
                    acc[1][i] += sh[i] / len(images)
    rows = []
    for (name, sigma), (sv, sh) in sums.items():
        for i in range(k):
            rows.append(
                {
                    "layer": name,
                    "sigma": sigma,
                    "component": i + 1,
                    "singular_value": sv[i],
                    "share": sh[i],
                }
            )
    return rows
