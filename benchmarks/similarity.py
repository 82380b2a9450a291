"""All-pairs minibatch linear CKA between every conv layer of ResNet-18 and of ResNet-34.

    python benchmarks/similarity.py [--n 2000] [--size 64] [--batch 64]

Same images, each contender in a fresh process (so that peak memory is its own): (a) the bare
forward passes of both models (the floor), (b) layerscope (one truncated forward per model and
batch; each layer's Gram matrix formed as the layer runs, so no activation is kept; all layer
pairs from one matrix product), (c) torch-cka (a Gram matrix per layer pair). Prints times,
ratios, the peak resident memory above the level before each contender started (sampled every
5 ms: it must not grow with n), and the largest difference between the two CKA matrices.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import layerscope as ls
from layerscope.similarity import CKAMatrix


def conv_layers(model: ls.Model) -> list[str]:
    return [n for n, m in model.net.named_modules() if isinstance(m, nn.Conv2d)]


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1024**2


class PeakRSS:
    """Peak resident memory above the level at entry, sampled by a thread."""

    def __enter__(self) -> PeakRSS:
        self.base = self.peak = rss_mb()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, rss_mb())

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.growth = max(self.peak, rss_mb()) - self.base


def part(which: str, n: int, size: int, batch: int, out: Path) -> None:
    """One contender in this (fresh) process: warm-up batch, then the timed run under PeakRSS."""
    a, b = ls.load_model("resnet18", seed=0), ls.load_model("resnet34", seed=1)
    la, lb = conv_layers(a), conv_layers(b)
    images = torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(0))
    batches = images.split(batch)
    result = None
    with torch.no_grad():
        a(batches[0])
        b(batches[0])  # warm-up: the allocator and the kernels, for every contender alike
    if which == "peer":
        from torch_cka import CKA

        loader = DataLoader(TensorDataset(images, torch.zeros(n)), batch_size=batch)
        with PeakRSS() as mem, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t = time.perf_counter()
            peer = CKA(a.net, b.net, model1_layers=la, model2_layers=lb, device="cpu")
            peer.compare(loader)
            seconds = time.perf_counter() - t
        result = peer.export()["CKA"].double().numpy()
    else:
        with torch.no_grad(), PeakRSS() as mem:
            t = time.perf_counter()
            if which == "bare":
                for x in batches:
                    a(x)
                    b(x)
            else:
                acc = CKAMatrix(len(la), len(lb))

                def grams(_name, t):  # each layer's Gram terms as it runs: no activation kept
                    return acc.prepare(t.flatten(1))

                for x in batches:
                    fa = ls.activations(a, x, la, transform=grams)
                    fb = ls.activations(b, x, lb, transform=grams)
                    acc.update([fa[k] for k in la], [fb[k] for k in lb])
                result = acc.compute()
            seconds = time.perf_counter() - t
    if result is not None:
        np.save(out / f"{which}.npy", result)
    (out / f"{which}.json").write_text(
        json.dumps({"seconds": seconds, "rss": mem.growth, "layers": [len(la), len(lb)]})
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--part", choices=["bare", "ours", "peer"], help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.part:
        part(args.part, args.n, args.size, args.batch, args.out)
        return
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    res = {}
    with tempfile.TemporaryDirectory() as tmp:
        for which in ("bare", "ours", "peer"):  # each in a fresh process: honest peak memory
            cmd = [sys.executable, __file__, "--part", which, "--out", tmp]
            cmd += ["--n", str(args.n), "--size", str(args.size), "--batch", str(args.batch)]
            subprocess.run(cmd, check=True, stderr=subprocess.DEVNULL)
            res[which] = json.loads((Path(tmp) / f"{which}.json").read_text())
        ours, theirs = np.load(Path(tmp) / "ours.npy"), np.load(Path(tmp) / "peer.npy")
    n_a, n_b = res["bare"]["layers"]
    print(f"{n_a} × {n_b} conv layers, {args.n} images at {args.size} px, batch {args.batch}")
    t_bare, t_ours, t_peer = (res[k]["seconds"] for k in ("bare", "ours", "peer"))
    print(f"bare forwards : {t_bare:7.2f} s  (peak RSS +{res['bare']['rss']:.0f} MB)")
    print(f"layerscope    : {t_ours:7.2f} s  ({t_ours / t_bare:.2f}× the bare forwards; "
          f"peak RSS +{res['ours']['rss']:.0f} MB)")  # fmt: skip
    print(f"torch-cka     : {t_peer:7.2f} s  (layerscope is {t_peer / t_ours:.2f}× faster; "
          f"peak RSS +{res['peer']['rss']:.0f} MB)")  # fmt: skip
    print(f"(the {args.n} images themselves: {args.n * 3 * args.size**2 * 4 / 1024**2:.0f} MB)")
    print(
        f"max |CKA difference| vs torch-cka: {abs(ours - theirs).max():.2e} "
        "(torch-cka accumulates in float32)"
    )


if __name__ == "__main__":
    main()
