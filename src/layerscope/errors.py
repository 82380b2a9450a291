"""Errors that are part of the interface: each says what went wrong and names the fix."""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "ImageError",
    "Interrupted",
    "LayerNotFound",
    "LayerscopeError",
    "ModelNotFound",
    "WeightsError",
    "WeightsUnavailable",
]


class LayerscopeError(Exception):
    """Base class: a one-line message a user can act on (the CLI prints it without a traceback)."""


class ModelNotFound(LayerscopeError):
    """The model name is not in any registry (torchvision, timm, built-in)."""


class LayerNotFound(LayerscopeError):
    """A layer name matches no module or alias of the model."""


class WeightsUnavailable(LayerscopeError):
    """Pretrained weights were asked for but are neither cached nor downloadable."""


class WeightsError(LayerscopeError):
    """A checkpoint is missing, unreadable or does not fit the model."""


class ImageError(LayerscopeError, ValueError):
    """An image is missing, corrupt, or too small for the model."""


class Interrupted(LayerscopeError):
    """Ctrl-C during a run: the message says what was kept and how to continue (exit 130)."""


class ConfigError(LayerscopeError, ValueError):
    """An option or config value is out of its range; the message names the option and the fix."""
