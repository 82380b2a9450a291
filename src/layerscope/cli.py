"""Command line: one command per study; options become a config dataclass, then ``run``."""

from __future__ import annotations

import sys
from fractions import Fraction
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from .errors import ConfigError, Interrupted, LayerscopeError

__all__ = ["app", "main"]

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="layerscope: what each layer of a vision model still knows about its input.",
)
console = Console(width=None if sys.stdout.isatty() else 150)


def _list(value: str | None) -> list[str] | None:
    """``a,b,c`` → ``["a", "b", "c"]``; a name with a comma goes in double quotes:
    ``--image '"a,b.png",c.png'``."""
    if value is None:
        return None
    import csv

    try:
        items = next(csv.reader([value], skipinitialspace=True, strict=True), [])
    except csv.Error as exc:
        raise ConfigError(f"{value!r}: unbalanced double quotes ({exc})") from exc
    return [v.strip() for v in items if v.strip()]


def _given(ctx: typer.Context) -> set[str]:
    """The options the user typed (not left at their defaults)."""
    typed = ("COMMANDLINE", "ENVIRONMENT")  # by name: typer may vendor its own click
    return {
        name
        for name in ctx.params
        if getattr(ctx.get_parameter_source(name), "name", None) in typed
    }


def _at(d: dict, path: str):
    for part in path.split("."):
        d = d.get(part) if isinstance(d, dict) else None
    return d


def _run(
    ctx: typer.Context | None,
    study,
    config,
    out: Path | None,
    resume: bool = False,
    paths: dict[str, str | None] | None = None,
    also: tuple[str, ...] = (),
) -> Path:
    """Options → config → the one lifecycle. ``paths`` maps an option to the config field it
    sets (default: the same name; None: compared through other entries), so a resume compares
    exactly what the user typed with the stored run and names a difference as the option
    they typed. ``also``: more config paths the user set (the keys of ``--data-params``)."""
    from .lifecycle import execute

    paths = paths or {}
    typed = _given(ctx) - {"out", "resume"} if ctx is not None else set()
    typed = {name for name in typed if paths.get(name, name) is not None}
    given = sorted({paths.get(name, name) for name in typed} | set(also))
    names: dict[str, list[str]] = {}
    for name in sorted(typed):
        names.setdefault(paths.get(name, name), []).append("--" + name.replace("_", "-"))

    def spell(path: str) -> str:
        return "/".join(names.get(path, [path]))

    return execute(study, config, out, resume, sys.stderr.isatty(), given=given, spell=spell)


def _number(value: str) -> float:
    """``0.1``, ``1e-4`` or a fraction such as ``1/18``."""
    try:
        return float(Fraction(value.strip())) if "/" in value else float(value)
    except (ValueError, ZeroDivisionError) as exc:
        raise ConfigError(f"{value!r} is not a number (e.g. 0.05 or 1/18)") from exc


def _pair(value: str | None, name: str) -> tuple[float, float] | None:
    if value is None:
        return None
    parts = [p for p in value.split(",") if p.strip()]
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2:
        raise ConfigError(f"--{name} takes START,END (e.g. 2.4,0.4), not {value!r}")
    return _number(parts[0]), _number(parts[1])


def _inversion_config(
    preset: str,
    iterations: int | None = None,
    step: str | None = None,
    lr: str | None = None,
    sigma: str | None = None,
    blur: bool = True,
    blur_kernel: int = 3,
    loss: str | None = None,
    loss_scale: str | None = None,
    reference_sigma: str | None = None,
    jitter: int | None = None,
    record_every: int | None = None,
    seed: int | None = None,
    batching: str | None = None,
    precision: str | None = None,
    max_batch: int | None = None,
    compile: str | None = None,
):
    """The engine config from a preset and the options a user gave (None: the preset's)."""
    from dataclasses import replace

    from .inversion import GaussianBlur, InversionConfig, Jitter, L1Loss, Schedule

    try:
        inv = InversionConfig.preset(preset)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    if preset == "default":
        inv = replace(inv, iterations=300)
    if iterations is not None:
        inv = replace(inv, iterations=iterations)
    if step is not None:
        inv = replace(inv, step=step)
    if (p := _pair(lr, "lr")) is not None:
        inv = replace(inv, lr=Schedule(*p))
    if not blur:
        inv = replace(inv, blur=None)
    else:
        base = inv.blur or GaussianBlur()
        s = _pair(sigma, "sigma")
        inv = replace(inv, blur=GaussianBlur(blur_kernel, Schedule(*s) if s else base.sigma))
    if loss is not None or loss_scale is not None:
        inv = replace(
            inv,
            loss=L1Loss(
                loss or inv.loss.reduction,
                _number(loss_scale) if loss_scale is not None else inv.loss.scale,
            ),
        )
    if reference_sigma is not None:
        inv = replace(inv, reference_sigma=_number(reference_sigma))
    if jitter is not None:
        inv = replace(inv, jitter=Jitter(jitter))
    if record_every is not None:
        inv = replace(inv, record_every=record_every)
    if seed is not None:
        inv = replace(inv, seed=seed)
    if batching is not None:
        inv = replace(inv, batching=batching)
    if precision is not None:
        inv = replace(inv, precision=precision)
    if max_batch is not None:
        inv = replace(inv, max_batch=max_batch)
    if compile is not None:
        inv = replace(inv, compile=compile)
    return inv


_DEPTH_PATHS = {
    "model": "models",
    "image": "images",
    "iterations": "inversion.iterations",
    "preset": "inversion",
    "step": "inversion.step",
    "lr": "inversion.lr",
    "sigma": "inversion.blur",
    "blur": "inversion.blur",
    "blur_kernel": "inversion.blur",
    "loss": "inversion.loss",
    "loss_scale": "inversion.loss",
    "reference_sigma": "inversion.reference_sigma",
    "jitter": "inversion.jitter",
    "record_every": "inversion.record_every",
    "seed": "inversion.seed",
    "batching": "inversion.batching",
    "precision": "inversion.precision",
    "max_batch": "inversion.max_batch",
    "compile": "inversion.compile",
    "restarts": "restarts",
    "normalize": "normalize",
    "num_classes": "num_classes",
    "layers": "layers",
    "size": "size",
    "weights": "weights",
    "device": "device",
}


