"""Ray for layerscope: one place that starts or joins it and runs a call as a task. Used by
``layerscope sweep`` (each cell a task) and ``reproduce --address`` (a recipe's net and run
as tasks). Imports no study: a call's function comes from its caller."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..core.errors import LayerscopeError

__all__ = ["check_schedulable", "error_line", "remote", "start_ray", "tasks"]


def start_ray(address: str | None, cpus: int | None = None):
    """Ray, joined to ``address`` or started locally (no dashboard); one already started in
    this process is used as it is."""
    if address and "RAY_AUTH_MODE" not in os.environ and _has_token():
        # a `ray start` cluster asks for its token; Ray reads the mode when first imported
        os.environ["RAY_AUTH_MODE"] = "token"
    try:
        import ray
    except ImportError:  # pragma: no cover - ray is a dependency
        raise LayerscopeError("sweeps need Ray: pip install 'ray>=2.40'") from None
    if not ray.is_initialized():
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                  "logging_level": "ERROR"}  # fmt: skip
        if address and address != "auto":
            _reachable(address)  # Ray itself retries a dead address for minutes
        try:
            if address:
                ray.init(address=address, **kwargs)
            else:  # a Ray of its own, even where a `ray start --head` runs on this machine
                ray.init(address="local", num_cpus=cpus or os.cpu_count() or 1, **kwargs)
        except ConnectionError as exc:
            raise LayerscopeError(
                f"cannot join the Ray cluster at {address}: {exc}. Start it with `ray start "
                "--head` on its head node (its token, ~/.ray/auth_token there, must be in "
                "~/.ray/auth_token or $RAY_AUTH_TOKEN here), or leave out --address for a "
                "local Ray"
            ) from None
    return ray


#: how long a cluster's head has to answer before --address is given up (seconds)
CONNECT_TIMEOUT = 5.0


def _reachable(address: str, timeout: float = CONNECT_TIMEOUT) -> None:
    """Refuse in one line, within ``timeout`` seconds, an ``--address`` where nothing listens
    (a closed port, an unknown host), before Ray spends minutes retrying it."""
    import socket

    target = address.removeprefix("ray://")
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit():
        raise LayerscopeError(
            f"--address {address!r} is not HOST:PORT (e.g. 10.0.0.5:6379, the head's GCS port)"
        )
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout).close()
    except OSError as exc:
        raise LayerscopeError(
            f"cannot join the Ray cluster at {address}: nothing answers there within "
            f"{timeout:g} s ({exc.strerror or type(exc).__name__}). Start it with `ray start "
            "--head` on its head node, check the address, or leave out --address for a "
            "local Ray"
        ) from None


def check_schedulable(ray, cpus: float, gpus: float) -> None:
    """Refuse, before any task is submitted, a share no node of the cluster can give (a task
    asking for 3 CPUs on a 2-CPU machine, or a GPU where there is none, waits forever)."""
    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    most_cpus = max((r.get("CPU", 0) for r in nodes), default=0)
    most_gpus = max((r.get("GPU", 0) for r in nodes), default=0)
    if cpus > most_cpus:
        raise LayerscopeError(
            f"--cpus-per-cell {cpus:g}: no node of this Ray cluster has that many CPUs (the "
            f"largest has {most_cpus:g}); ask for at most {most_cpus:g}"
        )
    if gpus > most_gpus:
        raise LayerscopeError(
            f"--gpus-per-cell {gpus:g}: no node of this Ray cluster has "
            + (f"more than {most_gpus:g} GPUs" if most_gpus else "a GPU")
            + "; use --gpus-per-cell 0 (the cells run on CPUs)"
        )


def _has_token() -> bool:
    """A Ray authentication token is at hand (the variables or ``~/.ray/auth_token``)."""
    if os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH"):
        return True
    return (Path.home() / ".ray" / "auth_token").is_file()


def error_line(exc: BaseException) -> str:
    """The one line a failed cell records: the study's own message where there is one."""
    cause = getattr(exc, "cause", None) or exc
    text = str(cause).strip().splitlines()
    line = text[-1] if text else type(cause).__name__
    if not isinstance(cause, LayerscopeError):
        line = f"{type(cause).__name__}: {line}"
    return line[:500]


def _call(fn: Callable, threads: int, cwd: str, args: tuple) -> Any:
    """In the worker: ``fn(*args)`` with PyTorch on ``threads`` threads, in the driver's
    working directory (relative paths mean what they meant there)."""
    import torch

    torch.set_num_threads(max(1, threads))
    os.chdir(cwd)
    return fn(*args)


def tasks(
    cpus: float = 1,
    gpus: float = 0,
    retries: int = 3,
    env: dict | None = None,
    address: str | None = None,
) -> tuple[Any, Callable]:
    """Ray (local, or the cluster at ``address``) and ``submit(fn, *args)``: ``fn(*args)`` as
    one task with ``cpus`` CPUs (and as many PyTorch threads), a ``gpus`` share, ``env`` in
    its environment, in this process's working directory, retried ``retries`` times when its
    worker dies; ``submit`` returns the task's object reference."""
    ray = start_ray(address)
    check_schedulable(ray, cpus, gpus)
    options: dict[str, Any] = {"num_cpus": cpus, "num_gpus": gpus, "max_retries": retries}
    if env:
        options["runtime_env"] = {"env_vars": {k: str(v) for k, v in env.items()}}
    task = ray.remote(**options)(_call)
    threads, cwd = max(1, int(cpus)), os.getcwd()

    def submit(fn: Callable, *args):
        return task.remote(fn, threads, cwd, args)

    return ray, submit


def remote(fn: Callable, *args, address: str | None = None, cpus: float = 1,
           gpus: float = 0, retries: int = 3) -> Any:  # fmt: skip
    """``fn(*args)`` as one Ray task (see :func:`tasks`): its result, or its own error raised
    again here."""
    ray, submit = tasks(cpus, gpus, retries, address=address)
    try:
        return ray.get(submit(fn, *args))
    except ray.exceptions.RayTaskError as exc:
        cause = exc.cause
        raise (cause if isinstance(cause, Exception) else LayerscopeError(str(exc))) from None
