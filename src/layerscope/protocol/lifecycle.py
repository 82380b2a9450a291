"""One run lifecycle for every study, from the command line and from Python alike.

A :class:`Study` declares itself once (kind, config class, the work, report, summary, whether
it resumes, which options may change on resume). :func:`execute` owns everything around the
work: it locks the run directory against a second process, opens or resumes it, refuses a
resumed run whose options changed (naming them as the caller spelled them), records what a
resume changed, turns Ctrl-C and SIGTERM into one line saying what was kept, removes what a
fresh run that failed before its first result left behind (never a directory it did not
create), builds the report and marks the run finished.

The work is ``work(config, run)``: it computes, writes results into ``run.dir`` as they finish
(calling :meth:`Run.saved`), and writes ``config.json`` through :meth:`Run.meta` once it knows
what the run resolved (device, layers, labels).
"""

from __future__ import annotations

import os
import shutil
import signal
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from ..core.config import Config, flatten, get_path, has_path, set_path
from ..core.errors import Interrupted, LayerscopeError
from ..core.files import read_json, write_json
from .options import configure
from .runs import open_run, write_meta

__all__ = [
    "LOCK_NAME",
    "Run",
    "RunInUse",
    "Study",
    "execute",
    "locked",
    "prepare_out",
    "stored_config",
]

#: The lock file a running study holds in its run directory.
LOCK_NAME = ".layerscope.lock"


@dataclass(frozen=True)
class Study:
    """A study, declared once: ``kind`` (its ``config.json`` kind and command name),
    ``config`` (its :class:`~layerscope.config.Config` dataclass), ``work(config, run)``,
    ``report(run_dir)`` (its page, from saved results), ``summary(run_dir)`` (the few numbers
    an index or a table of runs shows), ``resumable``, and ``free``: the config fields (dotted
    paths) a resume may change (the device, batch sizes; ``train``'s epochs)."""

    kind: str
    config: type
    work: Callable[[Any, Run], None]
    report: Callable[[Path], Path] | None
    summary: Callable[[Path], dict]
    resumable: bool = False
    free: tuple[str, ...] = ("device",)
    #: ``check_resume(stored, new)``: refuse a free change the study cannot make (raise)
    check_resume: Callable[[Any, Any], None] | None = None
    title: str = ""
    #: the options a user types (command line, recipes' --set, grids): layerscope.options
    options: tuple = ()
    #: its command: "depth", "study training-effect"; "similarity --over-training" when it
    #: shares a command and that option picks it; None: no command of its own
    command: str | None = None
    #: the command's help (default: the title)
    help: str = ""
    #: the results file every finished run of it holds (``summary.csv``): a finished run
    #: without it has lost its results (the site and a sweep's table say so)
    table: str | None = None
    #: ``terminal(run_dir)``: what a finished run prints, as data (``layerscope.report.terminal``
    #: tables and lines, rendered by the command line); None: its summary numbers
    terminal: Callable[[Path], list] | None = None

    def __post_init__(self) -> None:
        if not (isinstance(self.config, type) and issubclass(self.config, Config)):
            raise TypeError(f"{self.kind}: the config must derive from layerscope.config.Config")
        for path in self.free:
            if not has_path(self.config, path):
                raise TypeError(f"{self.kind}: free field {path!r} is not a field of its config")
        for option in self.options:
            if option.field and not has_path(self.config, option.field):
                raise TypeError(f"{self.kind}: option {option.name!r} sets no field of its config")

    def configure(self, values: dict | None = None, base: Any = None) -> Any:
        """This study's config from options as a user types them (``{"iterations": "20"}``,
        ``{"blur-kernel": 5}``) on top of ``base`` (default: the config's defaults)."""
        return configure(self.config, self.options, values or {}, base)


@dataclass
class Run:
    """What a study's work sees of its run: the directory, whether it resumes a stored run
    (``stored``: its ``config.json``), whether to show progress bars."""

    dir: Path
    kind: str
    config: Any
    stored: dict | None = None
    progress: bool = False
    resumable: bool = False
    #: what the interruption message says was kept (a study sets it to count its results)
    interrupted: Callable[[], str] | None = None
    #: what the caller that started the run records with it (a recipe's identity), written
    #: into ``config.json`` as ``tags`` and compared on resume
    tags: dict | None = None
    _saved: bool = field(default=False, repr=False)

    @property
    def resuming(self) -> bool:
        return self.stored is not None

    def saved(self) -> None:
        """A result is on disk: from now on a failure keeps the directory (it can resume)."""
        self._saved = True

    @property
    def has_saved(self) -> bool:
        return self._saved or self.resuming or _holds_a_kept_run(self.dir)

    def meta(self, config: Any = None, device: str | None = None, **extra) -> None:
        """Write ``config.json`` (once: a resumed run keeps the one it started with, updated
        by the lifecycle with what the resume changed). ``config``: the config as the work
        resolved it (default: the one it was given)."""
        study = (config if config is not None else self.config).to_dict()
        extra = ({"tags": self.tags} if self.tags else {}) | extra
        write_meta(self.dir, self.kind, study, device=device, **extra)