@app.command()
def depth(
    ctx: typer.Context,
    model: str = typer.Option("resnet18,resnet50", help="Model names, comma separated."),
    weights: str = typer.Option(
        "none", help="Comma separated: none (untrained), imagenet, or checkpoint paths."
    ),
    image: str = typer.Option("chelsea", help="Image files or sample names, comma separated."),
    layers: str = typer.Option(
        "all", help="Layer names or aliases (conv1…conv5, conv1_pooled), or 'all' stages."
    ),
    iterations: int | None = typer.Option(None, help="Descent steps (default 300; paper 500)."),
    size: int | None = typer.Option(None, help="Image side in pixels (default 224; paper 299)."),
    out: Path | None = typer.Option(None, help="Run directory (default runs/<date>-depth)."),
    resume: bool = typer.Option(
        False, help="Continue the run in --out with its stored config, skipping finished targets."
    ),
    preset: str = typer.Option(
        "default", help="default | paper | blog | fast (paper/blog: the seeds' constants)."
    ),
    step: str | None = typer.Option(None, help="gradient (seed) | normalized | adam."),
    lr: str | None = typer.Option(None, help="Step size START,END (linear schedule)."),
    sigma: str | None = typer.Option(None, help="Blur σ START,END (linear schedule)."),
    blur: bool = typer.Option(True, help="Gaussian blur after each step (--no-blur: off)."),
    blur_kernel: int = typer.Option(3, help="Blur kernel size."),
    loss: str | None = typer.Option(None, help="L1 reduction: sum (seed) | mean | relative."),
    loss_scale: str | None = typer.Option(None, help="Loss scale s (seed: 0.15)."),
    reference_sigma: str | None = typer.Option(None, help="σ′ of a′ = a + N(0, σ′), e.g. 1/18."),
    jitter: int | None = typer.Option(None, help="Random crop side for octave jitter (off)."),
    record_every: int | None = typer.Option(None, help="Record distances every k steps."),
    seed: int | None = typer.Option(None, help="Seed of a0, a′ and jitter (paper: 999)."),
    batching: str | None = typer.Option(None, help="auto | staged | per-layer."),
    precision: str | None = typer.Option(
        None, help="fp32 | tf32 (CUDA) | bf16 (autocast); a, the step and metrics stay float32."
    ),
    max_batch: int | None = typer.Option(
        None, help="Most targets per batch (out of memory: the batch is halved and goes on)."
    ),
    compile: str | None = typer.Option(
        None, help="off | on | auto (CUDA): the step through torch.compile (a CUDA graph)."
    ),
    normalize: str | None = typer.Option(
        None,
        help="Input normalisation inside the model: none | imagenet (default: none, or "
        "what a checkpoint's sidecar says).",
    ),
    num_classes: int | None = typer.Option(
        None, help="Head size of a checkpoint without a sidecar (default: the model's own)."
    ),
    restarts: int = typer.Option(
        1, help="Descents per target from different a0: the spread of their reconstructions."
    ),
    device: str = typer.Option("auto", help="auto | cpu | cuda."),
) -> None:
    """Reconstruct an image from every layer: m_g, m_r, m_i, reconstructions and a report."""
    from .studies import depth as study

    inv = _inversion_config(
        preset, iterations, step, lr, sigma, blur, blur_kernel, loss, loss_scale,
        reference_sigma, jitter, record_every, seed, batching, precision, max_batch, compile,
    )  # fmt: skip
    config = study.DepthConfig(
        models=_list(model),
        weights=_list(weights),
        images=_list(image),
        layers=_list(layers),
        size=size if size is not None else (299 if preset in ("paper", "blog") else 224),
        normalize=normalize,
        device=device,
        inversion=inv,
        num_classes=num_classes,
        restarts=restarts,
    )
    run_dir = _run(ctx, study.STUDY, config, out, resume, _DEPTH_PATHS)
    _print_summary(run_dir)
    _print_step(run_dir)
    console.print(f"results: {run_dir}  (report: {run_dir / 'report.html'})")


def _print_step(run_dir: Path) -> None:
    """The descent's own time (no model loading, no report) and how its step ran."""
    from .files import read_json

    step = read_json(run_dir / "config.json").get("step", {})
    if "descent_seconds" in step:
        what = f" for {step['targets']} targets" if "targets" in step else ""
        console.print(
            f"descent: {step['descent_seconds']:.2f} s{what} (step: {step.get('compile', 'off')})"
        )


def _print_summary(run_dir: Path) -> None:
    from .studies.depth import summary_rows

    table = Table(title=f"final distances · {run_dir.name}")
    for col in ("model", "weights", "image", "layer", "m_g", "m_r", "m_g<m_r", "m_i", "status"):
        table.add_column(col, justify="right")
    for r in summary_rows(run_dir):
        w = str(r["weights"])
        table.add_row(
            str(r["model"]),
            Path(w).stem if w not in ("none", "imagenet") else w,
            str(r["image"]),
            str(r["layer"]) + (f" r{r['restart']}" if r.get("restart") else ""),
            f"{r['embedding_distance']:.4g}",
            f"{r['reference_distance']:.4g}",
            r["m_g<m_r"],
            f"{r['input_distance']:.4g}",
            str(r["status"]),
        )
    console.print(table)


