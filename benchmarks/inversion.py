"""Inversion speed: the seed's reference algorithm vs layerscope, same work, same process.

    python benchmarks/inversion.py [--iterations 10] [--size 224] [--device cpu]

Work: untrained ResNet-50, one image, targets conv1, layer1 … layer4, N iterations each.

(a) reference — as the seed's code does it: one layer at a time (a model cut at that layer),
    parameter gradients left on, batch 1, blur by a separate torchvision call each step,
    plain gradient step with the paper's constants;
(b) layerscope — the same constants (``preset paper``) through the engine.

Prints both times, the ratio, achieved GFLOP/s (FLOPs counted by torch's FlopCounterMode)
against the machine's measured convolution throughput, and, for the fast step rule
(``preset fast``, Adam), the time to reach the reference's own final m_g at each layer.
"""

from __future__ import annotations

import argparse
import time

import torch
import torchvision.transforms as T
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import layerscope as ls
from layerscope.inversion import InversionConfig

LAYERS = ["conv1", "layer1", "layer2", "layer3", "layer4"]


def reference_inversion(
    net: nn.Module, image: torch.Tensor, iterations: int
) -> tuple[dict[str, float], dict[str, float]]:
    """The seed's loop, one layer at a time; returns final m_g and seconds per layer."""
    children = list(net.named_children())
    out, seconds = {}, {}
    for layer in LAYERS:
        start = time.perf_counter()
        k = [n for n, _ in children].index(layer)
        cut = nn.Sequential(*[m for _, m in children[: k + 1]]).eval()
        for p in cut.parameters():
            p.requires_grad_(True)  # as in the seed's code: nothing turned off
        target = cut(image).detach()
        gen = torch.Generator().manual_seed(999)
        a = (0.7 + torch.randn(image.shape, generator=gen) / 20).to(image.device)
        for i in range(iterations):
            lr = 0.1
            sigma = 2.4 * (iterations - i) / iterations + 0.4 * i / iterations
            a = a.detach().requires_grad_(True)
            loss = 0.15 * (target - cut(a)).abs().sum()
            loss.backward()
            with torch.no_grad():
                a = a - lr * a.grad
                a = T.GaussianBlur(3, sigma)(a)
        with torch.no_grad():
            out[layer] = float((cut(a) - target).norm())
        seconds[layer] = time.perf_counter() - start
    for p in net.parameters():
        p.requires_grad_(False)
    return out, seconds


def conv_peak_gflops(device: torch.device) -> float:
    """Throughput of one large 3×3 convolution forward: the machine's practical limit."""
    conv = nn.Conv2d(256, 256, 3, padding=1, bias=False).to(device).eval()
    x = torch.randn(8, 256, 56, 56, device=device)
    flops = 2 * 8 * 256 * 256 * 9 * 56 * 56
    with torch.no_grad():
        conv(x)
        best = float("inf")
        for _ in range(3):
            if device.type == "cuda":
                torch.cuda.synchronize()  # nothing queued before the timed region
            t = time.perf_counter()
            conv(x)
            if device.type == "cuda":
                torch.cuda.synchronize()
            best = min(best, time.perf_counter() - t)
    return flops / best / 1e9


def bare_seconds(net: nn.Module, image: torch.Tensor, iterations: int) -> tuple[float, str]:
    """The hardware's own figure for the same work: per layer, the network cut at that layer
    (parameters frozen), forward + backward to the input of the same batch, nothing else —
    captured in a CUDA graph by ``torch.compile(mode="reduce-overhead")`` on CUDA (eager where
    it does not compile, and on the CPU). Returns seconds for ``iterations`` steps of all
    five layers, and how it ran."""
    children = list(net.named_children())
    how = "eager"
    fns = []
    for layer in LAYERS:
        k = [n for n, _ in children].index(layer)
        cut = nn.Sequential(*[m for _, m in children[: k + 1]]).eval().requires_grad_(False)

        def step(a, _cut=cut):
            a = a.detach().requires_grad_(True)
            (g,) = torch.autograd.grad(_cut(a).abs().sum(), a)
            return g

        if image.device.type == "cuda":
            try:
                compiled = torch.compile(step, mode="reduce-overhead")
                for _ in range(3):  # compile, record, replay
                    compiled(image)
                step, how = compiled, "torch.compile reduce-overhead (CUDA graph)"
            except Exception as exc:  # any failure means: measure it eager
                how = f"eager ({type(exc).__name__} when compiling)"
        fns.append(step)
    for f in fns:
        f(image)
    if image.device.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(iterations):
        for f in fns:
            f(image)
    if image.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t, how


