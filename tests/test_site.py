"""The static site across runs (``layerscope site``): built from saved results only, checked
in a real browser (Chromium through Playwright) where the machine has one."""

from __future__ import annotations

import html
import os
import re
from pathlib import Path

import pytest

import layerscope as ls
from browser import check_site, sort_by
from layerscope.site import build_site, find_runs
from layerscope.studies import registry
from layerscope.training import latest_checkpoint


def make_runs(root: Path) -> dict[str, Path]:
    """A tiny run of every study kind under ``root`` (~25 s on 2 cores) and one recipe
    verdict; returns the run directories by kind."""
    runs: dict[str, Path] = {}

    def run(kind: str, **options) -> Path:
        runs[kind] = ls.run_study(kind, out=root / kind, **options)
        return runs[kind]

    trained = run("train", model="smallcnn", data="photos", epochs=2, size=16, n=32,
                  batch_size=16)  # fmt: skip
    ckpt = str(latest_checkpoint(trained))
    run("depth", model="resnet10", image="chelsea", size=32, iterations=4, layers="conv1,layer2")
    run("training-effect", model="smallcnn", weights=f"none,{ckpt}", image="chelsea", size=16,
        iterations=2, layers="conv1,conv3")  # fmt: skip
    run("ablate", weights=ckpt, model="smallcnn", layers="conv2", orders=1, points=2, n=16)
    run("similarity", model_a="resnet10", size=16, n=16, batch_size=8)
    run("similarity-training", over_training=str(trained), n=16, batch_size=8)
    run("sensitivity", model="smallcnn", n=8, size=16, batch_size=8)
    run("lose-spatial-info", epochs=1, n_train=16, n=8)
    run("invertible", size=8, depth=2, samples=10, iterations=5)
    run("relu-bound", model="mlp:64,128", size=8, n=16, batch_size=8)
    run("fc-widths", size=8, iterations=5, narrow="16", wide="128", depth="2", growing="64,96")
    run("conditioning", model="resnet10", size=16, k=4, layers="conv1,layer2")
    run("generate", model="resnet10", size=16, iterations=2, classes="0,1")
    run("merge", student="resnet10", teacher="resnet10", size=16, steps=2, iterations=2,
        classes="0,1")  # fmt: skip
    from layerscope.recipes import reproduce

    small = {"model": "resnet10", "size": "32", "iterations": "4"}
    runs["recipe"] = Path(reproduce("IV-2", sets=small, out=root / "IV-2-cpu").run)
    return runs


@pytest.fixture(scope="session")
def every_kind(tmp_path_factory) -> dict[str, Path]:
    return make_runs(tmp_path_factory.mktemp("runs"))


@pytest.fixture(scope="session")
def built(every_kind, tmp_path_factory) -> Path:
    root = every_kind["depth"].parent
    return build_site([root], tmp_path_factory.mktemp("site") / "site")


def test_the_runs_cover_every_study_kind(every_kind):
    """A new study needs a run here, so its page is opened in the browser too."""
    assert set(registry()) <= set(every_kind)


def test_every_study_declares_what_its_run_prints_and_the_cli_renders_it(every_kind, capsys):
    """Each study owns its terminal blocks as it owns its page (no table of them in the CLI):
    every kind's finished run gives tables whose rows fit their columns and lines, and the
    command line prints them; a study without a ``terminal`` prints its summary."""
    from layerscope.apps import cli
    from layerscope.report.terminal import Line, TextTable, summary_table

    for kind, study in registry().items():
        assert study.terminal is not None, kind
        blocks = study.terminal(every_kind[kind])
        assert blocks and all(isinstance(b, TextTable | Line) for b in blocks), kind
        for t in (b for b in blocks if isinstance(b, TextTable)):
            assert t.rows and all(len(r) == len(t.columns) for r in t.rows), (kind, t.title)
        capsys.readouterr()
        cli._show(every_kind[kind])
        printed = capsys.readouterr().out
        first = blocks[0].title if isinstance(blocks[0], TextTable) else blocks[0].text
        assert first.split(" · ")[0][:40] in printed, kind
    fallback = summary_table(every_kind["depth"], {"m_g": 0.5, "layers": 2})
    assert [r for r in fallback[0].rows] == [("m_g", "0.5"), ("layers", "2")]


def test_the_site_opens_in_chromium_with_every_figure_link_and_page(built, every_kind, tmp_path):
    shots = tmp_path / "screenshots"
    visited = check_site(built, shots)
    for kind in registry():
        assert f"runs/{kind}/report.html" in visited, kind
    assert "recipes/IV-2-cpu.html" in visited
    assert any(p.startswith("runs/lose-spatial-info/sensitivity/") for p in visited)  # sub-runs
    for name in ("index.png", "run.png"):
        assert (shots / name).stat().st_size > 10_000, name


def test_clicking_a_header_sorts_the_index_and_typing_filters_it(built, every_kind):
    ascending, descending, filtered = sort_by(built, "kind", "relu-bound")
    assert ascending == sorted(ascending) and descending == sorted(ascending, reverse=True)
    assert len(ascending) == len(find_runs([every_kind["depth"].parent]))
    assert filtered == ["relu-bound"]