@app.command()
def train(
    ctx: typer.Context,
    model: str = typer.Option("resnet18", help="Model name (any `layerscope models` name)."),
    data: str = typer.Option(
        "photos",
        help="photos | noise | twopoints | folder:PATH | cifar10 | cifar100 | mnist | "
        "fashionmnist.",
    ),
    epochs: int | None = typer.Option(
        None,
        help="Epochs (default 20); a checkpoint is written after each. With --resume: the "
        "stored count, or more to extend the run.",
    ),
    batch_size: int = typer.Option(64, help="Batch size (the seed's noise recipe: 128)."),
    optimizer: str = typer.Option("adam", help="adam | sgd."),
    lr: str = typer.Option("1e-4", help="Learning rate."),
    weight_decay: float = typer.Option(0.0, help="Weight decay."),
    seed: int = typer.Option(0, help="Seeds the initialisation, data and order."),
    size: int | None = typer.Option(None, help="Image side (photos 64, noise 224, cifar 32)."),
    num_classes: int | None = typer.Option(
        None, help="Head size (default: the data set's classes; noise: 1000 as the seed)."
    ),
    n: int | None = typer.Option(None, help="Training images (photos, noise: 10,000)."),
    noise_classes: int = typer.Option(100, help="Labels of the noise set (0..k-1)."),
    data_params: str | None = typer.Option(
        None, help="Data set parameters KEY=VALUE,… (twopoints: xi, gap, norm, value)."
    ),
    shuffle: bool | None = typer.Option(None, help="Shuffle each epoch (noise: off)."),
    augment: bool = typer.Option(True, help="Random crops and flips (photos)."),
    normalize: str = typer.Option("none", help="none | imagenet (inside the model)."),
    data_root: str | None = typer.Option(None, help="Folder of torchvision data sets."),
    out: Path | None = typer.Option(None, help="Run directory (default runs/<date>-train)."),
    resume: bool = typer.Option(False, help="Continue from the last checkpoint in --out."),
    spectra: str | None = typer.Option(
        None, help="Layers whose activation spectra are recorded after every epoch."
    ),
    spectra_images: int = typer.Option(8, help="Train and held-out images for the spectra."),
    spectra_group: int = typer.Option(16, help="Image + noisy copies per spectrum group."),
    precision: str = typer.Option(
        "fp32", help="fp32 | tf32 (CUDA) | bf16 (autocast; weights stay float32)."
    ),
    workers: int | None = typer.Option(
        None, help="DataLoader workers (default: 4 for file data on CUDA, else 0)."
    ),
    cache: str = typer.Option(
        "auto", help="auto (synthetic sets on the GPU) | device | off: hold the set on the device."
    ),
    device: str = typer.Option("auto", help="auto | cpu | cuda."),
) -> None:
    """Train a model (checkpoint every epoch as .safetensors + JSON sidecar)."""

    from .tables import read_csv
    from .training import STUDY as TRAIN
    from .training import TrainConfig

    params: dict = _params(data_params) or {}
    if n is not None:
        if n < 1:
            raise LayerscopeError(f"--n must be at least 1 image, not {n}")
        params["length"] = n
    if data == "noise":
        if noise_classes < 1:
            raise LayerscopeError(f"--noise-classes must be at least 1, not {noise_classes}")
        params["num_classes"] = noise_classes
    config = TrainConfig(
        model=model,
        data=data,
        epochs=epochs,
        batch_size=batch_size,
        optimizer=optimizer,
        lr=_number(lr),
        weight_decay=weight_decay,
        seed=seed,
        size=size,
        num_classes=num_classes,
        shuffle=shuffle,
        augment=augment,
        normalize=normalize,
        data_root=data_root,
        data_params=params or None,
        device=device,
        spectra_layers=_list(spectra),
        spectra_images=spectra_images,
        spectra_group=spectra_group,
        precision=precision,
        workers=workers,
        cache=cache,
    )
    paths = {"n": "data_params.length", "noise_classes": "data_params.num_classes",
             "spectra": "spectra_layers", "data_params": None}  # fmt: skip
    keys = tuple(f"data_params.{k}" for k in (_params(data_params) or {}))
    run_dir = _run(ctx, TRAIN, config, out, resume, paths, also=keys)
    table = Table(title=f"training · {run_dir.name}")
    for col in ("epoch", "train loss", "train acc", "test loss", "test acc", "img/s"):
        table.add_column(col, justify="right")
    for r in read_csv(run_dir / "metrics.csv"):
        table.add_row(
            str(r["epoch"]),
            f"{r['train_loss']:.4f}",
            f"{r['train_accuracy']:.3f}",
            f"{r['test_loss']:.4f}",
            f"{r['test_accuracy']:.3f}",
            f"{r['images_per_second']:.0f}",
        )
    console.print(table)
    console.print(f"checkpoints: {run_dir / 'checkpoints'}")


study_app = typer.Typer(no_args_is_help=True, help="Studies built on the core engines.")
app.add_typer(study_app, name="study")


@study_app.command("training-effect")
def training_effect(
    ctx: typer.Context,
    model: str = typer.Option("resnet18", help="Model name."),
    weights: str = typer.Option(
        "none", help="Weight states, comma separated: none, imagenet, checkpoint paths."
    ),
    image: str = typer.Option("chelsea", help="Image file or sample name."),
    ood_image: str = typer.Option("brick", help="An out-of-distribution image (IV-9)."),
    layers: str = typer.Option("all", help="Layers (default: every stage)."),
    iterations: int | None = typer.Option(None, help="Descent steps (default 300)."),
    size: int = typer.Option(224, help="Image side."),
    preset: str = typer.Option("default", help="default | paper | blog | fast."),
    lr: str | None = typer.Option(None, help="Step size START,END."),
    step: str | None = typer.Option(None, help="gradient | normalized | adam."),
    seed: int | None = typer.Option(None, help="Seed of a0, a′ and jitter."),
    normalize: str | None = typer.Option(None, help="none | imagenet (default: sidecar's)."),
    out: Path | None = typer.Option(None, help="Run directory."),
    resume: bool = typer.Option(False, help="Continue the run in --out."),
    device: str = typer.Option("auto", help="auto | cpu | cuda."),
) -> None:
    """Untrained vs trained vs noise-trained at every stage, with and without blur, plus an
    out-of-distribution image and the first layer's filters (seed IV-8 … IV-11)."""

    from .studies import training_effect as study

    inv = _inversion_config(preset, iterations, step, lr, seed=seed)
    config = study.TrainingEffectConfig(
        model=model,
        weights=_list(weights),
        image=image,
        ood_image=ood_image,
        layers=_list(layers),
        size=size,
        normalize=normalize,
        device=device,
        inversion=inv,
    )
    run_dir = _run(ctx, study.STUDY, config, out, resume, _DEPTH_PATHS | {"image": "image"})
    for sub in ("blur", "noblur"):
        _print_summary(run_dir / sub)
    console.print(f"results: {run_dir}  (report: {run_dir / 'report.html'})")


@study_app.command("lose-spatial-info")
def lose_spatial_info(
    ctx: typer.Context,
    nets: str = typer.Option(
        "smallcnn@photos,smallcnn@twopoints,smallcnn_nopool@twopoints,mlp:512,512,512@twopoints",
        help="MODEL@DATA pairs, comma separated (a model name may hold commas: mlp:512,512).",
    ),
    epochs: int = typer.Option(6, help="Training epochs of each net."),
    lr: str = typer.Option("1e-3", help="Learning rate (Adam)."),
    n_train: int = typer.Option(2400, help="Training images per net."),
    photo_size: int = typer.Option(32, help="Image side of the photos nets."),
    n: int = typer.Option(500, help="Test images for D_f, G_f, R_f."),
    displacement: str = typer.Option("1", help="δ, RMS pixel displacement."),
    cut: str = typer.Option("3", help="Cut-off c."),
    seed: int = typer.Option(0, help="Seed of training, deformations and noise."),
    out: Path | None = typer.Option(None, help="Run directory."),
    resume: bool = typer.Option(False, help="Continue the study in --out."),
    device: str = typer.Option("auto", help="auto | cpu | cuda."),
) -> None:
    """Train nets (photos; the scale-detection task with and without pooling, and fully
    connected), then D_f, G_f, R_f at every layer before and after training: does R_f fall
    with depth after training and not at initialisation?"""
    from .studies.lose_spatial_info import STUDY, LoseSpatialInfoConfig, verdicts

    # a data name has no comma, a model name may (mlp:512,512): split at "@", then at the
    # first comma after each data name
    parts = nets.split("@")
    pairs, model = [], parts[0]
    for k, part in enumerate(parts[1:], start=1):
        data, _, rest = part.partition(",") if k < len(parts) - 1 else (part, "", "")
        pairs.append([model, data])
        model = rest
    if len(parts) < 2 or any(not m.strip() or not d.strip() for m, d in pairs):
        raise ConfigError(f"--nets takes MODEL@DATA pairs, comma separated, not {nets!r}")
    config = LoseSpatialInfoConfig(
        nets=[[m.strip(), d.strip()] for m, d in pairs], epochs=epochs, lr=_number(lr),
        n_train=n_train, photo_size=photo_size, n=n, displacement=_number(displacement),
        cut=_number(cut), seed=seed, device=device,
    )  # fmt: skip
    run_dir = _run(ctx, STUDY, config, out, resume)
    from .tables import read_csv

    for line in verdicts(read_csv(run_dir / "summary.csv")):
        console.print(line)
    console.print(f"results: {run_dir}  (report: {run_dir / 'report.html'})")


