"""Objectives of the descent: what each row of the batch is pushed towards.

An :class:`Objective` is a weighted sum of terms; each term gives one loss per row of the batch
(or of the rows it names) and the descent (:func:`layerscope.descent.descend`) minimises the
sum over rows. Terms combine the way their gradients do::

    o = 0.5 * ClassLogit(resnet, classes, 200) + 0.5 * ClassLogit(googlenet, classes, 400)
    d = ClassLogit(resnet, classes) - ClassLogit(googlenet, classes)     # difference gradient

Terms (in the spirit of lucent's objectives, but batched: each row may have its own layer,
model, class or target):

- :class:`LayerMatch` — ``loss(O_l(x), ŷ)``, the depth study's objective (seed part IV); with
  ``source`` images its target follows the jitter crop.
- :class:`ClassLogit` — ``|C − logit_c(x)|`` (seed parts I/III; ``absolute=False`` gives the
  reference code's ``C − logit_c``, whose constant C does not change the gradient).
- :func:`OutputMatch` — ``s·Σ|ŷ − O(x)|`` over a whole output vector (III-4, III-5).
- :class:`InputL1` (``Σ|a|``), :class:`TotalVariation`, :class:`BatchNormPrior` (Yin et al.
  2020) — priors on the input.

Each model is run once per step for all the terms that name it: rows that each need one layer,
in forward order, share a staged forward (:func:`layerscope.layers.staged_forward`); otherwise
the rows that need the model run one truncated forward to its deepest named layer. The hooks a
term needs (the BatchNorm prior's) exist only during that forward and are removed in
``finally``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace

import torch
from torch import nn

from ..core.errors import ConfigError
from .layers import (
    cut_points,
    execution_order,
    hooked,
    read_unchecked,
    staged_forward,
    traced_forward,
    unwrap,
)

__all__ = [
    "BatchNormPrior",
    "ClassLogit",
    "InputL1",
    "L1Loss",
    "LayerMatch",
    "Objective",
    "OutputMatch",
    "Term",
    "TotalVariation",
    "evaluate",
]


def _pick(t: torch.Tensor | None, idx: list[int]) -> torch.Tensor | None:
    return None if t is None else t[idx]


@dataclass(frozen=True, eq=False)
class Term:
    """One loss per row of ``rows`` (``None``: every row of the batch), from ``model``'s
    ``layer`` (``model=None``: from the input itself)."""

    model: nn.Module | None = None
    layer: str | None = None
    rows: tuple[int, ...] | None = None

    def loss(self, act: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor:
        """``act``: the layer's activations of this term's rows; ``x``: their input."""
        raise NotImplementedError

    def _subset(self, idx: list[int]) -> Term:
        """The same term for rows ``idx`` (positions in its own row list)."""
        return self

    def select(self, keep: Sequence[int]) -> Term | None:
        """This term after the batch kept rows ``keep`` (old indices, in order); ``None``
        when none of its rows is left."""
        pos = {old: new for new, old in enumerate(keep)}
        if self.rows is None:
            return self._subset(list(keep)) if keep else None
        mine = [k for k, r in enumerate(self.rows) if r in pos]
        if not mine:
            return None
        sub = self._subset(mine)
        return replace(sub, rows=tuple(pos[self.rows[k]] for k in mine))

    @contextmanager
    def watching(self) -> Iterator[None]:
        """Hooks this term needs during its model's forward (none by default)."""
        yield

    # algebra: a term is an objective of one term
    def __add__(self, other) -> Objective:
        return Objective.of(self) + other

    def __radd__(self, other) -> Objective:
        return Objective.of(self).__radd__(other)

    def __sub__(self, other) -> Objective:
        return Objective.of(self) - other

    def __neg__(self) -> Objective:
        return -Objective.of(self)

    def __mul__(self, w: float) -> Objective:
        return Objective.of(self) * w

    __rmul__ = __mul__


