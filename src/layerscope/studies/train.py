"""The training study: ``layerscope train`` as a study like the others. Its engine (the loop,
checkpoints, resume) lives in :mod:`layerscope.training`, which the other studies use too;
this module is the run: the work of an epoch, the spectra, the page, the options."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import torch

from ..core.errors import ConfigError, LayerscopeError
from ..core.faults import fault_point
from ..core.progress import note, progress_bar
from ..core.tables import read_csv, write_csv
from ..engine.data import NoiseImages, TwoPoints
from ..engine.device import resolve_device
from ..engine.finite import check_finite
from ..engine.models import Model, load_model
from ..engine.spectra import activation_spectra
from ..engine.training import (
    DEFAULT_EPOCHS,
    DeviceCache,
    TrainConfig,
    checkpoints,
    datasets,
    fit,
    latest_checkpoint,
    loss_and_accuracy,
    make_loader,
    resume_point,
    save_epoch_checkpoint,
    save_state,
    train_epoch,
)
from ..protocol.lifecycle import Run, Study, execute
from ..protocol.options import DATA_ROOT, DEVICE, Option, number, params, shared, split_list
from ..report.terminal import Line, TextTable

__all__ = [
    "DEFAULT_EPOCHS",
    "STUDY",
    "DeviceCache",
    "TrainConfig",
    "checkpoints",
    "fit",
    "latest_checkpoint",
    "loss_and_accuracy",
    "report",
    "summary",
    "train",
    "train_epoch",
]


def train(
    config: TrainConfig | None = None,
    out: str | Path | None = None,
    resume: bool = False,
    progress: bool = False,
) -> Path:
    """Train ``config.model`` on ``config.data``; one checkpoint per epoch. Returns the run dir.
    ``resume`` continues from the last complete epoch; a larger ``epochs`` extends the run
    (recorded in ``config.json``)."""
    return execute(STUDY, config, out, resume, progress)


def _check_extension(stored: TrainConfig, new: TrainConfig) -> None:
    if new.epochs is not None and stored.epochs is not None and new.epochs < stored.epochs:
        raise LayerscopeError(
            f"the run was set up for {stored.epochs} epochs: --epochs can only extend it "
            f"(not {new.epochs}); resume without --epochs"
        )


def _train(config: TrainConfig, run: Run) -> None:
    """The work of a training run (see :func:`train`)."""
    run_dir, progress = run.dir, run.progress
    if config.epochs is None:
        config = replace(config, epochs=DEFAULT_EPOCHS)
    device = resolve_device(config.device)
    train_set, test_set = datasets(config)
    if config.size is None:  # the data set's own size, recorded (fully connected nets need it)
        config = replace(config, size=int(train_set[0][0].shape[-1]))
    # Badger's noise recipe keeps ResNet's 1000-way head for its 100 labels.
    num_classes = config.num_classes or (1000 if config.data == "noise" else len(train_set.classes))
    names = [str(c) for c in getattr(train_set, "classes", [])]
    if names and num_classes < len(names):
        raise ConfigError(
            f"--num-classes {num_classes} is fewer than the {len(names)} classes of "
            f"{config.data}: the head needs at least {len(names)} outputs"
        )
    classes = names if len(names) == num_classes else None  # the head's class names
    shuffle = config.shuffle if config.shuffle is not None else config.data != "noise"
    model = load_model(
        config.model,
        seed=config.seed,
        num_classes=num_classes,
        input_size=config.size,
        normalize=config.normalize,
    )
    start, state = resume_point(run_dir) if run.resuming else (0, None)
    net = model.net.to(device)
    if device.type == "cuda":  # the card's fastest layout and kernels for fixed shapes
        net.to(memory_format=torch.channels_last)
        torch.backends.cudnn.benchmark = True
    net.requires_grad_(True)
    opt = _optimizer(net, config)
    rows = []
    if state is not None:
        from ..engine.models import load_state_dict

        net.load_state_dict(
            load_state_dict(run_dir / "checkpoints" / f"epoch_{start:03d}.safetensors")
        )
        opt.load_state_dict(state["optimizer"])
        rows = [r for r in read_csv(run_dir / "metrics.csv") if r["epoch"] <= start]
    run.meta(config, device=str(device), num_classes=num_classes)
    test_loader = make_loader(test_set, config, 0, shuffle=False, device=device)
    spectra_csv = run_dir / "spectra.csv"
    spectra_rows = read_csv(spectra_csv) if state is not None and spectra_csv.exists() else []
    spectra_rows = [r for r in spectra_rows if r["epoch"] <= start]

    def record_spectra(epoch: int) -> None:
        if config.spectra_layers:
            spectra_rows.extend(_spectra(model, config, epoch, train_set, test_set))
            write_csv(run_dir / "spectra.csv", spectra_rows)

    if start == 0:
        init = {"epoch": 0, "train_accuracy": None, "test_accuracy": None}
        save_epoch_checkpoint(run_dir, model, config, init, num_classes, classes)
        record_spectra(0)
    steps = (len(train_set) + config.batch_size - 1) // config.batch_size
    cache = _device_cache(train_set, config, device)
    done = [start]

    def interrupted() -> str:
        return (
            f"interrupted: epochs 1–{done[0]} of {config.epochs} saved in {run_dir}; rerun "
            f"with --resume --out {run_dir}"
            if done[0]
            else f"interrupted before the first epoch ended; nothing to resume in {run_dir}"
        )

    run.interrupted = interrupted
    with progress_bar((config.epochs - start) * steps, enabled=progress) as bar:
        for epoch in range(start + 1, config.epochs + 1):
            bar.describe(f"{config.model} · {config.data} · epoch {epoch}/{config.epochs}")
            if cache is not None:
                loader = cache.batches(config, epoch, shuffle)
            else:
                loader = make_loader(train_set, config, epoch, shuffle=shuffle, device=device)
            row = _epoch(model, opt, train_set, loader, test_loader, config, epoch, device, bar)
            _check_finite(net, row, epoch, config)  # a diverged epoch is never saved
            rows.append(row)
            save_epoch_checkpoint(run_dir, model, config, row, num_classes, classes)
            fault_point("checkpoint-written")
            write_csv(run_dir / "metrics.csv", rows)
            record_spectra(epoch)
            save_state(run_dir, opt, epoch)  # last: the epoch is complete on disk
            done[0] = epoch
            run.saved()
    net.eval()
    net.requires_grad_(False)


def _epoch(model, opt, train_set, loader, test_loader, config, epoch, device, bar) -> dict:
    """One epoch of training (seeded per epoch: dropout, augmentation), then the test set."""
    torch.manual_seed(config.seed * 10_007 + epoch)  # dropout and friends
    model.net.train()
    if hasattr(train_set, "set_epoch"):
        train_set.set_epoch(epoch)  # fresh augmentation draws each epoch
    t0 = time.perf_counter()
    seen, loss_sum, correct = train_epoch(model, opt, loader, device, bar.advance, config.precision)
    seconds = time.perf_counter() - t0
    test_loss, test_acc = loss_and_accuracy(model, test_loader, device)
    return {
        "epoch": epoch,
        "train_loss": loss_sum / seen,
        "train_accuracy": correct / seen,
        "test_loss": test_loss,
        "test_accuracy": test_acc,
        "seconds": seconds,
        "images_per_second": seen / seconds,
    }


def _check_finite(net: torch.nn.Module, row: dict, epoch: int, config: TrainConfig) -> None:
    """After an epoch, one host read: parameters and losses finite, or the run stops as
    diverged (:mod:`~layerscope.finite`) with the epochs before this one kept."""
    check_finite(
        f"epoch {epoch}", "the epochs before it are kept; start a new run with a lower --lr "
        f"(now {config.lr:g})", net=net, train_loss=row["train_loss"], test_loss=row["test_loss"],
    )  # fmt: skip


def _optimizer(net: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    params = list(net.parameters())
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(
        params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )


def _spectra(model: Model, config: TrainConfig, epoch: int, train_set, test_set) -> list[dict]:
    """The activation spectra of the first train and held-out images at ``epoch``."""
    rows = []
    for split, dataset in (("train", train_set), ("test", test_set)):
        count = min(config.spectra_images, len(dataset))
        images = torch.stack([dataset[i][0] for i in range(count)])
        model.net.eval()
        found = activation_spectra(
            model, images, config.spectra_layers, config.spectra_sigmas, config.spectra_group,
            config.spectra_components, seed=config.seed,
        )  # fmt: skip
        rows.extend({"epoch": epoch, "split": split} | r for r in found)
    return rows


def _device_cache(train_set, config: TrainConfig, device: torch.device) -> DeviceCache | None:
    """The training set held on the device, or None (the loader serves it). ``auto``: the
    synthetic sets on a GPU (the photo crops, many small crops a batch, only when asked for:
    ``--cache device``)."""
    synthetic = isinstance(train_set, (NoiseImages, TwoPoints))
    use = config.cache == "device" or (
        config.cache == "auto" and device.type == "cuda" and synthetic
    )
    if use and not DeviceCache.holds(train_set):
        raise LayerscopeError(
            "--cache device holds the synthetic data sets (noise, twopoints) and the photo "
            f"crops, not {config.data}: use --cache off (file data sets use loader workers)"
        )
    if not use:
        return None
    if not DeviceCache.fits(train_set, device):
        note(f"the {len(train_set)} training images do not fit on {device}: the loader serves them")
        return None
    if not hasattr(train_set, "batch"):  # made once, one image at a time: say so
        note(f"holding the {len(train_set)} training images on {device} (made once)")
    return DeviceCache(train_set, device)


def summary(run_dir: str | Path) -> dict:
    """The last epoch's accuracies and loss."""
    rows = read_csv(Path(run_dir) / "metrics.csv")
    last = rows[-1] if rows else {}
    return {k: last.get(k) for k in ("epoch", "train_accuracy", "test_accuracy", "train_loss")}


