"""Images: load a file or a built-in sample photo, resize, save PNGs and labelled grids.

Tensors are ``1×3×H×W`` float32 in [0, 1] (RGB). Grayscale and RGBA become RGB.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from ..core.errors import ImageError
from ..core.files import atomic_path, save_figure

__all__ = [
    "SAMPLES",
    "check_image",
    "check_images",
    "image_to_pil",
    "load_image",
    "save_grid",
    "save_image",
]

#: Built-in photos (scikit-image's sample data, offline): name → skimage.data function name.
SAMPLES = {
    "chelsea": "chelsea",
    "cat": "chelsea",
    "astronaut": "astronaut",
    "coffee": "coffee",
    "rocket": "rocket",
    "camera": "camera",
    "coins": "coins",
    "hubble": "hubble_deep_field",
    "immunohistochemistry": "immunohistochemistry",
    "retina": "retina",
    "motorcycle": "stereo_motorcycle",
    "page": "page",
    "moon": "moon",
    "horse": "horse",
    "colorwheel": "colorwheel",
    "brick": "brick",
    "grass": "grass",
    "gravel": "gravel",
    "cell": "cell",
    "logo": "logo",
}


def _sample_array(name: str) -> np.ndarray:
    import skimage.data

    arr = getattr(skimage.data, SAMPLES[name])()
    if isinstance(arr, tuple):  # stereo_motorcycle returns (left, right, disparity)
        arr = arr[0]
    return arr


def _to_rgb_pil(img: Image.Image) -> Image.Image:
    if img.mode in ("RGBA", "LA", "P"):
        img = img.convert("RGBA")
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, img)
    return img.convert("RGB")


def load_image(source: str | Path, size: int | tuple[int, int] | None = 299) -> torch.Tensor:
    """Load ``source`` (a file path or a name in :data:`SAMPLES`) as ``1×3×H×W`` in [0, 1].

    ``size``: an int gives ``size×size`` (Badger resizes to 299×299, bilinear), a pair
    gives ``(H, W)``, ``None`` keeps the original size.
    """
    key = str(source).lower()
    if key in SAMPLES and not Path(source).exists():
        arr = _sample_array(key)
        if arr.dtype == bool:
            arr = arr.astype(np.uint8) * 255
        img = Image.fromarray(arr)
    else:
        path = Path(source)
        if path.is_dir():
            raise ImageError(f"image {path} is a directory: give an image file (JPEG, PNG, …)")
        if not path.is_file():
            raise ImageError(
                f"image {str(source)!r} not found: give a JPEG/PNG path or a sample name "
                f"({', '.join(sorted(set(SAMPLES)))})"
            )
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                img = Image.open(path)
                img.load()
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ImageError(
                f"image {path} is too large to decode safely ({exc}): resize it first "
                "(or raise PIL.Image.MAX_IMAGE_PIXELS if you trust the file)"
            ) from exc
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            raise ImageError(
                f"cannot read image {path} ({type(exc).__name__}): the file is corrupt or not "
                "an image; re-save it as PNG or JPEG"
            ) from exc
    if size is not None:
        h, w = (size, size) if isinstance(size, int) else size
        if h < 1 or w < 1:
            raise ImageError(f"image size must be positive, not {size}")
    if img.mode in ("I", "F") or img.mode.startswith("I;16"):
        gray = Image.fromarray(_unit_range(img))  # mode F, [0, 1], before resizing
        if size is not None:
            gray = gray.resize((w, h), Image.BILINEAR)
        arr = np.repeat(np.asarray(gray, dtype=np.float32)[..., None], 3, axis=-1)
    else:
        img = _to_rgb_pil(img)
        if size is not None:
            img = img.resize((w, h), Image.BILINEAR)
        arr = np.asarray(img, dtype=np.float32) / 255.0
    return torch.from_numpy(arr.clip(0, 1).copy()).permute(2, 0, 1).unsqueeze(0).contiguous()


def _unit_range(img: Image.Image) -> np.ndarray:
    """A single-channel 16-bit, 32-bit integer or float image as float32 in [0, 1]. Integers
    within 0..65535 by the 16-bit depth (/65535; PIL opens 16-bit PNGs as ``I``); wider
    integers (a 32-bit TIFF above 65535) by their own range, min to max, since no sensor fills
    32 bits (by the bit depth they loaded black); floats as they are when already in [0, 1],
    else by their own range. (Converting such modes to RGB in PIL clips them at 255.)"""
    arr = _raw_pixels(img)
    if img.mode.startswith("I"):
        lo, hi = float(arr.min(initial=0)), float(arr.max(initial=0))
        if lo >= 0 and hi <= 65535:
            return (arr / 65535.0).astype(np.float32)
        return ((arr - lo) / (hi - lo) if hi > lo else np.zeros_like(arr)).astype(np.float32)
    finite = arr[np.isfinite(arr)]
    if finite.size == 0:
        raise ImageError("the image holds no finite pixel values")
    lo, hi = float(finite.min()), float(finite.max())
    arr = np.nan_to_num(arr, nan=lo, posinf=hi, neginf=lo)
    if lo < 0 or hi > 1:
        arr = (arr - lo) / (hi - lo) if hi > lo else np.zeros_like(arr)
    return arr.astype(np.float32)


def _raw_pixels(img: Image.Image) -> np.ndarray:
    """The pixel values as float64. PIL holds 32-bit integers as signed (an unsigned TIFF's
    values above 2³¹ come back negative): a TIFF's own values are read with ``tifffile``
    (scikit-image's reader, installed with it) where it can."""
    path = getattr(img, "filename", "")
    if img.format == "TIFF" and img.mode == "I" and path:
        try:
            import tifffile

            raw = np.squeeze(tifffile.imread(path))
            if raw.ndim == 2 and raw.shape == (img.height, img.width):
                return raw.astype(np.float64)
        except Exception:  # pragma: no cover - PIL's values stand
            pass
    return np.asarray(img, dtype=np.float64)


#: how far outside [0, 1] a pixel may stray before it is refused: generated images are not
#: clipped (a descent overshoots by ~0.1), while 8-bit values reach 255 and normalised images
#: reach −1 ([-1, 1]) or −2.1 (ImageNet mean/std)
RANGE_TOLERANCE = 0.5


def check_images(images, name: str = "images") -> torch.Tensor:
    """The one input guard of the public API: ``images`` as a float ``N×C×H×W`` tensor (a
    ``C×H×W`` gains the batch axis), finite, in [0, 1]; anything else is refused in one line
    with the likely cause and the fix (8-bit values, an integer dtype, a normalised image)."""
    if not isinstance(images, torch.Tensor):
        raise ImageError(
            f"{name} must be a torch.Tensor of pixels in [0, 1] (use ls.load_image), not "
            f"{type(images).__name__}"
        )
    if not images.is_floating_point():
        raise ImageError(
            f"{name} has dtype {images.dtype}: layerscope expects float pixels in [0, 1]; "
            "use ls.load_image, or image.float() / 255"
        )
    if images.dim() == 3:
        images = images.unsqueeze(0)
    if images.dim() != 4:
        raise ImageError(f"{name} must be N×C×H×W (or C×H×W), not {tuple(images.shape)}")
    if images.is_meta:
        raise ImageError(f"{name} is on the meta device and holds no values: give real pixels")
    if images.numel() == 0:
        raise ImageError(f"{name} holds no pixels (shape {tuple(images.shape)}): give at "
                         "least one image")  # fmt: skip
    if not torch.isfinite(images).all():
        raise ImageError(f"{name} contains NaN or infinite values")
    lo, hi = float(images.detach().min()), float(images.detach().max())
    if hi > 1 + RANGE_TOLERANCE:
        raise ImageError(
            f"{name} values span [{lo:.4g}, {hi:.4g}]: layerscope expects [0, 1] "
            "(divide by 255 if these are 8-bit pixel values)"
        )
    if lo < -RANGE_TOLERANCE:
        raise ImageError(
            f"{name} values span [{lo:.4g}, {hi:.4g}]: layerscope expects [0, 1] pixels; a "
            "normalised image ([-1, 1], or ImageNet mean/std) goes in as pixels and the "
            "normalisation inside the model (ls.load_model(..., normalize='imagenet'))"
        )
    return images


def check_image(image: torch.Tensor, name: str = "image") -> torch.Tensor:
    """One image as ``1×3×H×W`` (a ``3×H×W`` gains the batch axis), through
    :func:`check_images`."""
    image = check_images(image, name)
    if image.shape[:2] != (1, 3):
        raise ImageError(f"{name} must be 1×3×H×W (or 3×H×W), not {tuple(image.shape)}")
    return image


def image_to_pil(x: torch.Tensor) -> Image.Image:
    """``[1×]3×H×W`` tensor → PIL image, clipped to [0, 1] for display only."""
    x = x.detach().float().cpu()
    if x.dim() == 4:
        if x.shape[0] != 1:
            raise ValueError(f"expected one image, got a batch of {x.shape[0]}")
        x = x[0]
    if x.dim() != 3 or x.shape[0] not in (1, 3):
        raise ValueError(f"expected a 3×H×W or 1×H×W tensor, got shape {tuple(x.shape)}")
    arr = (x.clamp(0, 1).permute(1, 2, 0).numpy() * 255.0 + 0.5).astype(np.uint8)
    return Image.fromarray(arr.squeeze(-1) if arr.shape[-1] == 1 else arr)


def save_image(x: torch.Tensor, path: str | Path, format: str | None = None) -> Path:
    """Save one image tensor (PNG unless the suffix or ``format`` says otherwise; values
    clipped to [0, 1] for display)."""
    from PIL import Image as _Image

    path = Path(path)
    if format is None:  # the suffix decides, as PIL would from the final name
        format = _Image.registered_extensions().get(path.suffix.lower(), "PNG")
    with atomic_path(path) as tmp:  # never half a file under the final name
        image_to_pil(x).save(tmp, format=format)
    return path


def save_grid(
    rows: Sequence[Sequence[torch.Tensor | None]],
    path: str | Path,
    row_labels: Sequence[str] | None = None,
    col_labels: Sequence[str] | None = None,
    title: str | None = None,
    cell_inches: float = 1.8,
) -> Path:
    """A labelled grid of images (``None`` leaves a cell empty), saved as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_rows = len(rows)
    n_cols = max(len(r) for r in rows) if rows else 0
    if n_rows == 0 or n_cols == 0:
        raise ValueError("save_grid needs at least one image")
    fig, axes = plt.subplots(
        n_rows,
        n_cols,
        figsize=(cell_inches * n_cols + 0.8, cell_inches * n_rows + (0.5 if title else 0.2)),
        squeeze=False,
    )
    for i in range(n_rows):
        for j in range(n_cols):
            ax = axes[i][j]
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            img = rows[i][j] if j < len(rows[i]) else None
            if img is not None:
                ax.imshow(image_to_pil(img))
            if i == 0 and col_labels is not None and j < len(col_labels):
                ax.set_title(col_labels[j], fontsize=9)
            if j == 0 and row_labels is not None:
                ax.set_ylabel(row_labels[i], fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_figure(fig, path, dpi=110)
    plt.close(fig)
    return path