@dataclass(frozen=True)
class L1Loss:
    """Per-row L1 distance to the target activations: ``scale·Σ|ŷ − O|`` (``sum``, Badger's),
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


@dataclass(frozen=True, eq=False)
class LayerMatch(Term):
    """``loss(O_l(x), ŷ)`` per row (the depth study's term; ``loss`` an
    :class:`L1Loss`). ``source``: the images ``ŷ`` came from, one per
    row; with them the target follows a jitter crop (:meth:`Objective.at_crop`)."""

    target: torch.Tensor | None = None
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None
    source: torch.Tensor | None = None

    def loss(self, act, x):
        return self.loss_fn(act, self.target)

    def _subset(self, idx):
        return replace(self, target=self.target[idx], source=_pick(self.source, idx))


def OutputMatch(
    model: nn.Module,
    target: torch.Tensor,
    scale: float = 0.05,
    rows: Sequence[int] | None = None,
    source: torch.Tensor | None = None,
) -> LayerMatch:
    """``scale·Σ|ŷ − O(x)|`` over the whole output vector (seed III-4: ``0.05·Σ|ŷ − O|``)."""
    return LayerMatch(
        model,
        "output",
        None if rows is None else tuple(rows),
        target=target,
        loss_fn=L1Loss("sum", scale),
        source=source,
    )


@dataclass(frozen=True, eq=False)
class ClassLogit(Term):
    """``|C − logit_c(x)|`` per row, ``c = classes[row]``; ``absolute=False``: ``C − logit_c``
    (the reference code's arithmetic: C is then a constant offset and leaves the gradient
    alone, so only the weights in front of the terms matter)."""

    classes: torch.Tensor | None = None  # long, one per row
    C: float = 200.0
    absolute: bool = True

    def __post_init__(self) -> None:
        if self.layer is None:
            object.__setattr__(self, "layer", "output")

    def loss(self, act, x):
        logit = act.flatten(1).gather(1, self.classes.to(act.device).view(-1, 1)).squeeze(1)
        d = self.C - logit
        return d.abs() if self.absolute else d

    def _subset(self, idx):
        return replace(self, classes=self.classes[idx])


@dataclass(frozen=True, eq=False)
class InputL1(Term):
    """``Σ|a|`` over each row's input (the class objective's optional ``+ λ·Σ|a|``)."""

    def loss(self, act, x):
        return x.abs().flatten(1).sum(1)


@dataclass(frozen=True, eq=False)
class TotalVariation(Term):
    """Anisotropic total variation of each row's input, ``Σ|∂_y a| + Σ|∂_x a|`` (mean per
    pixel, so its weight does not depend on the image size)."""

    def loss(self, act, x):
        dy = (x[:, :, 1:, :] - x[:, :, :-1, :]).abs().flatten(1).mean(1)
        dx = (x[:, :, :, 1:] - x[:, :, :, :-1]).abs().flatten(1).mean(1)
        return dy + dx


@dataclass(frozen=True, eq=False)
class BatchNormPrior(Term):
    """Yin et al. 2020 (DeepInversion): for every ``BatchNorm2d`` of ``model``,
    ``‖μ_batch − running_mean‖₂ + ‖σ²_batch − running_var‖₂`` of the layer's input over
    N, H, W of this term's rows; the first BatchNorm weighted ``first_weight`` (10 in their
    code). The batch's loss is shared equally among its rows (their sum is the prior)."""

    first_weight: float = 10.0

    def __post_init__(self) -> None:
        if self.layer is None:
            object.__setattr__(self, "layer", "output")
        object.__setattr__(self, "_stats", [])

    def norms(self) -> list[nn.BatchNorm2d]:
        return [m for m in unwrap(self.model).modules() if isinstance(m, nn.BatchNorm2d)]

    @contextmanager
    def watching(self) -> Iterator[None]:
        stats: list = self._stats
        stats.clear()

        def hook(module, inputs, _output):
            a = inputs[0]
            mean = a.mean(dim=(0, 2, 3))
            var = a.transpose(0, 1).flatten(1).var(1, unbiased=False)
            stats.append(
                torch.linalg.vector_norm(mean - module.running_mean)
                + torch.linalg.vector_norm(var - module.running_var)
            )

        mods = self.norms()
        if not mods:
            raise ValueError(
                f"{getattr(self.model, 'name', 'this model')} has no BatchNorm2d layer: the "
                "BatchNorm prior needs one (use --tv instead)"
            )
        with hooked((m, hook) for m in mods):
            yield

    def loss(self, act, x):
        stats = self._stats
        if not stats:
            raise RuntimeError("BatchNormPrior.loss called outside its forward")
        total = self.first_weight * stats[0] + sum(stats[1:], torch.zeros_like(stats[0]))
        return (total / x.shape[0]).expand(x.shape[0])


