"""Reliability of the layers on top of the studies (reproduce, site, sweep, the Python API):
each mechanism behind a group of the audit's cases, tested where a user meets it. Each test
failed on the code before its mechanism (noted in its docstring)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import layerscope as ls
from layerscope.files import read_json
from layerscope.recipes import last_verdicts, load_recipe, reproduce, results_table
from layerscope.site import build_site, find_runs
from layerscope.tables import read_csv

TINY = {"model": "resnet10", "size": 32, "iterations": 3, "layers": "conv1", "judge": "none"}


@pytest.fixture(scope="module")
def depth_run(tmp_path_factory) -> Path:
    return ls.run_study("depth", out=tmp_path_factory.mktemp("r") / "depth", **TINY)


# --- one reader for every JSON file the tool writes -------------------------------------


@pytest.mark.parametrize(
    ("name", "text", "needle"),
    [
        ("config.json", "[1, 2]", "a JSON array, not an object"),
        ("config.json", "null", "a JSON null, not an object"),
        ("config.json", '{"kind": "depth"}', "it lacks study"),
        ("verdict.json", '{"recipe": "IV-2"}', "it lacks verdict"),
        ("sweep.json", "5", "a JSON number"),
    ],
)
def test_a_json_file_of_another_shape_is_one_line_naming_it(tmp_path, name, text, needle):
    """A config.json that was a list ended in AttributeError deep in the lifecycle."""
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ls.LayerscopeError, match="restore it or delete it") as info:
        read_json(path)
    assert needle in str(info.value) and str(path) in str(info.value)


def test_report_resume_and_site_answer_a_config_json_of_another_shape(depth_run, tmp_path, run_cli):
    run = tmp_path / "run"
    shutil.copytree(depth_run, run)
    (run / "config.json").write_text("[]")
    for args in (["report", str(run)], ["depth", "--out", str(run), "--resume"]):
        code, _, err = run_cli(*args)
        assert code == 2 and "not a layerscope file" in err and "Traceback" not in err, args
    good = tmp_path / "good"
    shutil.copytree(depth_run, good)
    index = build_site([tmp_path], tmp_path / "site")  # one damaged run does not end the site
    text = index.read_text()
    assert "runs/good/report.html" in text and "unreadable" in text


# --- the site -------------------------------------------------------------------------


def test_a_site_inside_the_folder_of_runs_is_not_listed_again(depth_run, tmp_path):
    """Every sweep's site/ (and a site built into runs/site) listed each run a second time."""
    runs = tmp_path / "runs"
    shutil.copytree(depth_run, runs / "a")
    build_site([runs], runs / "site")
    assert find_runs([runs]) == [runs / "a"]
    index = build_site([runs], tmp_path / "elsewhere")
    assert index.read_text().count('href="runs/') == 1


def test_a_finished_run_that_lost_its_results_says_so(depth_run, tmp_path):
    """It showed "finished; targets = 0"."""
    run = tmp_path / "runs" / "a"
    shutil.copytree(depth_run, run)
    for f in run.glob("*.csv"):
        f.unlink()
    text = build_site([run.parent], tmp_path / "site").read_text()
    assert "results missing: summary.csv is gone" in text and "targets = 0" not in text


def test_a_report_linked_outside_the_run_is_not_published(depth_run, tmp_path):
    """A report.html symlinked outside the run ended in ValueError (relative_to)."""
    run = tmp_path / "runs" / "a"
    shutil.copytree(depth_run, run)
    outside = tmp_path / "secret.html"
    outside.write_text("<html><body>secret</body></html>")
    (run / "report.html").unlink()
    (run / "report.html").symlink_to(outside)
    site = tmp_path / "site"
    build_site([run.parent], site)
    page = (site / "runs" / "a" / "report.html").read_text()
    assert "secret" not in page and "points outside the run" in page


def test_a_write_refused_by_permissions_is_one_line_in_every_command(tmp_path, run_cli,
                                                                     monkeypatch):  # fmt: skip
    """As root permissions do not bind: the refusal is made by the file system's stand-in."""
    import layerscope.site as site

    def refuse(out):
        raise PermissionError(13, "Permission denied", str(out))

    monkeypatch.setattr(site, "_prepare", refuse)
    (tmp_path / "runs").mkdir()
    code, _, err = run_cli("site", str(tmp_path / "runs"), "--out", str(tmp_path / "ro"))
    assert code == 2 and "cannot use" in err and "permission denied" in err
    assert err.count("\n") == 1 and "Traceback" not in err