@study_app.command("invertible")
def invertible(
    size: int = typer.Option(32, help="Image side; every square layer has 3·size² units."),
    depth: int = typer.Option(3, help="Square layers."),
    weights: str = typer.Option("none", help="none, or a checkpoint of linear:{3·size²}x{depth}."),
    image: str = typer.Option("chelsea", help="Image file or sample name."),
    samples: int = typer.Option(1000, help="Exact inverses of O(a) + noise."),
    output_noise: str = typer.Option("1e-3", help="Std of the output perturbation ε."),
    reference_sigma: str = typer.Option("1/18", help="σ′ of a′ = a + N(0, σ′²)."),
    iterations: int = typer.Option(220, help="Gradient-descent steps (the seed: 220)."),
    preset: str = typer.Option(
        "default", help="Descent constants: default | blog (the seed's; diverges on this net)."
    ),
    seed: int = typer.Option(0, help="Seed of the net, the noise and a0."),
    out: Path | None = typer.Option(None, help="Run directory."),
) -> None:
    """An exactly invertible linear network in float64: the exact neighbourhood of O(a) vs a
    small input perturbation vs gradient descent (seed part IV)."""
    from .studies.invertible import InvertibleConfig, run
    from .tables import read_csv

    config = InvertibleConfig(
        size=size, depth=depth, weights=weights, image=image, samples=samples,
        output_noise=_number(output_noise), reference_sigma=_number(reference_sigma),
        iterations=iterations, preset=preset, seed=seed,
    )  # fmt: skip
    run_dir = run(config, out=out, progress=sys.stderr.isatty())
    s = read_csv(run_dir / "summary.csv")[0]
    table = Table(title=f"invertible · {run_dir.name}")
    table.add_column("distance to a")
    table.add_column("input", justify="right")
    table.add_column("output", justify="right")
    table.add_row("exact inverses a″ (median)", f"{s['neighbourhood_median_input_distance']:.4g}",
                  f"{s['output_noise']:g}·√n (by construction)")  # fmt: skip
    table.add_row("a′ = a + N(0, σ′²)", f"{s['reference_input_distance']:.3g}",
                  f"{s['reference_output_distance']:.3g}")  # fmt: skip
    table.add_row("a_g (descent)", f"{s['descent_input_distance']:.3g}",
                  f"{s['descent_output_distance']:.3g}")  # fmt: skip
    console.print(table)
    outside = s["neighbourhood_outside_unit_range"]
    console.print(f"largest condition number {s['max_condition_number']:.4g}; "
                  f"{outside:.1%} of a″'s pixels outside [0, 1]")  # fmt: skip
    console.print(f"results: {run_dir}  (report: {run_dir / 'report.html'})")


@study_app.command("relu-bound")
def relu_bound(
    model: str = typer.Option("mlp:1000,2000,4000", help="Model name (any with nn.ReLU)."),
    weights: str = typer.Option("none", help="none | imagenet | checkpoint path."),
    data: str = typer.Option("photos", help="Data set (its test split)."),
    size: int = typer.Option(16, help="Image side."),
    n: int = typer.Option(256, help="Images over which p_l is measured."),
    batch_size: int = typer.Option(64, help="Batch size."),
    rank_n: int = typer.Option(64, help="Input width n of the random ReLU layers."),
    rank_ratios: str = typer.Option("1,1.5,2,2.5,3,4", help="Width ratios m/n."),
    rank_inputs: int = typer.Option(200, help="Inputs per random layer."),
    seed: int = typer.Option(0, help="Seed."),
    data_root: str | None = typer.Option(None, help="Folder of torchvision data sets."),
    out: Path | None = typer.Option(None, help="Run directory."),
    device: str = typer.Option("auto", help="auto | cpu | cuda."),
) -> None:
    """ReLU completeness: the measured share of positive units p_l at every ReLU, the live
    units against the widths the seed's bound asks for, and the rank of random ReLU layers."""
    from .studies.relu_bound import ReluBoundConfig, run
    from .tables import read_csv

    config = ReluBoundConfig(
        model=model, weights=weights, data=data, size=size, n=n, batch_size=batch_size,
        rank_n=rank_n, rank_ratios=[_number(v) for v in _list(rank_ratios) or []],
        rank_inputs=rank_inputs, seed=seed, data_root=data_root, device=device,
    )  # fmt: skip
    run_dir = run(config, out=out, progress=sys.stderr.isatty())
    table = Table(title=f"relu-bound · {run_dir.name}")
    for col in ("layer", "n_l", "p_l", "live", "n_(l−1)", "layer-wise", "≥ n_0"):
        table.add_column(col, justify="right")
    for r in read_csv(run_dir / "layers.csv"):
        cells = (r["layer"], r["units"], f"{r['p']:.3f}", f"{r['live_units']:.0f}",
                 r["previous_units"], r["layerwise_ok"], r["global_ok"])  # fmt: skip
        table.add_row(*map(str, cells))
    console.print(table)
    rank = Table(title="random bias-free ReLU layers")
    for col in ("m/n", "full rank", "median σ_min", "Marchenko–Pastur"):
        rank.add_column(col, justify="right")
    for r in read_csv(run_dir / "rank.csv"):
        rank.add_row(f"{r['ratio']:.2f}", f"{r['full_rank_share']:.1%}",
                     f"{r['sigma_min_median']:.3f}", f"{r['marchenko_pastur']:.3f}")  # fmt: skip
    console.print(rank)
    console.print(f"results: {run_dir}  (report: {run_dir / 'report.html'})")


