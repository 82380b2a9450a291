"""Similarity studies: every layer of model A against every layer of model B on one data set
(:func:`run`), and every layer of a training run against its own final state, epoch by epoch
(:func:`run_over_training`).

One truncated forward per batch and model collects all requested layers at once. CKA streams
(minibatch estimator, :class:`~layerscope.similarity.CKAMatrix`: memory bounded by a batch);
the CCA family needs whole matrices, so it keeps each layer's reduced activations for the
``n`` inputs (default ``reduce="mean"``: n × channels; refused with a clear error above
:data:`POOLED_LIMIT_BYTES`). ``reduce`` — ``flatten``, ``mean`` or ``positions`` — applies to
every measure when given; by default CKA flattens and the CCA family averages over space.
Baselines printed with every result: the same measure with the rows of B shuffled
(independent inputs), per measure on the first layer pair; for the CCA family also Gaussian
random directions of B's shape (the chance level for that n and p); for CKA the same layer of
A in two untrained seeds of A's architecture.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from ..core.config import Config, at_least
from ..core.errors import ConfigError, LayerscopeError
from ..core.progress import progress_bar
from ..core.tables import read_csv, write_csv
from ..engine.data import load_dataset
from ..engine.device import resolve_device
from ..engine.layers import execution_order, read_unchecked, resolve_layers
from ..engine.models import load_model, read_sidecar
from ..engine.similarity import LAYOUTS, CKAMatrix, _FeatureTerms, cca, pwcca, svcca, to_matrix
from ..protocol.lifecycle import Run, Study, execute
from ..protocol.options import DATA_ROOT, DEVICE, Option, number, shared, split_list
from ..report.terminal import Line, TextTable, done

__all__ = [
    "MEASURES",
    "OVER_TRAINING",
    "STUDIES",
    "STUDY",
    "OverTrainingConfig",
    "SimilarityConfig",
    "run",
    "run_over_training",
    "summary",
]

MEASURES = ("cka", "cca", "svcca", "pwcca")
REDUCTIONS = ("flatten", "mean", "positions")
#: the CCA family's pooled activations may not exceed this (all layers, both models)
POOLED_LIMIT_BYTES = 4 * 1024**3


@dataclass
class MeasureOptions(Config):
    """How activations become numbers, shared by both studies."""

    measures: list[str] = field(default_factory=lambda: ["cka"])
    reduce: str | None = None  # None: CKA flatten, CCA family mean
    kernel: str = "linear"  # CKA: linear | rbf
    # RBF bandwidth, a fraction of the batch's median distance
    sigma: float = at_least(0, 0.8, above=True)
    unbiased: bool = True  # CKA: minibatch HSIC_1 (Nguyen et al.); False: biased HSIC_0
    layout: str = "auto"  # where the channels are: auto | nchw | nhwc | tokens (to_matrix)

    def check(self) -> None:
        bad = [m for m in self.measures if m not in MEASURES]
        if bad:
            raise LayerscopeError(f"unknown measures {bad}: choose from {', '.join(MEASURES)}")
        if self.reduce is not None and self.reduce not in REDUCTIONS:
            raise LayerscopeError(
                f"unknown reduce {self.reduce!r}: choose from {', '.join(REDUCTIONS)}"
            )
        if self.layout not in LAYOUTS:
            raise LayerscopeError(
                f"unknown layout {self.layout!r}: choose from {', '.join(LAYOUTS)}"
            )
        if self.kernel not in ("linear", "rbf"):
            raise LayerscopeError(f"unknown kernel {self.kernel!r}: choose linear or rbf")
        if self.kernel == "rbf" and self.reduce == "positions":
            raise LayerscopeError(
                "reduce=positions makes batches too large for an RBF Gram matrix: use the "
                "linear kernel or reduce flatten/mean"
            )

    def reduction(self, measure: str) -> str:
        return self.reduce or ("flatten" if measure == "cka" else "mean")

    def cka_matrix(self, n_a: int, n_b: int, diagonal: bool = False) -> CKAMatrix:
        return CKAMatrix(n_a, n_b, self.kernel, self.sigma, self.unbiased, diagonal)


def _pair_measure(measure: str, x: np.ndarray, y: np.ndarray) -> float:
    try:
        if measure == "cca":
            return cca(x, y).mean
        if measure == "svcca":
            return svcca(x, y, keep=0.99).mean
        return pwcca(x, y)
    except ValueError:  # n ≤ features: undefined (NaN in the table, the guard's reason in docs)
        return float("nan")


class _Pooled:
    """The CCA family's activations, kept per layer (reduced, float64 on the CPU), with a
    memory check after the first batch."""

    def __init__(self, layers: list[str], reduce: str, batches: int) -> None:
        self.layers, self.reduce, self.batches = layers, reduce, batches
        self.parts: dict[str, list] = {n: [] for n in layers}

    def add(self, mats: dict) -> None:
        """Add a batch: per layer its reduced float64 matrix (taken by the forward's transform)."""
        for n in self.layers:
            self.parts[n].append(mats[n])

    def expected_bytes(self) -> int:
        return sum(v[0].numel() * 8 * self.batches for v in self.parts.values() if v)

    def matrices(self) -> dict[str, np.ndarray]:
        return {n: torch.cat(v).numpy() for n, v in self.parts.items()}


def _check_pooled(pools: list[_Pooled]) -> None:
    total = sum(p.expected_bytes() for p in pools)
    if total > POOLED_LIMIT_BYTES:
        raise LayerscopeError(
            f"the CCA family would keep {total / 1024**3:.1f} GiB of activations "
            f"(reduce={pools[0].reduce}): use --reduce mean, fewer --layers or a smaller --n"
        )


def _loader(dataset, n: int, batch_size: int) -> DataLoader:
    count = min(n, len(dataset))
    subset = torch.utils.data.Subset(dataset, list(range(count)))
    loader = DataLoader(subset, batch_size=batch_size, shuffle=False, drop_last=True)
    if len(loader) == 0:
        raise LayerscopeError(f"--n {count} is smaller than one batch of {batch_size}")
    return loader


@dataclass
class SimilarityConfig(Config):
    model_a: str | None = None  # None: the model named by weights_a's sidecar, else resnet18
    model_b: str | None = None  # None: weights_b's sidecar model, else A's; both None: A vs A
    weights_a: str = "none"
    weights_b: str | None = None
    data: str = "photos"
    size: int | None = None
    layers_a: list[str] = field(default_factory=lambda: ["all"])
    layers_b: list[str] | None = None
    options: MeasureOptions = field(default_factory=MeasureOptions)
    n: int = 512
    batch_size: int = 64
    seed_baseline: bool = True  # CKA of each layer of A between two untrained seeds of A
    seed: int = 0
    data_root: str | None = None
    device: str = "auto"

    def __post_init__(self) -> None:
        _check_sizes(self.n, self.batch_size, self.options)


def _model_name(name: str | None, weights: str | None, fallback: str) -> str:
    """The model to build: as named, else the one a checkpoint's sidecar names, else
    ``fallback`` (so ``--weights-a run/checkpoints/epoch_006.safetensors`` is enough)."""
    if name:
        return name
    if weights and weights not in ("none", "imagenet"):
        model = read_sidecar(Path(weights)).get("model")
        if model:
            return model
    return fallback


def _rows_for(measure: str, reduce: str, pairs, values) -> list[dict]:
    return [
        {"measure": measure, "reduce": reduce, "layer_a": la, "layer_b": lb, "value": float(v)}
        for (la, lb), v in zip(pairs, values, strict=True)
    ]


def _interrupted(run_dir: Path) -> str:
    kept = sorted(p.name for p in run_dir.iterdir()) if run_dir.is_dir() else []
    saved = f"kept in {run_dir}: {', '.join(kept)}" if kept else "nothing was saved"
    return f"interrupted: {saved} (this command does not resume: rerun with a new --out)"


def run(config: SimilarityConfig, out: str | Path | None = None, progress: bool = False) -> Path:
    """Layer × layer similarity of A and B; writes ``similarity.csv`` and one heatmap per
    measure into the run directory, which it returns."""
    return execute(STUDY, config, out, progress=progress)


def _pair_models(config: SimilarityConfig, device):
    """A's name, A, B (A itself when neither B's model nor weights are given), and whether
    B is A."""
    name_a = _model_name(config.model_a, config.weights_a, "resnet18")
    a = load_model(name_a, config.weights_a, seed=config.seed).to(device)
    same = config.model_b is None and config.weights_b is None
    b = a if same else load_model(
        _model_name(config.model_b, config.weights_b, name_a), config.weights_b or "none",
        seed=config.seed + 1,
    ).to(device)  # fmt: skip
    return name_a, a, b, same


def _test_batches(config: SimilarityConfig, models, device):
    """The test split's batches and how many inputs they hold; every model is probed at the
    data's size first (one that cannot take it fails before any work)."""
    dataset = load_dataset(config.data, "test", config.size, config.seed, config.data_root)
    loader = _loader(dataset, config.n, config.batch_size)
    for model in models:
        _probe_size(model, dataset[0][0].shape[-1], device)
    return loader, len(loader) * config.batch_size


def _work(config: SimilarityConfig, run: Run) -> None:
    """One pass over the test batches feeds every accumulator at once (CKA's Gram terms for
    all layer pairs, the shuffled and untrained-seed baselines, the CCA family's pooled
    activations), each taken as its layer runs; it stays one function (~95 lines) because
    the per-batch closures share those accumulators, which a split would pass around."""
    run_dir, progress, opts = run.dir, run.progress, config.options
    device = resolve_device(config.device)
    name_a, a, b, same = _pair_models(config, device)
    layers_a = resolve_layers(a, config.layers_a)
    layers_b = resolve_layers(b, config.layers_b or config.layers_a)
    loader, count = _test_batches(config, (a,) if same else (a, b), device)
    run.meta(device=str(device), label_a=a.label, label_b=b.label)
    run.interrupted = lambda: _interrupted(run_dir)
    want_cka = "cka" in opts.measures
    cca_measures = [m for m in opts.measures if m != "cka"]
    cka_reduce, cca_reduce = opts.reduction("cka"), opts.reduction("cca")
    cka_acc = opts.cka_matrix(len(layers_a), len(layers_b))
    shuffled = opts.cka_matrix(1, 1)
    seeds = None
    if want_cka and config.seed_baseline:
        u0 = load_model(name_a, seed=config.seed + 100).to(device)
        u1 = load_model(name_a, seed=config.seed + 101).to(device)
        seeds = opts.cka_matrix(len(layers_a), len(layers_a), diagonal=True)

        def seed_terms(_name: str, t: torch.Tensor):  # Gram terms as the layer runs
            return seeds.prepare(to_matrix(t, cka_reduce, opts.layout))

    gen = torch.Generator().manual_seed(config.seed)
    pool_a = _Pooled(layers_a, cca_reduce, len(loader))
    pool_b = _Pooled(layers_b, cca_reduce, len(loader))
    first_b = layers_b[0]
    shuffled_ok = True

    def grab(perm: torch.Tensor | None):
        """What each layer contributes, computed as it runs (no activation is kept)."""

        def transform(name: str, t: torch.Tensor) -> dict:
            piece = {}
            if want_cka:
                piece["cka"] = cka_acc.prepare(to_matrix(t, cka_reduce, opts.layout))
                if perm is not None and name == first_b:
                    piece["shuffled"] = cka_acc.prepare(
                        to_matrix(t[perm.to(t.device)], cka_reduce, opts.layout)
                    )
            if cca_measures:
                piece["pooled"] = to_matrix(t, cca_reduce, opts.layout).to(
                    "cpu", torch.float64, copy=True
                )
            return piece

        return transform

    with progress_bar(len(loader), enabled=progress) as bar, torch.no_grad():
        for step, (x, _) in enumerate(loader):
            x = x.to(device)
            perm = torch.randperm(len(x), generator=gen)  # shuffled baseline: whole images
            # one truncated forward per model and batch; B's own network unless B is A
            fa = read_unchecked(a, x, layers_a, transform=grab(perm if same else None))
            fb = fa if same else read_unchecked(b, x, layers_b, transform=grab(perm))
            if want_cka:
                cka_acc.update([fa[n]["cka"] for n in layers_a], [fb[n]["cka"] for n in layers_b])
                try:
                    shuffled.update([fa[layers_a[0]]["cka"]], [fb[first_b]["shuffled"]])
                except ValueError:  # positions of two different grids: no baseline pair
                    shuffled_ok = False
            if seeds is not None:
                g0 = read_unchecked(u0, x, layers_a, transform=seed_terms)
                g1 = read_unchecked(u1, x, layers_a, transform=seed_terms)
                seeds.update([g0[n] for n in layers_a], [g1[n] for n in layers_a])
            if cca_measures:
                pool_a.add({n: fa[n]["pooled"] for n in layers_a})
                pool_b.add({n: fb[n]["pooled"] for n in layers_b})
                if step == 0:
                    _check_pooled([pool_a] if same else [pool_a, pool_b])
            bar.advance(1)
    pairs = [(la, lb) for la in layers_a for lb in layers_b]
    rows: list[dict] = []
    baselines = {}
    if want_cka:
        rows += _rows_for("cka", cka_reduce, pairs, cka_acc.compute().ravel())
        baselines["cka"] = shuffled.compute()[0, 0] if shuffled_ok else float("nan")
    random_base: dict[str, float] = {}
    if cca_measures:
        cca_rows, cca_base, random_base = _cca_family(
            cca_measures, cca_reduce, pool_a.matrices(), pool_b.matrices(), pairs, count,
            config.seed,
        )  # fmt: skip
        rows += cca_rows
        baselines |= cca_base
    seed_base = dict(zip(layers_a, np.diag(seeds.compute()), strict=True)) if seeds else {}
    for r in rows:
        r["baseline_shuffled"] = float(baselines[r["measure"]])
        if r["measure"] == "cka" and seed_base:
            r["baseline_untrained_seeds"] = float(seed_base[r["layer_a"]])
        if r["measure"] in random_base:
            r["baseline_random"] = float(random_base[r["measure"]])
        r["n"] = count
    write_csv(run_dir / "similarity.csv", rows)


def _cca_family(measures, reduce, mats_a, mats_b, pairs, count, seed):
    """Rows of every CCA-family measure for every layer pair, and its two baselines on the
    first pair: B's rows shuffled (whole images, also under ``positions``) and Gaussian
    features of B's shape (CCA's chance level for that n and p)."""
    rng = np.random.default_rng(seed)
    first_a, first_b = pairs[0]
    rows: list[dict] = []
    shuffled: dict[str, float] = {}
    random: dict[str, float] = {}
    for measure in measures:
        values = [_pair_measure(measure, mats_a[la], mats_b[lb]) for la, lb in pairs]
        rows += _rows_for(measure, reduce, pairs, values)
        b0 = mats_b[first_b]
        if reduce == "positions":  # permute whole images, not positions
            per = len(b0) // count
            perm = (rng.permutation(count)[:, None] * per + np.arange(per)).ravel()
        else:
            perm = rng.permutation(len(b0))
        shuffled[measure] = _pair_measure(measure, mats_a[first_a], b0[perm])
        random[measure] = _pair_measure(measure, mats_a[first_a], rng.standard_normal(b0.shape))
    return rows, shuffled, random


@dataclass
class OverTrainingConfig(Config):
    """Each layer of a training run's checkpoints against the same layer of its final one."""

    run: str = ""  # a `layerscope train` run directory
    layers: list[str] = field(default_factory=lambda: ["all"])
    options: MeasureOptions = field(default_factory=MeasureOptions)
    data: str | None = None  # default: the run's data set (its test split)
    n: int = 512
    batch_size: int = 64
    seed: int = 0
    data_root: str | None = None
    device: str = "auto"

    def __post_init__(self) -> None:
        _check_sizes(self.n, self.batch_size, self.options)


def _check_sizes(n: int, batch_size: int, options: MeasureOptions) -> None:
    options.check()
    if n < 1 or batch_size < 1:
        raise ConfigError(f"--n and --batch-size must be at least 1 (got {n}, {batch_size})")
    if "cka" in options.measures and batch_size < 4:
        raise ConfigError(
            f"CKA needs --batch-size ≥ 4, not {batch_size}: the unbiased estimator is undefined "
            "below 4 inputs a batch, and the biased one gives 1.0 for any pair at 3 or fewer"
        )


def _probe_size(model, size: int, device) -> None:
    """One forward at the data's size: a model that cannot take it fails here, clearly,
    before the run directory is made."""
    execution_order(model, torch.zeros(1, 3, size, size, device=device))


def run_over_training(
    config: OverTrainingConfig, out: str | Path | None = None, progress: bool = False
) -> Path:
    """Similarity of every layer at every saved epoch (``epoch_000`` = the initialisation) to
    the same layer at the last epoch (SVCCA's "layers converge bottom-up"). Writes
    ``over_training.csv`` and ``over_training.png``; returns the run directory. The final
    model's Gram terms are computed once and kept (n × batch floats per layer, never
    n × features)."""
    return execute(OVER_TRAINING, config, out, progress=progress)


def _work_over_training(config: OverTrainingConfig, run: Run) -> None:
    """The final model's terms once, then one pass per checkpoint against them (see
    :func:`run_over_training`); one function (~105 lines) for the same reason as
    :func:`_work`: the streaming closures share the accumulators."""
    from ..engine.training import checkpoints

    run_dir, progress, opts = run.dir, run.progress, config.options
    ckpts = checkpoints(config.run)
    if len(ckpts) < 2:
        raise LayerscopeError(
            f"{config.run} holds {len(ckpts)} checkpoint(s) under checkpoints/: "
            "need a `layerscope train` run with at least one epoch"
        )
    side = read_sidecar(ckpts[-1])
    data = config.data or side.get("data")
    if data is None:
        raise LayerscopeError(f"{ckpts[-1]} has no sidecar naming its data set: pass --data")
    params = dict(side.get("data_params") or {}) if data == side.get("data") else {}
    params = {k: v for k, v in params.items() if k != "length"}
    if data == "photos":
        params["augment"] = False
    dataset = load_dataset(
        data, "test", side.get("input_size"), config.seed,
        config.data_root or side.get("data_root"), **params,
    )  # fmt: skip
    loader = _loader(dataset, config.n, config.batch_size)
    count = len(loader) * config.batch_size
    device = resolve_device(config.device)
    final = load_model(str(ckpts[-1])).to(device)
    layers = resolve_layers(final, config.layers)
    _probe_size(final, dataset[0][0].shape[-1], device)
    run.meta(device=str(device), label=final.label)
    run.interrupted = lambda: _interrupted(run_dir)
    cca_measures = [m for m in opts.measures if m != "cka"]
    cka_reduce, cca_reduce = opts.reduction("cka"), opts.reduction("cca")

    terms = opts.cka_matrix(1, 1)

    def grab_cka(_name: str, t: torch.Tensor):
        return terms.prepare(to_matrix(t, cka_reduce, opts.layout))

    def grab_pooled(_name: str, t: torch.Tensor) -> torch.Tensor:
        return to_matrix(t, cca_reduce, opts.layout).to("cpu", torch.float64, copy=True)

    def grab_epoch(name: str, t: torch.Tensor) -> dict:
        piece = {"cka": grab_cka(name, t)} if "cka" in opts.measures else {}
        return piece | ({"pooled": grab_pooled(name, t)} if cca_measures else {})

    rows: list[dict] = []
    with progress_bar((len(ckpts) + 1) * len(loader), enabled=progress) as bar, torch.no_grad():
        # the final model, one forward per batch: its reduced activations for the CCA family
        # and its Gram terms for CKA, kept (n·batch floats per layer). Tall batches
        # (positions) keep features instead: those are recomputed per checkpoint.
        bar.describe("final epoch")
        final_pool = _Pooled(layers, cca_reduce, len(loader))
        final_terms: list[list] | None = [] if "cka" in opts.measures else None
        for step, (x, _) in enumerate(loader):
            ff = read_unchecked(final, x.to(device), layers, transform=grab_epoch)
            if cca_measures:
                final_pool.add({n: ff[n]["pooled"] for n in layers})
                if step == 0:  # the final model's and one checkpoint's, at once
                    _check_pooled([final_pool, final_pool])
            if final_terms is not None:
                terms_b = [ff[n]["cka"] for n in layers]
                if any(isinstance(t, _FeatureTerms) for t in terms_b):
                    final_terms = None
                else:
                    final_terms.append(terms_b)
            bar.advance(1)
        final_mats = final_pool.matrices() if cca_measures else {}
        for path in ckpts:
            meta = read_sidecar(path)
            bar.describe(f"epoch {meta.get('epoch', path.stem)}")
            model = load_model(str(path)).to(device)
            acc = opts.cka_matrix(len(layers), len(layers), diagonal=True)
            pool = _Pooled(layers, cca_reduce, len(loader))
            for step, (x, _) in enumerate(loader):
                x = x.to(device)
                # what each measure needs, taken as each layer runs: no activations kept
                fe = read_unchecked(model, x, layers, transform=grab_epoch)
                if "cka" in opts.measures:
                    if final_terms is not None:
                        ref = final_terms[step]
                    else:
                        ff = read_unchecked(final, x, layers, transform=grab_cka)
                        ref = [ff[n] for n in layers]
                    acc.update([fe[n]["cka"] for n in layers], ref)
                if cca_measures:
                    pool.add({n: fe[n]["pooled"] for n in layers})
                bar.advance(1)
            values: dict[str, list[float]] = {}
            if "cka" in opts.measures:
                values["cka"] = list(np.diag(acc.compute()))
            mats = pool.matrices() if cca_measures else {}
            for measure in cca_measures:
                values[measure] = [_pair_measure(measure, mats[n], final_mats[n]) for n in layers]
            for measure, vals in values.items():
                for layer, v in zip(layers, vals, strict=True):
                    rows.append({
                        "epoch": int(meta.get("epoch", len({r["epoch"] for r in rows}))),
                        "layer": layer,
                        "measure": measure,
                        "reduce": opts.reduction(measure),
                        "value": float(v),
                        "test_accuracy": meta.get("test_accuracy"),
                        "n": count,
                    })  # fmt: skip
            write_csv(run_dir / "over_training.csv", rows)  # kept as each epoch finishes


def report(run_dir: str | Path) -> Path:
    """Figures and report.html of a similarity run (layer × layer, or over training), redrawn
    from its CSV: the tables a reader looks for, the settings, the baselines."""
    from ..report import figure, read_meta, write_page
    from ..report import table as html_table
    from ..report.figures import over_training_figure, similarity_heatmaps

    run_dir = Path(run_dir)
    meta = read_meta(run_dir)
    study = meta.get("study", {})
    settings = {k: v for k, v in study.items() if k != "options"} | study.get("options", {})
    settings |= {"device": meta.get("device"), "layerscope": meta.get("layerscope")}
    settings_html = html_table(["setting", "value"], [[k, str(v)] for k, v in settings.items()])
    if meta.get("kind") == "similarity-training":
        rows = read_csv(run_dir / "over_training.csv")
        layers = list(dict.fromkeys(r["layer"] for r in rows))
        epochs = sorted({r["epoch"] for r in rows})
        label = meta.get("label") or Path(str(study.get("run"))).name
        over_training_figure(rows, layers, run_dir / "over_training.png", label)
        tables = ""
        for m in dict.fromkeys(r["measure"] for r in rows):
            vals = {(r["layer"], r["epoch"]): r["value"] for r in rows if r["measure"] == m}
            body = [[layer, *(vals.get((layer, e), "") for e in epochs)] for layer in layers]
            tables += f"<h3>{html.escape(m)}</h3>" + html_table(
                ["layer", *(f"epoch {e}" for e in epochs)], body
            )
        body = (
            "<p>Each layer at every saved epoch (0 = the initialisation) against the same layer "
            "of the last checkpoint, on the same inputs.</p>"
            + figure("over_training.png", "each layer's similarity to its final state, per epoch")
            + f"<h2>Values</h2>{tables}<h2>Settings</h2>"
            f"{settings_html}"
            '<p>Data: <a href="over_training.csv">over_training.csv</a>, '
            '<a href="config.json">config.json</a>.</p>'
        )
        title = (f"layerscope similarity over training · {run_dir.name}",
                 "Similarity of each layer to its final state")  # fmt: skip
    else:
        rows = read_csv(run_dir / "similarity.csv")
        la = list(dict.fromkeys(r["layer_a"] for r in rows))
        lb = list(dict.fromkeys(r["layer_b"] for r in rows))
        label_a, label_b = meta.get("label_a", "A"), meta.get("label_b", "B")
        figures = similarity_heatmaps(rows, la, lb, run_dir, label_a, label_b)
        best_rows = []
        for m in dict.fromkeys(r["measure"] for r in rows):
            for a in la:
                cand = [r for r in rows if r["measure"] == m and r["layer_a"] == a]
                best = max(cand, key=lambda r: -1 if r["value"] != r["value"] else r["value"])
                best_rows.append([m, a, best["layer_b"], best["value"],
                                  best.get("baseline_shuffled", ""),
                                  best.get("baseline_random", ""),
                                  best.get("baseline_untrained_seeds", "")])  # fmt: skip
        imgs = "".join(figure(f.name, f"{f.stem}: every layer of A against every layer of B")
                       for f in figures)  # fmt: skip
        body = (
            "<p>Every layer of A against every layer of B on the same inputs. Baselines: B's "
            "rows shuffled (independent inputs), Gaussian random directions of B's shape (CCA's "
            "chance level for n and p), the same layer of A in two untrained seeds (CKA).</p>"
            f"<p>A = <b>{html.escape(label_a)}</b>, B = <b>{html.escape(label_b)}</b>, "
            f"n = {rows[0].get('n', '?') if rows else '?'} inputs.</p>{imgs}"
            "<h2>Best match in B for each layer of A</h2>"
            + html_table(
                [
                    "measure",
                    "layer A",
                    "best layer B",
                    "value",
                    "shuffled",
                    "random",
                    "untrained seeds",
                ],
                best_rows,
            )
            + f"<h2>Settings</h2>{settings_html}"
            '<p>Data: <a href="similarity.csv">similarity.csv</a> (every pair), '
            '<a href="config.json">config.json</a>.</p>'
        )
        title = (f"layerscope similarity · {run_dir.name}",
                 "Representational similarity between layers")  # fmt: skip
    return write_page(run_dir, *title, body)


def summary(run_dir: str | Path) -> dict:
    """Per measure: the mean over layers of A of the best match in B (layer × layer runs), or
    of the first saved epoch's similarity to the final one (over training)."""
    run_dir = Path(run_dir)
    out: dict = {}
    if (run_dir / "over_training.csv").exists():
        rows = read_csv(run_dir / "over_training.csv")
        first = min(r["epoch"] for r in rows)
        for m in dict.fromkeys(r["measure"] for r in rows):
            for r in rows:
                if r["measure"] == m and r["epoch"] == first:
                    out[f"{m} {r['layer']} epoch {first}"] = r["value"]
        return out
    rows = read_csv(run_dir / "similarity.csv")
    for m in dict.fromkeys(r["measure"] for r in rows):
        best: dict = {}
        for r in rows:
            if r["measure"] == m and r["value"] == r["value"]:
                best[r["layer_a"]] = max(best.get(r["layer_a"], -math.inf), r["value"])
        out[f"{m} mean best match"] = sum(best.values()) / len(best) if best else math.nan
    return out


def _biased(data: dict, biased: bool) -> None:
    data.setdefault("options", {})["unbiased"] = not biased


#: How activations become numbers: the same options for both similarity studies.
MEASURE_OPTIONS = (
    Option("measure", "cka, cca, svcca, pwcca (comma separated).", "options.measures",
           parse=split_list),
    Option("reduce", "Conv maps → matrix for every measure: flatten | mean | positions "
           "(default: CKA flatten, CCA family mean).", "options.reduce"),
    Option("layout", "Where the channels are: auto | nchw | nhwc (Swin) | tokens (ViT).",
           "options.layout"),
    Option("kernel", "CKA kernel: linear | rbf.", "options.kernel"),
    Option("sigma", "RBF bandwidth, a fraction of the median distance.", "options.sigma",
           parse=number),
    Option("biased", "CKA with the biased HSIC_0 (default: the unbiased minibatch HSIC_1; the "
           "biased one inflates unrelated layers at small batches).", "options.unbiased", bool,
           apply=_biased),
)  # fmt: skip

OPTIONS = (
    Option("model_a", "Model A (default: the one --weights-a's sidecar names, else resnet18)."),
    Option("model_b", "Model B (default: --weights-b's sidecar model, else A; neither: A vs "
           "A)."),
    Option("weights_a", "Weights of A: none | imagenet | PATH."),
    Option("weights_b", "Weights of B (default: none)."),
    shared("data", "its test split; default: photos, or the training run's"),
    shared("layers", "of A, and of B unless --layers-b", many=True, path="layers_a"),
    Option("layers_b", "Layers of B.", parse=split_list),
    *MEASURE_OPTIONS,
    Option("n", "Inputs.", kind=int),
    Option("batch_size", "Batch size (CKA's minibatches).", kind=int),
    Option("seed_baseline", "Also CKA of each layer of A between two untrained seeds (two more "
           "forwards).", kind=bool),
    Option("size", "Image side (default: the data set's).", kind=int),
    Option("seed", "Seed (untrained B gets seed + 1).", kind=int),
    DATA_ROOT,
    DEVICE,
)  # fmt: skip

OVER_TRAINING_OPTIONS = (
    Option("over_training", "A `layerscope train` run: each layer at every epoch vs its final "
           "state.", "run"),
    shared("layers", "of the trained model", many=True),
    *MEASURE_OPTIONS,
    shared("data", "its test split; default: the training run's"),
    Option("n", "Inputs.", kind=int),
    Option("batch_size", "Batch size (CKA's minibatches).", kind=int),
    Option("seed", "Seed.", kind=int),
    DATA_ROOT,
    DEVICE,
)  # fmt: skip


# ---------------------------------------------------------------- the terminal


def _nan_notes(rows: list[dict]) -> list[Line]:
    """Say why a similarity is NaN instead of leaving a blank to be guessed."""
    out = []
    cca_nan = {r.get("layer_a", r.get("layer")) for r in rows
               if r["measure"] != "cka" and r["value"] != r["value"]}  # fmt: skip
    if cca_nan:
        out.append(Line(
            f"NaN for the CCA family at {', '.join(sorted(cca_nan))}: --n is not "
            "larger than the layer's features (canonical correlations would be trivially 1); "
            "use a larger --n, --reduce mean, or svcca"
        ))  # fmt: skip
    if any(r.get("reduce") == "positions" and r["value"] != r["value"] for r in rows):
        out.append(Line("NaN for positions pairs of layers with different spatial grids"))
    return out


def terminal(run_dir: Path) -> list:
    """Over training: each layer's similarity to the final epoch, epoch by epoch. Between
    nets: for each layer of A, its best match in B with the baselines."""
    run_dir = Path(run_dir)
    if (run_dir / "over_training.csv").exists():
        rows = read_csv(run_dir / "over_training.csv")
        epochs = sorted({r["epoch"] for r in rows})
        table = TextTable(f"similarity to the final epoch · {run_dir.name}",
                          ("measure", "layer", *(f"ep {e}" for e in epochs)), left=2)  # fmt: skip
        for m in dict.fromkeys(r["measure"] for r in rows):
            for layer in dict.fromkeys(r["layer"] for r in rows):
                vals = {r["epoch"]: r["value"] for r in rows
                        if (r["measure"], r["layer"]) == (m, layer)}  # fmt: skip
                table.add(m, layer, *(f"{vals[e]:.3f}" for e in epochs))
        return [table, *_nan_notes(rows), done(run_dir, "")]
    rows = read_csv(run_dir / "similarity.csv")
    table = TextTable(f"similarity · {run_dir.name}: diagonal / best match",
                      ("measure", "layer A", "best layer B", "value", "shuffled", "random",
                       "untrained seeds"))  # fmt: skip

    def fmt(v) -> str:
        return f"{v:.3f}" if isinstance(v, float) else ""

    for m in dict.fromkeys(r["measure"] for r in rows):
        for la in dict.fromkeys(r["layer_a"] for r in rows):
            cand = [r for r in rows if r["measure"] == m and r["layer_a"] == la]
            best = max(cand, key=lambda r: -1 if r["value"] != r["value"] else r["value"])
            table.add(m, la, best["layer_b"], fmt(best["value"]),
                      fmt(best["baseline_shuffled"]), fmt(best.get("baseline_random")),
                      fmt(best.get("baseline_untrained_seeds")))  # fmt: skip
    return [table, *_nan_notes(rows), done(run_dir, "")]


STUDY = Study(
    kind="similarity",
    terminal=terminal,
    table="similarity.csv",
    config=SimilarityConfig,
    work=_work,
    report=report,
    summary=summary,
    title="Layer × layer similarity (CKA, CCA, SVCCA, PWCCA)",
    options=OPTIONS,
    command="similarity",
    help=(
        "Layer × layer similarity (CKA, CCA, SVCCA, PWCCA) between two models, with heatmaps; or, "
        "with --over-training, of each layer of a training run with its final state."
    ),
)
OVER_TRAINING = Study(
    kind="similarity-training",
    terminal=terminal,
    table="over_training.csv",
    config=OverTrainingConfig,
    work=_work_over_training,
    report=report,
    summary=summary,
    title="Similarity of each layer to its final state over training",
    options=OVER_TRAINING_OPTIONS,
    command="similarity --over-training",
)
STUDIES = (STUDY, OVER_TRAINING)