# --- recipes: checked against a schema on load, before any training ----------------------


RECIPE = """id = "R-1"
title = "t"
claim = "c"
study = "depth"
{extra}
[scale.cpu]
config = {{ model = "resnet10", layers = "conv1", size = 32, iterations = 3, judge = "none" }}
[[expect]]
what = "w"
metric = "embedding_distance"
relation = ">"
value = 0.0
{expect}
"""


@pytest.mark.parametrize(
    ("extra", "expect", "needle"),
    [
        ("", 'tolerance = "x"', "tolerance must be a number, not 'x'"),
        ("", "mean = 1", "mean must be true or false"),
        ("", "rows = 5", "rows must be a table"),
        ("", "rows = { layer = { a = 1 } }", "rows.layer must be a value or a list"),
        ("", "bogus = 1", "unknown key(s) bogus"),
        ('table = "../../../etc/passwd"', "", "must name a file inside the run"),
        ('table = "/etc/passwd"', "", "must name a file inside the run"),
        ("last = 3", "", "last must be true or false"),
        ('bogus = "x"', "", "unknown key(s) bogus"),
    ],
)
def test_a_faulty_recipe_is_refused_when_it_loads(tmp_path, run_cli, extra, expect, needle):
    """Expectation fields of the wrong type, a table path outside the run: a traceback after
    the whole run."""
    path = tmp_path / "r.toml"
    path.write_text(RECIPE.format(extra=extra, expect=expect))
    with pytest.raises(ls.ConfigError) as info:
        load_recipe(path)
    assert needle in str(info.value) and "r.toml" in str(info.value)
    code, _, err = run_cli("reproduce", str(path), "--out", str(tmp_path / "o"))
    assert code == 2 and needle in err and not (tmp_path / "o").exists()


def test_per_given_as_one_name_groups_by_that_column(tmp_path):
    """``per = "image"`` was grouped by its letters and said "does not hold"."""
    path = tmp_path / "r.toml"
    path.write_text(RECIPE.format(extra="", expect="").replace(
        'relation = ">"\nvalue = 0.0', 'relation = "increasing"\nper = "image"'))  # fmt: skip
    assert load_recipe(path).expect[0].per == ("image",)


def test_a_missing_table_is_one_line_and_the_run_is_kept(tmp_path):
    path = tmp_path / "r.toml"
    path.write_text(RECIPE.format(extra='table = "nothere.csv"', expect=""))
    with pytest.raises(ls.ConfigError, match=r"holds no nothere\.csv"):
        reproduce(path, out=tmp_path / "o")
    assert (tmp_path / "o" / "summary.csv").is_file()


TRAINED = (Path(__file__).parent / "test_recipes.py").read_text().split('TRAINED_RECIPE = """')[1]
TRAINED = TRAINED.split('"""')[0]


def test_a_bad_set_is_refused_before_the_recipes_net_trains(tmp_path):
    """It was refused only after the net had been trained."""
    path = tmp_path / "t.toml"
    path.write_text(TRAINED.format(n=1))
    for sets, needle in (({"iterations": "x"}, "whole number"), ({"bogus": "1"}, "bogus")):
        with pytest.raises(ls.ConfigError, match=needle):
            reproduce(path, sets=sets, out=tmp_path / "runs" / "a")
    assert not (tmp_path / "runs").exists()


def test_a_net_that_lost_its_last_epoch_is_trained_again_to_its_end(tmp_path):
    """A finished net missing its last epoch's files was used at the epoch before."""
    path = tmp_path / "t.toml"
    path.write_text(TRAINED.format(n=1).replace("epochs = 1", "epochs = 2"))
    reproduce(path, out=tmp_path / "runs" / "a")
    (net,) = (tmp_path / "runs" / "nets").iterdir()
    last = net / "checkpoints" / "epoch_002.safetensors"
    for f in net.glob("checkpoints/epoch_002*"):
        f.unlink()
    verdict = reproduce(path, out=tmp_path / "runs" / "b")
    assert last.is_file()
    weights = {r["weights"] for r in read_csv(tmp_path / "runs" / "b" / "summary.csv")}
    assert str(last) in weights and verdict.verdict == "holds"