def stored_config(study: Study, out: str | Path | None) -> dict | None:
    """The study config stored in ``out`` (None when ``out`` holds no run of this kind: the
    lifecycle then says what is wrong)."""
    cfg = Path(out) / "config.json" if out is not None else None
    if cfg is None or not cfg.is_file():
        return None
    meta = read_json(cfg)
    return meta.get("study") if meta.get("kind") == study.kind else None


def _diffs(new: Any, stored: Any, paths: Iterable[str]) -> list[tuple[str, Any, Any]]:
    """(path, new value, stored value) where they differ; None in ``new`` means unset (the
    study decides: ``train --size`` from the data set), never a difference."""
    out = []
    for path in paths:
        a, b = get_path(new, path), get_path(stored, path)
        if a is not None and a != b:
            out.append((path, a, b))
    return out


def _leaves(config: Any) -> list[str]:
    return list(flatten(config.to_dict()))


def _resumed_config(
    study: Study,
    config: Any,
    stored: dict,
    run_dir: Path,
    given: Iterable[str] | None,
    spell: Callable[[str], str],
) -> tuple[Any, dict]:
    """The config a resume runs with: the stored one, with the free fields the caller set.
    Any other difference is refused, naming each option as the caller spells it."""
    old = study.config.from_dict(stored.get("study", {}))
    if config is None:
        return old, {}
    new_dict, old_dict = config.to_dict(), old.to_dict()
    paths = list(given) if given is not None else _leaves(config)
    free = {p for p in paths if any(p == f or p.startswith(f + ".") for f in study.free)}
    changed = _diffs(new_dict, old_dict, [p for p in paths if p not in free])
    if changed:
        what = "; ".join(f"{spell(p)} ({a} ≠ stored {b})" for p, a, b in changed)
        raise LayerscopeError(
            f"resuming {run_dir} continues it with its stored options, and these differ: "
            f"{what}. Resume without them, or start a new run elsewhere"
        )
    if study.check_resume is not None:
        study.check_resume(old, config)
    updates = {p: (b, a) for p, a, b in _diffs(new_dict, old_dict, sorted(free))}
    for path, (_, value) in updates.items():
        old = set_path(old, path, value)
    return old, updates


class RunInUse(LayerscopeError):
    """Another live process holds the run directory's lock."""


@contextmanager
def locked(run_dir: Path) -> Iterator[None]:
    """Hold ``run_dir``'s lock: a second process on the same directory is refused at once
    (:class:`RunInUse`). The lock file is removed when the holder ends; a process that
    locked a file already removed (opened just before the holder ended) opens it again, so
    two processes never both hold the lock."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock (documented)
        yield
        return
    path = run_dir / LOCK_NAME
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.read(fd, 32).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise RunInUse(
                f"{run_dir} is in use by a running layerscope process (pid {owner}): wait "
                "for it to finish, or choose another --out"
            ) from None
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the holder removed this file as we locked it: lock the new one
    try:
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        try:
            yield
        finally:
            path.unlink(missing_ok=True)
    finally:
        os.close(fd)


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM (a scheduler, ``kill``) is handled like Ctrl-C while a study runs."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def prepare_out(out: Path) -> bool:
    """Create ``out`` (and its parents) if needed; True when this call created it. A parent
    that is a file or a folder that cannot be written is one line naming it."""
    if out.exists():
        if not out.is_dir():
            raise LayerscopeError(f"--out {out} is a file: give a directory")
        if not os.access(out, os.W_OK | os.X_OK):
            raise LayerscopeError(f"--out {out} cannot be written (permissions): choose another")
        return False
    for parent in out.parents:
        if parent.exists():
            if not parent.is_dir():
                raise LayerscopeError(f"--out {out}: {parent} is a file, not a folder")
            if not os.access(parent, os.W_OK | os.X_OK):
                raise LayerscopeError(
                    f"--out {out}: {parent} cannot be written (permissions): choose another"
                )
            break
    out.mkdir(parents=True)
    return True


def _clean_up(run_dir: Path, created: bool) -> None:
    """Remove what a fresh run wrote: the directory if this run created it, else only its
    contents (the user's own empty directory stays)."""
    if created:
        shutil.rmtree(run_dir, ignore_errors=True)
        return
    for p in run_dir.iterdir():
        if p.name == LOCK_NAME:
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)


