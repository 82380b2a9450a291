"""Jacobian spectra by depth: the singular values of each layer's input Jacobian at an image,
for several weight states (``layerscope.invertibility.jacobian_spectrum``): the measured
version of Badger's "spiky ball" argument.

``ConditioningConfig`` → :func:`run` → ``config.json``, ``conditioning.csv`` (weights, layer,
depth, m, n, method, σ_max, σ_k, numerical rank, condition number of the restricted map),
``spectra.csv`` (every computed σ), ``conditioning.png`` and ``report.html``.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path

from ..core.config import Config
from ..core.errors import ConfigError
from ..core.files import read_json, save_figure
from ..core.progress import progress_bar
from ..core.tables import read_csv, write_csv
from ..engine.images import load_image
from ..engine.invertibility import jacobian_spectrum
from ..engine.layers import resolve_layers
from ..engine.models import load_model, weights_label
from ..engine.sensitivity import relative_depths
from ..protocol.lifecycle import Run, Study, execute
from ..protocol.options import Option, shared
from ..report.terminal import TextTable, done

__all__ = ["STUDY", "ConditioningConfig", "report", "run", "summary"]


@dataclass
class ConditioningConfig(Config):
    model: str = "resnet18"
    weights: list[str] = field(default_factory=lambda: ["none"])
    layers: list[str] = field(default_factory=lambda: ["all"])
    image: str = "chelsea"
    size: int = 32
    k: int = 20
    method: str = "auto"
    dense_limit: float = 2.5e7
    seed: int = 0

    def __post_init__(self) -> None:
        if self.k < 1 or self.size < 2 or not self.weights:
            raise ConfigError("--k ≥ 1, --size ≥ 2 and at least one --weights")
        if self.method not in ("auto", "dense", "lanczos"):
            raise ConfigError(f"--method must be auto, dense or lanczos, not {self.method!r}")


def run(config: ConditioningConfig, out: str | Path | None = None, progress: bool = False) -> Path:
    """Every weight state's Jacobian spectrum at every layer into ``out``; returns it."""
    return execute(STUDY, config, out, progress=progress)


def _work(config: ConditioningConfig, run: Run) -> None:
    run_dir = run.dir
    image = load_image(config.image, config.size)
    models = {w: load_model(config.model, w, seed=config.seed, input_size=config.size)
              for w in config.weights}  # fmt: skip
    first = next(iter(models.values()))
    layers = resolve_layers(first, config.layers)
    depths = relative_depths(first, layers, (config.size, config.size), layers)
    run.meta(device="cpu", layers=layers)
    rows: list[dict] = []
    spectra: list[dict] = []
    run.interrupted = lambda: f"interrupted: {len(rows)} layers kept in {run_dir}"
    with progress_bar(len(models) * len(layers), enabled=run.progress) as bar:
        for w, model in models.items():
            for layer in layers:
                bar.describe(f"{weights_label(w)} · {layer}")
                s = jacobian_spectrum(model, image, layer, k=config.k, method=config.method,
                                      dense_limit=config.dense_limit)  # fmt: skip
                rows.append({"weights": w, "layer": layer, "depth": depths[layer]}
                            | {k: v for k, v in s.items() if k != "sigma"})  # fmt: skip
                spectra += [{"weights": w, "layer": layer, "index": i + 1, "sigma": float(v)}
                            for i, v in enumerate(s["sigma"])]  # fmt: skip
                write_csv(run_dir / "conditioning.csv", rows)
                write_csv(run_dir / "spectra.csv", spectra)
                run.saved()
                bar.advance(1)


def report(run_dir: str | Path) -> Path:
    from ..report import figure, write_page
    from ..report import table as _table

    run_dir = Path(run_dir)
    meta = read_json(run_dir / "config.json")
    rows = read_csv(run_dir / "conditioning.csv")
    spectra = read_csv(run_dir / "spectra.csv")
    _figure(rows, spectra, run_dir / "conditioning.png")
    study = meta["study"]
    body = (
        f"<p>{html.escape(study['model'])} at {html.escape(study['image'])}, "
        f"{study['size']}×{study['size']} px. Singular values of ∂O_l/∂x: exact (dense "
        "Jacobian, full spectrum, numerical rank at max(m, n)·eps·σ_max, condition number of "
        "the restricted map σ_max/σ_min≠0) where it fits, else the top k by Lanczos on "
        "Jacobian-vector and vector-Jacobian products (the full Jacobian never formed). A "
        "spectrum that falls by decades is Badger's 'spiky ball': a few input directions "
        "move the layer, most barely do.</p>"
        + figure("conditioning.png", "singular values of the input Jacobian of each layer, "
                 "largest first, on a log scale")
        + _table(["weights", "layer", "depth", "m", "n", "method", "σ_max", "σ_k", "rank",
                  "condition"],
                 [[weights_label(r["weights"]), r["layer"], r["depth"], r["m"], r["n"],
                   r["method"], r["sigma_max"], r["sigma_k"], r["rank"], r["condition"]]
                  for r in rows])
        + '<p>Files: <a href="conditioning.csv">conditioning.csv</a>, '
        '<a href="spectra.csv">spectra.csv</a>.</p>'
    )  # fmt: skip
    return write_page(run_dir, f"layerscope conditioning · {run_dir.name}",
                         "Jacobian spectra by depth", body)  # fmt: skip


