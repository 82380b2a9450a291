"""Errors that are part of the interface: each says what went wrong and names the fix.

A message names options the way the caller spelled them: on the command line as flags
(``--blur-kernel``), from Python as the config field (``kernel_size``). Messages are written
with flags; :data:`SPELLINGS` (filled by :mod:`layerscope.options` as studies declare their
options) turns them into field names unless :data:`COMMAND_LINE` is set (the CLI sets it
while it runs).
"""

from __future__ import annotations

import re
from contextvars import ContextVar

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


#: flag → the config field names it sets, over every study (filled by layerscope.options)
SPELLINGS: dict[str, set[str]] = {}
#: True while the command line runs: messages keep their flags
COMMAND_LINE: ContextVar[bool] = ContextVar("command_line", default=False)
_FLAG = re.compile(r"--[a-z][a-z0-9-]*")


def spell(text: str) -> str:
    """``text`` with each known flag as a Python caller names it (the field it sets; the
    option's own name where studies use different fields for one flag)."""

    def field(match: re.Match) -> str:
        flag = match.group(0)
        names = SPELLINGS.get(flag)
        if not names:
            return flag
        return next(iter(names)) if len(names) == 1 else flag[2:].replace("-", "_")

    return _FLAG.sub(field, text)


class LayerscopeError(Exception):
    """Base class: a one-line message a user can act on (the CLI prints it without a traceback).
    Outside the command line its flags read as config fields (see :func:`spell`)."""

    def __str__(self) -> str:
        text = super().__str__()
        return text if COMMAND_LINE.get() else spell(text)


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
