"""Recipes: every finding of the sources (Badger 2022 and his posts, Tomasini et al., Petrini et
al.) as a plain TOML file (shipped here, readable, copyable)
that names its study, its config at two scales and the expectations that decide, on every
run, whether the finding holds. ``layerscope reproduce ID`` runs one through the studies' one
lifecycle and writes ``verdict.json`` beside the run's results.

A recipe (``recipes/<id>.toml``)::

    id = "IV-3"
    title = "Gradient failure or non-uniqueness?"
    source = "Badger, \"Input Representations and Depth\" (author and title)"
    claim = "Badger's words for the finding"
    study = "depth"                   # a registered study kind
    table = "summary.csv"             # the run's file the expectations read
    last_of = ["part", "net"]         # optional: keep the last row of each such group

    [scale.cpu]                       # minutes on 2 cores; what it can and cannot show
    note = "..."
    config = { model = "resnet50", layers = "layer1,layer4", size = 64 }
    train = { model = "resnet18", data = "photos" }   # optional: a net trained first, {trained}
    # or several by name: [scale.cpu.train.NAME] tables, {trained:NAME}
    [scale.paper]                     # Badger's sizes, for a GPU
    config = { ... }

    [[expect]]
    what = "Conv5: m_g < m_r"
    metric = "embedding_distance"
    rows = { layer = "layer4" }       # which rows (column = value or a list of values)
    relation = "<"                    # < > within increasing decreasing above
    than = "reference_distance"       # another column of the same rows (or value = 3.0)

Config keys are spelled as the study's command-line options without their dashes (what
``--set`` takes). Relations: ``<``/``>`` hold when every selected row does (against ``than``
or ``value``; with ``mean = true`` when the rows' means do); ``within`` when every row is
within ``tolerance`` (relative) of ``value``;
``increasing``/``decreasing`` when the metric is monotone over the rows in the table's order
(each group of ``per`` columns on its own; ``tolerance`` allows a relative dip); ``above``
when the rows' mean exceeds the mean of the ``other`` rows (times ``factor``, default 1).
``paper_value`` records the source's own number where it gives one. A verdict is a result,
not an error.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from ...core.config import config_hash, loads_toml
from ...core.errors import ConfigError
from ...core.files import read_json, write_json
from ...core.tables import read_csv

__all__ = [
    "RELATIONS",
    "SCALES",
    "Expectation",
    "Outcome",
    "Recipe",
    "Verdict",
    "last_verdicts",
    "load_recipe",
    "placeholders",
    "recipes",
    "reproduce",
    "reproduce_all",
]

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
    folder = resources.files(__name__)
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


@dataclass(frozen=True)
class Verdict:
    recipe: str
    scale: str
    run: str
    outcomes: tuple[Outcome, ...]
    sets: dict = field(default_factory=dict)
    title: str = ""
    claim: str = ""
    #: why the recipe could not run (one line), or "" when it ran and was judged
    error: str = ""
    #: the hash of the recipe file judged (:attr:`Recipe.hash`): tells an edited copy
    recipe_hash: str = ""

    @property
    def verdict(self) -> str:
        if self.error:
            return NOT_RUN
        states = {o.verdict for o in self.outcomes}
        return FAILS if FAILS in states else UNCHECKED if UNCHECKED in states else HOLDS

    def to_dict(self) -> dict:
        return {
            "recipe": self.recipe, "title": self.title, "claim": self.claim,
            "scale": self.scale, "run": self.run, "sets": self.sets, "verdict": self.verdict,
            "expectations": [
                {"what": o.what, "relation": o.relation, "verdict": o.verdict,
                 "measured": o.measured, "values": _numbers(o.values),
                 "paper_value": o.paper_value, "rows": o.rows, "other_rows": o.other_rows}
                for o in self.outcomes
            ],
        } | ({"error": self.error} if self.error else {}) | (
            {"recipe_hash": self.recipe_hash} if self.recipe_hash else {})  # fmt: skip

    @classmethod
    def from_dict(cls, data: dict) -> Verdict:
        """A verdict as ``verdict.json`` holds it (what an earlier run judged)."""
        if not isinstance(data.get("expectations", []), list) or not all(
            isinstance(e, dict) for e in data.get("expectations", [])
        ):
            raise ConfigError("a verdict's expectations must be a list of objects")
        outcomes = tuple(
            Outcome(holds={HOLDS: True, FAILS: False}.get(e.get("verdict")),
                    measured=str(e.get("measured", "")), what=str(e.get("what", "")),
                    relation=str(e.get("relation", "")),
                    paper_value=e.get("paper_value", e.get("seed_value")),
                    rows=list(e.get("rows") or []), other_rows=list(e.get("other_rows") or []))
            for e in data.get("expectations", [])
        )  # fmt: skip
        return cls(str(data.get("recipe", "?")), str(data.get("scale", "")),
                   str(data.get("run", "")), outcomes, dict(data.get("sets") or {}),
                   str(data.get("title", "")), str(data.get("claim", "")),
                   str(data.get("error", "")), str(data.get("recipe_hash", "")))  # fmt: skip


def _numbers(values: list) -> list:
    """An outcome's values as JSON can hold them: numbers (NaN as None), pairs as lists."""
    out = []
    for v in values:
        if isinstance(v, (list, tuple)):
            out.append(_numbers(list(v)))
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out.append(None if isinstance(v, float) and math.isnan(v) else v)
        else:
            out.append(v if isinstance(v, (str, bool)) or v is None else str(v))
    return out


