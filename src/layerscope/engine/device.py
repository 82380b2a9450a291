"""Where and how the work runs: the device, the precision of a forward and backward, the
compile switch, and fitting a batch into memory (how many rows fit; halving a chunk that ran
out of memory). Used by the descent, training and the studies alike; imports no engine."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch

from ..core.errors import ConfigError, LayerscopeError
from ..core.progress import note

__all__ = [
    "COMPILE",
    "PRECISIONS",
    "check_compile",
    "check_fits",
    "check_precision",
    "halving",
    "memory_of",
    "precision_context",
    "resolve_device",
    "rows_that_fit",
]


PRECISIONS = ("fp32", "tf32", "bf16")
COMPILE = ("off", "on", "auto")


def check_compile(mode: str) -> str:
    if mode not in COMPILE:
        raise ConfigError(f"--compile must be one of {', '.join(COMPILE)}, not {mode!r}")
    return mode


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise ConfigError(f"--precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    return precision


@contextmanager
def precision_context(precision: str, device: torch.device) -> Iterator[None]:
    """The forward and backward of the descent at ``precision``: ``fp32``; ``tf32`` (CUDA
    matrix products and convolutions in TensorFloat-32; the CPU has none and runs fp32);
    ``bf16`` (autocast: convolutions and matrix products in bfloat16, on the CPU too). The
    input ``a``, the step and every metric stay float32 either way."""
    check_precision(precision)
    if precision == "bf16":
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
            yield
        return
    if precision == "tf32" and device.type == "cuda":
        old = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        try:
            yield
        finally:
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old
        return
    yield


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` → CUDA when available, else CPU; ``cuda`` without a GPU is an error."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise LayerscopeError(
            f"--device {device!r} is not a device: use auto, cpu or cuda"
        ) from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise LayerscopeError(
            "--device cuda asked for, but no CUDA GPU is visible: use --device cpu"
        )
    return dev


def memory_of(device: torch.device | str = "cpu") -> int:
    """The memory work on ``device`` can use at most, in bytes: a CUDA card's total memory,
    else the host's physical memory (a fixed figure of the machine, not what happens to be
    free now, so a refusal does not depend on what else runs)."""
    device = torch.device(device)
    if device.type == "cuda":
        return int(torch.cuda.get_device_properties(device).total_memory)
    return int(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))


def gigabytes(n: float) -> str:
    return f"{n / 2**30:,.1f} GB" if n < 2**40 else f"{n / 2**40:,.0f} TB"


def check_fits(need: float, what: str, fix: str, device: torch.device | str = "cpu") -> None:
    """Refuse, before any work, what cannot fit: ``what`` needs about ``need`` bytes (an
    estimate, from the config's sizes) and ``device`` has fewer; one line with both figures
    and ``fix`` (the option to lower). Work that fits but is tight is left to
    :func:`halving`."""
    have = memory_of(device)
    if need > have:
        where = "this GPU" if torch.device(device).type == "cuda" else "this machine"
        raise ConfigError(
            f"{what} needs about {gigabytes(need)} of memory (estimate), more than the "
            f"{gigabytes(have)} of {where}: {fix}"
        )


def rows_that_fit(row_bytes: int, free_bytes: int, share: float = 0.6) -> int:
    """How many rows of ``row_bytes`` each fit in ``share`` of ``free_bytes`` (at least one)."""
    return max(1, int(share * free_bytes) // max(int(row_bytes), 1))


def halving(
    chunks: list[list],
    run: Callable[[list], object],
    what: tuple[str, str],
    device: torch.device,
    on_split: Callable[[], None] = lambda: None,
) -> Iterator[tuple[list, object]]:
    """``(chunk, run(chunk))`` for each chunk in turn; a chunk that runs out of memory is
    halved and both halves go on (what finished before is kept); a chunk of one that runs out
    of memory is an error naming the fix. ``what``: the rows' name, singular and plural."""
    one, many = what
    pending = list(chunks)
    while pending:
        chunk = pending.pop(0)
        try:
            out = run(chunk)
        except torch.OutOfMemoryError as exc:
            if len(chunk) == 1:
                raise LayerscopeError(
                    f"out of memory with a single {one}: use a smaller --size, or --device cpu"
                ) from exc
            if device.type == "cuda":
                torch.cuda.empty_cache()
            half = (len(chunk) + 1) // 2
            note(f"out of memory with {len(chunk)} {many} in one batch: halving to {half}")
            pending[:0] = [chunk[:half], chunk[half:]]
            on_split()
            continue
        yield chunk, out
