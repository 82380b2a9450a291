"""Training: a plain, correct PyTorch loop with per-epoch safetensors checkpoints and resume.

``TrainConfig`` → :func:`train` → a run directory: ``config.json``, ``metrics.csv`` (one row
per epoch: train/test loss and accuracy, seconds), ``checkpoints/epoch_NNN.safetensors`` (and
``epoch_000``, the initialisation) with a
JSON sidecar (model, data set, epoch, accuracies, seed, version: what ``load_model`` needs),
``checkpoints/state.pt`` (optimiser and epoch, for ``resume``), ``training.png``, and with
``spectra_layers`` ``spectra.csv`` / ``spectra.png`` (activation spectra after every epoch).

Reproducible from the seed: the model's initialisation, the data order of every epoch and
dropout all come from seeded generators keyed by the epoch, so a resumed run equals an
uninterrupted one.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from .config import Config, at_least
from .data import NoiseImages, TwoPoints, load_dataset
from .device import check_precision, resolve_device
from .errors import ConfigError, LayerscopeError
from .faults import fault_point
from .files import atomic_path
from .finite import check_finite
from .lifecycle import Run, Study, execute
from .models import Model, load_model, save_checkpoint
from .options import DATA_ROOT, DEVICE, Option, number, params, split_list
from .progress import note, progress_bar
from .spectra import activation_spectra
from .tables import read_csv, write_csv

__all__ = [
    "STUDY",
    "TrainConfig",
    "checkpoints",
    "evaluate",
    "fit",
    "latest_checkpoint",
    "report",
    "summary",
    "train",
    "train_epoch",
]


@dataclass
class TrainConfig(Config):
    """A training run. ``num_classes`` defaults to the data set's class count (noise: 1000);
    ``data_params`` go to the data set (e.g. ``{"length": 1000, "num_classes": 100}``)."""

    model: str = "resnet18"
    data: str = "photos"
    epochs: int | None = None  # None: 20 for a new run, the stored count on resume
    batch_size: int = 64
    optimizer: str = "adam"
    lr: float = 1e-4
    weight_decay: float = at_least(0, 0.0)
    momentum: float = 0.9
    seed: int = 0
    size: int | None = at_least(8)
    num_classes: int | None = at_least(1)
    shuffle: bool | None = None  # None: the recipe's default (noise: no shuffle, as Badger's)
    augment: bool = True
    normalize: str = "none"
    data_root: str | None = None
    data_params: dict | None = None
    device: str = "auto"
    precision: str = "fp32"  # fp32 | tf32 (CUDA) | bf16 (autocast)
    workers: int | None = None  # DataLoader workers (None: 4 for file data on CUDA, else 0)
    cache: str = "auto"  # auto | device | off: hold a synthetic set on the device
    spectra_layers: list[str] | None = None  # activation spectra after every epoch
    spectra_images: int = at_least(1, 8)
    spectra_group: int = at_least(2, 16)  # an image and at least one noisy copy
    spectra_sigmas: tuple[float, ...] = (0.2, 0.1, 0.01)
    spectra_components: int = 4

    def __post_init__(self) -> None:
        if self.optimizer not in ("adam", "sgd"):
            raise LayerscopeError(f"--optimizer must be adam or sgd, not {self.optimizer!r}")
        if (self.epochs is not None and self.epochs < 1) or self.batch_size < 1:
            raise LayerscopeError("--epochs and --batch-size must be at least 1")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise LayerscopeError(f"--lr must be a positive number, not {self.lr:g}")
        if self.weight_decay < 0:
            raise LayerscopeError(f"--weight-decay must be ≥ 0, not {self.weight_decay:g}")
        check_precision(self.precision)
        if self.cache not in ("auto", "device", "off"):
            raise LayerscopeError(f"--cache must be auto, device or off, not {self.cache!r}")
        if self.workers is not None and self.workers < 0:
            raise LayerscopeError(f"--workers must be ≥ 0, not {self.workers}")
        if self.data_params:  # a key the set does not take, a value of the wrong type: now
            from .data import check_data_params

            self.data_params = check_data_params(self.data, self.data_params)


def _datasets(config: TrainConfig):
    params = dict(config.data_params or {})
    if config.data == "photos":
        train_params = params | {"augment": config.augment}
        test_params = {k: v for k, v in params.items() if k != "length"} | {"augment": False}
    else:
        train_params = test_params = params
    train_set = load_dataset(
        config.data, "train", config.size, config.seed, config.data_root, **train_params
    )
    test_set = load_dataset(
        config.data, "test", config.size, config.seed, config.data_root, **test_params
    )
    return train_set, test_set


def _loader(
    dataset, config: TrainConfig, epoch: int, shuffle: bool, device: torch.device | None = None
) -> DataLoader:
    gen = torch.Generator().manual_seed(config.seed * 10_007 + epoch)
    cuda = device is not None and device.type == "cuda"
    files = not isinstance(dataset, (NoiseImages, TwoPoints))
    workers = config.workers if config.workers is not None else (4 if cuda and files else 0)
    return DataLoader(
        dataset,
        batch_size=config.batch_size,
        shuffle=shuffle,
        generator=gen,
        num_workers=workers,
        pin_memory=cuda,
        persistent_workers=False,
    )


class DeviceCache:
    """A training set served from the device, in the same batches and order as the
    ``DataLoader`` would serve them, with no per-batch host work but drawing crop windows.
    Synthetic sets (noise, two-points: each image a function of its index) are materialised
    once and are bit-identical to the loader's images; the photo crops keep their 12 source
    photos on the device and crop there each epoch (equal to the loader's up to float
    rounding on a GPU, bit-identical on the CPU). Synthetic sets are held only when they fit:
    a third of the device's free memory (CUDA) or of 8 GB (CPU)."""

    def __init__(self, dataset, device: torch.device) -> None:
        self.dataset, self.device, self.n = dataset, device, len(dataset)
        self.x = self.y = None
        if not hasattr(dataset, "batch"):
            xs = torch.stack([dataset[i][0] for i in range(self.n)])
            ys = torch.tensor([int(dataset[i][1]) for i in range(self.n)])
            self.x, self.y = xs.to(device), ys.to(device)

    @staticmethod
    def holds(dataset) -> bool:
        return isinstance(dataset, (NoiseImages, TwoPoints)) or hasattr(dataset, "batch")

    @staticmethod
    def fits(dataset, device: torch.device) -> bool:
        if hasattr(dataset, "batch"):
            return True  # the source photos only
        x0 = dataset[0][0]
        need = len(dataset) * x0.numel() * x0.element_size()
        if device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(device)
            return need < free / 3
        return need < 8e9 / 3

    def batches(self, config: TrainConfig, epoch: int, shuffle: bool):
        """The loader's batches: a loader over the indices alone, with the same generator
        (it draws its worker seed from it first, as the real one does)."""
        gen = torch.Generator().manual_seed(config.seed * 10_007 + epoch)
        order = DataLoader(range(self.n), config.batch_size, shuffle=shuffle, generator=gen)
        for idx in order:
            if self.x is None:
                yield self.dataset.batch(idx, self.device)
                continue
            idx = idx.to(self.device, non_blocking=True)
            yield self.x.index_select(0, idx), self.y.index_select(0, idx)


