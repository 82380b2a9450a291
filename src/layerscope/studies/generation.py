"""The generation study (Badger, part III): class images from one or several models' gradients,
combined and difference gradients, and output-vector ("vectorised") targets.

``GenerateConfig`` → :func:`run` → a run directory: ``config.json`` (this config and the
octaves of :class:`~layerscope.generation.GenerationConfig`), ``images/<key>/`` (image.png,
image.safetensors, curve.csv with the loss per recorded step of every octave, result.json —
written as each chunk of classes finishes, so ``--resume`` skips finished classes),
``targets/`` (the target images of vectorised runs), ``scores.csv`` (every model's logit,
probability and rank of the class on every image), ``curves.csv``, ``grid.png`` and
``report.html``.
"""

from __future__ import annotations

import html
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from ..core.config import Config, at_least, may_be_empty
from ..core.errors import ConfigError
from ..core.faults import fault_point
from ..core.files import read_json
from ..core.tables import read_csv, write_csv
from ..engine.descent import how_it_ran
from ..engine.device import check_fits, resolve_device
from ..engine.generation import (
    MODES,
    GeneratedImage,
    GenerationConfig,
    class_scores,
    generate_classes,
    generate_matching,
    target_vectors,
)
from ..engine.images import load_image, save_grid, save_image
from ..engine.models import Model, load_model, weights_label
from ..engine.recognition import Judge, judge_for, ssim
from ..engine.results import short_hash
from ..protocol.lifecycle import Run, Study, execute
from ..protocol.options import DEVICE, Option, number, numbers, shared, split_list
from ..protocol.runs import record_step
from ..report import figure, table, write_page
from ..report.terminal import Line, TextTable, step_line

__all__ = [
    "STUDY",
    "GenerateConfig",
    "load_models",
    "report",
    "run",
    "summary",
    "summary_numbers",
]


