"""Jacobian spectra against exact oracles: the product of a linear net's weights, the
Sedghi et al. closed form of a circular convolution, dense SVD for the Lanczos top k."""

import numpy as np
import pytest
import torch

import layerscope as ls
from layerscope.invertibility import circular_conv_singular_values, jacobian_spectrum


def test_linear_net_spectrum_is_that_of_the_product_of_its_weights():
    model = ls.load_model("linear:48x3", seed=0, input_size=4)
    s = jacobian_spectrum(model, ls.load_image("chelsea", 4), "fc3")
    product = None
    for name in ("fc1", "fc2", "fc3"):
        w = model.net.get_submodule(name).weight.detach().double()
        product = w if product is None else w @ product
    np.testing.assert_allclose(s["sigma"], torch.linalg.svdvals(product).numpy(), rtol=1e-10)
    assert s["method"] == "dense" and s["rank"] == 48
    assert s["condition"] == pytest.approx(float(np.linalg.cond(product.numpy())), rel=1e-8)
    assert next(model.parameters()).dtype == torch.float32  # the caller's model unchanged


def test_circular_convolution_spectrum_equals_sedghis_closed_form():
    with torch.random.fork_rng():
        torch.manual_seed(0)
        conv = torch.nn.Conv2d(3, 4, 3, padding=1, padding_mode="circular", bias=False)
    model = ls.Model(torch.nn.Sequential(conv), name="circular")
    x = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    oracle = circular_conv_singular_values(conv.weight, 8, 8)
    dense = jacobian_spectrum(model, x, "0")
    np.testing.assert_allclose(dense["sigma"], oracle[: len(dense["sigma"])], atol=1e-12)
    top = jacobian_spectrum(model, x, "0", k=6, method="lanczos")
    np.testing.assert_allclose(top["sigma"], oracle[:6], rtol=1e-9)


def test_lanczos_top_k_matches_the_dense_svd_on_a_small_resnet(tiny):
    image = ls.load_image("chelsea", 16)
    dense = jacobian_spectrum(tiny, image, "layer2", method="dense")
    top = jacobian_spectrum(tiny, image, "layer2", k=8, method="lanczos")
    np.testing.assert_allclose(top["sigma"], dense["sigma"][:8], rtol=1e-8)
    assert dense["rank"] <= min(dense["m"], dense["n"])


def test_conditioning_cli_writes_its_artefacts(run_cli, tmp_path):
    out = tmp_path / "c"
    args = ["study", "conditioning", "--model", "resnet10", "--size", "16", "--layers"]
    code, stdout, err = run_cli(*args, "conv1,layer2", "--k", "5", "--out", str(out))
    assert code == 0, err
    for name in ("config.json", "conditioning.csv", "spectra.csv", "conditioning.png",
                 "report.html"):  # fmt: skip
        assert (out / name).is_file(), name
    rows = ls.tables.read_csv(out / "conditioning.csv")
    assert [r["layer"] for r in rows] == ["conv1", "layer2"]
    assert rows[0]["depth"] < rows[1]["depth"] and "σ_max" in stdout
    # the written spectra against an independent one: torch's Jacobian of the same net and
    # photo in float64, its singular values by LAPACK (the file held names, not numbers)
    model = ls.load_model("resnet10", seed=0).double()
    x = ls.load_image("chelsea", 16).double()
    spectra = ls.tables.read_csv(out / "spectra.csv")
    for row in rows:
        layer = row["layer"]
        jac = torch.autograd.functional.jacobian(
            lambda z, layer=layer: ls.activations(model, z, [layer])[layer].flatten(), x
        ).reshape(-1, x.numel())
        sigma = torch.linalg.svdvals(jac)
        assert (row["m"], row["n"]) == tuple(jac.shape)
        assert row["sigma_max"] == pytest.approx(float(sigma[0]), rel=1e-6)
        written = [r["sigma"] for r in spectra if r["layer"] == layer][:5]
        np.testing.assert_allclose(written, sigma[:5].numpy(), rtol=1e-6)