def step_flops(model: ls.Model, image: torch.Tensor) -> int:
    """FLOPs of one descent step of all targets: forward to each layer + backward to the input
    (parameters frozen, so no weight gradients), as counted by torch's FlopCounterMode."""
    total = 0
    for layer in LAYERS:
        x = image.clone().requires_grad_(True)
        with FlopCounterMode(display=False) as counter:
            ls.activations(model, x, [layer])[layer].abs().sum().backward()
        total += counter.get_total_flops()
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iterations", type=int, default=10)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", default="fp32", help="layerscope's: fp32 | tf32 | bf16")
    args = ap.parse_args()
    dev = torch.device(args.device)
    n = args.iterations

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize()

    model = ls.load_model("resnet50", seed=0).to(dev)
    image = ls.load_image("chelsea", args.size).to(dev)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, device {dev}")
    print(f"work: resnet50 untrained, {args.size}px, targets {', '.join(LAYERS)}, {n} iterations")

    sync()
    t = time.perf_counter()
    ref_mg, ref_s = reference_inversion(model.net, image, n)
    sync()
    t_ref = time.perf_counter() - t

    paper = InversionConfig.preset("paper", iterations=n, record_every=n, precision=args.precision)
    ls.invert(model, image, LAYERS, config=paper, device=dev)  # warm-up (tracing, allocator)
    sync()
    t = time.perf_counter()
    res = ls.invert(model, image, LAYERS, config=paper, device=dev)
    sync()
    t_ls = time.perf_counter() - t
    t_bare, how = bare_seconds(model.net, image, n)

    # FLOPs of one iteration of all five targets (forward + input backward), as layerscope runs it
    flops_ls = step_flops(model, image)
    peak = conv_peak_gflops(dev)

    print(f"\nreference : {t_ref:7.2f} s  ({1000 * t_ref / n:6.0f} ms/iteration of 5 targets)")
    print(f"layerscope: {t_ls:7.2f} s  ({1000 * t_ls / n:6.0f} ms/iteration of 5 targets)")
    print(f"bare      : {t_bare:7.2f} s  ({1000 * t_bare / n:6.0f} ms/iteration; {how})")
    print(f"speed-up at equal iterations: {t_ref / t_ls:.2f}x the reference; layerscope runs at "
          f"{100 * t_bare / t_ls:.0f}% of the bare forward + input-backward")  # fmt: skip
    gflops = flops_ls * n / t_ls / 1e9
    print(
        f"layerscope achieved {gflops:.1f} GFLOP/s; measured conv peak {peak:.1f} GFLOP/s "
        f"({100 * gflops / peak:.0f}%)"
    )
    for t_ in res.targets:
        print(
            f"  {t_.layer:7s} final m_g  reference {ref_mg[t_.layer]:10.2f}   layerscope "
            f"{t_.final['embedding_distance']:10.2f}"
        )

    # Time to reach the reference's own final m_g with the fast rule (Adam), layer by layer.
    print("\ntime to reach the reference's final m_g (fast rule, m_g recorded every step):")
    fast = InversionConfig.preset("fast", iterations=n, record_every=1)
    for layer in LAYERS:
        t = time.perf_counter()
        tr = ls.invert(model, image, [layer], config=fast, device=dev)[layer]
        spent = time.perf_counter() - t
        hit = next(
            (r["iteration"] for r in tr.curve if r["embedding_distance"] <= ref_mg[layer]), None
        )
        if hit is None:
            print(f"  {layer:7s} not reached in {n} steps (reference {ref_s[layer]:.2f} s)")
            continue
        t_hit = spent * max(hit, 1) / n
        print(
            f"  {layer:7s} step {hit:4d}: {t_hit:6.2f} s vs reference {ref_s[layer]:6.2f} s "
            f"({ref_s[layer] / t_hit:.1f}x less time)"
        )


if __name__ == "__main__":
    main()