@study_app.command("fc-widths")
def fc_widths(
    size: int = typer.Option(29, help="Image side (29: 2,523 input values, the seed's)."),
    image: str = typer.Option("chelsea", help="Image file or sample name."),
    depth: int = typer.Option(3, help="Layers of the width nets (the seed: 7)."),
    narrow: int = typer.Option(2000, help="Width below the input size."),
    wide: int = typer.Option(3000, help="Width above the input size."),
    growing: str = typer.Option("2600,3200,4000", help="Growing widths (vs constant first)."),
    iterations: int = typer.Option(1000, help="Descent steps (the seed: 10⁴ to 2·10⁵)."),
    step: str = typer.Option("adam", help="gradient | normalized | adam."),
    lr: str = typer.Option("0.01,1e-4", help="Step size START,END."),
    record_every: int = typer.Option(10, help="Record distances every k steps."),
    seed: int = typer.Option(0, help="Seed of the nets and a0."),
    out: Path | None = typer.Option(None, help="Run directory."),
    device: str = typer.Option("auto", help="auto | cpu | cuda."),
) -> None:
    """Fully connected nets: widths below vs above the input size, depth at equal widths,
    growing later layers (seed part IV): m_g and m_i over the descent."""
    from .studies.fc_widths import FcWidthsConfig, _final, run
    from .tables import read_csv

    config = FcWidthsConfig(
        size=size, image=image, depth=depth, narrow=narrow, wide=wide,
        growing=[int(w) for w in _list(growing) or []], iterations=iterations, step=step,
        lr=list(_pair(lr, "lr") or ()), record_every=record_every, seed=seed, device=device,
    )  # fmt: skip
    run_dir = run(config, out=out, progress=sys.stderr.isatty())
    table = Table(title=f"fc-widths · {run_dir.name}: final distances")
    for col in ("part", "net", "layer", "m_g", "m_r", "m_i"):
        table.add_column(col, justify="right")
    for r in _final(read_csv(run_dir / "fc_widths.csv")):
        table.add_row(r["part"], r["net"], r["layer"], f"{r['embedding_distance']:.3g}",
                      f"{r['reference_distance']:.3g}", f"{r['input_distance']:.3g}")  # fmt: skip
    console.print(table)
    console.print(f"results: {run_dir}  (report: {run_dir / 'report.html'})")


@study_app.command("conditioning")
def conditioning(
    model: str = typer.Option("resnet18", help="Model name."),
    weights: str = typer.Option("none", help="Weight states, comma separated."),
    layers: str = typer.Option("all", help="Layers (default: every stage)."),
    image: str = typer.Option("chelsea", help="Image file or sample name."),
    size: int = typer.Option(32, help="Image side (the dense spectrum needs small sizes)."),
    k: int = typer.Option(20, help="Top singular values by Lanczos where the Jacobian is big."),
    method: str = typer.Option("auto", help="auto | dense | lanczos."),
    seed: int = typer.Option(0, help="Seed of untrained weights."),
    out: Path | None = typer.Option(None, help="Run directory."),
) -> None:
    """Singular values of each layer's input Jacobian at an image, by depth, for each weight
    state: the measured 'spiky ball' (matrix-free where the Jacobian is big)."""
    from .studies.conditioning import ConditioningConfig, run
    from .tables import read_csv

    config = ConditioningConfig(model=model, weights=_list(weights) or [],
                                layers=_list(layers) or [], image=image, size=size, k=k,
                                method=method, seed=seed)  # fmt: skip
    run_dir = run(config, out=out, progress=sys.stderr.isatty())
    table = Table(title=f"conditioning · {run_dir.name}")
    for col in ("weights", "layer", "m × n", "method", "σ_max", "σ_k", "rank", "condition"):
        table.add_column(col, justify="right")
    for r in read_csv(run_dir / "conditioning.csv"):
        w = Path(str(r["weights"])).stem
        table.add_row(w, r["layer"], f"{r['m']}×{r['n']}", r["method"], f"{r['sigma_max']:.4g}",
                      f"{r['sigma_k']:.4g}", str(r["rank"]), f"{r['condition']:.4g}")  # fmt: skip
    console.print(table)
    console.print(f"results: {run_dir}  (report: {run_dir / 'report.html'})")


@app.command()
def ablate(
    weights: str = typer.Option(
        ..., help="Checkpoints, comma separated (their sidecars name the model and data)."
    ),
    layers: str = typer.Option("layer3", help="Layers, comma separated."),
    model: str | None = typer.Option(None, help="Model name (default: from each sidecar)."),
    data: str | None = typer.Option(None, help="Data set (default: each checkpoint's own)."),
    split: str = typer.Option(
        "auto", help="auto | train | test (auto: train for memorising nets)."
    ),
    mode: str = typer.Option("zero", help="zero | mean: what an ablated unit is set to."),
    orders: int = typer.Option(3, help="Random orders of the units."),
    points: int = typer.Option(10, help="Values of k from 0 to all units."),
    n: int = typer.Option(512, help="Images evaluated."),
    seed: int = typer.Option(0, help="Seed of the unit orders."),
    data_root: str | None = typer.Option(None, help="Folder of torchvision data sets."),
    out: Path | None = typer.Option(None, help="Run directory (default runs/<date>-ablate)."),
    device: str = typer.Option("auto", help="auto | cpu | cuda."),
) -> None:
    """Single-direction ablation: accuracy as k random units of a layer are zeroed."""
    from .studies.ablation import AblationConfig, run
    from .tables import read_csv

    config = AblationConfig(
        weights=_list(weights), model=model, data=data, layers=_list(layers), orders=orders,
        points=points, mode=mode, split=split, n=n, seed=seed, data_root=data_root,
        device=device,
    )  # fmt: skip
    run_dir = run(config, out=out, progress=sys.stderr.isatty())
    table = Table(title=f"ablation · {run_dir.name}: accuracy (mean over orders) @ share ablated")
    rows = read_csv(run_dir / "ablation.csv")
    keys = list(dict.fromkeys((r["weights"], r["layer"], r["split"]) for r in rows))
    points = max(len({r["k"] for r in rows if (r["weights"], r["layer"], r["split"]) == key})
                 for key in keys)  # fmt: skip
    for col in ("weights", "layer", "split", *[f"k{i}" for i in range(points)]):
        table.add_column(col, justify="right")
    for key in keys:
        sel = [r for r in rows if (r["weights"], r["layer"], r["split"]) == key]
        cells = []
        for k in sorted({r["k"] for r in sel}):
            acc = [r["accuracy"] for r in sel if r["k"] == k]
            cells.append(f"{sum(acc) / len(acc):.3f} @{k / sel[0]['units']:.0%}")
        table.add_row(Path(str(key[0])).stem, str(key[1]), str(key[2]), *cells)
    console.print(table)
    console.print(f"results: {run_dir}")


