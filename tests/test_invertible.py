"""The exactly invertible linear network: exact inverses against float64 round trips and
numpy, the neighbourhood samples against their definition, the CLI."""

import numpy as np
import pytest
import torch

import layerscope as ls
from layerscope.studies.invertible import exact_inverse, square_layers


def _net(size=4, seed=0):
    return ls.load_model(f"linear:{3 * size * size}x3", seed=seed, num_classes=10,
                         input_size=size).double()  # fmt: skip


def test_exact_inverse_recovers_the_input_and_samples_map_back():
    layers = [m for _, m in square_layers(_net())]
    assert len(layers) == 3 and all(m.in_features == 48 for m in layers)
    x = torch.rand(5, 48, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    with torch.no_grad():
        out = x
        for m in layers:
            out = m(out)
        back = exact_inverse(layers, out)
        assert float((back - x).abs().max()) < 1e-10
        gen = torch.Generator().manual_seed(1)
        noisy = out + 1e-3 * torch.randn(out.shape, generator=gen, dtype=torch.float64)
        again = exact_inverse(layers, noisy)
        for m in layers:
            again = m(again)
    assert float((again - noisy).abs().max()) < 1e-10  # a″ maps to O(a) + noise exactly


def test_study_condition_numbers_equal_numpys_and_the_cli_writes_everything(run_cli, tmp_path):
    out = tmp_path / "inv"
    args = ["study", "invertible", "--size", "8", "--samples", "40", "--iterations", "10"]
    code, stdout, err = run_cli(*args, "--out", str(out))
    assert code == 0, err
    for name in ("config.json", "layers.csv", "neighbourhood.csv", "summary.csv",
                 "invertible.png", "reconstruction.png", "report.html"):  # fmt: skip
        assert (out / name).is_file(), name
    net = _net(size=8)
    rows = ls.tables.read_csv(out / "layers.csv")
    for row, (_, m) in zip(rows, square_layers(net), strict=True):
        expected = np.linalg.cond(m.weight.detach().numpy())
        assert row["condition_number"] == pytest.approx(expected, rel=1e-8)
    s = ls.tables.read_csv(out / "summary.csv")[0]
    assert s["exact_roundtrip_error"] < 1e-8 and s["neighbourhood_roundtrip_error"] < 1e-8
    assert len(ls.tables.read_csv(out / "neighbourhood.csv")) == 40
    # the exact neighbourhood is much farther from a than a small input perturbation
    assert s["neighbourhood_median_input_distance"] > 10 * s["reference_input_distance"]
    assert "exact inverses" in stdout