def test_resume_after_an_interruption_inside_the_net_runs_the_recipe(tmp_path, monkeypatch):
    """Interrupted while its net trained, then --resume: the net finished, then "nothing to
    resume" (the recipe's run had not begun)."""
    import layerscope.recipes as recipes

    path = tmp_path / "t.toml"
    path.write_text(TRAINED.format(n=1))
    real = recipes.trained_net

    def interrupted(*args, **kwargs):
        raise ls.Interrupted("interrupted: 0 of 1 epochs saved")

    monkeypatch.setattr(recipes, "trained_net", interrupted)
    with pytest.raises(ls.Interrupted):
        reproduce(path, out=tmp_path / "runs" / "a")
    monkeypatch.setattr(recipes, "trained_net", real)
    verdict = reproduce(path, out=tmp_path / "runs" / "a", resume=True)
    assert verdict.verdict == "holds"


def test_a_net_another_process_trains_is_waited_for_not_refused(tmp_path, monkeypatch):
    """Two recipes training one net at once: the second said "choose another --out" about a
    folder the user never typed. It now waits for the lock, then uses the net."""
    import fcntl
    import threading

    from layerscope.config import config_hash
    from layerscope.lifecycle import LOCK_NAME

    path = tmp_path / "t.toml"
    path.write_text(TRAINED.format(n=1))
    train = load_recipe(path).train_config("cpu")
    net = tmp_path / "runs" / "nets" / f"train-{config_hash(train)}"
    net.mkdir(parents=True)
    fd = os.open(net / LOCK_NAME, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)  # "another process" holds the net's folder
    threading.Timer(3.0, lambda: os.close(fd)).start()
    verdict = reproduce(path, out=tmp_path / "runs" / "a")
    assert verdict.verdict == "holds"


# --- verdicts: an edited copy is not the shipped recipe ----------------------------------


def test_an_edited_copy_with_a_shipped_id_is_listed_as_a_copy(tmp_path, run_cli):
    """Its verdict showed as IV-2's in --list and --markdown, with IV-2's claim."""
    copy = tmp_path / "iv-2.toml"
    text = load_recipe("IV-2").path.read_text()
    copy.write_text(text.replace('claim = "', 'claim = "EDITED ', 1))
    sets = {"model": "resnet10", "size": "32", "iterations": "3", "judge": "none"}
    reproduce(copy, sets=sets, out=tmp_path / "runs" / "c")
    found = last_verdicts(tmp_path / "runs")
    assert "IV-2" not in found
    (key,) = found
    assert key.startswith("IV-2 (edited copy")
    table = results_table(tmp_path / "runs")
    shipped = next(line for line in table.splitlines() if line.startswith("| IV-2 |"))
    assert "not run" in shipped
    copied = next(line for line in table.splitlines() if line.startswith("| IV-2 (edited"))
    assert "EDITED" in copied and "--set iterations=3" in copied
    code, out, _ = run_cli("reproduce", "--list", "--runs", str(tmp_path / "runs"))
    assert code == 0 and "edited copy" in out


def test_runs_that_do_not_exist_is_an_error_not_every_recipe_not_run(tmp_path, run_cli):
    for args in (["--markdown"], ["--list"]):
        code, _, err = run_cli("reproduce", *args, "--runs", str(tmp_path / "nowhere"))
        assert code == 2 and "is not a folder" in err, args


# --- networks passed from Python --------------------------------------------------------


def _net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, stride=2, padding=1),
        nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10),
    )  # fmt: skip


@pytest.mark.parametrize(
    ("kind", "options"),
    [
        ("depth", {"model": None, "size": 32, "iterations": 2, "layers": "all", "judge": "none"}),
        ("similarity", {"model_a": None, "size": 16, "n": 16, "batch_size": 8}),
        ("sensitivity", {"model": None, "size": 16, "n": 8, "batch_size": 8}),
        ("generate", {"model": None, "size": 16, "iterations": 2, "classes": "0,1"}),
    ],
)
def test_a_network_object_runs_through_every_study_by_name(tmp_path, kind, options):
    """depth and generate ended in a 17,915-character ConfigError holding the module's repr;
    similarity and sensitivity in AttributeError ('Model' has no 'endswith')."""
    net = _net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    key = next(k for k, v in options.items() if v is None)
    run = ls.run_study(kind, out=tmp_path / kind, **(options | {key: net}))
    stored = json.dumps(read_json(run / "config.json")["study"])
    assert "custom:sequential@" in stored
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # untouched


