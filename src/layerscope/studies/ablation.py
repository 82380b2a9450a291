"""Ablation study: single-direction ablation curves of one or more checkpoints on the same axes
(a net trained on real labels against one trained on noise), one curve per layer.

Each checkpoint is evaluated on its own data set (from its sidecar) unless ``data`` is given;
``split="auto"`` takes the test split for a net whose test accuracy is above twice chance and
the training split for a memorising one (its test accuracy is chance by construction), as the
split used is what the curve is about. ``ablation.csv`` records the split of every row.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from ..core.config import Config
from ..core.errors import ConfigError, LayerscopeError
from ..core.progress import progress_bar
from ..core.tables import read_csv, write_csv
from ..engine.ablation import ablation_curve
from ..engine.data import load_dataset
from ..engine.device import resolve_device
from ..engine.layers import resolve_layers
from ..engine.models import load_model, read_sidecar, weights_label
from ..protocol.lifecycle import Run, Study, execute
from ..protocol.options import DATA_ROOT, DEVICE, Option, shared
from ..report.terminal import TextTable, done

__all__ = ["STUDY", "AblationConfig", "report", "run", "summary"]


@dataclass
class AblationConfig(Config):
    weights: list[str] = field(default_factory=list)  # needed: refused empty by Config
    model: str | None = None
    data: str | None = None
    layers: list[str] = field(default_factory=lambda: ["layer3"])
    orders: int = 3
    points: int = 10
    mode: str = "zero"
    split: str = "auto"
    n: int | None = 512
    batch_size: int = 128
    seed: int = 0
    data_root: str | None = None
    device: str = "auto"

    def __post_init__(self) -> None:
        plain = [w for w in self.weights if w in ("none", "imagenet")]
        if plain and not (self.model and self.data):
            raise LayerscopeError(
                f"--weights {plain[0]} is not a checkpoint, so no sidecar names its model and "
                "data set: pass --model and --data too (or give checkpoint paths)"
            )
        for name in ("orders", "points", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be at least 1")
        if self.n is not None and self.n < 1:
            raise ConfigError(f"--n must be at least 1 image, not {self.n}")
        if self.mode not in ("zero", "mean"):
            raise ConfigError(f"--mode must be zero or mean, not {self.mode!r}")
        if self.split not in ("auto", "train", "test"):
            raise ConfigError(f"--split must be auto, train or test, not {self.split!r}")


def _data_for(weights: str, config: AblationConfig) -> tuple[list, str, str]:
    side = read_sidecar(Path(weights))
    data = config.data or side.get("data")
    if data is None:
        raise LayerscopeError(f"{weights} has no sidecar naming its data set: pass --data")
    params = dict(side.get("data_params") or {}) if data == side.get("data") else {}
    if data == "photos":
        params = {k: v for k, v in params.items() if k != "length"} | {"augment": False}
    args = (side.get("input_size"), side.get("seed", 0), config.data_root or side.get("data_root"))
    dataset = load_dataset(data, "train", *args, **params)
    split = config.split
    if split == "auto":  # a memorising net (test accuracy ≤ 2× chance) is judged on its train set
        chance = 1 / max(2, len(dataset.classes))
        split = "test" if side.get("test_accuracy", 1.0) > 2 * chance else "train"
    if split == "test":
        dataset = load_dataset(data, "test", *args, **params)
    if config.n is not None and config.n < len(dataset):
        dataset = torch.utils.data.Subset(dataset, list(range(config.n)))
    batches = list(DataLoader(dataset, batch_size=config.batch_size, shuffle=False))
    return batches, data, split


def run(config: AblationConfig, out: str | Path | None = None, progress: bool = False) -> Path:
    """Ablation curves of every checkpoint and layer into ``out``; returns it."""
    return execute(STUDY, config, out, progress=progress)


def _work(config: AblationConfig, run: Run) -> None:
    run_dir = run.dir
    device = resolve_device(config.device)
    jobs = []
    for w in config.weights:
        model = load_model(config.model, w) if config.model else load_model(w)
        model.to(device)
        batches, data, split = _data_for(w, config)
        jobs.append((w, model, batches, data, split, resolve_layers(model, config.layers)))
    run.meta(device=str(device))
    rows: list[dict] = []
    total = sum(len(j[5]) for j in jobs)

    def interrupted() -> str:
        curves = len({(r["weights"], r["layer"]) for r in rows})
        return (
            f"interrupted: {curves} of {total} curves kept in {run_dir / 'ablation.csv'} "
            "(ablate does not resume: rerun with a new --out)"
        )

    run.interrupted = interrupted
    with progress_bar(total, enabled=run.progress) as bar:
        for w, model, batches, data, split, layers in jobs:
            for layer in layers:
                bar.describe(f"{weights_label(w)} · {layer}")
                curve = ablation_curve(
                    model,
                    layer,
                    batches,
                    points=config.points,
                    orders=config.orders,
                    mode=config.mode,
                    seed=config.seed,
                )
                ident = {"weights": w, "model": model.name, "data": data, "split": split}
                rows += [ident | r for r in curve]
                write_csv(run_dir / "ablation.csv", rows)  # kept as each curve finishes
                run.saved()
                bar.advance(1)


def _mean_accuracy(rows: list[dict]) -> dict[tuple, list[tuple[float, float]]]:
    """(weights, layer, split) → [(share of units ablated, accuracy averaged over orders)]."""
    curves: dict[tuple, dict[float, list[float]]] = {}
    for r in rows:
        key = (r["weights"], r["layer"], r["split"])
        curves.setdefault(key, {}).setdefault(r["k"] / r["units"], []).append(r["accuracy"])
    return {
        key: [(share, sum(a) / len(a)) for share, a in sorted(points.items())]
        for key, points in curves.items()
    }


def report(run_dir: str | Path) -> Path:
    """``ablation.png`` and ``report.html`` from ``ablation.csv``."""
    from ..report import figure as page_figure
    from ..report import table, write_page
    from ..report.figures import ablation_figure

    run_dir = Path(run_dir)
    rows = read_csv(run_dir / "ablation.csv") if (run_dir / "ablation.csv").exists() else []
    figure = ablation_figure(rows, run_dir / "ablation.png")
    lines = [
        [weights_label(w), layer, split, curve[0][1], curve[len(curve) // 2][1], curve[-1][1]]
        for (w, layer, split), curve in _mean_accuracy(rows).items()
    ]
    body = (
        "<p>Single-direction ablation: k random units of a layer set to zero (or their mean), "
        "accuracy averaged over random orders.</p>"
        + (page_figure("ablation.png", "accuracy against the share of units ablated, per layer")
           if figure else "")
        + table(["weights", "layer", "split", "none ablated", "half", "all"], lines)
        + '<p>Data: <a href="ablation.csv">ablation.csv</a>, '
        '<a href="config.json">config.json</a>.</p>'
    )  # fmt: skip
    return write_page(run_dir, f"layerscope ablate · {run_dir.name}", "Ablation", body)


def summary(run_dir: str | Path) -> dict:
    """Per curve: the accuracy with no unit and with half of the units ablated."""
    rows = read_csv(Path(run_dir) / "ablation.csv")
    out: dict = {}
    for (w, layer, _), curve in _mean_accuracy(rows).items():
        label = f"{weights_label(w)} {layer}"
        out[f"{label} acc"] = curve[0][1]
        out[f"{label} acc half ablated"] = curve[len(curve) // 2][1]
    return out


OPTIONS = (
    shared("weights", "checkpoints: their sidecars name the model and data", many=True),
    shared("layers", many=True),
    shared("model", "default: from each sidecar"),
    shared("data", "default: each checkpoint's own"),
    Option("split", "auto | train | test (auto: train for memorising nets)."),
    Option("mode", "zero | mean: what an ablated unit is set to."),
    Option("orders", "Random orders of the units.", kind=int),
    Option("points", "Values of k from 0 to all units.", kind=int),
    Option("n", "Images evaluated.", kind=int),
    Option("seed", "Seed of the unit orders.", kind=int),
    DATA_ROOT,
    DEVICE,
)  # fmt: skip


def terminal(run_dir: Path) -> list:
    """Accuracy (mean over the orders) at every share ablated, per net, layer and split."""
    rows = read_csv(Path(run_dir) / "ablation.csv")
    keys = list(dict.fromkeys((r["weights"], r["layer"], r["split"]) for r in rows))
    points = max(len({r["k"] for r in rows if (r["weights"], r["layer"], r["split"]) == key})
                 for key in keys)  # fmt: skip
    table = TextTable(
        f"ablation · {Path(run_dir).name}: accuracy (mean over orders) @ share ablated",
        ("weights", "layer", "split", *[f"k{i}" for i in range(points)]),
    )
    for key in keys:
        sel = [r for r in rows if (r["weights"], r["layer"], r["split"]) == key]
        cells = []
        for k in sorted({r["k"] for r in sel}):
            acc = [r["accuracy"] for r in sel if r["k"] == k]
            cells.append(f"{sum(acc) / len(acc):.3f} @{k / sel[0]['units']:.0%}")
        cells += [""] * (points - len(cells))
        table.add(weights_label(key[0]), key[1], key[2], *cells)
    return [table, done(run_dir, "")]


STUDY = Study(
    kind="ablate",
    terminal=terminal,
    table="ablation.csv",
    config=AblationConfig,
    work=_work,
    report=report,
    summary=summary,
    title="Single-direction ablation",
    options=OPTIONS,
    command="ablate",
    help="Single-direction ablation: accuracy as k random units of a layer are zeroed.",
)
