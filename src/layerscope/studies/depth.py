"""The depth study (seed part IV): reconstruct an image from every stage of one or more models,
trained and untrained, and measure m_g, m_r and m_i over the descent.

``DepthConfig`` → :func:`run` → a run directory (``config.json``, ``metrics.csv``,
``summary.csv``, ``targets/<key>/`` per target, ``grid.png``, ``curves.png``, ``report.html``).
Targets are written as they finish; ``resume=True`` skips the ones already on disk.
"""

from __future__ import annotations

import html
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..core.config import Config, at_least
from ..core.errors import ConfigError, LayerscopeError
from ..core.faults import fault_point
from ..core.files import read_json
from ..core.tables import read_csv, write_csv
from ..engine.descent import how_it_ran
from ..engine.device import check_fits, resolve_device
from ..engine.images import load_image
from ..engine.inversion import InversionConfig, Job, invert_jobs
from ..engine.layers import execution_order, resolve_layers
from ..engine.models import NORMALIZATIONS, OFFLINE, batchnorm_pairs, load_model, weights_label
from ..engine.recognition import judge_for
from ..engine.results import TargetResult
from ..protocol.lifecycle import Run, Study, execute
from ..protocol.options import DEVICE, Option, shared
from ..protocol.runs import record_step
from ..report import figure, read_meta
from ..report import table as html_table
from ..report.figures import curves_figure, reconstruction_grid
from ..report.terminal import TextTable, done, formatted, step_line
from .descent_options import DEFAULT_ITERATIONS, DESCENT_OPTIONS

__all__ = [
    "STUDY",
    "DepthConfig",
    "load_targets",
    "report",
    "restart_spread",
    "run",
    "summary",
    "summary_rows",
]


#: The smallest image side a depth run takes (the blur pads by reflection, the nets downsample).
MIN_SIZE = 8


def _real(models: list[str]) -> bool:
    return bool(models) and all(m in OFFLINE for m in models)


def default_weights(models: list[str]) -> list[str]:
    """The weight states a depth run compares when none are given: untrained and ImageNet
    where every model's ImageNet weights install with layerscope (no download), else
    untrained only."""
    return ["none", "imagenet"] if _real(models) else ["none"]


def default_images(models: list[str]) -> list[str]:
    """The images of a depth run when none are given: for the real ImageNet nets a photo of
    an ImageNet class (chelsea, a cat) and a texture unlike ImageNet's photos (brick); else
    the photo only."""
    return ["chelsea", "brick"] if _real(models) else ["chelsea"]


@dataclass
class DepthConfig(Config):
    """What to run. ``layers=["all"]`` means every stage of each model; ``weights=None`` and
    ``images=None``: :func:`default_weights` and :func:`default_images` of the models."""

    models: list[str] = field(default_factory=lambda: ["efficientnet_lite0"])
    weights: list[str] | None = None
    images: list[str] | None = None
    layers: list[str] = field(default_factory=lambda: ["all"])
    size: int = 224
    #: None: pretrained weights' own preprocessing, a checkpoint's sidecar, else the
    #: architecture's own (none; [−1, 1] for the EfficientNet-Lite nets)
    normalize: str | None = None
    model_seed: int = 0
    device: str = "auto"
    inversion: InversionConfig = field(
        default_factory=lambda: InversionConfig(iterations=DEFAULT_ITERATIONS)
    )
    num_classes: int | None = at_least(1)  # head size for checkpoints without a sidecar
    restarts: int = 1  # K > 1: every target also from K − 1 other a0 (non-uniqueness)
    #: the independent classifier that judges each reconstruction's recognisability: "auto"
    #: (a real EfficientNet-Lite other than the inverted model), a model name with ImageNet
    #: weights, a checkpoint with class names, or "none"
    judge: str = "auto"

    def __post_init__(self) -> None:
        if self.weights is None:
            self.weights = default_weights(list(self.models))
        if self.images is None:
            self.images = default_images(list(self.models))
        if self.size < MIN_SIZE:
            raise ConfigError(
                f"--size {self.size} is too small: images are at least {MIN_SIZE}×{MIN_SIZE} "
                "(Badger uses 299, the default is 224)"
            )
        if self.normalize is not None and self.normalize not in NORMALIZATIONS:
            raise ConfigError(
                f"--normalize must be one of {', '.join(NORMALIZATIONS)}, not {self.normalize!r}"
            )
        if self.inversion.jitter is not None:
            self.inversion.jitter.check(self.size, self.size)
        if self.restarts < 1:
            raise ConfigError(f"--restarts must be at least 1, not {self.restarts}")
        # what cannot fit is refused before any image is loaded (the engine checks again
        # with the layers' activations, once the models are built)
        rows = len(self.models) * len(self.weights) * len(self.images) * self.restarts
        rows *= 1 if "all" in self.layers else len(self.layers)
        pixels = 3.0 * self.size**2
        check_fits(4 * pixels * 6, f"one descent at --size {self.size} (the image, a′, a0, "
                   "the input, its gradient and its step)", "use a smaller --size (Badger "
                   "uses 299)")  # fmt: skip
        check_fits(8 * pixels * rows, f"keeping {rows:,} reconstructions of {self.size}×"
                   f"{self.size}", "fewer --restarts, images or layers per run, or a smaller "
                   "--size")  # fmt: skip


