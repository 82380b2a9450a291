"""Progress bars for long work (rich); a no-op when disabled (tests, pipes)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["note", "progress_bar"]


class _Bar:
    def __init__(self, progress=None, task=None) -> None:
        self._p, self._t = progress, task

    def advance(self, n: int = 1) -> None:
        if self._p is not None and n:
            self._p.advance(self._t, n)

    def grow(self, n: int) -> None:
        """``n`` more steps of work than announced (a chunk redone after running out of
        memory)."""
        if self._p is not None and n:
            task = self._p.tasks[self._t] if isinstance(self._t, int) else None
            total = task.total if task is not None else None
            if total is not None:
                self._p.update(self._t, total=total + n)

    def describe(self, text: str) -> None:
        if self._p is not None:
            self._p.update(self._t, description=text[:60])


@contextmanager
def progress_bar(total: int, enabled: bool = True, description: str = "") -> Iterator[_Bar]:
    """``with progress_bar(total) as bar: bar.advance()``; shows steps/s and time left."""
    if not enabled:
        yield _Bar()
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, transient=False) as p:
        yield _Bar(p, p.add_task(description, total=total))


def note(message: str) -> None:
    """One line for the user on stderr: something found and handled that they should know."""
    print(message, file=sys.stderr, flush=True)
