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

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ...core.config import config_hash
from ...core.errors import ConfigError
from ...core.files import read_json, write_json
from .recipe import (  # noqa: F401  (re-exported: layerscope.recipes.X)
    FAILS,
    HOLDS,
    NOT_RUN,
    RELATIONS,
    SCALES,
    UNCHECKED,
    Expectation,
    Outcome,
    Recipe,
    load_recipe,
    placeholders,
    recipes,
    short_label,
)

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
