"""Similarity study: every layer of model A against every layer of model B on one data set.

One truncated forward per batch and model collects all requested layers at once. Linear CKA
streams (unbiased minibatch estimator, :class:`~layerscope.similarity.CKAMatrix`); the CCA
family needs whole matrices, so it keeps each layer's spatially averaged activations
(``reduce="mean"``: n × channels) for the ``n`` inputs. Baselines printed with every result:
the same measure with the rows of B shuffled (independent inputs), per measure on the first
layer pair, and for CKA the same layer of A in two untrained seeds of A's architecture.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from ..data import load_dataset
from ..errors import LayerscopeError
from ..inversion import resolve_device
from ..layers import activations, resolve_layers
from ..models import load_model
from ..progress import progress_bar
from ..runs import open_run, write_meta
from ..similarity import CKAMatrix, cca, pwcca, svcca, to_matrix
from ..tables import write_csv

__all__ = ["MEASURES", "SimilarityConfig", "run"]

MEASURES = ("cka", "cca", "svcca", "pwcca")


@dataclass
class SimilarityConfig:
    model_a: str = "resnet18"
    model_b: str | None = None  # None: A against itself
    weights_a: str = "none"
    weights_b: str | None = None
    data: str = "photos"
    size: int | None = None
    layers_a: list[str] = field(default_factory=lambda: ["all"])
    layers_b: list[str] | None = None
    measures: list[str] = field(default_factory=lambda: ["cka"])
    n: int = 512
    batch_size: int = 64
    seed_baseline: bool = True  # CKA of each layer of A between two untrained seeds of A
    seed: int = 0
    data_root: str | None = None
    device: str = "auto"


def _pair_measure(measure: str, x: np.ndarray, y: np.ndarray) -> float:
    try:
        if measure == "cca":
            return cca(x, y).mean
        if measure == "svcca":
            return svcca(x, y, keep=0.99).mean
        return pwcca(x, y)
    except ValueError:
        return float("nan")


def run(config: SimilarityConfig, out: str | Path | None = None, progress: bool = False) -> Path:
    bad = [m for m in config.measures if m not in MEASURES]
    if bad:
        raise LayerscopeError(f"unknown measures {bad}: choose from {', '.join(MEASURES)}")
    run_dir, _ = open_run(out, "similarity", resume=False)
    device = resolve_device(config.device)
    a = load_model(config.model_a, config.weights_a, seed=config.seed).to(device)
    same = config.model_b is None and config.weights_b is None
    b = a if same else load_model(
        config.model_b or config.model_a, config.weights_b or "none", seed=config.seed + 1
    ).to(device)  # fmt: skip
    layers_a = resolve_layers(a, config.layers_a)
    layers_b = resolve_layers(b, config.layers_b or config.layers_a)
    dataset = load_dataset(config.data, "test", config.size, config.seed, config.data_root)
    count = min(config.n, len(dataset))
    subset = torch.utils.data.Subset(dataset, list(range(count)))
    loader = DataLoader(subset, batch_size=config.batch_size, shuffle=False, drop_last=True)
    if len(loader) == 0:
        raise LayerscopeError(f"--n {count} is smaller than one batch of {config.batch_size}")
    write_meta(run_dir, "similarity", asdict(config), device=str(device))

    cka_acc = CKAMatrix(len(layers_a), len(layers_b))
    shuffled = CKAMatrix(1, 1)
    seeds = None
    if "cka" in config.measures and config.seed_baseline:
        u0 = load_model(config.model_a, seed=config.seed + 100).to(device)
        u1 = load_model(config.model_a, seed=config.seed + 101).to(device)
        seeds = [CKAMatrix(1, 1) for _ in layers_a]
    gen = torch.Generator().manual_seed(config.seed)
    pooled_a: dict[str, list] = {name: [] for name in layers_a}
    pooled_b: dict[str, list] = {name: [] for name in layers_b}
    with progress_bar(len(loader), enabled=progress) as bar, torch.no_grad():
        for x, _ in loader:
            x = x.to(device)
            fa = activations(a, x, layers_a)  # one truncated forward per model and batch
            fb = fa if same else activations(b, x, layers_b)
            flat_a = [fa[n].flatten(1) for n in layers_a]
            flat_b = [fb[n].flatten(1) for n in layers_b]
            if "cka" in config.measures:
                cka_acc.update(flat_a, flat_b)
                perm = torch.randperm(len(x), generator=gen)
                shuffled.update(flat_a[:1], [flat_b[0][perm.to(flat_b[0].device)]])
            if seeds is not None:
                g0, g1 = activations(u0, x, layers_a), activations(u1, x, layers_a)
                for acc, n in zip(seeds, layers_a, strict=True):
                    acc.update([g0[n].flatten(1)], [g1[n].flatten(1)])
            for n in layers_a:
                pooled_a[n].append(to_matrix(fa[n], "mean").double().cpu())
            for n in layers_b:
                pooled_b[n].append(to_matrix(fb[n], "mean").double().cpu())
            bar.advance(1)
    rows = []
    baselines = {}
    if "cka" in config.measures:
        mat = cka_acc.compute()
        rows += [
            {"measure": "cka", "layer_a": la, "layer_b": lb, "value": float(mat[i, j])}
            for i, la in enumerate(layers_a)
            for j, lb in enumerate(layers_b)
        ]
        baselines["cka"] = float(shuffled.compute()[0, 0])
    mats_a = {n: torch.cat(v).numpy() for n, v in pooled_a.items()}
    mats_b = {n: torch.cat(v).numpy() for n, v in pooled_b.items()}
    rng = np.random.default_rng(config.seed)
    for measure in (m for m in config.measures if m != "cka"):
        for la in layers_a:
            for lb in layers_b:
                value = _pair_measure(measure, mats_a[la], mats_b[lb])
                rows.append({"measure": measure, "layer_a": la, "layer_b": lb, "value": value})
        perm = rng.permutation(len(mats_b[layers_b[0]]))
        baselines[measure] = _pair_measure(measure, mats_a[layers_a[0]], mats_b[layers_b[0]][perm])
    seed_base = (
        {n: float(acc.compute()[0, 0]) for acc, n in zip(seeds, layers_a, strict=True)}
        if seeds is not None
        else {}
    )
    for r in rows:
        r["baseline_shuffled"] = baselines[r["measure"]]
        if r["measure"] == "cka" and seed_base:
            r["baseline_untrained_seeds"] = seed_base[r["layer_a"]]
        r["n"] = count
    write_csv(run_dir / "similarity.csv", rows)
    from ..report.figures import similarity_heatmaps

    similarity_heatmaps(
        rows, layers_a, layers_b, run_dir, a.label, b.label if not same else a.label
    )
    return run_dir
