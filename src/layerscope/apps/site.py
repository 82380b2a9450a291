"""One static site across runs, from saved results only (nothing is recomputed).

``build_site(paths, out)`` finds every run directory under ``paths`` (a directory holding a
``config.json``; a run's own sub-runs belong to its page), and writes into ``out``:

- ``index.html``: every run (kind, date, models, weights, status, the study's summary numbers,
  the recipe verdict where there is one) in a table sorted and filtered in the page (a few
  lines of plain JavaScript; the data is the table itself, so the page opens from ``file://``);
  a second table lists the recipe verdicts;
- ``runs/<slug>/``: each run's ``report.html`` in the shared layout (a navigation bar back to
  the index) with exactly the files its pages reference (figures, tables, sub-run pages),
  copied; a reference to a file the run lacks is dropped and named on the page;
- ``recipes/<slug>.html``: per verdict, the claim, each expectation with its measured value and
  the run's figures.

No network, no CDN, no server. Running it again on a grown folder updates the site: changed
files are copied again, runs that are gone are removed (only inside the site's own folders).
"""

from __future__ import annotations

import html
import os
import re
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from urllib.parse import quote, unquote

from ..core.errors import LayerscopeError
from ..core.files import atomic_path, read_json
from ..core.labels import weights_label

__all__ = ["MAX_PNG_BYTES", "SiteRun", "build_site", "find_runs"]

#: A figure heavier than this is re-encoded smaller for the site (the run keeps its own).
MAX_PNG_BYTES = 1_500_000
_MARK = ".layerscope-site"
_STYLE = """nav.site { font-size: 0.9em; margin-bottom: 1em; padding: 0.4em 0.6em;
  background: #eef2f7; border-radius: 4px; }
nav.site a { margin-right: 1em; }
figure { margin: 0 0 1.5em 0; } figcaption { font-size: 0.85em; color: #444; }
.verdict-holds { color: #176b2c; font-weight: bold; }
.verdict-fails { color: #a11; font-weight: bold; }
.verdict-other { color: #8a5a00; font-weight: bold; }
p.missing { color: #a11; font-size: 0.85em; }
#runs th, #recipes th { cursor: pointer; user-select: none; }
th[aria-sort="ascending"]::after { content: " ▲"; }
th[aria-sort="descending"]::after { content: " ▼"; }
td.text, table.sortable th { text-align: left; }
input#filter { margin-bottom: 0.8em; padding: 0.3em; width: 24em; }"""

_SORT_SCRIPT = """<script>
(function () {
  function key(td) {
    var v = td.hasAttribute('data-sort') ? td.getAttribute('data-sort') : td.textContent.trim();
    var n = Number(v);
    return v !== '' && !isNaN(n) ? [0, n] : [1, v.toLowerCase()];
  }
  function cmp(a, b) {
    if (a[0] !== b[0]) return a[0] - b[0];
    return a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0;
  }
  document.querySelectorAll('table.sortable').forEach(function (table) {
    var heads = table.querySelectorAll('thead th');
    heads.forEach(function (th, i) {
      th.addEventListener('click', function () {
        var up = th.getAttribute('aria-sort') !== 'ascending';
        heads.forEach(function (h) { h.removeAttribute('aria-sort'); });
        th.setAttribute('aria-sort', up ? 'ascending' : 'descending');
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) {
          var c = cmp(key(a.cells[i]), key(b.cells[i]));
          return up ? c : -c;
        });
        rows.forEach(function (r) { body.appendChild(r); });
      });
    });
  });
  var filter = document.getElementById('filter');
  if (filter) filter.addEventListener('input', function () {
    var q = filter.value.toLowerCase();
    document.querySelectorAll('#runs tbody tr').forEach(function (r) {
      r.hidden = q !== '' && r.textContent.toLowerCase().indexOf(q) < 0;
    });
  });
})();
</script>"""


