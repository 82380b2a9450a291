"""A recipe as data: its TOML read and checked (every key, type and table path before
anything runs), its scales and configs, its expectations and how each decides on a run's
rows (:class:`Expectation`, :class:`Outcome`). Running a recipe is
:mod:`layerscope.recipes`."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from ...core.config import loads_toml
from ...core.errors import ConfigError
from ...core.tables import read_csv

RELATIONS = ("<", ">", "within", "increasing", "decreasing", "above")
SCALES = ("cpu", "paper")
HOLDS, FAILS, UNCHECKED = "holds", "does not hold", "could not check"
#: the verdict of a recipe whose run ended in an error (a divergence, an error of its study)
NOT_RUN = "could not run"


def _matches(row: dict, where: dict) -> bool:
    for column, wanted in where.items():
        values = wanted if isinstance(wanted, list) else [wanted]
        if str(row.get(column)) not in {str(v) for v in values}:
            return False
    return True


#: the columns that name a row of a study's table (which net, image, layer, state, step)
_IDENTITY = ("model", "weights", "image", "layer", "source", "state", "mode", "made_by", "net",
             "measure", "reduce", "layer_a", "layer_b", "restart", "iteration", "epoch",
             "step")  # fmt: skip


def short_label(value: Any) -> Any:
    """A checkpoint path as a short label (``train-1a2b3c/epoch_004``: its run and epoch, never
    a machine path); anything else as it is."""
    if isinstance(value, str) and value.endswith((".safetensors", ".pt", ".pth")):
        path = Path(value)
        run = path.parent.parent.name if path.parent.name == "checkpoints" else path.parent.name
        return f"{run}/{path.stem}" if run else path.stem
    if isinstance(value, list):
        return [short_label(v) for v in value]
    return value


def _row_identity(row: dict) -> dict:
    return {k: short_label(row[k]) for k in _IDENTITY if k in row}


def _shown(where: dict | None) -> str:
    """A row filter as a message shows it (checkpoints by their short labels)."""
    return str({k: short_label(v) for k, v in (where or {}).items()})


def _number(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


@dataclass(frozen=True)
class Outcome:
    """One expectation checked: ``holds`` (True, False, or None when no row matched),
    ``measured`` (what was compared, in words and numbers)."""

    what: str
    relation: str
    holds: bool | None
    measured: str
    values: list = field(default_factory=list)
    paper_value: float | None = None
    #: the rows it read, by the columns that name a row (model, weights, image, layer, …;
    #: a checkpoint by its short label), and for ``above`` the other rows
    rows: list = field(default_factory=list)
    other_rows: list = field(default_factory=list)

    @property
    def verdict(self) -> str:
        return UNCHECKED if self.holds is None else HOLDS if self.holds else FAILS


@dataclass(frozen=True)
class Expectation:
    """A metric of some rows and how it must relate (see the module docstring)."""

    what: str
    metric: str
    relation: str
    rows: dict = field(default_factory=dict)
    than: str | None = None
    value: float | None = None
    tolerance: float = 0.0
    other: dict | None = None
    per: tuple[str, ...] = ()
    paper_value: float | None = None
    #: ``above``: the rows' mean must exceed ``factor`` × the other rows' mean (0.5: "keeps
    #: more than half of it"; 5: "at least five times")
    factor: float = 1.0
    #: ``<``/``>``: compare the selected rows' means instead of every row
    mean: bool = False

    def __post_init__(self) -> None:
        if self.relation not in RELATIONS:
            raise ConfigError(
                f"expectation {self.what!r}: relation must be one of {', '.join(RELATIONS)}, "
                f"not {self.relation!r}"
            )
        if self.relation in ("<", ">") and (self.than is None) == (self.value is None):
            raise ConfigError(f"expectation {self.what!r}: {self.relation} needs than or value")
        if self.relation == "within" and (self.value is None or not self.tolerance > 0):
            raise ConfigError(f"expectation {self.what!r}: within needs value and tolerance > 0")
        if self.relation == "above" and not self.other:
            raise ConfigError(f"expectation {self.what!r}: above needs other (a row filter)")
        if not self.factor > 0:
            raise ConfigError(f"expectation {self.what!r}: factor must be > 0")
        if not self.tolerance >= 0:
            raise ConfigError(f"expectation {self.what!r}: tolerance must be ≥ 0")

    def check(self, rows: list[dict]) -> Outcome:
        mine = [r for r in rows if _matches(r, self.rows)]
        out = {"what": self.what, "relation": self.relation, "paper_value": self.paper_value,
               "rows": [_row_identity(r) for r in mine]}  # fmt: skip
        if not mine:
            return Outcome(holds=None, measured=f"no row matches {_shown(self.rows)}", **out)
        got = [_number(r.get(self.metric)) for r in mine]
        if any(math.isnan(v) for v in got):
            return Outcome(holds=None, measured=f"{self.metric} missing or not a number", **out)
        if self.relation in ("<", ">"):
            if self.than is None:
                other = [float(self.value)] * len(mine)
            else:
                other = [_number(r.get(self.than)) for r in mine]
                if any(math.isnan(v) for v in other):
                    return Outcome(holds=None, measured=f"{self.than} missing or not a number",
                                   **out)  # fmt: skip
            pairs = list(zip(got, other, strict=True))
            if self.mean:  # the rows' means compared, not every row
                pairs = [(sum(got) / len(got), sum(other) / len(other))]
            ok = all((a < b) if self.relation == "<" else (a > b) for a, b in pairs)
            right = self.than or f"{self.value:g}"
            shown = ", ".join(f"{a:.4g} {self.relation} {b:.4g}" for a, b in pairs)
            shown = f"mean over {len(got)} rows {shown}" if self.mean else shown
            return Outcome(holds=ok, measured=f"{self.metric} vs {right}: {shown}",
                           values=pairs, **out)  # fmt: skip
        if self.relation == "within":
            ok = [abs(a - self.value) <= self.tolerance * abs(self.value) for a in got]
            shown = ", ".join(f"{a:.4g}" for a in got)
            return Outcome(holds=all(ok), values=got, measured=f"{self.metric} {shown} (want "
                           f"{self.value:g} ± {self.tolerance:.0%})", **out)  # fmt: skip
        if self.relation == "above":
            others = [r for r in rows if _matches(r, self.other)]
            theirs = [_number(r.get(self.metric)) for r in others]
            out["other_rows"] = [_row_identity(r) for r in others]
            if not theirs:
                return Outcome(holds=None, measured=f"no row matches {_shown(self.other)}", **out)
            if any(math.isnan(v) for v in theirs):
                gone = f"{self.metric} of {_shown(self.other)} missing or not a number"
                return Outcome(holds=None, measured=gone, **out)
            a, b = sum(got) / len(got), sum(theirs) / len(theirs)
            times = "" if self.factor == 1 else f"{self.factor:g} × "
            return Outcome(holds=a > self.factor * b, values=[a, b],
                           measured=f"mean {self.metric} {a:.4g} ({_shown(self.rows)}) vs "
                           f"{times}{b:.4g} ({_shown(self.other)})", **out)  # fmt: skip
        groups: dict[tuple, list[float]] = {}
        for r, v in zip(mine, got, strict=True):
            groups.setdefault(tuple(str(r.get(c)) for c in self.per), []).append(v)
        ok, shown = True, []
        for key, seq in groups.items():
            up = self.relation == "increasing"
            slack = self.tolerance
            good = all(
                (b >= a * (1 - slack) if up else b <= a * (1 + slack)) and (b != a or slack > 0)
                for a, b in itertools.pairwise(seq)
            )
            ok = ok and good and len(seq) > 1
            label = "/".join(key) + ": " if key else ""
            shown.append(label + " → ".join(f"{v:.3g}" for v in seq))
        return Outcome(holds=ok, values=list(groups.values()),
                       measured=f"{self.metric}: " + "; ".join(shown), **out)  # fmt: skip


@dataclass(frozen=True)
class Scale:
    config: dict
    note: str = ""
    #: options of a ``train`` run this scale needs first (its checkpoint is ``{trained}`` in
    #: the config and the row filters), or several by name (``{trained:NAME}``), or None
    train: dict | None = None


@dataclass(frozen=True)
class Recipe:
    id: str
    title: str
    source: str
    claim: str
    study: str
    table: str
    scales: dict[str, Scale]
    expect: tuple[Expectation, ...]
    last_of: tuple[str, ...] = ()
    last: bool = False
    path: Path | None = None

    @property
    def seed(self) -> str:
        """The source's citation under its older name (recipe files once called it ``seed``)."""
        return self.source

    @property
    def hash(self) -> str:
        """A short hash of the recipe's file: an edited copy differs from the shipped one."""
        import hashlib

        text = self.path.read_bytes() if self.path is not None else self.id.encode()
        return hashlib.sha1(text).hexdigest()[:12]

    def scale(self, scale: str) -> Scale:
        if scale not in self.scales:
            raise ConfigError(
                f"recipe {self.id} has no {scale!r} scale: choose from {', '.join(self.scales)}"
            )
        return self.scales[scale]

    def config(self, scale: str = "cpu", sets: dict | None = None, names: dict | None = None):
        """The study's config at ``scale`` with ``sets`` (option → value) on top; ``names``
        fill the placeholders (:func:`placeholders`; unfilled: stand-ins that validate)."""
        from ...studies import get_study

        names = names or placeholders(dict.fromkeys(self.train_configs(scale)))
        values = _fill(dict(self.scale(scale).config) | dict(sets or {}), names)
        return get_study(self.study).configure(values)

    def train_configs(self, scale: str = "cpu") -> dict:
        """The ``train`` configs of the nets this scale needs first, by name: ``""`` for one
        ``train = {...}`` (``{trained}``), each name of ``[scale.X.train.NAME]`` tables
        (``{trained:NAME}``) otherwise; empty when it needs none."""
        from ...studies import get_study

        wanted = self.scale(scale).train
        if not wanted:
            return {}
        study = get_study("train")
        if all(isinstance(v, dict) for v in wanted.values()):
            return {name: study.configure(dict(v)) for name, v in wanted.items()}
        return {"": study.configure(dict(wanted))}

    def train_config(self, scale: str = "cpu"):
        """The ``train`` config of the one net this scale needs first, or None."""
        return self.train_configs(scale).get("")

    def rows(self, run_dir: Path) -> list[dict]:
        """The rows of the run's ``table`` (several, comma separated: each row tagged with
        its file's folder as ``source``, e.g. ``blur`` and ``noblur`` of training-effect)."""
        names = [t.strip() for t in self.table.split(",")]
        rows = []
        for name in names:
            source = Path(name).parent.name or Path(name).stem
            if not (Path(run_dir) / name).is_file():
                raise ConfigError(
                    f"recipe {self.id}: the run {run_dir} holds no {name} (its study writes "
                    "other files): fix the recipe's table; the run is kept"
                )
            for r in read_csv(Path(run_dir) / name):
                rows.append(r | {"source": source} if len(names) > 1 else r)
        if self.last_of:
            last: dict[tuple, dict] = {}
            for r in rows:
                last[tuple(str(r.get(c)) for c in self.last_of)] = r
            rows = list(last.values())
        return rows[-1:] if self.last else rows

    def judge(self, run_dir: Path, names: dict | None = None) -> list[Outcome]:
        rows = self.rows(run_dir)
        return [_filled(e, names).check(rows) for e in self.expect]


