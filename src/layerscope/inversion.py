"""The inversion engine: gradient descent on an input so a layer's activations match a target's.

Seed part IV ("autoencoding through a layer")::

    ŷ = O_l(a)                       target activations of the target image a
    a_0 ~ N(0.7, 1/20)               init (mean, standard deviation), from the seed
    a_{n+1} = N_c(a_n − ε_n · ∇ L)   L = s · Σ |ŷ − O_l(a_n)|, N_c a Gaussian blur (kernel 3, σ_n)
    ε_n, σ_n linear from start to end over the N steps

The loop is one function; what varies is a small object passed to it: the :class:`L1Loss`,
the step rule (:class:`GradientStep` — the seeds' plain step, :class:`NormalizedStep` — the
default, :class:`AdamStep` — the fast one), the :class:`Schedule` of ε, the
:class:`GaussianBlur`, and the optional :class:`Jitter`. Only the input gets a gradient.

Many targets (layers × images × models) run as one batched descent per model: rows are sorted
by the depth of their layer and the batch is narrowed at cut points of the graph
(:func:`layerscope.layers.staged_forward`), so a target at an early layer does not pay for the
later ones. Every random draw comes from generators seeded by ``config.seed`` and shared by all
targets (same ``a_0``, same ``a′`` noise, same jitter offsets), so a batched run equals the same
targets run one by one.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from . import metrics
from .config import Config
from .errors import ConfigError, LayerscopeError
from .files import atomic_path, read_json, write_json
from .images import check_image, save_image
from .layers import activations, execution_order, resolve_layers
from .models import Model, as_model, batchnorm_pairs, fold_batchnorm
from .objectives import LayerMatch, Objective, Term, _forward, evaluate, traced_forward
from .progress import note, progress_bar
from .tables import read_csv, write_csv

__all__ = [
    "PRESETS",
    "AdamStep",
    "GaussianBlur",
    "GradientStep",
    "InversionConfig",
    "InversionResult",
    "Jitter",
    "Job",
    "L1Loss",
    "NormalizedStep",
    "Schedule",
    "TargetResult",
    "initial_input",
    "invert",
    "invert_jobs",
    "resolve_device",
    "verdict",
]


# ---------------------------------------------------------------- small objects


@dataclass(frozen=True)
class Schedule:
    """Linear schedule ``v_i = start·(N − i)/N + end·i/N`` (the seeds' form: ``end`` is
    approached but, for i < N, never quite reached)."""

    start: float
    end: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.start) and math.isfinite(self.end)):
            raise ConfigError(f"schedule {self.start:g}→{self.end:g} must be finite numbers")

    def at(self, i: int, n: int) -> float:
        return self.start * (n - i) / n + self.end * i / n


@dataclass(frozen=True)
class GaussianBlur:
    """``N_c``: a separable Gaussian blur with reflect padding (as torchvision's
    ``gaussian_blur``), applied after every step with σ from a schedule."""

    kernel_size: int = 3
    sigma: Schedule = Schedule(2.4, 0.4)

    def __post_init__(self) -> None:
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise ConfigError(
                f"--blur-kernel must be an odd number ≥ 1 (3 in the seeds), not {self.kernel_size}"
            )
        if min(self.sigma.start, self.sigma.end) <= 0:
            raise ConfigError(
                f"--sigma must be > 0 at both ends, not {self.sigma.start:g},{self.sigma.end:g} "
                "(for no blur at all: --no-blur)"
            )

    def kernel(self, sigma: float) -> torch.Tensor:
        half = (self.kernel_size - 1) * 0.5
        x = torch.linspace(-half, half, self.kernel_size, dtype=torch.float64)
        pdf = torch.exp(-0.5 * (x / sigma) ** 2)
        return pdf / pdf.sum()

    def __call__(self, x: torch.Tensor, i: int, n: int) -> torch.Tensor:
        k1 = self.kernel(self.sigma.at(i, n)).to(x)
        c = x.shape[1]
        p = self.kernel_size // 2
        x = F.pad(x, (p, p, p, p), mode="reflect")
        x = F.conv2d(x, k1.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
        return F.conv2d(x, k1.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


@dataclass(frozen=True)
class Jitter:
    """Octave jitter: each step works on a random ``size×size`` crop (offsets uniform, from
    the seeded generator); the target is the same crop of the target image."""

    size: int

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ConfigError(f"--jitter is a crop side in pixels ≥ 1, not {self.size}")

    def check(self, h: int, w: int) -> None:
        if self.size > min(h, w):
            raise ConfigError(
                f"--jitter {self.size} is larger than the {h}×{w} image: use a crop side ≤ "
                f"{min(h, w)} (or a larger --size)"
            )

    def offsets(self, generator: torch.Generator, h: int, w: int) -> tuple[int, int]:
        self.check(h, w)
        oy = int(torch.randint(0, h - self.size + 1, (1,), generator=generator))
        ox = int(torch.randint(0, w - self.size + 1, (1,), generator=generator))
        return oy, ox


@dataclass(frozen=True)
class L1Loss:
    """Per-row L1 distance to the target activations: ``scale·Σ|ŷ − O|`` (``sum``, the seeds),
    ``scale·mean|ŷ − O|`` (``mean``), or ``scale·Σ|ŷ − O| / Σ|ŷ|`` (``relative``)."""

    reduction: str = "sum"
    scale: float = 1.0

    def __post_init__(self) -> None:
        if self.reduction not in ("sum", "mean", "relative"):
            raise ConfigError(f"--loss must be sum, mean or relative, not {self.reduction!r}")
        if not (math.isfinite(self.scale) and self.scale > 0):
            raise ConfigError(f"--loss-scale must be a positive number, not {self.scale:g}")

    def __call__(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        d = (output - target).abs().flatten(1)
        if self.reduction == "sum":
            v = d.sum(1)
        elif self.reduction == "mean":
            v = d.mean(1)
        else:
            v = d.sum(1) / target.abs().flatten(1).sum(1).clamp_min(1e-12)
        return self.scale * v


class GradientStep:
    """The seeds' step: ``a ← a − ε·∇`` (no normalisation, no clipping)."""

    name = "gradient"

    def reset(self, x: torch.Tensor) -> None:
        pass

    def __call__(self, x: torch.Tensor, grad: torch.Tensor, lr: float) -> torch.Tensor:
        return x - lr * grad

    def select(self, rows: torch.Tensor) -> None:
        pass

    def pad(self, p: int) -> None:
        """The image grew by ``p`` pixels on each side (state, if any, grows with it)."""


