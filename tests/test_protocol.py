"""The studies' protocol: the registry, configs as plain data (dict and TOML round trips), and
the one run lifecycle (lock, resume rules, clean-up, interruption, finished mark) — tested on
every registered study where it concerns configs, and on a toy study for the lifecycle."""

import ast
import dataclasses
import inspect
import os
import re
import threading
import typing
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import layerscope as ls
from layerscope.config import Config, config_from_dict, flatten, get_path
from layerscope.errors import COMMAND_LINE, SPELLINGS
from layerscope.files import read_json
from layerscope.lifecycle import LOCK_NAME, Run, Study, execute
from layerscope.studies import get_study, register, registry

#: the few fields without a usable default (a study that needs a checkpoint)
BASE = {"ablate": {"weights": ["ckpt.safetensors"]}}


def _base(kind: str):
    study = get_study(kind)
    return study.config(**BASE.get(kind, {}))


def test_every_study_is_registered_once_with_its_parts():
    kinds = registry()
    expected = {"depth", "training-effect", "train", "ablate", "similarity",
                "similarity-training", "sensitivity", "lose-spatial-info", "invertible",
                "relu-bound", "fc-widths", "conditioning", "generate", "merge"}  # fmt: skip
    assert set(kinds) == expected
    for kind, study in kinds.items():
        assert study.kind == kind
        assert issubclass(study.config, Config) and dataclasses.is_dataclass(study.config)
        assert callable(study.work) and callable(study.summary) and callable(study.report)
        for path in study.free:  # a free field names a real field of the config
            assert path in flatten(_base(kind).to_dict()), (kind, path)
    with pytest.raises(TypeError, match="free field 'devise'"):
        dataclasses.replace(TOY, free=("devise",))


def test_a_second_study_with_the_same_kind_is_refused():
    registry: dict = {}
    register(TOY, registry)
    register(TOY, registry)  # the same declaration again is harmless
    twin = dataclasses.replace(TOY, work=lambda config, run: None)
    with pytest.raises(ls.LayerscopeError, match="two studies declare the kind 'toy'"):
        register(twin, registry)


def _leaves(kind: str) -> list[str]:
    return [p for p, v in flatten(_base(kind).to_dict()).items() if v is not None]


_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)  # control chars too


def _value_like(v):
    """A strategy for a new value of the same type as ``v``."""
    if isinstance(v, bool):
        return st.booleans()
    if isinstance(v, int):
        return st.integers(-(2**40), 2**40)
    if isinstance(v, float):
        return st.floats(allow_nan=False, allow_infinity=False, width=64)
    if isinstance(v, str):
        return _text
    if isinstance(v, list):
        item = _value_like(v[0]) if v else _text
        return st.lists(item, max_size=4)
    return st.just(v)


def _set_leaf(d: dict, path: str, value) -> None:
    *head, last = path.split(".")
    for part in head:
        d = d[part]
    d[last] = value


@st.composite
def _configs(draw):
    """A study's config with up to three leaves redrawn, built from plain data as a TOML file
    or ``--set`` would build it (values the config refuses are skipped: they are the
    validation's business)."""
    kind = draw(st.sampled_from(sorted(registry())))
    data = _base(kind).to_dict()
    for path in draw(st.lists(st.sampled_from(_leaves(kind)), max_size=3, unique=True)):
        _set_leaf(data, path, draw(_value_like(get_path(data, path))))
    try:
        return config_from_dict(get_study(kind).config, data)
    except (ls.LayerscopeError, ValueError, TypeError):
        assume(False)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(_configs())
def test_every_valid_config_round_trips_through_dicts_and_toml(config):
    cls = type(config)
    assert cls.from_dict(config.to_dict()) == config
    assert cls.from_toml(config.to_toml()) == config


def test_toml_names_an_unknown_option_and_lists_the_known_ones():
    text = _base("depth").to_toml().replace("restarts = 1", "restart = 1")
    with pytest.raises(ls.ConfigError, match="unknown option restart for DepthConfig"):
        get_study("depth").config.from_toml(text)
    text = re.sub(r"\biterations = (\d+)", r"iteratoins = \1", _base("depth").to_toml(), count=1)
    with pytest.raises(ls.ConfigError, match=r"inversion\.iteratoins"):
        get_study("depth").config.from_toml(text)


