"""How nets lose spatial information with training (Tomasini et al.; Petrini et al. 2021): train
each net, then measure D_f, G_f and R_f at every layer at its initialisation (``epoch_000``)
and after training, on the scale-detection task (where a net must pool spatially) and on
photos, and say whether R_f falls with depth after training and not before.

``LoseSpatialInfoConfig`` → :func:`run` → a run directory holding ``train/<net>/`` (each a
``layerscope train`` run), ``sensitivity/<net>/`` (each a ``layerscope sensitivity`` run of
``epoch_000`` and the last epoch), ``summary.csv`` (per net and state: R_f at the first layer
and at the output, the decades it falls, test accuracy), ``lose_spatial_info.png`` and
``report.html`` with the verdict. ``resume`` continues an interrupted study: finished
training and sensitivity runs are kept.
"""

from __future__ import annotations

import html
import math
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from ..core.config import Config
from ..core.errors import ConfigError
from ..core.files import read_json, save_figure
from ..core.tables import read_csv, write_csv
from ..engine.training import TrainConfig, checkpoints
from ..protocol.lifecycle import Run, Study, execute
from ..protocol.options import DEVICE, Option, number
from ..report.terminal import Line, done
from . import sensitivity
from .train import train

__all__ = ["DEFAULT_NETS", "STUDY", "LoseSpatialInfoConfig", "report", "run", "summary"]

#: (model, data set): a pooling CNN on photos; on the scale-detection task a pooling CNN,
#: the same CNN without pooling, and a fully connected net.
DEFAULT_NETS = [
    ("smallcnn", "photos"),
    ("smallcnn", "twopoints"),
    ("smallcnn_nopool", "twopoints"),
    ("mlp:512,512,512", "twopoints"),
]

#: R_f "falls with depth" when it falls this many decades more after training than at init.
MARGIN_DECADES = 0.5


@dataclass
class LoseSpatialInfoConfig(Config):
    nets: list[list[str]] = field(default_factory=lambda: [list(n) for n in DEFAULT_NETS])
    epochs: int = 6
    lr: float = 1e-3
    batch_size: int = 64
    n_train: int = 2400
    size: int | None = None  # default: each data set's own (photos 64 → 32 here, twopoints 28)
    photo_size: int = 32
    n: int = 500  # test images for the sensitivity
    displacement: float = 1.0
    cut: float = 3.0
    seed: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        if not self.nets:
            raise ConfigError("--nets is empty: give MODEL@DATA pairs")
        if self.epochs < 1 or self.n < 2 or self.n_train < 1:
            raise ConfigError("--epochs, --n-train must be ≥ 1 and --n ≥ 2")
        from ..engine.data import DATASETS
        from ..engine.models import _lookup

        for model, data in self.nets:
            _lookup(model)  # an unknown model fails now, not after the first nets trained
            if data not in DATASETS and not data.startswith("folder:"):
                raise ConfigError(
                    f"unknown data set {data!r} in --nets: choose from {', '.join(DATASETS)} "
                    "or folder:PATH"
                )


