"""The one descent loop (depth study and generation) and the small objects passed to it.

``descend(x, objective, ...)``: ``x ← blur(step(x, ∇ Σ_rows objective(x), ε_i))`` with a step
rule (:class:`GradientStep` — Badger's plain step, :class:`NormalizedStep` — the default,
:class:`AdamStep`), a :class:`Schedule` of ε, a :class:`GaussianBlur` ``N_c`` after each step,
an optional :class:`Jitter` (octave jitter), robustness transforms
(:mod:`~layerscope.transforms`), padding, and an image parameterisation
(:mod:`~layerscope.param`: pixels, a scaled Fourier spectrum, decorrelated colour). Only the
input gets a gradient.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F

from ..core.errors import ConfigError
from .device import check_compile, precision_context
from .finite import rows_ok
from .layers import feature_extractor, unwrap
from .objectives import Objective, Term, evaluate
from .param import ImageParam, image_param
from .transforms import Jitter, Transform, draw_all

__all__ = [
    "STEPS",
    "AdamStep",
    "Descended",
    "Failure",
    "GaussianBlur",
    "GradientStep",
    "Jitter",
    "NormalizedStep",
    "Recorder",
    "Schedule",
    "descend",
    "how_it_ran",
    "start_image",
    "step_rule",
]


@dataclass(frozen=True)
class Schedule:
    """Linear schedule ``v_i = start·(N − i)/N + end·i/N`` (Badger's form: ``end`` is
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
    ``gaussian_blur``), applied after every step with σ from a schedule.

    ``strength``: ``fixed`` (Badger's: the whole blur after every step) or ``step`` (the
    blurred image weighted by ε_i/ε_0, the step size against the first: ``x + w·(N_c(x) −
    x)``), so the blur fades as the step shrinks. With a fixed blur and a step that shrinks
    (the default rule's ε 0.1 → 0.001) the blur outweighs the step late in the schedule and
    m_g rises again (ResNet-18 conv1 at 128 px, 150 steps: 9.04 at step 60, 12.48 at the end;
    with ``step``: 0.32 at the end); with a constant step (Badger's presets) both are the
    same."""

    kernel_size: int = 3
    sigma: Schedule = Schedule(2.4, 0.4)
    strength: str = "fixed"

    def __post_init__(self) -> None:
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise ConfigError(
                f"--blur-kernel must be an odd number ≥ 1 (3 in Badger's code), not "
                f"{self.kernel_size}"
            )
        if min(self.sigma.start, self.sigma.end) <= 0:
            raise ConfigError(
                f"--sigma must be > 0 at both ends, not {self.sigma.start:g},{self.sigma.end:g} "
                "(for no blur at all: --no-blur)"
            )
        if self.strength not in BLUR_STRENGTHS:
            raise ConfigError(
                f"--blur-strength must be one of {', '.join(BLUR_STRENGTHS)}, not {self.strength!r}"
            )

    def kernel(self, sigma: float) -> torch.Tensor:
        half = (self.kernel_size - 1) * 0.5
        x = torch.linspace(-half, half, self.kernel_size, dtype=torch.float64)
        pdf = torch.exp(-0.5 * (x / sigma) ** 2)
        return pdf / pdf.sum()

    def weight(self, lr: Schedule, i: int, n: int) -> float:
        """How much of the blur step ``i`` applies: 1, or ε_i/ε_0 under ``strength="step"``."""
        if self.strength == "fixed":
            return 1.0
        return min(1.0, lr.at(i, n) / lr.at(0, n))

    def __call__(self, x: torch.Tensor, i: int, n: int, weight: float = 1.0) -> torch.Tensor:
        k1 = self.kernel(self.sigma.at(i, n)).to(x)
        c = x.shape[1]
        p = self.kernel_size // 2
        y = F.pad(x, (p, p, p, p), mode="reflect")
        y = F.conv2d(y, k1.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
        y = F.conv2d(y, k1.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
        return y if weight == 1.0 else x + weight * (y - x)


#: how strongly the blur applies over the schedule (see :class:`GaussianBlur`)
BLUR_STRENGTHS = ("fixed", "step")


class GradientStep:
    """Badger's step: ``a ← a − ε·∇`` (no normalisation, no clipping)."""

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


#: Step rules by name (what ``--step`` takes).
STEPS = _STEPS


def start_image(seed: int, k: int, mean: float, std: float, size: tuple[int, int]) -> torch.Tensor:
    """a0 ~ N(mean, std²), ``1×3×H×W``: start 0 from ``seed`` itself (every target or row of a
    run starts from it), start k > 0 (a restart, a copy) from its own seeded draw. The one
    seeding rule of depth restarts and generation copies."""
    s = seed if k == 0 else seed * 1_000_003 + 7_919 * k
    gen = torch.Generator().manual_seed(s)
    return mean + std * torch.randn(1, 3, *size, generator=gen)


def step_rule(step: str | GradientStep) -> GradientStep:
    """A step rule from its name (``gradient``, ``normalized``, ``adam``) or as given (an
    instance such as ``AdamStep(betas=(0.5, 0.9))``, or your own :class:`GradientStep`)."""
    if isinstance(step, GradientStep):
        return step
    if step not in _STEPS:
        raise ConfigError(f"--step must be one of {', '.join(_STEPS)}, not {step!r}")
    return _STEPS[step]()


@dataclass
class Failure:
    """A row whose loss or input left the finite (:func:`~layerscope.finite.rows_ok`): its
    index in the batch as it started, the iteration and step size at which it happened, and
    its input then."""

    row: int
    iteration: int
    lr: float
    x: torch.Tensor


class Descended(NamedTuple):
    """What :func:`descend` returns: the final images of the rows still descending, their
    indices in the starting batch, and the rows that left it (:class:`Failure`)."""

    x: torch.Tensor
    alive: list[int]
    failures: list[Failure]


#: ``on_record(i, x, losses, acts, lr, sigma, alive)``: ``acts`` per objective term (``None`` at
#: the final state and under jitter, when the step saw a crop); ``alive``: the rows of ``x`` as
#: indices of the batch as it started.
Recorder = Callable[
    [int, torch.Tensor, "torch.Tensor | None", "list | None", float, float, list[int]], None
]


def _untraceable(obj: Objective) -> str | None:
    """Why ``obj``'s models cannot run as FX feature extractors (None: they can). Built here,
    eagerly, so the compiled step finds them ready."""
    for model in obj.models():
        if unwrap(model).training:
            return f"{getattr(model, 'name', 'a model')} is in train mode"
        layers = tuple(dict.fromkeys(t.layer for _, t in obj.terms if t.model is model))
        inner = tuple(n for n in layers if n != "output")
        if not inner:
            continue
        try:
            feature_extractor(model, inner)
        except Exception as exc:  # FX cannot trace this model
            return f"{getattr(model, 'name', 'a model')} does not trace ({type(exc).__name__})"
    return None


def descend(
    x: torch.Tensor,
    objective: Objective,
    *,
    iterations: int,
    lr: Schedule,
    step: str | GradientStep = "normalized",
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
    transforms: Sequence[Transform] = (),
    param: str | ImageParam = "pixel",
) -> Descended:
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

    ``transforms``: robustness transforms drawn anew each step (after the jitter crop), seen
    by the input and by the layer-match targets alike (:meth:`Objective.transformed`).
    ``param``: what the step moves (:func:`~layerscope.param.image_param`): ``x`` comes in
    and goes out as images; under any parameterisation but ``pixel`` the blur and the padding
    act on the image and the latent is made again from it (the step rule's state restarts
    after a padding).

    Returns a :class:`Descended`: the final rows, their indices in the starting batch, and
    the failures (it unpacks as ``x, alive, failures``).
    """
    n = iterations
    ip = image_param(param)
    size = (x.shape[-2], x.shape[-1])
    x = ip.latent(x)  # under pixel: x itself
    rule = step_rule(step)
    rule.reset(x)
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    moves = ([jitter] if jitter is not None else []) + list(transforms)
    rows = _Rows(x.shape[0], x.device)
    record = on_record or (lambda *a: None)
    losses_of = _StepLoss(compile, x.device, jitter, precision, status, bool(transforms))
    i = 0
    for i in range(n + 1):
        lr_i = lr.at(i, n)
        sigma = blur.sigma.at(i, n) if blur is not None else float("nan")
        recording = i % record_every == 0 or i == n
        if recording and i > 0:
            x, objective = rows.sweep(
                x, objective, rule, lambda b: lr.at(b, n), lambda z, _s=size: ip.image(z, _s)
            )
            if not rows.alive:
                break
        if i == n:  # final state: metrics only
            with torch.no_grad():
                record(i, ip.image(x, size), None, None, lr_i, sigma, rows.alive)
            break
        xg = x.detach().requires_grad_(True)
        image = ip.image(xg, size)
        view = draw_all(moves, gen, *size)
        xin, obj = (image, objective)
        if view is not None:
            xin, obj = view(image), objective.transformed(view)
        losses, acts = losses_of(objective, obj, xin)
        (grad,) = torch.autograd.grad(losses.sum(), xg)
        if recording:
            # under a transform the step saw another view, under bf16/tf32 a lower precision:
            # the recorder then measures with its own float32 forward of the whole image
            reuse = view is None and precision == "fp32" and acts is not None
            seen = [None if a is None else a.detach() for a in acts] if reuse else None
            record(i, image.detach(), losses.detach(), seen, lr_i, sigma, rows.alive)
        with torch.no_grad():
            new = rule(x, grad, lr_i)
            if blur is not None:  # on the image (under pixel, image and latent are one)
                new = ip.latent(blur(ip.image(new, size), i, n, blur.weight(lr, i, n)))
            x = rows.step(i, x, new, losses.detach())
            if pad and ip.is_pixel:
                x = F.pad(x, (pad, pad, pad, pad), value=pad_value)
                rule.pad(pad)
            elif pad:
                x = ip.latent(F.pad(ip.image(x, size), (pad, pad, pad, pad), value=pad_value))
                rule.reset(x)
            size = (size[0] + 2 * pad, size[1] + 2 * pad)
        advance(1)
    advance(max(0, n - i))
    losses_of.status.setdefault("each", []).append(losses_of.mode)
    with torch.no_grad():
        return Descended(ip.image(x, size), rows.alive, rows.failures)


def how_it_ran(status: dict) -> str:
    """How the step ran over every descent that shared ``status`` (octaves, chunks): each
    distinct way once, in order (an octave with jitter runs eagerly where another compiled)."""
    each = list(dict.fromkeys(status.get("each", [])))
    return "; ".join(each) if each else status.get("compile", "off")


class _Rows:
    r"""Which rows of the batch are still descending. The first iteration at which each row
    went non-finite is kept on the device (the step never reads a GPU value back); at record
    points one host read takes the failed rows out of the batch as :class:`Failure`\ s."""

    def __init__(self, b: int, device: torch.device) -> None:
        self.alive = list(range(b))
        self.failures: list[Failure] = []
        self.bad = torch.full((b,), -1, dtype=torch.long, device=device)

    def step(self, i: int, x: torch.Tensor, new: torch.Tensor, losses: torch.Tensor):
        """``new`` for the rows still finite; a row that went non-finite keeps its last
        finite input until the next sweep."""
        finite = rows_ok(losses, new)  # the one finiteness policy (finite.py)
        self.bad = torch.where(~finite & (self.bad < 0), i, self.bad)
        return torch.where((self.bad < 0).view(-1, *([1] * (x.dim() - 1))), new, x)

    def sweep(self, x, objective, rule: GradientStep, lr_at: Callable[[int], float], image):
        if not bool((self.bad >= 0).any()):
            return x, objective
        at = self.bad.tolist()
        keep = [k for k, b in enumerate(at) if b < 0]
        for k, b in enumerate(at):
            if b >= 0:
                self.failures.append(
                    Failure(self.alive[k], b, lr_at(b), image(x[k : k + 1]).detach().cpu())
                )
        self.alive = [self.alive[k] for k in keep]
        x, self.bad = x[keep], self.bad[keep]
        rule.select(torch.tensor(keep, dtype=torch.long, device=x.device))
        return x, (objective.select(keep) if self.alive else objective)


class _StepLoss:
    """A step's per-row losses (and the terms' activations, when eager): through
    ``torch.compile`` of the traced forward where ``compile`` asks for it and the objective
    allows it, made once per objective (rows leaving the batch make a new one); eagerly
    otherwise. ``status["compile"]`` says which and why."""

    def __init__(
        self, compile: str, device, jitter, precision: str, status: dict | None, moves: bool
    ):
        check_compile(compile)
        self.wanted = compile == "on" or (compile == "auto" and device.type == "cuda")
        self.device, self.jitter, self.precision = device, jitter, precision
        self.moves = moves
        self.status = status if status is not None else {}
        self.fn, self.made_for = None, None
        self.mode = "off"  # how this descent's step ran; also status["compile"]

    def _say(self, mode: str) -> None:
        self.mode = self.status["compile"] = mode

    def _compiled(self, obj: Objective):
        if not self.wanted:
            self._say("off")
            return None
        if self.made_for is obj:
            return self.fn
        if self.jitter is not None:
            self._say("eager: jitter moves the crop every step")
        elif self.moves:
            self._say("eager: the transforms draw a new view every step")
        elif any(type(t).watching is not Term.watching for _, t in obj.terms):
            self._say("eager: the BatchNorm prior needs hooks")
        elif (why := _untraceable(obj)) is not None:
            self._say(f"eager: {why}")
        else:
            mode = "reduce-overhead" if self.device.type == "cuda" else "default"

            def fn(z, _obj=obj):
                return evaluate(_obj, z, traced=True)[0]

            self.fn = torch.compile(fn, mode=mode, dynamic=False)
            self._say(f"torch.compile ({mode})")
        self.made_for = obj
        return self.fn

    def __call__(self, objective: Objective, at_step: Objective, xin: torch.Tensor):
        """``objective``: the batch's (what is compiled); ``at_step``: this step's (under
        jitter, its targets follow the crop); ``xin``: what the step sees."""
        fast = self._compiled(objective)  # None under jitter, and wherever it cannot compile
        losses = acts = None
        if fast is not None:
            try:
                with precision_context(self.precision, self.device):
                    losses = fast(xin)
            except Exception as exc:  # a model that does not trace or compile: go eager
                if self.status.get("compiled_once"):
                    raise
                self._say(f"eager: {type(exc).__name__}: {str(exc)[:120]}")
                self.fn = fast = None
            else:
                self.status["compiled_once"] = True
        if fast is None:
            with precision_context(self.precision, self.device):
                losses, acts = evaluate(at_step, xin)
        if losses.dtype in (torch.bfloat16, torch.float16):
            losses = losses.float()
        return losses, acts
