"""Command line: one command per study, made from the options the study declares
(``layerscope.options``): options → config → the one lifecycle (``layerscope.lifecycle``) →
a table of what the run found. Nothing here decides a default or validates a value: the
study's config does both, for the command line and for Python alike."""

from __future__ import annotations

import inspect
import sys
import typing
from collections.abc import Callable
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from ..core.errors import Interrupted, LayerscopeError

__all__ = ["app", "main"]

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="layerscope: what each layer of a vision model still knows about its input.",
)
study_app = typer.Typer(no_args_is_help=True, help="Studies built on the core engines.")
app.add_typer(study_app, name="study")
# No markup: what is printed carries user input (paths, image names, errors: "runs[bold]"
# must print as typed); colour is given as a style (_say), never inside the text.
console = Console(width=None if sys.stdout.isatty() else 150, markup=False)


def _say(*parts: tuple[str, str] | str, out: Console | None = None) -> None:
    """Print ``parts`` as one line: a plain string as it is, a ``(text, style)`` pair in that
    style; nothing is read as markup."""
    from rich.text import Text

    line = Text()
    for part in parts:
        line.append(*((part,) if isinstance(part, str) else part))
    (out or console).print(line, highlight=False)


def _parameter(name: str, kind: type, default, *decls: str, help: str) -> inspect.Parameter:
    return inspect.Parameter(
        name, inspect.Parameter.KEYWORD_ONLY, annotation=kind,
        default=typer.Option(default, *decls, help=help),
    )  # fmt: skip


def _study_command(
    group: typer.Typer,
    name: str,
    kinds: str | tuple[str, ...],
    show: Callable[[Path], None],
    doc: str,
    choose: Callable[[dict], str] | None = None,
) -> None:
    """Add ``name`` to ``group``: a flag per option the study declares (the config's default
    shown in the help), ``--out``, and ``--resume`` for a study that resumes. The command is
    options → config → the lifecycle → ``show(run_dir)``. Several ``kinds`` share one
    command when ``choose(typed options)`` picks the study (``similarity --over-training``)."""
    from ..core.config import get_path
    from ..protocol.lifecycle import execute, stored_config
    from ..protocol.options import defaults, find, spelled
    from ..studies import get_study

    studies = [get_study(k) for k in ((kinds,) if isinstance(kinds, str) else kinds)]
    merged: dict = {}
    for s in studies:  # the main study's declaration first, then what the others add
        for o in s.options:
            merged.setdefault(o.name, o)
    options = list(merged.values())
    params = [inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                annotation=typer.Context)]  # fmt: skip
    for option in options:
        owner = next(s for s in studies if option in s.options)
        default = get_path(defaults(owner.config), option.field) if option.field else None
        if isinstance(default, list):
            default = ",".join(map(str, default))
        shown = "" if default is None or isinstance(default, (dict, bool)) else f"{default}"
        flag = option.flag
        decl = f"{flag}/--no-{flag[2:]}" if option.kind is bool else flag
        text = option.help + (f" (default: {shown})" if shown else "")
        params.append(_parameter(option.name, typing.Optional[option.kind], None, decl,  # noqa: UP045
                                 help=text))  # fmt: skip
    params.append(_parameter("out", typing.Optional[Path], None, "--out",  # noqa: UP045
                             help="Run directory (default runs/<date>-<kind>)."))  # fmt: skip
    if any(s.resumable for s in studies):
        params.append(_parameter("resume", bool, False, "--resume/--no-resume",
                                 help="Continue the run in --out with its stored options, "
                                 "skipping what is finished."))  # fmt: skip

    def command(ctx: typer.Context, **kwargs) -> None:
        out, resume = kwargs.pop("out"), bool(kwargs.pop("resume", False))
        values = {k: v for k, v in kwargs.items() if v is not None}
        study = get_study(choose(values)) if choose is not None else studies[0]
        known = {o.name for o in study.options}
        stray = [find(options, k).flag for k in values if k not in known]
        if stray:
            verb = "does" if len(stray) == 1 else "do"
            raise LayerscopeError(f"{', '.join(stray)} {verb} not apply to {study.kind} runs")
        config = study.configure(values, base=stored_config(study, out) if resume else None)
        names = spelled(study.options)
        given = sorted({f for k in values if (f := find(study.options, k).field)})
        run_dir = execute(study, config, out, resume, sys.stderr.isatty(), given=given,
                          spell=lambda path: names.get(path, path))  # fmt: skip
        show(run_dir)

    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in params} | {"return": None}
    command.__doc__ = doc
    command.__name__ = name.replace("-", "_")
    group.command(name)(command)


