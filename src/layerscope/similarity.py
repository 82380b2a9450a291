"""Representational similarity between two sets of activations of the same ``n`` inputs.

``X`` (n×p1) and ``Y`` (n×p2), numpy or torch, float64 internally.

- :func:`cca` — canonical correlations ρ_i: singular values of Qxᵀ·Qy for orthonormal bases
  of the centred columns (an SVD formulation, no explicit inverse); with ``eps`` > 0 the
  covariances are regularised, Σ + εI, as in Raghu et al.'s code.
- :func:`svcca` — keep the top singular directions of X and of Y that explain ``keep`` of the
  variance (or the top ``k``), then CCA (Raghu et al. 2017).
- :func:`pwcca` — the mean of ρ_i weighted by how much of X each canonical variate accounts
  for, α_i ∝ Σ_j |⟨h_i, x_j⟩| (Morcos et al. 2018). It is asymmetric: ``weights="x"``
  (Morcos et al.'s choice), ``"y"``, or ``"mean"`` (the symmetric mean of both).
- :func:`cka` — centred kernel alignment (Kornblith et al. 2019), linear or RBF kernel,
  biased (HSIC_0) or unbiased (HSIC_1, Song et al. 2012) estimator.
- :class:`MinibatchCKA` — Nguyen et al. 2021: the mean over minibatches of unbiased HSIC_1,
  so a data set of any size streams through with memory bounded by the batch. The Gram
  matrices are formed in the activations' precision and the HSIC terms in float64 (agreement
  with an all-float64 computation: 5e-9 relative in the tests; the all-float32 peer torch-cka
  is off by percent or worse).

Conv activations become a matrix by :func:`to_matrix` (``flatten``, ``mean`` over space, or
``positions`` as data points): say which, the same name everywhere.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch

__all__ = [
    "CCAResult",
    "CKAMatrix",
    "MinibatchCKA",
    "cca",
    "cka",
    "hsic",
    "pwcca",
    "svcca",
    "to_matrix",
]


def _as64(a) -> torch.Tensor:
    t = torch.as_tensor(a) if not isinstance(a, torch.Tensor) else a
    t = t.detach().to("cpu", torch.float64)
    if t.dim() != 2:
        raise ValueError(f"expected an n×p matrix, got shape {tuple(t.shape)}: use to_matrix()")
    if not torch.isfinite(t).all():
        raise ValueError("activations contain NaN or infinite values")
    return t


def _pair(x, y) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = _as64(x), _as64(y)
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"X and Y must hold the same inputs: {x.shape[0]} vs {y.shape[0]} rows")
    return x, y


def to_matrix(acts: torch.Tensor, reduce: str = "flatten") -> torch.Tensor:
    """``n×C×H×W`` activations → a matrix: ``flatten`` (n × C·H·W), ``mean`` over space
    (n × C), or ``positions`` (n·H·W × C: every position a data point)."""
    if acts.dim() == 2:
        return acts
    if reduce == "flatten":
        return acts.flatten(1)
    if reduce == "mean":
        return acts.flatten(2).mean(2)
    if reduce == "positions":
        return acts.flatten(2).transpose(1, 2).reshape(-1, acts.shape[1])
    raise ValueError(f"reduce must be flatten, mean or positions, not {reduce!r}")


# ---------------------------------------------------------------- CKA


def _center(k: torch.Tensor) -> torch.Tensor:
    return k - k.mean(0, keepdim=True) - k.mean(1, keepdim=True) + k.mean()


def _gram(x: torch.Tensor, kernel: str, sigma: float) -> torch.Tensor:
    if kernel == "linear":
        return x @ x.T
    if kernel == "rbf":
        sq = torch.cdist(x, x).pow(2)
        off = sq[~torch.eye(len(x), dtype=torch.bool)]
        median = float(off.sqrt().median()) if off.numel() else 0.0
        bandwidth = sigma * median if median > 0 else 1.0
        return torch.exp(-sq / (2 * bandwidth**2))
    raise ValueError(f"kernel must be linear or rbf, not {kernel!r}")


def hsic(kx: torch.Tensor, ky: torch.Tensor, unbiased: bool = False) -> float:
    """HSIC of two n×n Gram matrices: biased ``tr(K̄L̄)/(n−1)²`` or unbiased HSIC_1
    (Song et al. 2012; needs n ≥ 4)."""
    n = kx.shape[0]
    if not unbiased:
        return float((_center(kx) * _center(ky)).sum()) / (n - 1) ** 2
    if n < 4:
        raise ValueError(f"the unbiased HSIC needs at least 4 samples per batch, got {n}")
    kx = kx.clone().fill_diagonal_(0)
    ky = ky.clone().fill_diagonal_(0)
    sum_x, sum_y = kx.sum(0), ky.sum(0)
    term = float((kx * ky).sum())
    term += float(sum_x.sum()) * float(sum_y.sum()) / ((n - 1) * (n - 2))
    term -= 2.0 / (n - 2) * float(sum_x @ sum_y)
    return term / (n * (n - 3))


def cka(x, y, kernel: str = "linear", sigma: float = 0.8, unbiased: bool = False) -> float:
    """Centred kernel alignment ``HSIC(K, L) / √(HSIC(K, K)·HSIC(L, L))``; 1 for identical
    representations (up to an orthogonal map and isotropic scale for the linear kernel).
    ``sigma``: the RBF bandwidth as a fraction of the median pairwise distance."""
    x, y = _pair(x, y)
    if kernel == "linear" and not unbiased:
        # feature-space form, no n×n matrices: ‖YᵀX‖²_F / (‖XᵀX‖_F ‖YᵀY‖_F), centred
        xc, yc = x - x.mean(0), y - y.mean(0)
        num = float((yc.T @ xc).pow(2).sum())
        den = float((xc.T @ xc).norm() * (yc.T @ yc).norm())
        return num / den if den > 0 else float("nan")
    k, l = _gram(x, kernel, sigma), _gram(y, kernel, sigma)  # noqa: E741
    kl, kk, ll = hsic(k, l, unbiased), hsic(k, k, unbiased), hsic(l, l, unbiased)
    den = math.sqrt(kk * ll) if kk > 0 and ll > 0 else 0.0
    return kl / den if den > 0 else float("nan")


class MinibatchCKA:
    """Streaming linear CKA (Nguyen et al. 2021): ``update(x_batch, y_batch)`` adds each batch's
    unbiased HSIC_1 of (K, L), (K, K), (L, L); ``compute()`` = mean_KL / √(mean_KK·mean_LL).
    Memory is one batch's Gram matrices, whatever the data set's size."""

    def __init__(self) -> None:
        self.kl = self.kk = self.ll = 0.0
        self.batches = 0

    def update(self, x, y) -> None:
        if len(x) != len(y):
            raise ValueError(f"X and Y must hold the same inputs: {len(x)} vs {len(y)} rows")
        if len(x) < 4:
            raise ValueError(
                f"a minibatch of {len(x)} samples is too small for the unbiased HSIC "
                "(needs ≥ 4): use larger batches or drop the last one"
            )
        k, l = _gram_of(x), _gram_of(y)  # noqa: E741
        self.kl += hsic(k, l, True)
        self.kk += hsic(k, k, True)
        self.ll += hsic(l, l, True)
        self.batches += 1

    def compute(self) -> float:
        if self.batches == 0:
            raise ValueError("no batch was added")
        den = math.sqrt(self.kk * self.ll) if self.kk > 0 and self.ll > 0 else 0.0
        return self.kl / den if den > 0 else float("nan")


def _gram_of(f) -> torch.Tensor:
    """The linear Gram matrix of an n×p batch for the unbiased HSIC, which is invariant to a
    translation of the features: centred first (ReLU features share a large positive mean
    that would dominate every entry), multiplied in the features' own precision (float32:
    half the time of float64), then float64 for the HSIC terms, whose cancellation is where
    an all-float32 computation fails."""
    t = torch.as_tensor(f).detach()
    if t.dim() != 2:
        raise ValueError(f"expected an n×p matrix, got shape {tuple(t.shape)}: use to_matrix()")
    t = t - t.mean(0, keepdim=True)
    g = (t @ t.T).to("cpu", torch.float64)
    if not torch.isfinite(g).all():
        raise ValueError("activations contain NaN or infinite values")
    return g


class CKAMatrix:
    """Minibatch linear CKA between every layer of A and every layer of B at once: per batch,
    each layer's Gram matrix and its self-HSIC are computed once, then one cross-HSIC per pair
    (Nguyen et al. 2021's estimator, as :class:`MinibatchCKA`)."""

    def __init__(self, n_a: int, n_b: int) -> None:
        self.kl = torch.zeros(n_a, n_b, dtype=torch.float64)
        self.kk = torch.zeros(n_a, dtype=torch.float64)
        self.ll = torch.zeros(n_b, dtype=torch.float64)
        self.batches = 0

    def update(self, feats_a: list, feats_b: list) -> None:
        grams_a = [_gram_of(f) for f in feats_a]
        grams_b = [_gram_of(f) for f in feats_b]
        if grams_a and grams_a[0].shape[0] < 4:
            raise ValueError("minibatches need at least 4 samples for the unbiased HSIC")
        for i, k in enumerate(grams_a):
            self.kk[i] += hsic(k, k, True)
            for j, m in enumerate(grams_b):
                self.kl[i, j] += hsic(k, m, True)
        for j, m in enumerate(grams_b):
            self.ll[j] += hsic(m, m, True)
        self.batches += 1

    def compute(self) -> np.ndarray:
        den = torch.sqrt(self.kk.clamp_min(0)[:, None] * self.ll.clamp_min(0)[None, :])
        out = torch.where(den > 0, self.kl / den, torch.full_like(den, float("nan")))
        return out.numpy()


# ---------------------------------------------------------------- CCA family


class CCAResult(tuple):
    """``(correlations, mean)``: all canonical correlations (descending) and their mean."""

    @property
    def correlations(self) -> np.ndarray:
        return self[0]

    @property
    def mean(self) -> float:
        return self[1]


def _whitened_basis(x: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """An n×r basis of X's centred column space, scaled by the regularised whitening; with
    ε = 0 it is orthonormal. Returns (basis, rank)."""
    xc = x - x.mean(0)
    u, s, _ = torch.linalg.svd(xc, full_matrices=False)
    tol = s.max() * max(xc.shape) * torch.finfo(torch.float64).eps if s.numel() else 0.0
    keep = s > tol
    u, s = u[:, keep], s[keep]
    if eps > 0:
        n = x.shape[0]
        var = s**2 / (n - 1)
        scale = torch.sqrt(var / (var + eps))
        u = u * scale
    return u, torch.tensor(int(keep.sum()))


def _cca_parts(x, y, eps: float):
    x, y = _pair(x, y)
    n = x.shape[0]
    qx, rx = _whitened_basis(x, eps)
    qy, ry = _whitened_basis(y, eps)
    if eps == 0 and max(int(rx), int(ry)) >= n - 1:
        raise ValueError(
            f"n = {n} inputs for {int(rx)} and {int(ry)} independent features: the canonical "
            "correlations would be trivially 1. Use more inputs than features, svcca (keep "
            "fewer directions), reduce='mean', or eps > 0"
        )
    p, rho, rt = torch.linalg.svd(qx.T @ qy, full_matrices=False)
    return x, y, qx, qy, p, rho.clamp(0, 1), rt


def cca(x, y, eps: float = 0.0) -> CCAResult:
    """Canonical correlations of X and Y (all of them, descending) and their mean."""
    *_, rho, _ = _cca_parts(x, y, eps)
    corr = rho.numpy()
    return CCAResult((corr, float(corr.mean()) if corr.size else float("nan")))


def _keep_directions(x: torch.Tensor, keep: float | int) -> torch.Tensor:
    xc = x - x.mean(0)
    u, s, _ = torch.linalg.svd(xc, full_matrices=False)
    if isinstance(keep, int) and not isinstance(keep, bool):
        k = min(keep, len(s))
    else:
        if not 0 < keep <= 1:
            raise ValueError(f"keep must be a share in (0, 1] or a count, not {keep}")
        share = torch.cumsum(s**2, 0) / (s**2).sum()
        k = int(torch.searchsorted(share, torch.tensor(keep - 1e-12, dtype=share.dtype))) + 1
        k = min(k, len(s))
    return u[:, :k] * s[:k]


def svcca(x, y, keep: float | int = 0.99, eps: float = 0.0) -> CCAResult:
    """SVCCA: the top singular directions of X and Y keeping ``keep`` of the variance (a share)
    or ``keep`` directions (an int), then :func:`cca`."""
    x, y = _pair(x, y)
    return cca(_keep_directions(x, keep), _keep_directions(y, keep), eps=eps)


def pwcca(x, y, eps: float = 0.0, weights: str = "x") -> float:
    """Projection-weighted CCA (Morcos et al. 2018). ``weights``: ``"x"`` weights each ρ_i by
    Σ_j |⟨h_i, x_j⟩| over X's neurons (the paper's choice), ``"y"`` by Y's, ``"mean"`` is the
    symmetric mean of the two."""
    if weights == "mean":
        return 0.5 * (pwcca(x, y, eps, "x") + pwcca(x, y, eps, "y"))
    if weights == "y":
        return pwcca(y, x, eps, "x")
    if weights != "x":
        raise ValueError(f"weights must be x, y or mean, not {weights!r}")
    x, _y, qx, _qy, p, rho, _ = _cca_parts(x, y, eps)
    h = qx @ p  # canonical variates of X (n × r)
    h = h / h.norm(dim=0, keepdim=True).clamp_min(1e-300)
    xc = x - x.mean(0)
    alpha = (h.T @ xc).abs().sum(1)
    if float(alpha.sum()) == 0:
        warnings.warn("X has no variance: PWCCA is undefined", stacklevel=2)
        return float("nan")
    return float((alpha / alpha.sum() * rho).sum())
