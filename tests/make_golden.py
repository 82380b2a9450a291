"""Writes the golden depth results test_objectives compares against:

- ``tests/data/inversion_golden.pt`` (float32): made by the inversion loop as it was before
  generation generalised it (commit d618a06);
- ``tests/data/inversion_golden64.pt`` (float64, the same cases): made by the generalised loop
  at commit 6d89778, which reproduced the float32 file bit for bit on the machine that made
  it. In float64 another CPU's rounding stays far below the test's tolerance, so this file is
  the machine-independent guard of the descent's results.

Run: python tests/make_golden.py [float64] (only when the depth results are meant to change)."""

import sys
from pathlib import Path

import torch

import layerscope as ls
from layerscope.inversion import GaussianBlur, Jitter, Schedule

#: the blur of the files' time: the whole blur after every step (``strength="fixed"``, the
#: seeds'; the default became ``step`` later, tested on its own)
FIXED = GaussianBlur(3, Schedule(2.4, 0.4), strength="fixed")
CASES = {
    "staged-normalized": dict(iterations=20, batching="staged", blur=FIXED),
    "per-layer-gradient": dict(
        iterations=20, batching="per-layer", step="gradient", lr=Schedule(0.02, 0.01), blur=FIXED
    ),
    "adam-jitter": dict(
        iterations=20, batching="staged", step="adam", jitter=Jitter(24), blur=FIXED
    ),
}

FILES = {
    torch.float32: Path(__file__).parent / "data" / "inversion_golden.pt",
    torch.float64: Path(__file__).parent / "data" / "inversion_golden64.pt",
}


def golden(dtype: torch.dtype = torch.float32) -> dict:
    torch.set_num_threads(2)
    model = ls.load_model("resnet10", seed=0).to(dtype)
    image = ls.load_image("chelsea", 32).to(dtype)
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
    dtype = torch.float64 if sys.argv[1:] == ["float64"] else torch.float32
    torch.save(golden(dtype), FILES[dtype])
    print("wrote", FILES[dtype])