def _nan_note(rows: list[dict]) -> None:
    """Say why a similarity is NaN instead of leaving a blank to be guessed."""
    cca_nan = {r.get("layer_a", r.get("layer")) for r in rows
               if r["measure"] != "cka" and r["value"] != r["value"]}  # fmt: skip
    if cca_nan:
        console.print(
            f"[yellow]NaN[/yellow] for the CCA family at {', '.join(sorted(cca_nan))}: --n is not "
            "larger than the layer's features (canonical correlations would be trivially 1); "
            "use a larger --n, --reduce mean, or svcca"
        )
    if any(r.get("reduce") == "positions" and r["value"] != r["value"] for r in rows):
        console.print("NaN for positions pairs of layers with different spatial grids")


@app.command()
def similarity(
    model_a: str | None = typer.Option(
        None, help="Model A (default: the one --weights-a's sidecar names, else resnet18)."
    ),
    model_b: str | None = typer.Option(
        None, help="Model B (default: --weights-b's sidecar model, else A; neither: A vs A)."
    ),
    weights_a: str = typer.Option("none", help="Weights of A: none | imagenet | PATH."),
    weights_b: str | None = typer.Option(None, help="Weights of B (default: none)."),
    over_training: Path | None = typer.Option(
        None,
        help="A `layerscope train` run: each layer at every epoch vs its final state "
        "(replaces --model-a/--model-b).",
    ),
    data: str | None = typer.Option(
        None, help="Data set, its test split (default: photos, or the training run's)."
    ),
    layers: str = typer.Option("all", help="Layers of A (and B unless --layers-b)."),
    layers_b: str | None = typer.Option(None, help="Layers of B."),
    measure: str = typer.Option("cka", help="cka, cca, svcca, pwcca (comma separated)."),
    reduce: str | None = typer.Option(
        None,
        help="Conv maps → matrix for every measure: flatten | mean | positions "
        "(default: CKA flatten, CCA family mean).",
    ),
    layout: str = typer.Option(
        "auto", help="Where the channels are: auto | nchw | nhwc (Swin) | tokens (ViT)."
    ),
    kernel: str = typer.Option("linear", help="CKA kernel: linear | rbf."),
    sigma: float = typer.Option(0.8, help="RBF bandwidth, a fraction of the median distance."),
    biased: bool = typer.Option(
        False,
        "--biased",
        help="CKA with the biased HSIC_0 (default: the unbiased minibatch "
        "HSIC_1; the biased one inflates unrelated layers at small batches).",
    ),
    n: int = typer.Option(512, help="Inputs."),
    batch_size: int = typer.Option(64, help="Batch size (CKA's minibatches)."),
    seed_baseline: bool = typer.Option(
        True, help="Also CKA of each layer of A between two untrained seeds (two more forwards)."
    ),
    size: int | None = typer.Option(None, help="Image side (default: the data set's)."),
    seed: int = typer.Option(0, help="Seed (untrained B gets seed + 1)."),
    data_root: str | None = typer.Option(None, help="Folder of torchvision data sets."),
    out: Path | None = typer.Option(None, help="Run directory."),
    device: str = typer.Option("auto", help="auto | cpu | cuda."),
) -> None:
    """Layer × layer similarity (CKA, CCA, SVCCA, PWCCA) between two models, with heatmaps;
    or, with --over-training, of each layer of a training run with its final state."""
    from .studies.similarity import (
        MeasureOptions,
        OverTrainingConfig,
        SimilarityConfig,
        run_over_training,
    )
    from .studies.similarity import run as run_pairs
    from .tables import read_csv

    options = MeasureOptions(
        measures=_list(measure),
        reduce=reduce,
        kernel=kernel,
        sigma=sigma,
        unbiased=not biased,
        layout=layout,
    )
    if over_training is not None:
        config = OverTrainingConfig(
            run=str(over_training), layers=_list(layers), options=options, data=data, n=n,
            batch_size=batch_size, seed=seed, data_root=data_root, device=device,
        )  # fmt: skip
        run_dir = run_over_training(config, out=out, progress=sys.stderr.isatty())
        rows = read_csv(run_dir / "over_training.csv")
        epochs = sorted({r["epoch"] for r in rows})
        table = Table(title=f"similarity to the final epoch · {run_dir.name}")
        table.add_column("measure")
        table.add_column("layer")
        for e in epochs:
            table.add_column(f"ep {e}", justify="right")
        for m in dict.fromkeys(r["measure"] for r in rows):
            for layer in dict.fromkeys(r["layer"] for r in rows):
                vals = {
                    r["epoch"]: r["value"] for r in rows if (r["measure"], r["layer"]) == (m, layer)
                }
                table.add_row(m, layer, *(f"{vals[e]:.3f}" for e in epochs))
        console.print(table)
        _nan_note(rows)
        console.print(f"results: {run_dir}")
        return
    config = SimilarityConfig(
        model_a=model_a, model_b=model_b, weights_a=weights_a, weights_b=weights_b,
        data=data or "photos", size=size, layers_a=_list(layers), layers_b=_list(layers_b),
        options=options, n=n, batch_size=batch_size, seed_baseline=seed_baseline, seed=seed,
        data_root=data_root, device=device,
    )  # fmt: skip
    run_dir = run_pairs(config, out=out, progress=sys.stderr.isatty())
    rows = read_csv(run_dir / "similarity.csv")
    table = Table(title=f"similarity · {run_dir.name}: diagonal / best match")
    cols = ("measure", "layer A", "best layer B", "value", "shuffled", "random", "untrained seeds")
    for col in cols:
        table.add_column(col, justify="right")

    def fmt(v) -> str:
        return f"{v:.3f}" if isinstance(v, float) else ""

    for m in dict.fromkeys(r["measure"] for r in rows):
        for la in dict.fromkeys(r["layer_a"] for r in rows):
            cand = [r for r in rows if r["measure"] == m and r["layer_a"] == la]
            best = max(cand, key=lambda r: -1 if r["value"] != r["value"] else r["value"])
            table.add_row(m, la, best["layer_b"], fmt(best["value"]),
                          fmt(best["baseline_shuffled"]), fmt(best.get("baseline_random")),
                          fmt(best.get("baseline_untrained_seeds")))  # fmt: skip
    console.print(table)
    _nan_note(rows)
    console.print(f"results: {run_dir}")


def _params(value: str | None) -> dict | None:
    """``xi=14,gap=2,norm=l2`` → ``{"xi": 14, "gap": 2, "norm": "l2"}`` (numbers parsed)."""
    if not value:
        return None
    out: dict = {}
    for item in _list(value) or []:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(
                f"--data-params takes KEY=VALUE pairs (e.g. xi=14,gap=2), not {item!r}"
            )
        from .tables import parse_value

        out[key.strip()] = parse_value(raw.strip())
    return out