@dataclass
class GenerateConfig(Config):
    """What ``layerscope generate`` does.

    ``models`` and ``weights``: one entry each per model (a checkpoint path alone in
    ``weights`` names its model through its sidecar when ``models`` is empty). ``classes``:
    ``0..9``, ``0,3``, ``tench,goldfinch``. ``mode``: single | combined | difference, or
    several comma separated (``single,combined``: each model's images and the combined ones in
    one run, scored side by side).
    ``target_from_image``: photos (paths or built-in names) or ``generated`` — then
    ``target_model`` makes class images first and the generating model matches its own output
    on them (``ŷ = O(a_θ₂, θ₁)``, III-4; ``target_vector="target-model"``: the target model's
    output instead). ``iterations``: override every octave's count (quick runs); ``pad``: grow
    the image by that many pixels of 0.7 per side after every step (the reference's padding;
    the octaves' sizes then only start each octave)."""

    models: list[str] = may_be_empty()  # empty: named by the checkpoints' sidecars
    weights: list[str] = field(default_factory=lambda: ["none"])
    classes: str = "0..3"
    mode: str = "single"
    preset: str = "default"
    size: int | None = at_least(8)
    iterations: int | None = at_least(1)
    pad: int | None = at_least(0)
    copies: int = at_least(1, 1)
    step: str | None = None
    param: str | None = None
    transforms: str | None = None
    C: list[float] | None = None
    term_weights: list[float] | None = None
    reference: bool = False
    input_l1: float = at_least(0, 0.0)
    tv: float = at_least(0, 0.0)
    bn_prior: float = at_least(0, 0.0)
    target_from_image: list[str] | None = None
    target_model: str | None = None
    target_weights: str = "none"
    target_vector: str = "own"
    #: an independent classifier that scores the images beside the run's own models (its rows
    #: in scores.csv are its label): none, auto (a real EfficientNet-Lite not in the run), a
    #: model name with ImageNet weights or a checkpoint whose sidecar names its classes
    judge: str = "none"
    max_batch: int | None = None
    precision: str = "fp32"
    compile: str = "off"
    seed: int = 0
    device: str = "auto"

    @property
    def modes(self) -> list[str]:
        """The modes of this run, in order (``single,combined``: each model's images and the
        combined ones, side by side in one run)."""
        return [m.strip() for m in str(self.mode).split(",") if m.strip()]

    def __post_init__(self) -> None:
        bad = [m for m in self.modes if m not in MODES]
        if bad or not self.modes:
            raise ConfigError(
                f"--mode must be one of {', '.join(MODES)} (or several, comma separated: "
                f"single,combined), not {self.mode!r}"
            )
        if not self.weights:
            raise ConfigError("--weights is empty: give one weight state per model")
        if self.models and len(self.weights) == 1 and len(self.models) > 1:
            self.weights = self.weights * len(self.models)
        if self.models and len(self.weights) != len(self.models):
            raise ConfigError(
                f"--weights gives {len(self.weights)} states for {len(self.models)} models: "
                "give one per model (none, imagenet or a checkpoint path)"
            )
        if self.target_vector not in ("own", "target-model"):
            raise ConfigError(
                f"--target-vector must be own or target-model, not {self.target_vector!r}"
            )
        if self.target_from_image and self.modes != ["single"]:
            raise ConfigError("--target-from-image generates with one model: drop --mode")
        if self.target_from_image == ["generated"] and not self.target_model:
            raise ConfigError(
                "--target-from-image generated needs --target-model (whose class images are "
                "the targets)"
            )
        if self.max_batch is not None and self.max_batch < 1:
            raise ConfigError(f"--max-batch must be at least 1, not {self.max_batch}")
        # every image is kept until the run is scored: refuse what cannot fit before any
        # model loads (a lower bound: one class, the first octave's size)
        side = self.size or 8  # None: the preset's octaves (at least 8 pixels)
        check_fits(8.0 * 3 * side**2 * self.copies * max(1, len(self.models)),
                   f"keeping {self.copies:,} copies of each class image at {side}×{side}",
                   "fewer --copies (or a smaller --size)")  # fmt: skip

    def generation(self) -> GenerationConfig:
        over: dict = {
            "seed": self.seed, "precision": self.precision, "compile": self.compile,
            "copies": self.copies,
        }  # fmt: skip
        for k in ("input_l1", "tv", "bn_prior", "reference"):
            over[k] = getattr(self, k)
        for k in ("step", "param", "transforms"):
            if getattr(self, k) is not None:
                over[k] = getattr(self, k)
        if self.C is not None:
            over["C"] = tuple(self.C)
        if self.term_weights is not None:
            over["weights"] = tuple(self.term_weights)
        cfg = GenerationConfig.preset(self.preset, size=self.size, **over)
        if self.iterations is not None:
            if self.iterations < 1:
                raise ConfigError(f"--iterations must be at least 1, not {self.iterations}")
            cfg = replace(
                cfg, stages=tuple(replace(s, iterations=self.iterations) for s in cfg.stages)
            )
        if self.pad is not None:  # the reference's Pad(1, fill=0.7) after every step: --pad 1
            cfg = replace(cfg, stages=tuple(replace(s, pad=self.pad) for s in cfg.stages))
        return cfg


def load_models(config: GenerateConfig) -> list[Model]:
    size = config.generation().stages[0].size
    names = config.models or [None] * len(config.weights)
    out = []
    for name, w in zip(names, config.weights, strict=True):
        if name is None:
            if w in ("none", "imagenet"):
                raise ConfigError("--model is needed unless --weights are checkpoints")
            out.append(load_model(w))
        else:
            # built-in fully connected nets are built for the first octave's size
            out.append(load_model(name, w, seed=config.seed, input_size=size))
    given = [(m.name, str(m.weights)) for m in out]
    if len(set(given)) != len(given):
        raise ConfigError("the same model and weights twice: give distinct models")
    return out


def _done(run_dir: Path) -> dict[str, GeneratedImage]:
    out = {}
    for p in sorted((run_dir / "images").glob("*/result.json")):
        out[p.parent.name] = GeneratedImage.load(p.parent)
    return out


def run(
    config: GenerateConfig | None = None, out=None, resume: bool = False, progress: bool = False
) -> Path:
    """Generate, save as each chunk finishes, score, draw. Returns the run directory.
    ``resume`` makes only the missing images (the device, ``max_batch`` and ``compile`` may
    change)."""
    return execute(STUDY, config, out, resume, progress)


