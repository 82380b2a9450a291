"""The ReLU completeness width bound (seed part IV; EXPERIMENTS.md §4), measured.

A ReLU layer passes on only its positive ("live") units; on the region of inputs where the
same units are live the net is linear, and it can only be injective there if every layer
keeps at least as many live units as the dimension it receives. Badger writes p for the
probability that a unit is positive and asks ``p_l·n_l ≥ n_{l−1}`` layer by layer, so with a
constant p, ``n_l ≥ n_0 / p^l`` ("about 2× the input width when half the units are zeroed").
Puthawala et al. (JMLR 2022, "Globally injective ReLU networks") show that an expansivity of 2
is *necessary* layer-wise, while iid Gaussian weights need 3.4–10.5× for global injectivity
with high probability: Badger's "about 2×" is the necessary count, not a sufficient one.

Measured here: (1) for any model and data set, p_l at every ReLU call (a ReLU module called
twice, as in a ResNet block, counts twice), n_l, the live units p_l·n_l, Badger's layer-wise
condition and the weaker global one (live units ≥ the input dimension n_0), flagging the
first layer that fails each; (2) the empirical side for a bias-free random ReLU layer
``x ↦ relu(Wx)``, W m×n with N(0, 1/n) entries: the share of inputs at which the Jacobian
restricted to the live units (the live rows of W) has full rank n, and its smallest singular
value, against m/n, next to the Marchenko–Pastur edge ``√(k/n) − 1`` for k live rows.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..core.config import Config
from ..core.errors import ConfigError
from ..core.files import read_json, save_figure
from ..core.progress import progress_bar
from ..core.tables import read_csv, write_csv
from ..engine.data import load_dataset
from ..engine.device import resolve_device
from ..engine.models import as_model, evaluating, load_model
from ..protocol.lifecycle import Run, Study, execute
from ..protocol.options import DATA_ROOT, DEVICE, Option, numbers, shared
from ..report.terminal import TextTable, done

__all__ = [
    "STUDY",
    "ReluBoundConfig",
    "model_layer_rank",
    "rank_experiment",
    "relu_probabilities",
    "report",
    "run",
    "summary",
]


def relu_probabilities(model: torch.nn.Module, batches, device=None) -> list[dict]:
    """For every call of every ``nn.ReLU`` in forward order: its units per input (n_l) and the
    measured probability that a unit is positive (p_l), over all inputs of ``batches``."""
    model = as_model(model)
    net = model.net
    counts: dict[tuple[str, int], list[float]] = {}
    order: list[tuple[str, int]] = []
    calls: dict[str, int] = {}
    hooks = []

    def make(name: str):
        def hook(_m, _i, out):
            k = calls.get(name, 0)
            calls[name] = k + 1
            key = (name, k)
            if key not in counts:
                counts[key] = [0.0, 0.0, float(out[0].numel())]
                order.append(key)
            counts[key][0] += float((out > 0).sum())
            counts[key][1] += out.numel()

        return hook

    for name, module in net.named_modules():
        if isinstance(module, torch.nn.ReLU):
            hooks.append(module.register_forward_hook(make(name)))
    if not hooks:
        raise ConfigError(f"{model.name} has no nn.ReLU modules to measure")
    inputs = 0
    try:
        with torch.no_grad(), evaluating(net):
            for x in batches:
                calls.clear()
                x = x.to(device) if device is not None else x
                model(x)
                inputs += len(x)
    finally:
        for h in hooks:
            h.remove()
    rows = []
    for name, k in order:
        positive, total, units = counts[(name, k)]
        rows.append({"layer": name if k == 0 else f"{name}#{k + 1}", "units": int(units),
                     "p": positive / total})  # fmt: skip
    return rows


def bound_rows(rows: list[dict], input_dim: int) -> list[dict]:
    """Add Badger's layer-wise condition ``p_l·n_l ≥ n_{l−1}`` (n_0 = the input dimension)
    and the global one ``p_l·n_l ≥ n_0`` to each layer, and the widths Badger's constant-p
    bound asks for (``n_0 / p^l`` with p the measured mean)."""
    p_mean = sum(r["p"] for r in rows) / len(rows)
    prev = input_dim
    out = []
    for depth, r in enumerate(rows, start=1):
        live = r["p"] * r["units"]
        out.append(r | {
            "depth": depth, "live_units": live, "previous_units": prev,
            "layerwise_ok": live >= prev, "global_ok": live >= input_dim,
            "seed_bound_width": input_dim / p_mean**depth,
        })  # fmt: skip
        prev = r["units"]
    return out


def rank_experiment(
    n: int = 64,
    ratios: tuple[float, ...] = (1.0, 1.5, 2.0, 2.5, 3.0, 4.0),
    inputs: int = 200,
    seed: int = 0,
) -> list[dict]:
    """Bias-free random ReLU layers ``relu(Wx)``, W m×n with N(0, 1/n) entries, m = ratio·n,
    x ~ N(0, I): per ratio, the share of inputs where the live rows of W have full rank n,
    the median of their smallest singular value (0 when fewer than n rows are live) and the
    Marchenko–Pastur prediction ``√(k/n) − 1`` at the median live count k."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for ratio in ratios:
        m = round(ratio * n)
        w = torch.randn(m, n, generator=gen, dtype=torch.float64) / math.sqrt(n)
        xs = torch.randn(inputs, n, generator=gen, dtype=torch.float64)
        live = (xs @ w.T) > 0
        sigmas, full = [], 0
        for row in live:
            j = w[row]
            if j.shape[0] < n:
                sigmas.append(0.0)
                continue
            s = torch.linalg.svdvals(j)
            sigmas.append(float(s[-1]))
            full += int(float(s[-1]) > s[0] * n * torch.finfo(torch.float64).eps)
        k = float(live.sum(1).double().median())
        out.append({
            "n": n, "m": m, "ratio": m / n, "full_rank_share": full / inputs,
            "sigma_min_median": float(torch.tensor(sigmas).median()),
            "live_median": k, "marchenko_pastur": max(0.0, math.sqrt(k / n) - 1),
        })  # fmt: skip
    return out


