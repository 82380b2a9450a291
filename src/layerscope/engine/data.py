"""Data sets: one registry, each a ``torch.utils.data.Dataset`` with train/test splits and a seed.

- ``photos``: crops of the built-in sample photos (scikit-image, offline); class = the photo.
  Train crops come from the left three quarters of each photo, test crops from the right
  quarter, so the splits share no pixel.
- ``twopoints``: the scale-detection task (two active pixels, near or far; :class:`TwoPoints`).
- ``noise``: Badger's memorisation set, images ``N(1/2, 1/4)`` (mean 0.5, std 0.25, not
  clipped) with labels uniform in ``0..classes-1``; the test split is fresh noise.
- ``folder:PATH``: an ImageFolder tree (``PATH/train`` and ``PATH/test`` when present).
- ``cifar10``, ``cifar100``, ``mnist``, ``fashionmnist``: torchvision sets read from
  ``root``; never downloaded here (an error says where to put them).

Every item is a ``(3×size×size float in [0, 1] (noise: unclipped), label)`` pair and is a pure
function of (seed, split, index): the same seed gives the same data in any order.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from ..core.errors import ImageError, LayerscopeError
from .images import load_image

__all__ = [
    "DATASETS",
    "DataUnavailable",
    "Digits",
    "NoiseImages",
    "PhotoCrops",
    "TwoPoints",
    "load_dataset",
]


class DataUnavailable(LayerscopeError):
    """A data set is not on disk (and is never downloaded here)."""


#: The photos of the ``photos`` set, one class each (duplicates of SAMPLES removed).
PHOTO_CLASSES = [
    "chelsea",
    "astronaut",
    "coffee",
    "rocket",
    "camera",
    "coins",
    "hubble",
    "immunohistochemistry",
    "retina",
    "motorcycle",
    "page",
    "moon",
]


def _generator(seed: int, *salt: int) -> torch.Generator:
    g = torch.Generator()
    value = seed
    for s in salt:
        value = (value * 1_000_003 + s) % (2**62)
    return g.manual_seed(value)


class PhotoCrops(Dataset):
    """Random crops (scale and position) of the sample photos, resized to ``size``, with
    horizontal flips when ``augment``; ``length`` items per split, class = source photo."""

    def __init__(
        self,
        split: str = "train",
        size: int = 64,
        length: int | None = None,
        seed: int = 0,
        augment: bool = True,
    ) -> None:
        if split not in ("train", "test"):
            raise ValueError(f"split must be train or test, not {split!r}")
        self.split, self.size, self.seed, self.augment = split, size, seed, augment
        self.classes = list(PHOTO_CLASSES)
        self.length = length or (
            200 * len(self.classes) if split == "train" else 50 * len(self.classes)
        )
        self._photos = []
        for name in self.classes:
            img = load_image(name, None)[0]
            w = img.shape[-1]
            cut = (3 * w) // 4
            self._photos.append(img[..., :cut] if split == "train" else img[..., cut:])
        self.salt = 0 if split == "train" else 1
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """With ``augment``, each epoch draws new crops (a function of seed, epoch, index)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return self.length

    def window(self, index: int) -> tuple[int, int, int, int, bool]:
        """Item ``index``'s crop: (label, side, y, x, flip), drawn from its own generator."""
        if not 0 <= index < self.length:
            raise IndexError(index)
        label = index % len(self.classes)
        h, w = self._photos[label].shape[-2:]
        g = _generator(self.seed, self.salt, self.epoch if self.augment else 0, index)
        side_max = min(h, w)
        side_min = max(8, min(side_max, side_max // 4))
        side = int(torch.randint(side_min, side_max + 1, (1,), generator=g))
        y = int(torch.randint(0, h - side + 1, (1,), generator=g))
        x = int(torch.randint(0, w - side + 1, (1,), generator=g))
        flip = bool(torch.rand((), generator=g) < 0.5)
        return label, side, y, x, self.augment and flip

    def _crop(self, photo: torch.Tensor, side: int, y: int, x: int, flip: bool) -> torch.Tensor:
        crop = photo[:, y : y + side, x : x + side].unsqueeze(0)
        crop = F.interpolate(crop, size=(self.size, self.size), mode="bilinear", antialias=True)
        crop = crop[0].clamp(0, 1)
        return crop.flip(-1) if flip else crop

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        label, side, y, x, flip = self.window(index)
        return self._crop(self._photos[label], side, y, x, flip), label

    def batch(
        self, indices: torch.Tensor, device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Items ``indices`` cropped on ``device`` from the photos held there (a tensor cache:
        only the crop windows are drawn on the host). Equal to the items up to float rounding
        (the same operations, on another device)."""
        photos = self._held.get(device) if hasattr(self, "_held") else None
        if photos is None:
            self._held = getattr(self, "_held", {})
            photos = self._held[device] = [p.to(device) for p in self._photos]
        xs, ys = [], []
        for i in indices.tolist():
            label, side, y, x, flip = self.window(i)
            xs.append(self._crop(photos[label], side, y, x, flip))
            ys.append(label)
        return torch.stack(xs), torch.tensor(ys, device=device)


class NoiseImages(Dataset):
    """Badger's memorisation set: ``N(1/2, 1/4)`` images (std 0.25, unclipped), labels
    uniform in ``0..num_classes-1``; each image a function of (seed, split, index)."""

    def __init__(
        self,
        split: str = "train",
        size: int = 224,
        length: int = 10_000,
        num_classes: int = 100,
        seed: int = 0,
    ) -> None:
        if split not in ("train", "test"):
            raise ValueError(f"split must be train or test, not {split!r}")
        self.split, self.size, self.length, self.seed = split, size, length, seed
        self.salt = 0 if split == "train" else 1
        self.classes = [str(i) for i in range(num_classes)]
        self.labels = torch.randint(
            0, num_classes, (length,), generator=_generator(seed, self.salt, 10**9)
        )

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if not 0 <= index < self.length:
            raise IndexError(index)
        g = _generator(self.seed, self.salt, index)
        img = 0.5 + 0.25 * torch.randn(3, self.size, self.size, generator=g)
        return img, int(self.labels[index])


class Digits(Dataset):
    """scikit-learn's handwritten digits (``load_digits``: 1,797 8×8 images of 0–9 by 43
    writers, values 0–16, shipped with the package, offline), scaled to [0, 1], resized
    bilinearly to ``size`` and repeated over three channels; a fixed split by ``seed``: every
    5th image after a seeded shuffle is test (360 test, 1,437 train)."""

    def __init__(self, split: str = "train", size: int = 32, seed: int = 0) -> None:
        if split not in ("train", "test"):
            raise ValueError(f"split must be train or test, not {split!r}")
        try:
            from sklearn.datasets import load_digits
        except ImportError as exc:  # a dependency of layerscope: only a broken install
            raise DataUnavailable(
                "--data digits needs scikit-learn: pip install scikit-learn"
            ) from exc
        import torch.nn.functional as F

        digits = load_digits()
        images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
        order = torch.randperm(len(images), generator=_generator(seed, 11)).tolist()
        test = set(order[::5])
        keep = [i for i in order if (i in test) == (split == "test")]
        x = images[keep]
        if size != 8:
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
        self.x = x.clamp(0, 1).expand(-1, 3, -1, -1).contiguous()
        self.y = torch.tensor(digits.target[keep], dtype=torch.long)
        self.classes = [str(i) for i in range(10)]

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.x[index], int(self.y[index])


class TwoPoints(Dataset):
    """Tomasini et al.'s scale-detection task: ``d×d`` images, zero except two active pixels;
    label 0 ("near") when their distance is below ``xi − gap/2``, 1 ("far") when it is at
    least ``xi + gap/2`` (``norm``: ``"l2"`` or ``"linf"``); pairs in the gap are never drawn.
    The classes alternate with the index (balanced); the two points are uniform among the
    pairs of the class, any two distinct pixels (unlike the authors' generator, which never
    puts a point on the diagonal). Active pixels have ``value`` (the authors': d²/2); the image
    has 3 identical channels, so every layerscope model takes it."""

    def __init__(
        self,
        split: str = "train",
        size: int = 28,
        length: int | None = None,
        seed: int = 0,
        xi: float | None = None,
        gap: float = 2.0,
        norm: str = "l2",
        value: float | None = None,
    ) -> None:
        if split not in ("train", "test"):
            raise ValueError(f"split must be train or test, not {split!r}")
        if norm not in ("l2", "linf"):
            raise DataUnavailable(f"twopoints norm must be l2 or linf, not {norm!r}")
        self.split, self.size, self.seed, self.norm, self.gap = split, size, seed, norm, gap
        self.xi = size / 2 if xi is None else xi
        self.value = size**2 / 2 if value is None else value
        self.length = length or (4000 if split == "train" else 1000)
        self.salt = 0 if split == "train" else 1
        self.classes = ["near", "far"]
        near_max = self.xi - gap / 2
        far_min = self.xi + gap / 2
        far_possible = (size - 1) * (math.sqrt(2) if norm == "l2" else 1)
        if near_max <= 1 or far_min > far_possible:
            raise DataUnavailable(
                f"twopoints with d = {size}, xi = {self.xi:g}, gap = {gap:g} ({norm}) has an "
                "empty class: choose 1 + gap/2 < xi ≤ (d − 1) − gap/2"
            )

    def __len__(self) -> int:
        return self.length

    def distance(self, p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        diff = (p - q).abs().double()
        return diff.norm(dim=-1) if self.norm == "l2" else diff.amax(dim=-1)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if not 0 <= index < self.length:
            raise IndexError(index)
        label = index % 2
        g = _generator(self.seed, 11 + self.salt, index)
        d = self.size
        while True:  # rejection sampling: a few draws on average
            pts = torch.randint(0, d, (16, 2, 2), generator=g)
            dist = self.distance(pts[:, 0], pts[:, 1])
            ok = (dist >= self.xi + self.gap / 2) if label else (dist < self.xi - self.gap / 2)
            ok &= dist > 0
            if ok.any():
                p, q = pts[int(ok.nonzero()[0])]
                break
        img = torch.zeros(3, d, d)
        img[:, p[0], p[1]] = self.value
        img[:, q[0], q[1]] = self.value
        return img, label


class _Resized(Dataset):
    """A torchvision/ImageFolder set as RGB tensors in [0, 1] at ``size``×``size``."""

    def __init__(self, base, size: int) -> None:
        self.base, self.size = base, size
        self.classes = list(getattr(base, "classes", []))

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        from torchvision.transforms.functional import pil_to_tensor

        try:
            img, label = self.base[index]
        except (OSError, SyntaxError, ValueError) as exc:  # PIL: truncated or not an image
            raise ImageError(
                f"cannot read image {_sample_path(self.base, index)} ({type(exc).__name__}): "
                "the file is corrupt or not an image; remove or re-save it"
            ) from exc
        x = pil_to_tensor(img.convert("RGB")).float().div(255).unsqueeze(0)
        x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", antialias=True)
        return x[0].clamp(0, 1), int(label)


def _sample_path(base, index: int) -> str:
    """The file behind item ``index`` of an ImageFolder (or a Subset of one)."""
    if isinstance(base, torch.utils.data.Subset):
        base, index = base.dataset, base.indices[index]
    samples = getattr(base, "samples", None)
    return str(samples[index][0]) if samples else f"item {index}"


_TORCHVISION = {
    "cifar10": ("CIFAR10", "cifar-10-batches-py"),
    "cifar100": ("CIFAR100", "cifar-100-python"),
    "mnist": ("MNIST", "MNIST/raw"),
    "fashionmnist": ("FashionMNIST", "FashionMNIST/raw"),
}


def _torchvision_set(name: str, split: str, size: int, root: str | Path | None) -> Dataset:
    import torchvision.datasets as tvd

    cls_name, folder = _TORCHVISION[name]
    root = Path(root or "data")
    try:
        base = getattr(tvd, cls_name)(str(root), train=split == "train", download=False)
    except (RuntimeError, FileNotFoundError, OSError) as exc:
        raise DataUnavailable(
            f"{name} is not in {root} (expected {root / folder}); it is never downloaded here: "
            f"copy the torchvision files there, or pass --data-root DIR"
        ) from exc
    return _Resized(base, size)


def _image_folder(root: Path):
    from torchvision.datasets import ImageFolder

    try:
        return ImageFolder(str(root))
    except (FileNotFoundError, RuntimeError) as exc:
        raise DataUnavailable(
            f"folder {root} holds no images in class subfolders ({str(exc).splitlines()[0]}): "
            "lay it out as PATH/<class>/<image> (optionally under PATH/train and PATH/test)"
        ) from exc


def _folder_set(path: str, split: str, size: int, seed: int) -> Dataset:
    root = Path(path)
    if not root.is_dir():
        raise DataUnavailable(f"folder {root} does not exist: --data folder:PATH needs a folder")
    sub = root / split
    if sub.is_dir():
        return _Resized(_image_folder(sub), size)
    base = _image_folder(root)
    # No train/test folders: a fixed split, every 5th item (after a seeded shuffle) is test.
    order = torch.randperm(len(base), generator=_generator(seed, 7)).tolist()
    test = set(order[::5])
    keep = [i for i in range(len(base)) if (i in test) == (split == "test")]
    subset = torch.utils.data.Subset(base, keep)
    subset.classes = base.classes
    return _Resized(subset, size)


@dataclass(frozen=True)
class _DataSpec:
    build: Callable[..., Dataset]
    default_size: int
    help: str
    #: the parameters it takes (``--data-params KEY=VALUE``, ``--n`` as ``length``) and types
    params: dict = field(default_factory=dict)


_KINDS = {int: "a whole number", float: "a number", bool: "true or false", str: "a word"}


def check_data_params(name: str, params: dict | None) -> dict:
    """``params`` for data set ``name``, each a parameter the set takes and of its type
    (numbers parsed; a bool is not a number): else one line naming the key and what the set
    takes. ``folder:`` sets take none of their own and are not checked."""
    params = dict(params or {})
    spec = DATASETS.get(name)
    if spec is None or name.startswith("folder:"):
        return params
    out = {}
    for key, value in params.items():
        kind = spec.params.get(key)
        shown = "length (--n)" if key == "length" else key
        if kind is None:
            takes = ", ".join(spec.params) or "none"
            raise DataUnavailable(
                f"--data-params {shown} does not apply to {name}: it takes {takes}"
            )
        if value is None:
            out[key] = None
            continue
        try:
            if kind is bool:
                if not isinstance(value, bool):
                    raise ValueError
                cast = value
            elif kind is str:
                cast = str(value)
            elif isinstance(value, bool):
                raise ValueError
            elif kind is int:
                cast = int(value)
                if (isinstance(value, float) and value != cast) or (
                    isinstance(value, str) and (str(cast) != value.strip())
                ):
                    raise ValueError
            else:
                cast = float(value)
        except (TypeError, ValueError):
            raise DataUnavailable(
                f"--data-params {shown} of {name} must be {_KINDS[kind]}, not {value!r}"
            ) from None
        out[key] = cast
    return out


DATASETS: dict[str, _DataSpec] = {
    "photos": _DataSpec(
        lambda split, size, seed, root, **kw: PhotoCrops(split, size, seed=seed, **kw),
        64,
        "crops of the built-in sample photos, class = photo (offline)",
        {"length": int, "augment": bool},
    ),
    "noise": _DataSpec(
        lambda split, size, seed, root, **kw: NoiseImages(split, size, seed=seed, **kw),
        224,
        "N(1/2, 1/4) images with random labels (Badger's memorisation set)",
        {"length": int, "num_classes": int},
    ),
    "digits": _DataSpec(
        lambda split, size, seed, root, **kw: Digits(split, size, seed=seed, **kw),
        32,
        "scikit-learn's handwritten digits, 1,797 images of 0-9 (offline; MNIST's stand-in)",
    ),
    "twopoints": _DataSpec(
        lambda split, size, seed, root, **kw: TwoPoints(split, size, seed=seed, **kw),
        28,
        "scale detection: two active pixels, near or far (Tomasini et al.)",
        {"length": int, "xi": float, "gap": float, "norm": str, "value": float},
    ),
    **{
        name: _DataSpec(
            lambda split, size, seed, root, _n=name, **kw: _torchvision_set(_n, split, size, root),
            32 if name.startswith("cifar") else 28,
            f"torchvision {name} read from --data-root (never downloaded)",
        )
        for name in _TORCHVISION
    },
}


def load_dataset(
    name: str,
    split: str = "train",
    size: int | None = None,
    seed: int = 0,
    root: str | Path | None = None,
    **params,
) -> Dataset:
    """The ``split`` of data set ``name`` (``photos``, ``noise``, ``folder:PATH``, ``cifar10``,
    …) at ``size`` pixels. ``params`` go to the set (``length``, ``num_classes``, ``augment``)."""
    if name.startswith("folder:"):
        return _folder_set(name.split(":", 1)[1], split, size or 64, seed)
    if name not in DATASETS:
        import difflib

        close = difflib.get_close_matches(name, list(DATASETS), n=3)
        hint = f"; closest: {', '.join(close)}" if close else ""
        raise DataUnavailable(
            f"unknown data set {name!r}{hint}; choose from {', '.join(DATASETS)} or folder:PATH"
        )
    spec = DATASETS[name]
    if size is not None and size < 1:
        raise DataUnavailable(f"--size must be a positive number of pixels, not {size}")
    params = check_data_params(name, params)
    if params.get("length") is not None and params["length"] < 1:
        raise DataUnavailable(f"--n must be at least 1 image, not {params['length']}")
    return spec.build(split, size or spec.default_size, seed, root, **params)