def _work(config: GenerateConfig, run: Run) -> None:
    run_dir, progress = run.dir, run.progress
    gen = config.generation()
    dev = resolve_device(config.device)
    models = load_models(config)
    images_dir = run_dir / "images"

    def keep(g: GeneratedImage) -> None:
        g.save(images_dir)
        run.saved()
        fault_point("image-saved")

    def interrupted() -> str:
        n = len(list(images_dir.glob("*/result.json"))) if images_dir.is_dir() else 0
        return (
            f"interrupted: {n} images saved in {run_dir}; rerun with --resume --out {run_dir}"
            if n
            else "interrupted before the first chunk of images was saved; nothing to resume"
        )

    run.interrupted = interrupted
    judge = judge_for([m.name for m in models], config.judge)  # before any descent
    run.meta(device=str(dev), generation=gen.to_dict(), models=[m.config for m in models],
             judge=judge.name if judge else None)  # fmt: skip
    done = _done(run_dir)
    status: dict = {}
    start = time.perf_counter()
    if config.target_from_image:
        _vectorised(config, gen, models, dev, run_dir, set(done), keep, progress, status)
    else:
        for mode in config.modes:
            generate_classes(
                models, config.classes, gen, mode, device=dev, max_rows=config.max_batch,
                skip=set(done), on_result=keep, progress=progress, status=status,
            )  # fmt: skip
    seconds = round(time.perf_counter() - start, 3)
    record_step(run_dir, compile=how_it_ran(status), descent_seconds=seconds)
    finish(run_dir, models, dev, judge)


def _target_names(paths: list[str]) -> list[str]:
    """A name per target photo, unique within the run: its file's stem, with a short hash of
    the whole path where two stems are the same (``a/x.png``, ``b/x.png``)."""
    stems = [Path(p).stem for p in paths]
    names = [
        s if stems.count(s) == 1 else f"{s}-{short_hash(p)}"
        for s, p in zip(stems, paths, strict=True)
    ]
    if len(set(names)) != len(names):
        raise ConfigError(f"--target-from-image names the same image twice: {paths}")
    return names


def _vectorised(config, gen, models, dev, run_dir, done, keep, progress, status) -> None:
    (model,) = models[:1]
    if len(models) != 1:
        raise ConfigError("--target-from-image generates with one --model")
    size = gen.stages[0].size
    tdir = run_dir / "targets"
    if config.target_from_image == ["generated"]:
        b = load_model(config.target_model, config.target_weights, seed=config.seed)
        if b.label == model.label:
            raise ConfigError(
                f"--target-model and --model are both {b.label}: their images would share "
                "names; give checkpoints with different file names"
            )
        generate_classes(
            [b], config.classes, gen, "single", device=dev, skip=done,
            on_result=keep, progress=progress, status=status,
        )  # fmt: skip
        # the generating model's own class images, to compare with its vectorised ones
        generate_classes(
            [model], config.classes, gen, "single", device=dev, skip=done,
            on_result=keep, progress=progress, status=status,
        )  # fmt: skip
        have = _done(run_dir)
        sources = [g for g in have.values() if g.mode == "single" and g.models == [b.label]]
        sources.sort(key=lambda g: g.cls)
        images = torch.cat([g.image for g in sources])
        names = [g.key for g in sources]  # a matched image names its source image
        classes = [g.cls for g in sources]
        source_model = b
    else:
        images = torch.cat([load_image(p, size) for p in config.target_from_image])
        names = _target_names(config.target_from_image)
        classes = [None] * len(names)
        source_model = (
            load_model(config.target_model, config.target_weights, seed=config.seed)
            if config.target_model
            else model
        )
        for k, n in enumerate(names):
            save_image(images[k : k + 1], tdir / f"{n}.png")
    by = source_model if config.target_vector == "target-model" else model
    vec = target_vectors(by, images, dev)
    made = generate_matching(
        model, vec, names, gen, device=dev, skip=done, progress=progress, status=status
    )
    for g, c in zip(made, [classes[names.index(g.target)] for g in made], strict=True):
        if c is not None:
            g.cls = c
            g.class_name = model.class_names(vec.shape[1])[c]
        keep(g)


