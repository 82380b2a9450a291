"""Study configs as plain data: every study's config is a dataclass that derives from
:class:`Config`, the single place its defaults and validation live, and that round-trips to and
from plain dicts (``config.json``) and TOML (recipes, sweeps).

A config may nest other dataclasses (``DepthConfig.inversion`` is an ``InversionConfig``, whose
``lr`` is a ``Schedule``): :meth:`Config.from_dict` rebuilds them from the field types, so a
new field needs no code here. Fields are addressed by dotted paths (``inversion.iterations``).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

from .errors import ConfigError

__all__ = [
    "Config",
    "at_least",
    "config_from_dict",
    "config_hash",
    "config_to_dict",
    "dumps_toml",
    "flatten",
    "get_path",
    "has_path",
    "loads_toml",
    "set_path",
]

C = TypeVar("C")


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _dataclass_in(tp: Any) -> type | None:
    """The dataclass a field holds (``X``, ``X | None``), else None."""
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return tp
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        found = [a for a in typing.get_args(tp) if dataclasses.is_dataclass(a)]
        return found[0] if len(found) == 1 else None
    return None


def _is_tuple(tp: Any) -> bool:
    if typing.get_origin(tp) is tuple:
        return True
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return any(typing.get_origin(a) is tuple for a in typing.get_args(tp))
    return False


def config_to_dict(config: Any) -> dict:
    """A (nested) dataclass as plain JSON-able data (tuples become lists)."""

    def plain(v):
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return plain(dataclasses.asdict(config))


def config_from_dict(cls: type[C], data: dict, strict: bool = True, where: str = "") -> C:
    """Rebuild ``cls`` from :func:`config_to_dict`'s output. ``strict``: an unknown key is an
    error naming it and the known ones (a user's TOML); else it is ignored (a run directory
    written by another version)."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where or cls.__name__} must be a table of options, not {data!r}")
    hints = _hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in data if k not in names]
    if unknown and strict:
        raise ConfigError(
            f"unknown option{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(where + k for k in unknown)} for {cls.__name__}: known are "
            f"{', '.join(names)}"
        )
    kwargs = {}
    for name in names:
        if name not in data:
            continue
        value, tp = data[name], hints.get(name)
        inner = _dataclass_in(tp)
        if inner is not None and isinstance(value, dict):
            try:
                value = config_from_dict(inner, value, strict, f"{where}{name}.")
            except ConfigError as exc:  # a small object (a Schedule) does not know its name
                raw = str(exc.args[0]) if exc.args else ""
                if issubclass(inner, Config) or name in raw or _flag(name) in raw:
                    raise  # a Config names its own fields
                raise ConfigError(f"{_flag(name)}: {raw}") from exc
        elif _is_tuple(tp) and isinstance(value, list):
            value = tuple(value)
        kwargs[name] = value
    try:
        return cls(**kwargs)
    except TypeError as exc:  # a wrong type where a table or number was expected
        raise ConfigError(f"{where or cls.__name__}: {exc}") from exc


def get_path(config: Any, path: str) -> Any:
    """``get_path(cfg, "inversion.iterations")``; a missing step gives None."""
    for part in path.split("."):
        config = config.get(part) if isinstance(config, dict) else getattr(config, part, None)
    return config


def has_path(cls: type, path: str) -> bool:
    """Whether the dataclass ``cls`` has the (dotted) field ``path``."""
    head, _, rest = path.partition(".")
    names = {f.name for f in dataclasses.fields(cls)}
    if head not in names:
        return False
    if not rest:
        return True
    hint = _hints(cls).get(head)
    inner = _dataclass_in(hint)
    if inner is None:  # a free-form table (``data_params``) holds any key
        return "dict" in str(hint)
    return has_path(inner, rest)


