"""D_f, G_f and R_f at every stage of ResNet-18 on photo crops: layerscope vs the
straightforward way, same images, same process.

    python benchmarks/sensitivity.py [--n 500] [--size 64] [--batch 50]

(a) straightforward: each image deformed on its own (one sampler call per image), then one
forward per layer for the clean, deformed and noisy images (the way a per-layer script
with a feature extractor per layer does it); (b) layerscope's ``measure``: the batch's fields
drawn at once, clean + deformed + noisy copies in one truncated forward for all layers, each
layer reduced to its sums as it runs. Prints both times and their ratio, that both give the
same D_f (different random draws: they agree within the error bars), and layerscope's peak
resident memory above its start at n and n/2 (sampled every 5 ms): it must not grow with n.
"""

from __future__ import annotations

import argparse

import torch

import layerscope as ls
from _memory import peak
from layerscope.data import load_dataset
from layerscope.layers import default_layers, read_unchecked
from layerscope.sensitivity import RandomDiffeo, matched_noise, measure


def straightforward(model, images, layers, batch: int, truncate: bool = True) -> dict[str, float]:
    """One image at a time through the sampler; one forward per layer and perturbation,
    truncated after the layer (``truncate``, as a per-layer feature extractor does) or the
    whole network with a hook on that layer."""
    gen, noise_gen = torch.Generator().manual_seed(0), torch.Generator().manual_seed(1)
    rd = RandomDiffeo(displacement=1.0, cut=3, generator=gen)
    num = {layer: 0.0 for layer in layers}
    with torch.no_grad():
        for x in images.split(batch):
            deformed = torch.cat([rd(img[None]) for img in x])
            noisy = x + matched_noise(x, deformed, noise_gen)
            for layer in layers:
                grab = (lambda z, _l=layer: read_unchecked(model, z, [_l])[_l]) if truncate else (
                    lambda z, _l=layer: _hooked(model, z, _l)
                )  # fmt: skip
                f0, fd = grab(x).flatten(1), grab(deformed).flatten(1)
                grab(noisy)  # G_f's forward, same cost
                num[layer] += float((fd - f0).pow(2).sum())
    return {layer: num[layer] / len(images) for layer in layers}


def _hooked(model, x, layer: str) -> torch.Tensor:
    """The whole forward, the layer's output kept by a hook."""
    out = {}
    handle = model.net.get_submodule(layer).register_forward_hook(
        lambda _m, _i, o: out.setdefault("o", o.clone())
    )
    try:
        model(x)
    finally:
        handle.remove()
    return out["o"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=50)
    args = parser.parse_args()
    data = load_dataset("photos", "test", args.size, 0)
    args.n = min(args.n, len(data))  # the photos test split holds 600 crops
    images = torch.stack([data[i][0] for i in range(args.n)])
    model = ls.load_model("resnet18", seed=0)
    layers = default_layers(model)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, cpu")
    print(f"work: resnet18 untrained, {args.n} photo crops at {args.size} px, batch "
          f"{args.batch}, layers {', '.join(layers)} + output, δ = 1 px, c = 3")  # fmt: skip

    def ours(n):
        rd = RandomDiffeo(displacement=1.0, cut=3, generator=torch.Generator().manual_seed(0))
        return measure(model, images[:n], layers, rd, batch_size=args.batch, bootstrap=200)

    def bare():
        with torch.no_grad():
            for x in images.split(args.batch):
                model(torch.cat([x, x, x]))

    measure(model, images[:4], layers, batch_size=4)  # warm-up (FX, probes)
    _, _, mem_half = peak(lambda: ours(args.n // 2))
    rows, t_ours, mem = peak(lambda: ours(args.n))
    _, t_bare, _ = peak(bare)
    naive, t_naive, mem_naive = peak(lambda: straightforward(model, images, layers, args.batch))
    _, t_full, _ = peak(lambda: straightforward(model, images, layers, args.batch, False))
    print(f"bare forwards of the 3 copies (the floor): {t_bare:7.2f} s")
    print(f"straightforward, whole forward per layer: {t_full:7.2f} s "
          f"(layerscope {t_full / t_ours:.2f}x faster)")  # fmt: skip
    print(f"straightforward, truncated per layer: {t_naive:7.2f} s   peak +{mem_naive:.0f} MB")
    print(f"layerscope     : {t_ours:7.2f} s   peak +{mem:.0f} MB "
          f"(+{mem_half:.0f} MB at n = {args.n // 2})")  # fmt: skip
    print(f"speed-up: {t_naive / t_ours:.2f}x; layerscope = {t_ours / t_bare:.2f}x the floor")
    print("numerator E‖f(τx) − f(x)‖² (independent draws; layerscope ± bootstrap error):")
    for r in rows:
        if r["layer"] in naive:
            num, err = r["D"] * r["denominator"], r["D_err"] * r["denominator"]
            print(f"  {r['layer']:8s} straightforward {naive[r['layer']]:10.4g}   "
                  f"layerscope {num:10.4g} ± {err:.2g}")  # fmt: skip


if __name__ == "__main__":
    main()