def load_targets(run_dir: str | Path, tensors: bool = True) -> list[TargetResult]:
    """Every finished target of a run (those whose ``result.json`` was written), in the run's
    order: model, weights, image as configured, layers by depth. ``tensors=False`` leaves the
    reconstructions on disk (for tables and the resume check)."""
    run_dir = Path(run_dir)
    targets = [
        TargetResult.load(p.parent, tensors) for p in sorted(run_dir.glob("targets/*/result.json"))
    ]
    cfg_path = run_dir / "config.json"
    if cfg_path.exists():
        meta = read_json(cfg_path)
        config = DepthConfig.from_dict(meta["study"])
        states = {s: k for k, s in enumerate(_states(config))}
        layers = meta.get("layers", {})

        def rank(t: TargetResult):
            order = layers.get(t.model, [])
            depth = order.index(t.layer) if t.layer in order else len(order)
            return (states.get((t.model, t.weights, t.image), len(states)), depth)

        targets.sort(key=rank)
    return targets


def _write_tables(run_dir: Path) -> list[TargetResult]:
    targets = load_targets(run_dir, tensors=False)
    write_csv(run_dir / "metrics.csv", (row for t in targets for row in t.rows()))
    write_csv(run_dir / "summary.csv", (t.summary() for t in targets if t.curve))
    return targets


def restart_spread(targets: list[TargetResult]) -> list[dict]:
    """Per (model, weights, image, layer) with several restarts: the mean pairwise distance
    ‖a_g^i − a_g^j‖ between the reconstructions from different a0 (≈ 0 where the layer is
    injective and the descent converges; large where many inputs match the layer equally
    well), next to the mean m_g, m_i and m_r."""
    groups: dict[tuple, list[TargetResult]] = {}
    for t in targets:
        groups.setdefault((t.model, t.weights, t.image, t.layer), []).append(t)
    rows = []
    for (m, w, image, layer), ts in groups.items():
        if len(ts) < 2:
            continue
        recs = torch.cat([t.reconstruction.flatten(1).double() for t in ts])
        i, j = torch.triu_indices(len(ts), len(ts), offset=1)
        spread = float((recs[i] - recs[j]).norm(dim=1).mean())
        finals = [t.final for t in ts]
        rows.append({
            "model": m, "weights": w, "image": image, "layer": layer, "restarts": len(ts),
            "spread": spread,
            "embedding_distance": sum(f["embedding_distance"] for f in finals) / len(ts),
            "input_distance": sum(f["input_distance"] for f in finals) / len(ts),
            "reference_distance": finals[0]["reference_distance"],
            "reference_input_distance": finals[0]["reference_input_distance"],
        })  # fmt: skip
    return rows


def _states(config: DepthConfig) -> list[tuple[str, str, str]]:
    """(model, weights as loaded, image) in configured order."""
    return [
        (m, "none" if w in ("", "none") else w, i)
        for m in config.models
        for w in config.weights
        for i in config.images
    ]


