"""The depth study (seed part IV): reconstruct an image from every stage of one or more models,
trained and untrained, and measure m_g, m_r and m_i over the descent.

``DepthConfig`` → :func:`run` → a run directory (``config.json``, ``metrics.csv``,
``summary.csv``, ``targets/<key>/`` per target, ``grid.png``, ``curves.png``, ``report.html``).
Targets are written as they finish; ``resume=True`` skips the ones already on disk.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from ..errors import ConfigError, LayerscopeError
from ..faults import fault_point
from ..files import read_json
from ..images import load_image
from ..inversion import InversionConfig, Job, TargetResult, invert_jobs, resolve_device
from ..layers import execution_order, resolve_layers
from ..models import load_model
from ..runs import guarded, open_run, write_meta
from ..tables import write_csv

__all__ = ["DepthConfig", "load_targets", "restart_spread", "run"]


#: The smallest image side a depth run takes (the blur pads by reflection, the nets downsample).
MIN_SIZE = 8


@dataclass
class DepthConfig:
    """What to run. ``layers=["all"]`` means every stage of each model."""

    models: list[str] = field(default_factory=lambda: ["resnet18", "resnet50"])
    weights: list[str] = field(default_factory=lambda: ["none"])
    images: list[str] = field(default_factory=lambda: ["chelsea"])
    layers: list[str] = field(default_factory=lambda: ["all"])
    size: int = 224
    normalize: str | None = None  # None: from a checkpoint's sidecar, else none
    model_seed: int = 0
    device: str = "auto"
    inversion: InversionConfig = field(default_factory=lambda: InversionConfig(iterations=300))
    num_classes: int | None = None  # head size for checkpoints without a sidecar
    restarts: int = 1  # K > 1: every target also from K − 1 other a0 (non-uniqueness)

    def __post_init__(self) -> None:
        options = {"models": "--model", "weights": "--weights", "images": "--image"}
        for name, option in (options | {"layers": "--layers"}).items():
            if not getattr(self, name):
                raise ConfigError(f"{option} is empty: give at least one")
        if self.size < MIN_SIZE:
            raise ConfigError(
                f"--size {self.size} is too small: images are at least {MIN_SIZE}×{MIN_SIZE} "
                "(the seeds use 299, the default is 224)"
            )
        if self.normalize not in (None, "none", "imagenet"):
            raise ConfigError(f"--normalize must be none or imagenet, not {self.normalize!r}")
        if self.inversion.jitter is not None:
            self.inversion.jitter.check(self.size, self.size)
        if self.restarts < 1:
            raise ConfigError(f"--restarts must be at least 1, not {self.restarts}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["inversion"] = self.inversion.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> DepthConfig:
        d = dict(d)
        d["inversion"] = InversionConfig.from_dict(d["inversion"])
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


def load_targets(run_dir: str | Path, tensors: bool = True) -> list[TargetResult]:
    """Every finished target of a run (those whose ``result.json`` was written), in the run's
    order: model, weights, image as configured, layers by depth. ``tensors=False`` leaves the
    reconstructions on disk (for tables and the resume check)."""
    run_dir = Path(run_dir)
    targets = [
        TargetResult.load(p.parent, tensors) for p in sorted(run_dir.glob("targets/*/result.json"))
    ]
    cfg_path = run_dir / "config.json"
    if cfg_path.exists():
        meta = read_json(cfg_path)
        config = DepthConfig.from_dict(meta["study"])
        states = {s: k for k, s in enumerate(_states(config))}
        layers = meta.get("layers", {})

        def rank(t: TargetResult):
            order = layers.get(t.model, [])
            depth = order.index(t.layer) if t.layer in order else len(order)
            return (states.get((t.model, t.weights, t.image), len(states)), depth)

        targets.sort(key=rank)
    return targets


def _write_tables(run_dir: Path) -> list[TargetResult]:
    targets = load_targets(run_dir, tensors=False)
    write_csv(run_dir / "metrics.csv", (row for t in targets for row in t.rows()))
    write_csv(run_dir / "summary.csv", (t.rows()[-1] | {"message": t.message} for t in targets))
    return targets


def restart_spread(targets: list[TargetResult]) -> list[dict]:
    """Per (model, weights, image, layer) with several restarts: the mean pairwise distance
    ‖a_g^i − a_g^j‖ between the reconstructions from different a0 (≈ 0 where the layer is
    injective and the descent converges; large where many inputs match the layer equally
    well), next to the mean m_g, m_i and m_r."""
    groups: dict[tuple, list[TargetResult]] = {}
    for t in targets:
        groups.setdefault((t.model, t.weights, t.image, t.layer), []).append(t)
    rows = []
    for (m, w, image, layer), ts in groups.items():
        if len(ts) < 2:
            continue
        recs = torch.cat([t.reconstruction.flatten(1).double() for t in ts])
        i, j = torch.triu_indices(len(ts), len(ts), offset=1)
        spread = float((recs[i] - recs[j]).norm(dim=1).mean())
        finals = [t.final for t in ts]
        rows.append({
            "model": m, "weights": w, "image": image, "layer": layer, "restarts": len(ts),
            "spread": spread,
            "embedding_distance": sum(f["embedding_distance"] for f in finals) / len(ts),
            "input_distance": sum(f["input_distance"] for f in finals) / len(ts),
            "reference_distance": finals[0]["reference_distance"],
            "reference_input_distance": finals[0]["reference_input_distance"],
        })  # fmt: skip
    return rows


def _states(config: DepthConfig) -> list[tuple[str, str, str]]:
    """(model, weights as loaded, image) in configured order."""
    return [
        (m, "none" if w in ("", "none") else w, i)
        for m in config.models
        for w in config.weights
        for i in config.images
    ]


def run(
    config: DepthConfig,
    out: str | Path | None = None,
    resume: bool = False,
    progress: bool = False,
) -> Path:
    """Run the study into ``out`` (default: a new dated folder under ``runs/``); returns it."""
    run_dir, stored = open_run(out, "depth", resume)
    if stored is not None:
        config = DepthConfig.from_dict(stored["study"])
    device = resolve_device(config.device)

    # Load everything first: a missing checkpoint or image fails before any compute.
    images = {name: load_image(name, config.size) for name in config.images}
    models = {
        (m, w): load_model(
            m,
            w,
            seed=config.model_seed,
            normalize=config.normalize,
            input_size=config.size,
            num_classes=config.num_classes,
        )
        for m in config.models
        for w in config.weights
    }
    layers = {key: resolve_layers(model, config.layers) for key, model in models.items()}
    for model in models.values():
        execution_order(model, torch.zeros(1, 3, config.size, config.size))  # size check

    targets: dict[str, Job] = {}  # by folder name, which must be unique
    for (m, w), model in models.items():
        for name, img in images.items():
            for layer in layers[(m, w)]:
                for k in range(config.restarts):
                    probe = TargetResult(m, model.weights, name, layer, torch.empty(0), restart=k)
                    if probe.key in targets:
                        raise LayerscopeError(
                            f"the targets of images {targets[probe.key].image_name!r} and "
                            f"{name!r} would share the folder {probe.key}: rename one of the files"
                        )
                    targets[probe.key] = Job(model, img, name, layer, k)

    write_meta(
        run_dir,
        "depth",
        config.to_dict(),
        device=str(device),
        layers={m: layers[(m, w)] for (m, w) in models},
    )

    done = {t.key for t in load_targets(run_dir, tensors=False)}
    jobs = [job for key, job in targets.items() if key not in done]
    saved = [len(done)]

    def on_result(result: TargetResult) -> None:
        result.save(run_dir / "targets")
        _write_tables(run_dir)
        saved[0] += 1
        fault_point("target-saved")

    def interrupted() -> str:
        return (
            f"interrupted: {saved[0]} of {len(targets)} targets saved in {run_dir}; rerun with "
            f"--resume --out {run_dir}"
        )

    with guarded(run_dir, stored is None, interrupted, saved=lambda: saved[0] > 0):
        if jobs:
            invert_jobs(
                jobs, config.inversion, device=device, on_result=on_result, progress=progress
            )
        _write_tables(run_dir)
        if config.restarts > 1:
            write_csv(run_dir / "restarts.csv", restart_spread(load_targets(run_dir)))
        from ..report import depth_report

        depth_report(run_dir)
    return run_dir


def _version() -> str:
    from .. import __version__

    return __version__
