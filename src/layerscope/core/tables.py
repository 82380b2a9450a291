"""Tidy tables as CSV: one row a dict, columns in first-seen order; numbers parsed on read."""

from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import Path

from .files import atomic_path

__all__ = ["parse_value", "read_csv", "write_csv"]


def write_csv(path: str | Path, rows: Iterable[dict]) -> Path:
    rows = list(rows)
    path = Path(path)
    columns: list[str] = []
    for row in rows:
        for k in row:
            if k not in columns:
                columns.append(k)
    with atomic_path(path) as tmp, tmp.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns)
        w.writeheader()
        w.writerows(rows)
    return path


def parse_value(v: str):
    """A CSV or option value: int, else float, else the string."""
    for cast in (int, float):
        try:
            return cast(v)
        except ValueError:
            pass
    return v


def read_csv(path: str | Path) -> list[dict]:
    with Path(path).open(newline="") as f:
        return [{k: parse_value(v) for k, v in row.items()} for row in csv.DictReader(f)]