def run(
    config: DepthConfig | None = None,
    out: str | Path | None = None,
    resume: bool = False,
    progress: bool = False,
) -> Path:
    """Run the study into ``out`` (default: a new dated folder under ``runs/``); returns it.
    ``resume``: continue ``out`` (``config`` None, or equal to the stored one but for the
    device, ``inversion.max_batch`` and ``inversion.compile``)."""
    return execute(STUDY, config, out, resume, progress)


def _work(config: DepthConfig, run: Run) -> None:
    run_dir, progress = run.dir, run.progress
    device = resolve_device(config.device)

    # Load everything first: a missing checkpoint or image fails before any compute.
    images = {name: load_image(name, config.size) for name in config.images}
    models = {
        (m, w): load_model(
            m,
            w,
            seed=config.model_seed,
            normalize=config.normalize,
            input_size=config.size,
            num_classes=config.num_classes,
        )
        for m in config.models
        for w in config.weights
    }
    layers = {key: resolve_layers(model, config.layers) for key, model in models.items()}
    for model in models.values():
        execution_order(model, torch.zeros(1, 3, config.size, config.size))  # size check

    targets: dict[str, Job] = {}  # by folder name, which must be unique
    for (m, w), model in models.items():
        for name, img in images.items():
            for layer in layers[(m, w)]:
                for k in range(config.restarts):
                    probe = TargetResult(m, model.weights, name, layer, torch.empty(0), restart=k)
                    if probe.key in targets:
                        raise LayerscopeError(
                            f"the targets of images {targets[probe.key].image_name!r} and "
                            f"{name!r} would share the folder {probe.key}: rename one of the files"
                        )
                    targets[probe.key] = Job(model, img, name, layer, k)

    judges = {m: judge_for(m, config.judge) for m in config.models}  # before any descent
    run.meta(
        device=str(device),
        layers={m: layers[(m, w)] for (m, w) in models},
        # what each model was, as loaded: its input normalisation, the BatchNorms folded
        models={model.label: model.config | {"batchnorm_folded": len(batchnorm_pairs(model))
                if config.inversion.fold_batchnorm else 0} for model in models.values()},
        judges={m: j.name if j else None for m, j in judges.items()},
    )  # fmt: skip

    done = {t.key for t in load_targets(run_dir, tensors=False)}
    jobs = [job for key, job in targets.items() if key not in done]
    saved = [len(done)]

    def on_result(result: TargetResult) -> None:
        result.save(run_dir / "targets")
        _write_tables(run_dir)
        saved[0] += 1
        run.saved()
        fault_point("target-saved")

    def interrupted() -> str:
        return (
            f"interrupted: {saved[0]} of {len(targets)} targets saved in {run_dir}; rerun with "
            f"--resume --out {run_dir}"
        )

    run.interrupted = interrupted
    if jobs:
        status: dict = {}
        start = time.perf_counter()
        invert_jobs(
            jobs, config.inversion, device=device, on_result=on_result, progress=progress,
            status=status, judge=config.judge,
        )  # fmt: skip
        # how the step ran and how long the descents took (no model loading, no report)
        record_step(
            run_dir,
            compile=how_it_ran(status),
            descent_seconds=round(time.perf_counter() - start, 3),
            targets=len(jobs),
        )
    _write_tables(run_dir)
    if config.restarts > 1:
        write_csv(run_dir / "restarts.csv", restart_spread(load_targets(run_dir)))


def summary_rows(run_dir: str | Path) -> list[dict]:
    """The final row of each target with the verdicts a reader looks for."""
    path = Path(run_dir) / "summary.csv"
    if not path.exists():
        return []
    rows = read_csv(path)
    for r in rows:
        r["m_g<m_r"] = (
            "yes" if r.get("embedding_distance", 0) < r.get("reference_distance", 0) else "no"
        )
    return rows