def placeholders(checkpoints: Path | dict | None = None) -> dict[str, str]:
    """What a recipe's ``{trained}`` (the checkpoint of the net its scale trains first) and
    ``{trained_run}`` (that training run's directory, for studies that read a whole run)
    stand for; with several named nets, ``{trained:NAME}`` and ``{trained_run:NAME}``.
    ``checkpoints``: one path, or paths by name (``""`` the unnamed net); a name without a
    path gets stand-ins (a config still validates)."""
    if not isinstance(checkpoints, dict):
        checkpoints = {"": checkpoints}
    out = {}
    for name, ckpt in checkpoints.items():
        tag = f":{name}" if name else ""
        if ckpt is None:
            out |= {f"trained{tag}": f"TRAINED{tag.upper()}",
                    f"trained_run{tag}": f"TRAINED_RUN{tag.upper()}"}  # fmt: skip
        else:
            out |= {f"trained{tag}": str(ckpt), f"trained_run{tag}": str(Path(ckpt).parent.parent)}
    return out


def _fill(value: Any, names: dict | None) -> Any:
    """Every ``{name}`` of ``names`` in strings (and lists, dicts of them) replaced."""
    names = names or placeholders()
    if isinstance(value, str):
        for key, filled in names.items():
            value = value.replace("{" + key + "}", filled)
        return value
    if isinstance(value, list):
        return [_fill(v, names) for v in value]
    if isinstance(value, dict):
        return {k: _fill(v, names) for k, v in value.items()}
    return value


