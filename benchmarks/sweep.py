"""A local sweep's overhead against the same runs made by hand, in one run of this script.

    python benchmarks/sweep.py [--cells 4] [--iterations 150] [--cpus-per-cell 1]

By hand: each cell's ``layerscope depth`` command, one after another (each a fresh process
using every core, as a user would type them). Sweep: ``layerscope sweep`` of the same cells
(a local Ray started and stopped inside the command; each cell one task with
``--cpus-per-cell`` CPUs and as many PyTorch threads). Prints both wall times, the ratio
sweep / by hand (target ≤ 1.10 on 2 cores for cells of ~20 s) and the largest relative gap between
the cells' final m_g and the hand-made runs' (the same runs, not merely the same count; the
thread counts differ, so the last bits may). Run it alone: two
PyTorch processes each using every core slow each other 4–20×.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from layerscope.tables import read_csv

IMAGES = ["chelsea", "coffee", "rocket", "astronaut", "camera", "brick", "moon", "horse"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cells", type=int, default=4)
    ap.add_argument("--iterations", type=int, default=150)
    ap.add_argument("--size", type=int, default=96)
    ap.add_argument("--cpus-per-cell", type=float, default=1.0)
    args = ap.parse_args()
    exe = str(Path(sys.executable).with_name("layerscope"))
    base = ["--model", "resnet18", "--weights", "none", "--layers", "conv1,layer2,layer4",
            "--size", str(args.size), "--iterations", str(args.iterations)]  # fmt: skip
    images = IMAGES[: args.cells]
    root = Path(tempfile.mkdtemp(prefix="sweep-bench-"))
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0")
    try:
        start = time.perf_counter()
        for image in images:
            subprocess.run([exe, "depth", *base, "--image", image, "--out",
                            str(root / "hand" / image)], check=True, capture_output=True,
                           env=env)  # fmt: skip
        hand = time.perf_counter() - start
        grid = root / "grid.toml"
        grid.write_text(
            'study = "depth"\n[config]\nmodel = "resnet18"\nweights = "none"\n'
            f'layers = "conv1,layer2,layer4"\nsize = {args.size}\n'
            f"iterations = {args.iterations}\n[axes]\nimage = {images!r}\n".replace("'", '"')
        )
        start = time.perf_counter()
        subprocess.run([exe, "sweep", str(grid), "--out", str(root / "sweep"),
                        "--cpus-per-cell", str(args.cpus_per_cell)], check=True,
                       capture_output=True, env=env)  # fmt: skip
        swept = time.perf_counter() - start
        rows = {r["image"]: r for r in read_csv(root / "sweep" / "sweep.csv")}
        gaps = [
            abs(a["embedding_distance"] - b["embedding_distance"]) / abs(b["embedding_distance"])
            for i in images
            for a, b in zip(read_csv(Path(rows[i]["run"]) / "summary.csv"),
                            read_csv(root / "hand" / i / "summary.csv"), strict=True)
        ]  # fmt: skip
        print(f"{args.cells} depth cells (ResNet-18, {args.size} px, {args.iterations} steps, 3 "
              f"layers) on {os.cpu_count()} CPUs")  # fmt: skip
        print(f"by hand, one after another : {hand:7.1f} s ({hand / args.cells:.1f} s a cell)")
        print(f"sweep, {args.cpus_per_cell:g} CPU(s) a cell    : {swept:7.1f} s")
        print(f"ratio sweep / by hand      : {swept / hand:7.3f}  (target ≤ 1.10)")
        print(
            f"m_g of the cells against the hand-made runs: largest relative gap "
            f"{max(gaps):.2e} (threads differ: {args.cpus_per_cell:g} a cell, every core by "
            "hand)"
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