@app.command()
def sensitivity(
    model: str | None = typer.Option(
        None, help="Model name (default: the first checkpoint's sidecar, else resnet18)."
    ),
    weights: str = typer.Option(
        "none", help="Weight states, comma separated: none, imagenet, checkpoint paths."
    ),
    data: str | None = typer.Option(
        None, help="Data set, its test split (default: the checkpoint's, else photos)."
    ),
    data_params: str | None = typer.Option(
        None, help="Data set parameters KEY=VALUE,… (twopoints: xi, gap, norm, value)."
    ),
    layers: str = typer.Option("all", help="Layers (the output is always added)."),
    displacement: str = typer.Option(
        "1", help="δ, RMS pixel displacement; a list for a sweep (e.g. 0.5,1,2)."
    ),
    cut: str = typer.Option("3", help="Cut-off c of the deformation modes; a list for a sweep."),
    n: int = typer.Option(500, help="Test images."),
    batch_size: int = typer.Option(50, help="Images per forward (×3: clean, deformed, noisy)."),
    estimator: str = typer.Option("mean", help="mean (Tomasini et al.) | median (Petrini et al.)."),
    bootstrap: int = typer.Option(200, help="Bootstrap resamples for the error bars."),
    size: int | None = typer.Option(None, help="Image side (default: the data set's)."),
    seed: int = typer.Option(0, help="Seed of the deformations, the noise and the images."),
    data_root: str | None = typer.Option(None, help="Folder of torchvision data sets."),
    out: Path | None = typer.Option(None, help="Run directory (default runs/<date>-sensitivity)."),
    device: str = typer.Option("auto", help="auto | cpu | cuda."),
) -> None:
    """Sensitivity to smooth deformations vs white noise of the same norm at every layer:
    D_f, G_f and R_f = D_f / G_f (Petrini et al. 2021; Tomasini et al.)."""
    from .studies.sensitivity import SensitivityConfig, run
    from .tables import read_csv

    config = SensitivityConfig(
        model=model, weights=_list(weights) or [], data=data, data_params=_params(data_params),
        layers=_list(layers) or [], displacements=[_number(v) for v in _list(displacement) or []],
        cuts=[_number(v) for v in _list(cut) or []], n=n, batch_size=batch_size,
        estimator=estimator, bootstrap=bootstrap, size=size, seed=seed, data_root=data_root,
        device=device,
    )  # fmt: skip
    run_dir = run(config, out=out, progress=sys.stderr.isatty())
    table = Table(title=f"sensitivity · {run_dir.name}")
    for col in ("weights", "δ", "c", "layer", "depth", "D_f", "G_f", "R_f", "± R_f"):
        table.add_column(col, justify="right")
    for r in read_csv(run_dir / "sensitivity.csv"):
        w = str(r["weights"])
        table.add_row(
            Path(w).stem if w not in ("none", "imagenet") else w, f"{r['displacement']:.3g}",
            f"{r['cut']:g}", str(r["layer"]), f"{r['depth']:.2f}", f"{r['D']:.3g}",
            f"{r['G']:.3g}", f"{r['R']:.3g}", f"{r['R_err']:.2g}",
        )  # fmt: skip
    console.print(table)
    console.print(f"results: {run_dir}  (report: {run_dir / 'report.html'})")


@app.command()
def generate(
    ctx: typer.Context,
    model: str | None = typer.Option(
        None, help="Models, comma separated (default: named by the checkpoints' sidecars)."
    ),
    weights: str = typer.Option(
        "none", help="One weight state per model: none, imagenet or a checkpoint path."
    ),
    class_: str = typer.Option(
        "0..3", "--class", help="Classes: 0..9 | 0,3 | names (tench,goldfinch)."
    ),
    mode: str = typer.Option("single", help="single | combined | difference."),
    preset: str = typer.Option("default", help="Octaves: default | googlenet | inceptionv3."),
    size: int | None = typer.Option(
        None, help="Side of the first octave (later octaves and crops scale with it)."
    ),
    iterations: int | None = typer.Option(None, help="Steps per octave (overrides the preset)."),
    pad: int | None = typer.Option(
        None, help="Grow the image by N px of 0.7 per side after every step (reference: 1)."
    ),
    copies: int = typer.Option(
        1, help="Images per class, each from its own a0 (bigger batches for --bn-prior)."
    ),
    step: str | None = typer.Option(None, help="Step rule: gradient | normalized | adam."),
    c: str | None = typer.Option(
        None, "--C", help="Class target C (one value, or one per model; default 200)."
    ),
    term_weights: str | None = typer.Option(
        None, "--term-weights", help="Per-model weights d,e of the class terms."
    ),
    reference: bool = typer.Option(
        False,
        help="The reference code's arithmetic: 0.5·((200−l1)+(400−l2)), 2·((200−l1)−(400−l2)).",
    ),
    input_l1: float = typer.Option(0.0, help="λ of + λ·Σ|a| (the seed's 0.001)."),
    tv: float = typer.Option(0.0, help="Weight of a total-variation prior."),
    bn_prior: float = typer.Option(
        0.0, help="Weight of the BatchNorm-statistics prior (DeepInversion; e.g. 0.01)."
    ),
    target_from_image: str | None = typer.Option(
        None, help="Vectorised targets: photo paths/names, or 'generated'."
    ),
    target_model: str | None = typer.Option(
        None, help="Model whose class images are the targets (with 'generated')."
    ),
    target_weights: str = typer.Option("none", help="Weights of --target-model."),
    target_vector: str = typer.Option(
        "own", help="own: the generating model's output on the target (the seed) | target-model."
    ),
    max_batch: int | None = typer.Option(
        None, help="Rows per batch (classes × models); finished chunks are saved."
    ),
    precision: str = typer.Option("fp32", help="fp32 | tf32 (CUDA) | bf16 (autocast)."),
    compile: str = typer.Option(
        "off", help="off | on | auto (CUDA): the step through torch.compile (a CUDA graph)."
    ),
    seed: int = typer.Option(0, help="Seed of a0 and the jitter."),
    out: Path | None = typer.Option(None, help="Run directory (default runs/<date>-generate)."),
    resume: bool = typer.Option(False, help="Continue --out, skipping finished classes."),
    device: str = typer.Option("auto", help="auto | cpu | cuda."),
) -> None:
    """Class images from one or several models' gradients (seed part III): single, combined
    and difference gradients, octaves and jitter, optional priors; or images matching output
    vectors (--target-from-image)."""
    from .studies.generation import STUDY, GenerateConfig, summary

    config = GenerateConfig(
        models=_list(model) or [], weights=_list(weights) or [], classes=class_, mode=mode,
        preset=preset, size=size, iterations=iterations, pad=pad, copies=copies, step=step,
        C=[_number(v) for v in _list(c)] if c else None,
        term_weights=[_number(v) for v in _list(term_weights)] if term_weights else None,
        reference=reference, input_l1=input_l1, tv=tv, bn_prior=bn_prior,
        target_from_image=_list(target_from_image), target_model=target_model,
        target_weights=target_weights, target_vector=target_vector, max_batch=max_batch,
        precision=precision, compile=compile, seed=seed, device=device,
    )  # fmt: skip
    paths = {"model": "models", "class_": "classes", "c": "C"}
    run_dir = _run(ctx, STUDY, config, out, resume, paths)
    table = Table(title=f"generate · {run_dir.name}")
    for col in ("images", "scored by", "n", "logit", "probability", "top-1"):
        table.add_column(col, justify="right")
    for r in summary(run_dir):
        table.add_row(
            r["images"], r["scored_by"], str(r["n"]), f"{r['mean_logit']:.2f}",
            f"{r['mean_probability']:.3f}", f"{r['top1']:.2f}",
        )  # fmt: skip
    console.print(table)
    _print_step(run_dir)
    console.print(
        f"results: {run_dir}  (grid: {run_dir / 'grid.png'}, report: {run_dir / 'report.html'})"
    )


