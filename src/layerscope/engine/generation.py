"""Generation: inputs made from one or several models' gradients (seed part III, part I's octaves).

A generated image starts from ``a0 ~ N(0.7, 1/20)`` and descends an :class:`Objective`
(:mod:`layerscope.objectives`) through octave :class:`Stage` s — each its own size (bilinear
resize between stages), iterations, ε and σ schedules, optional jitter crop and padding — with
the one descent loop of the inversion engine (:func:`layerscope.inversion.descend`).

- :func:`generate_classes`: one image per class and model (``single``), one per class from the
  weighted sum of several models' class terms (``combined``, III-1), or from the difference of
  two (``difference``, III-2). Every row of every model is one batch.
- :func:`generate_matching`: images whose output vector matches a target vector (III-4: a model's
  own output on another model's generated image; III-5: on a photo).
- :func:`class_scores`: every model's logit and probability for the class of every image.

``config.reference`` reproduces the reference code's arithmetic exactly:
``0.5·((200 − logit₁) + (400 − logit₂))`` (combined) and ``2·((200 − logit₁) − (400 − logit₂))``
(difference). Without the absolute value a constant ``C`` only shifts the loss, so its gradient
is ``−0.5·∇logit₁ − 0.5·∇logit₂`` whatever ``C`` is: Badger's "apply the constant to C"
(``d = 2, e = 1``) changes nothing but the printed loss. The weights in front of the terms are
what matters, and here they are explicit (``config.weights``).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from ..core.errors import ConfigError
from ..core.files import atomic_path, read_json, read_tensor, write_json
from ..core.progress import progress_bar
from ..core.tables import read_csv, write_csv
from .descent import GaussianBlur, Jitter, descend, start_image
from .device import halving, resolve_device
from .finite import DIVERGED, row_message
from .generation_config import GENERATION_PRESETS, MODES, GenerationConfig, Stage
from .images import save_image
from .models import Model, as_model, fold_batchnorm
from .objectives import (
    BatchNormPrior,
    ClassLogit,
    InputL1,
    Objective,
    OutputMatch,
    TotalVariation,
    evaluate,
)
from .results import short_hash, slug
from .transforms import parse_transforms

__all__ = [
    "GENERATION_PRESETS",
    "MODES",
    "GeneratedImage",
    "GenerationConfig",
    "Stage",
    "class_objective",
    "class_scores",
    "generate_classes",
    "generate_matching",
    "parse_classes",
]


# ---------------------------------------------------------------- classes


def parse_classes(spec: str | Sequence, names: Sequence[str]) -> list[int]:
    """``"0..9"`` (inclusive), ``"0,3"``, ``"tench,goldfinch"`` or a list of those → class
    indices; anything else is an error listing the valid ones. A name matches exactly first
    (ImageNet has both ``Cardigan``, the dog, and ``cardigan``, the sweater), then
    case-insensitively only where that is unique (``cat`` with classes ``Cat`` and ``cat``
    is ``cat``; ``CAT`` is refused as ambiguous)."""
    n = len(names)
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    exact = {s: k for k, s in reversed(list(enumerate(names)))}  # the first of duplicates
    lower: dict[str, list[int]] = {}
    for k, s in enumerate(names):
        lower.setdefault(s.lower(), []).append(k)
    out: list[int] = []

    def listing() -> str:
        shown = ", ".join(f"{k} {s}" for k, s in enumerate(names[:12]))
        more = f", … ({n} in all)" if n > 12 else ""
        return f"valid: 0..{n - 1} or a name ({shown}{more})"

    for item in items:
        item = str(item).strip()
        if not item:
            continue
        if ".." in item:
            a, _, b = item.partition("..")
            try:
                lo, hi = int(a), int(b)
            except ValueError:
                raise ConfigError(
                    f"--class range {item!r} must be two indices, like 0..9"
                ) from None
            if not (0 <= lo <= hi < n):
                raise ConfigError(f"--class range {item!r} is outside the {n} classes; {listing()}")
            out.extend(range(lo, hi + 1))
        elif item.lstrip("-").isdigit():
            k = int(item)
            if not 0 <= k < n:
                raise ConfigError(f"--class {k} is not a class of this model; {listing()}")
            out.append(k)
        elif item in exact:
            out.append(exact[item])
        elif len(lower.get(item.lower(), [])) == 1:
            out.append(lower[item.lower()][0])
        elif item.lower() in lower:
            which = ", ".join(f"{k} {names[k]}" for k in lower[item.lower()])
            raise ConfigError(
                f"--class {item!r} matches several classes that differ only in case ({which}): "
                "write the name exactly, or give the index"
            )
        else:
            close = difflib.get_close_matches(item.lower(), list(lower), n=3, cutoff=0.6)
            hint = f" (closest: {', '.join(close)})" if close else ""
            raise ConfigError(f"--class {item!r} is not a class name{hint}; {listing()}")
    if not out:
        raise ConfigError(f"--class names no class; {listing()}")
    return list(dict.fromkeys(out))


def output_size(model: Model, size: int, device: torch.device) -> int:
    """The number of output units of ``model`` (one probing forward at ``size`` px)."""
    param = next(model.parameters(), None)
    dtype = param.dtype if param is not None else torch.float32
    from .layers import _forward_checked

    out = {}

    def grab(_m, _i, o):
        out["n"] = o.flatten(1).shape[1]

    h = model.register_forward_hook(grab)
    try:
        with torch.no_grad():
            _forward_checked(model, torch.zeros(1, 3, size, size, device=device, dtype=dtype))
    finally:
        h.remove()
    return out["n"]


# ---------------------------------------------------------------- objectives


def labels(models: Sequence[Model]) -> list[str]:
    """Each model's label (``resnet18/epoch_004``), with a short hash of its weights path where
    two models would otherwise share one (two training runs of one architecture)."""
    base = [m.label for m in models]
    return [
        b if base.count(b) == 1 else f"{b}-{short_hash(str(m.weights))}"
        for b, m in zip(base, models, strict=True)
    ]


def _per_model(values: tuple[float, ...] | None, m: int, what: str) -> tuple[float, ...] | None:
    if values is None:
        return None
    if len(values) == 1:
        return tuple(values) * m
    if len(values) != m:
        raise ConfigError(f"{what} needs one value or one per model ({m}), not {len(values)}")
    return tuple(values)


def class_objective(
    models: Sequence[Model],
    classes: Sequence[int],
    mode: str,
    config: GenerationConfig,
) -> tuple[Objective, list[dict]]:
    """The objective of a class-generation batch and what each row is.

    ``single``: a row per (model, class), each pushed by its own model;
    ``combined``: a row per class, ``Σ_m w_m·|C_m − logit_m|``; ``difference``: a row per
    class, ``w₁·|C₁ − logit₁| − w₂·(C₂ − logit₂)`` (the second term without ``|·|``: its sign
    would otherwise be ambiguous; with ``reference`` neither has it). Priors are added per row,
    the BatchNorm prior for every model with BatchNorm."""
    if mode not in MODES:
        raise ConfigError(f"--mode must be one of {', '.join(MODES)}, not {mode!r}")
    m = len(models)
    if mode == "difference" and m != 2:
        raise ConfigError(f"--mode difference needs exactly two models, not {m}")
    if mode == "combined" and m < 2:
        raise ConfigError("--mode combined needs at least two models (--model a,b)")
    cls = torch.tensor(list(classes), dtype=torch.long)
    k = len(classes)
    if config.reference and mode != "single":
        if m != 2:
            raise ConfigError("the reference arithmetic is defined for two models")
        C, absolute = (200.0, 400.0), False
        weights = (0.5, 0.5) if mode == "combined" else (2.0, -2.0)
    else:
        C = _per_model(config.C, m, "--C")
        absolute = config.absolute
        default = {"single": 1.0, "combined": 1.0 / m, "difference": 1.0}[mode]
        weights = _per_model(config.weights, m, "--weights") or (default,) * m
        if mode == "difference":
            weights = (weights[0], -abs(weights[1]))
    names = labels(models)
    terms: list = []
    rows: list[dict] = []
    if mode == "single":
        for i, model in enumerate(models):
            r = tuple(range(i * k, (i + 1) * k))
            terms.append(weights[i] * ClassLogit(model, "output", r, cls, C[i], absolute))
            rows += [{"mode": mode, "models": [names[i]], "class": int(c)} for c in classes]
    else:
        for i, model in enumerate(models):
            second_of_difference = mode == "difference" and i == 1
            terms.append(
                weights[i]
                * ClassLogit(
                    model, "output", None, cls, C[i], absolute and not second_of_difference
                )
            )
        rows = [{"mode": mode, "models": names, "class": int(c)} for c in classes]
    obj = sum(terms, Objective())
    return _with_priors(obj, models, rows, mode, config), rows


def _with_priors(obj: Objective, models, rows, mode, config) -> Objective:
    if config.input_l1:
        obj = obj + config.input_l1 * InputL1()
    if config.tv:
        obj = obj + config.tv * TotalVariation()
    if config.bn_prior:
        from torch import nn

        if not any(isinstance(mm, nn.BatchNorm2d) for m in models for mm in m.modules()):
            raise ConfigError(
                "--bn-prior needs a model with BatchNorm2d layers, and none of "
                f"{', '.join(m.name for m in models)} has one: use --tv instead"
            )
        k = len(rows) // len(models) if mode == "single" else None
        for i, model in enumerate(models):
            if not any(isinstance(mm, nn.BatchNorm2d) for mm in model.modules()):
                continue
            r = None if k is None else tuple(range(i * k, (i + 1) * k))
            obj = obj + config.bn_prior * BatchNormPrior(model, "output", r, config.bn_first)
    return obj


# ---------------------------------------------------------------- results


@dataclass
class GeneratedImage:
    """One generated image: what made it (mode, models, class or target), the image, its loss
    curve per stage and its status."""

    key: str
    mode: str
    models: list[str]
    image: torch.Tensor
    cls: int | None = None
    class_name: str = ""
    target: str = ""
    curve: list[dict] = field(default_factory=list)
    status: str = "ok"
    message: str = ""
    copy: int = 0  # k-th image of its class (--copies), each from its own a0

    def save(self, directory: str | Path) -> Path:
        """``<dir>/<key>/``: image.png, image.safetensors, curve.csv, result.json (last)."""
        d = Path(directory) / self.key
        with atomic_path(d / "image.png") as tmp:
            save_image(self.image, tmp, format="PNG")
        with atomic_path(d / "image.safetensors") as tmp:
            save_file({"image": self.image.contiguous().cpu()}, tmp)
        write_csv(d / "curve.csv", self.curve)
        meta = {
            "key": self.key,
            "mode": self.mode,
            "models": self.models,
            "cls": self.cls,
            "class_name": self.class_name,
            "target": self.target,
            "status": self.status,
            "message": self.message,
            "copy": self.copy,
        }
        write_json(d / "result.json", meta)
        return d

    @classmethod
    def load(cls, directory: str | Path) -> GeneratedImage:
        d = Path(directory)
        meta = read_json(d / "result.json")
        image = read_tensor(d / "image.safetensors", "image")
        return cls(image=image, curve=read_csv(d / "curve.csv"), **meta)


def image_key(mode: str, models: Sequence[str], name: str) -> str:
    who = models[0] if mode == "single" else mode
    return f"{slug(who.replace('/', '-'))}__{slug(name)}"


# ---------------------------------------------------------------- the runs


def _prepared(models: Sequence[Model], config: GenerationConfig, device) -> list[Model]:
    out = []
    for model in models:
        model = as_model(model).to(device)
        if config.fold_batchnorm and not config.bn_prior:
            model = fold_batchnorm(model)
        out.append(model)
    return out


def _initial(config: GenerationConfig, n: int, size: int, dtype, device) -> torch.Tensor:
    """a0 ~ N(init_mean, init_std²): one draw from ``config.seed`` shared by every row (a
    batched run equals the rows run one by one)."""
    return _a0(config, 0, size).expand(n, -1, -1, -1).to(device, dtype).contiguous()


def _a0(config: GenerationConfig, copy: int, size: int) -> torch.Tensor:
    """Copy ``k``'s a0: copy 0 from ``config.seed`` (what every row of a one-copy run starts
    from), copy k > 0 from its own seeded draw."""
    return start_image(config.seed, copy, config.init_mean, config.init_std, (size, size))


def run_stages(
    objective: Objective,
    n_rows: int,
    config: GenerationConfig,
    device: torch.device,
    dtype: torch.dtype = torch.float32,
    advance: Callable[[int], None] = lambda n: None,
    x0: torch.Tensor | None = None,
    status: dict | None = None,
) -> tuple[torch.Tensor, list[list[dict]], dict[int, str]]:
    """Every octave of ``config`` on ``n_rows`` rows: the final images (all rows; a row that
    failed keeps its last finite input), each row's loss curve, and failure messages;
    ``status["compile"]`` says how the step ran. (~90 lines: each octave resizes the rows
    still alive, runs the one descent loop and folds its failures back into the batch's row
    numbering; the bookkeeping is shared across octaves.)"""
    first = config.stages[0].size
    x = x0 if x0 is not None else _initial(config, n_rows, first, dtype, device)
    curves: list[list[dict]] = [[] for _ in range(n_rows)]
    failed: dict[int, str] = {}
    final: dict[int, torch.Tensor] = {}
    alive = list(range(n_rows))
    for s, stage in enumerate(config.stages):
        if x.shape[-1] != stage.size or x.shape[-2] != stage.size:
            x = F.interpolate(
                x, size=(stage.size, stage.size), mode="bilinear", align_corners=False
            )
        blur = (
            GaussianBlur(config.blur_kernel, stage.sigma, config.blur_strength)
            if stage.sigma is not None
            else None
        )
        jitter = Jitter(stage.crop) if stage.crop is not None and stage.crop < stage.size else None
        rows_now = list(alive)

        def on_record(i, xs, losses, acts, lr, sigma, live, _s=s, _rows=rows_now, _o=objective):
            if losses is None:
                obj = _o if len(live) == len(_rows) else _o.select(live)
                with torch.no_grad():
                    losses, _ = evaluate(obj, xs)
            for k, a in enumerate(live):
                curves[_rows[a]].append(
                    {
                        "stage": _s,
                        "iteration": i,
                        "size": int(xs.shape[-1]),
                        "loss": float(losses[k]),
                        "lr": lr,
                        "sigma": sigma,
                    }
                )

        x, live, failures = descend(
            x,
            objective,
            iterations=stage.iterations,
            lr=stage.lr,
            step=config.step,
            blur=blur,
            jitter=jitter,
            generator=torch.Generator().manual_seed(config.seed + 1000 + s),
            record_every=config.record_every,
            pad=stage.pad,
            pad_value=config.pad_value,
            on_record=on_record,
            advance=advance,
            precision=config.precision,
            compile=config.compile,
            status=status,
            transforms=parse_transforms(config.transforms),
            param=config.param,
        )
        for f in failures:
            row = rows_now[f.row]
            failed[row] = row_message(
                f"octave {s + 1}, iteration {f.iteration}", f.lr,
                "lower the octave's lr or --term-weights, or use --step normalized",
            )  # fmt: skip
            final[row] = f.x
        alive = [rows_now[a] for a in live]
        if failures:
            objective = objective.select(live)
        if not alive:
            break
    out = []
    for r in range(n_rows):
        if r in final:
            out.append(final[r].to(x.device))
        else:
            out.append(x[alive.index(r) : alive.index(r) + 1])
    size = max(t.shape[-1] for t in out)
    out = [
        t
        if t.shape[-1] == size
        else F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False)
        for t in out
    ]
    return torch.cat(out).detach(), curves, failed


def generate_classes(
    models: Sequence[Model] | Model,
    classes: Sequence[int] | str,
    config: GenerationConfig | None = None,
    mode: str = "single",
    *,
    device: str | torch.device = "auto",
    max_rows: int | None = None,
    skip: set[str] = frozenset(),
    on_result: Callable[[GeneratedImage], None] | None = None,
    progress: bool = False,
    status: dict | None = None,
    run_rows: Callable[..., tuple] | None = None,
    names: Sequence[str] | None = None,
) -> list[GeneratedImage]:
    """Class images from ``models``' gradients (see :func:`class_objective` for ``mode``).
    ``run_rows``: what descends one chunk of rows (default :func:`run_stages`; a wrapper can
    watch chunk sizes or simulate a full device). ``names``: what the images call their
    models (default: the models' labels; merging names them by role, since a teacher and a
    student of one architecture have the same label).

    ``classes``: indices or a spec for :func:`parse_classes` (``"0..9"``, ``"tench"``).
    Rows are batched over classes and models, ``max_rows`` rows at a time (one chunk of
    classes; default all); images whose key is in ``skip`` (finished in an earlier run) are
    not made again. ``on_result`` sees each image as its chunk finishes."""
    config = config or GenerationConfig.preset()
    dev = resolve_device(device)
    models = [as_model(m) for m in (models if isinstance(models, Sequence) else [models])]
    n_out = output_size(models[0], config.stages[0].size, dev)
    class_names = models[0].class_names(n_out)
    if isinstance(classes, (str, int)):
        classes = parse_classes(str(classes), class_names)
    else:
        classes = parse_classes([str(c) for c in classes], class_names)
    work = _prepared(models, config, dev)
    per_class = len(models) if mode == "single" else 1
    if names is not None and len(names) != len(models):
        raise ConfigError(f"names gives {len(names)} names for {len(models)} models")
    who = list(names) if names is not None else labels(models)
    rename = dict(zip(labels(models), who, strict=True))

    copies = config.copies
    per_class *= copies

    def key(made_by: list[str], c: int, copy: int) -> str:
        base = image_key(mode, made_by, class_names[c])
        return base if copies == 1 else f"{base}__{copy}"

    def keys(c: int) -> list[str]:
        groups = [[w] for w in who] if mode == "single" else [who]
        return [key(g, c, k) for g in groups for k in range(copies)]

    # the chunks come from the config alone (every class, --max-batch), never from what an
    # earlier run finished: a term that couples rows (the BatchNorm prior's batch statistics)
    # then sees the same rows in a resumed run, and a chunk with any image missing is redone
    # whole (its finished images come out the same)
    chunk = max(1, (max_rows or len(classes) * per_class) // per_class)
    chunks = [classes[i : i + chunk] for i in range(0, len(classes), chunk)]
    chunks = [p for p in chunks if not all(k in skip for c in p for k in keys(c))]
    param = next(work[0].parameters(), None)
    dtype = param.dtype if param is not None else torch.float32
    results: list[GeneratedImage] = []
    with progress_bar(total=len(chunks) * config.iterations, enabled=progress) as bar:

        def run(part: list[int]):
            bar.describe(f"{mode} · {', '.join(class_names[c] for c in part[:4])}")
            # copies of a class are adjacent rows, each from its own a0
            obj, rows = class_objective(
                work, [c for c in part for _ in range(copies)], mode, config
            )
            for r, row in enumerate(rows):
                row["copy"] = r % copies
            x0 = None
            if copies > 1:
                size = config.stages[0].size
                x0 = torch.cat([_a0(config, row["copy"], size) for row in rows]).to(dev, dtype)
            out = (run_rows or run_stages)(
                obj, len(rows), config, dev, dtype, bar.advance, x0=x0, status=status
            )
            return rows, out

        grow = lambda: bar.grow(2 * config.iterations)  # noqa: E731
        what = ("class", "classes")
        for _, (rows, (images, curves, failed)) in halving(chunks, run, what, dev, grow):
            for r, row in enumerate(rows):
                made_by = [rename.get(m, m) for m in row["models"]]
                g = _image(
                    key(made_by, row["class"], row["copy"]), mode, made_by, images, curves,
                    failed, r, cls=row["class"], class_name=class_names[row["class"]],
                    copy=row["copy"],
                )  # fmt: skip
                results.append(g)
                if on_result is not None:
                    on_result(g)
    return results


def _image(key, mode, models, images, curves, failed, r, **what) -> GeneratedImage:
    """Row ``r`` of a finished batch as a :class:`GeneratedImage`."""
    return GeneratedImage(
        key=key,
        mode=mode,
        models=models,
        image=images[r : r + 1].cpu(),
        curve=curves[r],
        status=DIVERGED if r in failed else "ok",
        message=failed.get(r, ""),
        **what,
    )


def target_vectors(model: Model, images: torch.Tensor, device) -> torch.Tensor:
    """``ŷ = O(a, θ)``: ``model``'s output vectors on ``images`` (no grad)."""
    model = as_model(model).to(device)
    param = next(model.parameters(), None)
    dtype = param.dtype if param is not None else torch.float32
    with torch.no_grad():
        return model(images.to(device, dtype)).flatten(1)