def trained_net(
    config, nets: str | Path, progress: bool = False, address: str | None = None
) -> Path:
    """The last checkpoint of a ``train`` run of ``config`` under ``nets/<hash>``: trained
    there when missing, resumed when interrupted, reused when finished (``address``: as a
    task on that Ray cluster)."""
    import time

    from ...core.progress import note
    from ...engine.training import DEFAULT_EPOCHS, latest_checkpoint
    from ...protocol.lifecycle import RunInUse
    from ...protocol.runs import is_finished
    from ...studies import get_study

    run_dir = Path(nets) / f"train-{config_hash(config)}"
    epochs = config.epochs if config.epochs is not None else DEFAULT_EPOCHS
    waited = False
    while True:
        ckpt = latest_checkpoint(run_dir)
        complete = ckpt is not None and _epoch(ckpt) >= epochs
        if is_finished(run_dir) and complete:
            return ckpt
        if is_finished(run_dir):  # its last epochs' files are gone: no state to go on from
            import shutil

            note(f"{run_dir} lost its last epochs' files: trained again from the start")
            shutil.rmtree(run_dir)
        # not trained, interrupted, or finished with its last epochs' files gone: trained
        # (on) from the last complete epoch it holds
        resume = (run_dir / "config.json").is_file()
        try:
            _execute(get_study("train"), config, run_dir, resume, progress, address)
            ckpt = latest_checkpoint(run_dir)
            if ckpt is None:  # pragma: no cover - a finished train run always has one
                raise ConfigError(f"{run_dir} holds no checkpoint: delete it and run again")
            return ckpt
        except RunInUse:  # another recipe trains this very net now: wait for it, then use it
            if not waited:
                note(f"waiting for another process to finish training {run_dir}")
                waited = True
            time.sleep(2.0)


def _epoch(ckpt: Path) -> int:
    """``epoch_007.safetensors`` → 7."""
    try:
        return int(ckpt.stem.rsplit("_", 1)[-1])
    except ValueError:
        return 0


def _execute(study, config, out, resume: bool, progress: bool, address: str | None,
             tags: dict | None = None) -> Path:  # fmt: skip
    """The lifecycle here, or as one task on the Ray cluster at ``address``."""
    from ...protocol.lifecycle import execute

    if address is None:
        return execute(study, config, out, resume, progress, tags=tags)
    from ..cluster import remote

    return remote(execute, study, config, Path(out).absolute(), resume, False, None, str, tags,
                  address=address)  # fmt: skip


def _identity(recipe: Recipe, scale: str, sets: dict) -> dict:
    """What makes a recipe's run that run: the recipe, its file's hash, the scale, the sets."""
    return {"recipe": recipe.id, "recipe_hash": recipe.hash,
            "scale": scale, "sets": {k: str(v) for k, v in sets.items()}}  # fmt: skip


def _stored_identity(out: Path) -> dict | None:
    cfg = out / "config.json"
    try:
        tags = read_json(cfg).get("tags") if cfg.is_file() else None
    except Exception:  # a damaged config.json: the lifecycle says so
        return None
    return tags if isinstance(tags, dict) and "recipe" in tags else None