def finish(run_dir: Path, models: list[Model], dev, judge: Judge | None = None) -> None:
    """Scores (by the run's models, the target model and the ``judge``), curves, the grid and
    the page from the saved images."""
    done = sorted(_done(run_dir).values(), key=lambda g: (g.mode, g.cls or 0, g.key))
    study = read_json(run_dir / "config.json")["study"]
    extra = []
    if study.get("target_model"):  # the target model scores the images too
        extra = [load_model(study["target_model"], study["target_weights"], seed=study["seed"])]
    if judge is not None and all(judge.name != m.label for m in models + extra):
        extra.append(judge.model)
    good = [g for g in done if g.status == "ok"]  # a diverged image is never scored
    scored = [g for g in good if g.cls is not None]
    if scored:
        write_csv(run_dir / "scores.csv", class_scores(models + extra, scored, dev))
    write_csv(
        run_dir / "curves.csv",
        [{"image": g.key} | row for g in done for row in g.curve],
    )
    vector = _vector_distances(run_dir, good)
    if vector:
        write_csv(run_dir / "vector.csv", vector)
    _grid(run_dir, done)


def _vector_distances(run_dir: Path, done: list[GeneratedImage]) -> list[dict]:
    """For each vectorised image: the RMS pixel distance and the SSIM to its own target image
    and the mean of each over the other targets (III-4: does the image take the target's
    features?), and, for generated targets, the same for the generating model's own class
    image."""
    vec = [g for g in done if g.mode == "vector"]
    if not vec:
        return []
    photos = run_dir / "targets"
    size = vec[0].image.shape[-1]
    by_key = {s.key: s for s in done}
    targets: dict[str, torch.Tensor] = {}
    for g in vec:
        if g.target in by_key:  # a generated target: the image it names
            targets[g.target] = by_key[g.target].image
        elif (photos / f"{g.target}.png").is_file():
            targets[g.target] = load_image(photos / f"{g.target}.png", size)

    def resized(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if a.shape[-1] != b.shape[-1]:
            b = torch.nn.functional.interpolate(b, size=a.shape[-2:], mode="bilinear")
        return b

    def rms(a: torch.Tensor, b: torch.Tensor) -> float:
        return float((a.double() - resized(a, b).double()).pow(2).mean().sqrt())

    def similarity(a: torch.Tensor, b: torch.Tensor) -> float:
        return ssim(a, resized(a, b))

    own = {(g.models[0], g.class_name): g.image for g in done if g.mode == "single"}
    rows = []
    for g in vec:
        if g.target not in targets:
            continue
        row = {"image": g.key, "target": g.target}
        for name, measure in (("rms", rms), ("ssim", similarity)):
            others = [measure(g.image, t) for k, t in targets.items() if k != g.target]
            row[f"{name}_to_target"] = measure(g.image, targets[g.target])
            row[f"{name}_to_other_targets"] = sum(others) / len(others) if others else float("nan")
        mine = own.get((g.models[0], g.class_name))
        if mine is not None:  # the generating model's own class image, for comparison
            row["own_class_image_rms_to_target"] = rms(mine, targets[g.target])
            row["own_class_image_ssim_to_target"] = similarity(mine, targets[g.target])
        rows.append(row)
    return rows


def _grid(run_dir: Path, done: list[GeneratedImage]) -> None:
    """Rows: who made the images (a model alone, combined, difference, a vectorised model);
    columns: the classes (or targets); photo targets get a row of their own."""
    if not done:
        return

    def who(g: GeneratedImage) -> str:
        if g.mode == "vector":
            return f"{g.models[0]} (vector)"
        return g.models[0] if g.mode == "single" else g.mode

    def col(g: GeneratedImage) -> str:
        return g.class_name if g.cls is not None else g.target

    done = [g for g in done if g.copy == 0]  # one image per class in the grid
    cells = {(who(g), col(g)): g.image for g in done}
    names = list(dict.fromkeys(who(g) for g in done))
    cols = list(dict.fromkeys(col(g) for g in done))
    tdir = run_dir / "targets"
    photos = {p.stem: p for p in tdir.glob("*.png")} if tdir.is_dir() else {}
    if photos:
        size = done[0].image.shape[-1]
        for c in cols:
            if c in photos:
                cells[("target", c)] = load_image(photos[c], size)
        names = ["target", *names]
    rows = [[cells.get((r, c)) for c in cols] for r in names]
    save_grid(rows, run_dir / "grid.png", row_labels=names, col_labels=cols)


def summary(run_dir: Path) -> list[dict]:
    """Mean logit, probability and top-1 rate of each model on each kind of image."""
    path = Path(run_dir) / "scores.csv"
    if not path.is_file():
        return []
    groups: dict[tuple, list[dict]] = {}
    for r in read_csv(path):
        groups.setdefault((r["mode"], r["made_by"], r["model"]), []).append(r)
    out = []
    for (mode, made_by, model), rs in groups.items():
        out.append(
            {
                "images": mode if mode != "single" else f"single: {made_by}",
                "scored_by": model,
                "n": len(rs),
                "mean_logit": sum(r["logit"] for r in rs) / len(rs),
                "mean_probability": sum(r["probability"] for r in rs) / len(rs),
                "top1": sum(r["rank"] == 1 for r in rs) / len(rs),
            }
        )
    return out


def diverged(run_dir: str | Path) -> list[tuple[str, str]]:
    """(image, why) of every image whose descent diverged (kept for inspection, never
    scored)."""
    return [(g.key, g.message) for g in _done(Path(run_dir)).values() if g.status != "ok"]


def report(run_dir: str | Path) -> Path:
    run_dir = Path(run_dir)
    meta = read_json(run_dir / "config.json")
    study = meta["study"]
    rows = summary(run_dir)
    failed = diverged(run_dir)
    who = ", ".join(f"{m['name']}/{weights_label(m['weights'])}" for m in meta.get("models", []))
    parts = [
        f"<p>mode <b>{html.escape(study['mode'])}</b>, preset {html.escape(study['preset'])}, "
        f"models {html.escape(who)}</p>",
        figure("grid.png", "the generated image of every class and model")
        if (run_dir / "grid.png").is_file()
        else "",
    ]
    if failed:
        parts.append("<h2>Diverged (not scored)</h2><ul>")
        parts += [f"<li>{html.escape(k)}: {html.escape(m)}</li>" for k, m in failed]
        parts.append("</ul>")
    if rows:
        parts.append("<h2>Class scores (mean over classes)</h2>")
        head = ["images", "scored by", "n", "mean logit", "mean probability", "top-1"]
        keys = ["images", "scored_by", "n", "mean_logit", "mean_probability", "top1"]
        parts.append(table(head, [[r[k] for k in keys] for r in rows]))
    path = run_dir / "scores.csv"
    if path.is_file():
        parts.append("<h2>Every image</h2>")
        head = ["image", "scored by", "class", "logit", "probability", "rank", "top class"]
        keys = ["image", "model", "class_name", "logit", "probability", "rank", "top_class"]
        parts.append(table(head, [[r[k] for k in keys] for r in read_csv(path)]))
    path = run_dir / "vector.csv"
    if path.is_file():
        vec = read_csv(path)
        parts.append("<h2>Vectorised images against their targets (RMS pixel distance, SSIM)</h2>")
        head = ["image", "target", "to its target", "to the other targets"]
        keys = ["image", "target", "rms_to_target", "rms_to_other_targets"]
        if "ssim_to_target" in vec[0]:
            head += ["SSIM to its target", "SSIM to the others"]
            keys += ["ssim_to_target", "ssim_to_other_targets"]
        if "own_class_image_rms_to_target" in vec[0]:
            head.append("the model's own class image to the target")
            keys.append("own_class_image_rms_to_target")
        parts.append(table(head, [[r.get(k, "") for k in keys] for r in vec]))
    octaves = meta.get("generation", {}).get("stages", [])
    if octaves:
        parts.append("<h2>Octaves</h2>")
        parts.append(
            table(
                ["size", "iterations", "lr", "σ", "crop", "pad"],
                [[s["size"], s["iterations"], f"{s['lr']['start']:g}→{s['lr']['end']:g}",
                  f"{s['sigma']['start']:g}→{s['sigma']['end']:g}" if s.get("sigma") else "none",
                  s["crop"] or "", s["pad"]] for s in octaves],
            )
        )  # fmt: skip
        g = meta["generation"]
        parts.append(
            f"<p>Step rule {html.escape(str(g.get('step')))}; parameterisation "
            f"{html.escape(str(g.get('param', 'pixel')))}; transforms "
            f"{html.escape(str(g.get('transforms') or 'none'))}.</p>"
        )
    body = "\n".join(parts)
    return write_page(run_dir, "layerscope generate", f"Generation · {run_dir.name}", body)


def summary_numbers(run_dir: str | Path) -> dict:
    """Per kind of image and scoring model: the mean probability of the class."""
    return {
        f"{r['images']} by {r['scored_by']} p(class)": r["mean_probability"]
        for r in summary(run_dir)
    }


OPTIONS = (
    shared("model", "default: named by the checkpoints' sidecars", many=True, path="models"),
    shared("weights", "one per model", many=True),
    Option("classes", "Classes: 0..9 | 0,3 | names (tench,goldfinch).", cli="--class"),
    Option("mode", "single | combined | difference; several in one run: single,combined."),
    Option("preset", "Octaves: default | figure (feature-visualisation images for a figure) | "
           "googlenet | inceptionv3."),
    Option("size", "Side of the first octave (later octaves and crops scale with it).",
           kind=int),
    Option("iterations", "Steps per octave (overrides the preset).", kind=int),
    Option("pad", "Grow the image by N px of 0.7 per side after every step (reference: 1).",
           kind=int),
    Option("copies", "Images per class, each from its own a0 (bigger batches for --bn-prior).",
           kind=int),
    Option("step", "Step rule: gradient | normalized | adam."),
    Option("param", "What the descent moves: pixel | fourier | decorrelated | "
           "fourier-decorrelated (default: the preset's)."),
    Option("transforms", "Robustness transforms each step, e.g. pad:12,jitter:8,scale:0.9-1.1,"
           "rotate:10,resize:224 or standard (default: the preset's; '' for none)."),
    Option("C", "Class target C (one value, or one per model; default 200).", cli="--C",
           parse=numbers),
    Option("term_weights", "Per-model weights d,e of the class terms.", parse=numbers),
    Option("reference", "The reference code's arithmetic: 0.5·((200−l1)+(400−l2)), "
           "2·((200−l1)−(400−l2)).", kind=bool),
    Option("input_l1", "λ of + λ·Σ|a| (Badger's 0.001).", parse=number),
    Option("tv", "Weight of a total-variation prior.", parse=number),
    Option("bn_prior", "Weight of the BatchNorm-statistics prior (DeepInversion; e.g. 0.01).",
           parse=number),
    Option("target_from_image", "Vectorised targets: photo paths/names, or 'generated'.",
           parse=split_list),
    Option("target_model", "Model whose class images are the targets (with 'generated')."),
    Option("target_weights", "Weights of --target-model."),
    Option("target_vector", "own: the generating model's output on the target (Badger's) | "
           "target-model."),
    Option("judge", "An independent classifier that scores the images too: none, auto (a "
           "real EfficientNet-Lite not in the run), a model name or a checkpoint."),
    Option("max_batch", "Rows per batch (classes × models); finished chunks are saved.",
           kind=int),
    Option("precision", "fp32 | tf32 (CUDA) | bf16 (autocast)."),
    Option("compile", "off | on | auto (CUDA): the step through torch.compile (a CUDA graph)."),
    Option("seed", "Seed of a0 and the jitter.", kind=int),
    DEVICE,
)  # fmt: skip


def terminal(run_dir: Path) -> list:
    """Mean class scores per kind of image and scoring model; the diverged images."""
    run_dir = Path(run_dir)
    table = TextTable(
        f"generate · {run_dir.name}", ("images", "scored by", "n", "logit", "probability", "top-1")
    )
    for r in summary(run_dir):
        table.add(
            r["images"], r["scored_by"], r["n"], f"{r['mean_logit']:.2f}",
            f"{r['mean_probability']:.3f}", f"{r['top1']:.2f}",
        )  # fmt: skip
    lines = [Line(f"{key}: diverged, not scored — {why}", "yellow")
             for key, why in diverged(run_dir)]  # fmt: skip
    where = f"results: {run_dir}  (grid: {run_dir / 'grid.png'}, report: {run_dir / 'report.html'})"
    return [table, *lines, *step_line(run_dir), Line(where)]


STUDY = Study(
    kind="generate",
    terminal=terminal,
    table="curves.csv",
    config=GenerateConfig,
    work=_work,
    report=report,
    summary=summary_numbers,
    resumable=True,
    free=("device", "max_batch", "compile"),
    title="Class images from one or several models' gradients (part III)",
    options=OPTIONS,
    command="generate",
    help=(
        "Class images from one or several models' gradients (Badger, part III): single, "
        "combined and difference gradients, octaves and jitter, optional priors; or images "
        "matching output "
        "vectors (--target-from-image)."
    ),
)
