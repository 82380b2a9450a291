"""Shared helpers of the report pages: figures (``figures``), the page and table HTML, reading a
run's ``config.json``. Each study owns its page (``report(run_dir)`` beside its ``run``); this
package imports no study (``layerscope.studies.build_report`` finds the page by kind)."""

from __future__ import annotations

import html
from pathlib import Path

from ..core.errors import LayerscopeError
from ..core.files import read_json

__all__ = ["figure", "page", "read_meta", "table", "write_page"]


def read_meta(run_dir: str | Path) -> dict:
    """A run directory's ``config.json`` (study config, kind, versions, device)."""
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise LayerscopeError(f"{run_dir} is not a run directory (no config.json)")
    return read_json(path)


_STYLE = """body { font-family: system-ui, sans-serif; margin: 2em; max-width: 1400px; }
table { border-collapse: collapse; font-size: 0.85em; margin-bottom: 1.5em; }
td, th { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
th { background: #f3f3f3; } img { max-width: 100%; }
figure { margin: 0 0 1.5em 0; } figcaption { font-size: 0.85em; color: #444; }"""


def _cell(v) -> str:
    return f"{v:.3f}" if isinstance(v, float) else html.escape(str(v))


def table(header: list[str], rows: list[list]) -> str:
    head = "<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>\n"
    return (
        "<table>"
        + head
        + "".join("<tr>" + "".join(f"<td>{_cell(v)}</td>" for v in row) + "</tr>\n" for row in rows)
        + "</table>"
    )


def _page(title: str, heading: str, body: str) -> str:
    return (f'<!doctype html>\n<html><head><meta charset="utf-8"><title>{html.escape(title)}'
            f"</title>\n<style>\n{_STYLE}\n</style></head><body>\n<h1>{html.escape(heading)}"
            f"</h1>\n{body}\n</body></html>\n")  # fmt: skip


def figure(src: str, alt: str, caption: str | None = None) -> str:
    """A figure of a page: the image file with its alt text (what it shows, for a reader who
    cannot see it) and a caption under it (default: the alt text)."""
    return (f'<figure><img src="{html.escape(src)}" alt="{html.escape(alt)}">'
            f"<figcaption>{html.escape(caption or alt)}</figcaption></figure>")  # fmt: skip


#: Shared page helpers for the studies that own their report page.
page = _page


def write_page(run_dir: str | Path, title: str, heading: str, body: str) -> Path:
    """Write ``run_dir/report.html`` (atomically) from a body of HTML; returns its path."""
    from ..core.files import atomic_path

    out = Path(run_dir) / "report.html"
    with atomic_path(out) as tmp:
        tmp.write_text(_page(title, heading, body))
    return out