def generate_matching(
    model: Model,
    targets: torch.Tensor,
    names: Sequence[str],
    config: GenerationConfig | None = None,
    *,
    device: str | torch.device = "auto",
    skip: set[str] = frozenset(),
    on_result: Callable[[GeneratedImage], None] | None = None,
    progress: bool = False,
    status: dict | None = None,
) -> list[GeneratedImage]:
    """Images from noise whose ``model`` output matches each row of ``targets``:
    ``s·Σ|ŷ − O(a)|`` (III-4, III-5), one batch."""
    config = config or GenerationConfig.preset()
    dev = resolve_device(device)
    model = as_model(model)
    (work,) = _prepared([model], config, dev)
    param = next(work.parameters(), None)
    dtype = param.dtype if param is not None else torch.float32
    keys = [image_key("single", [model.label], f"match-{n}") for n in names]
    todo = [k for k, key in enumerate(keys) if key not in skip]
    if not todo:
        return []
    obj = Objective.of(OutputMatch(work, targets[todo].to(dev, dtype), config.output_scale))
    obj = _with_priors(obj, [work], [{}] * len(todo), "combined", config)
    with progress_bar(total=config.iterations, enabled=progress) as bar:
        bar.describe(f"{model.label} · output-vector targets")
        images, curves, failed = run_stages(
            obj, len(todo), config, dev, dtype, bar.advance, status=status
        )
    out = []
    for r, k in enumerate(todo):
        g = _image(keys[k], "vector", [model.label], images, curves, failed, r, target=names[k])
        out.append(g)
        if on_result is not None:
            on_result(g)
    return out


