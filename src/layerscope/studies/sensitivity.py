"""The sensitivity study: D_f, G_f and R_f at every layer of one architecture in several weight
states (untrained, trained checkpoints), for one or more deformation sizes δ and cut-offs c.

``SensitivityConfig`` → :func:`run` → a run directory: ``config.json`` (with the T ↔ δ
convention of every (δ, c)), ``sensitivity.csv`` (tidy: model, weights, layer, depth, D, G,
R, their error bars, δ, δ_paper, T, c, estimator, n; written as each weight state finishes),
``sensitivity.png`` (the papers' figure: D, G, R against relative depth, log y),
``examples.png`` (clean / deformed / noisy images) and ``report.html``.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..core.config import Config, at_least
from ..core.errors import ConfigError
from ..core.files import read_json, save_figure
from ..core.tables import read_csv, write_csv
from ..engine.data import load_dataset
from ..engine.device import resolve_device
from ..engine.models import load_model, read_sidecar, weights_label
from ..engine.sensitivity import (
    ESTIMATORS,
    RandomDiffeo,
    filter_homogeneity,
    matched_noise,
    measure,
    relative_depths,
)
from ..protocol.lifecycle import Run, Study, execute
from ..protocol.options import DATA_ROOT, DEVICE, Option, numbers, params, shared
from ..report.terminal import TextTable, done

__all__ = ["STUDY", "SensitivityConfig", "report", "run", "summary"]


@dataclass
class SensitivityConfig(Config):
    """``weights``: weight states of ``model`` (``none``, ``imagenet``, checkpoint paths; with
    ``model=None`` the first checkpoint's sidecar names the model). ``displacements`` and
    ``cuts``: every (δ, c) pair is measured."""

    model: str | None = None
    weights: list[str] = field(default_factory=lambda: ["none"])
    data: str | None = None  # default: the first checkpoint's data set, else photos
    data_params: dict | None = None
    layers: list[str] = field(default_factory=lambda: ["all"])
    displacements: list[float] = field(default_factory=lambda: [1.0])
    cuts: list[float] = field(default_factory=lambda: [3.0])
    n: int = 500
    batch_size: int = 50
    estimator: str = "mean"
    bootstrap: int = at_least(0, 200)
    size: int | None = at_least(8)
    seed: int = 0
    data_root: str | None = None
    device: str = "auto"

    def __post_init__(self) -> None:
        if not self.weights:
            raise ConfigError("--weights is empty: give at least one weight state")
        if self.n < 2:
            raise ConfigError(f"--n must be at least 2 images (pairs are compared), not {self.n}")
        if self.batch_size < 2:
            raise ConfigError(f"--batch-size must be at least 2, not {self.batch_size}")
        if self.estimator not in ESTIMATORS:
            raise ConfigError(f"--estimator must be one of {', '.join(ESTIMATORS)}")
        if not self.displacements or min(self.displacements) <= 0:
            raise ConfigError(
                f"--displacement must be > 0 pixels, not {self.displacements}: with no "
                "deformation D_f and G_f are both ~1e-13 and R_f is a ratio of rounding errors"
            )
        for d in self.displacements:
            for c in self.cuts:
                RandomDiffeo(displacement=d, cut=c)  # refuses c ≤ 1, δ < 0
        if self.data_params and self.data is not None:
            from ..engine.data import check_data_params

            self.data_params = check_data_params(self.data, self.data_params)


def _checkpoint_side(config: SensitivityConfig) -> dict:
    for w in config.weights:
        if w not in ("none", "imagenet"):
            return read_sidecar(Path(w))
    return {}


def run(config: SensitivityConfig, out: str | Path | None = None, progress: bool = False) -> Path:
    """Measure every weight state at every (δ, c); returns the run directory."""
    return execute(STUDY, config, out, progress=progress)


def _work(config: SensitivityConfig, run: Run) -> None:
    run_dir, progress = run.dir, run.progress
    device = resolve_device(config.device)
    side = _checkpoint_side(config)
    model_name = config.model or side.get("model") or "resnet18"
    data = config.data or side.get("data") or "photos"
    params = dict(config.data_params or {})
    if not params and data == side.get("data"):  # the checkpoint's own set, as it trained
        params = dict(side.get("data_params") or {})
    params.pop("length", None)
    if data == "photos":
        params["augment"] = False
    size = config.size or side.get("input_size")
    root = config.data_root or side.get("data_root")
    dataset = load_dataset(data, "test", size, config.seed, root, **params)
    count = min(config.n, len(dataset))
    images = torch.stack([dataset[i][0] for i in range(count)])
    h, w = images.shape[-2:]
    models = {
        wt: load_model(model_name, wt, seed=config.seed, input_size=w).to(device)
        for wt in config.weights
    }
    diffeos = {}
    for d in config.displacements:
        for c in config.cuts:
            rd = RandomDiffeo(displacement=d, cut=c)
            rd.check(h, w)  # a (δ, c) outside the valid T interval fails before any work
            diffeos[(d, c)] = rd
    for model in models.values():  # a model that cannot take these images fails here
        measure(model, images[:2], "all", diffeos[next(iter(diffeos))], bootstrap=0,
                device=device)  # fmt: skip
    run.meta(
        device=str(device), model=model_name, data=data, image_size=[h, w], n=count,
        deformations=[rd.config(h, w) for rd in diffeos.values()],
    )  # fmt: skip
    _examples(images[:4], diffeos, config.seed, run_dir / "examples.png")
    rows: list[dict] = []
    pooling: list[dict] = []
    total = len(models) * len(diffeos)

    def interrupted() -> str:
        done = len({(r["weights"], r["displacement"], r["cut"]) for r in rows})
        return (
            f"interrupted: {done} of {total} weight states × deformations kept in "
            f"{run_dir / 'sensitivity.csv'} (this command does not resume: rerun with a new --out)"
        )

    run.interrupted = interrupted
    for wt, model in models.items():
        for (d, c), _ in diffeos.items():
            gen = torch.Generator().manual_seed(config.seed)  # same fields for every state
            rd = RandomDiffeo(displacement=d, cut=c, generator=gen)
            result = measure(
                model, images, config.layers, rd, estimator=config.estimator,
                batch_size=config.batch_size, bootstrap=config.bootstrap, seed=config.seed,
                device=device, progress=progress,
            )  # fmt: skip
            ident = {"model": model_name, "weights": wt, "data": data}
            rows += [ident | r for r in result]
            write_csv(run_dir / "sensitivity.csv", rows)  # kept as each state finishes
            run.saved()
        pooling += _pooling_rows(model, wt, result, (h, w))
        write_csv(run_dir / "pooling.csv", pooling)


def _pooling_rows(model, weights: str, result: list[dict], shape) -> list[dict]:
    """Filter homogeneity (spatial pooling from the weights) of every convolution, at the
    depth scale of the sensitivity rows."""
    homog = filter_homogeneity(model)
    names = [r["layer"] for r in result]
    depths = relative_depths(model, [h["layer"] for h in homog], shape, names)
    return [{"weights": weights, "depth": depths[h["layer"]]} | h for h in homog]


def _examples(images: torch.Tensor, diffeos: dict, seed: int, path: Path) -> None:
    """Clean, then deformed and matched-noise copies at each (δ, c): the perturbations the
    numbers are about, at the same pixel scale."""
    from ..engine.images import save_grid

    rows, labels = [], []
    cols = ["clean"]
    for k, ((d, c), _) in enumerate(diffeos.items()):
        rd = RandomDiffeo(displacement=d, cut=c, generator=torch.Generator().manual_seed(seed))
        deformed = rd(images)
        noisy = images + matched_noise(images, deformed, torch.Generator().manual_seed(seed + 1))
        for i in range(len(images)):
            if k == 0:
                rows.append([images[i]])
                labels.append(f"image {i}")
            rows[i] += [deformed[i], noisy[i]]
        cols += [f"τ(x) δ={d:g} c={c:g}", "x + η (same norm)"]
    scale = max(float(images.max()), 1.0)  # two-point images are not in [0, 1]
    rows = [[t / scale for t in row] for row in rows]
    save_grid(rows, path, row_labels=labels, col_labels=cols, cell_inches=1.5)


def figure(rows: list[dict], path: Path, pooling: list[dict] | None = None) -> Path | None:
    """D_f, G_f and R_f against relative depth, log y; one line per weight state (and line
    style per (δ, c) when several), bootstrap error bars; with ``pooling``, a fourth panel:
    the filters' homogeneity (spatial pooling) by depth, against its random level."""
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    states = list(dict.fromkeys(r["weights"] for r in rows))
    deforms = list(dict.fromkeys((r["displacement"], r["cut"]) for r in rows))
    styles = ["-", "--", ":", "-."]
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    fig, axes = plt.subplots(1, 4 if pooling else 3, figsize=(17 if pooling else 13, 3.8))
    titles = {"D": "D_f (deformation)", "G": "G_f (noise)", "R": "R_f = D_f / G_f"}
    if pooling:
        ax = axes[3]
        for si, state in enumerate(states):
            sel = sorted((p for p in pooling if p["weights"] == state), key=lambda p: p["depth"])
            ax.plot([p["depth"] for p in sel], [p["homogeneity"] for p in sel], marker="o", ms=3,
                    color=colors[si % len(colors)], label=weights_label(state))  # fmt: skip
        levels = sorted({p["random_level"] for p in pooling})
        for level in levels:
            ax.axhline(level, color="gray", lw=0.8, ls="--")
        ax.set_title("filter homogeneity (spatial pooling)")
        ax.set_xlabel("relative depth (output = 1)")
        ax.grid(alpha=0.3)
    for ax, (key, title) in zip(axes[:3], titles.items(), strict=True):
        for si, state in enumerate(states):
            for di, dc in enumerate(deforms):
                sel = [
                    r for r in rows if (r["weights"], r["displacement"], r["cut"]) == (state, *dc)
                ]
                sel.sort(key=lambda r: r["depth"])
                x = [r["depth"] for r in sel]
                y = [r[key] for r in sel]
                err = [r[f"{key}_err"] if r[f"{key}_err"] == r[f"{key}_err"] else 0 for r in sel]
                label = weights_label(state)
                if len(deforms) > 1:
                    label += f" · δ={dc[0]:g} c={dc[1]:g}"
                ax.errorbar(x, y, yerr=err, marker="o", ms=3, capsize=2,
                            color=colors[si % len(colors)], linestyle=styles[di % len(styles)],
                            label=label)  # fmt: skip
                if key == "D" and di == 0 and "D_channel_median" in sel[0]:
                    ax.plot(x, [r["D_channel_median"] for r in sel], ls=":", lw=1,
                            color=colors[si % len(colors)])  # fmt: skip
        ax.set_yscale("log")
        ax.set_xlabel("relative depth (output = 1)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[2].axhline(1.0, color="gray", lw=0.8)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    save_figure(fig, path, dpi=110)
    plt.close(fig)
    return path


def report(run_dir: str | Path) -> Path:
    """``sensitivity.png`` and ``report.html`` of a sensitivity run, redrawn from its CSV."""
    from ..report import figure as page_figure
    from ..report import table as _table
    from ..report import write_page

    run_dir = Path(run_dir)
    meta = read_json(run_dir / "config.json")
    rows = read_csv(run_dir / "sensitivity.csv") if (run_dir / "sensitivity.csv").exists() else []
    pooling = read_csv(run_dir / "pooling.csv") if (run_dir / "pooling.csv").exists() else []
    figure(rows, run_dir / "sensitivity.png", pooling)
    header = ["weights", "δ", "c", "layer", "depth", "D_f", "±", "G_f", "±", "R_f", "±"]
    table = [
        [weights_label(r["weights"]), r["displacement"], r["cut"], r["layer"], r["depth"],
         r["D"], r["D_err"], r["G"], r["G_err"], r["R"], r["R_err"]]
        for r in rows
    ]  # fmt: skip
    conv = "".join(
        f"<li>δ = {d['displacement']:.3g} px RMS (the papers' δ = {d['displacement_paper']:.3g}),"
        f" c = {d['cut']:g}, T = {d['temperature']:.4g}</li>"
        for d in meta.get("deformations", [])
    )
    study = meta["study"]
    trend = _trend(rows)
    body = (
        f"<p>{html.escape(str(meta.get('model')))} on {meta.get('n')} test images of "
        f"{html.escape(str(meta.get('data')))} ({meta.get('image_size')}), estimator "
        f"{html.escape(study['estimator'])}, {study['bootstrap']} bootstrap resamples for the "
        "error bars (the denominator held fixed).</p>"
        f"<ul>{conv}</ul><p>{trend}</p>"
        + page_figure("sensitivity.png", "D_f, G_f and R_f at every layer")
        + "<p>Dotted (left): the median over channels of D_f of "
        "each channel's map alone; the whole layer below it means the channels that tell "
        "images apart are the stable ones (channel pooling). Right: spatial pooling read from "
        "the weights, the share of each convolution filter's energy in its constant part, "
        "F²·mean(w)²/‖w‖² "
        "(1 = an average-pooling filter; dashed: 1/F², its expectation at initialisation)."
        "</p><h2>Examples</h2>"
        + page_figure(
            "examples.png", "an image, its diffeomorphism and its noisy copy of equal norm"
        )
        + f"<h2>Table</h2>{_table(header, table)}"
        '<p>Files: <a href="sensitivity.csv">sensitivity.csv</a>, '
        '<a href="pooling.csv">pooling.csv</a>, '
        '<a href="config.json">config.json</a>.</p>'
    )
    return write_page(run_dir, f"layerscope sensitivity · {run_dir.name}",
                      "Sensitivity: deformations vs noise", body)  # fmt: skip


def _trend(rows: list[dict]) -> str:
    """One sentence per weight state: R_f at the first layer and at the output."""
    parts = []
    for state in dict.fromkeys(r["weights"] for r in rows):
        for dc in dict.fromkeys((r["displacement"], r["cut"]) for r in rows):
            sel = [r for r in rows if (r["weights"], r["displacement"], r["cut"]) == (state, *dc)]
            sel.sort(key=lambda r: r["depth"])
            if len(sel) < 2:
                continue
            first, last = sel[0], sel[-1]
            ratio = last["R"] / first["R"] if first["R"] else math.nan
            parts.append(
                f"{html.escape(weights_label(state))} (δ={dc[0]:g}, c={dc[1]:g}): R_f "
                f"{first['R']:.3g} at {html.escape(str(first['layer']))} → {last['R']:.3g} at "
                f"the output ({ratio:.2g}×)"
            )
    return "; ".join(parts)


def summary(run_dir: str | Path) -> dict:
    """Per weight state (first deformation): R_f at the first layer and at the output."""
    rows = read_csv(Path(run_dir) / "sensitivity.csv")
    out: dict = {}
    for state in dict.fromkeys(r["weights"] for r in rows):
        sel = [r for r in rows if r["weights"] == state]
        first = (sel[0]["displacement"], sel[0]["cut"])
        sel = sorted((r for r in sel if (r["displacement"], r["cut"]) == first),
                     key=lambda r: r["depth"])  # fmt: skip
        out[f"{weights_label(state)} R_f first"] = sel[0]["R"]
        out[f"{weights_label(state)} R_f output"] = sel[-1]["R"]
    return out


OPTIONS = (
    shared("model", "default: the first checkpoint's sidecar, else resnet18"),
    shared("weights", many=True),
    shared("data", "its test split; default: the checkpoint's, else photos"),
    Option("data_params", "Data set parameters KEY=VALUE,… (twopoints: xi, gap, norm, value).",
           parse=params),
    shared("layers", "the output is always added", many=True),
    Option("displacement", "δ, RMS pixel displacement; a list for a sweep (e.g. 0.5,1,2).",
           "displacements", parse=numbers),
    Option("cut", "Cut-off c of the deformation modes; a list for a sweep.", "cuts",
           parse=numbers),
    Option("n", "Test images.", kind=int),
    Option("batch_size", "Images per forward (×3: clean, deformed, noisy).", kind=int),
    Option("estimator", "mean (Tomasini et al.) | median (Petrini et al.)."),
    Option("bootstrap", "Bootstrap resamples for the error bars.", kind=int),
    Option("size", "Image side (default: the data set's).", kind=int),
    Option("seed", "Seed of the deformations, the noise and the images.", kind=int),
    DATA_ROOT,
    DEVICE,
)  # fmt: skip


def terminal(run_dir: Path) -> list:
    """D_f, G_f and R_f at every layer, per net and displacement."""
    table = TextTable(
        f"sensitivity · {Path(run_dir).name}",
        ("weights", "δ", "c", "layer", "depth", "D_f", "G_f", "R_f", "± R_f"),
    )
    for r in read_csv(Path(run_dir) / "sensitivity.csv"):
        table.add(
            weights_label(r["weights"]), f"{r['displacement']:.3g}", f"{r['cut']:g}", r["layer"],
            f"{r['depth']:.2f}", f"{r['D']:.3g}", f"{r['G']:.3g}", f"{r['R']:.3g}",
            f"{r['R_err']:.2g}",
        )  # fmt: skip
    return [table, done(run_dir)]


STUDY = Study(
    kind="sensitivity",
    terminal=terminal,
    table="sensitivity.csv",
    config=SensitivityConfig,
    work=_work,
    report=report,
    summary=summary,
    title="Sensitivity to diffeomorphisms vs noise (D_f, G_f, R_f)",
    options=OPTIONS,
    command="sensitivity",
    help=(
        "Sensitivity to smooth deformations vs white noise of the same norm at every layer: D_f, "
        "G_f and R_f = D_f / G_f (Petrini et al. 2021; Tomasini et al.)."
    ),
)
