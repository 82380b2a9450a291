"""Training-effect study (seed IV-8 … IV-11): the same model untrained, trained on natural
images and trained on noise, side by side at every stage.

Two depth runs share one directory: ``blur/`` (Badger's procedure) and ``noblur/`` (IV-8,
IV-10: without the blur a trained net is easier to match, and a noise-trained net reaches
m_g < m_r with images that look like its noise), each on the image and an out-of-distribution
image (IV-9); plus ``filters.png``, the first convolution's filters per weight state (IV-11),
and ``filters.csv``, their spectral concentration
(:func:`~layerscope.metrics.filter_concentration`),
and ``report.html`` linking all of it.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field, replace
from pathlib import Path

from torch import nn

from ..core.config import Config
from ..core.errors import LayerscopeError
from ..core.tables import write_csv
from ..engine.inversion import InversionConfig
from ..engine.metrics import filter_concentration
from ..engine.models import load_model, weights_label
from ..protocol.lifecycle import Run, Study, execute
from ..protocol.options import DEVICE, Option, shared
from ..report.figures import filter_grid
from ..report.terminal import done
from . import depth
from .depth import final_table, summary_rows
from .descent_options import DESCENT_OPTIONS

__all__ = ["STUDY", "TrainingEffectConfig", "first_conv", "run", "summary"]


@dataclass
class TrainingEffectConfig(Config):
    model: str = "resnet18"
    weights: list[str] = field(default_factory=lambda: ["none"])
    image: str = "chelsea"
    ood_image: str = "brick"
    layers: list[str] = field(default_factory=lambda: ["all"])
    size: int = 224
    normalize: str | None = None  # None: from a checkpoint's sidecar, else none
    device: str = "auto"
    inversion: InversionConfig = field(default_factory=lambda: InversionConfig(iterations=300))

    def __post_init__(self) -> None:
        if self.inversion.blur is None:
            raise LayerscopeError("the training-effect study runs with and without blur itself")
        if not self.weights:
            raise LayerscopeError("--weights is empty: give at least one weight state")


def first_conv(net: nn.Module) -> tuple[str, nn.Conv2d] | None:
    """The first ``Conv2d`` in module order (ResNet ``conv1``, VGG ``features.0`` …)."""
    for name, m in net.named_modules():
        if isinstance(m, nn.Conv2d):
            return name, m
    return None


def _depth_config(config: TrainingEffectConfig, blur: bool) -> depth.DepthConfig:
    inv = config.inversion if blur else replace(config.inversion, blur=None)
    return depth.DepthConfig(
        models=[config.model],
        weights=list(config.weights),
        images=[config.image, config.ood_image],
        layers=list(config.layers),
        size=config.size,
        normalize=config.normalize,
        device=config.device,
        inversion=inv,
    )


def run(
    config: TrainingEffectConfig | None = None,
    out: str | Path | None = None,
    resume: bool = False,
    progress: bool = False,
) -> Path:
    """Both depth runs (with and without blur) and the filters into ``out``; returns it."""
    return execute(STUDY, config, out, resume, progress)


def _work(config: TrainingEffectConfig, run: Run) -> None:
    run_dir = run.dir
    run.meta()
    # IV-11: first-layer filters of every weight state (loading also validates the weights).
    panels, rows = [], []
    for w in config.weights:
        model = load_model(config.model, w, normalize=config.normalize, input_size=config.size)
        found = first_conv(model.net)
        if found is not None:
            label = weights_label(w)
            panels.append((f"{label} · {found[0]}", found[1].weight))
            share = filter_concentration(found[1].weight)
            rows.append({"weights": w, "layer": found[0], "filters": len(share),
                         "kernel": found[1].weight.shape[-1],
                         "concentration": float(share.mean()),
                         "concentration_median": float(share.median())})  # fmt: skip
    filter_grid(panels, run_dir / "filters.png")
    write_csv(run_dir / "filters.csv", rows)
    for sub, blur in (("blur", True), ("noblur", False)):
        depth.run(
            _depth_config(config, blur),
            out=run_dir / sub,
            resume=(run_dir / sub / "config.json").exists(),
            progress=run.progress,
        )
        run.saved()  # a finished depth run is kept; --resume goes on from the next


def _filters_table(run_dir: Path) -> str:
    """The filters' spectral concentration per weight state (runs before it have none)."""
    from ..core.tables import read_csv
    from ..report import table

    path = run_dir / "filters.csv"
    if not path.is_file():
        return ""
    rows = read_csv(path)
    return (
        "<p>Concentration: the share of a filter's energy in its two strongest spatial "
        "frequencies (1 for a pure grating, 2/k² for a delta; wavelet-like filters are "
        "narrow-band), mean and median over the filters.</p>"
        + table(["weights", "layer", "filters", "k", "concentration", "median"],
                [[weights_label(r["weights"]), r["layer"], r["filters"], r["kernel"],
                  r["concentration"], r["concentration_median"]] for r in rows])
    )  # fmt: skip


