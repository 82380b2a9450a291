"""Fully connected width and depth studies (seed part IV; EXPERIMENTS.md §4): which fully
connected nets can be inverted, on an input downscaled to 29×29×3 = 2,523 values.

Three parts, each a configuration of the inversion engine on built-in ``linear:`` nets (no
nonlinearity, untrained, no blur), every configuration of one net batched into one descent:

- **widths**: a net narrower than the input (2,000) vs one wider (3,000), target at the last
  layer: m_i must stay flat for 2,000 (the layer maps a whole subspace to one output) while
  m_g decays, and decay for 3,000 (Badger: ≈ 0.1 at 2·10⁵ iterations);
- **depths**: equal widths ≥ the input, targets at several depths of one net (a target at
  fc_k is the k-layer net): deeper is worse at a fixed number of steps, and more steps
  recover it (Badger: 500 vs 10,000);
- **growing**: constant widths vs widths growing in the later layers, target at the last.

``FcWidthsConfig`` → :func:`run` → ``config.json``, ``fc_widths.csv`` (tidy: part, net,
layer, iteration, m_g, m_i, m_r), ``fc_widths.png`` (log–log curves) and ``report.html``.
The CPU default (1,000 Adam steps, 3-layer nets) takes about a minute; Badger's full run is
7 layers of 5,000 units and 10⁴–2·10⁵ steps (``--iterations``, ``--depth``).
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path

from ..core.config import Config, at_least
from ..core.errors import ConfigError
from ..core.files import read_json, save_figure
from ..core.tables import read_csv, write_csv
from ..engine.descent import Schedule
from ..engine.device import resolve_device
from ..engine.images import load_image
from ..engine.inversion import InversionConfig, Job, invert_jobs
from ..engine.models import load_model
from ..protocol.lifecycle import Run, Study, execute
from ..protocol.options import DEVICE, Option, integers, pair, shared
from ..report.terminal import TextTable, done

__all__ = ["STUDY", "FcWidthsConfig", "nets", "report", "run", "summary"]


@dataclass
class FcWidthsConfig(Config):
    size: int = 29  # 3·29² = 2,523 input values
    image: str = "chelsea"
    depth: int = 3
    narrow: int = 2000
    wide: int = 3000
    growing: list[int] = field(default_factory=lambda: [2600, 3200, 4000])
    iterations: int = 1000
    step: str = "adam"
    lr: list[float] = field(default_factory=lambda: [0.01, 1e-4])
    record_every: int = at_least(1, 10)
    seed: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        if self.depth < 1 or self.iterations < 1 or self.size < 2:
            raise ConfigError("--depth, --iterations must be ≥ 1 and --size ≥ 2")
        if min(self.narrow, self.wide, *self.growing) < 1:
            raise ConfigError("widths must be positive")
        if len(self.lr) != 2:
            raise ConfigError("--lr takes START,END")
        self.inversion()  # bad step or lr fails now

    def inversion(self) -> InversionConfig:
        return InversionConfig(
            iterations=self.iterations, step=self.step, lr=Schedule(*self.lr), blur=None,
            record_every=self.record_every, seed=self.seed, batching="staged",
        )  # fmt: skip


def nets(config: FcWidthsConfig) -> list[tuple[str, str, list[str]]]:
    """(part, net, target layers) of each descent."""
    d = config.depth
    constant = ",".join([str(config.growing[0])] * len(config.growing))
    growing = ",".join(map(str, config.growing))
    last = f"fc{len(config.growing)}"
    return [
        ("widths", f"linear:{config.narrow}x{d}", [f"fc{d}"]),
        ("widths", f"linear:{config.wide}x{d}", [f"fc{d}"]),
        ("depths", f"linear:{config.wide}x{2 * d}", [f"fc{k}" for k in range(1, 2 * d + 1)]),
        ("growing", f"linear:{constant}", [last]),
        ("growing", f"linear:{growing}", [last]),
    ]


def run(config: FcWidthsConfig, out: str | Path | None = None, progress: bool = False) -> Path:
    """The three parts' descents into ``out``; returns it."""
    return execute(STUDY, config, out, progress=progress)


def _work(config: FcWidthsConfig, run: Run) -> None:
    run_dir = run.dir
    device = resolve_device(config.device)
    image = load_image(config.image, config.size)
    plan = nets(config)
    models = {net: load_model(net, seed=config.seed, input_size=config.size) for _, net, _ in plan}
    plan_meta = [[part, net, layers] for part, net, layers in plan]
    run.meta(device=str(device), input_dim=image.numel(), nets=plan_meta)
    rows: list[dict] = []
    run.interrupted = lambda: f"interrupted: {len(rows)} curve rows kept in {run_dir}"
    for part, net, layers in plan:
        jobs = [Job(models[net], image, config.image, layer) for layer in layers]
        for t in invert_jobs(jobs, config.inversion(), device, progress=run.progress):
            rows += [{"part": part, "net": net, "layer": t.layer, "status": t.status}
                     | {k: c[k] for k in ("iteration", "embedding_distance",
                                          "input_distance", "reference_distance")}
                     for c in t.curve]  # fmt: skip
        write_csv(run_dir / "fc_widths.csv", rows)  # kept as each net finishes
        run.saved()


