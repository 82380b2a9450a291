"""Training's engine: a plain, correct PyTorch loop (:func:`fit`, :func:`train_epoch`,
:func:`loss_and_accuracy`) with per-epoch safetensors checkpoints and resume. The ``train`` study
(:mod:`layerscope.studies.train`) runs it: ``TrainConfig`` → ``train`` → a run directory:
``config.json``, ``metrics.csv`` (one row per epoch: train/test loss and accuracy, seconds),
``checkpoints/epoch_NNN.safetensors`` (and ``epoch_000``, the initialisation) with a JSON
sidecar (model, data set, epoch, accuracies, seed, version: what ``load_model`` needs),
``checkpoints/state.pt`` (optimiser and epoch, for ``resume``), ``training.png``, and with
``spectra_layers`` ``spectra.csv`` / ``spectra.png`` (activation spectra after every epoch).

Reproducible from the seed: the model's initialisation, the data order of every epoch and
dropout all come from seeded generators keyed by the epoch, so a resumed run equals an
uninterrupted one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from ..core.config import Config, at_least
from ..core.errors import LayerscopeError
from ..core.files import atomic_path
from ..core.progress import note
from .data import NoiseImages, TwoPoints, load_dataset
from .device import check_precision
from .finite import check_finite
from .models import Model, save_checkpoint

__all__ = [
    "DEFAULT_EPOCHS",
    "DeviceCache",
    "TrainConfig",
    "checkpoints",
    "datasets",
    "fit",
    "latest_checkpoint",
    "loss_and_accuracy",
    "make_loader",
    "resume_point",
    "save_epoch_checkpoint",
    "save_state",
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


def datasets(config: TrainConfig):
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


def make_loader(
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
def loss_and_accuracy(
    model: Model, loader: DataLoader, device: torch.device
) -> tuple[float, float]:
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


def save_epoch_checkpoint(
    run_dir: Path,
    model: Model,
    config: TrainConfig,
    row: dict,
    num_classes: int,
    classes: list[str] | None = None,
) -> Path:
    """Weights + sidecar for ``row["epoch"]``, each written atomically."""
    from .._version import __version__

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


def save_state(run_dir: Path, opt, epoch: int) -> None:
    """The resume state, written last for an epoch: its presence says that epoch's checkpoint,
    metrics and spectra are all on disk."""
    with atomic_path(run_dir / "checkpoints" / "state.pt") as tmp:
        torch.save({"optimizer": opt.state_dict(), "epoch": epoch}, tmp)


def resume_point(run_dir: Path) -> tuple[int, dict | None]:
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