@torch.no_grad()
def evaluate(model: Model, loader: DataLoader, device: torch.device) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` (eval mode) over ``loader``."""
    net = model.net
    was_training = net.training
    net.eval()
    total = 0
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.long, device=device)
    for x, y in loader:  # sums stay on the device: one read at the end
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        logits = net(model.preprocess(x))
        loss_sum += F.cross_entropy(logits, y, reduction="sum").double()
        correct += (logits.argmax(1) == y).sum()
        total += len(y)
    net.train(was_training)
    return float(loss_sum) / max(total, 1), int(correct) / max(total, 1)


def classification_loss(logits: torch.Tensor, y: torch.Tensor):
    """Cross-entropy of the logits and the number of correct top-1 predictions."""
    return F.cross_entropy(logits.float(), y), (logits.detach().argmax(1) == y).sum()


def fit(
    model: Model,
    opt: torch.optim.Optimizer,
    batches,
    device: torch.device,
    loss_fn=classification_loss,
    advance=None,
    precision: str = "fp32",
) -> tuple[int, torch.Tensor, torch.Tensor]:
    """The one loop that trains parameters (training, merging, distillation): for each
    ``(x, target)`` of ``batches``, ``loss, count = loss_fn(net(x), target)``, one optimiser
    step. Returns (inputs seen, summed loss, summed count), both sums kept on the device
    (float64 / long) and never read inside the loop: no step waits for the host. The caller
    reads them and decides what a non-finite loss means. The net's mode is the caller's
    (train mode for training, eval mode for merging). ``precision``: ``bf16`` runs the
    forward and backward under autocast (weights and optimiser state stay float32), ``tf32``
    lets CUDA use TensorFloat-32."""
    from .device import precision_context

    net = model.net
    seen = 0
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    count = torch.zeros((), dtype=torch.long, device=device)
    channels_last = device.type == "cuda"
    for x, y in batches:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with precision_context(precision, device):
            loss, n = loss_fn(net(model.preprocess(x)), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss_sum += loss.detach().double() * len(y)
        if n is not None:
            count += n
        seen += len(y)
        if advance is not None:
            advance(1)
    return seen, loss_sum, count


def train_epoch(
    model: Model,
    opt: torch.optim.Optimizer,
    batches,
    device: torch.device,
    advance=None,
    precision: str = "fp32",
) -> tuple[int, float, int]:
    """One pass of SGD on the cross-entropy over ``batches`` (:func:`fit`); returns (images,
    summed loss, correct). The net must be in train mode with gradients on. The loss is read
    once, at the end: a non-finite one is an error naming the fix."""
    seen, loss_sum, correct = fit(model, opt, batches, device, advance=advance,
                                  precision=precision)  # fmt: skip
    total = float(loss_sum)
    check_finite("this epoch", "lower --lr", training_loss=total)
    return seen, total, int(correct)


def checkpoints(run_dir: str | Path) -> list[Path]:
    """A training run's ``epoch_NNN.safetensors`` in epoch order; ``epoch_000`` is the
    initialisation (written before the first step)."""
    return sorted(Path(run_dir).glob("checkpoints/epoch_*.safetensors"))


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest trained ``epoch_NNN.safetensors`` of a training run (not the
    initialisation), or ``None``."""
    files = [f for f in checkpoints(run_dir) if f.stem != "epoch_000"]
    return files[-1] if files else None


def _save_checkpoint(
    run_dir: Path,
    model: Model,
    config: TrainConfig,
    row: dict,
    num_classes: int,
    classes: list[str] | None = None,
) -> Path:
    """Weights + sidecar for ``row["epoch"]``, each written atomically."""
    from ._version import __version__

    epoch = row["epoch"]
    path = run_dir / "checkpoints" / f"epoch_{epoch:03d}.safetensors"
    side = {
        "model": config.model,
        "data": config.data,
        "data_params": config.data_params or {},
        "data_root": config.data_root,
        "epoch": epoch,
        "num_classes": num_classes,
        "classes": classes,
        "input_size": config.size,
        "normalize": config.normalize,
        "train_accuracy": row["train_accuracy"],
        "test_accuracy": row["test_accuracy"],
        "seed": config.seed,
        "layerscope": __version__,
    }
    return save_checkpoint(model, path, side)


def _save_state(run_dir: Path, opt, epoch: int) -> None:
    """The resume state, written last for an epoch: its presence says that epoch's checkpoint,
    metrics and spectra are all on disk."""
    with atomic_path(run_dir / "checkpoints" / "state.pt") as tmp:
        torch.save({"optimizer": opt.state_dict(), "epoch": epoch}, tmp)


def _resume_point(run_dir: Path) -> tuple[int, dict | None]:
    """The last epoch whose resume state was saved (0: none) and that state. Checkpoints of
    later epochs are orphans of a run killed while saving: removed (they are redone), and
    said in one line."""
    path = run_dir / "checkpoints" / "state.pt"
    try:
        state = torch.load(path, weights_only=True) if path.is_file() else None
    except Exception as exc:
        raise LayerscopeError(
            f"{path} is corrupt ({type(exc).__name__}): delete it to redo the run from its "
            "start, or restore it"
        ) from exc
    start = int(state["epoch"]) if state is not None else 0
    last = run_dir / "checkpoints" / f"epoch_{start:03d}.safetensors"
    if start and not last.is_file():
        raise LayerscopeError(
            f"{last} is missing, though the run's resume state is of that epoch (it was "
            f"deleted?): restore it, or delete {run_dir} and train again"
        )
    orphans = [c for c in checkpoints(run_dir) if int(c.stem.split("_")[1]) > start]
    if orphans:
        note(
            f"resuming after epoch {start}: {', '.join(c.name for c in orphans)} "
            "had no saved resume state (the run stopped while saving) and will be redone"
        )
        for c in orphans:
            c.unlink()
            c.with_suffix(".json").unlink(missing_ok=True)
    return start, state


#: the epochs of a new run that names none
DEFAULT_EPOCHS = 20


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
    train_set, test_set = _datasets(config)
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
    start, state = _resume_point(run_dir) if run.resuming else (0, None)
    net = model.net.to(device)
    if device.type == "cuda":  # the card's fastest layout and kernels for fixed shapes
        net.to(memory_format=torch.channels_last)
        torch.backends.cudnn.benchmark = True
    net.requires_grad_(True)
    opt = _optimizer(net, config)
    rows = []
    if state is not None:
        from .models import load_state_dict

        net.load_state_dict(
            load_state_dict(run_dir / "checkpoints" / f"epoch_{start:03d}.safetensors")
        )
        opt.load_state_dict(state["optimizer"])
        rows = [r for r in read_csv(run_dir / "metrics.csv") if r["epoch"] <= start]
    run.meta(config, device=str(device), num_classes=num_classes)
    test_loader = _loader(test_set, config, 0, shuffle=False, device=device)
    spectra_csv = run_dir / "spectra.csv"
    spectra_rows = read_csv(spectra_csv) if state is not None and spectra_csv.exists() else []
    spectra_rows = [r for r in spectra_rows if r["epoch"] <= start]

    def record_spectra(epoch: int) -> None:
        if config.spectra_layers:
            spectra_rows.extend(_spectra(model, config, epoch, train_set, test_set))
            write_csv(run_dir / "spectra.csv", spectra_rows)

    if start == 0:
        init = {"epoch": 0, "train_accuracy": None, "test_accuracy": None}
        _save_checkpoint(run_dir, model, config, init, num_classes, classes)
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
                loader = _loader(train_set, config, epoch, shuffle=shuffle, device=device)
            row = _epoch(model, opt, train_set, loader, test_loader, config, epoch, device, bar)
            _check_finite(net, row, epoch, config)  # a diverged epoch is never saved
            rows.append(row)
            _save_checkpoint(run_dir, model, config, row, num_classes, classes)
            fault_point("checkpoint-written")
            write_csv(run_dir / "metrics.csv", rows)
            record_spectra(epoch)
            _save_state(run_dir, opt, epoch)  # last: the epoch is complete on disk
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
    test_loss, test_acc = evaluate(model, test_loader, device)
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
    from .report import figure, read_meta, table, write_page
    from .report.figures import spectra_figure, training_figure

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
    Option("model", "Model name (any `layerscope models` name)."),
    Option("data", "photos | noise | twopoints | folder:PATH | cifar10 | cifar100 | mnist | "
           "fashionmnist."),
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


STUDY = Study(
    kind="train",
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