def model_layer_rank(model: torch.nn.Module, batches, max_inputs: int = 64) -> list[dict]:
    """The same measurement on a real (random or trained) net: for every ``nn.Linear`` layer,
    at up to ``max_inputs`` of its actual inputs x, the live rows of W (where Wx + b > 0) and
    whether they have full rank n, with the median smallest singular value."""
    model = as_model(model)
    inputs: dict[str, list[torch.Tensor]] = {}
    hooks = []
    linears = {n: m for n, m in model.net.named_modules() if isinstance(m, torch.nn.Linear)}

    def keep(name: str):
        return lambda _m, args: inputs.setdefault(name, []).append(args[0].detach())

    for name, module in linears.items():
        hooks.append(module.register_forward_pre_hook(keep(name)))
    seen = 0
    try:
        with torch.no_grad(), evaluating(model.net):
            for x in batches:
                model(x)
                seen += len(x)
                if seen >= max_inputs:
                    break
    finally:
        for h in hooks:
            h.remove()
    rows = []
    for name, module in linears.items():
        xs = torch.cat(inputs.get(name, []))[:max_inputs].double()
        w = module.weight.detach().double()
        b = module.bias.detach().double() if module.bias is not None else 0.0
        live = (xs @ w.T + b) > 0
        n, full, sigmas = w.shape[1], 0, []
        for row in live:
            j = w[row]
            s = torch.linalg.svdvals(j) if j.shape[0] >= n else None
            sig = float(s[-1]) if s is not None else 0.0
            sigmas.append(sig)
            full += int(s is not None and sig > float(s[0]) * n * torch.finfo(torch.float64).eps)
        rows.append({
            "layer": name, "m": w.shape[0], "n": n, "ratio": w.shape[0] / n,
            "inputs": len(xs), "full_rank_share": full / max(len(xs), 1),
            "sigma_min_median": float(torch.tensor(sigmas).median()) if sigmas else math.nan,
            "live_median": float(live.sum(1).double().median()) if len(xs) else math.nan,
        })  # fmt: skip
    return rows


@dataclass
class ReluBoundConfig(Config):
    model: str = "mlp:1000,2000,4000"
    weights: str = "none"
    data: str = "photos"
    size: int = 16
    n: int = 256
    batch_size: int = 64
    rank_n: int = 64
    rank_ratios: list[float] = field(default_factory=lambda: [1.0, 1.5, 2.0, 2.5, 3.0, 4.0])
    rank_inputs: int = 200
    seed: int = 0
    data_root: str | None = None
    device: str = "auto"

    def __post_init__(self) -> None:
        if self.n < 1 or self.batch_size < 1 or self.rank_n < 1 or self.rank_inputs < 1:
            raise ConfigError("--n, --batch-size, --rank-n and --rank-inputs must be ≥ 1")
        if not self.rank_ratios or min(self.rank_ratios) <= 0:
            raise ConfigError("--rank-ratios must be positive numbers")


