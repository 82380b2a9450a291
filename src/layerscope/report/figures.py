"""Figures of a depth run, built from its saved targets (never from variables in memory)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ..core.files import save_figure
from ..engine.images import load_image, save_grid
from ..engine.models import weights_label
from ..engine.results import TargetResult

__all__ = [
    "ablation_figure",
    "curves_figure",
    "filter_canvas",
    "filter_grid",
    "reconstruction_grid",
    "restarts_figure",
    "similarity_heatmaps",
    "spectra_figure",
    "state_label",
    "training_figure",
]


def state_label(t: TargetResult) -> str:
    w = weights_label(t.weights)
    return f"{t.model} · {w}"


def _layer_order(targets: Sequence[TargetResult]) -> list[str]:
    seen: list[str] = []
    for t in targets:
        if t.layer not in seen:
            seen.append(t.layer)
    return seen


def reconstruction_grid(targets: Sequence[TargetResult], path: Path, size: int) -> Path | None:
    """Target image, then one column per layer; one row per (model, weights, image)."""
    if not targets:
        return None
    layers = _layer_order(targets)
    rows, labels = [], []
    states: dict[tuple[str, str, str], dict[str, TargetResult]] = {}
    for t in targets:
        states.setdefault((t.model, t.weights, t.image), {})[t.layer] = t
    for (_m, _w, image), by_layer in states.items():
        first = next(iter(by_layer.values()))
        row = [load_image(image, size)]
        row += [by_layer[layer].reconstruction if layer in by_layer else None for layer in layers]
        rows.append(row)
        labels.append(f"{state_label(first)}\n{image}")
    return save_grid(rows, path, row_labels=labels, col_labels=["target", *layers])


def curves_figure(targets: Sequence[TargetResult], path: Path) -> Path | None:
    """Per layer: m_g (solid) against iterations with m_r (dashed), and m_i below; one colour
    per (model, weights, image)."""
    if not targets:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layers = _layer_order(targets)
    states = list(dict.fromkeys((t.model, t.weights, t.image) for t in targets))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    fig, axes = plt.subplots(
        2, len(layers), figsize=(2.6 * len(layers) + 1, 5.2), squeeze=False, sharex=True
    )
    for j, layer in enumerate(layers):
        top, bottom = axes[0][j], axes[1][j]
        for t in targets:
            if t.layer != layer or not t.curve:
                continue
            c = colors[states.index((t.model, t.weights, t.image)) % len(colors)]
            it = [r["iteration"] for r in t.curve]
            label = f"{state_label(t)} · {t.image}"
            top.plot(it, [r["embedding_distance"] for r in t.curve], color=c, label=label)
            top.axhline(t.curve[-1]["reference_distance"], color=c, ls="--", lw=0.8)
            bottom.plot(it, [r["input_distance"] for r in t.curve], color=c)
            bottom.axhline(t.curve[-1]["reference_input_distance"], color=c, ls="--", lw=0.8)
        top.set_title(layer, fontsize=9)
        top.set_yscale("log")
        bottom.set_xlabel("iteration")
        if j == 0:
            top.set_ylabel("m_g = ‖O(a)−O(a_g)‖  (--- m_r)")
            bottom.set_ylabel("m_i = ‖a_g−a‖  (--- ‖a′−a‖)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=min(4, len(labels)), fontsize=8)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    save_figure(fig, path, dpi=110)
    plt.close(fig)
    return path


def training_figure(rows: Sequence[dict], path: Path) -> Path | None:
    """Loss and accuracy per epoch, train and test, from a training run's metrics rows."""
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.4))
    for split in ("train", "test"):
        left.plot(epochs, [r[f"{split}_loss"] for r in rows], marker="o", ms=3, label=split)
        right.plot(epochs, [r[f"{split}_accuracy"] for r in rows], marker="o", ms=3, label=split)
    left.set(xlabel="epoch", ylabel="cross-entropy", title="loss")
    right.set(xlabel="epoch", ylabel="accuracy", title="accuracy", ylim=(0, 1.02))
    left.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    save_figure(fig, path, dpi=110)
    plt.close(fig)
    return path


def filter_canvas(w: torch.Tensor, columns: int = 8) -> torch.Tensor:
    """``3×H×W`` image of filters ``w`` (out × in × k × k), each min-max normalised on its own,
    tiles of k×k separated by 1 px of white, ``columns`` per row (in ≠ 3: the channel mean)."""
    import math

    w = w.detach().float().cpu()
    n, c, kh, kw = w.shape
    lo = w.flatten(1).min(1).values.view(n, 1, 1, 1)
    hi = w.flatten(1).max(1).values.view(n, 1, 1, 1)
    tiles = (w - lo) / (hi - lo).clamp_min(1e-12)
    if c != 3:
        tiles = tiles.mean(1, keepdim=True).expand(n, 3, kh, kw)
    rows = math.ceil(n / columns)
    canvas = torch.ones(3, rows * (kh + 1) - 1, columns * (kw + 1) - 1)
    for i in range(n):
        r, col = divmod(i, columns)
        canvas[:, r * (kh + 1) : r * (kh + 1) + kh, col * (kw + 1) : col * (kw + 1) + kw] = tiles[i]
    return canvas


