"""Options: the names a user types for a study's settings, the same everywhere — command-line
flags (``--blur-kernel``), a recipe's ``--set blur_kernel=5`` or ``--set blur-kernel=5``, a
sweep grid's keys. Each :class:`Option` says which config field it sets and how a value (text
from a file or a command line, or an already typed value) becomes that field's plain data;
:func:`configure` applies options to a config's plain data and builds the config once, so
the config's own validation is the only validation.
"""

from __future__ import annotations

import csv
import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from ..core.config import config_from_dict, config_to_dict
from ..core.errors import ConfigError

__all__ = [
    "DATA_ROOT",
    "DEVICE",
    "Option",
    "configure",
    "defaults",
    "flag",
    "number",
    "pair",
    "params",
    "shared",
    "split_list",
]


@dataclass(frozen=True)
class Option:
    """One setting as a user types it.

    ``name``: snake_case (``blur_kernel``; typed ``--blur-kernel``, or ``blur-kernel`` /
    ``blur_kernel`` in ``--set`` and grids); ``path``: the config field it sets (default: the
    name; None with ``apply``); ``kind``: what a command line parses before ``parse``
    (``str``, ``int``, ``float``, ``bool``); ``parse``: the value → the field's plain data;
    ``apply(data, value)``: for an option that sets several fields (a preset); ``cli``: the
    flag's own spelling where it is not ``--name`` (``--class``); ``help``: one line."""

    name: str
    help: str
    path: str | None = ""
    kind: type = str
    parse: Callable[[Any], Any] | None = None
    apply: Callable[[dict, Any], None] | None = None
    cli: str | None = None

    def __post_init__(self) -> None:
        from ..core.errors import SPELLINGS

        target = self.field or self.name
        SPELLINGS.setdefault(self.flag, set()).add(target.rsplit(".", 1)[-1])

    @property
    def field(self) -> str | None:
        """The config path this option sets (None: several, through ``apply``)."""
        if self.apply is not None:
            return self.path or None
        return self.path or self.name

    @property
    def flag(self) -> str:
        return self.cli or "--" + self.name.replace("_", "-")


def split_list(value: Any) -> list[str] | None:
    """``a,b,c`` → ``["a", "b", "c"]`` (a list stays a list); a name with a comma goes in
    double quotes: ``'"a,b.png",c.png'``."""
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    try:
        items = next(csv.reader([str(value)], skipinitialspace=True, strict=True), [])
    except csv.Error as exc:
        raise ConfigError(f"{value!r}: unbalanced double quotes ({exc})") from exc
    return [v.strip() for v in items if v.strip()]


def number(value: Any) -> float:
    """``0.1``, ``1e-4``, or a fraction such as ``1/18``."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    text = str(value).strip()
    try:
        return float(Fraction(text)) if "/" in text else float(text)
    except (ValueError, ZeroDivisionError) as exc:
        raise ConfigError(f"{value!r} is not a number (e.g. 0.05 or 1/18)") from exc


def numbers(value: Any) -> list[float]:
    """``0.5,1,2`` → ``[0.5, 1.0, 2.0]``."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return [float(value)]
    return [number(v) for v in split_list(value) or []]


def integers(value: Any) -> list[int]:
    out = []
    for v in split_list(value) or []:
        try:
            out.append(int(v))
        except ValueError as exc:
            raise ConfigError(f"{v!r} is not a whole number") from exc
    return out


def pair(name: str) -> Callable[[Any], list[float]]:
    """A parser for ``START,END`` (one value: both ends), e.g. ``--lr 0.1,0.001``."""

    def parse(value: Any) -> list[float]:
        parts = list(value) if isinstance(value, (list, tuple)) else split_list(value) or []
        if len(parts) == 1:
            parts = parts * 2
        if len(parts) != 2:
            raise ConfigError(f"--{name} takes START,END (e.g. 2.4,0.4), not {value!r}")
        return [number(parts[0]), number(parts[1])]

    return parse


def params(value: Any) -> dict | None:
    """``xi=14,gap=2,norm=l2`` → ``{"xi": 14, "gap": 2, "norm": "l2"}`` (numbers parsed)."""
    from ..core.tables import parse_value

    if value is None or value == "":
        return None
    if isinstance(value, Mapping):
        return dict(value)
    out: dict = {}
    for item in split_list(value) or []:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(
                f"--data-params takes KEY=VALUE pairs (e.g. xi=14,gap=2), not {item!r}"
            )
        out[key.strip()] = parse_value(raw.strip())
    return out