def run(config: ReluBoundConfig, out: str | Path | None = None, progress: bool = False) -> Path:
    """p_l at every ReLU against the bound, and the rank of random ReLU layers; returns the
    run directory."""
    return execute(STUDY, config, out, progress=progress)


def _work(config: ReluBoundConfig, run: Run) -> None:
    run_dir = run.dir
    device = resolve_device(config.device)
    model = load_model(config.model, config.weights, seed=config.seed, input_size=config.size)
    model.to(device)
    data = load_dataset(config.data, "test", config.size, config.seed, config.data_root)
    count = min(config.n, len(data))
    images = torch.stack([data[i][0] for i in range(count)])
    input_dim = images[0].numel()
    relu_probabilities(model, [images[:2]], device)  # a model without ReLUs fails here
    run.meta(device=str(device), model_label=model.label, input_dim=input_dim, images=count)
    with progress_bar(2, enabled=run.progress) as bar:
        bar.describe("ReLU probabilities")
        rows = bound_rows(
            relu_probabilities(model, images.split(config.batch_size), device), input_dim
        )
        write_csv(run_dir / "layers.csv", rows)
        run.saved()
        bar.advance(1)
        bar.describe("rank of random ReLU layers")
        write_csv(run_dir / "rank.csv", rank_experiment(
            config.rank_n, tuple(config.rank_ratios), config.rank_inputs, config.seed))  # fmt: skip
        own = model_layer_rank(model, images.split(config.batch_size))
        if own:
            write_csv(run_dir / "model_rank.csv", own)
        bar.advance(1)


def report(run_dir: str | Path) -> Path:
    from ..report import figure, write_page
    from ..report import table as _table

    run_dir = Path(run_dir)
    meta = read_json(run_dir / "config.json")
    rows = read_csv(run_dir / "layers.csv")
    rank = read_csv(run_dir / "rank.csv")
    _figure(rows, rank, meta["input_dim"], run_dir / "relu_bound.png")
    first_layer = next((r["layer"] for r in rows if r["layerwise_ok"] in (False, "False")), None)
    first_global = next((r["layer"] for r in rows if r["global_ok"] in (False, "False")), None)
    verdict = (
        f"Badger's layer-wise condition p_l·n_l ≥ n_(l−1) first fails at "
        f"{html.escape(str(first_layer))}" if first_layer else
        "Every layer meets Badger's layer-wise condition p_l·n_l ≥ n_(l−1)"
    ) + (
        f"; live units fall below the input dimension n_0 = {meta['input_dim']} first at "
        f"{html.escape(str(first_global))}, so the net cannot be injective there."
        if first_global else
        f"; every layer keeps more live units than the input dimension n_0 = {meta['input_dim']}."
    )  # fmt: skip
    body = (
        f"<p>{html.escape(meta['model_label'])} on {meta['images']} test images of "
        f"{html.escape(meta['study']['data'])} at {meta['study']['size']} px.</p>"
        f"<p>{verdict}</p><p>These are necessary conditions: Puthawala et al. (JMLR 2022) show "
        "that an expansivity of 2 is necessary layer-wise, but iid Gaussian weights need "
        "3.4–10.5× for global injectivity; Badger's 'about 2×' is the necessary count, not "
        "a sufficient one. The right panel measures it: for a random bias-free ReLU layer, the "
        "share of inputs at which the live units' Jacobian has full rank.</p>"
        + figure("relu_bound.png", "live units per layer against the width bound, and the share of "
                 "inputs at which the live units' Jacobian has full rank")
        + "<h2>Layers</h2>"
        + _table(["layer", "units n_l", "p_l", "live p_l·n_l", "n_(l−1)", "layer-wise ok",
                  "≥ n_0", "seed bound n_0/p^l"],
                 [[r["layer"], r["units"], r["p"], r["live_units"], r["previous_units"],
                   r["layerwise_ok"], r["global_ok"], r["seed_bound_width"]] for r in rows])
        + "<h2>Random ReLU layers</h2>"
        + _table(["n", "m", "m/n", "full-rank share", "median σ_min", "median live k",
                  "Marchenko–Pastur √(k/n) − 1"],
                 [[r["n"], r["m"], r["ratio"], r["full_rank_share"], r["sigma_min_median"],
                   r["live_median"], r["marchenko_pastur"]] for r in rank])
    )  # fmt: skip
    if (run_dir / "model_rank.csv").exists():
        own = read_csv(run_dir / "model_rank.csv")
        body += "<h2>This net's own fully connected layers</h2>" + _table(
            ["layer", "m", "n", "m/n", "inputs", "full-rank share", "median σ_min",
             "median live"],
            [[r["layer"], r["m"], r["n"], r["ratio"], r["inputs"], r["full_rank_share"],
              r["sigma_min_median"], r["live_median"]] for r in own])  # fmt: skip
    return write_page(run_dir, f"layerscope relu-bound · {run_dir.name}",
                         "ReLU completeness: live units against widths", body)  # fmt: skip