def _slug(model: str, data: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{model}-{data}")


def run(
    config: LoseSpatialInfoConfig | None = None,
    out: str | Path | None = None,
    resume: bool = False,
    progress: bool = False,
) -> Path:
    """Train every net, then measure its sensitivity before and after; returns the run dir.
    ``resume`` goes on from the nets (and epochs) already finished."""
    return execute(STUDY, config, out, resume, progress)


def _work(config: LoseSpatialInfoConfig, run: Run) -> None:
    run_dir, progress = run.dir, run.progress
    run.meta(device=config.device)
    done: list[str] = []

    def interrupted() -> str:
        return (
            f"interrupted: {len(done)} of {len(config.nets)} nets finished in {run_dir}; rerun "
            f"with --resume --out {run_dir}"
        )

    run.interrupted = interrupted
    for model, data in config.nets:
        slug = _slug(model, data)
        size = config.size or (config.photo_size if data == "photos" else None)
        tdir = run_dir / "train" / slug
        tcfg = TrainConfig(
            model=model, data=data, epochs=config.epochs, batch_size=config.batch_size,
            lr=config.lr, seed=config.seed, size=size,
            data_params={"length": config.n_train}, device=config.device,
        )  # fmt: skip
        train(tcfg, out=tdir, resume=(tdir / "config.json").exists(), progress=progress)
        ckpts = checkpoints(tdir)
        sdir = run_dir / "sensitivity" / slug
        if not (sdir / "report.html").exists():  # finished sensitivity runs are kept
            shutil.rmtree(sdir, ignore_errors=True)
            scfg = sensitivity.SensitivityConfig(
                model=model, weights=[str(ckpts[0]), str(ckpts[-1])], n=config.n,
                displacements=[config.displacement], cuts=[config.cut], seed=config.seed,
                device=config.device,
            )  # fmt: skip
            sensitivity.run(scfg, out=sdir, progress=progress)
        done.append(slug)
        run.saved()
    _summary(run_dir, config)


def _summary(run_dir: Path, config: LoseSpatialInfoConfig) -> list[dict]:
    rows = []
    for model, data in config.nets:
        slug = _slug(model, data)
        metrics = read_csv(run_dir / "train" / slug / "metrics.csv")
        sens = read_csv(run_dir / "sensitivity" / slug / "sensitivity.csv")
        for state in dict.fromkeys(r["weights"] for r in sens):
            sel = sorted((r for r in sens if r["weights"] == state), key=lambda r: r["depth"])
            epoch = int(Path(str(state)).stem.split("_")[-1])
            first, last = sel[0], sel[-1]
            rows.append({
                "model": model, "data": data, "state": "initial" if epoch == 0 else "trained",
                "epoch": epoch,
                "test_accuracy": metrics[epoch - 1]["test_accuracy"] if epoch else None,
                "first_layer": first["layer"], "R_first": first["R"], "R_output": last["R"],
                "D_first": first["D"], "D_output": last["D"], "G_first": first["G"],
                "G_output": last["G"],
                "decades": math.log10(first["R"] / last["R"]),
            })  # fmt: skip
    # the decades training added: what Tomasini et al.'s effect is (R_f falls with depth after
    # training, not at initialisation), comparable between nets that start apart
    start = {(r["model"], r["data"]): r["decades"] for r in rows if r["state"] == "initial"}
    for r in rows:
        base = start.get((r["model"], r["data"]))
        r["decades_over_initial"] = r["decades"] - base if base is not None else None
    write_csv(run_dir / "summary.csv", rows)
    return rows


def verdicts(rows: list[dict]) -> list[str]:
    """Per net: does R_f fall with depth after training, and not at initialisation?"""
    out = []
    for key in dict.fromkeys((r["model"], r["data"]) for r in rows):
        by = {r["state"]: r for r in rows if (r["model"], r["data"]) == key}
        if {"initial", "trained"} - by.keys():
            continue
        init, trained = by["initial"]["decades"], by["trained"]["decades"]
        yes = trained > init + MARGIN_DECADES
        acc = by["trained"]["test_accuracy"]
        out.append(
            f"{key[0]} on {key[1]} (test accuracy {acc:.1%}): R_f falls {trained:.2f} decades "
            f"from {by['trained']['first_layer']} to the output after training, "
            f"{init:.2f} at initialisation → "
            + ("yes, it falls with depth after training and not before" if yes else "no")
        )
    return out


def report(run_dir: str | Path) -> Path:
    """``lose_spatial_info.png`` and ``report.html`` from the saved runs and summary."""
    from ..report import figure, write_page
    from ..report import table as _table

    run_dir = Path(run_dir)
    meta = read_json(run_dir / "config.json")
    rows = read_csv(run_dir / "summary.csv") if (run_dir / "summary.csv").exists() else []
    nets = [tuple(n) for n in meta["study"]["nets"]]
    _figure(run_dir, nets)
    header = ["model", "data", "state", "test acc", "R_f first", "R_f output", "decades",
              "G_f first", "G_f output"]  # fmt: skip
    table = [[r["model"], r["data"], r["state"], r["test_accuracy"] if r["test_accuracy"] != ""
              else "", r["R_first"], r["R_output"], r["decades"], r["G_first"], r["G_output"]]
             for r in rows]  # fmt: skip
    items = "".join(f"<li>{html.escape(v)}</li>" for v in verdicts(rows))
    links = "".join(
        f'<li>{html.escape(m)} on {html.escape(d)}: <a href="sensitivity/{_slug(m, d)}/'
        f'report.html">sensitivity</a>, <a href="train/{_slug(m, d)}/training.png">training</a>'
        "</li>"
        for m, d in nets
    )
    study = meta["study"]
    body = (
        f"<p>Each net trained {study['epochs']} epochs ({study['n_train']} images, Adam, lr "
        f"{study['lr']:g}); D_f, G_f, R_f on {study['n']} test images, δ = "
        f"{study['displacement']:g} px RMS, c = {study['cut']:g}, at initialisation "
        "(epoch_000) and after training. Verdict rule: R_f falls with depth when, from the "
        f"first layer to the output, it falls at least {MARGIN_DECADES} decades more after "
        f"training than at initialisation.</p><ul>{items}</ul>"
        + figure(
            "lose_spatial_info.png",
            "D_f, G_f and R_f by depth at initialisation and after training",
        )
        + f"<h2>Summary</h2>{_table(header, table)}"
        f"<h2>Runs</h2><ul>{links}</ul>"
    )
    return write_page(run_dir, f"layerscope · {run_dir.name}", "How nets lose spatial information",
                         body)  # fmt: skip


def _figure(run_dir: Path, nets: list[tuple[str, str]]) -> None:
    """R_f (top) and G_f (bottom) against relative depth, one column per net, initial vs
    trained."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    present = [
        n for n in nets if (run_dir / "sensitivity" / _slug(*n) / "sensitivity.csv").exists()
    ]
    if not present:
        return
    fig, axes = plt.subplots(3, len(present), figsize=(3.4 * len(present) + 0.6, 8),
                             squeeze=False)  # fmt: skip
    for j, (model, data) in enumerate(present):
        sens = read_csv(run_dir / "sensitivity" / _slug(model, data) / "sensitivity.csv")
        for state in dict.fromkeys(r["weights"] for r in sens):
            sel = sorted((r for r in sens if r["weights"] == state), key=lambda r: r["depth"])
            label = "initial" if Path(str(state)).stem.endswith("_000") else "trained"
            for i, key in enumerate(("D", "G", "R")):
                axes[i][j].plot([r["depth"] for r in sel], [r[key] for r in sel], marker="o",
                                ms=3, label=label)  # fmt: skip
        axes[0][j].set_title(f"{model}\non {data}", fontsize=9)
        for i, key in enumerate(("D_f", "G_f", "R_f")):
            axes[i][j].set_yscale("log")
            axes[i][j].grid(alpha=0.3)
            if j == 0:
                axes[i][j].set_ylabel(key)
        axes[2][j].set_xlabel("relative depth")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, run_dir / "lose_spatial_info.png", dpi=100)
    plt.close(fig)


def summary(run_dir: str | Path) -> dict:
    """Per net: R_f's fall from the first layer to the output, in decades, trained and at
    initialisation."""
    out: dict = {}
    for r in read_csv(Path(run_dir) / "summary.csv"):
        out[f"{r['model']}@{r['data']} {r['state']} decades"] = r["decades"]
    return out


def _nets(value) -> list[list[str]]:
    """``MODEL@DATA`` pairs, comma separated; a model name may hold commas (``mlp:512,512``):
    split at ``@``, then at the first comma after each data name."""
    if isinstance(value, list):
        return [list(v) for v in value]
    parts = str(value).split("@")
    pairs, model = [], parts[0]
    for k, part in enumerate(parts[1:], start=1):
        data, _, rest = part.partition(",") if k < len(parts) - 1 else (part, "", "")
        pairs.append([model, data])
        model = rest
    if len(parts) < 2 or any(not m.strip() or not d.strip() for m, d in pairs):
        raise ConfigError(f"--nets takes MODEL@DATA pairs, comma separated, not {value!r}")
    return [[m.strip(), d.strip()] for m, d in pairs]


OPTIONS = (
    Option("nets", "MODEL@DATA pairs, comma separated (a model name may hold commas: "
           "mlp:512,512).", parse=_nets),
    Option("epochs", "Training epochs of each net.", kind=int),
    Option("lr", "Learning rate (Adam).", parse=number),
    Option("n_train", "Training images per net.", kind=int),
    Option("photo_size", "Image side of the photos nets.", kind=int),
    Option("n", "Test images for D_f, G_f, R_f.", kind=int),
    Option("displacement", "δ, RMS pixel displacement.", parse=number),
    Option("cut", "Cut-off c.", parse=number),
    Option("seed", "Seed of training, deformations and noise.", kind=int),
    DEVICE,
)  # fmt: skip


def terminal(run_dir: Path) -> list:
    """The verdict of each comparison, one line each."""
    lines = verdicts(read_csv(Path(run_dir) / "summary.csv"))
    return [Line(line) for line in lines] + [done(run_dir)]


STUDY = Study(
    kind="lose-spatial-info",
    terminal=terminal,
    table="summary.csv",
    config=LoseSpatialInfoConfig,
    work=_work,
    report=report,
    summary=summary,
    resumable=True,
    title="Sensitivity to diffeomorphisms vs noise, before and after training",
    options=OPTIONS,
    command="study lose-spatial-info",
    help=(
        "Train nets (photos; the scale-detection task with and without pooling, and fully "
        "connected), then D_f, G_f, R_f at every layer before and after training: does R_f fall "
        "with depth after training and not at initialisation?"
    ),
)