def set_path(config: C, path: str, value: Any) -> C:
    """A copy of ``config`` with the field at ``path`` set (nested dataclasses copied too;
    the copy is validated again by each dataclass's ``__post_init__``)."""
    head, _, rest = path.partition(".")
    if not any(f.name == head for f in dataclasses.fields(config)):
        raise ConfigError(f"{type(config).__name__} has no option {head!r}")
    if rest:
        value = set_path(getattr(config, head), rest, value)
    return dataclasses.replace(config, **{head: value})


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` → ``{"a.b": 1}`` (the leaves of a config dict, by dotted path)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out |= flatten(v, f"{prefix}{k}.")
        else:
            out[f"{prefix}{k}"] = v
    return out


def at_least(low: float, default: Any = None, *, above: bool = False, factory=None) -> Any:
    """A dataclass field whose number (or each number of its list; None = unset) must be at
    least ``low`` (``above``: greater than ``low``), checked by every :class:`Config` with a
    one-line message naming the option and the valid range."""
    meta = {"min": low, "above": above}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _flag(field: str) -> str:
    """The flag that sets a field of this name, where exactly one does; else the name."""
    from .errors import SPELLINGS

    flags = [flag for flag, fields in SPELLINGS.items() if field in fields]
    own = "--" + field.replace("_", "-")
    if own in flags:  # --num-classes, not --noise-classes (which sets data_params.num_classes)
        return own
    return flags[0] if len(flags) == 1 else field


def may_be_empty(factory=list) -> Any:
    """A list field that may hold nothing (every other list field of a :class:`Config` must
    hold at least one entry: ``--growing ""`` is refused, not an IndexError later)."""
    return dataclasses.field(default_factory=factory, metadata={"empty": True})


_SIMPLE = {int: "a whole number", float: "a number", bool: "true or false", str: "a string"}


def _fits(value: Any, hint: Any) -> bool | None:
    """Whether ``value`` has the type ``hint`` names: True / False, or None where the hint is
    not a simple one (a nested config, a Schedule, Any) and the field checks itself. A bool
    is not a number; a whole number is a float; a path is a string."""
    import os

    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        answers = [_fits(value, h) for h in typing.get_args(hint)]
        return True if True in answers else None if None in answers else False
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, (str, os.PathLike))
    if origin in (list, tuple) and typing.get_args(hint):
        if not isinstance(value, (list, tuple)):
            return False
        inner = typing.get_args(hint)[0]
        answers = [_fits(v, inner) for v in value]
        return False if False in answers else None if None in answers else True
    if origin is dict or hint is dict:
        return isinstance(value, dict)
    return None


def _describe(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(h) for h in typing.get_args(hint) if h is not type(None))
    if origin in (list, tuple):
        return f"a list of {_describe(typing.get_args(hint)[0]).removeprefix('a ')}s"
    return _SIMPLE.get(hint, getattr(hint, "__name__", str(hint)))


def _check_types(config: Any) -> None:
    """Refuse a value of the wrong type in any simple field (a number, a string, a bool, a
    list of them), wherever the config came from (Python, TOML, a grid, ``--set``): a bool
    is not a number (``iterations=True``), 2.5 is not a whole number, ``models=[10]`` holds
    no name. Named as the user typed it."""
    hints = _hints(type(config))
    for f in dataclasses.fields(config):
        value, hint = getattr(config, f.name), hints.get(f.name)
        if dataclasses.is_dataclass(value) and not isinstance(value, (Config, type)):
            try:  # a small object (a Schedule, the blur, the loss) has no checks of its own
                _check_types(value)
            except ConfigError as exc:
                raise ConfigError(f"{_flag(f.name)}: {exc}") from None
            continue
        if hint is not None and _fits(value, hint) is False:
            raise ConfigError(f"{_flag(f.name)} must be {_describe(hint)}, not {_shown(value)}")
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 2**63:
            raise ConfigError(f"{_flag(f.name)} {value} is too large (at most 2**63 − 1)")


def _shown(value: Any) -> str:
    """A wrong value as a message shows it: short (a module is named by its class, with the
    way to pass one)."""
    modules = [v for v in (value if isinstance(value, (list, tuple)) else [value])
               if hasattr(v, "named_modules") and hasattr(v, "state_dict")]  # fmt: skip
    if modules:
        return (f"a {type(modules[0]).__name__} module (a network object goes to "
                "ls.run_study(kind, model=net), which names it for the run)")  # fmt: skip
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


def _check_numbers(config: Any) -> None:
    """Refuse NaN and infinity in any number field (or list of numbers) of ``config``, and an
    empty list where the field needs entries, naming the field as the user typed it
    (``--reference-sigma``; from Python, the field); before that, a value of the wrong type
    (:func:`_check_types`)."""
    _check_types(config)
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if isinstance(value, (list, tuple)) and not value and not f.metadata.get("empty"):
            raise ConfigError(f"{_flag(f.name)} needs at least one value, not an empty list")
        values = value if isinstance(value, (list, tuple)) else [value]
        bad = [v for v in values if isinstance(v, float) and not math.isfinite(v)]
        if bad:
            raise ConfigError(f"{_flag(f.name)} must be a finite number, not {bad[0]!r}")
        low = f.metadata.get("min")
        if low is None:
            continue
        numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
        above = f.metadata.get("above")
        wrong = [v for v in numbers if (v <= low if above else v < low)]
        if wrong:
            bound = f"> {low:g}" if above else f"at least {low:g}"
            raise ConfigError(f"{_flag(f.name)} must be {bound}, not {wrong[0]:g}")


# ---------------------------------------------------------------- TOML

#: TOML has no null: fields that are None are listed under this key instead.
UNSET = "unset"


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):  # every control character escaped (JSON's escapes are TOML's)
        import json

        return json.dumps(v, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(v, (list, tuple)):
        if any(x is None for x in v):
            raise ConfigError(f"a list with an empty entry cannot be written as TOML: {v!r}")
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):  # an inline table (e.g. data_params)
        return "{" + ", ".join(f"{_key(k)} = {_toml_value(x)}" for k, x in v.items()) + "}"
    raise ConfigError(f"{v!r} ({type(v).__name__}) cannot be written as TOML")


def _key(k: str) -> str:
    bare = k.replace("_", "").replace("-", "")
    return k if bare.isascii() and bare.isalnum() else _toml_value(k)


def dumps_toml(config: Any) -> str:
    """A config dataclass as TOML: nested configs become tables, None fields are listed in
    ``unset`` (TOML has no null), free-form dicts (``data_params``) become inline tables."""
    lines: list[str] = []

    def table(obj: Any, name: str) -> None:
        if name:
            lines.append(f"\n[{name}]")
        nested, unset = [], []
        for f in dataclasses.fields(obj):
            v = getattr(obj, f.name)
            if dataclasses.is_dataclass(v):
                nested.append((f.name, v))
            elif v is None:
                unset.append(f.name)
            else:
                lines.append(f"{_key(f.name)} = {_toml_value(v)}")
        if unset:
            lines.append(f"{UNSET} = {_toml_value(unset)}")
        for k, v in nested:
            table(v, f"{name}.{k}" if name else k)

    table(config, "")
    return "\n".join(lines).lstrip("\n") + "\n"


def loads_toml(text: str, where: str = "TOML") -> dict:
    """TOML text → a config dict (the inverse of :func:`dumps_toml`)."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where} is not valid TOML: {exc}") from exc

    def restore(d: dict) -> dict:
        d = dict(d)
        for k in d.pop(UNSET, []):
            d[k] = None
        return {k: restore(v) if isinstance(v, dict) else v for k, v in d.items()}

    return restore(data)


class Config:
    """Mixin for a study's config dataclass: dict and TOML round trips, dotted-path access,
    and the checks every config shares, run before its own ``__post_init__``: every number
    is finite (NaN and infinity are never a setting)."""

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        own = cls.__dict__.get("__post_init__")

        def __post_init__(self) -> None:
            _check_numbers(self)
            if own is not None:
                own(self)

        cls.__post_init__ = __post_init__  # type: ignore[method-assign]

    def to_dict(self) -> dict:
        return config_to_dict(self)

    @classmethod
    def from_dict(cls: type[C], data: dict, strict: bool = False) -> C:
        return config_from_dict(cls, data, strict=strict)

    def to_toml(self) -> str:
        return dumps_toml(self)

    @classmethod
    def from_toml(cls: type[C], text: str, where: str = "TOML") -> C:
        """The inverse of :meth:`to_toml`; an unknown key is an error naming it."""
        return config_from_dict(cls, loads_toml(text, where), strict=True)

    @classmethod
    def read_toml(cls: type[C], path: str | Path) -> C:
        return cls.from_toml(Path(path).read_text(), str(path))

    def replace(self: C, **paths: Any) -> C:
        """A copy with fields set by dotted path:
        ``cfg.replace(**{"inversion.iterations": 20})``."""
        out = self
        for path, value in paths.items():
            out = set_path(out, path, value)
        return out


def config_hash(config: Any) -> str:
    """A short hash of a config's settings, its device left out: two recipes whose nets are
    trained by identical configs share one net, and a sweep's cell has one directory
    whatever sweep runs it. ``config``: a :class:`Config` or plain data."""
    import hashlib
    import json

    data = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    data.pop("device", None)
    return hashlib.sha1(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:12]