@dataclass(frozen=True)
class Objective:
    """A weighted sum of terms, ``Σ_k w_k · term_k`` per row."""

    terms: tuple[tuple[float, Term], ...] = ()

    @classmethod
    def of(cls, term: Term | Objective) -> Objective:
        return term if isinstance(term, Objective) else cls(((1.0, term),))

    def __add__(self, other) -> Objective:
        if isinstance(other, (int, float)) and other == 0:
            return self
        return Objective(self.terms + Objective.of(other).terms)

    def __radd__(self, other) -> Objective:  # sum([...]) starts from 0
        if isinstance(other, (int, float)) and other == 0:
            return self
        return Objective.of(other) + self

    def __mul__(self, w: float) -> Objective:
        return Objective(tuple((float(w) * v, t) for v, t in self.terms))

    __rmul__ = __mul__

    def __neg__(self) -> Objective:
        return self * -1.0

    def __sub__(self, other) -> Objective:
        return self + (-Objective.of(other))

    def select(self, keep: Sequence[int]) -> Objective:
        """The objective after the batch kept rows ``keep`` (old indices, in order)."""
        out = []
        for w, t in self.terms:
            s = t.select(list(keep))
            if s is not None:
                out.append((w, s))
        return Objective(tuple(out))

    def models(self) -> list[nn.Module]:
        seen: dict[int, nn.Module] = {}
        for _, t in self.terms:
            if t.model is not None:
                seen.setdefault(id(t.model), t.model)
        return list(seen.values())

    def at_crop(self, oy: int, ox: int, size: int) -> Objective:
        """:meth:`transformed` by the ``size×size`` crop at ``(oy, ox)`` (octave jitter)."""
        return self.transformed(lambda t: t[:, :, oy : oy + size, ox : ox + size])

    def transformed(self, view: Callable[[torch.Tensor], torch.Tensor]) -> Objective:
        """Targets of the layer matches that have ``source`` images recomputed on
        ``view(source)`` (a jitter crop, a step's robustness transforms: the target is the
        view's own activations), one no-grad forward per model."""
        terms = list(self.terms)
        for model in self.models():
            ks = [
                k
                for k, (_, t) in enumerate(terms)
                if t.model is model and isinstance(t, LayerMatch) and t.source is not None
            ]
            if not ks:
                continue
            crops = torch.cat([view(terms[k][1].source) for k in ks])
            start, plan = 0, []
            for k in ks:
                n = terms[k][1].source.shape[0]
                plan.append((k, tuple(range(start, start + n))))
                start += n
            with torch.no_grad():
                outs = layer_outputs(model, crops, [(terms[k][1].layer, r) for k, r in plan])
            for (k, _), out in zip(plan, outs, strict=True):
                w, t = terms[k]
                terms[k] = (w, replace(t, target=out))
        return Objective(tuple(terms))


