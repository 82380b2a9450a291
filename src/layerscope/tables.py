"""Tidy tables as CSV: one row a dict, columns in first-seen order; numbers parsed on read."""

from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import Path

__all__ = ["read_csv", "write_csv"]


def write_csv(path: str | Path, rows: Iterable[dict]) -> Path:
    rows = list(rows)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    columns: list[str] = []
    for row in rows:
        for k in row:
            if k not in columns:
                columns.append(k)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns)
        w.writeheader()
        w.writerows(rows)
    tmp.replace(path)  # atomic: an interrupted write never leaves half a table
    return path


def _parse(v: str):
    for cast in (int, float):
        try:
            return cast(v)
        except ValueError:
            pass
    return v


def read_csv(path: str | Path) -> list[dict]:
    with Path(path).open(newline="") as f:
        return [{k: _parse(v) for k, v in row.items()} for row in csv.DictReader(f)]
