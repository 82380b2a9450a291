"""The browser checks of a layerscope site, shared by the site's and the sweep's tests: Debian's
``chromium`` driven by Playwright's Python package through the system browser's executable
path (Playwright's own browser download is impossible here). Where either is missing, the
tests skip and say why in one line."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest


def chromium() -> str:
    """The system Chromium's path, or skip the test saying how to get it."""
    try:
        import playwright  # noqa: F401
    except ImportError:
        pytest.skip("browser tests: playwright is not installed (pip install -e '.[dev]')")
    for name in (os.environ.get("LAYERSCOPE_CHROMIUM"), "chromium", "chromium-browser"):
        found = name and shutil.which(name)
        if found:
            return found
    pytest.skip("browser tests: no chromium on this machine (as root: apt-get install chromium)")


def _file(url: str) -> Path:
    return Path(unquote(urlparse(url).path))


def check_site(index: Path, shots: Path, pages: int | None = None) -> dict[str, Path]:
    """Open ``index`` and every page of the site it links (``pages``: at most that many) from
    ``file://`` in Chromium and assert: no console error and no page error, every ``<img>``
    loaded (``naturalWidth > 0``) with alt text, every link inside the site resolves to a
    file. Screenshots of the index and of the first run page go under ``shots``. Returns the
    visited pages by their path relative to the site."""
    from playwright.sync_api import sync_playwright

    site = index.parent.resolve()
    shots.mkdir(parents=True, exist_ok=True)
    visited: dict[str, Path] = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            errors: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            queue = [index.resolve()]
            while queue and (pages is None or len(visited) < pages):
                path = queue.pop(0)
                rel = str(path.relative_to(site))
                if rel in visited:
                    continue
                page.goto(path.as_uri())
                page.wait_for_load_state("load")
                assert not errors, (rel, errors)
                images = page.evaluate(
                    "Array.from(document.images).map(i => "
                    "[i.getAttribute('src'), i.complete && i.naturalWidth, i.alt])"
                )
                for src, width, alt in images:
                    assert width and width > 0, (rel, src, "did not load")
                    assert alt.strip(), (rel, src, "has no alt text")
                for href in page.evaluate(
                    "Array.from(document.querySelectorAll('a[href]')).map(a => a.href)"
                ):
                    if not href.startswith("file://"):
                        assert href.startswith(("http://", "https://", "mailto:")), (rel, href)
                        continue
                    target = _file(href.split("#", 1)[0])
                    assert target.is_file(), (rel, href, "does not resolve")
                    assert site in target.parents, (rel, href, "leaves the site")
                    if target.suffix == ".html" and str(target.relative_to(site)) not in visited:
                        queue.append(target)
                if rel == "index.html":
                    page.screenshot(path=str(shots / "index.png"), full_page=True)
                elif rel.startswith("runs/") and not (shots / "run.png").exists():
                    page.screenshot(path=str(shots / "run.png"), full_page=True)
                visited[rel] = path
        finally:
            browser.close()
    return visited


def sort_by(index: Path, column: str, text: str) -> list[list[str]]:
    """Click the runs table's header ``column`` once, then again: the column's cells after
    each click; then type ``text`` in the filter: the kinds of the rows still shown."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.goto(index.resolve().as_uri())
            heads = page.eval_on_selector_all("#runs thead th", "hs => hs.map(h => h.textContent)")
            i = heads.index(column) + 1
            seen = []
            for _ in range(2):
                page.click(f"#runs thead th:nth-child({i})")
                seen.append(
                    page.eval_on_selector_all(
                        f"#runs tbody tr td:nth-child({i})", "cs => cs.map(c => c.textContent)"
                    )
                )
            page.fill("#filter", text)
            shown = page.eval_on_selector_all(
                "#runs tbody tr:not([hidden]) td:nth-child(2)", "cs => cs.map(c => c.textContent)"
            )
            seen.append(shown)
            return seen
        finally:
            browser.close()