# ---------------------------------------------------------------- what each run prints


def _render(blocks: list) -> None:
    """Print a study's terminal blocks (``layerscope.report.terminal``): tables and lines."""
    from ..report.terminal import Line, TextTable

    for block in blocks:
        if isinstance(block, TextTable):
            table = Table(title=block.title)
            for i, col in enumerate(block.columns):
                table.add_column(col, justify="left" if i < block.left else "right")
            for row in block.rows:
                table.add_row(*row)
            console.print(table)
        elif isinstance(block, Line):
            _say((block.text, block.style) if block.style else block.text)
        else:
            raise TypeError(f"a terminal block is a TextTable or a Line, not {block!r}")


def _show(run_dir: Path) -> None:
    """What any finished run prints: its study's terminal blocks, else its summary."""
    from ..report import read_meta
    from ..report.terminal import summary_table
    from ..studies import get_study

    study = get_study(read_meta(run_dir)["kind"])
    if study.terminal is not None:
        _render(study.terminal(run_dir))
    else:
        _render(summary_table(run_dir, study.summary(run_dir)))


def _register_commands() -> None:
    """A command for every registered study, where its ``command`` says (``study NAME`` in
    the ``study`` group); studies that share a command are picked by their switch option
    (``similarity --over-training``)."""
    from ..studies import registry

    commands: dict[str, list] = {}
    for study in registry().values():
        if study.command:
            words = study.command.split()
            path = " ".join(w for w in words if not w.startswith("--"))
            switch = next((w[2:].replace("-", "_") for w in words if w.startswith("--")), None)
            commands.setdefault(path, []).append((study, switch))
    for path, members in commands.items():
        members.sort(key=lambda m: m[1] is not None)  # the plain one first
        group, _, name = path.rpartition(" ")
        kinds = tuple(s.kind for s, _ in members)
        switches = {sw: s.kind for s, sw in members if sw}

        def choose(values: dict, _switches=switches, _default=kinds[0]) -> str:
            return next((k for sw, k in _switches.items() if values.get(sw)), _default)

        main = members[0][0]
        _study_command(study_app if group == "study" else app, name, kinds, _show,
                       main.help or main.title, choose=choose if switches else None)  # fmt: skip


_register_commands()


@app.command()
def layers(
    model: str = typer.Argument(..., help="Model name."),
    size: int = typer.Option(224, help="Input side used to compute output shapes."),
    leaves: bool = typer.Option(False, help="Only leaf modules (convolutions, activations…)."),
    weights: str = typer.Option("none", help="none | imagenet | checkpoint path."),
    num_classes: int | None = typer.Option(
        None, help="Head size of a checkpoint without a sidecar (default: the model's own)."
    ),
) -> None:
    """List the layers a model can be probed at, with aliases and output shapes."""
    from ..engine.layers import default_layers, describe_layers
    from ..engine.models import load_model

    if size < 8:
        raise LayerscopeError(f"--size must be at least 8 pixels, not {size}")
    m = load_model(model, weights, input_size=size, num_classes=num_classes)
    stages = set(default_layers(m))
    table = Table(title=f"{model}: layers at {size}×{size} (* = a default stage)")
    for col in ("name", "alias", "type", "output shape", "elements", "calls"):
        table.add_column(col)
    for info in describe_layers(m, size, leaves=leaves):
        table.add_row(
            ("* " if info.name in stages else "") + info.name,
            info.alias or "",
            info.kind,
            "×".join(map(str, info.shape)),
            f"{info.numel:,}",
            str(info.calls),
        )
    console.print(table)


@app.command()
def models(family: str = typer.Option("all", help="torchvision | timm | builtin | all.")) -> None:
    """List loadable model names."""
    from ..engine.models import available_models

    families = available_models()
    if family != "all" and family not in families:
        raise LayerscopeError(
            f"unknown --family {family!r}: choose from all, {', '.join(families)}"
        )
    for fam, names in families.items():
        if family in ("all", fam):
            _say((fam, "bold"), f" ({len(names)}): " + ", ".join(names))


@app.command()
def report(run_dir: Path = typer.Argument(..., help="A run directory.")) -> None:
    """(Re)build the HTML report of a run from its saved results."""
    from ..studies import build_report

    console.print(f"report: {build_report(run_dir)}")


