"""The model-merging study (seed III-3): train a student so its logits match a teacher's on the
teacher's generated class images, then see whether the student now generates the teacher's
class images.

``MergeConfig`` → :func:`run` → a run directory: ``config.json``; ``images/`` (the teacher's
class images, the student's before merging and after: one folder each, as ``generate`` writes
them); ``merge.csv`` (mean RSS per image on the training images and on held-out ones, every
``record_every`` steps); ``student.safetensors`` + ``student.json`` (the merged student: any
command takes it as ``--weights``); ``scores.csv``; ``grid.png`` (teacher / student before /
student after, one column per class); ``merge.png``; ``report.html``.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file

from ..core.config import Config, at_least
from ..core.errors import ConfigError
from ..core.files import read_json, save_figure
from ..core.progress import progress_bar
from ..core.tables import read_csv, write_csv
from ..engine.device import resolve_device
from ..engine.generation import GeneratedImage, class_scores, generate_classes, output_size
from ..engine.images import load_image, save_grid
from ..engine.merging import merge
from ..engine.models import load_model, save_checkpoint, weights_label
from ..protocol.lifecycle import Run, Study, execute
from ..protocol.options import DEVICE, Option, number
from ..report import figure, table, write_page
from ..report.terminal import Line
from .generation import GenerateConfig

__all__ = ["STUDY", "MergeConfig", "report", "run", "summary"]

#: held-out photos: built-in samples that are not among the ``photos`` data set's classes
_PHOTOS = ["brick", "grass", "gravel", "horse", "cell", "colorwheel", "logo"]


@dataclass
class MergeConfig(Config):
    """``images``: ``generated`` (the teacher's class images, made here) or a folder of images
    (or a ``layerscope generate`` run). ``heldout``: ``photos`` (the built-in photos) or a
    folder. ``regenerate``: the student's class images before and after merging. The
    generation settings (``preset``, ``size``, ``iterations``, the ``bn_prior`` and ``tv``
    priors) are ``generate``'s; with ``bn_prior`` the teacher's images follow its BatchNorm
    statistics (DeepInversion's data-free distillation: generate with the prior, then
    distil)."""

    student: str = "resnet18"
    student_weights: str = "none"
    teacher: str = "resnet18"
    teacher_weights: str = "none"
    images: str = "generated"
    classes: str = "0..3"
    steps: int = 1000
    lr: float = 1e-5
    #: undo a step after which the RSS is non-finite or more than doubled and take it again
    #: at half the lr (off: the source's plain SGD, which may diverge)
    backtrack: bool = False
    heldout: str = "photos"
    record_every: int = at_least(1, 10)
    regenerate: bool = True
    preset: str = "default"
    size: int | None = at_least(8)
    iterations: int | None = None
    copies: int = at_least(1, 1)
    bn_prior: float = at_least(0, 0.0)
    tv: float = at_least(0, 0.0)
    seed: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ConfigError(f"--steps must be at least 1, not {self.steps}")
        if not self.lr > 0:
            raise ConfigError(f"--lr must be positive, not {self.lr:g}")


def _folder_images(folder: str | Path, size: int) -> tuple[torch.Tensor, list[str]]:
    """Every image of a folder (png, jpg, …) or of a ``layerscope generate`` run, at ``size``."""
    d = Path(folder)
    if not d.is_dir():
        raise ConfigError(
            f"--images/--heldout {folder!r} is neither 'generated'/'photos' nor a folder"
        )
    runs = sorted(d.glob("images/*/image.safetensors"))
    if runs:
        xs = [load_file(str(p))["image"] for p in runs]
        xs = [torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear") for x in xs]
        return torch.cat(xs), [p.parent.name for p in runs]
    kinds = (".png", ".jpg", ".jpeg", ".bmp")
    files = sorted(p for p in d.iterdir() if p.suffix.lower() in kinds)
    if not files:
        raise ConfigError(f"{folder} holds no images (png, jpg) and is not a generate run")
    return torch.cat([load_image(p, size) for p in files]), [p.stem for p in files]


def run(config: MergeConfig, out=None, progress: bool = False) -> Path:
    """The teacher's class images, the merge, the student before and after; returns the run
    directory (nothing of a failed merge run is kept: it does not resume)."""
    return execute(STUDY, config, out, progress=progress)


def _work(config: MergeConfig, run: Run) -> None:
    run_dir, progress = run.dir, run.progress
    for name, value in (("--images", config.images), ("--heldout", config.heldout)):
        if value not in ("generated", "photos") and not Path(value).is_dir():
            raise ConfigError(f"{name} {value!r} is neither 'generated'/'photos' nor a folder")
    dev = resolve_device(config.device)
    gcfg = GenerateConfig(
        classes=config.classes, preset=config.preset, size=config.size,
        iterations=config.iterations, seed=config.seed, bn_prior=config.bn_prior, tv=config.tv,
        copies=config.copies,
    ).generation()  # fmt: skip
    size = gcfg.stages[0].size
    student = load_model(config.student, config.student_weights, seed=config.seed).to(dev)
    teacher = load_model(config.teacher, config.teacher_weights, seed=config.seed + 1).to(dev)
    sizes = [output_size(m, size, dev) for m in (student, teacher)]
    if sizes[0] != sizes[1]:
        raise ConfigError(
            f"the student has {sizes[0]} outputs and the teacher {sizes[1]}: merging matches "
            "output vectors, so both need the same classes (--num-classes when training)"
        )
    images_dir = run_dir / "images"

    def keep(g: GeneratedImage) -> None:
        g.save(images_dir)  # nothing of a half-made merge is kept: no run.saved()

    models = {"student": student.config, "teacher": teacher.config}
    run.meta(device=str(dev), generation=gcfg.to_dict(), models=models)
    if config.images == "generated":
        made = generate_classes(
            teacher, config.classes, gcfg, device=dev, on_result=keep, progress=progress,
            names=[ROLES[0]],
        )  # fmt: skip
        train = torch.cat([g.image for g in made])
    else:
        train, _ = _folder_images(config.images, size)
    if config.heldout == "photos":
        held = torch.cat([load_image(p, train.shape[-1]) for p in _PHOTOS])
    else:
        held, _ = _folder_images(config.heldout, train.shape[-1])
    if config.regenerate:
        generate_classes(
            student, config.classes, gcfg, device=dev, on_result=keep, progress=progress,
            names=[ROLES[1]],
        )  # fmt: skip
    with torch.no_grad():
        target_size = teacher(train[:1].to(dev)).flatten(1).shape[1]
    with progress_bar(total=config.steps, enabled=progress) as bar:
        bar.describe(f"merging {student.label} into {teacher.label}")
        result = merge(
            student, teacher, train, steps=config.steps, lr=config.lr, heldout=held,
            record_every=config.record_every, advance=bar.advance, generated=True,
            backtrack=config.backtrack,
        )  # fmt: skip
    write_csv(run_dir / "merge.csv", result.curve)
    path = run_dir / "student.safetensors"
    side = {
        "model": student.name,
        "num_classes": int(target_size),
        "classes": student.classes,
        "normalize": student.normalize,
        "input_size": student.input_size,
        "merged_from": {"student": student.config, "teacher": teacher.config},
        "merge": {
            "steps": config.steps,
            "lr": config.lr,
            "images": config.images,
            "backtrack": config.backtrack,
            "final_lr": result.curve[-1].get("lr"),
        },
    }
    save_checkpoint(result.student, path, side)
    if config.regenerate:
        merged = load_model(str(path)).to(dev)
        generate_classes(
            merged, config.classes, gcfg, device=dev, on_result=keep, progress=progress,
            names=[ROLES[2]],
        )  # fmt: skip
    _finish(run_dir, dev)


#: the three models of a merge run, as its images, scores and grid name them
ROLES = ("teacher", "student before", "student after")


def _finish(run_dir: Path, dev) -> None:
    meta = read_json(run_dir / "config.json")
    study = meta["study"]
    teacher = load_model(study["teacher"], study["teacher_weights"], seed=study["seed"] + 1)
    before = load_model(study["student"], study["student_weights"], seed=study["seed"])
    after = load_model(str(run_dir / "student.safetensors"))
    models = [teacher, before, after]
    found = sorted((run_dir / "images").glob("*/result.json"))
    done = sorted((GeneratedImage.load(p.parent) for p in found), key=lambda g: (g.cls, g.key))
    if done:
        # images and scores name the models by role: a teacher and a student of one
        # architecture and weights state have the same label
        write_csv(run_dir / "scores.csv", class_scores(models, done, dev, names=ROLES))
        cols = list(dict.fromkeys(g.class_name for g in done))
        cells = {(g.models[0], g.class_name): g.image for g in done if g.copy == 0}
        row_names = [n for n in ROLES if any(k[0] == n for k in cells)]
        grid = [[cells.get((r, c)) for c in cols] for r in row_names]
        save_grid(grid, run_dir / "grid.png", row_labels=row_names, col_labels=cols)
        moved = _distances(cells, cols)
        if moved:
            write_csv(run_dir / "distances.csv", moved)
    _figure(read_csv(run_dir / "merge.csv"), run_dir / "merge.png")


def _distances(cells: dict, classes: list[str]) -> list[dict]:
    """Per class, RMS pixel distances between the class images: the student's before and
    after merging against the teacher's, and after against before (did merging bring the
    student's images to the teacher's, or only change them?)."""

    def rms(a: torch.Tensor, b: torch.Tensor) -> float:
        if a.shape[-1] != b.shape[-1]:
            b = torch.nn.functional.interpolate(b, size=a.shape[-2:], mode="bilinear")
        return float((a.double() - b.double()).pow(2).mean().sqrt())

    rows = []
    for c in classes:
        t, b, a = (cells.get((who, c)) for who in ("teacher", "student before", "student after"))
        if t is None or b is None or a is None:
            continue
        rows.append(
            {"class": c, "before_to_teacher": rms(b, t), "after_to_teacher": rms(a, t),
             "after_to_before": rms(a, b)}
        )  # fmt: skip
    return rows


def _figure(curve: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2))
    steps = [r["step"] for r in curve]
    ax.plot(steps, [r["rss_train"] for r in curve], label="teacher's images (trained on)")
    if "rss_heldout" in curve[0]:
        ax.plot(steps, [r["rss_heldout"] for r in curve], label="held-out photos")
    ax.set_yscale("log")
    ax.set_xlabel("SGD step")
    ax.set_ylabel("RSS per image, student vs teacher")
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    plt.close(fig)


def summary(run_dir: Path) -> dict:
    curve = read_csv(Path(run_dir) / "merge.csv")
    first, last = curve[0], curve[-1]
    out = {
        "steps": last["step"],
        "rss_train_before": first["rss_train"],
        "rss_train_after": last["rss_train"],
        "train_drop": first["rss_train"] / last["rss_train"] if last["rss_train"] else float("inf"),
    }
    if "rss_heldout" in first:
        out |= {
            "rss_heldout_before": first["rss_heldout"],
            "rss_heldout_after": last["rss_heldout"],
            "heldout_drop": first["rss_heldout"] / last["rss_heldout"],
        }
    return out


def _mean(rows: list[dict], key: str) -> float:
    return sum(r[key] for r in rows) / len(rows)


def report(run_dir: str | Path) -> Path:
    run_dir = Path(run_dir)
    study = read_json(run_dir / "config.json")["study"]
    s = summary(run_dir)

    def who(name: str, weights: str) -> str:
        return f"{html.escape(name)} ({html.escape(weights_label(weights))})"

    rss_rows = [["trained on", s["rss_train_before"], s["rss_train_after"], s["train_drop"]]]
    if "heldout_drop" in s:
        rss_rows.append(
            ["held out", s["rss_heldout_before"], s["rss_heldout_after"], s["heldout_drop"]]
        )
    parts = [
        f"<p>student {who(study['student'], study['student_weights'])} trained for "
        f"{s['steps']} SGD steps (lr {study['lr']:g}, eval mode) so its outputs match teacher "
        f"{who(study['teacher'], study['teacher_weights'])} on {html.escape(study['images'])} "
        "images (RSS loss, seed III-3).</p>",
        table(["images", "RSS before", "RSS after", "drop ×"], rss_rows),
        figure("merge.png", "the student's loss on the teacher's images over the merging steps"),
    ]
    if (run_dir / "grid.png").is_file():
        parts += [
            "<h2>Class images</h2>",
            figure("grid.png", "teacher, student before and after: one column per class"),
        ]
    if (run_dir / "distances.csv").is_file():
        d = read_csv(run_dir / "distances.csv")
        keys = ["before_to_teacher", "after_to_teacher", "after_to_before"]
        parts.append("<h2>How far the student's class images moved (RMS pixel distance)</h2>")
        parts.append(
            table(
                ["class", "before ↔ teacher", "after ↔ teacher", "after ↔ before"],
                [[r["class"], *(r[k] for k in keys)] for r in d]
                + [["mean", *(_mean(d, k) for k in keys)]],
            )
        )
    if (run_dir / "scores.csv").is_file():
        groups: dict = {}
        for r in read_csv(run_dir / "scores.csv"):
            groups.setdefault((r["made_by"], r["model"]), []).append(r)
        parts.append("<h2>Class scores (mean over classes)</h2>")
        parts.append(
            table(
                ["images by", "scored by", "mean logit", "mean probability", "top-1"],
                [[a, b, _mean(v, "logit"), _mean(v, "probability"),
                  sum(r["rank"] == 1 for r in v) / len(v)] for (a, b), v in groups.items()],
            )
        )  # fmt: skip
    body = "\n".join(parts)
    return write_page(run_dir, "layerscope merge", f"Model merging · {run_dir.name}", body)


OPTIONS = (
    Option("student", "Student model name, or its checkpoint path."),
    Option("student_weights", "Student weights."),
    Option("teacher", "Teacher model name, or its checkpoint path."),
    Option("teacher_weights", "Teacher weights."),
    Option("images", "'generated' (the teacher's class images) or a folder / generate run."),
    Option("classes", "Classes the teacher generates.", cli="--class"),
    Option("steps", "SGD steps (Badger: 1000).", kind=int),
    Option("lr", "SGD learning rate (Badger's: 1e-5).", parse=number),
    Option("backtrack", "Undo a step that makes the RSS non-finite or doubles it and take it "
           "again at half the lr (the lr used is in merge.csv).", kind=bool),
    Option("heldout", "Held-out images: 'photos' or a folder."),
    Option("record_every", "Record the RSS every N steps.", kind=int),
    Option("regenerate", "Generate the student's class images before and after merging.",
           kind=bool),
    Option("preset", "Octaves of the generation (see generate)."),
    Option("size", "Side of the first octave.", kind=int),
    Option("iterations", "Steps per octave.", kind=int),
    Option("copies", "Teacher images per class, each from its own a0.", kind=int),
    Option("bn_prior", "BatchNorm prior for the teacher's images (data-free distillation).",
           parse=number),
    Option("tv", "Total-variation prior for the generated images.", parse=number),
    Option("seed", "Seed.", kind=int),
    DEVICE,
)  # fmt: skip


def terminal(run_dir: Path) -> list:
    """The RSS drop on the teacher's images (and held out), and where the student is."""
    run_dir = Path(run_dir)
    s = summary(run_dir)
    line = f"RSS on the teacher's images {s['rss_train_before']:.4g} → {s['rss_train_after']:.4g}"
    line += f" ({s['train_drop']:.1f}× lower)"
    if "heldout_drop" in s:
        line += f"; held out {s['rss_heldout_before']:.4g} → {s['rss_heldout_after']:.4g}"
        line += f" ({s['heldout_drop']:.1f}×)"
    where = f"student: {run_dir / 'student.safetensors'}  (report: {run_dir / 'report.html'})"
    return [Line(line), Line(where)]


STUDY = Study(
    kind="merge",
    terminal=terminal,
    table="merge.csv",
    config=MergeConfig,
    work=_work,
    report=report,
    summary=summary,
    title="Model merging on generated class images (III-3)",
    options=OPTIONS,
    command="merge",
    help=(
        "Model merging (seed III-3): train the student so its outputs match the teacher's on the "
        "teacher's generated class images (RSS, SGD, eval mode); save it as a checkpoint; compare "
        "the class images it generates before and after."
    ),
)
