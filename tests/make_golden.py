"""Writes tests/data/inversion_golden.pt: depth results of small cases, made by the inversion loop
as it was before generation generalised it (commit d618a06). test_objectives compares against it.
Run: python tests/make_golden.py (only when the depth results are meant to change)."""

from pathlib import Path

import torch

import layerscope as ls
from layerscope.inversion import Jitter, Schedule

CASES = {
    "staged-normalized": dict(iterations=20, batching="staged"),
    "per-layer-gradient": dict(
        iterations=20, batching="per-layer", step="gradient", lr=Schedule(0.02, 0.01)
    ),
    "adam-jitter": dict(iterations=20, batching="staged", step="adam", jitter=Jitter(24)),
}


def golden() -> dict:
    torch.set_num_threads(2)
    model = ls.load_model("resnet10", seed=0)
    image = ls.load_image("chelsea", 32)
    out = {}
    for name, kw in CASES.items():
        res = ls.invert(model, image, ["conv1", "layer1", "layer3", "output"], device="cpu", **kw)
        out[name] = {
            t.layer: {
                "reconstruction": t.reconstruction.clone(),
                "m_g": torch.tensor(
                    [r["embedding_distance"] for r in t.curve], dtype=torch.float64
                ),
                "loss": torch.tensor([r["loss"] for r in t.curve], dtype=torch.float64),
            }
            for t in res.targets
        }
    return out


if __name__ == "__main__":
    path = Path(__file__).parent / "data" / "inversion_golden.pt"
    torch.save(golden(), path)
    print("wrote", path)
