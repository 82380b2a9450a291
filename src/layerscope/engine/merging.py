"""Model merging (seed III-3): train a student so its outputs match a teacher's on given images.

Badger's procedure: ``J = Σ_i (O_i(a, θ₁) − O_i(a, θ₂))²`` (RSS) on the teacher's generated
class image ``a``, plain SGD on the student's parameters (lr 1e-5, 1000 steps), the student in
eval mode (BatchNorm reads its running statistics; nothing but the weights changes), repeated
over classes. Here every image is in one batch per step (all classes at once) and the RSS is
recorded on those images and on held-out ones; the loss is the RSS averaged over the images
(Badger's loss for one image).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from ..core.errors import ConfigError
from .finite import check_finite
from .images import check_images
from .models import Model, as_model, evaluating

__all__ = ["MergeResult", "merge", "rss"]


def rss(student: Model, teacher: Model, images: torch.Tensor, batch: int = 64) -> torch.Tensor:
    """``Σ_i (O_i(a, θ₁) − O_i(a, θ₂))²`` per image (float64), no gradient."""
    out = []
    with torch.no_grad():
        for k in range(0, images.shape[0], batch):
            x = images[k : k + batch]
            d = student(x).flatten(1).double() - teacher(x).flatten(1).double()
            out.append(d.pow(2).sum(1))
    return torch.cat(out)


@dataclass
class MergeResult:
    """The merged student (a copy; the one given is untouched) and its RSS curve: one row per
    recorded step with the mean RSS per image on the training images and held-out ones."""

    student: Model
    curve: list[dict] = field(default_factory=list)

    @property
    def drop(self) -> float:
        """RSS before / after on the training images (Badger reports ≈ 15)."""
        first, last = self.curve[0]["rss_train"], self.curve[-1]["rss_train"]
        return first / last if last > 0 else math.inf


def _checked(images, name: str, generated: bool) -> torch.Tensor:
    """The public guard (:func:`~layerscope.images.check_images`), or for generated images
    their shape and finiteness only."""
    if not generated:
        return check_images(images, name)
    if not (isinstance(images, torch.Tensor) and images.dim() == 4):
        raise ConfigError(f"{name} must be an N×C×H×W tensor")
    if not torch.isfinite(images).all():
        raise ConfigError(f"{name} contain NaN or infinite values")
    return images


def merge(
    student: Model,
    teacher: Model,
    images: torch.Tensor,
    *,
    steps: int = 1000,
    lr: float = 1e-5,
    heldout: torch.Tensor | None = None,
    record_every: int = 10,
    advance: Callable[[int], None] = lambda n: None,
    generated: bool = False,
    backtrack: bool = False,
) -> MergeResult:
    """Train a copy of ``student`` by SGD on the mean over ``images`` of
    ``RSS(student, teacher)`` (for one image the source's loss; the mean keeps one lr meaning
    the same for any number of classes) for ``steps`` full-batch steps, in eval mode, the
    teacher frozen. ``generated``: ``images`` (and ``heldout``) come from a descent (never
    clipped, so they may leave [0, 1] far: a trained GoogLeNet's spanned [−4.2, 23.9] at
    64 px): only their shape and finiteness are checked, not the pixel range.

    ``backtrack``: plain SGD at a fixed lr is stable only below 2 / (the RSS's curvature),
    which depends on the nets and their images (nets trained from the same seeds on two CPUs
    differ in their last bits, and the same lr 1e-5 diverged on one of them). A step after
    which the RSS is non-finite or more than twice what it was is undone and taken again at
    half the lr, so the merge holds or fails on its claim, not on numerics; where plain SGD
    is stable nothing changes (the same bits). Each recorded row says the lr in use."""
    if steps < 1:
        raise ConfigError(f"--steps must be at least 1, not {steps}")
    if not (math.isfinite(lr) and lr > 0):
        raise ConfigError(f"--lr must be a positive number, not {lr:g}")
    student, teacher = as_model(student), as_model(teacher)
    images = _checked(images, "images", generated)
    if heldout is not None:
        heldout = _checked(heldout, "heldout", generated)
    param = next(student.parameters())
    images = images.to(param.device, param.dtype)
    if heldout is not None:
        heldout = heldout.to(param.device, param.dtype)
    with torch.no_grad():
        target = teacher(images).flatten(1).detach()
        outputs = student(images[:1]).flatten(1).shape[1]
    if outputs != target.shape[1]:
        raise ConfigError(
            f"the student has {outputs} outputs and the teacher {target.shape[1]}: merging "
            "needs the same output space"
        )
    merged = copy.deepcopy(student)
    params = [p for p in merged.net.parameters() if p.is_floating_point()]
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.SGD(params, lr=lr)
    curve: list[dict] = []

    def record(step: int) -> None:
        row = {"step": step, "rss_train": float(rss(merged, teacher, images).mean())}
        if heldout is not None:
            row["rss_heldout"] = float(rss(merged, teacher, heldout).mean())
        row["lr"] = lr  # the lr in use (backtracking may have halved it)
        # the parameters are checked after every step below; here the RSS it records
        check_finite(f"step {step}", f"lower --lr (now {lr:g}) or pass --backtrack; nothing "
                     "was saved", rss=list(row.values()))  # fmt: skip
        curve.append(row)

    def rss_loss(out: torch.Tensor, target: torch.Tensor):
        # the RSS per image, averaged over images: for one image exactly Badger's loss
        return (out.flatten(1) - target).pow(2).sum(1).mean(), None

    from .training import fit  # the one loop that trains parameters

    device = images.device
    saved = [p.detach().clone() for p in params] if backtrack else []
    try:
        with evaluating(merged.net):
            record(0)
            before = curve[0]["rss_train"]  # the RSS at the parameters of the last good step
            step = 1
            while step <= steps:
                if backtrack:
                    for keep, p in zip(saved, params, strict=True):
                        keep.copy_(p.detach())
                _, loss, _ = fit(merged, opt, [(images, target)], device, loss_fn=rss_loss)
                after = _rss_to(merged, images, target) if backtrack else None
                if backtrack and not (after is not None and after <= 2 * before):
                    lr = _halve(opt, saved, params, lr, step)
                    continue  # the same step again, at half the lr
                check_finite(f"step {step}", f"lower --lr (now {lr:g}) or pass --backtrack; "
                             "nothing was saved", rss=loss, net=merged.net)  # fmt: skip
                before = after if after is not None else before
                if step % record_every == 0 or step == steps:
                    record(step)
                advance(1)
                step += 1
    finally:
        for p in params:
            p.requires_grad_(False)
    return MergeResult(merged, curve)


def _rss_to(student: Model, images: torch.Tensor, target: torch.Tensor) -> float:
    """The mean RSS of ``student``'s outputs to the teacher's ``target`` (no gradient)."""
    with torch.no_grad():
        d = student(images).flatten(1).double() - target.double()
    return float(d.pow(2).sum(1).mean())


#: how often one merge may halve its lr before it gives up (2⁻⁴⁰ ≈ 1e-12 of the lr given)
MAX_HALVINGS = 40


def _halve(opt, saved: list, params: list, lr: float, step: int) -> float:
    """Undo the last step (the parameters as they were before it) and halve the lr."""
    from .finite import Diverged

    with torch.no_grad():
        for keep, p in zip(saved, params, strict=True):
            p.copy_(keep)
    lr /= 2
    if lr < opt.defaults["lr"] * 2.0**-MAX_HALVINGS:
        raise Diverged(
            f"diverged at step {step}: the RSS grows at every lr down to {lr:.3g}; the "
            "student's and teacher's outputs cannot be matched by SGD from here; nothing was "
            "saved"
        )
    for group in opt.param_groups:
        group["lr"] = lr
    return lr