def test_a_resume_checks_the_network_is_the_same(tmp_path):
    mine = TINY | {"layers": "all"}
    run = ls.run_study("depth", out=tmp_path / "d", **(mine | {"model": _net()}))
    again = ls.run_study("depth", out=run, resume=True, **(mine | {"model": _net()}))
    assert again == run  # the same class and state: the same run
    with pytest.raises(ls.LayerscopeError, match=r"models \(\['custom:sequential@\w+'\] ≠ stored"):
        ls.run_study("depth", out=run, resume=True, **(mine | {"model": _net(seed=1)}))
    code = (
        "import layerscope as ls, sys\n"
        "try:\n    ls.run_study('depth', out=sys.argv[1], resume=True)\n"
        "except ls.ModelNotFound as e:\n    print(e)\n"
    )
    done = subprocess.run([sys.executable, "-c", code, str(run)], capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert "this process has not been given it: pass the same module again" in done.stdout


def test_a_module_inside_a_config_or_a_config_of_another_study_is_one_short_line():
    from layerscope.studies.depth import DepthConfig
    from layerscope.training import TrainConfig

    with pytest.raises(ls.ConfigError) as info:
        DepthConfig(models=[_net()])
    assert len(str(info.value)) < 300 and "run_study(kind, model=net)" in str(info.value)
    with pytest.raises(ls.ConfigError, match="config is a TrainConfig, and depth runs take a"):
        ls.run_study("depth", config=TrainConfig())


# --- data set parameters ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        ("xi=abc", "xi of twopoints must be a number, not 'abc'"),
        ("bogus=1", "bogus does not apply to twopoints: it takes length, xi, gap, norm, value"),
        ("gap=true", "gap of twopoints must be a number"),
    ],
)
def test_data_params_are_checked_before_any_work(tmp_path, run_cli, params, needle):
    """``--data-params xi=abc`` / ``bogus=1`` ended in TypeError inside data.py."""
    out = tmp_path / "t"
    code, _, err = run_cli("train", "--data", "twopoints", "--data-params", params,
                           "--epochs", "1", "--out", str(out))  # fmt: skip
    assert code == 2 and needle in err and not out.exists()
    with pytest.raises(ls.LayerscopeError, match=needle.split(",")[0]):
        ls.run_study("sensitivity", model="smallcnn", data="twopoints", data_params=params)


# --- the lock ---------------------------------------------------------------------------


def test_a_lock_file_removed_as_it_was_locked_is_locked_again(tmp_path, monkeypatch):
    """The holder removes the lock file when it ends; a process that had opened it just before
    then locked a file no longer there, while a third locked the new one: two holders."""
    import fcntl

    from layerscope import lifecycle

    real, held = fcntl.flock, []

    def racing(fd, op):
        if not held:  # between our open and our lock: the holder ends, a third process locks
            path = tmp_path / lifecycle.LOCK_NAME
            path.unlink()
            other = os.open(path, os.O_RDWR | os.O_CREAT)
            real(other, fcntl.LOCK_EX)
            held.append(other)
        return real(fd, op)

    monkeypatch.setattr(fcntl, "flock", racing)
    with pytest.raises(lifecycle.RunInUse), lifecycle.locked(tmp_path):
        pass
    os.close(held[0])


# --- verdicts carry the rows they read ---------------------------------------------------


def test_an_outcome_names_the_rows_it_read_by_short_labels():
    """verdict.json held the numbers, but not which rows they came from; a filter on a
    trained net printed its machine path into the README's table."""
    from layerscope.recipes import Expectation, Verdict

    ckpt = "/tmp/xyz/runs/nets/train-1a2b3c/checkpoints/epoch_004.safetensors"
    rows = [{"model": "resnet18", "weights": w, "layer": "layer4", "input_distance": d}
            for w, d in (("none", 3.0), (ckpt, 1.0))]  # fmt: skip
    e = Expectation(what="w", metric="input_distance", relation="above",
                    rows={"weights": "none"}, other={"weights": ckpt})  # fmt: skip
    outcome = e.check(rows)
    assert outcome.holds and "/tmp" not in outcome.measured
    assert outcome.rows == [{"model": "resnet18", "weights": "none", "layer": "layer4"}]
    assert outcome.other_rows[0]["weights"] == "train-1a2b3c/epoch_004"
    stored = Verdict("R", "cpu", "run", (outcome,)).to_dict()["expectations"][0]
    assert stored["values"] == [3.0, 1.0] and stored["other_rows"] == outcome.other_rows
    assert (
        Verdict.from_dict(json.loads(json.dumps(Verdict("R", "cpu", "run", (outcome,)).to_dict())))
        .outcomes[0]
        .rows
        == outcome.rows
    )
