"""Generation speed: class images of 16 classes from two models, batched vs one at a time.

    python benchmarks/generation.py [--classes 16] [--size 64] [--iterations 10] [--device cpu]

Work: untrained ResNet-18 and GoogLeNet (1000-way heads), classes 0..15, the ``googlenet``
preset's two octaves scaled to ``--size`` with ``--iterations`` steps each (plain gradient
steps, jitter crop in the second octave), one image per (class, model): 32 images.

(a) reference — the reference code's way: one class and one model at a time, batch 1, the
    model's parameter gradients left on, blur by a separate torchvision call each step;
(b) layerscope, one row at a time — the engine with one (class, model) per call;
(c) layerscope, batched — every class of both models in one call (one batch per model).

Prints images per minute for each and the ratios (c)/(a) and (c)/(b). Target: (c)/(a) ≥ 2×
on a 2-core CPU, ≥ 10× on a GPU.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
import torchvision.transforms as T

import layerscope as ls
from layerscope.generation import GenerationConfig, generate_classes


def reference(model: ls.Model, cls: int, cfg: GenerationConfig, device) -> torch.Tensor:
    """One class image the reference's way: octaves, jitter crop, |C − logit|, plain step."""
    for p in model.parameters():
        p.requires_grad_(True)  # as in the reference: nothing turned off
    gen = torch.Generator().manual_seed(cfg.seed)
    a = (0.7 + torch.randn(1, 3, cfg.stages[0].size, cfg.stages[0].size, generator=gen) / 20).to(
        device
    )
    jit = torch.Generator().manual_seed(1)
    for stage in cfg.stages:
        a = F.interpolate(a, size=(stage.size, stage.size), mode="bilinear")
        n = stage.iterations
        for i in range(n):
            lr = stage.lr.at(i, n)
            sigma = stage.sigma.at(i, n)
            a = a.detach().requires_grad_(True)
            x = a
            if stage.crop is not None and stage.crop < stage.size:
                oy, ox = (int(torch.randint(0, stage.size - stage.crop + 1, (1,), generator=jit))
                          for _ in range(2))  # fmt: skip
                x = a[:, :, oy : oy + stage.crop, ox : ox + stage.crop]
            loss = (200 - model(x)[0, cls]).abs()
            loss.backward()
            with torch.no_grad():
                a = a - lr * a.grad
                a = T.GaussianBlur(3, sigma)(a)
    for p in model.parameters():
        p.requires_grad_(False)
        p.grad = None
    return a.detach()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--classes", type=int, default=16)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--iterations", type=int, default=10)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    dev = torch.device(args.device)
    models = [ls.load_model(n, seed=0).to(dev) for n in ("resnet18", "googlenet")]
    cfg = GenerationConfig.preset("googlenet", size=args.size)
    cfg = GenerationConfig(
        stages=tuple(type(s)(s.size, args.iterations, s.lr, s.sigma, s.crop) for s in cfg.stages),
        step="gradient",
        record_every=args.iterations,
    )
    classes = list(range(args.classes))
    n_images = len(classes) * len(models)
    print(
        f"{n_images} images ({args.classes} classes × 2 models), octaves "
        f"{[s.size for s in cfg.stages]} px × {args.iterations} steps, device {dev}, "
        f"{torch.get_num_threads()} threads"
    )

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    # warm-up (allocators, oneDNN/cuDNN kernel choice) on every path
    generate_classes(models, classes[:2], cfg, device=dev)
    reference(models[0], 0, cfg, dev)
    sync()

    t = time.perf_counter()
    for m in models:
        for c in classes:
            reference(m, c, cfg, dev)
    sync()
    t_ref = time.perf_counter() - t

    t = time.perf_counter()
    for m in models:
        for c in classes:
            generate_classes([m], [c], cfg, device=dev)
    sync()
    t_one = time.perf_counter() - t

    t = time.perf_counter()
    generate_classes(models, classes, cfg, device=dev)
    sync()
    t_batch = time.perf_counter() - t

    def rate(s: float) -> str:
        return f"{60 * n_images / s:8.1f} images/min ({s:6.2f} s)"

    print(f"(a) reference, one class and model at a time: {rate(t_ref)}")
    print(f"(b) layerscope, one row at a time:            {rate(t_one)}")
    print(f"(c) layerscope, batched over classes, models: {rate(t_batch)}")
    print(
        f"batched vs reference: {t_ref / t_batch:.2f}×   batched vs one row: {t_one / t_batch:.2f}×"
    )


if __name__ == "__main__":
    main()