def layer_outputs(
    model: nn.Module,
    x: torch.Tensor,
    wants: list[tuple[str, tuple[int, ...] | None]],
    traced: bool = False,
) -> list[torch.Tensor]:
    """``model``'s activations at each wanted ``(layer, rows)`` of batch ``x``, one forward.

    Rows that each need one layer, laid out layer by layer in forward order and covering the
    batch, go through a staged forward (the batch narrows at cut points); otherwise the rows
    any term needs run one truncated forward to the deepest layer (``traced``: the whole
    batch through one FX feature extractor, :func:`layerscope.layers.traced_forward`, which
    ``torch.compile`` captures whole)."""
    b = x.shape[0]
    full = [tuple(range(b)) if r is None else r for _, r in wants]
    layers = [layer for layer, _ in wants]
    flat = [i for r in full for i in r]
    if traced:
        acts = traced_forward(model, x, list(dict.fromkeys(layers)))
        return [acts[layer] if r == tuple(range(b)) else acts[layer][list(r)]
                for layer, r in zip(layers, full, strict=True)]  # fmt: skip
    lo = flat[0] if flat else 0
    block = flat == list(range(lo, lo + len(flat)))  # this model's rows, one after another
    staged = block and len(set(layers)) == len(layers)
    if staged and len(layers) > 1:
        order = execution_order(model, x[:1].detach())
        staged = [order[n] for n in layers] == sorted(order[n] for n in layers)
    if staged:
        cuts = cut_points(model, layers) if len(layers) > 1 else frozenset()
        groups = [(layer, len(r)) for layer, r in zip(layers, full, strict=True)]
        xs = x if lo == 0 and len(flat) == b else x[lo : lo + len(flat)]
        acts = staged_forward(model, xs, groups, cuts)
        return [acts[layer] for layer in layers]
    union = sorted(set(flat))
    xs = x if union == list(range(b)) else x[union]
    acts = read_unchecked(model, xs, list(dict.fromkeys(layers)))
    where = {r: k for k, r in enumerate(union)}
    out = []
    for layer, r in zip(layers, full, strict=True):
        a = acts[layer]
        idx = [where[i] for i in r]
        out.append(a if idx == list(range(a.shape[0])) else a[idx])
    return out


@contextmanager
def _watching(terms: Sequence[Term]) -> Iterator[None]:
    with ExitStack() as stack:
        for t in terms:
            stack.enter_context(t.watching())
        yield


def evaluate(
    objective: Objective, x: torch.Tensor, traced: bool = False
) -> tuple[torch.Tensor, list[torch.Tensor | None]]:
    """Per-row losses ``Σ_k w_k·term_k`` of batch ``x`` (shape ``(B,)``), and each term's
    activations (``None`` for input terms), one forward per model (``traced``: each model
    as an FX feature extractor, the path ``torch.compile`` captures)."""
    if not objective.terms:
        raise ValueError("the objective has no terms")
    b = x.shape[0]
    terms = objective.terms
    acts: list[torch.Tensor | None] = [None] * len(terms)
    for model in objective.models():
        ks = [k for k, (_, t) in enumerate(terms) if t.model is model]
        # one activation per distinct (layer, rows): terms on the same rows share it
        wants: list[tuple[str, tuple[int, ...] | None]] = []
        slot: dict[tuple, int] = {}
        for k in ks:
            key = (terms[k][1].layer, terms[k][1].rows)
            if key not in slot:
                slot[key] = len(wants)
                wants.append(key)
        with _watching([terms[k][1] for k in ks]):
            outs = layer_outputs(model, x, wants, traced)
        for k in ks:
            acts[k] = outs[slot[(terms[k][1].layer, terms[k][1].rows)]]
    losses: torch.Tensor | None = None
    for k, (w, t) in enumerate(terms):
        if t.rows is None:
            v = t.loss(acts[k], x)
            idx = None
        else:
            idx = torch.tensor(t.rows, device=x.device)
            v = t.loss(acts[k], x[idx])
        if losses is None:
            losses = torch.zeros(b, dtype=v.dtype, device=x.device)
        losses = losses + w * v if idx is None else losses.index_add(0, idx, w * v)
    return losses, acts