def test_none_and_nested_configs_survive_toml():
    cfg = _base("depth").replace(**{"inversion.blur": None, "inversion.iterations": 7})
    text = cfg.to_toml()
    assert "unset" in text and "[inversion]" in text
    back = type(cfg).from_toml(text)
    assert back.inversion.blur is None and back.inversion.iterations == 7 and back == cfg


# ---------------------------------------------------------------- the lifecycle, on a toy


@dataclass
class ToyConfig(Config):
    steps: int = 3
    fail_at: int = -1  # raise at this step (before saving it)
    device: str = "cpu"
    tags: list[str] = field(default_factory=lambda: ["a"])

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ls.ConfigError(f"steps must be at least 1, not {self.steps}")


EVENTS: dict = {}


def _toy_work(config: ToyConfig, run: Run) -> None:
    run.meta()
    done = sorted(int(p.stem) for p in run.dir.glob("*.step"))
    for k in range(len(done), config.steps):
        if k == config.fail_at:
            raise ls.LayerscopeError(f"failed at step {k}")
        if "hold" in EVENTS:  # the concurrency test keeps this run going
            EVENTS["started"].set()
            EVENTS["hold"].wait(10)
        (run.dir / f"{k}.step").write_text(config.device)
        run.saved()


def _toy_report(run_dir: Path) -> Path:
    out = Path(run_dir) / "report.html"
    out.write_text(f"{len(list(Path(run_dir).glob('*.step')))} steps")
    return out


TOY = Study(
    kind="toy",
    config=ToyConfig,
    work=_toy_work,
    report=_toy_report,
    summary=lambda run_dir: {"steps": len(list(Path(run_dir).glob("*.step")))},
    resumable=True,
    free=("device",),
)


def test_a_run_is_written_reported_and_marked_finished(tmp_path):
    out = execute(TOY, ToyConfig(steps=2), tmp_path / "r")
    meta = read_json(out / "config.json")
    assert meta["kind"] == "toy" and meta["study"]["steps"] == 2 and "finished" in meta
    assert (out / "report.html").read_text() == "2 steps"
    assert not (out / LOCK_NAME).exists()


def test_resume_from_python_refuses_a_changed_option_and_accepts_a_free_one(tmp_path):
    out = tmp_path / "r"
    with pytest.raises(ls.LayerscopeError, match="failed at step 1"):
        execute(TOY, ToyConfig(steps=3, fail_at=1), out)
    assert (out / "0.step").is_file()  # a saved result keeps the run
    with pytest.raises(ls.LayerscopeError, match=r"these differ: steps \(5 ≠ stored 3\)"):
        execute(TOY, ToyConfig(steps=5, fail_at=1), out, resume=True)
    with pytest.raises(ls.LayerscopeError, match=r"fail_at \(-1 ≠ stored 1\)"):
        execute(TOY, ToyConfig(steps=3), out, resume=True)
    # the CLI compares only what was typed, and spells it its own way
    with pytest.raises(ls.LayerscopeError, match=r"steps \(4 ≠ stored 3\)") as info:
        execute(TOY, ToyConfig(steps=4), out, resume=True, given=["steps"], spell="--{}".format)
    token = COMMAND_LINE.set(True)  # as the command line shows it
    try:
        assert "--steps (4 ≠ stored 3)" in str(info.value)
    finally:
        COMMAND_LINE.reset(token)
    # a free change is accepted and recorded before the work (which, with the stored
    # fail_at=1, fails again at the same step: the stored options are what runs)
    with pytest.raises(ls.LayerscopeError, match="failed at step 1"):
        execute(TOY, ToyConfig(device="meta"), out, resume=True, given=["device"])
    meta = read_json(out / "config.json")
    assert meta["study"]["device"] == "meta" and meta["study"]["fail_at"] == 1
    assert meta["resumed"][-1]["device"] == ["cpu", "meta"]
    assert (out / "0.step").read_text() == "cpu"


def test_resume_with_no_config_continues_the_stored_one(tmp_path):
    out = tmp_path / "r"
    execute(TOY, ToyConfig(steps=2, tags=["x", "y"]), out)
    (out / "1.step").unlink()
    execute(TOY, None, out, resume=True)
    assert sorted(p.name for p in out.glob("*.step")) == ["0.step", "1.step"]