def _figure(rows: list[dict], rank: list[dict], input_dim: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 3.8))
    x = list(range(1, len(rows) + 1))
    a.plot(x, [r["units"] for r in rows], "o-", label="width n_l")
    a.plot(x, [r["live_units"] for r in rows], "o-", label="live units p_l·n_l")
    a.plot(x, [r["previous_units"] for r in rows], "--", label="needed layer-wise: n_(l−1)")
    a.plot(x, [r["seed_bound_width"] for r in rows], ":", label="seed: n_0 / p^l")
    a.axhline(input_dim, color="gray", lw=0.8, label="input dimension n_0")
    a.set_yscale("log")
    a.set_xlabel("ReLU layer")
    a.set_title("live units vs the completeness bound")
    a.legend(fontsize=7)
    ratios = [r["ratio"] for r in rank]
    b.plot(ratios, [r["full_rank_share"] for r in rank], "o-", label="share full rank")
    b.plot(ratios, [r["sigma_min_median"] for r in rank], "s-", label="median σ_min")
    b.plot(ratios, [r["marchenko_pastur"] for r in rank], ":", label="Marchenko–Pastur edge")
    b.set_xlabel("m / n")
    b.set_title(f"random ReLU layer, n = {rank[0]['n']}")
    b.legend(fontsize=7)
    for ax in (a, b):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    plt.close(fig)


def summary(run_dir: str | Path) -> dict:
    """How many ReLU layers meet the layer-wise bound, and the share of full-rank random
    layers at m/n = 2."""
    layers = read_csv(Path(run_dir) / "layers.csv")
    rank = read_csv(Path(run_dir) / "rank.csv")
    at2 = [r["full_rank_share"] for r in rank if abs(r["ratio"] - 2) < 1e-9]
    return {
        "relu layers": len(layers),
        "layer-wise bound met": sum(str(r["layerwise_ok"]) == "True" for r in layers),
        "mean p": sum(r["p"] for r in layers) / max(len(layers), 1),
        "full rank at m/n=2": at2[0] if at2 else float("nan"),
    }


OPTIONS = (
    shared("model", "any with nn.ReLU"),
    shared("weights"),
    shared("data", "its test split"),
    Option("size", "Image side.", kind=int),
    Option("n", "Images over which p_l is measured.", kind=int),
    Option("batch_size", "Batch size.", kind=int),
    Option("rank_n", "Input width n of the random ReLU layers.", kind=int),
    Option("rank_ratios", "Width ratios m/n.", parse=numbers),
    Option("rank_inputs", "Inputs per random layer.", kind=int),
    Option("seed", "Seed.", kind=int),
    DATA_ROOT,
    DEVICE,
)  # fmt: skip


def terminal(run_dir: Path) -> list:
    """The bound layer by layer, and the rank of random bias-free ReLU layers."""
    table = TextTable(
        f"relu-bound · {Path(run_dir).name}",
        ("layer", "n_l", "p_l", "live", "n_(l−1)", "layer-wise", "≥ n_0"),
    )
    for r in read_csv(Path(run_dir) / "layers.csv"):
        table.add(r["layer"], r["units"], f"{r['p']:.3f}", f"{r['live_units']:.0f}",
                  r["previous_units"], r["layerwise_ok"], r["global_ok"])  # fmt: skip
    rank = TextTable(
        "random bias-free ReLU layers", ("m/n", "full rank", "median σ_min", "Marchenko–Pastur")
    )
    for r in read_csv(Path(run_dir) / "rank.csv"):
        rank.add(f"{r['ratio']:.2f}", f"{r['full_rank_share']:.1%}",
                 f"{r['sigma_min_median']:.3f}", f"{r['marchenko_pastur']:.3f}")  # fmt: skip
    return [table, rank, done(run_dir)]


STUDY = Study(
    kind="relu-bound",
    terminal=terminal,
    table="layers.csv",
    config=ReluBoundConfig,
    work=_work,
    report=report,
    summary=summary,
    title="The ReLU completeness bound",
    options=OPTIONS,
    command="study relu-bound",
    help=(
        "ReLU completeness: the measured share of positive units p_l at every ReLU, the live "
        "units against the widths Badger's bound asks for, and the rank of random ReLU layers."
    ),
)