def _figure(rows: list[dict], spectra: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    states = list(dict.fromkeys(r["weights"] for r in rows))
    layers = list(dict.fromkeys(r["layer"] for r in rows))
    fig, axes = plt.subplots(1, len(states) + 1, figsize=(5 * (len(states) + 1), 3.8),
                             squeeze=False)  # fmt: skip
    cmap = plt.get_cmap("viridis")
    for j, state in enumerate(states):
        ax = axes[0][j]
        for i, layer in enumerate(layers):
            s = [r["sigma"] for r in spectra if (r["weights"], r["layer"]) == (state, layer)]
            if s:
                ax.plot(range(1, len(s) + 1), s, color=cmap(i / max(1, len(layers) - 1)),
                        label=layer)  # fmt: skip
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(f"{weights_label(state)}: σ_i of ∂O/∂x", fontsize=9)
        ax.set_xlabel("index i")
        ax.legend(fontsize=6)
        ax.grid(alpha=0.3)
    ax = axes[0][-1]
    for state in states:
        sel = [r for r in rows if r["weights"] == state]
        ax.plot([r["depth"] for r in sel], [r["sigma_max"] for r in sel], "o-",
                label=f"σ_max {weights_label(state)}")  # fmt: skip
        cond = [(r["depth"], r["condition"]) for r in sel if r["condition"] == r["condition"]]
        if cond:
            ax.plot(*zip(*cond, strict=True), "s--", label=f"condition {weights_label(state)}")
    ax.set_yscale("log")
    ax.set_xlabel("relative depth")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    plt.close(fig)


def summary(run_dir: str | Path) -> dict:
    """Per weight state: the numerical rank and condition number at the first and last layer."""
    rows = read_csv(Path(run_dir) / "conditioning.csv")
    out: dict = {}
    for w in dict.fromkeys(r["weights"] for r in rows):
        mine = [r for r in rows if r["weights"] == w]
        for r in (mine[0], mine[-1]):
            label = f"{weights_label(w)} {r['layer']}"
            out[f"{label} rank"] = r["rank"]
            out[f"{label} condition"] = r["condition"]
    return out


OPTIONS = (
    shared("model"),
    shared("weights", many=True),
    shared("layers", "default: every stage", many=True),
    shared("image"),
    Option("size", "Image side (the dense spectrum needs small sizes).", kind=int),
    Option("k", "Top singular values by Lanczos where the Jacobian is big.", kind=int),
    Option("method", "auto | dense | lanczos."),
    Option("seed", "Seed of untrained weights.", kind=int),
)  # fmt: skip


def terminal(run_dir: Path) -> list:
    """Each layer's singular values and condition number."""
    table = TextTable(
        f"conditioning · {Path(run_dir).name}",
        ("weights", "layer", "m × n", "method", "σ_max", "σ_k", "rank", "condition"),
    )
    for r in read_csv(Path(run_dir) / "conditioning.csv"):
        table.add(weights_label(r["weights"]), r["layer"], f"{r['m']}×{r['n']}", r["method"],
                  f"{r['sigma_max']:.4g}", f"{r['sigma_k']:.4g}", r["rank"],
                  f"{r['condition']:.4g}")  # fmt: skip
    return [table, done(run_dir)]


STUDY = Study(
    kind="conditioning",
    terminal=terminal,
    table="conditioning.csv",
    config=ConditioningConfig,
    work=_work,
    report=report,
    summary=summary,
    free=(),  # runs on the CPU: no device option
    title="Jacobian spectra by depth",
    options=OPTIONS,
    command="study conditioning",
    help=(
        "Singular values of each layer's input Jacobian at an image, by depth, for each weight "
        "state: the measured 'spiky ball' (matrix-free where the Jacobian is big)."
    ),
)
