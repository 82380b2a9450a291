"""A test hook: stop this process with a real signal at a named point, so tests can check what
an interruption or a crash leaves on disk (``tests/test_faults.py``).

``LAYERSCOPE_FAULT="POINT:N:SIGNAL"`` (e.g. ``target-saved:1:SIGINT``,
``checkpoint-written:2:SIGKILL``) sends SIGNAL to this process the N-th time POINT is reached;
``POINT:N:raise`` raises a :class:`LayerscopeError` every time from the N-th on (a failure in
the middle of a run, for in-process tests). With ``LAYERSCOPE_FAULT_ONCE=FILE`` the signal is
sent only by the process that creates FILE first (a retried worker is not stopped again).
Unset, which is always the case outside those tests, :func:`fault_point` does nothing.
"""

from __future__ import annotations

import os
import signal

__all__ = ["fault_point", "reset"]

_reached: dict[str, int] = {}


def reset() -> None:
    """Forget how often each point was reached (in-process tests start each from zero)."""
    _reached.clear()


def _parse(spec: str) -> tuple[str, int, str]:
    """``POINT:N:SIGNAL`` or ``POINT:N:raise``; a malformed value is one line naming it."""
    from .errors import LayerscopeError

    parts = spec.split(":")
    ok = len(parts) == 3 and parts[1].isdigit() and int(parts[1]) >= 1
    ok = ok and (parts[2] == "raise" or isinstance(getattr(signal, parts[2], None), int))
    if not ok:
        raise LayerscopeError(
            f"LAYERSCOPE_FAULT={spec!r} is not POINT:N:SIGNAL (e.g. target-saved:1:SIGINT) or "
            "POINT:N:raise: unset it (it is a test hook)"
        )
    return parts[0], int(parts[1]), parts[2]


def fault_point(name: str) -> None:
    spec = os.environ.get("LAYERSCOPE_FAULT")
    if not spec:
        return
    point, count, sig = _parse(spec)
    if point != name:
        return
    key = f"{spec}|{name}"
    _reached[key] = _reached.get(key, 0) + 1
    if sig == "raise":
        if _reached[key] >= int(count):
            from .errors import LayerscopeError

            raise LayerscopeError(f"fault injected at {name} (LAYERSCOPE_FAULT)")
        return
    if _reached[key] == int(count):
        once = os.environ.get("LAYERSCOPE_FAULT_ONCE")
        if once:
            try:
                os.close(os.open(once, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                return
        os.kill(os.getpid(), getattr(signal, sig))