@dataclass
class SiteRun:
    """One run as the index shows it."""

    dir: Path
    slug: str
    kind: str
    created: str
    models: str
    weights: str
    finished: bool
    summary: dict = field(default_factory=dict)
    verdict: dict | None = None
    figures: list[tuple[str, str]] = field(default_factory=list)  # (src in the site, alt)

    @property
    def page(self) -> str:
        return f"runs/{self.slug}/report.html"


def find_runs(paths: Iterable[str | Path], skip: str | Path | None = None) -> list[Path]:
    """Every run directory under ``paths`` (a path may be a run itself). A run's sub-runs are
    not listed (its page links them); hidden folders and ``skip`` (the site) are left out."""
    skip_dir = Path(skip).resolve() if skip is not None else None
    found: list[Path] = []
    for p in map(Path, paths):
        if not p.exists():
            raise LayerscopeError(f"{p} does not exist: name run directories or folders of runs")
        if (p / "config.json").is_file() or (p / "verdict.json").is_file():
            found.append(p)
            continue
        seen: set[Path] = set()
        for root, dirs, files in os.walk(p, followlinks=True):
            here = Path(root)
            real = here.resolve()
            if real in seen or (skip_dir is not None and real == skip_dir):
                dirs[:] = []  # a link back up the tree, or the site itself
                continue
            seen.add(real)
            # a run, or a recipe that could not run (its verdict.json alone); p itself holds
            # neither: a run named is taken above
            if _MARK in files:  # a site (a sweep's, one built inside a folder of runs)
                dirs[:] = []
                continue
            if "config.json" in files or "verdict.json" in files:
                found.append(here)
                dirs[:] = []
                continue
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
    unique = {r.resolve(): r for r in found}
    return sorted(unique.values(), key=lambda r: str(r))


def _slugs(runs: list[Path]) -> list[str]:
    """Short unique names: the path below the runs' common folder, '/' as '--'."""
    resolved = [r.absolute() for r in runs]
    if not resolved:
        return []
    if len(resolved) == 1:
        base = resolved[0].parent
    else:
        base = Path(os.path.commonpath([str(r) for r in resolved]))
    out, seen = [], set()
    for r in resolved:
        rel = r.relative_to(base) if r != base else Path(r.name)
        slug = re.sub(r"[^A-Za-z0-9._-]+", "-", "--".join(rel.parts)).strip("-") or "run"
        name, n = slug, 2
        while name in seen:
            name, n = f"{slug}-{n}", n + 1
        seen.add(name)
        out.append(name)
    return out


def _short(value) -> str:
    """A config's model or weights value as the index shows it (a checkpoint by its short
    label, :func:`~layerscope.models.weights_label`)."""
    items = value if isinstance(value, list) else [value]
    shown = []
    for v in items:
        if isinstance(v, list):
            shown.append("/".join(map(str, v)))
        elif isinstance(v, str) and ("/" in v or "\\" in v):
            shown.append(weights_label(v))
        elif v is not None:
            shown.append(str(v))
    return ", ".join(shown)


def _describe(run: Path, slug: str) -> SiteRun:
    from ..studies import registry

    damaged = ""
    try:
        meta = read_json(run / "config.json") if (run / "config.json").is_file() else {}
    except LayerscopeError as exc:  # one damaged run is listed as such; the others go on
        meta, damaged = {"kind": "damaged"}, str(exc)
    kind = str(meta.get("kind", "reproduce" if not meta else "?"))
    config = meta.get("study") if isinstance(meta.get("study"), dict) else {}
    models = _short(config.get("models") or config.get("model") or config.get("nets") or "")
    summary: dict = {"summary": f"unreadable: {damaged}"} if damaged else {}
    study = registry().get(kind)
    table = getattr(study, "table", None)
    if study is not None and meta.get("finished") and table and not (run / table).is_file():
        summary = {"summary": f"results missing: {table} is gone from this finished run"}
    elif study is not None:
        try:
            summary = dict(study.summary(run) or {})
        except Exception as exc:  # a partial run: the index says why it has no numbers
            summary = {"summary": f"unavailable ({type(exc).__name__})"}
    verdict = None
    if (run / "verdict.json").is_file():
        try:
            verdict = read_json(run / "verdict.json")
        except Exception:  # a damaged verdict is not shown
            verdict = None
    return SiteRun(
        dir=run, slug=slug, kind=kind, created=str(meta.get("created", "")),
        models=models, weights=_short(config.get("weights", "")),
        finished=bool(meta.get("finished")), summary=summary, verdict=verdict,
    )  # fmt: skip