def _holds_a_kept_run(run_dir: Path) -> bool:
    """A nested run (``train`` inside a study) kept its results: so does its parent."""
    return any(p.parent != run_dir for p in run_dir.glob("**/config.json"))


def _finish(run_dir: Path) -> None:
    cfg = run_dir / "config.json"
    if cfg.exists():
        meta = read_json(cfg)
        meta["finished"] = datetime.now().isoformat(timespec="seconds")
        write_json(cfg, meta)


def _record_changes(run_dir: Path, config: Any, updates: dict) -> None:
    """A resume that changed free options: ``config.json``'s study holds the new values, and
    ``resumed`` lists each change as [old, new]."""
    meta = read_json(run_dir / "config.json")
    meta["study"] = config.to_dict()
    entry = {"at": datetime.now().isoformat(timespec="seconds")}
    entry |= {path: [old, new] for path, (old, new) in updates.items()}
    meta.setdefault("resumed", []).append(entry)
    meta.pop("finished", None)
    write_json(run_dir / "config.json", meta)


def execute(
    study: Study,
    config: Any = None,
    out: str | Path | None = None,
    resume: bool = False,
    progress: bool = False,
    given: Iterable[str] | None = None,
    spell: Callable[[str], str] = str,
    tags: dict | None = None,
) -> Path:
    """Run ``study`` with ``config`` into ``out`` (default ``runs/<date>-<kind>``); returns
    the run directory.

    ``resume``: continue the run in ``out`` with its stored config; ``config`` may be None
    (the stored one) or must agree with it but for the study's ``free`` fields, which it may
    change. ``given``: the dotted paths the caller set (the command line's typed options;
    None from Python: every field is compared); ``spell`` names a path as the caller knows it
    (``inversion.iterations`` → ``--iterations``). ``tags``: what the caller records with
    the run (a recipe's identity: its id, file hash, scale and sets); a resume with tags
    that differ from the stored ones is refused, naming them."""
    if config is None and not resume:
        config = study.config()
    if out is None:
        from .runs import new_run_dir

        out = new_run_dir(study.kind)
    run_dir = Path(out)
    created = prepare_out(run_dir)
    with locked(run_dir):
        try:
            run_dir, stored = open_run(run_dir, study.kind, resume, study.resumable)
        except LayerscopeError:
            if created:
                _clean_up(run_dir, created)
            raise
        updates: dict = {}
        if stored is not None:
            _check_tags(run_dir, stored.get("tags"), tags)
            config, updates = _resumed_config(study, config, stored, run_dir, given, spell)
            if updates:
                _record_changes(run_dir, config, updates)
        run = Run(run_dir, study.kind, config, stored, progress, study.resumable, tags=tags)
        try:
            with _sigterm_as_interrupt():
                study.work(config, run)
        except BaseException as exc:
            if not run.has_saved:
                _clean_up(run_dir, created)
            if isinstance(exc, (KeyboardInterrupt, Interrupted)):  # here or in a nested run
                raise Interrupted(_interrupted(run, created)) from None
            raise
        if study.report is not None:
            study.report(run_dir)
        _finish(run_dir)
    return run_dir


def _check_tags(run_dir: Path, stored: dict | None, given: dict | None) -> None:
    """A resume continues the run its caller started: tags given now that differ from the
    stored ones (another recipe, an edited recipe file, another scale or --set) refuse it."""
    if not given or stored is None:
        return
    differ = [k for k in given if k in stored and given[k] != stored[k]]
    if differ:
        what = "; ".join(f"{k} {given[k]!r} ≠ stored {stored[k]!r}" for k in differ)
        raise LayerscopeError(
            f"resuming {run_dir} continues the run it started, and these differ: {what}. "
            "Resume without them, or start a new run elsewhere"
        )


def _interrupted(run: Run, created: bool) -> str:
    if run.interrupted is not None:
        return run.interrupted()
    if run.has_saved:
        how = (
            f"rerun with --resume --out {run.dir}"
            if run.resumable
            else "this study does not resume: start again with a new --out"
        )
        return f"interrupted: what was finished is kept in {run.dir}; {how}"
    gone = "removed" if created else "emptied"
    return f"interrupted before any result was saved; {run.dir} was {gone}: start again"
