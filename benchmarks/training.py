"""Training speed: layerscope's training loop vs a bare loop on the same batches, and the data
pipeline alone, in one process.

    python benchmarks/training.py [--batches 6] [--device cpu]

For ResNet-18 at 64 px (batch 32) and ResNet-50 at 224 px (batch 8): images per second of
(a) a bare ``loss = CE(net(x), y); loss.backward(); opt.step()`` loop and (b)
``layerscope.training.train_epoch`` on the same cached batches, alternated and best-of-3; the
loop's overhead must stay under 10%. On CUDA the same again at the card's pace: (c) a bare
bf16-autocast + channels_last loop (the hardware's own figure) and (d) ``train_epoch`` with
``precision="bf16"`` on a channels_last net (target: (d) ≥ 70% of (c)). Then the data sets
alone (photos crops, noise images) through a DataLoader: images per second, which must stay
far above the model's.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

import layerscope as ls
from layerscope.data import load_dataset
from layerscope.training import train_epoch


def bare_epoch(net, opt, batches, precision: str = "fp32") -> None:
    for x, y in batches:
        if precision == "bf16":
            x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device_type=x.device.type, dtype=torch.bfloat16):
                loss = F.cross_entropy(net(x).float(), y)
        else:
            loss = F.cross_entropy(net(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


def model_rates(
    name: str, size: int, batch: int, n_batches: int, device, precision: str = "fp32"
) -> tuple[float, float]:
    model = ls.load_model(name, num_classes=10).to(device)
    if precision == "bf16":
        model.net.to(memory_format=torch.channels_last)
        torch.backends.cudnn.benchmark = device.type == "cuda"
    net = model.net
    net.train()
    net.requires_grad_(True)
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
    gen = torch.Generator().manual_seed(0)
    batches = [
        (torch.rand(batch, 3, size, size, generator=gen).to(device),
         torch.randint(0, 10, (batch,), generator=gen).to(device))
        for _ in range(n_batches)
    ]  # fmt: skip
    images = batch * n_batches
    bare_epoch(net, opt, batches[:2], precision)  # warm-up (and cuDNN's kernel search)
    train_epoch(model, opt, batches[:2], device, precision=precision)
    best_bare = best_loop = float("inf")
    for _ in range(3):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        bare_epoch(net, opt, batches, precision)
        if device.type == "cuda":
            torch.cuda.synchronize()
        best_bare = min(best_bare, time.perf_counter() - t)
        t = time.perf_counter()
        train_epoch(model, opt, batches, device, precision=precision)
        if device.type == "cuda":
            torch.cuda.synchronize()
        best_loop = min(best_loop, time.perf_counter() - t)
    return images / best_bare, images / best_loop


def data_rate(name: str, size: int, n: int, **params) -> float:
    dataset = load_dataset(name, "train", size, **params)
    loader = DataLoader(dataset, batch_size=64, shuffle=True)
    t = time.perf_counter()
    seen = 0
    for x, _ in loader:
        seen += len(x)
        if seen >= n:
            break
    return seen / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, default=6)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    dev = torch.device(args.device)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, device {dev}")
    cases = [("resnet18", 64, 32), ("resnet50", 224, 8)]
    if dev.type == "cuda":  # the seed's noise recipe: ResNet-50, 224 px, batch 128
        cases.append(("resnet50", 224, 128))
    for name, size, batch in cases:
        bare, loop = model_rates(name, size, batch, args.batches, dev)
        print(
            f"{name} {size}px batch {batch}: bare {bare:7.1f} img/s, layerscope loop "
            f"{loop:7.1f} img/s, overhead {100 * (bare / loop - 1):+.1f}%"
        )
        if dev.type == "cuda":
            bare16, loop16 = model_rates(name, size, batch, args.batches, dev, "bf16")
            print(
                f"  bf16 + channels_last: bare {bare16:7.1f} img/s (the card's figure), "
                f"layerscope {loop16:7.1f} img/s = {100 * loop16 / bare16:.0f}% of it"
            )
    photos = data_rate("photos", 64, 1024)
    noise64 = data_rate("noise", 64, 1024, length=2048)
    noise224 = data_rate("noise", 224, 512, length=1024)
    print(f"data alone: photos 64px {photos:7.0f} img/s, noise 64px {noise64:7.0f} img/s, "
          f"noise 224px {noise224:7.0f} img/s")  # fmt: skip


if __name__ == "__main__":
    main()