def _restarts_section(run_dir: Path) -> str:
    """The restarts' spread (non-uniqueness), when the run had restarts."""
    if not (run_dir / "restarts.csv").exists():
        return ""
    from ..report.figures import restarts_figure

    spread = read_csv(run_dir / "restarts.csv")
    restarts_figure(spread, run_dir / "restarts.png")
    return (
        f"<h2>Restarts: {spread[0]['restarts'] if spread else 0} descents per target from "
        "different a0</h2><p>spread = mean pairwise ‖a_g^i − a_g^j‖ between their "
        "reconstructions, next to their mean m_g: several inputs that match the layer "
        "equally well yet differ from each other mean the layer is not injective there."
        '</p>'
        + figure("restarts.png", "spread of the reconstructions from different a0, per layer")
        + html_table(["model", "weights", "image", "layer", "spread", "m_g", "m_r", "m_i"],
                 [[r["model"], weights_label(r["weights"]), r["image"], r["layer"],
                   r["spread"], r["embedding_distance"], r["reference_distance"],
                   r["input_distance"]] for r in spread])
    )  # fmt: skip


GRID_IMG = figure("grid.png", "the target and its reconstruction from every layer")
CURVES_IMG = figure("curves.png", "m_g, m_i and m_r over the descent, per layer")

_FINAL_COLUMNS = [
    ("model", "model"),
    ("weights", "weights"),
    ("image", "image"),
    ("layer", "layer"),
    ("iteration", "N"),
    ("embedding_distance", "m_g"),
    ("best_embedding_distance", "best m_g"),
    ("best_iteration", "at"),
    ("reference_distance", "m_r"),
    ("m_g<m_r", "m_g<m_r"),
    ("input_distance", "m_i"),
    ("reference_input_distance", "‖a′−a‖"),
    ("embedding_distance_rms", "m_g/elem"),
    ("ssim", "SSIM"),
    ("p_class", "p(class)"),
    ("class_rank", "rank"),
    ("outside", "outside [0, 1]"),
    ("status", "status"),
]


def _final_table(rows: list[dict]) -> str:
    def cell(v) -> str:
        return f"{v:.4g}" if isinstance(v, float) else html.escape(str(v))

    table = "<tr>" + "".join(f"<th>{html.escape(h)}</th>" for _, h in _FINAL_COLUMNS) + "</tr>\n"
    for r in rows:
        cells = "".join(f"<td>{cell(r.get(k, ''))}</td>" for k, _ in _FINAL_COLUMNS)
        table += f"<tr>{cells}</tr>\n"
    return table


def _settings(config: DepthConfig, meta: dict) -> dict:
    """What a reader needs to know to reproduce the run, in their words."""
    inv = config.inversion
    blur = inv.blur
    return {
        "models": ", ".join(config.models),
        "weights": ", ".join(config.weights),
        "images": ", ".join(config.images),
        "size": config.size,
        "normalisation": config.normalize,
        "iterations": inv.iterations,
        "step rule": inv.step,
        "lr": f"{inv.lr.start} → {inv.lr.end}",
        "loss": f"{inv.loss.scale} · L1 {inv.loss.reduction}",
        "blur": "off" if blur is None else (
            f"kernel {blur.kernel_size}, σ {blur.sigma.start} → {blur.sigma.end}, "
            f"strength {blur.strength}"
        ),
        "jitter": "off" if inv.jitter is None else f"crop {inv.jitter.size}",
        "transforms": inv.transforms or "off",
        "parameterisation": inv.param,
        "a0": f"N({inv.init_mean}, {inv.init_std:.4g})",
        "σ′ (reference shift)": f"{inv.reference_sigma:.4g}",
        "seed": inv.seed,
        "device": meta.get("device"),
        "layerscope / torch": f"{meta.get('layerscope')} / {meta.get('torch')}",
    }  # fmt: skip


def _sharpness(run_dir: Path, targets: list[TargetResult], config: DepthConfig) -> None:
    """``sharpness.csv``: each reconstruction's edge energy over its target image's
    (:func:`~layerscope.metrics.edge_energy`; > 1: sharper than the image, noise included),
    and what tells structure from noise: the agreement of its edges with the image's and
    the correlation of its luminance with the image's (IV-9)."""
    from ..engine.metrics import edge_agreement, edge_energy, luminance_correlation

    rows, images = [], {}
    for t in targets:
        if t.reconstruction.numel() == 0:
            continue
        if t.image not in images:
            try:
                images[t.image] = load_image(t.image, config.size)
            except LayerscopeError:  # the image moved since the run: no ratio for it
                images[t.image] = None
        rec = t.reconstruction.reshape(1, *t.reconstruction.shape[-3:])
        image = images[t.image]
        nan = float("nan")
        mine = edge_energy(rec)[0].item()
        theirs = edge_energy(image)[0].item() if image is not None else nan
        same = image is not None and image.shape == rec.shape
        rows.append({"model": t.model, "weights": t.weights, "image": t.image, "layer": t.layer,
                     "edge_energy": mine, "image_edge_energy": theirs,
                     "edge_ratio": mine / theirs if theirs else nan,
                     # structure, not noise: the photo's edges and light where it has them
                     "edge_agreement": edge_agreement(rec, image)[0].item() if same else nan,
                     "luminance_correlation": luminance_correlation(rec, image)[0].item()
                     if same else nan})  # fmt: skip
    if rows:
        write_csv(run_dir / "sharpness.csv", rows)