@app.command()
def reproduce(
    recipe: str = typer.Argument(
        "", help="A recipe id (IV-3) or a recipe file; 'all' runs every recipe."
    ),
    scale: str | None = typer.Option(
        None,
        help="cpu (minutes on 2 cores; the default) | paper (the sources' sizes); "
        "--resume keeps the run's own.",
    ),
    set_: list[str] = typer.Option(
        [],
        "--set",
        help="Change one option: key=value, spelled "
        "as the study's flag without dashes (iterations=20).",
    ),
    out: Path | None = typer.Option(None, help="Run directory (with 'all': the folder of runs)."),
    resume: bool = typer.Option(False, help="Continue the run in --out."),
    list_: bool = typer.Option(
        False,
        "--list",
        help="List the recipes, their claims and the last verdict found under --runs.",
    ),
    runs: Path | None = typer.Option(
        None, help="Where --list looks for verdicts (default runs/, which may not exist yet)."
    ),
    markdown: bool = typer.Option(
        False,
        help="With --list: the README's results table, in "
        "Markdown, from the verdicts under --runs.",
    ),
    strict: bool = typer.Option(
        False,
        help="Exit 1 unless every claim holds (for CI): 'does not hold', 'could not "
        "check' and 'could not run' fail.",
    ),
    address: str | None = typer.Option(
        None, help="Run the recipe's runs (and the nets it trains first) on this Ray cluster."
    ),
) -> None:
    """Run a recipe (a finding of Badger 2022 and his posts, Tomasini et al. or Petrini et
    al.) and say whether the claim holds (verdict.json)."""
    from .recipes import last_verdicts, recipes, results_table
    from .recipes import reproduce as run_recipe

    default_runs = runs is None  # runs/, which may not exist yet: no verdict yet
    runs = Path("runs") if runs is None else runs
    if markdown:
        print(results_table(runs, missing_ok=default_runs), end="")
        return
    if list_ or not recipe:
        table = Table(title="recipes")
        for col in ("id", "study", "claim", f"last verdict under {runs}"):
            table.add_column(col)
        found, shipped = last_verdicts(runs, missing_ok=default_runs), recipes()
        for rid, r in shipped.items():
            last = found.get(rid)
            shown = f"{last['verdict']} ({last['scale']})" if last else "—"
            table.add_row(rid, r.study, r.claim, shown)
        for rid, last in found.items():  # edited copies, each with its own claim
            if rid not in shipped:
                shown = f"{last['verdict']} ({last['scale']})"
                table.add_row(rid, "", str(last.get("claim", "")), shown)
        console.print(table)
        return
    sets = {}
    for item in set_:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise LayerscopeError(f"--set takes key=value (iterations=20), not {item!r}")
        sets[key.strip().lstrip("-")] = value.strip()
    if recipe == "all":
        from .recipes import reproduce_all
        from .site import build_site

        folder = out or Path("runs") / "reproduce-all"
        verdicts = reproduce_all(scale or "cpu", sets, folder, resume=resume,
                                 progress=address is None, address=address,
                                 on_verdict=_show_verdict)  # fmt: skip
        index = build_site([folder], folder / "site")
        console.print(f"site of every verdict: {index} (file://{index.resolve()})")
        tally = {}
        for v in verdicts:
            tally[v.verdict] = tally.get(v.verdict, 0) + 1
        console.print(", ".join(f"{n} {k}" for k, n in tally.items()), markup=False)
    else:
        verdicts = [run_recipe(recipe, scale, sets, out, resume=resume,
                               progress=address is None, address=address)]  # fmt: skip
        _show_verdict(verdicts[0])
    # --strict: anything but "holds" fails (a claim that does not hold, a misspelled metric
    # that could not be checked, a recipe that could not run)
    if strict and any(v.verdict != "holds" for v in verdicts):
        raise typer.Exit(1)


@app.command()
def site(
    paths: list[Path] = typer.Argument(..., help="Run directories or folders of runs."),
    out: Path = typer.Option(Path("site"), help="The site's folder (updated in place)."),
) -> None:
    """Build one static site of saved runs: an index to sort and filter, each run's page,
    each recipe verdict (opens from disk; nothing is recomputed)."""
    from .site import build_site

    index = build_site(paths, out, progress=True)
    console.print(f"site: {index} (open it in a browser: file://{index.resolve()})")