def reproduce(
    name: str | Path,
    scale: str | None = None,
    sets: dict | None = None,
    out: str | Path | None = None,
    resume: bool = False,
    progress: bool = False,
    nets: str | Path | None = None,
    address: str | None = None,
) -> Verdict:
    """Run recipe ``name`` at ``scale`` (``sets``: options changed, as the command line
    spells them without dashes) through the study's lifecycle into ``out`` and judge it;
    ``verdict.json`` is written beside the results. A scale that needs a trained net trains
    it first under ``nets`` (default: ``nets/`` beside ``out``), or reuses the one an
    identical config trained there. ``address``: the net, then the run, as tasks on that Ray
    cluster (in this order; the verdict is judged here from what they saved). ``scale``:
    ``cpu`` by default; on ``resume`` the run's own scale and sets are kept, and ones given
    that differ from them are refused (as is another recipe's run)."""
    from ...studies import get_study

    recipe = load_recipe(name)
    study = get_study(recipe.study)
    stored = _stored_identity(Path(out)) if resume and out is not None else None
    if stored is not None:  # a resume continues the recipe run it started
        if stored["recipe"] != recipe.id:
            raise ConfigError(
                f"{out} holds a run of recipe {stored['recipe']}, not {recipe.id}: resume it "
                f"with `layerscope reproduce {stored['recipe']} --resume`, or choose another --out"
            )
        scale = scale or stored.get("scale", "cpu")
        sets = sets or dict(stored.get("sets") or {})
    scale = scale or "cpu"
    sets = dict(sets or {})
    recipe.scale(scale)  # an unknown scale is refused before anything runs
    out_given = out is not None
    if out_given:
        resume = resume and (Path(out) / "config.json").is_file()  # stopped in its net: starts
    if not resume:  # a bad --set, or a faulty config, is refused before any net trains
        recipe.config(scale, sets)
    if out is None:
        import datetime

        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        out = Path("runs") / f"{stamp}-reproduce-{recipe.id}-{scale}"
    out = Path(out)
    where = nets or out.parent / "nets"
    names = placeholders(
        {
            name: trained_net(train, where, progress, address)
            for name, train in recipe.train_configs(scale).items()
        }
    )
    config = None if resume else recipe.config(scale, sets, names)
    tags = _identity(recipe, scale, sets)
    run_dir = _execute(study, config, out, resume, progress, address, tags)
    verdict = Verdict(recipe.id, scale, str(run_dir), tuple(recipe.judge(run_dir, names)),
                      dict(sets or {}), recipe.title, recipe.claim,
                      recipe_hash=recipe.hash)  # fmt: skip
    write_json(Path(run_dir) / "verdict.json", verdict.to_dict())
    return verdict


def reproduce_all(
    scale: str = "cpu",
    sets: dict | None = None,
    out: str | Path | None = None,
    resume: bool = False,
    progress: bool = False,
    address: str | None = None,
    names: list[str | Path] | None = None,
    on_verdict: Callable[[Verdict], None] | None = None,
) -> list[Verdict]:
    """Every recipe (``names``: ids or files; default all shipped ones) at ``scale``, each in
    ``out/<id>-<scale>``. A recipe that cannot run (its net or its run diverges, its study
    raises) is recorded as ``could not run`` with the one-line reason in its
    ``verdict.json``, and the next one runs: one failure never ends the whole.
    ``resume``: recipes already judged are kept (a could-not-run one is tried again), an
    interrupted one resumes, the rest run. ``on_verdict`` sees each verdict as it comes."""
    from ...core.errors import Interrupted, LayerscopeError
    from ...protocol.runs import is_finished

    folder = Path(out) if out is not None else Path("runs") / "reproduce-all"
    chosen = [load_recipe(n) for n in (names if names is not None else list(recipes()))]
    wheres = {r.id: folder / f"{r.id}-{scale}" for r in chosen}
    if not resume:
        taken = [w for w in wheres.values() if w.exists() and any(w.iterdir())]
        if taken:
            raise ConfigError(
                f"{folder} already holds recipe runs ({taken[0].name}, …): pass --resume to go "
                "on from them, or choose another --out"
            )
    verdicts = []
    for recipe in chosen:
        where = wheres[recipe.id]
        judged = where / "verdict.json"
        earlier = _read_verdict(judged)
        if earlier is not None and earlier.verdict != NOT_RUN and is_finished(where):
            verdict = earlier  # judged before this resume: kept as it is
        else:
            if earlier is not None and not (where / "config.json").is_file():
                judged.unlink()  # our could-not-run record: the recipe runs afresh
            try:
                verdict = reproduce(recipe.path or recipe.id, scale, sets, where,
                                    resume=(where / "config.json").is_file(),
                                    progress=progress, nets=folder / "nets",
                                    address=address)  # fmt: skip
            except (Interrupted, KeyboardInterrupt):
                raise
            except Exception as exc:  # a divergence, a study's error: this recipe alone
                reason = str(exc) if isinstance(exc, LayerscopeError) else (
                    f"{type(exc).__name__}: {exc}")  # fmt: skip
                verdict = Verdict(recipe.id, scale, str(where), (), dict(sets or {}),
                                  recipe.title, recipe.claim, recipe_hash=recipe.hash,
                                  error=reason.strip().splitlines()[0] if reason.strip()
                                  else type(exc).__name__)  # fmt: skip
                where.mkdir(parents=True, exist_ok=True)
                write_json(judged, verdict.to_dict())
        verdicts.append(verdict)
        if on_verdict is not None:
            on_verdict(verdict)
    return verdicts


