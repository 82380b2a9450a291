"""All-pairs minibatch linear CKA between every conv layer of ResNet-18 and of ResNet-34.

    python benchmarks/similarity.py [--n 256] [--size 64] [--batch 64]

Same images, one process: (a) the bare forward passes of both models (the floor), (b)
layerscope (one truncated forward per model and batch capturing every layer, CKAMatrix:
each Gram matrix once per batch), (c) torch-cka (a Gram matrix per layer pair). Prints times,
ratios, peak resident memory growth, and the largest difference between the two CKA matrices.
"""

from __future__ import annotations

import argparse
import resource
import time
import warnings

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import layerscope as ls
from layerscope.similarity import CKAMatrix


def conv_layers(model: ls.Model) -> list[str]:
    return [n for n, m in model.net.named_modules() if isinstance(m, nn.Conv2d)]


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batch", type=int, default=64)
    args = ap.parse_args()
    a, b = ls.load_model("resnet18", seed=0), ls.load_model("resnet34", seed=1)
    la, lb = conv_layers(a), conv_layers(b)
    images = torch.rand(args.n, 3, args.size, args.size, generator=torch.Generator().manual_seed(0))
    batches = images.split(args.batch)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    print(
        f"{len(la)} × {len(lb)} conv layers, {args.n} images at {args.size} px, batch {args.batch}"
    )

    with torch.no_grad():
        a(batches[0])
        b(batches[0])  # warm-up
        t = time.perf_counter()
        for x in batches:
            a(x)
            b(x)
        t_bare = time.perf_counter() - t

        rss0 = rss_mb()
        t = time.perf_counter()
        acc = CKAMatrix(len(la), len(lb))
        for x in batches:
            fa, fb = ls.activations(a, x, la), ls.activations(b, x, lb)
            acc.update([fa[n].flatten(1) for n in la], [fb[n].flatten(1) for n in lb])
        ours = acc.compute()
        t_ours = time.perf_counter() - t
        rss_ours = rss_mb() - rss0

    from torch_cka import CKA

    loader = DataLoader(TensorDataset(images, torch.zeros(args.n)), batch_size=args.batch)
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        peer = CKA(a.net, b.net, model1_layers=la, model2_layers=lb, device="cpu")
        peer.compare(loader)
    t_peer = time.perf_counter() - t
    theirs = peer.export()["CKA"].double().numpy()

    print(f"bare forwards : {t_bare:7.2f} s")
    print(f"layerscope    : {t_ours:7.2f} s  ({t_ours / t_bare:.2f}× the bare forwards; "
          f"peak RSS growth {rss_ours:.0f} MB)")  # fmt: skip
    print(f"torch-cka     : {t_peer:7.2f} s  (layerscope is {t_peer / t_ours:.2f}× faster)")
    print(
        f"max |CKA difference| vs torch-cka: {abs(ours - theirs).max():.2e} "
        "(torch-cka accumulates in float32)"
    )


if __name__ == "__main__":
    main()