# --- copying a run's pages and the files they reference ---------------------------------

_TAG = re.compile(r"<(img|a)\b([^>]*)>", re.IGNORECASE)
_ATTR = re.compile(r'\b(src|href)="([^"]*)"', re.IGNORECASE)
_ALT = re.compile(r'\balt="([^"]*)"', re.IGNORECASE)


def _local(ref: str) -> bool:
    return bool(ref) and not re.match(r"^(?:[a-z][a-z0-9+.-]*:|#|/)", ref, re.IGNORECASE)


def _copy(src: Path, dest: Path) -> None:
    """Copy ``src`` unless ``dest`` already is this version of it; a figure heavier than
    :data:`MAX_PNG_BYTES` is re-encoded smaller."""
    stat = src.stat()
    if dest.is_file() and dest.stat().st_mtime_ns == stat.st_mtime_ns:
        return
    dest.parent.mkdir(parents=True, exist_ok=True)
    if src.suffix.lower() == ".png" and stat.st_size > MAX_PNG_BYTES:
        _shrink_png(src, dest)
    else:
        shutil.copyfile(src, dest)
    os.utime(dest, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def _shrink_png(src: Path, dest: Path) -> None:
    from PIL import Image

    with Image.open(src) as im:
        image = im.convert("RGBA") if im.mode not in ("RGB", "RGBA", "L") else im.copy()
    scale = 1.0
    while True:
        scale *= 0.75
        w, h = max(1, int(image.width * scale)), max(1, int(image.height * scale))
        with atomic_path(dest) as tmp:
            image.resize((w, h), Image.LANCZOS).save(tmp, format="PNG", optimize=True)
        if dest.stat().st_size <= MAX_PNG_BYTES or w < 64:
            return


def _nav(up: str, run: SiteRun | None = None) -> str:
    links = [f'<a href="{up}index.html">{"← all runs" if up else "layerscope runs"}</a>']
    if run is not None:
        links.append(f'<a href="{up}{run.page}">run {html.escape(run.slug)}</a>')
        if run.verdict is not None:
            rid, v = (html.escape(str(run.verdict.get(k))) for k in ("recipe", "verdict"))
            links.append(f'<a href="{up}recipes/{run.slug}.html">verdict of {rid}: {v}</a>')
    return '<nav class="site">' + "".join(links) + "</nav>"


def _in_layout(text: str, up: str, run: SiteRun | None) -> str:
    """A page of a study put in the site's layout: the shared style sheet, the navigation."""
    style = f'<link rel="stylesheet" href="{up}site.css">'
    text = text.replace("</head>", style + "</head>", 1) if "</head>" in text else style + text
    nav = _nav(up, run)
    if re.search(r"<body[^>]*>", text):
        return re.sub(r"(<body[^>]*>)", lambda m: m.group(1) + nav, text, count=1)
    return nav + text


def _publish(page: Path, run: SiteRun, site: Path, done: set[Path]) -> list[tuple[str, str]]:
    """Write ``page`` (a page of ``run``) and what it references into the site; returns its
    figures as (path relative to the page, alt)."""
    done.add(page.resolve())
    root = run.dir.resolve()
    dest_root = site / "runs" / run.slug
    rel_page = page.resolve().relative_to(root)
    dest_page = dest_root / rel_page
    up = "../" * (len(rel_page.parts) + 1)
    figures: list[tuple[str, str]] = []

    def fix(tag: re.Match) -> str:
        name, attrs = tag.group(1).lower(), tag.group(2)
        found = _ATTR.search(attrs)
        if found is None or not _local(found.group(2)):
            return tag.group(0)
        ref = found.group(2)
        path_part = unquote(ref.split("#", 1)[0].split("?", 1)[0])
        target = (page.parent / path_part).resolve()
        inside = target == root or root in target.parents
        if not inside or not target.is_file():
            if name == "img":
                gone = html.escape(path_part)
                return f'<p class="missing">figure {gone} is missing from the run</p>'
            return "<a>"  # the link's text stays, without a target
        if target.suffix.lower() in (".html", ".htm"):
            if target not in done:
                _publish(target, run, site, done)
        else:
            _copy(target, dest_root / target.relative_to(root))
        if name == "img":
            alt = _ALT.search(attrs)
            figures.append((path_part, alt.group(1) if alt else path_part))
        return tag.group(0)

    text = _TAG.sub(fix, page.read_text(encoding="utf-8", errors="replace"))
    dest_page.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(dest_page) as tmp:
        tmp.write_text(_in_layout(text, up, run), encoding="utf-8")
    return figures


def _no_report(run: SiteRun) -> str:
    import json

    if not (run.dir / "config.json").is_file():  # a recipe that could not run
        error = (run.verdict or {}).get("error", "")
        return (
            f"<p>The recipe could not run: {html.escape(str(error))}</p><p>Nothing else "
            "was saved; <code>layerscope reproduce all --resume</code> tries it again.</p>"
        )
    try:
        meta = read_json(run.dir / "config.json")
    except LayerscopeError as exc:
        return f"<p>This run cannot be shown: {html.escape(str(exc))}</p>"
    outside = (run.dir / "report.html").exists()
    return (
        ("<p>Its report.html points outside the run and is not published.</p>" if outside else "")
        + f"<p>This run has no report page ({'finished' if run.finished else 'not finished'}): "
        f"<code>layerscope report {html.escape(str(run.dir))}</code> builds it from what it "
        "saved.</p><h2>Settings</h2><pre>"
        + html.escape(json.dumps(meta, indent=1, sort_keys=True))
        + "</pre>"
    )


def _publish_run(run: SiteRun, site: Path) -> None:
    from ..report import page

    report = run.dir / "report.html"
    root = run.dir.resolve()
    if report.is_file() and root in report.resolve().parents:  # a link outside: not its page
        run.figures = _publish(report, run, site, set())
        return
    dest = site / run.page
    dest.parent.mkdir(parents=True, exist_ok=True)
    text = page(f"layerscope · {run.slug}", f"{run.kind} · {run.slug}", _no_report(run))
    with atomic_path(dest) as tmp:
        tmp.write_text(_in_layout(text, "../../", run), encoding="utf-8")


# --- the index and the verdict pages ------------------------------------------------------


def _verdict_class(verdict: str) -> str:
    return {"holds": "verdict-holds", "does not hold": "verdict-fails"}.get(
        verdict, "verdict-other"
    )


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _sets(sets: dict) -> str:
    return ", ".join(f"{k}={x}" for k, x in sets.items())


#: The index shows a run's first summary numbers; its page has them all.
SUMMARY_ITEMS = 8


def _summary_text(summary: dict) -> str:
    items = [f"{k} = {_fmt(v)}" for k, v in summary.items()]
    more = len(items) - SUMMARY_ITEMS
    return "; ".join(items[:SUMMARY_ITEMS]) + (f"; … {more} more on its page" if more > 0 else "")


def _td(value, sort=None, raw: bool = False) -> str:
    shown = value if raw else html.escape(_fmt(value))
    attr = f' data-sort="{html.escape(str(sort))}"' if sort is not None else ""
    return f'<td class="text"{attr}>{shown}</td>'


def _recipe_text(verdict: dict) -> tuple[str, str, str]:
    """(title, claim, seed) of a verdict's recipe: as the verdict recorded them, else from
    the shipped recipe of that id (blanks for a recipe file of the user's)."""
    from .recipes import recipes

    try:
        r = recipes().get(str(verdict.get("recipe")))
    except Exception:  # a recipe that no longer parses: what the verdict says is enough
        r = None
    title = verdict.get("title") or (r.title if r else "")
    claim = verdict.get("claim") or (r.claim if r else "")
    return str(title), str(claim), r.source if r else ""


def _index(runs: list[SiteRun]) -> str:
    from ..report import page

    head = ("run", "kind", "date", "model(s)", "weights", "status", "verdict", "summary")
    rows = []
    for r in runs:
        verdict = ""
        if r.verdict is not None:
            v = str(r.verdict.get("verdict", ""))
            rid = html.escape(str(r.verdict.get("recipe")))
            verdict = (f'<a class="{_verdict_class(v)}" href="recipes/{r.slug}.html">'
                       f"{rid}: {html.escape(v)}</a>")  # fmt: skip
        summary = _summary_text(r.summary)
        rows.append(
            "<tr>"
            + _td(f'<a href="{r.page}">{html.escape(r.slug)}</a>', sort=r.slug, raw=True)
            + _td(r.kind) + _td(r.created.replace("T", " ")[:16], sort=r.created)
            + _td(r.models) + _td(r.weights)
            + _td("finished" if r.finished else "not finished")
            + _td(verdict, sort=verdict and r.verdict.get("verdict"), raw=True)
            + _td(summary)
            + "</tr>"
        )  # fmt: skip
    table = (
        '<table id="runs" class="sortable"><thead><tr>'
        + "".join(f'<th scope="col">{h}</th>' for h in head)
        + "</tr></thead><tbody>\n"
        + "\n".join(rows)
        + "</tbody></table>"
    )
    verdicts = [r for r in runs if r.verdict is not None]
    recipe_rows = []
    for r in verdicts:
        v = r.verdict or {}
        rid = str(v.get("recipe", ""))
        _, claim, _ = _recipe_text(v)
        recipe_rows.append(
            "<tr>"
            + _td(f'<a href="recipes/{r.slug}.html">{html.escape(rid)}</a>', sort=rid, raw=True)
            + _td(claim) + _td(v.get("scale", ""))
            + _td(f'<span class="{_verdict_class(str(v.get("verdict")))}">'
                  f"{html.escape(str(v.get('verdict')))}</span>", sort=v.get("verdict"), raw=True)
            + _td(_sets(v.get("sets") or {}))
            + "</tr>"
        )  # fmt: skip
    recipes = ""
    if recipe_rows:
        recipes = (
            "<h2>Recipe verdicts</h2>"
            '<table id="recipes" class="sortable"><thead><tr>'
            + "".join(
                f'<th scope="col">{h}</th>'
                for h in ("recipe", "claim", "scale", "verdict", "--set")
            )
            + "</tr></thead><tbody>\n"
            + "\n".join(recipe_rows)
            + "</tbody></table>"
        )
    stamp = datetime.now().strftime("%Y-%m-%d %H:%M")
    body = (
        f"<p>{len(runs)} run(s), {len(verdicts)} recipe verdict(s); built {stamp} from saved "
        "results (<code>layerscope site</code>). Click a column header to sort, type to "
        'filter.</p><input id="filter" type="search" placeholder="filter runs…" '
        'aria-label="filter runs">' + table + recipes + _SORT_SCRIPT
    )
    text = page("layerscope · runs", "layerscope runs", body)
    return _in_layout(text, "", None)


def _paper_value(e: dict):
    """The source's own number of an expectation ("" when it gives none; older verdicts
    stored it as ``seed_value``)."""
    value = e.get("paper_value", e.get("seed_value"))
    return "" if value is None else value


def _verdict_page(run: SiteRun) -> str:
    from ..report import page

    v = run.verdict or {}
    rid = str(v.get("recipe", "?"))
    title, claim, seed = _recipe_text(v)
    verdict = str(v.get("verdict", ""))
    rows = "".join(
        "<tr>" + _td(e.get("what", "")) + _td(e.get("relation", ""))
        + _td(e.get("measured", ""))
        + _td(_paper_value(e))
        + f'<td class="text {_verdict_class(str(e.get("verdict")))}">'
        + f"{html.escape(str(e.get('verdict')))}</td></tr>"
        for e in v.get("expectations", [])
    )  # fmt: skip
    sets = v.get("sets") or {}
    figures = "".join(
        f'<figure><img src="../runs/{run.slug}/{quote(src)}" alt="{alt}">'
        f"<figcaption>{alt}</figcaption></figure>"
        for src, alt in run.figures
    )
    body = (
        (f"<p><b>{html.escape(title)}</b></p>" if title else "")
        + (f"<p>Claim: {html.escape(claim)}</p>" if claim else "")
        + (f"<p>Seed: {html.escape(seed)}</p>" if seed else "")
        + f'<p>Scale {html.escape(str(v.get("scale", "")))}'
        + (f", with --set {html.escape(_sets(sets))}" if sets else "")
        + f': <span class="{_verdict_class(verdict)}">{html.escape(verdict)}</span>. '
        + f'Run: <a href="../{run.page}">{html.escape(run.slug)}</a>.</p>'
        + (f'<p class="missing">Why: {html.escape(str(v["error"]))}</p>' if v.get("error")
           else "")
        + "<table><thead><tr><th>expectation</th><th>relation</th><th>measured</th>"
        + "<th>the paper's value</th><th>verdict</th></tr></thead><tbody>"
        + rows
        + "</tbody></table>"
        + (f"<h2>Figures</h2>{figures}" if figures else "")
    )  # fmt: skip
    text = page(f"layerscope · {rid}", f"{rid}: {verdict}", body)
    return _in_layout(text, "../", run)


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _prepare(out: Path) -> None:
    if out.exists() and (out / "config.json").is_file():
        raise LayerscopeError(f"--out {out} is a run directory: give the site a folder of its own")
    if out.exists() and any(out.iterdir()) and not (out / _MARK).is_file():
        raise LayerscopeError(
            f"--out {out} is a folder with other files in it: give the site an empty or new "
            "folder (a site built before is updated in place)"
        )
    out.mkdir(parents=True, exist_ok=True)
    (out / _MARK).write_text("a site built by layerscope site; rebuilt in place\n")


def build_site(paths: Iterable[str | Path], out: str | Path, progress: bool = False) -> Path:
    """Build (or update) the static site of every run under ``paths`` into ``out``; returns
    the index page. Nothing is recomputed: each run's saved report and files are used."""
    out = Path(out)
    paths = list(paths)
    if not paths:
        raise LayerscopeError("name at least one run directory or folder of runs")
    found = find_runs(paths, skip=out)
    _prepare(out)
    from ..core.progress import progress_bar

    runs = []
    for run_dir, slug in zip(found, _slugs(found), strict=True):
        runs.append(_describe(run_dir, slug))
    runs.sort(key=lambda r: (r.created, r.slug), reverse=True)
    with progress_bar(len(runs), enabled=progress, description="site") as bar:
        for r in runs:
            _publish_run(r, out)
            if r.verdict is not None:
                _write(out / "recipes" / f"{r.slug}.html", _verdict_page(r))
            bar.advance()
    _tidy(out, {r.slug for r in runs}, {r.slug for r in runs if r.verdict is not None})
    from ..report import _STYLE as page_style

    _write(out / "site.css", page_style + "\n" + _STYLE + "\n")
    _write(out / "index.html", _index(runs))
    return out / "index.html"


def _tidy(out: Path, slugs: set[str], verdicts: set[str]) -> None:
    """Remove the pages of runs no longer found (only inside the site's own folders)."""
    if (out / "runs").is_dir():
        for d in (out / "runs").iterdir():
            if d.name not in slugs:
                shutil.rmtree(d) if d.is_dir() else d.unlink()
    if (out / "recipes").is_dir():
        for f in (out / "recipes").iterdir():
            if f.suffix == ".html" and f.stem not in verdicts:
                f.unlink()