def class_scores(
    models: Sequence[Model],
    images: Sequence[GeneratedImage],
    device="auto",
    names: Sequence[str] | None = None,
) -> list[dict]:
    """Every model's logit, probability and rank for each image's class, and its top class
    (``names``: what the rows call the models; default their labels)."""
    bad = [x for x in images if not isinstance(x, GeneratedImage)]
    if isinstance(images, torch.Tensor) or bad:
        raise ConfigError(
            "class_scores scores the GeneratedImage results of generate_classes (each knows "
            "its class), not a tensor: to score your own images, run the model on them"
        )
    dev = resolve_device(device)
    rows = []
    for model, label in zip(models, names or labels(models), strict=True):
        model = as_model(model).to(dev)
        param = next(model.parameters(), None)
        dtype = param.dtype if param is not None else torch.float32
        outs: dict[str, torch.Tensor] = {}
        by_size: dict[tuple, list[GeneratedImage]] = {}
        for g in images:  # one forward per image size, not per image
            by_size.setdefault(tuple(g.image.shape[-2:]), []).append(g)
        for group in by_size.values():
            with torch.no_grad():
                out = model(torch.cat([g.image for g in group]).to(dev, dtype)).flatten(1)
            outs |= {g.key: o.double() for g, o in zip(group, out, strict=True)}
        for g in images:
            out = outs[g.key]
            model_classes = model.class_names(out.numel())
            p = out.softmax(0)
            row = {"image": g.key, "mode": g.mode, "made_by": "+".join(g.models)}
            row["class"] = g.cls if g.cls is not None else ""
            row["class_name"] = g.class_name or g.target
            row["model"] = label
            if g.cls is not None:
                row["logit"] = float(out[g.cls])
                row["probability"] = float(p[g.cls])
                row["rank"] = int((out > out[g.cls]).sum()) + 1
            row["top_class"] = model_classes[int(out.argmax())]
            row["top_probability"] = float(p.max())
            rows.append(row)
    return rows
