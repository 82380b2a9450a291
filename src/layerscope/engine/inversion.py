"""The inversion engine: gradient descent on an input so a layer's activations match a target's.

Seed part IV ("autoencoding through a layer")::

    ŷ = O_l(a)                       target activations of the target image a
    a_0 ~ N(0.7, 1/20)               init (mean, standard deviation), from Badger's code
    a_{n+1} = N_c(a_n − ε_n · ∇ L)   L = s · Σ |ŷ − O_l(a_n)|, N_c a Gaussian blur (kernel 3, σ_n)
    ε_n, σ_n linear from start to end over the N steps

The loop is :func:`layerscope.descent.descend` (with its step rules, schedule, blur and
jitter); this module turns depth targets into its batches: the config and presets, the
targets ŷ and the reference m_r, the rows and their records, BatchNorm folding, chunks that
fit the device, and the results (:class:`layerscope.results.TargetResult`).

Many targets (layers × images × models) run as one batched descent per model: rows are sorted
by the depth of their layer and the batch is narrowed at cut points of the graph
(:func:`layerscope.layers.staged_forward`), so a target at an early layer does not pay for the
later ones. Every random draw comes from generators seeded by ``config.seed`` and shared by all
targets (same ``a_0``, same ``a′`` noise, same jitter offsets), so a batched run equals the same
targets run one by one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from ..core.faults import fault_point
from ..core.files import read_json, write_json
from ..core.progress import progress_bar
from ..core.tables import write_csv
from . import metrics
from .descent import (
    AdamStep,
    Failure,
    GaussianBlur,
    GradientStep,
    Jitter,
    NormalizedStep,
    Schedule,
    descend,
    start_image,
)
from .device import (
    check_compile,
    check_fits,
    check_precision,
    halving,
    memory_of,
    resolve_device,
    rows_that_fit,
)
from .finite import DIVERGED, row_message
from .images import check_image
from .inversion_config import PRESETS, InversionConfig
from .layers import describe_layers, execution_order, read_unchecked, resolve_layers, unwrap
from .models import Model, as_model, batchnorm_pairs, fold_batchnorm
from .objectives import L1Loss, LayerMatch, Objective, layer_outputs
from .recognition import judge_for, judgement
from .results import TargetResult
from .transforms import parse_transforms

__all__ = [
    "PRESETS",
    "AdamStep",
    "Failure",
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
    "check_compile",
    "check_precision",
    "descend",
    "descend_batch",
    "halving",
    "initial_input",
    "invert",
    "invert_jobs",
    "resolve_device",
    "rows_that_fit",
    "verdict",
]


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
        """The final row of each target, with its best recorded m_g and iteration beside."""
        return [t.summary() for t in self.targets if t.curve]

    def _repr_html_(self) -> str:
        """In a notebook: each target's reconstruction and final distances."""
        from .results import _html_table, _inline_png

        images = "".join(_inline_png(t, 112) for t in self.targets if t.reconstruction.numel())
        return f"<div>{images}</div>{_html_table(self.targets)}"

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


def _target_rows(
    batch: list[Job], models: list, config: InversionConfig, device: torch.device, dtype
) -> list[_Row]:
    """Each job's row: its target ŷ and its reference m_r (a′ = a + N(0, σ′²), one noise
    draw shared by every target), one forward each for all unique images of a model."""
    gen_ref = torch.Generator().manual_seed(config.seed + 1)
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
            tacts = read_unchecked(m, stack, layers)
            sh = stack + noise.to(device, dtype)
            racts = read_unchecked(m, sh, layers)
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
    return rows


def _layer_objective(rows: list[_Row], models: list, config: InversionConfig) -> Objective:
    """One :class:`LayerMatch` term per (model, layer) over its rows (with the target images
    as ``source`` under jitter, so the targets follow the crop)."""
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
    return Objective(tuple((1.0, t) for t in terms))


def descend_batch(
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
    rows = _target_rows(batch, models, config, device, dtype)
    objective = _layer_objective(rows, models, config)
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
                    acts += layer_outputs(m, x, [(t.layer, t.rows) for t in mine])
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
        transforms=parse_transforms(config.transforms),
        param=config.param,
    )
    for f in failures:
        rows[f.row].failed = row_message(
            f"iteration {f.iteration}", f.lr, "the step or the loss scale is too large for this "
            "layer; lower --lr or --loss-scale, or use the default (normalized) step rule",
        )  # fmt: skip
        rows[f.row].final_x = f.x
    results = []
    final_x = {a: x[k : k + 1].detach().cpu() for k, a in enumerate(alive)}
    for a in alive + [f.row for f in failures]:
        r = rows[a]
        status, message = (DIVERGED, r.failed) if r.failed else verdict(r.curve)
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
    return start_image(config.seed, restart, config.init_mean, config.init_std, tuple(size))


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
        acts = read_unchecked(model, x, layers)
        torch.autograd.grad(sum(a.float().abs().sum() for a in acts.values()), x)
        worst = max(worst, torch.cuda.max_memory_allocated(device) - before)
        del x, acts
    free, _ = torch.cuda.mem_get_info(device)
    return rows_that_fit(worst, free)


def row_bytes(model: Model, size: tuple[int, int], layers: Sequence[str] = ()) -> float | None:
    """About the memory of one descending row at ``size`` (H, W): the input, its gradient and
    the step's copies, plus the output of every module up to the deepest of ``layers`` (all
    when empty) and its gradient, counted in a probe at a small size and scaled by the area (a
    convolutional net's activations grow with it). None where the model takes one input size
    only (the probe fails)."""
    h, w = size
    scale = min(1.0, 32 / min(h, w))
    small = (max(8, round(h * scale)), max(8, round(w * scale)))
    try:
        infos = describe_layers(model, small)  # one probing forward
    except Exception:  # a fixed-size model (ViT): no estimate, halving still guards
        return None
    modules = dict(unwrap(model).named_modules())
    leaves = {i.name for i in infos if next(modules[i.name].children(), None) is None}
    names = [info.name for info in infos]
    deepest = max((names.index(n) for n in layers if n in names), default=len(infos) - 1)
    elements = sum(i.numel for i in infos[: deepest + 1] if i.name in leaves)
    elements *= (h * w) / (small[0] * small[1])
    return 4.0 * (2 * elements + 4 * 3 * h * w)


