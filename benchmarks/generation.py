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

    python benchmarks/generation.py --figure [--steps 256] [--classes-figure 6]

The figure comparison, on the real nets: class images of six ImageNet classes (Egyptian cat,
espresso, goldfish, volcano, daisy, tractor) from EfficientNet-Lite0 by layerscope's
``default`` and ``figure`` presets and, when it imports, by the peer torch-lucent 0.1.8
(its defaults: Fourier parameterisation, decorrelated colour, its transforms, Adam 0.05, the
128-pixel image upsampled to 224 before the net; at its 512 steps and at ``--steps``), each
image scored by two real nets that never made it (Lite1, Lite2) at the image's own size and
upsampled to 224 px, with the wall time and the luminance RMS contrast. Lucent 0.1.8 pins
kornia ≤ 0.4.1; with a current kornia it needs two shims, set here
(``kornia.get_rotation_matrix2d`` and ``kornia.warp_affine`` from ``kornia.geometry``).
Install it beside layerscope with ``pip install --no-deps torch-lucent==0.1.8 kornia
decorator``; without it the lucent rows are skipped with one line.
"""

from __future__ import annotations

import argparse
import platform
import time
from dataclasses import replace

import torch
import torch.nn.functional as F
import torchvision.transforms as T

import layerscope as ls
from layerscope.generation import GenerationConfig, generate_classes
from layerscope.metrics import luminance_contrast


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


#: Egyptian cat, espresso, goldfish, volcano, daisy, tractor
FIGURE_CLASSES = (285, 967, 1, 980, 985, 866)


def _cpu() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _scores(images: torch.Tensor, classes, judges) -> dict:
    """Mean p(class) and hits (top-1 = class) by every judge, at the images' size and at 224."""
    out = {}
    big = F.interpolate(images, size=(224, 224), mode="bilinear", align_corners=False)
    for tag, x in (("own", images), ("224", big)):
        ps, hits = [], 0
        for j in judges:
            with torch.no_grad():
                p = j(x).softmax(1)
            for k, c in enumerate(classes):
                ps.append(float(p[k, c]))
                hits += int(p[k].argmax()) == c
        out[tag] = (sum(ps) / len(ps), hits)
    return out


def _lucent_modules():
    """lucent's ``objectives, param, render`` with the kornia shims set, or None (one line
    says why)."""
    try:
        import kornia
        import kornia.geometry.transform as kt

        kornia.get_rotation_matrix2d = getattr(
            kornia, "get_rotation_matrix2d", kt.get_rotation_matrix2d
        )
        kornia.warp_affine = getattr(kornia, "warp_affine", kt.warp_affine)
        from lucent.optvis import objectives, param, render
    except Exception as exc:  # not installed, or it does not import here
        print(f"lucent: skipped ({type(exc).__name__}: {str(exc)[:80]})")
        return None
    return objectives, param, render


def _lucent(lucent, model, classes, steps: int, seed: int = 0) -> torch.Tensor:
    objectives, param, render = lucent
    import numpy as np

    out = []
    for c in classes:  # lucent renders one image per call
        np.random.seed(seed)
        torch.manual_seed(seed)
        obj = objectives.Objective(lambda hook, c=c: -hook("labels")[:, c].mean())
        (img,) = render.render_vis(
            model, obj, param_f=lambda: param.image(128), thresholds=(steps,),
            preprocess=False, progress=False, show_image=False,
        )  # fmt: skip
        out.append(torch.from_numpy(img).permute(0, 3, 1, 2).float())
    return torch.cat(out)


def figure(args) -> None:
    """layerscope's presets against lucent on the real nets (see the module's docstring)."""
    torch.manual_seed(0)
    classes = list(FIGURE_CLASSES[: args.classes_figure])
    maker = ls.load_model("efficientnet_lite0", "imagenet").eval()
    judges = [
        ls.load_model(n, "imagenet").eval() for n in ("efficientnet_lite1", "efficientnet_lite2")
    ]
    print(f"CPU: {_cpu()}, {torch.get_num_threads()} threads; torch {torch.__version__}")
    print(f"{len(classes)} classes from efficientnet_lite0 (ImageNet); judged by lite1 and lite2 "
          f"({2 * len(classes)} judgements per row)")  # fmt: skip
    rows = []

    def ours(name: str, steps: int | None):
        cfg = GenerationConfig.preset(name)
        if steps is not None:  # the budget split over the octaves
            per = max(1, steps // len(cfg.stages))
            cfg = replace(cfg, stages=tuple(replace(s, iterations=per) for s in cfg.stages))
        t = time.perf_counter()
        made = generate_classes([maker], classes, cfg, device="cpu")
        wall = time.perf_counter() - t
        return torch.cat([g.image for g in made]), wall, cfg.iterations

    runs = [
        ("layerscope default", lambda: ours("default", None)),
        ("layerscope figure", lambda: ours("figure", None)),
    ]
    if args.steps != GenerationConfig.preset("figure").iterations:
        runs.append((f"layerscope figure, {args.steps} steps", lambda: ours("figure", args.steps)))
    lucent = _lucent_modules()
    for label, steps in (("lucent defaults", 512), (f"lucent, {args.steps} steps", args.steps)):

        def luc(steps=steps):
            t = time.perf_counter()
            x = _lucent(lucent, maker, classes, steps)
            return x, time.perf_counter() - t, steps

        if lucent is not None:
            runs.append((label, luc))
    for label, fn in runs:
        x, wall, steps = fn()
        s = _scores(x, classes, judges)
        rows.append((label, steps, wall, s, float(luminance_contrast(x).mean()), x.shape[-1]))
        print(f"  {label}: {wall:.1f} s", flush=True)
    n = 2 * len(classes)
    print(f"\n| tool | steps | px | wall ({len(classes)} classes) | p(class), own size | hits /{n} "
          f"| p(class) at 224 px | hits /{n} | luminance contrast |")  # fmt: skip
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for label, steps, wall, s, con, px in rows:
        print(f"| {label} | {steps} | {px} | {wall:.1f} s | {s['own'][0]:.2f} | {s['own'][1]} "
              f"| {s['224'][0]:.2f} | {s['224'][1]} | {con:.2f} |")  # fmt: skip
    fig = next((r for r in rows if r[0].startswith("layerscope figure") and r[1] == args.steps),
               None)  # fmt: skip
    peer = next((r for r in rows if r[0] == f"lucent, {args.steps} steps"), None)
    if fig and peer:
        print(f"\nfigure vs lucent at {args.steps} steps: {peer[2] / fig[2]:.2f}× faster; p(class) "
              f"at 224 px {fig[3]['224'][0]:.2f} vs {peer[3]['224'][0]:.2f}; contrast "
              f"{fig[4]:.2f} vs {peer[4]:.2f}")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--classes", type=int, default=16)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--iterations", type=int, default=10)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--figure", action="store_true", help="the figure comparison with lucent")
    ap.add_argument("--steps", type=int, default=256, help="--figure: the equal step budget")
    ap.add_argument("--classes-figure", type=int, default=6, help="--figure: how many classes")
    args = ap.parse_args()
    if args.figure:
        figure(args)
        return
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