@app.command()
def merge(
    student: str = typer.Option(..., help="Student model name, or its checkpoint path."),
    student_weights: str = typer.Option("none", help="Student weights."),
    teacher: str = typer.Option(..., help="Teacher model name, or its checkpoint path."),
    teacher_weights: str = typer.Option("none", help="Teacher weights."),
    images: str = typer.Option(
        "generated", help="'generated' (the teacher's class images) or a folder / generate run."
    ),
    class_: str = typer.Option("0..3", "--class", help="Classes the teacher generates."),
    steps: int = typer.Option(1000, help="SGD steps (the seed: 1000)."),
    lr: float = typer.Option(1e-5, help="SGD learning rate (the seed: 1e-5)."),
    heldout: str = typer.Option("photos", help="Held-out images: 'photos' or a folder."),
    record_every: int = typer.Option(10, help="Record the RSS every N steps."),
    regenerate: bool = typer.Option(
        True, help="Generate the student's class images before and after merging."
    ),
    preset: str = typer.Option("default", help="Octaves of the generation (see generate)."),
    size: int | None = typer.Option(None, help="Side of the first octave."),
    iterations: int | None = typer.Option(None, help="Steps per octave."),
    copies: int = typer.Option(1, help="Teacher images per class, each from its own a0."),
    bn_prior: float = typer.Option(
        0.0, help="BatchNorm prior for the teacher's images (data-free distillation)."
    ),
    tv: float = typer.Option(0.0, help="Total-variation prior for the generated images."),
    seed: int = typer.Option(0, help="Seed."),
    out: Path | None = typer.Option(None, help="Run directory (default runs/<date>-merge)."),
    device: str = typer.Option("auto", help="auto | cpu | cuda."),
) -> None:
    """Model merging (seed III-3): train the student so its outputs match the teacher's on the
    teacher's generated class images (RSS, SGD, eval mode); save it as a checkpoint; compare
    the class images it generates before and after."""
    from .studies.merge import MergeConfig, run, summary

    config = MergeConfig(
        student=student, student_weights=student_weights, teacher=teacher,
        teacher_weights=teacher_weights, images=images, classes=class_, steps=steps, lr=lr,
        heldout=heldout, record_every=record_every, regenerate=regenerate, preset=preset,
        size=size, iterations=iterations, copies=copies, bn_prior=bn_prior, tv=tv, seed=seed,
        device=device,
    )  # fmt: skip
    run_dir = run(config, out=out, progress=sys.stderr.isatty())
    s = summary(run_dir)
    line = f"RSS on the teacher's images {s['rss_train_before']:.4g} → {s['rss_train_after']:.4g}"
    line += f" ({s['train_drop']:.1f}× lower)"
    if "heldout_drop" in s:
        line += f"; held out {s['rss_heldout_before']:.4g} → {s['rss_heldout_after']:.4g}"
        line += f" ({s['heldout_drop']:.1f}×)"
    console.print(line)
    console.print(
        f"student: {run_dir / 'student.safetensors'}  (report: {run_dir / 'report.html'})"
    )


@app.command()
def layers(
    model: str = typer.Argument(..., help="Model name."),
    size: int = typer.Option(224, help="Input side used to compute output shapes."),
    leaves: bool = typer.Option(False, help="Only leaf modules (convolutions, activations…)."),
    weights: str = typer.Option("none", help="none | imagenet | checkpoint path."),
    num_classes: int | None = typer.Option(
        None, help="Head size of a checkpoint without a sidecar (default: the model's own)."
    ),
) -> None:
    """List the layers a model can be probed at, with aliases and output shapes."""
    from .layers import default_layers, describe_layers
    from .models import load_model

    m = load_model(model, weights, input_size=size, num_classes=num_classes)
    stages = set(default_layers(m))
    table = Table(title=f"{model}: layers at {size}×{size} (* = a default stage)")
    for col in ("name", "alias", "type", "output shape", "elements", "calls"):
        table.add_column(col)
    for info in describe_layers(m, size, leaves=leaves):
        table.add_row(
            ("* " if info.name in stages else "") + info.name,
            info.alias or "",
            info.kind,
            "×".join(map(str, info.shape)),
            f"{info.numel:,}",
            str(info.calls),
        )
    console.print(table)


@app.command()
def models(family: str = typer.Option("all", help="torchvision | timm | builtin | all.")) -> None:
    """List loadable model names."""
    from .models import available_models

    for fam, names in available_models().items():
        if family in ("all", fam):
            console.print(f"[bold]{fam}[/bold] ({len(names)}): " + ", ".join(names))


@app.command()
def report(run_dir: Path = typer.Argument(..., help="A run directory.")) -> None:
    """(Re)build the HTML report of a run from its saved results."""
    from .studies import build_report

    console.print(f"report: {build_report(run_dir)}")


def main() -> None:
    """Entry point: layerscope errors become one line on stderr and exit code 2; Ctrl-C during
    a study says what was kept (exit code 130). (Usage errors typer itself finds, such as an
    unknown option, keep typer's own message box.)"""
    err = Console(stderr=True, soft_wrap=True)
    try:
        app()
    except Interrupted as exc:
        err.print(str(exc), highlight=False)
        sys.exit(130)
    except LayerscopeError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        sys.exit(2)