def report(run_dir: str | Path) -> Path:
    """``training.png`` (and ``spectra.png``) and ``report.html`` from the saved tables."""
    from ..report import figure, read_meta, table, write_page
    from ..report.figures import spectra_figure, training_figure

    run_dir = Path(run_dir)
    meta = read_meta(run_dir)
    study = meta["study"]
    rows = read_csv(run_dir / "metrics.csv") if (run_dir / "metrics.csv").exists() else []
    training_figure(rows, run_dir / "training.png")
    spectra = run_dir / "spectra.csv"
    if spectra.exists():
        spectra_figure(read_csv(spectra), rows, run_dir / "spectra.png")
    keys = ["epoch", "train_loss", "train_accuracy", "test_loss", "test_accuracy",
            "images_per_second"]  # fmt: skip
    body = (
        f"<p>{study['model']} on {study['data']}, {study['optimizer']} lr {study['lr']:g}, "
        f"batch {study['batch_size']}, seed {study['seed']}.</p>"
        + (figure("training.png", "loss and accuracy per epoch") if rows else "")
        + (figure("spectra.png", "activation spectra per epoch")
           if (run_dir / "spectra.png").exists() else "")
        + table(keys, [[r.get(k, "") for k in keys] for r in rows])
        + '<p>Checkpoints in <code>checkpoints/</code>; data: <a href="metrics.csv">'
        'metrics.csv</a>, <a href="config.json">config.json</a>.</p>'
    )  # fmt: skip
    return write_page(run_dir, f"layerscope train · {run_dir.name}", "Training", body)