@app.command()
def sweep(
    grid: Path = typer.Argument(..., help="A grid file (TOML): study, [config], [axes]."),
    out: Path | None = typer.Option(None, help="The sweep's folder (default runs/sweep-GRID)."),
    address: str | None = typer.Option(
        None, help="A running Ray cluster (ray start --head); default: a local Ray."
    ),
    cpus_per_cell: float = typer.Option(1.0, help="CPUs per cell (its PyTorch's threads)."),
    gpus_per_cell: float | None = typer.Option(
        None, help="GPU share per cell (0.25: four per card; default: 1 where there are GPUs)."
    ),
) -> None:
    """Run a grid of one study's runs as Ray tasks, cell by cell: finished cells are skipped,
    interrupted ones resume, a failing cell fails alone (sweep.csv, the sweep's site)."""
    from ..core.tables import read_csv
    from .sweep import sweep as run_sweep

    path = run_sweep(grid, out, address, cpus_per_cell, gpus_per_cell, progress=True)
    rows = read_csv(path)
    states: dict[str, int] = {}
    for r in rows:
        states[str(r["status"])] = states.get(str(r["status"]), 0) + 1
    for r in rows:
        if r["status"] == "failed":
            _say(("failed", "red"), f" {r['cell']}: {r['error']}")
    counts = ", ".join(f"{n} {s}" for s, n in sorted(states.items()))
    index = path.parent / "site" / "index.html"
    shown = f"; site {index}" if index.is_file() else " (no cell ran: no site)"
    console.print(f"sweep: {len(rows)} cell(s): {counts}; table {path}{shown}")


def _show_verdict(verdict) -> None:
    colour = {"holds": "green", "does not hold": "red"}.get(verdict.verdict, "yellow")
    table = Table(title=f"{verdict.recipe} · {verdict.scale} · {verdict.run}")
    for col in ("expectation", "measured", "verdict"):
        table.add_column(col)
    for o in verdict.outcomes:
        table.add_row(o.what, o.measured, o.verdict)
    if verdict.error:
        table.add_row("the recipe's run", verdict.error, verdict.verdict)
    console.print(table)
    sets = f" (with --set {verdict.sets})" if verdict.sets else ""
    _say(
        (f"{verdict.recipe}: {verdict.verdict}", colour),
        f"{sets}  (verdict: {Path(verdict.run) / 'verdict.json'})",
    )


def _read_only(exc: BaseException) -> bool:
    """A write refused by permissions or a read-only file system (with the file it names)."""
    import errno

    return (
        isinstance(exc, OSError)
        and exc.errno in (errno.EACCES, errno.EROFS, errno.EPERM)
        and bool(exc.filename)
        and bool(exc.strerror)
    )


def _disk_full(exc: BaseException) -> bool:
    """A full disk (or quota), as an OSError or as safetensors' own error while writing."""
    import errno

    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(exc)
    return type(exc).__name__ == "SafetensorError" and (
        "StorageFull" in text or "No space left" in text or "code: 28" in text
    )


def main() -> None:
    """Entry point: layerscope errors become one line on stderr and exit code 2; Ctrl-C during
    a study says what was kept (exit code 130). (Usage errors typer itself finds, such as an
    unknown option, keep typer's own message box.) Messages name options as flags."""
    from ..core.errors import COMMAND_LINE

    err = Console(stderr=True, soft_wrap=True, markup=False)
    token = COMMAND_LINE.set(True)
    try:
        app()
    except Interrupted as exc:
        err.print(str(exc), highlight=False)
        sys.exit(130)
    except LayerscopeError as exc:
        _say(("error:", "red"), f" {exc}", out=err)
        sys.exit(2)
    except KeyboardInterrupt:  # Ctrl-C outside a study's lifecycle (which says what it kept)
        err.print("interrupted", highlight=False)
        sys.exit(130)
    except Exception as exc:
        if _read_only(exc):
            _say(("error:", "red"), f" cannot use {exc.filename} ({exc.strerror.lower()}): "
                 "choose an --out you can write, or fix its permissions", out=err)  # fmt: skip
            sys.exit(2)
        if not _disk_full(exc):
            raise
        where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        _say(
            ("error:", "red"),
            f" no space left on the device{where}: what was saved so "
            "far is kept; free some space and rerun with --resume (the same --out)",
            out=err,
        )
        sys.exit(2)
    finally:
        COMMAND_LINE.reset(token)
