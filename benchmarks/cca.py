"""CCA, SVCCA and PWCCA on large activation matrices: layerscope vs cca-zoo and repsim.

    python benchmarks/cca.py [--n 10000] [--p 2048] [--repsim-large]

Same float64 arrays for everyone, one process, seeded: X (n×p) Gaussian and Y (n×p) a noisy
linear map of three quarters of X's features. Two sizes:

- small, 2,000 × 256: layerscope, cca-zoo (``CCA(n_components=p).score``: mean canonical
  correlation) and repsim (C++; ``cca(…, "pillai")`` is the mean canonical correlation,
  ``pwcca`` the symmetric mean of both sides' weights, ``svcca`` its own 99% rule);
- large, n × p (default 10,000 × 2,048): layerscope and cca-zoo. repsim took over 14 minutes
  for one CCA at this size on the 2-core CPU, so it runs there only with ``--repsim-large``.

Prints seconds, the ratio peer / layerscope, and each value, so agreement is visible.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import torch

from layerscope.similarity import cca, pwcca, svcca


def arrays(n: int, p: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, p))
    k = p * 3 // 4
    y = x[:, :k] @ rng.standard_normal((k, p)) / np.sqrt(k) + rng.standard_normal((n, p))
    return x, y


def timed(fn) -> tuple[float, float]:
    t = time.perf_counter()
    value = float(fn())
    return value, time.perf_counter() - t


def compare(n: int, p: int, repsim_ok: bool) -> None:
    x, y = arrays(n, p)
    print(f"\n{n:,} × {p:,} (float64)")
    ours = {
        "cca": timed(lambda: cca(x, y).mean),
        "svcca": timed(lambda: svcca(x, y, keep=0.99).mean),
        "pwcca (x)": timed(lambda: pwcca(x, y)),
        "pwcca (mean)": timed(lambda: pwcca(x, y, weights="mean")),
    }
    peers: dict[str, dict[str, tuple[float, float]]] = {}
    from cca_zoo.linear import CCA

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        peers["cca-zoo"] = {"cca": timed(lambda: CCA(n_components=p).fit((x, y)).score((x, y)))}
    if repsim_ok:
        import repsim

        peers["repsim"] = {
            "cca": timed(lambda: repsim.cca([x, y], "pillai")[0, 1]),
            "svcca": timed(lambda: repsim.svcca([x, y], "pillai")[0, 1]),
            "pwcca (mean)": timed(lambda: repsim.pwcca([x, y])[0, 1]),
        }
    for measure, (value, secs) in ours.items():
        line = f"  {measure:13s} layerscope {secs:7.2f} s  value {value:.6f}"
        for peer, results in peers.items():
            if measure in results:
                pv, ps = results[measure]
                line += f" | {peer} {ps:7.2f} s ({ps / secs:5.1f}× ours)  value {pv:.6f}"
        print(line)
    if not repsim_ok:
        print("  repsim skipped at this size (over 14 min per CCA here; --repsim-large runs it)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--p", type=int, default=2_048)
    ap.add_argument("--repsim-large", action="store_true")
    args = ap.parse_args()
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    print("svcca: layerscope keeps 99% of the variance (Σs² share); repsim uses its own rule")
    compare(2_000, 256, repsim_ok=True)
    compare(args.n, args.p, repsim_ok=args.repsim_large)


if __name__ == "__main__":
    main()
