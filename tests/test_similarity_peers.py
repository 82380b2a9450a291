"""Cross-checks against independent implementations (test-only dependencies: cca-zoo, repsim,
ckatorch, torch-cka) and the bugs users reported in peer libraries, each pinned down here."""

import warnings

import numpy as np
import pytest
import torch

import layerscope as ls
from layerscope.similarity import CKAMatrix, MinibatchCKA, cca, cka, hsic, pwcca, svcca


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


def _data(n=300, p=10, q=8, shared=4, seed=1):
    r = np.random.default_rng(seed)
    z = r.standard_normal((n, shared))
    x = z @ r.standard_normal((shared, p)) + 0.7 * r.standard_normal((n, p))
    y = z @ r.standard_normal((shared, q)) + 0.7 * r.standard_normal((n, q))
    return x, y


# ---------------------------------------------------------------- CCA family vs peers


def test_cca_mean_equals_cca_zoo_and_repsim():
    """cca-zoo (generalised eigenproblem) scores the mean canonical correlation; repsim (C++)
    calls the same quantity "pillai" and Σρ²/min(p, q) "yanai"."""
    import repsim
    from cca_zoo.linear import CCA

    x, y = _data()
    ours = cca(x, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        zoo = CCA(n_components=8).fit((x, y)).score((x, y))
    assert ours.mean == pytest.approx(float(zoo), abs=1e-6)
    assert ours.mean == pytest.approx(repsim.cca([x, y], "pillai")[0, 1], abs=1e-6)
    yanai = (ours.correlations**2).sum() / min(x.shape[1], y.shape[1])
    assert yanai == pytest.approx(repsim.cca([x, y], "yanai")[0, 1], abs=1e-6)


def test_svcca_with_k_directions_equals_pca_then_cca_zoo():
    """An independent SVCCA: scikit-learn's PCA to k components, then cca-zoo's CCA."""
    from cca_zoo.linear import CCA
    from sklearn.decomposition import PCA

    x, y = _data(p=12, q=10)
    xr, yr = PCA(n_components=4).fit_transform(x), PCA(n_components=4).fit_transform(y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        zoo = CCA(n_components=4).fit((xr, yr)).score((xr, yr))
    assert svcca(x, y, keep=4).mean == pytest.approx(float(zoo), abs=1e-6)


def test_pwcca_symmetric_mean_equals_repsim_which_states_no_side():
    """repsim's PWCCA is symmetric: it is the mean of the two one-sided weightings (our
    ``weights="mean"``), not Morcos et al.'s X-weighted value, which it never reports."""
    import repsim

    x, y = _data()
    theirs = repsim.pwcca([x, y])
    if abs(theirs[0, 1] - theirs[1, 0]) > 1e-12:
        pytest.skip(
            f"repsim {_version('repsim')} reports a one-sided PWCCA now; this test documents "
            "the symmetric one of repsim 0.1.5"
        )
    assert pwcca(x, y, weights="mean") == pytest.approx(theirs[0, 1], abs=1e-6)
    assert pwcca(x, y) != pytest.approx(theirs[0, 1], abs=1e-4)  # the paper's side differs
    assert pwcca(x, y, weights="y") == pytest.approx(pwcca(y, x), abs=1e-12)


def test_cca_of_more_features_than_inputs_is_refused_where_peers_report_ones():
    """Independent Gaussians, n = 30 < p = 40: the true canonical correlations are 0, a plain
    CCA finds a perfect fit (ρ = 1) for every direction. cca-zoo reports that as its score;
    layerscope refuses with the fix, and with ε regularisation gives values below 1."""
    from cca_zoo.linear import CCA

    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((30, 40)), rng.standard_normal((30, 40))
    with pytest.raises(ValueError, match="trivially 1"):
        cca(x, y)
    assert cca(x, y, eps=1.0).mean < 0.9
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        zoo = float(CCA(n_components=5).fit((x, y)).score((x, y)))
    if zoo <= 0.99:
        pytest.skip(
            f"cca-zoo {_version('cca-zoo')} no longer reports the trivial ones (score {zoo:.3f}); "
            "this test documents the behaviour of cca-zoo 4.0.1"
        )


# ---------------------------------------------------------------- CKA vs peers


def test_cka_equals_ckatorch_biased_and_unbiased():
    """ckatorch follows Kornblith et al.'s reference code (unbiased = debiased centring)."""
    from ckatorch import cka_base

    x, y = _data()
    tx, ty = torch.tensor(x), torch.tensor(y)
    assert cka(x, y) == pytest.approx(float(cka_base(tx, ty)), abs=1e-6)
    assert cka(x, y, unbiased=True) == pytest.approx(
        float(cka_base(tx, ty, unbiased=True)), abs=1e-6
    )


def test_minibatch_cka_equals_ckatorch_cka_batch():
    from ckatorch import cka_batch

    x, y = _data(n=320)
    ours = MinibatchCKA()
    for i in range(0, 320, 64):
        ours.update(x[i : i + 64], y[i : i + 64])
    theirs = cka_batch(torch.tensor(x).reshape(5, 64, -1), torch.tensor(y).reshape(5, 64, -1))
    assert ours.compute() == pytest.approx(float(theirs), abs=1e-6)


def test_debiased_cka_keeps_its_square_root():
    """anatome's debiased CKA once lacked the square root in the denominator (and terms of the
    U-statistic): CKA must not depend on the scale of either side, and X with itself is 1."""
    x, y = _data()
    base = cka(x, y, unbiased=True)
    assert cka(x, 3.0 * y, unbiased=True) == pytest.approx(base, rel=1e-10)
    assert cka(x, x, unbiased=True) == pytest.approx(1.0, abs=1e-12)
    k, l = torch.tensor(x @ x.T), torch.tensor(y @ y.T)  # noqa: E741
    no_sqrt = hsic(k, l, True) / (hsic(k, k, True) * hsic(l, l, True))
    assert base != pytest.approx(no_sqrt, rel=1e-3)


def test_a_model_with_itself_scores_one_whatever_the_batch_sizes():
    """simtorch averaged per-batch CKA values, so unequal batches broke self-similarity; the
    minibatch estimator averages the HSIC terms, and a model with itself is exactly 1."""
    model = ls.load_model("smallcnn", seed=0)
    acc = CKAMatrix(3, 3)
    images = torch.rand(75, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        for x in images.split(32):  # 32, 32, 11
            f = ls.activations(model, x, ["conv1", "conv2", "conv3"])
            feats = [f[n].flatten(1) for n in ("conv1", "conv2", "conv3")]
            acc.update(feats, feats)
    np.testing.assert_allclose(np.diag(acc.compute()), 1.0, atol=1e-12)


def test_tiny_minibatches_and_unknown_layers_are_clear_errors():
    """torch-cka returns NaN for minibatches of ≤ 3 samples and silently compares nothing for
    a layer name that matches no module."""
    acc = CKAMatrix(1, 1)
    with pytest.raises(ValueError, match="needs ≥ 4"):
        acc.update([torch.randn(3, 5)], [torch.randn(3, 5)])
    with pytest.raises(ls.LayerNotFound, match="conv9"):
        ls.resolve_layers(ls.load_model("smallcnn"), ["conv9"])


def test_minibatch_cka_agrees_with_torch_cka_end_to_end_in_float64():
    """torch-cka run on float64 models (its accumulator follows the default dtype) equals ours.
    Its stock float32 run differs by percent: its HSIC terms cancel in float32 (next test)."""
    from torch.utils.data import DataLoader, TensorDataset
    from torch_cka import CKA

    images = torch.rand(96, 3, 16, 16, generator=torch.Generator().manual_seed(0)).double()
    a, b = ls.load_model("smallcnn", seed=0), ls.load_model("smallcnn", seed=1)
    a.net.double()
    b.net.double()
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            peer = CKA(a.net, b.net, model1_layers=["conv2"], model2_layers=["conv3"])
            peer.compare(DataLoader(TensorDataset(images, torch.zeros(96)), batch_size=32))
    finally:
        torch.set_default_dtype(default)
    ours = MinibatchCKA()
    with torch.no_grad():
        for x in images.split(32):
            ours.update(
                ls.activations(a, x, ["conv2"])["conv2"].flatten(1),
                ls.activations(b, x, ["conv3"])["conv3"].flatten(1),
            )
    assert ours.compute() == pytest.approx(float(peer.export()["CKA"][0, 0]), rel=1e-6)
    assert 0.05 < ours.compute() < 0.999


def test_cca_family_on_real_activations_equals_the_peers():
    """Spatially averaged activations of two differently seeded nets on real photo crops."""
    import repsim
    from cca_zoo.linear import CCA

    from layerscope.data import load_dataset

    data = load_dataset("photos", "test", 16, 0)
    x = torch.stack([data[i][0] for i in range(200)])
    a, b = ls.load_model("smallcnn", seed=0), ls.load_model("smallcnn", seed=1)
    with torch.no_grad():
        fa = ls.activations(a, x, ["conv2"])["conv2"].mean((2, 3)).double().numpy()
        fb = ls.activations(b, x, ["conv3"])["conv3"].mean((2, 3)).double().numpy()
    k = min(fa.shape[1], fb.shape[1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        zoo = float(CCA(n_components=k).fit((fa, fb)).score((fa, fb)))
    ours = cca(fa, fb).mean
    assert 0.1 < ours < 0.999
    assert ours == pytest.approx(zoo, abs=1e-6)
    assert pwcca(fa, fb, weights="mean") == pytest.approx(repsim.pwcca([fa, fb])[0, 1], abs=1e-6)


def test_cca_is_unmoved_by_badly_scaled_neurons():
    """Columns spanning seven orders of magnitude: the QR route keeps full precision (CCA is
    invariant to rescaling a neuron), where forming and inverting covariances would square
    the condition number to 1e14."""
    x, y = _data(p=10)
    scale = np.logspace(0, -7, 10)
    ref = cca(x, y)
    got = cca(x * scale, y)
    np.testing.assert_allclose(got.correlations, ref.correlations, atol=1e-8)
    assert pwcca(x * scale, y, weights="y") == pytest.approx(pwcca(x, y, weights="y"), abs=1e-8)


def test_dead_units_change_nothing():
    """ReLU layers have constant (dead) units: no variance, no canonical direction."""
    x, y = _data()
    dead = np.hstack([x, np.zeros((len(x), 3)), np.full((len(x), 1), 2.0)])
    np.testing.assert_allclose(cca(dead, y).correlations, cca(x, y).correlations, atol=1e-10)
    assert pwcca(dead, y) == pytest.approx(pwcca(x, y), abs=1e-10)
    assert svcca(dead, y).mean == pytest.approx(svcca(x, y).mean, abs=1e-10)
