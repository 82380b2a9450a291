"""What the eye sees in a reconstruction, beside the pixel distance m_i.

m_i = ‖a_g − a‖ counts a colour shift as much as a lost object, so alone it misreads what
Badger 2022 judged by eye. Two measures that match those words:

- **recognisability**: an independent trained classifier (by default another of the three
  real EfficientNet-Lite nets, never the one being inverted) classifies the target image and
  its reconstruction; we record p(the target's top-1 class) on the reconstruction, that
  class's rank and whether it is in the top 5;
- **structure**: SSIM between the reconstruction and the target (scikit-image's
  ``structural_similarity``, data range 1, on the images as shown: clipped to [0, 1]).

Beside them, the share of the reconstruction's pixels outside [0, 1] (what clipping hides).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..core.errors import ConfigError
from .models import OFFLINE, Model, load_model

__all__ = ["Judge", "judge_for", "judgement", "outside_share", "ssim"]

#: the order in which ``judge="auto"`` picks the independent net: the first that is not the
#: model being inverted
AUTO_JUDGES = ("efficientnet_lite1", "efficientnet_lite2", "efficientnet_lite0")


def outside_share(x: torch.Tensor) -> float:
    """The share of ``x``'s values outside [0, 1] (0 for an image as shown)."""
    x = x.detach()
    return float(((x < 0) | (x > 1)).float().mean()) if x.numel() else float("nan")


def ssim(a: torch.Tensor, b: torch.Tensor) -> float:
    """SSIM of two ``[1×]3×H×W`` images, each clipped to [0, 1] (scikit-image, channels
    averaged, a 7-pixel window, data range 1; NaN for images under 3 pixels a side)."""
    from skimage.metrics import structural_similarity

    a = a.detach().reshape(-1, *a.shape[-2:]).clamp(0, 1).double().cpu().numpy()
    b = b.detach().reshape(-1, *b.shape[-2:]).clamp(0, 1).double().cpu().numpy()
    if a.shape != b.shape:
        raise ValueError(f"SSIM of images of shapes {a.shape} and {b.shape}")
    side = min(a.shape[-2:])
    win = min(7, side if side % 2 else side - 1)  # images under 7 px: the largest odd window
    if win < 3:
        return float("nan")
    return float(structural_similarity(a, b, channel_axis=0, data_range=1.0, win_size=win))


@dataclass
class Judge:
    """A trained classifier that judges reconstructions: it sees each image clipped to
    [0, 1] and resized (bilinear, antialiased) to its own input ``size``."""

    model: Model
    size: int = 224

    @property
    def name(self) -> str:
        return self.model.label

    @torch.no_grad()
    def probabilities(self, images: torch.Tensor) -> torch.Tensor:
        """Softmax over the classes for each of ``images`` (N×3×H×W), float64."""
        x = images.detach().float().clamp(0, 1).to(next(self.model.parameters()).device)
        if tuple(x.shape[-2:]) != (self.size, self.size):
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear",
                              antialias=True, align_corners=False).clamp(0, 1)  # fmt: skip
        return self.model(x).double().softmax(-1).cpu()

    def judge(self, target: torch.Tensor, images: torch.Tensor) -> list[dict]:
        """For each of ``images``: p(the target's top-1 class), its rank (1 = top) and
        whether it is in the top 5; the class and its p on the target itself beside; and the
        judge's own top class for the image and its probability (how much it looks like any
        class of the judge's training data)."""
        probs = self.probabilities(torch.cat([target.reshape(1, *target.shape[-3:]), images]))
        cls = int(probs[0].argmax())
        names = self.model.class_names(probs.shape[1])
        rows = []
        for p in probs[1:]:
            rank = int((p > p[cls]).sum()) + 1
            top = int(p.argmax())
            rows.append({"judge": self.name, "judge_class": names[cls],
                         "target_p_class": float(probs[0, cls]), "p_class": float(p[cls]),
                         "class_rank": rank, "top5": int(rank <= 5),
                         # what the judge sees in it, whatever the target's class
                         "top_class": names[top], "top_p": float(p[top])})  # fmt: skip
        return rows


@functools.lru_cache(maxsize=4)
def _load(spec: str) -> Model:
    if spec.endswith((".safetensors", ".pt", ".pth")):
        return load_model(spec)
    return load_model(spec, "imagenet")


def judge_for(inverted: str | Sequence[str], choice: str | Model | None = "auto") -> Judge | None:
    """The judge of a run that inverts the model named ``inverted`` (or uses several: a list
    of names): ``"auto"`` (the first of lite1, lite2, lite0 that is none of them),
    ``"none"``/None (no recognisability), a model name with ImageNet weights, a checkpoint
    whose sidecar names its classes, or a :class:`Model` with class names."""
    if choice in (None, "none", ""):
        return None
    if isinstance(choice, Model):
        model = choice
    else:
        spec = str(choice)
        if spec == "auto":
            used = {inverted} if isinstance(inverted, str) else set(inverted)
            spec = next((n for n in AUTO_JUDGES if n not in used), "")
            if not spec:
                raise ConfigError(
                    "--judge auto finds no real net outside the run (it uses "
                    f"{', '.join(AUTO_JUDGES)}): name a judge or give --judge none"
                )
        model = _load(spec)
    if model.classes is None:
        raise ConfigError(
            f"--judge {model.label} has no class names, so it cannot say what it recognises: "
            f"use one of {', '.join(sorted(OFFLINE))} (ImageNet, offline), 'auto' or 'none'"
        )
    size = model.input_size or _input_size(model)
    return Judge(model, size)


def _input_size(model: Model) -> int:
    """The side the judge's weights were trained at (timm's pretrained config), else 224."""
    cfg = getattr(model.net, "pretrained_cfg", None) or {}
    size = cfg.get("input_size") if isinstance(cfg, dict) else None
    return int(size[-1]) if size else 224


def judgement(target: torch.Tensor, reconstruction: torch.Tensor, judge: Judge | None) -> dict:
    """The measures of one reconstruction against its target: ``ssim``, ``outside`` (share of
    pixels outside [0, 1]) and, with a judge, its recognisability."""
    rec = reconstruction.reshape(1, *reconstruction.shape[-3:])
    row: dict = {"ssim": ssim(target, rec), "outside": outside_share(rec)}
    if judge is not None:
        row |= judge.judge(target, rec)[0]
    return row