def test_a_failed_fresh_run_leaves_nothing_and_never_deletes_the_users_folder(tmp_path):
    made = tmp_path / "new" / "run"
    with pytest.raises(ls.LayerscopeError, match="failed at step 0"):
        execute(TOY, ToyConfig(fail_at=0), made)
    assert not made.exists()  # created by the run: removed, so a retry is not blocked
    mine = tmp_path / "mine"
    mine.mkdir()
    with pytest.raises(ls.LayerscopeError, match="failed at step 0"):
        execute(TOY, ToyConfig(fail_at=0), mine)
    assert mine.is_dir() and not any(mine.iterdir())  # the user's folder stays, empty
    execute(TOY, ToyConfig(), mine)  # and a retry works


def test_a_second_process_on_the_same_folder_is_refused_while_the_first_runs(tmp_path):
    out = tmp_path / "r"
    EVENTS.update(started=threading.Event(), hold=threading.Event())
    errors: list = []

    def first():
        try:
            execute(TOY, ToyConfig(steps=1), out)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    worker = threading.Thread(target=first)
    worker.start()
    try:
        assert EVENTS["started"].wait(10)
        with pytest.raises(ls.LayerscopeError, match="in use by a running layerscope process"):
            execute(TOY, ToyConfig(steps=1), out, resume=True)
        with pytest.raises(ls.LayerscopeError, match="in use by a running layerscope process"):
            execute(TOY, ToyConfig(steps=2), out)
    finally:
        EVENTS["hold"].set()
        worker.join()
        EVENTS.clear()
    assert not errors
    assert read_json(out / "config.json")["study"]["steps"] == 1  # the first run's, intact


def test_out_under_a_file_is_one_line(tmp_path):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ls.LayerscopeError, match="is a file, not a folder"):
        execute(TOY, ToyConfig(), tmp_path / "afile" / "sub")


# ---------------------------------------------------------------- the package's shape


def _import_graph() -> dict[str, set[str]]:
    root = Path(ls.__file__).parent
    mods = {}
    for p in root.rglob("*.py"):
        parts = list(p.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = p
    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        pkg = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):  # module level and inside functions
            if isinstance(node, ast.ImportFrom):
                base = pkg.split(".")[: len(pkg.split(".")) - max(node.level - 1, 0)]
                target = ".".join([*base, node.module] if node.module else base)
                target = target if node.level else (node.module or "")
                for alias in node.names:
                    sub = f"{target}.{alias.name}"
                    deps.add(sub if sub in mods else target)
            elif isinstance(node, ast.Import):
                deps |= {a.name for a in node.names}
        graph[name] = {d for d in deps if d in mods and d != name}
        _UNRESOLVED[name] = {d for d in deps if d.startswith("layerscope") and d not in mods}
    return graph


_UNRESOLVED: dict[str, set[str]] = {}


def test_every_import_of_layerscope_names_a_module_that_exists():
    """An import inside a function runs only when it is called: one left pointing at a place
    a module moved from would pass every other test that does not call it."""
    _import_graph()
    assert {m: d for m, d in _UNRESOLVED.items() if d} == {}


def test_no_import_cycle_and_nothing_imports_the_package_root():
    """The root re-exports the public API; a module that imported it (or a cycle between
    modules, even through an import inside a function) would tie the engines together."""
    graph = _import_graph()
    assert [m for m, deps in graph.items() if "layerscope" in deps] == []
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                cycles.append(" → ".join([*path[path.index(dep) :], dep]))
            elif dep not in state:
                visit(dep, [*path, dep])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert cycles == []


#: each place of the package and the places it may import (itself included): the layers of
#: the architecture, from the bottom up
PLACES = {
    "core": {"core"},
    "engine": {"core", "engine"},
    "protocol": {"core", "protocol"},
    "report": {"core", "engine", "report"},
    "studies": {"core", "engine", "protocol", "report", "studies"},
    "apps": {"core", "engine", "protocol", "report", "studies", "apps"},
}