def _filled(e: Expectation, names: dict | None) -> Expectation:
    from dataclasses import replace

    return replace(e, rows=_fill(e.rows, names), other=_fill(e.other, names))


#: a recipe's keys and what each holds (the schema every recipe is checked against on load)
_TOP = {"id": str, "title": str, "source": str, "seed": str, "claim": str, "study": str,
        "table": str, "last_of": list, "last": bool, "scale": dict, "expect": list}  # fmt: skip
_SCALE = {"note": str, "config": dict, "train": dict}
_NUMBER = (int, float)
_EXPECT = {"what": str, "metric": str, "relation": str, "rows": dict, "than": str,
           "value": _NUMBER, "tolerance": _NUMBER, "other": dict, "per": (list, str),
           "paper_value": _NUMBER, "seed_value": _NUMBER, "factor": _NUMBER,
           "mean": bool}  # fmt: skip
_NAMES = {str: "a string", bool: "true or false", dict: "a table", list: "a list",
          _NUMBER: "a number", (list, str): "a list of column names"}  # fmt: skip


def _check_keys(where: str, data: Any, schema: dict, required: tuple[str, ...] = ()) -> None:
    """``data`` is a table of ``schema``'s keys, each of its type (a bool is not a number),
    with every ``required`` key: else one line naming the recipe, the key and the fix."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a table, not {data!r}")
    unknown = sorted(set(data) - set(schema))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}: the keys are "
                          f"{', '.join(schema)}")  # fmt: skip
    missing = [k for k in required if k not in data]
    if missing:
        raise ConfigError(f"{where} lacks {missing[0]!r}")
    for key, value in data.items():
        kind = schema[key]
        bad = isinstance(value, bool) and kind is not bool and bool not in (
            kind if isinstance(kind, tuple) else (kind,))  # fmt: skip
        if bad or not isinstance(value, kind):
            raise ConfigError(f"{where}: {key} must be {_NAMES[kind]}, not {value!r}")


def _check_filter(where: str, key: str, rows: Any) -> None:
    """A row filter: column = value, or column = [values]; values are strings or numbers."""
    for column, wanted in (rows or {}).items():
        for v in wanted if isinstance(wanted, list) else [wanted]:
            if isinstance(v, (dict, list)):
                raise ConfigError(f"{where}: {key}.{column} must be a value or a list of "
                                  f"values, not {wanted!r}")  # fmt: skip


def _check_table(where: str, table: str) -> None:
    """The run's files the expectations read: names inside the run (no absolute path, no ..)."""
    for name in table.split(","):
        part = Path(name.strip())
        if not name.strip() or part.is_absolute() or ".." in part.parts:
            raise ConfigError(f"{where}: table {name.strip()!r} must name a file inside the run "
                              "(summary.csv, blur/summary.csv), not a path outside it")  # fmt: skip


