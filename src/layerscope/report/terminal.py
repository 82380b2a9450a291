"""What a finished run prints in a terminal, as data: each study declares its own
(``Study.terminal(run_dir) -> list[TextTable | Line]``) as it declares its page, and the command
line renders any study's blocks the same way (``layerscope.apps.cli``). Nothing here prints."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..core.files import read_json

__all__ = ["Line", "TextTable", "done", "formatted", "step_line", "summary_table"]


@dataclass
class TextTable:
    """A table for the terminal: ``title``, ``columns``, ``rows`` of strings; the first
    ``left`` columns are left-justified, the others right-justified."""

    title: str
    columns: Sequence[str]
    rows: list[Sequence[str]] = field(default_factory=list)
    left: int = 0

    def add(self, *cells) -> None:
        if len(cells) != len(self.columns):
            raise ValueError(f"{self.title}: a row of {len(cells)} cells for "
                             f"{len(self.columns)} columns")  # fmt: skip
        self.rows.append(tuple(str(c) for c in cells))


@dataclass
class Line:
    """A line for the terminal; ``style`` (a colour, "bold") for the whole line."""

    text: str
    style: str | None = None


def done(run_dir: Path, what: str = "report") -> Line:
    """The closing line: where the results are (and the page, for ``what="report"``)."""
    extra = f"  ({what}: {run_dir / 'report.html'})" if what == "report" else what
    return Line(f"results: {run_dir}{extra}")


def step_line(run_dir: Path) -> list[Line]:
    """The descent's own time (no model loading, no report) and how its step ran."""
    step = read_json(Path(run_dir) / "config.json").get("step", {})
    if "descent_seconds" not in step:
        return []
    what = f" for {step['targets']} targets" if "targets" in step else ""
    return [Line(f"descent: {step['descent_seconds']:.2f} s{what} "
                 f"(step: {step.get('compile', 'off')})")]  # fmt: skip


def formatted(v, spec: str) -> str:
    """``v`` formatted by ``spec``, or blank where it is not a number."""
    return format(v, spec) if isinstance(v, (int, float)) else ""


def summary_table(run_dir: Path, summary: dict) -> list[TextTable | Line]:
    """A study without a terminal table of its own: its summary numbers, then ``done``."""
    table = TextTable(f"{Path(run_dir).name}", ("", "value"), left=1)
    for key, value in summary.items():
        table.add(key, f"{value:.4g}" if isinstance(value, float) else value)
    return [table, done(Path(run_dir))]
