"""Layers: names, aliases, descriptions, and the truncated forward to named outputs.

A layer is a module of ``model.net`` named as PyTorch names it (``layer3.2.conv1``).
ResNets also answer to Badger's names: ``conv1`` … ``conv5`` (He et al.'s stages; ``conv2``
is torchvision's ``layer1``) and ``conv1_pooled`` (after ``bn1 → relu → maxpool``).

One mechanism reaches layers: forward hooks held in a context manager that always removes
them, with an early exit once the deepest requested layer has run, so nothing after it is
computed. The same forward can *narrow* the batch at a layer that is a cut point of the graph
(every later computation depends on the rest of the network only through that layer's
output): rows whose target layer has been reached are dropped there, so a target at an early
layer never pays for later layers. Cut points come from torchvision's FX tracer
(``create_feature_extractor``); where tracing fails, no layer is treated as a cut and the
forward is still exact, only slower. ``backend="fx"`` runs the traced feature extractor
instead of hooks, as an independent check.
"""

from __future__ import annotations

import difflib
import re
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..core.errors import ImageError, LayerNotFound
from .models import Model, evaluating, tracer_kwargs

__all__ = [
    "LAYOUTS",
    "LayerInfo",
    "aliases",
    "channel_axis",
    "channel_layout",
    "cut_points",
    "default_layers",
    "describe_layers",
    "execution_order",
    "feature_extractor",
    "read_layers",
    "read_unchecked",
    "replaced_output",
    "resolve_layers",
    "staged_forward",
    "traced_forward",
]

_HEADS = {"fc", "head", "heads", "classifier", "logits", "last_linear"}
_CONTAINERS = {"features", "blocks", "layers", "stages"}
_RESNET_STAGES = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")


