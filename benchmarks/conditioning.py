"""Top-k singular values of ResNet-18 layer3's input Jacobian at one image: matrix-free
(Lanczos on Jacobian-vector / vector-Jacobian products) vs the materialised Jacobian
(``torch.autograd.functional.jacobian`` + SVD), same process.

    python benchmarks/conditioning.py [--sizes 32,48] [--k 10]

Prints, per input size, the time and peak resident memory above the start (sampled every
5 ms) of both, that their top-k values agree, and the largest input side whose materialised
Jacobian fits in 8 GB (m·n float64 entries, growing as side⁴); the matrix-free method needs
only one forward and backward's memory.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

import layerscope as ls
from _memory import peak
from layerscope.invertibility import jacobian_spectrum
from layerscope.layers import read_unchecked


def materialised(model, image, k: int) -> np.ndarray:
    """The whole Jacobian by torch.autograd.functional.jacobian, then its singular values."""
    model = model.double()
    x = image.double()

    def f(z):
        return read_unchecked(model, z, ["layer3"])["layer3"].flatten()

    jac = torch.autograd.functional.jacobian(f, x).reshape(-1, x.numel())
    out = torch.linalg.svdvals(jac)[:k].numpy()
    model.float()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="32,48")
    parser.add_argument("--k", type=int, default=10)
    args = parser.parse_args()
    model = ls.load_model("resnet18", seed=0)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, cpu; resnet18 "
          f"untrained, layer3, top {args.k}, float64")  # fmt: skip
    jacobian_spectrum(model, ls.load_image("chelsea", 16), "layer3", k=3, method="lanczos")
    mem = {}
    for size in (int(s) for s in args.sizes.split(",")):
        image = ls.load_image("chelsea", size)
        free, t_free, m_free = peak(
            lambda image=image: jacobian_spectrum(
                model, image, "layer3", k=args.k, method="lanczos"
            )
        )
        dense, t_dense, m_dense = peak(lambda image=image: materialised(model, image, args.k))
        agree = float(np.abs(free["sigma"] - dense).max() / dense[0])
        print(f"{size:4d} px: m × n = {free['m']} × {free['n']}; matrix-free {t_free:6.2f} s "
              f"peak +{m_free:6.0f} MB; materialised {t_dense:6.2f} s peak +{m_dense:6.0f} MB; "
              f"top-{args.k} agree to {agree:.1e}")  # fmt: skip
        mem[size] = (m_free, m_dense, free["m"] * free["n"])
    # the dense Jacobian alone needs m·n float64 entries, and m·n grows as side⁴
    s1 = max(mem)
    entries = mem[s1][2]
    dense_side = s1 * (8 * 2**30 / (8 * entries)) ** 0.25
    print(f"largest side in 8 GB: materialised ≈ {dense_side:.0f} px (its m·n float64 entries "
          f"alone); matrix-free: the memory of one forward and backward at that side "
          f"(measured above), so any side whose activations fit")  # fmt: skip


if __name__ == "__main__":
    main()