def _final(rows: list[dict]) -> list[dict]:
    last: dict[tuple, dict] = {}
    for r in rows:
        last[(r["part"], r["net"], r["layer"])] = r
    return list(last.values())


def report(run_dir: str | Path) -> Path:
    from ..report import figure, write_page
    from ..report import table as _table

    run_dir = Path(run_dir)
    meta = read_json(run_dir / "config.json")
    rows = read_csv(run_dir / "fc_widths.csv")
    _figure(rows, meta["input_dim"], run_dir / "fc_widths.png")
    finals = _final(rows)
    study = meta["study"]
    body = (
        f"<p>Input: {html.escape(study['image'])} at {study['size']}×{study['size']} "
        f"({meta['input_dim']} values); untrained linear nets, no blur, {study['iterations']} "
        f"{html.escape(study['step'])} steps, lr {study['lr'][0]:g} → {study['lr'][1]:g}. "
        "m_i that stops falling while m_g keeps falling: the layer maps a whole set of inputs "
        "to the same output (a width below the input size), and the descent cannot tell which "
        "one was the target.</p>"
        + figure("fc_widths.png",
                 "m_g, m_i and m_r over the descent for each width and depth, log–log")
        + "<h2>Final distances</h2>"
        + _table(["part", "net", "layer", "steps", "m_g", "m_r", "m_i", "status"],
                 [[r["part"], r["net"], r["layer"], r["iteration"], r["embedding_distance"],
                   r["reference_distance"], r["input_distance"], r["status"]] for r in finals])
        + '<p>Files: <a href="fc_widths.csv">fc_widths.csv</a>, '
        '<a href="config.json">config.json</a>.</p>'
    )  # fmt: skip
    return write_page(run_dir, f"layerscope fc-widths · {run_dir.name}",
                         "Fully connected nets: width, depth and invertibility", body)  # fmt: skip


def _figure(rows: list[dict], input_dim: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    parts = ["widths", "depths", "growing"]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for ax, part in zip(axes, parts, strict=True):
        sel = [r for r in rows if r["part"] == part]
        curves = list(dict.fromkeys((r["net"], r["layer"]) for r in sel))
        for k, (net, layer) in enumerate(curves):
            c = [r for r in sel if (r["net"], r["layer"]) == (net, layer)]
            x = [r["iteration"] + 1 for r in c]
            color = f"C{k % 10}"
            label = net.removeprefix("linear:") + (f" → {layer}" if part == "depths" else "")
            ax.plot(x, [r["input_distance"] for r in c], color=color, label=f"m_i {label}")
            ax.plot(x, [r["embedding_distance"] for r in c], color=color, ls=":", lw=1)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("iteration + 1")
        ax.set_title(f"{part} (solid m_i, dotted m_g; input {input_dim})", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    plt.close(fig)


def summary(run_dir: str | Path) -> dict:
    """The final m_g and m_i of each net's last target."""
    out: dict = {}
    for r in _final(read_csv(Path(run_dir) / "fc_widths.csv")):
        label = f"{r['part']} {r['net']} {r['layer']}"
        out[f"{label} m_g"] = r["embedding_distance"]
        out[f"{label} m_i"] = r["input_distance"]
    return out


OPTIONS = (
    Option("size", "Image side (29: 2,523 input values, Badger's).", kind=int),
    shared("image"),
    Option("depth", "Layers of the width nets (Badger: 7).", kind=int),
    Option("narrow", "Width below the input size.", kind=int),
    Option("wide", "Width above the input size.", kind=int),
    Option("growing", "Growing widths (vs constant first).", parse=integers),
    Option("iterations", "Descent steps (Badger: 10⁴ to 2·10⁵).", kind=int),
    Option("step", "gradient | normalized | adam."),
    Option("lr", "Step size START,END.", parse=pair("lr")),
    Option("record_every", "Record distances every k steps.", kind=int),
    Option("seed", "Seed of the nets and a0.", kind=int),
    DEVICE,
)  # fmt: skip


def terminal(run_dir: Path) -> list:
    """The final distances of every net and layer."""
    table = TextTable(
        f"fc-widths · {Path(run_dir).name}: final distances",
        ("part", "net", "layer", "m_g", "m_r", "m_i"),
    )
    for r in _final(read_csv(Path(run_dir) / "fc_widths.csv")):
        table.add(r["part"], r["net"], r["layer"], f"{r['embedding_distance']:.3g}",
                  f"{r['reference_distance']:.3g}", f"{r['input_distance']:.3g}")  # fmt: skip
    return [table, done(run_dir)]


STUDY = Study(
    kind="fc-widths",
    terminal=terminal,
    table="fc_widths.csv",
    config=FcWidthsConfig,
    work=_work,
    report=report,
    summary=summary,
    title="Fully connected nets: width, depth, growing widths",
    options=OPTIONS,
    command="study fc-widths",
    help=(
        "Fully connected nets: widths below vs above the input size, depth at equal widths, "
        "growing later layers (seed part IV): m_g and m_i over the descent."
    ),
)