@dataclass(frozen=True)
class LayerInfo:
    """One probe-able layer: its real name, seed alias, module type, output shape (no batch)."""

    name: str
    alias: str | None
    kind: str
    shape: tuple[int, ...]
    calls: int

    @property
    def numel(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n


def unwrap(model: nn.Module) -> nn.Module:
    return model.net if isinstance(model, Model) else model


def _is_resnet(net: nn.Module) -> bool:
    names = {n for n, _ in net.named_children()}
    return all(s in names for s in _RESNET_STAGES)


def _inner(net: nn.Module) -> tuple[str, nn.Module]:
    """The network a wrapper holds: while a module has exactly one child and no parameters
    of its own (``Wrapper(net)``, ``nn.Sequential(net)``), step into that child. Returns the
    prefix (``"net."``, or ``""``) and the innermost module."""
    prefix = ""
    while True:
        children = list(net.named_children())
        if len(children) != 1 or any(True for _ in net.parameters(recurse=False)):
            return prefix, net
        name, child = children[0]
        if not any(True for _ in child.children()):
            return prefix, net  # a single leaf (nn.Sequential(conv)): the wrapper is the net
        prefix, net = f"{prefix}{name}.", child


def _is_timm(net: nn.Module) -> bool:
    """A timm network: it describes its own stages (``feature_info``) and has a stem."""
    return hasattr(net, "feature_info") and hasattr(net, "pretrained_cfg")


def aliases(model: nn.Module) -> dict[str, str]:
    """Source aliases (lower case) → module names: conv1…conv5 and conv1_pooled on ResNets
    (Badger 2022's names); ``stem`` and ``head`` on timm nets (their first convolution and
    the last before pooling, from ``pretrained_cfg`` and the module tree)."""
    prefix, net = _inner(unwrap(model))
    if _is_resnet(net):
        table = {
            "conv1": "conv1",
            "conv1_pooled": "maxpool",
            "conv2": "layer1",
            "conv3": "layer2",
            "conv4": "layer3",
            "conv5": "layer4",
        }
    elif _is_timm(net):
        names = {n for n, _ in net.named_modules()}
        first = getattr(net, "pretrained_cfg", {}).get("first_conv")
        table = {"stem": first} if first in names else {}
        if "conv_head" in names:
            table["head"] = "conv_head"
    else:
        return {}
    return {a: prefix + n for a, n in table.items()}


def default_layers(model: nn.Module) -> list[str]:
    """Every stage, from the network's structure (inside a wrapper, of the net it holds):
    conv1, conv1 after pooling and layer1…layer4 on ResNets; elsewhere the top-level
    children but the head (fc, head, classifier, …), with block containers (``features``,
    ``blocks``, ``stages``, ``encoder.layers``, any ``ModuleList``) opened one level and
    placeholders (Identity, Dropout, Flatten) left out; on timm nets also without their
    normalisation layers (a BatchNorm after the stem or head convolution, with its
    activation) and the global pool (``conv_stem, blocks.0 … blocks.6, conv_head`` on an
    EfficientNet)."""
    prefix, net = _inner(unwrap(model))
    if _is_resnet(net):
        return [prefix + n for n in ("conv1", "maxpool", "layer1", "layer2", "layer3", "layer4")]
    skip: tuple[type, ...] = (nn.Identity, nn.Dropout, nn.Flatten)
    if _is_timm(net):
        skip += (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.AdaptiveAvgPool2d)
        pool = getattr(net, "global_pool", None)
        skip += (type(pool),) if isinstance(pool, nn.Module) else ()
    names: list[str] = []
    for name, child in net.named_children():
        if isinstance(child, skip):
            continue
        if name in _HEADS:
            continue  # the classifier head is not a stage
        inner = dict(child.named_children())
        if isinstance(inner.get("layers"), (nn.Sequential, nn.ModuleList)):
            name, child = f"{name}.layers", inner["layers"]
        blocks = name.rsplit(".", 1)[-1] in _CONTAINERS or isinstance(child, nn.ModuleList)
        if blocks and len(child) > 1:
            names += [f"{name}.{n}" for n, c in child.named_children() if not isinstance(c, skip)]
        else:
            names.append(name)
    names = names or [n for n, _ in net.named_children()]
    return [prefix + n for n in names]


def resolve_layers(model: nn.Module, layers: str | Sequence[str]) -> list[str]:
    """Map names and aliases to module names; ``"all"``/``"stages"`` gives :func:`default_layers`;
    ``"output"`` is the network's own output (unless a module has that name).

    Raises :class:`LayerNotFound` naming the closest valid names.
    """
    if isinstance(layers, str):
        layers = [s.strip() for s in layers.split(",") if s.strip()]
    if list(layers) in (["all"], ["stages"]):
        return default_layers(model)
    if not layers:
        raise LayerNotFound("no layers given: name one or more, or 'all' for every stage")
    net = unwrap(model)
    modules = dict(net.named_modules())
    modules.pop("", None)
    alias = aliases(model)
    out = []
    for layer in layers:
        if layer in modules or layer == "output":  # "output": the net's own output (logits)
            name = layer
        elif layer.lower() in alias:
            name = alias[layer.lower()]
        else:
            label = getattr(model, "name", type(net).__name__)
            close = difflib.get_close_matches(layer, list(alias) + list(modules), n=3, cutoff=0.5)
            hint = f"; closest: {', '.join(close)}" if close else ""
            raise LayerNotFound(
                f"{layer!r} is not a layer of {label}{hint} (`layerscope layers {label}` lists all)"
            )
        if name not in out:
            out.append(name)
    return out


class _StopForward(Exception):
    pass


@contextmanager
def hooked(pairs: Iterable[tuple[nn.Module, Callable]]) -> Iterator[None]:
    """Register forward hooks for the duration of a block; they are always removed."""
    handles = []
    try:
        for module, hook in pairs:
            handles.append(module.register_forward_hook(hook))
        yield
    finally:
        for h in handles:
            h.remove()


@contextmanager
def replaced_output(
    model: nn.Module, layer: str, fn: Callable[[torch.Tensor], torch.Tensor]
) -> Iterator[None]:
    """Within the block, ``layer``'s output ``o`` is replaced by ``fn(o)`` in every forward
    (ablations, interventions). The hook is always removed."""
    name = resolve_layers(model, [layer])[0]
    module = unwrap(model).get_submodule(name)

    def hook(_m, _i, output):
        return fn(output)

    with hooked([(module, hook)]):
        yield


def _first_tensor(out):
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    return None


def _forward_checked(model: nn.Module, x: torch.Tensor) -> None:
    """``model(x)`` in eval mode (a train-mode module's BatchNorm statistics stay as they
    are), with a clear error for an image too small for the model."""
    try:
        with evaluating(model):
            model(x)
    except _StopForward:
        pass
    except RuntimeError as exc:
        msg = str(exc)
        if "mat1 and mat2 shapes cannot be multiplied" in msg:
            built = getattr(model, "input_size", None)
            fix = f"use --size {built}" if built else "use the input size it was built for"
            raise ImageError(
                f"{getattr(model, 'name', 'this model')} has fully connected layers and does not "
                f"take {x.shape[-2]}×{x.shape[-1]} images ({msg.splitlines()[0][:80]}): {fix} "
                "(a fully connected net takes one size only: no octaves of other sizes)"
            ) from exc
        if any(
            s in msg for s in ("smaller than kernel", "Kernel size can't", "Output size is too")
        ):
            raise ImageError(
                f"a {x.shape[-2]}×{x.shape[-1]} image is too small for "
                f"{getattr(model, 'name', 'this model')} ({msg.splitlines()[0][:100]}): use a "
                "larger --size"
            ) from exc
        raise
    except AssertionError as exc:  # fixed-size models (ViT) assert their input size
        msg = str(exc).splitlines()[0][:100] if str(exc) else "an input-size assertion failed"
        found = re.search(r"[Ee]xpected (\d+)|model \((\d+)", msg)
        size = next((g for g in found.groups() if g), None) if found else None
        fix = f"use --size {size}" if size else "use the input size it was built for"
        raise ImageError(
            f"{getattr(model, 'name', 'this model')} needs a fixed input size and does not take "
            f"{x.shape[-2]}×{x.shape[-1]} ({msg}): {fix}"
        ) from exc


def _tapped_forward(
    model: nn.Module,
    x: torch.Tensor,
    capture: dict[str, slice],
    narrow: set[str] = frozenset(),
    transform: Callable[[str, torch.Tensor], Any] | None = None,
) -> dict[str, Any]:
    """Run ``model(x)``, capturing rows ``capture[name]`` of each named layer's first output.

    After a layer in ``narrow`` the batch continues with the rows after its captured slice
    only (the caller guarantees the layer is a cut point). Stops once every layer is captured.
    ``transform(name, output)`` runs inside the hook and its result is kept instead of a copy
    of the output (which is then freed as the forward goes on); it must not return a view.
    """
    net = unwrap(model)
    modules = dict(net.named_modules())
    modules.setdefault("output", net)  # "output": the whole network's output
    out: dict[str, torch.Tensor] = {}
    state = {"offset": 0}

    def make_hook(name: str):
        sl = capture[name]

        def hook(_module, _inputs, output):
            if name in out:
                return None
            t = _first_tensor(output)
            if t is None:
                raise LayerNotFound(f"layer {name!r} does not output a tensor")
            off = state["offset"]
            start = None if sl.start is None else sl.start - off
            stop = None if sl.stop is None else sl.stop - off
            if transform is not None:  # runs before any later in-place op can touch t
                out[name] = transform(name, t[start:stop])
            else:  # clone: a later in-place op (ReLU(inplace=True) after BN) must not alter it
                out[name] = t[start:stop].clone()
            if len(out) == len(capture):
                raise _StopForward
            if name in narrow and sl.stop is not None and isinstance(output, torch.Tensor):
                state["offset"] = sl.stop
                return output[sl.stop - off :]
            return None

        return hook

    with hooked((modules[name], make_hook(name)) for name in capture):
        _forward_checked(model, x)
    missing = [n for n in capture if n not in out]
    if missing:
        raise LayerNotFound(f"layers {missing} were never called in the forward pass")
    return out


#: where a layer's output keeps its channels (units)
LAYOUTS = ("auto", "nchw", "nhwc", "tokens")


def channel_layout(acts: torch.Tensor, layout: str = "auto") -> str:
    """``nchw`` (convolutions), ``nhwc`` (e.g. Swin's stages) or ``tokens`` ((n, tokens,
    features): ViT blocks) for a batch of activations. ``auto``: 2-D and 4-D maps whose dims
    2 and 3 are equal are ``nchw``; 4-D with dims 1 and 2 equal (and not 3) ``nhwc``; 3-D
    ``tokens``. Pass it explicitly for non-square inputs."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, not {layout!r}")
    if layout != "auto":
        return layout
    if acts.dim() == 3:
        return "tokens"
    if acts.dim() == 4 and acts.shape[1] == acts.shape[2] != acts.shape[3]:
        return "nhwc"
    return "nchw"


def channel_axis(acts: torch.Tensor, layout: str = "auto") -> int:
    """The axis of ``acts`` (batch first) that holds the channels: 1, or the last one."""
    if acts.dim() == 2 or channel_layout(acts, layout) == "nchw":
        return 1
    return acts.dim() - 1


def read_unchecked(
    model: nn.Module,
    x: torch.Tensor,
    layers: str | Sequence[str],
    backend: str = "hooks",
    transform: Callable[[str, torch.Tensor], Any] | None = None,
) -> dict[str, Any]:
    """``O_l(x)`` for each layer: a truncated forward that stops after the deepest one. The
    engine's reader, without the input guard of :func:`read_layers` (``ls.activations``),
    for inputs the engine has made itself.

    ``transform(name, output)``: keep its result instead of the activation, computed as the
    layer runs, so that a batch never holds every layer's activations at once (what the
    similarity statistics use). ``backend="fx"`` uses torchvision's
    ``create_feature_extractor`` (traceable models only).
    """
    names = resolve_layers(model, layers)
    if backend == "fx":
        feats = traced_forward(model, x, names)
        return {n: transform(n, v) for n, v in feats.items()} if transform else feats
    if backend != "hooks":
        raise ValueError(f"backend must be 'hooks' or 'fx', not {backend!r}")
    return _tapped_forward(model, x, {n: slice(None) for n in names}, transform=transform)


_EXTRACTORS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def feature_extractor(model: nn.Module, layers: tuple[str, ...]) -> nn.Module:
    """torchvision's FX feature extractor returning ``layers`` (cached per network and layer
    set); raises whatever FX raises for a model it cannot trace."""
    from torchvision.models.feature_extraction import create_feature_extractor

    net = unwrap(model)
    cache = _EXTRACTORS.setdefault(net, {})
    if layers not in cache:
        nodes = {n: n for n in layers if n != "output"}
        cache[layers] = create_feature_extractor(
            net, return_nodes=nodes or {"": "output"}, tracer_kwargs=tracer_kwargs()
        )
    return cache[layers]


def traced_forward(model: nn.Module, x: torch.Tensor, layers: Sequence[str]) -> dict:
    """The FX path of the layer reader: the whole batch through one feature extractor (no
    hooks, no early exit), which ``torch.compile`` captures whole. Layer names as resolved
    (no aliases); ``output`` is the network's own output. Eval-mode models only: the hooks
    path switches to eval mode per call, a traced graph cannot."""
    if unwrap(model).training:
        raise RuntimeError("the traced forward needs the model in eval mode")
    pre = model.preprocess(x) if isinstance(model, Model) else x
    inner = tuple(n for n in layers if n != "output")
    out = dict(feature_extractor(model, inner)(pre)) if inner else {}
    if "output" in layers:
        out["output"] = unwrap(model)(pre)
    return out


def read_layers(
    model: nn.Module,
    images: torch.Tensor,
    layers: str | Sequence[str],
    backend: str = "hooks",
    transform: Callable[[str, torch.Tensor], Any] | None = None,
) -> dict[str, Any]:
    """:func:`read_unchecked` behind the public API's input guard (``ls.activations``): a float
    ``N×C×H×W`` batch of pixels in [0, 1] (any float dtype, cast to the model's; one channel
    becomes three, as a grayscale file does); anything else is refused with the fix."""
    from .images import check_images

    images = check_images(images)
    param = next(iter(model.parameters()), None)
    if param is not None:  # float16 / float64 pixels in the model's own dtype and device
        images = images.to(param.device, param.dtype)
    if images.shape[1] == 1:  # a grayscale tensor becomes RGB, as a grayscale file does
        images = images.expand(-1, 3, -1, -1)
    return read_unchecked(model, images, layers, backend, transform)


def execution_order(model: nn.Module, x: torch.Tensor) -> dict[str, int]:
    """Each module's position in the forward pass (first call), from one probing forward
    (cached per model and input shape)."""
    net = unwrap(model)
    cache = _ORDER_CACHE.setdefault(net, {})
    key = (tuple(x.shape[1:]), x.dtype, str(x.device))
    if key not in cache:
        order = {n: p.position for n, p in _probe(model, x).items()}
        order.setdefault("output", len(order))  # the net's own output comes after every module
        cache[key] = order
    return cache[key]


@dataclass(frozen=True)
class _Probe:
    position: int
    shape: tuple[int, ...] | None
    calls: int


def _probe(model: nn.Module, x: torch.Tensor) -> dict[str, _Probe]:
    """One no-grad forward with a hook on every module: forward position (first call),
    output shape (first tensor output, no batch) and number of calls."""
    net = unwrap(model)
    first: dict[str, int] = {}
    shapes: dict[str, tuple[int, ...] | None] = {}
    calls: dict[str, int] = {}

    def make(name):
        def hook(_m, _i, output):
            calls[name] = calls.get(name, 0) + 1
            if name not in first:
                first[name] = len(first)
                t = _first_tensor(output)
                shapes[name] = tuple(t.shape[1:]) if t is not None else None

        return hook

    with hooked((m, make(n)) for n, m in net.named_modules() if n), torch.no_grad():
        _forward_checked(model, x)
    return {n: _Probe(first[n], shapes[n], calls[n]) for n in first}


def describe_layers(
    model: nn.Module, size: int | tuple[int, int] = 224, leaves: bool = False
) -> list[LayerInfo]:
    """Every module that runs, with its alias, type and output shape for an input of
    ``size``, in forward order; ``leaves=True`` keeps leaf modules only."""
    net = unwrap(model)
    h, w = (size, size) if isinstance(size, int) else size
    param = next(iter(model.parameters()), None)
    device = param.device if param is not None else torch.device("cpu")
    probe = _probe(model, torch.zeros(1, 3, h, w, device=device))
    modules = dict(net.named_modules())
    inverse = {n: a for a, n in aliases(model).items() if a != n}
    return [
        LayerInfo(name, inverse.get(name), type(modules[name]).__name__, p.shape, p.calls)
        for name, p in sorted(probe.items(), key=lambda kv: kv[1].position)
        if p.shape is not None and (not leaves or not any(True for _ in modules[name].children()))
    ]


# Per-module caches (weak: a cache entry dies with its model, so a reused id() never hits).
_CUT_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_ORDER_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def cut_points(model: nn.Module, layers: Sequence[str]) -> frozenset[str]:
    """The layers (module names) at which the batch may be narrowed: after the layer, the rest
    of the network uses no earlier value. Found on the FX graph; empty if tracing fails."""
    net = unwrap(model)
    cache = _CUT_CACHE.setdefault(net, {})
    key = tuple(layers)
    if key in cache:
        return cache[key]
    modules = dict(net.named_modules())
    # "output" (the net's own output) is last: nothing is left to narrow after it
    layers = [n for n in layers if n != "output" or n in modules]
    try:
        from torchvision.models.feature_extraction import create_feature_extractor

        graph = create_feature_extractor(
            net, return_nodes=list(layers), tracer_kwargs=tracer_kwargs()
        ).graph
    except Exception:
        cache[key] = frozenset()
        return cache[key]
    nodes = list(graph.nodes)
    output = next(n for n in nodes if n.op == "output")
    returned = output.args[0]
    position = {n: i for i, n in enumerate(nodes)}
    cuts = set()
    for layer in layers:
        node = returned.get(layer)
        if node is None:
            continue
        k = position[node]
        live_after = any(
            position[u] > k for n in nodes[:k] for u in n.users if u is not output and n is not node
        )
        if not live_after:
            cuts.add(layer)
    cache[key] = frozenset(cuts)
    return cache[key]


def staged_forward(
    model: nn.Module,
    x: torch.Tensor,
    groups: Sequence[tuple[str, int]],
    cuts: frozenset[str] | None = None,
) -> dict[str, torch.Tensor]:
    """Rows of ``x`` laid out group by group (``groups`` = (layer, rows) in forward order):
    each group's rows are captured at its layer, and at cut points the batch continues
    without the rows already captured. Returns layer → activations of its rows."""
    if cuts is None:
        cuts = cut_points(model, [g for g, _ in groups])
    capture: dict[str, slice] = {}
    start = 0
    for layer, n in groups:
        capture[layer] = slice(start, start + n)
        start += n
    if start != x.shape[0]:
        raise ValueError(f"groups cover {start} rows but the batch has {x.shape[0]}")
    return _tapped_forward(model, x, capture, narrow=set(cuts))