def report(run_dir: str | Path) -> Path:
    """Rebuild grid.png, curves.png and report.html of a depth run from its saved targets."""
    run_dir = Path(run_dir)
    meta = read_meta(run_dir)
    config = DepthConfig.from_dict(meta["study"])
    targets = [t for t in load_targets(run_dir) if t.restart == 0]  # restarts: see below
    _sharpness(run_dir, targets, config)
    grid = reconstruction_grid(targets, run_dir / "grid.png", config.size)
    curves = curves_figure(targets, run_dir / "curves.png")
    restarts = _restarts_section(run_dir)
    rows = summary_rows(run_dir)
    table = _final_table(rows)
    settings = _settings(config, meta)
    settings_html = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>"
        for k, v in settings.items()
    )
    judges = ", ".join(sorted({str(j) for j in meta.get("judges", {}).values() if j})) or "none"
    failed = [r for r in rows if r.get("status") != "ok"]
    notes = "".join(
        f"<li>{html.escape(str(r['model']))} {html.escape(str(r['layer']))}: "
        f"{html.escape(str(r.get('message', '')))}</li>"
        for r in failed
    )
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>layerscope depth · {html.escape(run_dir.name)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; max-width: 1400px; }}
table {{ border-collapse: collapse; font-size: 0.85em; margin-bottom: 1.5em; }}
td, th {{ border: 1px solid #ccc; padding: 3px 8px; text-align: right; }}
th {{ background: #f3f3f3; }} img {{ max-width: 100%; }}
</style></head><body>
<h1>Depth study: input reconstruction from each layer</h1>
<p>Gradient descent on an input <i>a<sub>g</sub></i> from <i>a<sub>0</sub></i> so that a layer's
activations match those of the target <i>a</i>. <b>m_g</b> = ‖O(a) − O(a<sub>g</sub>)‖₂,
<b>m_r</b> = ‖O(a) − O(a′)‖₂ with a′ = a + N(0, σ′), <b>m_i</b> = ‖a<sub>g</sub> − a‖₂.
m_g &lt; m_r while m_i stays large means the layer cannot tell a<sub>g</sub> from a although
they differ: non-uniqueness. m_i counts a colour shift as much as a lost object, so beside
it: <b>SSIM</b> (structural similarity to a, scikit-image, images clipped to [0, 1]) and
<b>p(class)</b> / <b>rank</b>: how an independent trained net ({html.escape(judges)}) that
never saw the descent rates the reconstruction for the class it gives the target
(rank 1 = its top class); <b>outside [0, 1]</b>: the share of pixels that clipping hides.</p>
<h2>Settings</h2><table>{settings_html}</table>
<h2>Final distances</h2><table>{table}</table>
{"<h2>Failed targets</h2><ul>" + notes + "</ul>" if notes else ""}
<h2>Reconstructions</h2>{GRID_IMG if grid else "<p>none yet</p>"}
<h2>Distances over the descent</h2>{CURVES_IMG if curves else ""}
{restarts}
<p>Data: <a href="metrics.csv">metrics.csv</a> (every recorded iteration),
<a href="summary.csv">summary.csv</a>, <a href="config.json">config.json</a>.</p>
</body></html>
"""
    out = run_dir / "report.html"
    out.write_text(page)
    return out


def summary(run_dir: str | Path) -> dict:
    """The few numbers of a depth run: targets, how many are ``ok``, how many reach
    m_g < m_r, the median m_g / m_r and SSIM over the targets, and how many reconstructions
    the judge still recognises (the target's class in its top 5)."""
    rows = summary_rows(run_dir)
    ratios = sorted(
        r["embedding_distance"] / r["reference_distance"]
        for r in rows
        if r.get("reference_distance", 0) > 0
    )
    ssims = sorted(r["ssim"] for r in rows if isinstance(r.get("ssim"), float))
    judged = [r for r in rows if isinstance(r.get("top5"), int)]
    out = {
        "targets": len(rows),
        "ok": sum(r.get("status") == "ok" for r in rows),
        "m_g<m_r": sum(r["m_g<m_r"] == "yes" for r in rows),
        "median m_g/m_r": ratios[len(ratios) // 2] if ratios else float("nan"),
        "median SSIM": ssims[len(ssims) // 2] if ssims else float("nan"),
    }
    if judged:
        out["recognised (top 5)"] = sum(r["top5"] for r in judged)
    return out


OPTIONS = (
    shared("model", many=True, path="models"),
    shared("weights", "default: none,imagenet for the EfficientNet-Lite nets, whose ImageNet "
           "weights install with layerscope; else none", many=True),
    shared("image", "default: chelsea,brick for the EfficientNet-Lite nets, else chelsea",
           many=True, path="images"),
    shared("layers", "conv1…conv5, conv1_pooled, or 'all' stages", many=True),
    DESCENT_OPTIONS[0],
    Option("size", "Image side in pixels (default 224; paper 299).", kind=int),
    *DESCENT_OPTIONS[1:],
    Option("normalize", "Input normalisation inside the model: none | imagenet | inception "
           "([-1, 1]) (default: pretrained weights' own, a checkpoint's sidecar, else the "
           "model's own; --preset paper: none)."),
    Option("num_classes", "Head size of a checkpoint without a sidecar (default: the model's "
           "own).", kind=int),
    Option("restarts", "Descents per target from different a0: the spread of their "
           "reconstructions.", kind=int),
    Option("judge", "Independent classifier of the reconstructions' recognisability: auto "
           "(a real EfficientNet-Lite other than the inverted model), a model name, a "
           "checkpoint, or none."),
    DEVICE,
)  # fmt: skip


# ---------------------------------------------------------------- the terminal


def final_table(run_dir: Path) -> TextTable:
    """The final distances of every target (this study's and training-effect's terminal)."""
    rows = summary_rows(run_dir)
    cols = ("model", "weights", "image", "layer", "m_g", "best m_g", "m_r", "m_g<m_r", "m_i",
            "SSIM")  # fmt: skip
    judged = any("p_class" in r for r in rows)
    table = TextTable(f"final distances · {Path(run_dir).name}",
                      (*cols, *(("p(class)", "rank") if judged else ()), "status"))  # fmt: skip
    for r in rows:
        table.add(
            r["model"],
            weights_label(r["weights"]),
            r["image"],
            str(r["layer"]) + (f" r{r['restart']}" if r.get("restart") else ""),
            f"{r['embedding_distance']:.4g}",
            _best(r),
            f"{r['reference_distance']:.4g}",
            r["m_g<m_r"],
            f"{r['input_distance']:.4g}",
            formatted(r.get("ssim"), ".3f"),
            *((formatted(r.get("p_class"), ".3f"), r.get("class_rank", "")) if judged else ()),
            r["status"],
        )
    return table


def _best(r: dict) -> str:
    """The best recorded m_g where it is not the final one (a run that lost ground late)."""
    best, at = r.get("best_embedding_distance"), r.get("best_iteration")
    if best is None or at in (None, r.get("iteration")) or best >= r["embedding_distance"]:
        return "= final"
    return f"{best:.4g} @{at}"


def terminal(run_dir: Path) -> list:
    return [final_table(run_dir), *step_line(run_dir), done(run_dir)]


STUDY = Study(
    kind="depth",
    terminal=terminal,
    table="summary.csv",
    config=DepthConfig,
    work=_work,
    report=report,
    summary=summary,
    resumable=True,
    free=("device", "inversion.max_batch", "inversion.compile"),
    title="Input reconstruction from every layer (m_g, m_r, m_i)",
    options=OPTIONS,
    command="depth",
    help="Reconstruct an image from every layer: m_g, m_r, m_i, reconstructions and a report.",
)