def test_the_index_lists_every_run_with_its_summary_and_verdict(built, every_kind):
    text = built.read_text()
    for kind, run_dir in every_kind.items():
        assert f'href="runs/{run_dir.name}/report.html"' in text, kind
    assert 'href="recipes/IV-2-cpu.html"' in text and "IV-2: does not hold" in text
    assert "median m_g/m_r" in text  # the depth study's summary numbers
    assert "<script" in text and "fetch(" not in text and "http" not in text  # opens offline
    verdict = (built.parent / "recipes" / "IV-2-cpu.html").read_text()
    from layerscope.recipes import load_recipe

    assert f"Claim: {html.escape(load_recipe('IV-2').claim)}" in verdict
    assert 'src="../runs/IV-2-cpu/grid.png"' in verdict


def test_only_top_level_runs_are_listed_and_the_site_folder_is_skipped(every_kind, tmp_path):
    root = every_kind["depth"].parent
    found = find_runs([root], skip=root / "site")
    assert every_kind["lose-spatial-info"] in found
    assert not any("lose-spatial-info" in str(r.relative_to(root).parent) for r in found)
    assert find_runs([every_kind["depth"]]) == [every_kind["depth"]]  # a run named itself


def test_a_missing_figure_is_named_and_a_heavy_one_is_shrunk(every_kind, tmp_path, monkeypatch):
    from PIL import Image

    import layerscope.site as site

    run = tmp_path / "runs" / "d"
    run.mkdir(parents=True)
    src = every_kind["depth"]
    for name in ("config.json", "summary.csv", "metrics.csv"):
        (run / name).write_bytes((src / name).read_bytes())
    Image.new("RGB", (400, 300), (200, 10, 10)).save(run / "grid.png")
    heavy_bytes = (run / "grid.png").stat().st_size
    (run / "report.html").write_text(
        '<html><head></head><body><img src="grid.png" alt="g"><img src="gone.png" alt="x">'
        '<a href="nothing.csv">data</a></body></html>'
    )
    monkeypatch.setattr(site, "MAX_PNG_BYTES", heavy_bytes // 2)
    index = build_site([tmp_path / "runs"], tmp_path / "site")
    page = (index.parent / "runs" / "d" / "report.html").read_text()
    assert "figure gone.png is missing from the run" in page and "nothing.csv" not in page
    small = index.parent / "runs" / "d" / "grid.png"
    assert small.stat().st_size <= heavy_bytes // 2
    assert Image.open(small).width < 400


def test_building_again_on_a_grown_folder_updates_only_what_changed(every_kind, tmp_path):
    root = tmp_path / "runs"
    root.mkdir()
    for kind in ("depth", "conditioning"):
        (root / kind).symlink_to(every_kind[kind], target_is_directory=True)
    index = build_site([root], tmp_path / "site")
    grid = index.parent / "runs" / "depth" / "grid.png"
    stamp = grid.stat().st_mtime_ns
    os.utime(grid, ns=(stamp, stamp))
    (root / "invertible").symlink_to(every_kind["invertible"], target_is_directory=True)
    (root / "conditioning").unlink()
    build_site([root], tmp_path / "site")
    text = index.read_text()
    assert "runs/invertible/report.html" in text and "runs/conditioning/" not in text
    assert not (index.parent / "runs" / "conditioning").exists()
    assert grid.stat().st_mtime_ns == stamp  # unchanged: not copied again


def test_the_site_never_writes_into_a_folder_it_did_not_make(every_kind, tmp_path, run_cli):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    code, _, err = run_cli("site", str(every_kind["depth"]), "--out", str(mine))
    assert code == 2 and "other files in it" in err and err.count("\n") == 1
    code, _, err = run_cli("site", str(every_kind["depth"]), "--out", str(every_kind["train"]))
    assert code == 2 and "is a run directory" in err
    code, _, err = run_cli("site", str(tmp_path / "nowhere"), "--out", str(tmp_path / "s"))
    assert code == 2 and "does not exist" in err
    code, out, err = run_cli("site", str(every_kind["depth"]), "--out", str(tmp_path / "s"))
    assert code == 0, err
    assert re.search(r"site: .*index\.html", out) and (tmp_path / "s" / "site.css").is_file()


def test_every_study_page_gives_each_figure_alt_text_and_a_caption(every_kind):
    for kind, run_dir in every_kind.items():
        for page in run_dir.glob("**/report.html"):
            text = page.read_text()
            for tag in re.findall(r"<img\b[^>]*>", text):
                if "data:image" in tag:
                    continue
                assert re.search(r'alt="[^"]+"', tag), (kind, page, tag)
            assert text.count("<img") == text.count("<figcaption>"), (kind, page)


def test_every_finished_run_holds_its_studys_table(every_kind):
    """The file the site and a sweep's table look for (Study.table) is what each study writes."""
    from layerscope.studies import registry

    for kind, study in registry().items():
        assert study.table and (every_kind[kind] / study.table).is_file(), kind