def flag(value: Any) -> bool:
    """A yes/no value: a bool, or ``true``/``false``/``yes``/``no``/``1``/``0``."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "yes", "1", "on"):
        return True
    if text in ("false", "no", "0", "off"):
        return False
    raise ConfigError(f"{value!r} is not yes or no (true/false)")


def _typed(option: Option, value: Any) -> Any:
    """A value as the option's ``kind`` (text from a file or ``--set`` is converted)."""
    if option.kind is bool:
        return flag(value)
    if option.kind is int and not isinstance(value, int):
        try:
            f = number(value)
        except ConfigError:
            raise ConfigError(f"{option.flag} takes a whole number, not {value!r}") from None
        if not (math.isfinite(f) and f == int(f)):
            raise ConfigError(f"{option.flag} takes a whole number, not {value!r}")
        return int(f)
    if option.kind is float and not isinstance(value, float):
        return number(value)
    return value


def defaults(cls: type) -> dict:
    """A config class's defaults as plain data, without validating them (a study whose
    config needs a value, such as ``ablate``'s checkpoints, still has defaults for the rest)."""
    out = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            value = f.default
        elif f.default_factory is not dataclasses.MISSING:
            value = f.default_factory()
        else:
            continue
        out[f.name] = config_to_dict(value) if dataclasses.is_dataclass(value) else value
    return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}


def _set(data: dict, path: str, value: Any) -> None:
    *head, last = path.split(".")
    for part in head:
        if not isinstance(data.get(part), dict):
            data[part] = {}
        data = data[part]
    data[last] = value


def find(options: Sequence[Option], name: str) -> Option:
    """The option typed as ``name`` (``blur-kernel``, ``blur_kernel``, ``--blur-kernel``)."""
    key = name.strip().lstrip("-").replace("-", "_")
    for o in options:
        if key in (o.name, o.flag.lstrip("-").replace("-", "_")):
            return o
    known = ", ".join(o.name.replace("_", "-") for o in options)
    raise ConfigError(f"unknown option {name!r}: the options are {known}")


def configure(
    cls: type, options: Sequence[Option], values: Mapping[str, Any], base: Any = None
) -> Any:
    """``cls`` built from ``base`` (a config, plain data, or None: the defaults) with the
    options named in ``values`` applied, in the order of ``options`` (a preset before the
    settings it would otherwise reset)."""
    if base is None:
        data = defaults(cls)
    elif isinstance(base, Mapping):
        data = dict(base)
    else:
        data = base.to_dict()
    typed = {find(options, name).name: value for name, value in values.items()}
    for option in options:
        if option.name not in typed or typed[option.name] is None:
            continue
        value = _typed(option, typed[option.name])
        if option.parse is not None:
            value = option.parse(value)
        if option.apply is not None:
            option.apply(data, value)
        else:
            _set(data, option.field, value)
    return config_from_dict(cls, data, strict=True)


def spelled(options: Sequence[Option]) -> dict[str, str]:
    """Config path → the flags that set it (``inversion.iterations`` → ``--iterations``)."""
    out: dict[str, list[str]] = {}
    for o in options:
        if o.field:
            out.setdefault(o.field, []).append(o.flag)
    return {path: "/".join(flags) for path, flags in out.items()}


#: Options several studies share, declared once.
DEVICE = Option("device", "auto | cpu | cuda.")

#: The wording of the options every study spells the same: (one value, a comma separated list)
_SHARED = {
    "model": ("Model name (any `layerscope models` name)", "Model names, comma separated"),
    "weights": (
        "Weight state: none (untrained), imagenet or a checkpoint path",
        "Weight states, comma separated: none (untrained), imagenet or checkpoint paths",
    ),
    "layers": (
        "Layer name or alias (`layerscope layers MODEL`)",
        "Layer names or aliases, comma separated (`layerscope layers MODEL`)",
    ),
    "image": (
        "Image file or sample name (chelsea, coffee, astronaut, brick, …)",
        "Image files or sample names, comma separated (chelsea, coffee, astronaut, brick, …)",
    ),
    "data": (
        "Data set: photos | noise | digits | twopoints | folder:PATH | cifar10 | cifar100 | "
        "mnist | fashionmnist",
        "Data sets, comma separated: photos | noise | digits | twopoints | folder:PATH | …",
    ),
}


def shared(name: str, note: str = "", *, many: bool = False, path: str = "") -> Option:
    """The one declaration of a shared option (``model``, ``weights``, ``layers``, ``image``,
    ``data``): the same words in every study's ``--help``, the same parsing (``many``: a
    comma separated list); ``note``: what this study adds, e.g. its default; ``path``: the
    config field where it is not the name (``models``, ``images``)."""
    one, several = _SHARED[name]
    text = (several if many else one) + (f" ({note})" if note else "") + "."
    return Option(name, text, path, parse=split_list if many else None)


DATA_ROOT = Option("data_root", "Folder of torchvision data sets.")