def _data_params(data: dict, value: dict) -> None:
    data["data_params"] = (data.get("data_params") or {}) | value


def _length(data: dict, n: int) -> None:
    if n < 1:
        raise ConfigError(f"--n must be at least 1 image, not {n}")
    _data_params(data, {"length": n})


def _noise_classes(data: dict, k: int) -> None:
    if data.get("data") != "noise":
        return  # the labels of the noise set only
    if k < 1:
        raise ConfigError(f"--noise-classes must be at least 1, not {k}")
    _data_params(data, {"num_classes": k})


OPTIONS = (
    shared("model"),
    shared("data"),
    Option("epochs", "Epochs (default 20); a checkpoint is written after each. With --resume: "
           "the stored count, or more to extend the run.", kind=int),
    Option("batch_size", "Batch size (Badger's noise recipe: 128).", kind=int),
    Option("optimizer", "adam | sgd."),
    Option("lr", "Learning rate.", parse=number),
    Option("weight_decay", "Weight decay.", parse=number),
    Option("seed", "Seeds the initialisation, data and order.", kind=int),
    Option("size", "Image side (photos 64, noise 224, cifar 32).", kind=int),
    Option("num_classes", "Head size (default: the data set's classes; noise: 1000 as the "
           "seed).", kind=int),
    Option("data_params", "Data set parameters KEY=VALUE,… (twopoints: xi, gap, norm, value).",
           "data_params", parse=params, apply=_data_params),
    Option("n", "Training images (photos, noise: 10,000).", "data_params.length", int,
           apply=_length),
    Option("noise_classes", "Labels of the noise set (0..k-1; default 100).",
           "data_params.num_classes", int, apply=_noise_classes),
    Option("shuffle", "Shuffle each epoch (noise: off).", kind=bool),
    Option("augment", "Random crops and flips (photos).", kind=bool),
    Option("normalize", "none | imagenet | inception (inside the model)."),
    DATA_ROOT,
    Option("spectra", "Layers whose activation spectra are recorded after every epoch.",
           "spectra_layers", parse=split_list),
    Option("spectra_images", "Train and held-out images for the spectra.", kind=int),
    Option("spectra_group", "Image + noisy copies per spectrum group.", kind=int),
    Option("precision", "fp32 | tf32 (CUDA) | bf16 (autocast; weights stay float32)."),
    Option("workers", "DataLoader workers (default: 4 for file data on CUDA, else 0).",
           kind=int),
    Option("cache", "auto (synthetic sets on the GPU) | device | off: hold the set on the "
           "device."),
    DEVICE,
)  # fmt: skip


def terminal(run_dir: Path) -> list:
    """Every epoch's losses and accuracies, and where the checkpoints are."""
    table = TextTable(
        f"training · {Path(run_dir).name}",
        ("epoch", "train loss", "train acc", "test loss", "test acc", "img/s"),
    )
    for r in read_csv(Path(run_dir) / "metrics.csv"):
        table.add(
            r["epoch"], f"{r['train_loss']:.4f}", f"{r['train_accuracy']:.3f}",
            f"{r['test_loss']:.4f}", f"{r['test_accuracy']:.3f}",
            f"{r['images_per_second']:.0f}",
        )  # fmt: skip
    return [table, Line(f"checkpoints: {Path(run_dir) / 'checkpoints'}")]


STUDY = Study(
    kind="train",
    terminal=terminal,
    table="metrics.csv",
    config=TrainConfig,
    work=_train,
    report=report,
    summary=summary,
    resumable=True,
    free=("device", "epochs", "workers", "cache"),
    check_resume=_check_extension,
    title="Training a classifier (checkpoints every epoch)",
    options=OPTIONS,
    command="train",
    help="Train a model (checkpoint every epoch as .safetensors + JSON sidecar).",
)