def _check_jobs_fit(jobs: Sequence[Job], device: torch.device) -> int | None:
    """Refuse, before any step, a descent that cannot fit (one row at ``--size 8000``; the
    results of ``--restarts 1000000``, all kept), in one line with the estimate; returns how
    many rows a CPU batch may hold (None: all), so a batch too big for memory runs in chunks.
    ``jobs``: their layers resolved."""
    if not jobs:
        return None
    sizes = [tuple(j.image.shape[-2:]) for j in jobs]
    kept = sum(3 * h * w * 4 * 2 for h, w in sizes)
    check_fits(kept, f"keeping {len(jobs):,} reconstructions", "fewer --restarts, images or "
               "layers per run (or a smaller --size)")  # fmt: skip
    worst = 0.0
    for model in dict.fromkeys(j.model for j in jobs):
        layers = list(dict.fromkeys(j.layer for j in jobs if j.model is model))
        for size in dict.fromkeys(sizes):
            worst = max(worst, row_bytes(model, size, layers) or 0.0)
    h, w = max(sizes)
    check_fits(worst, f"one descent at {h}×{w} (forward and backward)",
               "use a smaller --size", device)  # fmt: skip
    if device.type == "cuda" or not worst:
        return None
    fit = rows_that_fit(worst, memory_of(device), share=0.5)
    return fit if fit < len(jobs) else None


def invert_jobs(
    jobs: Sequence[Job],
    config: InversionConfig | None = None,
    device: str | torch.device = "auto",
    on_result: Callable[[TargetResult], None] | None = None,
    progress: bool = False,
    status: dict | None = None,
    run_batch: Callable[..., list[TargetResult]] | None = None,
    judge: str | Model | None = None,
) -> list[TargetResult]:
    """Run every job; batches per model (see :func:`_batches`); ``on_result`` is called as each
    target finishes, so a caller can write it out before the next batch starts. ``status``
    receives how the step ran (``compile``: off, torch.compile, or eager and why).
    ``run_batch``: what runs one chunk of targets (default :func:`descend_batch`; a wrapper
    around it can watch chunk sizes or simulate a full device). Every finished target is
    measured against its image (:func:`layerscope.recognition.judgement`: SSIM, the share of
    pixels outside [0, 1] and, with a ``judge``, its recognisability by that independent net;
    ``"auto"``: another real EfficientNet-Lite than the inverted model)."""
    run_batch = run_batch or descend_batch
    config = config or InversionConfig()
    dev = resolve_device(device)
    jobs = [
        Job(j.model, j.image, j.image_name, resolve_layers(j.model, [j.layer])[0], j.restart)
        for j in jobs
    ]
    cpu_rows = _check_jobs_fit(jobs, dev)
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
        size = config.max_batch or (_rows_that_fit(b, dev) if dev.type == "cuda" else cpu_rows)
        chunks += [b[k : k + (size or len(b))] for k in range(0, len(b), size or len(b))]
    judges = {j.model.name: judge_for(j.model.name, judge) for j in jobs}
    results: list[TargetResult] = []
    with progress_bar(total=len(chunks) * config.iterations, enabled=progress) as bar:

        def run(chunk: list[Job]) -> list[TargetResult]:
            label = f"{chunk[0].model.label} · {', '.join(dict.fromkeys(j.layer for j in chunk))}"
            bar.describe(label)
            fault_point("batch-start")
            done = run_batch(chunk, config, dev, bar.advance, status)
            images = {(j.model.name, j.model.weights, j.image_name): j.image for j in chunk}
            for r in done:
                if r.status != DIVERGED and r.reconstruction.numel():
                    image = images[(r.model, r.weights, r.image)]
                    r.judged = judgement(image.cpu(), r.reconstruction, judges[r.model])
            return done

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
    judge: str | Model | None = "auto",
    **overrides,
) -> InversionResult:
    """Reconstruct ``image`` from each of ``model``'s ``layers`` (one batched descent).

    ``model``: a :class:`Model` (``ls.load_model``) or any ``nn.Module`` taking ``[0, 1]``
    pixels (wrapped as ``ls.Model(module)``; its mode and parameters are left as they are).
    ``image``: ``1×3×H×W`` (or ``3×H×W``) float in [0, 1].
    ``judge``: the independent classifier that says whether each reconstruction is still
    recognisable (``"auto"``: a real ImageNet EfficientNet-Lite other than ``model``; a
    model name, a :class:`Model` with class names, or None); every result also records its
    SSIM to ``image`` and the share of its pixels outside [0, 1].

    ``overrides`` replace fields of ``config`` (default :class:`InversionConfig`), e.g.
    ``iterations=500, lr=Schedule(0.1, 0.1)``.
    """
    model = as_model(model)
    image = check_image(image, image_name)
    config = replace(config or InversionConfig(), **overrides)
    names = resolve_layers(model, layers)
    jobs = [Job(model, image, image_name, layer) for layer in names]
    targets = invert_jobs(jobs, config, device=device, progress=progress, judge=judge)
    order = {name: k for k, name in enumerate(names)}
    targets.sort(key=lambda t: order.get(t.layer, math.inf))
    return InversionResult(targets=targets, config=config, images={image_name: image})