def _expectation(e: dict) -> dict:
    """An [[expect]] table as Expectation's fields (``per`` as columns; ``seed_value``, the
    older name of ``paper_value``)."""
    out = {k: v for k, v in e.items() if k != "seed_value"} | {"per": _columns(e.get("per", []))}
    if "seed_value" in e and "paper_value" not in e:
        out["paper_value"] = e["seed_value"]
    return out


def _columns(per: list | str) -> tuple[str, ...]:
    """``per`` as columns: one name is one column (not its letters)."""
    return (per,) if isinstance(per, str) else tuple(per)


def _recipe_from(data: dict, path: Path | None = None) -> Recipe:
    """A recipe from its TOML table, checked against the schema first (every key, its type,
    the study, the relations), so a faulty recipe is refused before anything trains."""
    where = f"recipe {path.name if path else data.get('id', '?')}"
    _check_keys(where, data, _TOP, ("scale", "expect", "id", "title", "claim", "study"))
    from ...studies import get_study

    get_study(data["study"])  # an unknown study lists the known ones
    _check_table(where, data.get("table", "summary.csv"))
    if not data["scale"]:
        raise ConfigError(f"{where} has no scale: add [scale.cpu] with its config")
    for name, sc in data["scale"].items():
        _check_keys(f"{where}, scale {name}", sc, _SCALE)
    if not data["expect"]:
        raise ConfigError(f"{where} expects nothing: add an [[expect]] table")
    for i, e in enumerate(data["expect"], 1):
        here = f"{where}, expectation {i}"
        _check_keys(here, e, _EXPECT, ("what", "metric", "relation"))
        for key in ("rows", "other"):
            _check_filter(here, key, e.get(key))
        per = e.get("per", [])
        if isinstance(per, list) and not all(isinstance(c, str) for c in per):
            raise ConfigError(f"{here}: per must be a list of column names, not {per!r}")
    if not all(isinstance(c, str) for c in data.get("last_of", [])):
        raise ConfigError(f"{where}: last_of must be a list of column names")
    scales = {name: Scale(dict(sc.get("config", {})), sc.get("note", ""), sc.get("train"))
              for name, sc in data["scale"].items()}  # fmt: skip
    expect = tuple(Expectation(**_expectation(e)) for e in data["expect"])
    return Recipe(
        id=data["id"], title=data["title"], source=data.get("source", data.get("seed", "")),
        claim=data["claim"], study=data["study"], table=data.get("table", "summary.csv"),
        scales=scales, expect=expect, last_of=tuple(data.get("last_of", ())), path=path,
        last=bool(data.get("last", False)),
    )  # fmt: skip


def _load(path: Path) -> Recipe:
    return _recipe_from(loads_toml(path.read_text(), where=f"recipe {path}"), path)


def recipes() -> dict[str, Recipe]:
    """Every shipped recipe by id, in file order."""
    folder = resources.files(__package__)  # the TOML files sit beside this module
    out = {}
    for entry in sorted(folder.iterdir(), key=lambda p: p.name):
        if entry.name.endswith(".toml"):
            recipe = _load(Path(str(entry)))
            out[recipe.id] = recipe
    return out


def load_recipe(name: str | Path) -> Recipe:
    """A shipped recipe by id (``IV-3``, case-insensitive), or a recipe file's path."""
    path = Path(name)
    if path.suffix == ".toml" and path.is_file():
        return _load(path)
    every = recipes()
    found = {k.lower(): v for k, v in every.items()}.get(str(name).lower())
    if found is None:
        raise ConfigError(f"no recipe {name!r}: the recipes are {', '.join(every)} "
                          "(layerscope reproduce --list)")  # fmt: skip
    return found