class NormalizedStep(GradientStep):
    """``a ← a − ε·∇/rms(∇)`` per row: each step moves every pixel by ε on average (RMS),
    whatever the layer's gain or the loss's scale, so one ε means the same at every layer of
    every model."""

    name = "normalized"

    def __call__(self, x: torch.Tensor, grad: torch.Tensor, lr: float) -> torch.Tensor:
        g = grad.flatten(1)
        peak = g.abs().amax(1, keepdim=True).clamp_min(torch.finfo(g.dtype).tiny)
        unit = g / peak  # rescale first: squaring a gradient of 1e20 would overflow float32
        r = unit.pow(2).mean(1, keepdim=True).sqrt()
        return x - lr * (unit / r).view_as(grad)


class AdamStep(GradientStep):
    """Adam on the input (per-element normalised moments, bias-corrected), per row."""

    name = "adam"

    def __init__(self, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        self.betas, self.eps = betas, eps
        self.m: torch.Tensor | None = None
        self.v: torch.Tensor | None = None
        self.t = 0

    def reset(self, x: torch.Tensor) -> None:
        self.m, self.v, self.t = torch.zeros_like(x), torch.zeros_like(x), 0

    def __call__(self, x: torch.Tensor, grad: torch.Tensor, lr: float) -> torch.Tensor:
        b1, b2 = self.betas
        self.t += 1
        self.m.mul_(b1).add_(grad, alpha=1 - b1)
        self.v.mul_(b2).addcmul_(grad, grad, value=1 - b2)
        mhat = self.m / (1 - b1**self.t)
        vhat = self.v / (1 - b2**self.t)
        return x - lr * mhat / (vhat.sqrt() + self.eps)

    def select(self, rows: torch.Tensor) -> None:
        self.m, self.v = self.m[rows], self.v[rows]

    def pad(self, p: int) -> None:
        self.m, self.v = (F.pad(t, (p, p, p, p)) for t in (self.m, self.v))


_STEPS: dict[str, Callable[[], GradientStep]] = {
    "gradient": GradientStep,
    "normalized": NormalizedStep,
    "adam": AdamStep,
}


PRECISIONS = ("fp32", "tf32", "bf16")
COMPILE = ("off", "on", "auto")


def check_compile(mode: str) -> str:
    if mode not in COMPILE:
        raise ConfigError(f"--compile must be one of {', '.join(COMPILE)}, not {mode!r}")
    return mode


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise ConfigError(f"--precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    return precision


@contextmanager
def precision_context(precision: str, device: torch.device) -> Iterator[None]:
    """The forward and backward of the descent at ``precision``: ``fp32``; ``tf32`` (CUDA
    matrix products and convolutions in TensorFloat-32; the CPU has none and runs fp32);
    ``bf16`` (autocast: convolutions and matrix products in bfloat16, on the CPU too). The
    input ``a``, the step and every metric stay float32 either way."""
    check_precision(precision)
    if precision == "bf16":
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
            yield
        return
    if precision == "tf32" and device.type == "cuda":
        old = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        try:
            yield
        finally:
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old
        return
    yield


# ---------------------------------------------------------------- configuration


@dataclass(frozen=True)
class InversionConfig(Config):
    """Every constant of the descent. ``preset("paper")`` reproduces the seed's code."""

    iterations: int = 500
    lr: Schedule = Schedule(0.1, 0.001)
    step: str = "normalized"
    loss: L1Loss = L1Loss("sum", 1.0)
    blur: GaussianBlur | None = GaussianBlur()
    jitter: Jitter | None = None
    init_mean: float = 0.7
    init_std: float = 1 / 20
    reference_sigma: float = 1 / 18
    record_every: int = 10
    seed: int = 0
    batching: str = "auto"
    fold_batchnorm: bool = True
    precision: str = "fp32"
    max_batch: int | None = None
    compile: str = "off"

    def __post_init__(self) -> None:
        check_precision(self.precision)
        check_compile(self.compile)
        if self.max_batch is not None and self.max_batch < 1:
            raise ConfigError(f"--max-batch must be at least 1, not {self.max_batch}")
        if self.step not in _STEPS:
            raise ConfigError(f"--step must be one of {', '.join(_STEPS)}, not {self.step!r}")
        if self.iterations < 1:
            raise ConfigError(f"--iterations must be at least 1, not {self.iterations}")
        if self.record_every < 1:
            raise ConfigError(f"--record-every must be at least 1, not {self.record_every}")
        if self.batching not in ("auto", "staged", "per-layer"):
            raise ConfigError(
                f"--batching must be auto, staged or per-layer, not {self.batching!r}"
            )
        if self.lr.start <= 0 or self.lr.end < 0:
            raise ConfigError(
                f"--lr must be positive (START > 0, END ≥ 0), not {self.lr.start:g},{self.lr.end:g}"
            )
        if not self.reference_sigma > 0:
            raise ConfigError(f"--reference-sigma must be > 0, not {self.reference_sigma:g}")
        if not self.init_std >= 0:
            raise ConfigError(f"init_std must be ≥ 0, not {self.init_std:g}")

    @classmethod
    def preset(cls, name: str = "default", **overrides) -> InversionConfig:
        """``default`` (normalised step, converges without tuning), ``paper`` (the seed's
        code: N 500, ε 0.1, loss 0.15·ΣL1, σ 2.4→0.4, seed 999, σ′ 1/18), ``blog`` (N 220,
        ε 2.5→1.5, σ′ 1/25), ``fast`` (Adam, fewer steps to the same quality)."""
        if name not in PRESETS:
            raise ConfigError(f"unknown --preset {name!r}: choose from {', '.join(PRESETS)}")
        return replace(PRESETS[name], **overrides)


PRESETS: dict[str, InversionConfig] = {
    "default": InversionConfig(),
    "paper": InversionConfig(
        iterations=500,
        lr=Schedule(0.1, 0.1),
        step="gradient",
        loss=L1Loss("sum", 0.15),
        blur=GaussianBlur(3, Schedule(2.4, 0.4)),
        seed=999,
        reference_sigma=1 / 18,
    ),
    "blog": InversionConfig(
        iterations=220,
        lr=Schedule(2.5, 1.5),
        step="gradient",
        loss=L1Loss("sum", 1.0),
        blur=GaussianBlur(3, Schedule(2.4, 0.4)),
        seed=999,
        reference_sigma=1 / 25,
    ),
    "fast": InversionConfig(iterations=200, lr=Schedule(0.05, 0.002), step="adam"),
}


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` → CUDA when available, else CPU; ``cuda`` without a GPU is an error."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise LayerscopeError(
            f"--device {device!r} is not a device: use auto, cpu or cuda"
        ) from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise LayerscopeError(
            "--device cuda asked for, but no CUDA GPU is visible: use --device cpu"
        )
    return dev


# ---------------------------------------------------------------- results

_CURVE_KEYS = (
    "iteration",
    "embedding_distance",
    "embedding_distance_rms",
    "input_distance",
    "input_distance_rms",
    "reference_distance",
    "reference_distance_rms",
    "reference_input_distance",
    "loss",
    "lr",
    "sigma",
)


def _slug(s: str) -> str:
    """A folder-safe form of ``s``; a name that had to change gets a short hash of the raw
    name, so ``p q.png`` and ``p-q.png`` never share a folder."""
    slug = _clean(s)
    return slug if slug == s else f"{slug}-{_short_hash(s)}"


def _clean(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", s).strip("-.") or "x"


def _short_hash(s: str) -> str:
    return hashlib.sha1(s.encode()).hexdigest()[:6]


@dataclass
class TargetResult:
    """One target's outcome: its reconstruction ``a_g``, its curve of distances, its status."""

    model: str
    weights: str
    image: str
    layer: str
    reconstruction: torch.Tensor
    curve: list[dict] = field(default_factory=list)
    status: str = "ok"  # "ok" | "diverged" | "not converged" (see verdict)
    message: str = ""
    restart: int = 0  # k > 0: the same target from another a0 (non-uniqueness)

    @property
    def key(self) -> str:
        """Folder name: model, weights, image, layer (checkpoints by stem and a short hash of
        the path, so two ``model.safetensors`` in different folders never share a folder)."""
        w = self.weights
        w = w if w in ("none", "imagenet") else f"{_clean(Path(w).stem)}-{_short_hash(w)}"
        key = "__".join((_slug(self.model), w, _slug(self.image), _slug(self.layer)))
        return key if self.restart == 0 else f"{key}__r{self.restart}"

    @property
    def final(self) -> dict:
        return self.curve[-1] if self.curve else {}

    def rows(self) -> list[dict]:
        """Tidy rows: one per recorded iteration."""
        ident = {
            "model": self.model,
            "weights": self.weights,
            "image": self.image,
            "layer": self.layer,
            "restart": self.restart,
            "status": self.status,
        }
        return [ident | row for row in self.curve]

    def save(self, directory: str | Path) -> Path:
        """``<dir>/<key>/``: reconstruction.png, reconstruction.safetensors, curve.csv, result.json;
        result.json is written last, so its presence marks a finished target."""
        d = Path(directory) / self.key
        with atomic_path(d / "reconstruction.png") as tmp:
            save_image(self.reconstruction, tmp, format="PNG")
        with atomic_path(d / "reconstruction.safetensors") as tmp:
            save_file({"reconstruction": self.reconstruction.contiguous().cpu()}, tmp)
        write_csv(d / "curve.csv", self.rows())
        fields_ = ("model", "weights", "image", "layer", "status", "message", "restart")
        meta = {k: getattr(self, k) for k in fields_}
        write_json(d / "result.json", meta)
        return d

    @classmethod
    def load(cls, directory: str | Path, tensors: bool = True) -> TargetResult:
        """Read a saved target; ``tensors=False`` skips the reconstruction (tables only)."""
        d = Path(directory)
        meta = read_json(d / "result.json")
        rec = (
            load_file(str(d / "reconstruction.safetensors"))["reconstruction"]
            if tensors
            else torch.empty(0)
        )
        curve = [{k: row[k] for k in _CURVE_KEYS if k in row} for row in read_csv(d / "curve.csv")]
        return cls(reconstruction=rec, curve=curve, **meta)


@dataclass
class InversionResult:
    """All targets of one run, with the config that made them."""

    targets: list[TargetResult]
    config: InversionConfig
    images: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def metrics(self) -> list[dict]:
        """Tidy table: one row per (model, weights, image, layer, iteration)."""
        return [row for t in self.targets for row in t.rows()]

    @property
    def summary(self) -> list[dict]:
        """The final row of each target."""
        return [t.rows()[-1] for t in self.targets if t.curve]

    def __getitem__(self, layer: str) -> TargetResult:
        hits = [t for t in self.targets if t.layer == layer]
        if len(hits) != 1:
            raise KeyError(f"{len(hits)} targets at layer {layer!r}")
        return hits[0]

    def save(self, directory: str | Path) -> Path:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        write_json(d / "inversion.json", self.config.to_dict())
        for t in self.targets:
            t.save(d / "targets")
        write_csv(d / "metrics.csv", self.metrics)
        return d

    @classmethod
    def load(cls, directory: str | Path) -> InversionResult:
        d = Path(directory)
        config = InversionConfig.from_dict(read_json(d / "inversion.json"))
        targets = [
            TargetResult.load(p.parent) for p in sorted((d / "targets").glob("*/result.json"))
        ]
        return cls(targets=targets, config=config)


# ---------------------------------------------------------------- the loop


@dataclass
class Job:
    """One target: reconstruct ``image`` (1×3×H×W in [0, 1]) from ``model``'s ``layer``;
    ``restart`` k > 0 starts from its own a0 (see :func:`initial_input`)."""

    model: Model
    image: torch.Tensor
    image_name: str
    layer: str
    restart: int = 0


def _architecture(model: Model) -> tuple:
    """What weight states of one architecture share: name, input normalisation, and every
    parameter's name, shape and dtype."""
    shapes = tuple((n, tuple(p.shape), p.dtype) for n, p in model.named_parameters())
    return (model.name, model.normalize, shapes)


def _batches(jobs: list[Job], batching: str, device: torch.device) -> list[list[Job]]:
    """Group jobs into batches: ``staged``, one batch per architecture (all its weight states
    and layers); ``per-layer``, one batch per model and layer."""
    mode = batching
    if mode == "auto":
        # On a CPU a staged batch was measured slower than per-layer batches (benchmarks/
        # inversion.py); on a GPU larger batches pay.
        mode = "staged" if device.type == "cuda" else "per-layer"
    by_model: dict = {}
    for j in jobs:
        # staged: every weight state of one architecture in one batch (one descent, each
        # state's forward on its own rows); per-layer: one model per batch, as before
        key = _architecture(j.model) if mode == "staged" else id(j.model)
        by_model.setdefault(key, []).append(j)
    out = []
    for group in by_model.values():
        if mode == "staged":
            out.append(group)
        else:
            by_layer: dict[str, list[Job]] = {}
            for j in group:
                by_layer.setdefault(j.layer, []).append(j)
            out.extend(by_layer.values())
    return out


def _record(
    i: int,
    acts: dict[tuple[int, str], torch.Tensor],
    rows: list[_Row],
    x: torch.Tensor,
    losses: torch.Tensor | None,
    lr: float,
    sigma: float,
) -> None:
    """``acts``: (id of the model, layer) → the activations of its rows, in row order."""
    for (mid, layer), a in acts.items():
        sel = [r for r in rows if id(r.job.model) == mid and r.job.layer == layer]
        idx = [rows.index(r) for r in sel]
        tgt = torch.cat([r.target for r in sel])
        dg = metrics.l2(a, tgt)
        di = metrics.l2(x[idx], torch.cat([r.job.image for r in sel]))
        for k, r in enumerate(sel):
            r.curve.append(
                {
                    "iteration": i,
                    "embedding_distance": float(dg[k]),
                    "embedding_distance_rms": float(metrics.rms(dg[k : k + 1], a)[0]),
                    "input_distance": float(di[k]),
                    "input_distance_rms": float(metrics.rms(di[k : k + 1], x)[0]),
                    "reference_distance": r.reference,
                    "reference_distance_rms": r.reference_rms,
                    "reference_input_distance": r.reference_input,
                    "loss": float(losses[idx[k]]) if losses is not None else float("nan"),
                    "lr": lr,
                    "sigma": sigma,
                }
            )


@dataclass(eq=False)
class _Row:
    job: Job
    target: torch.Tensor  # 1×… activations of the target image at the job's layer
    reference: float
    reference_rms: float
    reference_input: float
    curve: list[dict] = field(default_factory=list)
    failed: str = ""
    final_x: torch.Tensor | None = None


@dataclass
class Failure:
    """A row whose loss or input became non-finite: its index in the batch as it started, the
    iteration and step size at which it happened, and its input then."""

    row: int
    iteration: int
    lr: float
    x: torch.Tensor


#: ``on_record(i, x, losses, acts, lr, sigma, alive)``: ``acts`` per objective term (``None`` at
#: the final state and under jitter, when the step saw a crop); ``alive``: the rows of ``x`` as
#: indices of the batch as it started.
Recorder = Callable[
    [int, torch.Tensor, "torch.Tensor | None", "list | None", float, float, list[int]], None
]


def _untraceable(obj: Objective) -> str | None:
    """Why ``obj``'s models cannot run as FX feature extractors (None: they can). Built here,
    eagerly, so the compiled step finds them ready."""
    from .objectives import _extractor, _net

    for model in obj.models():
        if _net(model).training:
            return f"{getattr(model, 'name', 'a model')} is in train mode"
        layers = tuple(dict.fromkeys(t.layer for _, t in obj.terms if t.model is model))
        inner = tuple(n for n in layers if n != "output")
        if not inner:
            continue
        try:
            _extractor(model, inner)
        except Exception as exc:  # FX cannot trace this model
            return f"{getattr(model, 'name', 'a model')} does not trace ({type(exc).__name__})"
    return None


def descend(
    x: torch.Tensor,
    objective: Objective,
    *,
    iterations: int,
    lr: Schedule,
    step: str = "normalized",
    blur: GaussianBlur | None = None,
    jitter: Jitter | None = None,
    generator: torch.Generator | None = None,
    record_every: int = 10,
    pad: int = 0,
    pad_value: float = 0.7,
    on_record: Recorder | None = None,
    advance: Callable[[int], None] = lambda n: None,
    precision: str = "fp32",
    compile: str = "off",
    status: dict | None = None,
) -> tuple[torch.Tensor, list[int], list[Failure]]:
    """The one descent loop (depth study and generation): ``iterations`` steps of
    ``x ← blur(step(x, ∇ Σ_rows objective(x), ε_i))`` on every row of ``x`` at once.

    Under ``jitter`` each step sees a random crop (offsets from ``generator``) and the
    objective's layer-match targets follow it (:meth:`Objective.at_crop`); ``pad`` grows the
    image by ``pad`` pixels of ``pad_value`` on each side after every step (the reference's
    ``Pad(1, fill=0.7)``). ``on_record`` is called every ``record_every`` steps and at the
    final state. A row whose loss or input becomes non-finite keeps its last finite input,
    and at the next record point it is taken out of the batch (the others go on) and
    returned as a :class:`Failure` naming the exact iteration: the step itself never reads a
    value back from the device (no host synchronisation but at record points).

    ``compile``: ``on`` runs the forward and loss through ``torch.compile`` (on CUDA in
    ``reduce-overhead`` mode: captured in a CUDA graph, its backward too) with every model as
    an FX feature extractor; ``auto`` does so on CUDA only. Where it cannot (jitter's moving
    crop, the BatchNorm prior's hooks, a model that does not trace or compile) the step runs
    eagerly; ``status["compile"]`` says which happened and why.

    Returns the final rows, their indices in the starting batch, and the failures.
    """
    n = iterations
    rule = _STEPS[step]()
    rule.reset(x)
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    alive = list(range(x.shape[0]))
    failures: list[Failure] = []
    record = on_record or (lambda *a: None)
    # The first iteration at which each row went non-finite, kept on the device: the step
    # never reads a GPU value back; rows are checked (one host read) at record points only.
    bad = torch.full((x.shape[0],), -1, dtype=torch.long, device=x.device)

    def sweep() -> None:
        nonlocal x, objective, alive, bad
        if not bool((bad >= 0).any()):
            return
        at = bad.tolist()
        keep = [k for k, b in enumerate(at) if b < 0]
        for k, b in enumerate(at):
            if b >= 0:
                failures.append(Failure(alive[k], b, lr.at(b, n), x[k : k + 1].detach().cpu()))
        alive = [alive[k] for k in keep]
        x, bad = x[keep], bad[keep]
        rule.select(torch.tensor(keep, dtype=torch.long, device=x.device))
        if alive:
            objective = objective.select(keep)

    status = status if status is not None else {}
    check_compile(compile)
    wanted = compile == "on" or (compile == "auto" and x.device.type == "cuda")
    compiled: dict = {"fn": None, "for": None}

    def compiled_loss(obj: Objective):
        """The compiled ``x ↦ per-row losses`` of ``obj`` (None: eager), made once per
        objective (rows leaving the batch make a new one)."""
        if not wanted:
            status.setdefault("compile", "off")
            return None
        if compiled["for"] is obj:
            return compiled["fn"]
        if jitter is not None:
            status["compile"] = "eager: jitter moves the crop every step"
        elif any(type(t).watching is not Term.watching for _, t in obj.terms):
            status["compile"] = "eager: the BatchNorm prior needs hooks"
        elif (why := _untraceable(obj)) is not None:
            status["compile"] = f"eager: {why}"
        else:
            mode = "reduce-overhead" if x.device.type == "cuda" else "default"

            def fn(z, _obj=obj):
                return evaluate(_obj, z)[0]

            compiled["fn"] = torch.compile(fn, mode=mode, dynamic=False)
            status["compile"] = f"torch.compile ({mode})"
        compiled["for"] = obj
        return compiled["fn"]

    i = 0
    for i in range(n + 1):
        lr_i = lr.at(i, n)
        sigma = blur.sigma.at(i, n) if blur is not None else float("nan")
        recording = i % record_every == 0 or i == n
        if recording and i > 0:
            sweep()
            if not alive:
                break
        if i == n:  # final state: metrics only
            record(i, x, None, None, lr_i, sigma, alive)
            break
        xg = x.detach().requires_grad_(True)
        if jitter is not None:
            oy, ox = jitter.offsets(gen, *x.shape[-2:])
            s = jitter.size
            xin = xg[:, :, oy : oy + s, ox : ox + s]
            obj = objective.at_crop(oy, ox, s)
        else:
            xin, obj = xg, objective
        fast = compiled_loss(objective)  # None under jitter, and wherever it cannot compile
        if fast is not None:
            try:
                with precision_context(precision, x.device), traced_forward():
                    losses, acts = fast(xin), None
            except Exception as exc:  # a model that does not trace or compile: go eager
                if not status.get("compiled_once"):
                    status["compile"] = f"eager: {type(exc).__name__}: {str(exc)[:120]}"
                    compiled["fn"], fast = None, None
                else:
                    raise
            else:
                status["compiled_once"] = True
        if fast is None:
            with precision_context(precision, x.device):
                losses, acts = evaluate(obj, xin)
        losses = losses.float() if losses.dtype in (torch.bfloat16, torch.float16) else losses
        (grad,) = torch.autograd.grad(losses.sum(), xg)
        if recording:
            # under jitter the step saw a crop, under bf16/tf32 a lower precision: the
            # recorder then measures with its own float32 forward of the whole image
            reuse = jitter is None and precision == "fp32" and acts is not None
            seen = [None if a is None else a.detach() for a in acts] if reuse else None
            record(i, x, losses.detach(), seen, lr_i, sigma, alive)
        with torch.no_grad():
            new = rule(x, grad, lr_i)
            if blur is not None:
                new = blur(new, i, n)
            finite = torch.isfinite(losses.detach()) & torch.isfinite(new.flatten(1)).all(1)
            bad = torch.where(~finite & (bad < 0), i, bad)
            # a row that went non-finite keeps its last finite input until the next sweep
            x = torch.where((bad < 0).view(-1, *([1] * (x.dim() - 1))), new, x)
            if pad:
                x = F.pad(x, (pad, pad, pad, pad), value=pad_value)
                rule.pad(pad)
        advance(1)
    advance(max(0, n - i))
    return x, alive, failures


def _descend(
    batch: list[Job],
    config: InversionConfig,
    device: torch.device,
    advance: Callable[[int], None],
    status: dict | None = None,
) -> list[TargetResult]:
    """One batch of depth targets: a :class:`LayerMatch` term per (model, layer) through
    :func:`descend`, with the depth study's m_g/m_i/m_r recorded along the way. A batch may
    hold several weight states of one architecture (staged batching): each runs its own
    forward of its own rows, in the same descent."""
    size = batch[0].image.shape[-2:]
    if any(j.image.shape[-2:] != size for j in batch):
        raise ValueError("all images of one model must have the same size")
    models = list(dict.fromkeys(j.model for j in batch))
    param = next(models[0].parameters(), None)
    dtype = param.dtype if param is not None else torch.float32
    rank = {}
    for m in models:
        if len({j.layer for j in batch if j.model is m}) > 1:
            order = execution_order(m, torch.zeros(1, 3, *size, device=device, dtype=dtype))
        else:
            order = {}
        rank[m] = order
    batch = sorted(batch, key=lambda j: (models.index(j.model), rank[j.model].get(j.layer, 0)))
    seed = config.seed

    # Targets ŷ and the reference m_r, one forward each for all unique images (per model).
    gen_ref = torch.Generator().manual_seed(seed + 1)
    first = batch[0].image.to(dtype)  # the draws depend on the dtype: the model's, as before
    noise = metrics.shifted(torch.zeros_like(first[:1]).cpu(), config.reference_sigma, gen_ref)
    rows = []
    for m in models:
        mine = [j for j in batch if j.model is m]
        layers = list(dict.fromkeys(j.layer for j in mine))
        names = list(dict.fromkeys(j.image_name for j in mine))
        imgs = {j.image_name: j.image.to(device, dtype) for j in mine}
        stack = torch.cat([imgs[k] for k in names])
        with torch.no_grad():
            tacts = activations(m, stack, layers)
            sh = stack + noise.to(device, dtype)
            racts = activations(m, sh, layers)
        for j in mine:
            k = names.index(j.image_name)
            t, r = tacts[j.layer][k : k + 1], racts[j.layer][k : k + 1]
            dr = metrics.l2(t, r)
            rows.append(
                _Row(
                    job=Job(j.model, imgs[j.image_name], j.image_name, j.layer, j.restart),
                    target=t,
                    reference=float(dr[0]),
                    reference_rms=float(metrics.rms(dr, t)[0]),
                    reference_input=float(metrics.l2(sh[k : k + 1], stack[k : k + 1])[0]),
                )
            )

    terms = []
    for m in models:
        for layer in dict.fromkeys(r.job.layer for r in rows if r.job.model is m):
            idx = [k for k, r in enumerate(rows) if r.job.model is m and r.job.layer == layer]
            terms.append(
                LayerMatch(
                    m,
                    layer,
                    tuple(idx),
                    target=torch.cat([rows[k].target for k in idx]),
                    loss_fn=config.loss,
                    source=torch.cat([rows[k].job.image for k in idx]) if config.jitter else None,
                )
            )
    objective = Objective(tuple((1.0, t) for t in terms))
    inits = {k: initial_input(config, size, k) for k in {r.job.restart for r in rows}}
    x0 = torch.cat([inits[r.job.restart] for r in rows]).to(device, dtype)

    def on_record(i, x, losses, acts, lr, sigma, alive):
        current = [rows[a] for a in alive]
        obj = objective if len(alive) == len(rows) else objective.select(alive)
        if acts is None:
            acts = []
            with torch.no_grad():
                for m in obj.models():
                    mine = [t for _, t in obj.terms if t.model is m]
                    acts += _forward(m, x, [(t.layer, t.rows) for t in mine])
        keys = [(id(t.model), t.layer) for _, t in obj.terms]
        _record(i, dict(zip(keys, acts, strict=True)), current, x, losses, lr, sigma)

    x, alive, failures = descend(
        x0,
        objective,
        iterations=config.iterations,
        lr=config.lr,
        step=config.step,
        blur=config.blur,
        jitter=config.jitter,
        generator=torch.Generator().manual_seed(seed + 2),
        record_every=config.record_every,
        on_record=on_record,
        advance=advance,
        precision=config.precision,
        compile=config.compile,
        status=status,
    )
    for f in failures:
        rows[f.row].failed = (
            f"loss became non-finite at iteration {f.iteration} (lr {f.lr:g}): the step or the "
            "loss scale is too large for this layer; lower --lr or --loss-scale, or use "
            "the default (normalized) step rule"
        )
        rows[f.row].final_x = f.x
    results = []
    final_x = {a: x[k : k + 1].detach().cpu() for k, a in enumerate(alive)}
    for a in alive + [f.row for f in failures]:
        r = rows[a]
        status, message = ("diverged", r.failed) if r.failed else verdict(r.curve)
        results.append(
            TargetResult(
                model=r.job.model.name,
                weights=r.job.model.weights,
                image=r.job.image_name,
                layer=r.job.layer,
                reconstruction=final_x.get(a, r.final_x),
                curve=r.curve,
                status=status,
                message=message,
                restart=r.job.restart,
            )
        )
    return results


def initial_input(config: InversionConfig, size, restart: int = 0) -> torch.Tensor:
    """a0 ~ N(init_mean, init_std²), ``1×3×H×W``: from ``config.seed`` for restart 0 (every
    target of a run starts from the same a0), from its own generator for restart k > 0."""
    seed = config.seed if restart == 0 else config.seed * 1_000_003 + 7_919 * restart
    gen = torch.Generator().manual_seed(seed)
    return config.init_mean + config.init_std * torch.randn(1, 3, *size, generator=gen)


#: A finished descent whose m_g is above this multiple of m_r is reported ``not converged``.
NOT_CONVERGED_FACTOR = 10.0


def verdict(curve: list[dict]) -> tuple[str, str]:
    """``(status, message)`` of a finished, finite descent from its recorded curve:
    ``diverged`` when the final m_g is above the starting one (the steps moved away from the
    target: a step too large, or a negative lr); ``not converged`` when the final m_g is more
    than :data:`NOT_CONVERGED_FACTOR` × m_r; else ``ok``."""
    first, last = curve[0]["embedding_distance"], curve[-1]["embedding_distance"]
    ref, steps = curve[-1]["reference_distance"], curve[-1]["iteration"]
    if last > first:
        return "diverged", (
            f"m_g rose from {first:.4g} to {last:.4g} over {steps} steps: the steps move away "
            "from the target (step size too large, or negative); lower --lr, or use the "
            "default (normalized) step rule"
        )
    if last > NOT_CONVERGED_FACTOR * ref:
        return "not converged", (
            f"m_g {last:.4g} is {last / ref:.0f}× m_r ({ref:.4g}) after {steps} steps (the bar "
            f"is {NOT_CONVERGED_FACTOR:g}×): more --iterations, a larger --lr, or the default "
            "step rule"
        )
    return "ok", ""


def _folded(batches: list[list[Job]]) -> list[list[Job]]:
    """Each batch on a copy of its model with BatchNorm folded into the convolutions, except
    the convolutions whose own output is a target *of that batch*: what a target computes
    depends only on its batch, never on which other targets are pending (a resumed run equals
    an uninterrupted one). Batches that keep the same convolutions share one copy."""
    pairs: dict[int, list[tuple[str, str]]] = {}
    copies: dict[tuple, Model] = {}
    out = []
    for batch in batches:
        folded = []
        for j in batch:
            model = j.model
            if id(model) not in pairs:
                pairs[id(model)] = batchnorm_pairs(model)
            layers = {k.layer for k in batch if k.model is model}
            fold = [p for p in pairs[id(model)] if p[0] not in layers]
            key = (id(model), tuple(fold))
            if key not in copies:
                copies[key] = fold_batchnorm(model, pairs=fold)
            folded.append(Job(copies[key], j.image, j.image_name, j.layer, j.restart))
        out.append(folded)
    return out


def rows_that_fit(row_bytes: int, free_bytes: int, share: float = 0.6) -> int:
    """How many rows of ``row_bytes`` each fit in ``share`` of ``free_bytes`` (at least one)."""
    return max(1, int(share * free_bytes) // max(int(row_bytes), 1))


def _rows_that_fit(batch: list[Job], device: torch.device) -> int:
    """The chunk size for ``batch`` on a GPU, from free memory: one probing row per model
    (forward to its deepest layer of the batch and back to the input) measures a row's peak
    memory; an estimate, so :func:`halving` still catches an out-of-memory error."""
    size = batch[0].image.shape[-2:]
    worst = 0
    for model in dict.fromkeys(j.model for j in batch):
        layers = list(dict.fromkeys(j.layer for j in batch if j.model is model))
        param = next(model.parameters(), None)
        dtype = param.dtype if param is not None else torch.float32
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        x = torch.zeros(1, 3, *size, device=device, dtype=dtype, requires_grad=True)
        acts = activations(model, x, layers)
        torch.autograd.grad(sum(a.float().abs().sum() for a in acts.values()), x)
        worst = max(worst, torch.cuda.max_memory_allocated(device) - before)
        del x, acts
    free, _ = torch.cuda.mem_get_info(device)
    return rows_that_fit(worst, free)


def halving(
    chunks: list[list],
    run: Callable[[list], object],
    what: tuple[str, str],
    device: torch.device,
    on_split: Callable[[], None] = lambda: None,
) -> Iterator[tuple[list, object]]:
    """``(chunk, run(chunk))`` for each chunk in turn; a chunk that runs out of memory is
    halved and both halves go on (what finished before is kept); a chunk of one that runs out
    of memory is an error naming the fix. ``what``: the rows' name, singular and plural."""
    one, many = what
    pending = list(chunks)
    while pending:
        chunk = pending.pop(0)
        try:
            out = run(chunk)
        except torch.OutOfMemoryError as exc:
            if len(chunk) == 1:
                raise LayerscopeError(
                    f"out of memory with a single {one}: use a smaller --size, or --device cpu"
                ) from exc
            if device.type == "cuda":
                torch.cuda.empty_cache()
            half = (len(chunk) + 1) // 2
            note(f"out of memory with {len(chunk)} {many} in one batch: halving to {half}")
            pending[:0] = [chunk[:half], chunk[half:]]
            on_split()
            continue
        yield chunk, out


def invert_jobs(
    jobs: Sequence[Job],
    config: InversionConfig | None = None,
    device: str | torch.device = "auto",
    on_result: Callable[[TargetResult], None] | None = None,
    progress: bool = False,
    status: dict | None = None,
) -> list[TargetResult]:
    """Run every job; batches per model (see :func:`_batches`); ``on_result`` is called as each
    target finishes, so a caller can write it out before the next batch starts. ``status``
    receives how the step ran (``compile``: off, torch.compile, or eager and why)."""
    config = config or InversionConfig()
    dev = resolve_device(device)
    jobs = [
        Job(j.model, j.image, j.image_name, resolve_layers(j.model, [j.layer])[0], j.restart)
        for j in jobs
    ]
    for j in jobs:
        j.model.to(dev)
    batches = _batches(jobs, config.batching, dev)
    if config.fold_batchnorm:
        batches = _folded(batches)
    if dev.type == "cuda":  # convolutions run fastest in channels_last on a GPU
        for batch in batches:
            for m in dict.fromkeys(j.model for j in batch):
                m.to(memory_format=torch.channels_last)
    chunks = []
    for b in batches:
        size = config.max_batch or (_rows_that_fit(b, dev) if dev.type == "cuda" else None)
        chunks += [b[k : k + (size or len(b))] for k in range(0, len(b), size or len(b))]
    results: list[TargetResult] = []
    with progress_bar(total=len(chunks) * config.iterations, enabled=progress) as bar:

        def run(chunk: list[Job]) -> list[TargetResult]:
            label = f"{chunk[0].model.label} · {', '.join(dict.fromkeys(j.layer for j in chunk))}"
            bar.describe(label)
            return _descend(chunk, config, dev, bar.advance, status)

        grow = lambda: bar.grow(2 * config.iterations)  # noqa: E731
        for _, done in halving(chunks, run, ("target", "targets"), dev, grow):
            for r in done:
                results.append(r)
                if on_result is not None:
                    on_result(r)
    return results


def invert(
    model: Model | torch.nn.Module,
    image: torch.Tensor,
    layers: str | Sequence[str] = "all",
    *,
    image_name: str = "image",
    config: InversionConfig | None = None,
    device: str | torch.device = "auto",
    progress: bool = False,
    **overrides,
) -> InversionResult:
    """Reconstruct ``image`` from each of ``model``'s ``layers`` (one batched descent).

    ``model``: a :class:`Model` (``ls.load_model``) or any ``nn.Module`` taking ``[0, 1]``
    pixels (wrapped as ``ls.Model(module)``; its mode and parameters are left as they are).
    ``image``: ``1×3×H×W`` (or ``3×H×W``) float in [0, 1].

    ``overrides`` replace fields of ``config`` (default :class:`InversionConfig`), e.g.
    ``iterations=500, lr=Schedule(0.1, 0.1)``.
    """
    model = as_model(model)
    image = check_image(image, image_name)
    config = replace(config or InversionConfig(), **overrides)
    names = resolve_layers(model, layers)
    jobs = [Job(model, image, image_name, layer) for layer in names]
    targets = invert_jobs(jobs, config, device=device, progress=progress)
    order = {name: k for k, name in enumerate(names)}
    targets.sort(key=lambda t: order.get(t.layer, math.inf))
    return InversionResult(targets=targets, config=config, images={image_name: image})
