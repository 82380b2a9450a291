"""Images: load a file or a built-in sample photo, resize, save PNGs and labelled grids.

Tensors are ``1×3×H×W`` float32 in [0, 1] (RGB). Grayscale and RGBA become RGB.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from .errors import ImageError

__all__ = ["SAMPLES", "image_to_pil", "load_image", "save_grid", "save_image"]

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

    ``size``: an int gives ``size×size`` (the seeds resize to 299×299, bilinear), a pair
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
        if not path.is_file():
            raise ImageError(
                f"image {str(source)!r} not found: give a JPEG/PNG path or a sample name "
                f"({', '.join(sorted(set(SAMPLES)))})"
            )
        try:
            img = Image.open(path)
            img.load()
        except (UnidentifiedImageError, OSError, SyntaxError) as exc:
            raise ImageError(
                f"cannot read image {path} ({type(exc).__name__}): the file is corrupt or not "
                "an image; re-save it as PNG or JPEG"
            ) from exc
    img = _to_rgb_pil(img)
    if size is not None:
        h, w = (size, size) if isinstance(size, int) else size
        if h < 1 or w < 1:
            raise ImageError(f"image size must be positive, not {size}")
        img = img.resize((w, h), Image.BILINEAR)
    arr = np.asarray(img, dtype=np.float32) / 255.0
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).unsqueeze(0).contiguous()


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


def save_image(x: torch.Tensor, path: str | Path) -> Path:
    """Save one image tensor as PNG (values clipped to [0, 1] for display)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image_to_pil(x).save(path)
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
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