def write_report(run_dir: Path) -> Path:
    """The study page: filters, then each depth run's grid, curves and final distances."""
    from ..report import figure, write_page

    sections = []
    for sub, title in (("blur", "With Gaussian blur"), ("noblur", "Without blur (IV-8, IV-10)")):
        rows = summary_rows(run_dir / sub)
        table = "<tr><th>weights</th><th>image</th><th>layer</th><th>m_g</th><th>m_r</th>"
        table += "<th>m_g&lt;m_r</th><th>m_i</th></tr>"
        for r in rows:
            w = str(r["weights"])
            w = weights_label(w)
            table += (
                f"<tr><td>{html.escape(w)}</td><td>{html.escape(str(r['image']))}</td>"
                f"<td>{html.escape(str(r['layer']))}</td><td>{r['embedding_distance']:.4g}</td>"
                f"<td>{r['reference_distance']:.4g}</td><td>{r['m_g<m_r']}</td>"
                f"<td>{r['input_distance']:.4g}</td></tr>"
            )
        sections.append(
            f'<h2>{title}</h2><p><a href="{sub}/report.html">full report</a></p>'
            + figure(f"{sub}/grid.png", f"{title.lower()}: the target and its reconstruction "
                     "from every layer, per weights")
            + figure(f"{sub}/curves.png", f"{title.lower()}: m_g, m_i and m_r over the descent")
            + f"<table>{table}</table>"
        )  # fmt: skip
    body = (
        "<h2>First-layer filters (IV-11)</h2>"
        + figure("filters.png", "the first layer's filters of every weights, side by side")
        + _filters_table(run_dir)
        + "".join(sections)
    )
    return write_page(run_dir, f"layerscope training effect · {run_dir.name}",
                      "Training effect: untrained vs trained vs noise-trained", body)  # fmt: skip


#: ``layerscope report`` draws every study's page through ``report(run_dir)``
report = write_report


def summary(run_dir: str | Path) -> dict:
    """Per depth run (blur, noblur): targets and how many reach m_g < m_r."""
    out: dict = {}
    for sub in ("blur", "noblur"):
        rows = summary_rows(Path(run_dir) / sub)
        out[f"{sub} targets"] = len(rows)
        out[f"{sub} m_g<m_r"] = sum(r["m_g<m_r"] == "yes" for r in rows)
    return out


OPTIONS = (
    shared("model"),
    shared("weights", many=True),
    shared("image"),
    Option("ood_image", "An out-of-distribution image (IV-9)."),
    shared("layers", "default: every stage", many=True),
    DESCENT_OPTIONS[0],  # --preset
    Option("size", "Image side.", kind=int),
    *(o for o in DESCENT_OPTIONS
      if o.name in ("iterations", "lr", "step", "seed", "blur_strength")),
    Option("normalize", "none | imagenet | inception (default: pretrained weights' own, the "
           "checkpoint's sidecar, else the model's own)."),
    DEVICE,
)  # fmt: skip


def terminal(run_dir: Path) -> list:
    """The final distances with the blur and without it."""
    return [final_table(Path(run_dir) / sub) for sub in ("blur", "noblur")] + [done(run_dir)]


STUDY = Study(
    kind="training-effect",
    terminal=terminal,
    table="filters.csv",
    config=TrainingEffectConfig,
    work=_work,
    report=write_report,
    summary=summary,
    resumable=True,
    title="Untrained vs trained vs noise-trained, with and without blur (IV-8 … IV-11)",
    options=OPTIONS,
    command="study training-effect",
    help=(
        "Untrained vs trained vs noise-trained at every stage, with and without blur, plus an "
        "out-of-distribution image and the first layer's filters (seed IV-8 … IV-11)."
    ),
)