def filter_grid(
    weights: Sequence[tuple[str, torch.Tensor]], path: Path, columns: int = 8
) -> Path | None:
    """First-layer filters (:func:`filter_canvas`), one panel per labelled weight tensor."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(label, w.detach().float().cpu()) for label, w in weights if w.dim() == 4]
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.6), squeeze=False)
    for ax, (label, w) in zip(axes[0], panels, strict=True):
        n, _, kh, kw = w.shape
        canvas = filter_canvas(w, columns)
        ax.imshow(canvas.permute(1, 2, 0).numpy(), interpolation="nearest")
        ax.set_title(f"{label}\n{n} filters {kh}×{kw}", fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    save_figure(fig, path, dpi=130)
    plt.close(fig)
    return path


def ablation_figure(rows: Sequence[dict], path: Path) -> Path | None:
    """Accuracy against the fraction of units ablated: mean over random orders with the
    min–max band, one line per (weights, layer)."""
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    curves: dict[tuple[str, str], dict[float, list[float]]] = {}
    for r in rows:
        key = (str(r["weights"]), str(r["layer"]))
        curves.setdefault(key, {}).setdefault(float(r["fraction"]), []).append(r["accuracy"])
    for (w, layer), pts in curves.items():
        xs = sorted(pts)
        mean = [sum(pts[x]) / len(pts[x]) for x in xs]
        label = f"{weights_label(w)} · {layer}"
        (line,) = ax.plot(xs, mean, marker="o", ms=3, label=label)
        ax.fill_between(
            xs, [min(pts[x]) for x in xs], [max(pts[x]) for x in xs], alpha=0.2,
            color=line.get_color(),
        )  # fmt: skip
    ax.set(xlabel="fraction of units ablated", ylabel="accuracy", ylim=(0, 1.02))
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    save_figure(fig, path, dpi=110)
    plt.close(fig)
    return path


def spectra_figure(spectra: Sequence[dict], metrics: Sequence[dict], path: Path) -> Path | None:
    """First-component share and first singular value against epochs, per layer (lines per σ;
    train solid, held-out dashed), next to the train/test loss."""
    if not spectra:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layers = list(dict.fromkeys(r["layer"] for r in spectra))
    sigmas = sorted({float(r["sigma"]) for r in spectra}, reverse=True)
    fig, axes = plt.subplots(
        2, len(layers) + 1, figsize=(3 * (len(layers) + 1), 5.4), squeeze=False
    )
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for j, layer in enumerate(layers):
        for si, sigma in enumerate(sigmas):
            for split, ls in (("train", "-"), ("test", "--")):
                pts = sorted(
                    (r["epoch"], r["share"], r["singular_value"])
                    for r in spectra
                    if r["layer"] == layer and float(r["sigma"]) == sigma
                    and r["split"] == split and int(r["component"]) == 1
                )  # fmt: skip
                if not pts:
                    continue
                label = f"σ={sigma:g} {split}" if j == 0 else None
                axes[0][j].plot([p[0] for p in pts], [p[1] for p in pts], ls, color=colors[si],
                                label=label)  # fmt: skip
                axes[1][j].plot([p[0] for p in pts], [p[2] for p in pts], ls, color=colors[si])
        axes[0][j].set_title(layer, fontsize=9)
        axes[1][j].set_xlabel("epoch")
    axes[0][0].set_ylabel("first component's share")
    axes[1][0].set_ylabel("first singular value")
    axes[0][0].legend(fontsize=7)
    loss = axes[0][-1]
    for split in ("train", "test"):
        loss.plot([r["epoch"] for r in metrics], [r[f"{split}_loss"] for r in metrics], label=split)
    loss.set_title("loss", fontsize=9)
    loss.legend(fontsize=7)
    axes[1][-1].axis("off")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    save_figure(fig, path, dpi=110)
    plt.close(fig)
    return path


def similarity_heatmaps(
    rows: Sequence[dict],
    layers_a: Sequence[str],
    layers_b: Sequence[str],
    out_dir: Path,
    label_a: str,
    label_b: str,
) -> list[Path]:
    """One heatmap per measure (layers of A × layers of B, colour bar) beside the best-match
    curve: for each layer of A, the highest similarity over B's layers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for measure in dict.fromkeys(r["measure"] for r in rows):
        grid = torch.full((len(layers_a), len(layers_b)), float("nan"))
        for r in rows:
            if r["measure"] == measure:
                grid[layers_a.index(r["layer_a"]), layers_b.index(r["layer_b"])] = r["value"]
        fig, (ax, curve) = plt.subplots(
            1, 2, figsize=(4 + 0.35 * len(layers_b) + 4, 1.5 + 0.35 * len(layers_a)),
            gridspec_kw={"width_ratios": [max(len(layers_b), 2), 4]},
        )  # fmt: skip
        im = ax.imshow(grid.numpy(), origin="lower", vmin=0, vmax=1, cmap="magma", aspect="auto")
        ax.set_xticks(range(len(layers_b)), layers_b, rotation=90, fontsize=7)
        ax.set_yticks(range(len(layers_a)), layers_a, fontsize=7)
        ax.set_xlabel(label_b)
        ax.set_ylabel(label_a)
        ax.set_title(measure)
        fig.colorbar(im, ax=ax, fraction=0.05)
        if len(layers_a) <= 12 and len(layers_b) <= 12:  # small grids: the numbers too
            for i in range(len(layers_a)):
                for j in range(len(layers_b)):
                    v = float(grid[i, j])
                    if v == v:
                        ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=6,
                                color="white" if v < 0.5 else "black")  # fmt: skip
        best = torch.nan_to_num(grid, nan=-1).max(1).values.numpy()
        curve.plot(range(len(layers_a)), best, marker="o", label="best match")
        mine = [r for r in rows if r["measure"] == measure]
        seeds = {r["layer_a"]: r.get("baseline_untrained_seeds") for r in mine}
        if all(isinstance(seeds.get(n), float) for n in layers_a):
            curve.plot(range(len(layers_a)), [seeds[n] for n in layers_a], ls=":", marker=".",
                       color="grey", label="two untrained seeds of A")  # fmt: skip
        for key, style, text in (("baseline_shuffled", "--", "shuffled rows"),
                                 ("baseline_random", "-.", "random directions")):  # fmt: skip
            value = mine[0].get(key) if mine else None
            if isinstance(value, float) and value == value:
                curve.axhline(value, ls=style, color="grey", lw=1, label=text)
        curve.legend(fontsize=7, loc="lower left")
        curve.set_xticks(range(len(layers_a)), layers_a, rotation=90, fontsize=7)
        curve.set(ylim=(0, 1.02), title=f"best match in {label_b}", ylabel=measure)
        fig.tight_layout()
        path = out_dir / f"{measure}.png"
        save_figure(fig, path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths


def over_training_figure(
    rows: Sequence[dict], layers: Sequence[str], path: Path, label: str
) -> Path | None:
    """Similarity of each layer to its final state against the epoch, one panel per measure,
    shallow layers light and deep layers dark: "layers converge bottom-up" reads as the light
    curves reaching 1 first."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    measures = list(dict.fromkeys(r["measure"] for r in rows))
    if not measures:
        return None
    fig, axes = plt.subplots(1, len(measures), figsize=(5 * len(measures), 3.8), squeeze=False)
    colours = plt.cm.viridis_r(np.linspace(0.1, 0.95, max(len(layers), 2)))
    for ax, measure in zip(axes[0], measures, strict=True):
        for colour, layer in zip(colours, layers, strict=False):
            pts = sorted(
                (r["epoch"], r["value"])
                for r in rows
                if r["measure"] == measure and r["layer"] == layer
            )
            if pts:
                ax.plot(*zip(*pts, strict=True), marker="o", ms=3, color=colour, label=layer)
        ax.set(xlabel="epoch (0 = initialisation)", ylabel=f"{measure} to final",
               ylim=(0, 1.02), title=f"{label}: {measure} with its final state")  # fmt: skip
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    plt.close(fig)
    return path


def restarts_figure(rows: Sequence[dict], path: Path) -> Path | None:
    """Spread of the restarts' reconstructions and their mean m_g by layer (in run order),
    one line per (model, weights, image); m_r dashed for scale."""
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 3.6))
    states = list(dict.fromkeys((r["model"], r["weights"], r["image"]) for r in rows))
    for state in states:
        sel = [r for r in rows if (r["model"], r["weights"], r["image"]) == state]
        x = range(len(sel))
        label = f"{state[0]} · {weights_label(state[1])} · {state[2]}"
        a.plot(x, [r["spread"] for r in sel], "o-", label=label)
        b.plot(x, [r["embedding_distance"] for r in sel], "o-", label=f"m_g {label}")
        b.plot(x, [r["reference_distance"] for r in sel], "--", lw=0.8, label="m_r")
        for ax in (a, b):
            ax.set_xticks(list(x), [r["layer"] for r in sel], rotation=30, fontsize=7)
    a.set_title("spread of restarts: mean ‖a_g^i − a_g^j‖")
    b.set_title("their mean m_g (dashed: m_r)")
    b.set_yscale("log")
    a.legend(fontsize=7)
    for ax in (a, b):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    save_figure(fig, path, dpi=110)
    plt.close(fig)
    return path