def _read_verdict(path: Path) -> Verdict | None:
    try:
        return Verdict.from_dict(read_json(path)) if path.is_file() else None
    except Exception:  # a damaged verdict is no verdict: the recipe is judged again
        return None


def last_verdicts(runs: str | Path, missing_ok: bool = False) -> dict[str, dict]:
    """The newest ``verdict.json`` of each recipe under ``runs`` (one walk of the folder; a
    damaged verdict is skipped). A verdict of a recipe file that is not the shipped one (an
    edited copy with a shipped id) is keyed ``ID (edited copy HASH)``, never as the shipped
    recipe's. ``runs`` that does not exist is an error (a typo would list every recipe as
    not run) unless ``missing_ok``."""
    if missing_ok and not Path(runs).exists():
        return {}
    if not Path(runs).is_dir():
        raise ConfigError(f"--runs {runs} is not a folder: name the folder the recipe runs are "
                          "in (default runs/)")  # fmt: skip
    shipped = {rid: r.hash for rid, r in recipes().items()}
    newest: dict[str, tuple[float, dict]] = {}
    for path in Path(runs).glob("**/verdict.json"):
        try:
            data = read_json(path)
        except Exception:  # a damaged verdict is not the last one
            continue
        stamp, rid = path.stat().st_mtime, str(data.get("recipe"))
        theirs = data.get("recipe_hash")
        if rid in shipped and theirs and theirs != shipped[rid]:
            rid = f"{rid} (edited copy {theirs})"
        if rid not in newest or stamp > newest[rid][0]:
            newest[rid] = (stamp, data)
    return {rid: data for rid, (_, data) in newest.items()}


def results_table(runs: str | Path, missing_ok: bool = False) -> str:
    """The README's results table, from the verdicts under ``runs`` (a ``reproduce all``
    folder): per recipe its id, claim, scale, verdict and what was measured — no number typed
    by hand. A recipe without a verdict there is listed as not run; one that does not hold
    says what its scale can show (its note) and the command that runs the other scale."""
    lines = [
        "| id | claim | scale | verdict | measured |",
        "| --- | --- | --- | --- | --- |",
    ]
    found = last_verdicts(runs, missing_ok)
    shipped = recipes()
    copies = [k for k in found if k not in shipped]
    for rid in [*shipped, *copies]:
        recipe, last = shipped.get(rid), found.get(rid)
        if last is None:
            lines.append(f"| {rid} | {recipe.claim} | — | not run | |")
            continue
        claim = recipe.claim if recipe is not None else str(last.get("claim", ""))
        measured = "; ".join(
            f"{e['what']}: {e['verdict']} ({e['measured']})" for e in last.get("expectations", [])
        )
        if last.get("error"):
            measured = f"{NOT_RUN}: {last['error']}"
        if recipe is not None and last["verdict"] != HOLDS and last["scale"] in recipe.scales:
            why = recipe.scales[last["scale"]].note
            other = [n for n in recipe.scales if n != last["scale"]]
            measured += f". At this scale: {why}" if why else ""
            measured += "".join(f"; at {n} scale: `layerscope reproduce {rid} --scale {n}`"
                                for n in other)  # fmt: skip
        sets = " ".join(f"--set {k}={v}" for k, v in (last.get("sets") or {}).items())
        scale = f"{last['scale']} ({sets})" if sets else str(last["scale"])
        lines.append(
            f"| {rid} | {claim} | {scale} | **{last['verdict']}** | {measured.replace('|', '/')} |"
        )
    return "\n".join(lines) + "\n"