def _place(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_each_place_imports_only_the_places_below_it():
    """core ← engine, protocol ← report ← studies ← apps: the engine never imports the run
    protocol, a study, the report or the command line; the report imports no study; the
    studies import no application. Every module lives in a place (the root holds only the
    public API, its version and the flat layout's aliases)."""
    graph = _import_graph()
    loose = [m for m in graph if _place(m) not in PLACES]
    assert sorted(loose) == [
        "layerscope", "layerscope.__main__", "layerscope._moved", "layerscope._version"
    ]  # fmt: skip
    for module, deps in graph.items():
        place = _place(module)
        if place not in PLACES:
            continue
        bad = {d for d in deps if _place(d) not in PLACES[place] and d != "layerscope._version"}
        assert not bad, (module, bad)


# ---------------------------------------------------------------- options: the names users type


def _as_typed(value) -> str:
    """A value as a user would type it on a command line or in ``--set``."""
    if isinstance(value, list) and value and isinstance(value[0], list):  # MODEL@DATA pairs
        return ",".join("@".join(v) for v in value)
    if isinstance(value, list):
        return ",".join(_as_typed(v) for v in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, float) else str(value)


@pytest.mark.parametrize("kind", sorted(registry()))
def test_every_option_typed_as_text_sets_its_field(kind):
    """For each option that sets one field: the field's default typed back as text (the way a
    command line or ``--set`` gives it) configures the same config — so the parser of every
    option reads what a user types for that field."""
    study = get_study(kind)
    base = _base(kind)
    data = base.to_dict()
    checked = 0
    for option in study.options:
        if option.apply is not None or option.field is None:
            continue
        value = get_path(data, option.field)
        if value is None or isinstance(value, dict) or value == []:
            continue
        config = study.configure({option.name: _as_typed(value)}, base=base)
        assert get_path(config.to_dict(), option.field) == value, (kind, option.name)
        checked += 1
    assert checked >= 3, kind


def test_an_option_is_found_however_it_is_spelled():
    depth = get_study("depth")
    for spelling in ("blur-kernel", "blur_kernel", "--blur-kernel"):
        assert depth.configure({spelling: "5"}).inversion.blur.kernel_size == 5
    with pytest.raises(ls.ConfigError, match="unknown option 'blurr': the options are"):
        depth.configure({"blurr": "5"})
    with pytest.raises(ls.ConfigError, match=r"iterations takes a whole number, not '2\.5'"):
        depth.configure({"iterations": "2.5"})


def test_compound_options_compose_in_a_fixed_order():
    depth = get_study("depth")
    c = depth.configure({"sigma": "1,0.5", "blur_kernel": 5, "preset": "paper", "size": 32})
    assert c.inversion.step == "gradient" and c.inversion.iterations == 500  # the paper's
    assert c.inversion.blur.kernel_size == 5 and c.inversion.blur.sigma.start == 1.0
    assert c.size == 32  # typed after the preset's 299
    assert depth.configure({"blur": False, "sigma": "1"}).inversion.blur is None  # off wins
    assert depth.configure({"preset": "blog"}).size == 299
    assert depth.configure({}) == depth.config()  # no option: the config's defaults


def test_every_study_has_its_command_with_a_flag_per_option():
    from layerscope.cli import app

    commands = {c.name: c for c in app.registered_commands}
    groups = {g.name: g for g in app.registered_groups}
    nested = {c.name: c for c in groups["study"].typer_instance.registered_commands}
    for kind, study in registry().items():
        assert study.command, kind
        words = [w for w in study.command.split() if not w.startswith("--")]
        command = nested[words[1]] if words[0] == "study" else commands[words[0]]
        params = set(inspect.signature(command.callback).parameters)
        assert {o.name for o in study.options} <= params, kind
        assert "out" in params and ("resume" in params or not study.resumable), kind


# ---------------------------------------------------------------- the public API


def test_run_study_takes_options_as_the_command_line_spells_them(tmp_path, tiny):
    out = ls.run_study("depth", out=tmp_path / "d", model="resnet10", size=32, iterations=2,
                       layers="conv1,layer1", record_every=1)  # fmt: skip
    meta = read_json(out / "config.json")
    assert meta["study"]["inversion"]["iterations"] == 2 and meta["study"]["layers"] == [
        "conv1", "layer1"
    ]  # fmt: skip
    # a resumed run from Python is held to its stored options, like the command line
    with pytest.raises(ls.LayerscopeError, match=r"inversion\.iterations \(3 ≠ stored 2\)"):
        ls.run_study("depth", out=out, resume=True, model="resnet10", size=32, iterations=3,
                     layers="conv1,layer1", record_every=1)  # fmt: skip
    assert ls.run_study("depth", out=out, resume=True) == out
    summary = get_study("depth").summary(out)
    rows = ls.tables.read_csv(out / "summary.csv")
    assert summary["targets"] == 2 and summary["ok"] == sum(r["status"] == "ok" for r in rows)
    assert summary["m_g<m_r"] == sum(
        r["embedding_distance"] < r["reference_distance"] for r in rows
    )


def test_results_display_themselves_in_a_notebook(tiny, image32):
    result = ls.invert(tiny, image32, ["conv1", "layer2"], iterations=3)
    page = result._repr_html_()
    assert page.count("<img") == 2 and page.count("<tr>") == 3  # header + one row per target
    final = result["layer2"].final["embedding_distance"]
    assert f"{final:.4g}" in page
    assert "data:image/png;base64," in result["conv1"]._repr_html_()


def test_errors_name_options_as_the_caller_spelled_them(run_cli):
    """The same refusal: a flag on the command line, the config field from Python."""
    code, _, err = run_cli("depth", "--model", "resnet10", "--size", "32", "--blur-kernel", "4")
    assert code == 2 and "--blur-kernel must be an odd number" in err
    with pytest.raises(ls.ConfigError) as info:
        ls.InversionConfig(blur=ls.GaussianBlur(4))
    assert str(info.value).startswith("kernel_size must be an odd number") and "--" not in str(
        info.value
    )
    with pytest.raises(ls.ConfigError, match=r"^size 0 is too small"):
        get_study("depth").config(size=0)


# ---------------------------------------------------------------- validation


def _number_leaves(kind: str) -> list[str]:
    data = _base(kind).to_dict()
    out = []
    for path, value in flatten(data).items():
        values = value if isinstance(value, list) else [value]
        if values and all(isinstance(v, float) for v in values):
            out.append(path)
    return out


@st.composite
def _non_finite(draw):
    kind = draw(st.sampled_from([k for k in sorted(registry()) if _number_leaves(k)]))
    path = draw(st.sampled_from(_number_leaves(kind)))
    bad = draw(st.sampled_from([float("nan"), float("inf"), float("-inf")]))
    return kind, path, bad


@settings(max_examples=120, deadline=None)
@given(_non_finite())
def test_every_number_of_every_config_refuses_nan_and_infinity_in_one_line(case):
    """A new number field is covered the day it is added: NaN and ±inf are refused by the
    config itself, in one line naming the field (no traceback from deeper code)."""
    kind, path, bad = case
    data = _base(kind).to_dict()
    value = get_path(data, path)
    _set_leaf(data, path, [bad] * len(value) if isinstance(value, list) else bad)
    with pytest.raises(ls.LayerscopeError) as info:
        config_from_dict(get_study(kind).config, data)
    message = str(info.value)
    assert "\n" not in message
    leaf = path.rsplit(".", 1)[-1]
    named = {leaf, leaf.rstrip("s"), path.split(".")[-2] if "." in path else leaf}
    assert any(n in message for n in named), (path, message)


def test_the_command_line_names_the_flag_of_a_non_finite_number(run_cli):
    code, _, err = run_cli("depth", "--model", "resnet10", "--reference-sigma", "inf")
    assert code == 2 and "--reference-sigma must be a finite number, not inf" in err
    code, _, err = run_cli("sensitivity", "--cut", "nan", "--n", "4")
    assert code == 2 and "--cut must be a finite number, not nan" in err
    code, _, err = run_cli("sensitivity", "--displacement", "0", "--n", "4")
    assert code == 2 and "--displacement must be > 0 pixels" in err


def _bounded_fields(cls: type, prefix: str = "") -> list[tuple[str, float, bool]]:
    """(dotted path, minimum, exclusive) of every field declared with ``at_least``."""
    out = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if "min" in f.metadata:
            out.append((prefix + f.name, f.metadata["min"], f.metadata["above"]))
        inner = hints.get(f.name)
        inner = next((a for a in typing.get_args(inner) if dataclasses.is_dataclass(a)), inner)
        if dataclasses.is_dataclass(inner) and isinstance(inner, type):
            out += _bounded_fields(inner, f"{prefix}{f.name}.")
    return out


@st.composite
def _below_minimum(draw):
    kind = draw(st.sampled_from([k for k in sorted(registry()) if _bounded_fields(
        get_study(k).config)]))  # fmt: skip
    path, low, above = draw(st.sampled_from(_bounded_fields(get_study(kind).config)))
    top = low if above else low - 1
    bad = draw(st.sampled_from([top, top - 1, -1000]))
    return kind, path, bad


@settings(max_examples=100, deadline=None)
@given(_below_minimum())
def test_every_declared_minimum_is_refused_in_one_line_with_its_range(case):
    kind, path, bad = case
    data = _base(kind).to_dict()
    value = get_path(data, path)
    _set_leaf(data, path, [bad] if isinstance(value, list) else bad)
    with pytest.raises(ls.LayerscopeError) as info:
        config_from_dict(get_study(kind).config, data)
    message = str(info.value)
    assert "\n" not in message and ("at least" in message or "> " in message), message
    leaf = path.rsplit(".", 1)[-1]
    assert message.startswith((leaf, leaf.rstrip("s"))), (path, message)  # names the field


def _list_leaves() -> list[tuple[str, str]]:
    out = []
    for kind in sorted(registry()):
        for path, value in flatten(_base(kind).to_dict()).items():
            if isinstance(value, list) and path != "unset":
                out.append((kind, path))
    return out


@pytest.mark.parametrize(("kind", "path"), _list_leaves())
def test_every_list_option_refuses_an_empty_list_unless_it_may_be_empty(kind, path):
    """``--growing ""`` is refused by the config in one line naming it (it was an IndexError
    in the study), as is every list a study needs entries of; a list that may be empty is
    declared so (``may_be_empty``) and then builds."""
    cls = get_study(kind).config
    data = _base(kind).to_dict()
    _set_leaf(data, path, [])
    owner = cls
    for part in path.split(".")[:-1]:
        owner = typing.get_type_hints(owner)[part]
    field = {f.name: f for f in dataclasses.fields(owner)}[path.rsplit(".", 1)[-1]]
    if field.metadata.get("empty"):
        config_from_dict(cls, data)
        return
    with pytest.raises(ls.LayerscopeError) as info:
        config_from_dict(cls, data)
    message = str(info.value)
    assert "\n" not in message and message.endswith("not an empty list"), message
    leaf = path.rsplit(".", 1)[-1]
    flags = [flag.lstrip("-") for flag, fields in SPELLINGS.items() if leaf in fields]
    assert message.startswith((leaf, leaf.rstrip("s"), *flags)), message


def test_an_empty_list_on_the_command_line_names_the_flag(run_cli):
    code, _, err = run_cli("study", "fc-widths", "--growing", "")
    assert code == 2 and "--growing needs at least one value, not an empty list" in err


@pytest.mark.parametrize("kind", sorted(registry()))
def test_every_command_refuses_a_read_only_out_in_one_line(kind, run_cli, tmp_path, monkeypatch):
    """A read-only --out (and a new folder under a read-only parent) was a PermissionError
    traceback in all seven commands tried: every command goes through the one lifecycle's
    check. As root (CI) permissions do not bind, so the check's view of the folder is made
    read-only too."""
    from layerscope import lifecycle

    locked = tmp_path / "locked"
    locked.mkdir()
    (locked / "mine.txt").write_text("mine")
    locked.chmod(0o555)
    if os.geteuid() == 0:
        real = os.access
        monkeypatch.setattr(
            lifecycle.os, "access",
            lambda p, mode: False if Path(p) == locked and mode & os.W_OK else real(p, mode),
        )  # fmt: skip
    words = get_study(kind).command.split()
    extra = {"ablate": ["--weights", str(tmp_path / "x.safetensors")],
             "similarity-training": [str(tmp_path / "a-train-run")]}.get(kind, [])  # fmt: skip
    try:
        for out in (locked, locked / "new"):
            code, _, err = run_cli(*words, *extra, "--out", str(out))
            assert code == 2 and "cannot be written (permissions)" in err, (kind, err)
            assert err.count("\n") == 1 and "Traceback" not in err
        assert sorted(p.name for p in locked.iterdir()) == ["mine.txt"]
    finally:
        locked.chmod(0o755)


def _typed_leaves(kind: str) -> list[tuple[str, object]]:
    """(path, value) of every int, float, string, bool or list leaf of a study's config."""
    return [(p, v) for p, v in flatten(_base(kind).to_dict()).items()
            if isinstance(v, (bool, int, float, str, list))]  # fmt: skip


def _wrong_for(value):
    """Values of another type than ``value``'s, as Python, TOML or a grid could give them."""
    if isinstance(value, bool):
        return st.sampled_from([2.5, "yes", [True]])
    if isinstance(value, int):
        return st.sampled_from([True, False, 2.5, "3", [1]])
    if isinstance(value, float):
        return st.sampled_from([True, "0.1", [0.1]])
    if isinstance(value, str):
        return st.sampled_from([5, True, [value]])
    return st.sampled_from([5, True, "x", [10], [True]])  # a list of names, numbers or pairs


@st.composite
def _wrong_types(draw):
    kind = draw(st.sampled_from(sorted(registry())))
    path, value = draw(st.sampled_from(_typed_leaves(kind)))
    return kind, path, value, draw(_wrong_for(value))


@settings(max_examples=200, deadline=None)
@given(_wrong_types())
def test_every_field_refuses_a_value_of_the_wrong_type_from_every_entry_point(case):
    """A bool is not a number, 2.5 not a whole number, [10] not a list of names: refused by
    the config itself, in one line (no traceback from deeper code), from plain data (Python,
    a grid, --set) and from TOML alike. A value the field may legitimately take in that form
    (a number as a list of one where the field is a list of numbers) is skipped."""
    from layerscope.config import _fits, _hints

    kind, path, _, bad = case
    cls = get_study(kind).config
    data = _base(kind).to_dict()
    _set_leaf(data, path, bad)
    owner = cls
    for part in path.split(".")[:-1]:  # the dataclass that holds the leaf
        from layerscope.config import _dataclass_in

        owner = _dataclass_in(_hints(owner)[part])
    assume(_fits(bad, _hints(owner).get(path.rsplit(".", 1)[-1])) is False)
    for build in (lambda: config_from_dict(cls, data), lambda: cls.from_toml(_toml_of(data))):
        with pytest.raises(ls.LayerscopeError) as info:
            build()
        assert "\n" not in str(info.value)


def _toml_of(data: dict, name: str = "") -> str:
    """Plain config data as the TOML a user would write (tables for nested configs, ``unset``
    for None)."""
    from layerscope.config import UNSET, _toml_value

    lines = [f"[{name}]"] if name else []
    nested = {k: v for k, v in data.items() if isinstance(v, dict) and k != "data_params"}
    unset = [k for k, v in data.items() if v is None]
    for k, v in data.items():
        if k not in nested and v is not None:
            lines.append(f"{k} = {_toml_value(v)}")
    if unset:
        lines.append(f"{UNSET} = {_toml_value(unset)}")
    text = "\n".join(lines) + "\n"
    for k, v in nested.items():
        text += _toml_of(v, f"{name}.{k}" if name else k)
    return text


def test_the_flat_layout_s_import_paths_name_the_same_modules_in_their_places():
    """``layerscope.similarity``, ``layerscope.cli``, … (the paths users and older code rely
    on) are the very modules of ``layerscope.engine.similarity``, ``layerscope.apps.cli``;
    a name that never existed is still an ImportError."""
    import importlib

    from layerscope._moved import PLACES

    for name, place in PLACES.items():
        old = importlib.import_module(f"layerscope.{name}")
        assert old is importlib.import_module(f"layerscope.{place}.{name}"), name
        assert getattr(ls, name) is old
    from layerscope.similarity import cka

    assert cka is ls.engine.similarity.cka
    assert ls.recipes.load_recipe("III-1").id == "III-1"  # its TOML files found in its place
    with pytest.raises(ImportError):
        importlib.import_module("layerscope.nonexistent")
