"""Does the default descent lose ground late in its schedule? (issue 19)

For untrained ResNet-18 and ResNet-50, every stage, a photo of the built-in set, at each
size and number of steps: the last recorded m_g against the best recorded m_g (a ratio of 1
means the descent ended at its best), and whether conv1 ends as a near copy (m_g < m_r and
m_i < ‖a′ − a‖, as the seed's IV-1/IV-2 expect of early layers). Both blur strengths run in
the same process: ``fixed`` (the seeds' blur after every step: the rule before issue 19) is
the baseline, ``step`` (the blur weighted by ε_i/ε_0: the default now).

    python benchmarks/descent_quality.py [--models resnet18,resnet50] [--sizes 64,128,224]
                                         [--steps 100,150,300] [--csv out.csv]

Prints one row per (model, size, steps, strength): the worst final/best ratio over the
stages and the stage it is at, conv1's verdict, the deepest stage's m_i (the headline: m_i
rises with depth) and the seconds taken; then, per strength, how many cells end within 10%
of their best at every stage.
"""

from __future__ import annotations

import argparse
import csv
import time

import torch

import layerscope as ls

PHOTOS = ("astronaut", "coffee", "chelsea")


def cell(model, image, steps: int, strength: str) -> dict:
    t0 = time.perf_counter()
    result = ls.invert(model, image, "all", iterations=steps, record_every=10,
                       blur=ls.GaussianBlur(strength=strength), device="cpu")  # fmt: skip
    seconds = time.perf_counter() - t0
    ratios = {t.layer: t.final["embedding_distance"] / t.best["embedding_distance"]
              for t in result.targets}  # fmt: skip
    worst = max(ratios, key=ratios.get)
    first, last = result.targets[0], result.targets[-1]
    return {
        "worst_ratio": ratios[worst],
        "worst_stage": worst,
        "stages_within_10pct": sum(r <= 1.10 for r in ratios.values()),
        "stages": len(ratios),
        "first_stage": first.layer,
        "first_m_g": first.final["embedding_distance"],
        "first_m_r": first.final["reference_distance"],
        "first_m_i": first.final["input_distance"],
        "a_prime_minus_a": first.final["reference_input_distance"],
        "near_copy": first.final["embedding_distance"] < first.final["reference_distance"]
        and first.final["input_distance"] < first.final["reference_input_distance"],
        "mg_below_mr_everywhere": all(
            t.final["embedding_distance"] < t.final["reference_distance"] for t in result.targets
        ),
        "deepest_m_i": last.final["input_distance"],
        "m_i_by_stage": " ".join(f"{t.final['input_distance']:.1f}" for t in result.targets),
        "seconds": seconds,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="resnet18,resnet50")
    ap.add_argument("--sizes", default="64,128,224")
    ap.add_argument("--steps", default="100,150,300")
    ap.add_argument("--strengths", default="fixed,step")
    ap.add_argument("--csv", default=None)
    args = ap.parse_args()
    torch.manual_seed(0)
    rows = []
    head = (f"{'model':9} {'size':>4} {'steps':>5} {'blur':>5}  {'final/best':>10} "
            f"{'at':>8}  {'conv1 m_g/m_r/m_i/‖a′−a‖':>26} {'copy':>4} {'all<m_r':>7} "
            f"{'m_i by stage':>34} {'s':>6}")  # fmt: skip
    print(head)
    for name in args.models.split(","):
        model = ls.load_model(name, seed=0)
        for k, size in enumerate(int(s) for s in args.sizes.split(",")):
            image = ls.load_image(PHOTOS[k % len(PHOTOS)], size)
            for steps in (int(s) for s in args.steps.split(",")):
                for strength in args.strengths.split(","):
                    r = {"model": name, "size": size, "steps": steps, "strength": strength}
                    r |= cell(model, image, steps, strength)
                    rows.append(r)
                    conv1 = (f"{r['first_m_g']:.2f}/{r['first_m_r']:.2f}/{r['first_m_i']:.2f}/"
                             f"{r['a_prime_minus_a']:.1f}")  # fmt: skip
                    copy = "yes" if r["near_copy"] else "no"
                    below = "yes" if r["mg_below_mr_everywhere"] else "no"
                    print(f"{name:9} {size:4} {steps:5} {strength:>5}  {r['worst_ratio']:10.3f} "
                          f"{r['worst_stage']:>8}  {conv1:>26} {copy:>4} {below:>7} "
                          f"{r['m_i_by_stage']:>34} {r['seconds']:6.1f}", flush=True)  # fmt: skip
    for strength in args.strengths.split(","):
        mine = [r for r in rows if r["strength"] == strength]
        ok = sum(r["worst_ratio"] <= 1.10 for r in mine)
        copies = sum(r["near_copy"] for r in mine)
        print(f"blur {strength}: {ok}/{len(mine)} cells end within 10% of their best m_g at "
              f"every stage; conv1 a near copy in {copies}/{len(mine)}")  # fmt: skip
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)


if __name__ == "__main__":
    main()
