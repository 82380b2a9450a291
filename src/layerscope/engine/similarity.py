"""Representational similarity between two sets of activations of the same ``n`` inputs.

``X`` (n×p1) and ``Y`` (n×p2), numpy or torch, float64 internally.

- :func:`cca` — canonical correlations ρ_i: singular values of Qxᵀ·Qy for orthonormal bases
  of the centred columns (Householder QR, then the SVD of the small triangular factor for the
  rank; no explicit inverse, no covariance matrix squaring the condition number); with
  ``eps`` > 0 the covariances are regularised, Σ + εI, as in Raghu et al.'s code.
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

from .layers import LAYOUTS, channel_layout

__all__ = [
    "LAYOUTS",
    "MAX_GRAM_ROWS",
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


def to_matrix(acts: torch.Tensor, reduce: str = "flatten", layout: str = "auto") -> torch.Tensor:
    """Activations → an (rows × features) matrix: ``flatten`` (n × everything), ``mean`` over
    space or tokens (n × channels), or ``positions`` (every position or token a row:
    n·H·W × channels).

    ``layout`` says where the channels are: ``nchw`` (convolutions), ``nhwc`` (e.g. Swin's
    stages), ``tokens`` ((n, tokens, features): ViT blocks). ``auto``: 3-D is ``tokens``;
    4-D is ``nhwc`` when dims 1 and 2 are equal and 2 and 3 are not, else ``nchw`` (pass it
    explicitly for non-square inputs)."""
    if reduce not in ("flatten", "mean", "positions"):
        raise ValueError(f"reduce must be flatten, mean or positions, not {reduce!r}")
    if acts.dim() == 2:
        return acts
    if reduce == "flatten":
        return acts.flatten(1)
    if acts.dim() not in (3, 4):
        raise ValueError(f"cannot reduce activations of shape {tuple(acts.shape)} by {reduce}")
    kind = channel_layout(acts, layout)
    if kind == "nchw" and acts.dim() == 4:
        acts = acts.flatten(2).transpose(1, 2)  # (n, H·W, C)
    elif kind == "nhwc" and acts.dim() == 4:
        acts = acts.flatten(1, 2)  # (n, H·W, C)
    elif acts.dim() != 3:
        raise ValueError(f"layout {kind!r} does not fit activations of shape {tuple(acts.shape)}")
    if reduce == "mean":
        return acts.mean(1)
    return acts.reshape(-1, acts.shape[-1])


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
    if unbiased and n < 4:
        raise ValueError(f"the unbiased HSIC needs at least 4 samples per batch, got {n}")
    a, b = _GramTerms(kx, unbiased), _GramTerms(ky, unbiased)
    return float(_hsic_terms([a], [b], unbiased, paired=True)[0])


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


def _gram_of(f, kernel: str = "linear", sigma: float = 0.8) -> torch.Tensor:
    """The Gram matrix of an n×p batch for the HSIC. Linear: the features are centred first
    (the unbiased HSIC is invariant to a translation of the features, and ReLU features share
    a large positive mean that would dominate every entry), multiplied in their own precision
    (float32: half the time of float64), then float64 for the HSIC terms, whose cancellation is
    where an all-float32 computation fails. RBF: float64 throughout, bandwidth ``sigma`` × the
    batch's median pairwise distance."""
    t = torch.as_tensor(f).detach()
    if t.dim() != 2:
        raise ValueError(f"expected an n×p matrix, got shape {tuple(t.shape)}: use to_matrix()")
    if kernel == "rbf":
        g = _gram(t.to("cpu", torch.float64), "rbf", sigma)
    else:
        t = t - t.mean(0, keepdim=True)
        g = _gram(t, kernel, sigma).to("cpu", torch.float64)
    if not torch.isfinite(g).all():
        raise ValueError("activations contain NaN or infinite values")
    return g


class _FeatureTerms:
    """Linear-kernel HSIC without the n×n Gram matrix, for batches with more rows than a Gram
    matrix should hold (``reduce="positions"``: every spatial position a row). With centred
    features X (n×p), K = XXᵀ, d_i = ‖x_i‖²: tr(K̃L̃) = ‖XᵀY‖²_F − Σ d_i e_i, 1ᵀK̃1 = −Σ d_i and
    1ᵀK̃L̃1 = Σ d_i e_i (K̃: K with a zero diagonal), which is all HSIC_1 needs; the biased
    HSIC_0 is ‖XᵀY‖²_F / (n−1)². Equal to the Gram route (tested)."""

    def __init__(self, f) -> None:
        t = torch.as_tensor(f).detach().to("cpu", torch.float64)
        if t.dim() != 2:
            raise ValueError(f"expected an n×p matrix, got shape {tuple(t.shape)}")
        if not torch.isfinite(t).all():
            raise ValueError("activations contain NaN or infinite values")
        self.x = t - t.mean(0, keepdim=True)
        self.d = self.x.pow(2).sum(1)

    def hsic(self, other: _FeatureTerms, unbiased: bool) -> float:
        n = self.x.shape[0]
        cross = float((self.x.T @ other.x).pow(2).sum())
        if not unbiased:
            return cross / (n - 1) ** 2
        de = float(self.d @ other.d)
        term = cross - de
        term += float(self.d.sum()) * float(other.d.sum()) / ((n - 1) * (n - 2))
        term -= 2.0 / (n - 2) * de
        return term / (n * (n - 3))


class _GramTerms:
    """What the HSIC needs from one Gram matrix, flattened so that all layer pairs of a batch
    come out of one matrix product: unbiased — K̃ (zero diagonal), its column sums and total;
    biased — the centred K̄."""

    def __init__(self, g: torch.Tensor, unbiased: bool) -> None:
        self.n = len(g)
        if unbiased:
            g = g.clone().fill_diagonal_(0)
            self.s = g.sum(0)
            self.t = self.s.sum()
        else:
            g = _center(g)
        self.flat = g.reshape(-1)


def _hsic_terms(a: list, b: list, unbiased: bool, paired: bool) -> torch.Tensor:
    """HSIC of every (a_i, b_j) — a matrix — or, ``paired``, of (a_i, b_i) — a vector —
    for :class:`_GramTerms` of one batch size n; equal to :func:`hsic` pair by pair."""
    n = a[0].n
    ga, gb = torch.stack([t.flat for t in a]), torch.stack([t.flat for t in b])
    dot = (ga * gb).sum(1) if paired else ga @ gb.T
    if not unbiased:
        return dot / (n - 1) ** 2
    sa, sb = torch.stack([t.s for t in a]), torch.stack([t.s for t in b])
    ta, tb = torch.stack([t.t for t in a]), torch.stack([t.t for t in b])
    if paired:
        totals, sums = ta * tb, (sa * sb).sum(1)
    else:
        totals, sums = ta[:, None] * tb[None, :], sa @ sb.T
    return (dot + totals / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * sums) / (n * (n - 3))


#: batches with more rows than this use the feature-space linear HSIC (no n×n matrix)
MAX_GRAM_ROWS = 2048


class CKAMatrix:
    """Minibatch CKA between every layer of A and every layer of B at once (or only matching
    pairs, ``diagonal=True``): per batch, each layer's Gram matrix and its self-HSIC are
    computed once, then one cross-HSIC per pair. ``unbiased`` (default): the mean over batches
    of HSIC_1 (Nguyen et al. 2021; needs ≥ 4 rows per batch), as :class:`MinibatchCKA`;
    ``unbiased=False`` averages the biased HSIC_0 instead, which inflates the similarity of
    unrelated representations at small batches. ``kernel="rbf"`` takes its bandwidth from
    each batch. Batches of more than :data:`MAX_GRAM_ROWS` rows (e.g. positions as data points)
    go through the feature-space form of the linear HSIC."""

    def __init__(
        self,
        n_a: int,
        n_b: int,
        kernel: str = "linear",
        sigma: float = 0.8,
        unbiased: bool = True,
        diagonal: bool = False,
    ) -> None:
        if kernel not in ("linear", "rbf"):
            raise ValueError(f"kernel must be linear or rbf, not {kernel!r}")
        if diagonal and n_a != n_b:
            raise ValueError(f"diagonal pairs need as many layers on both sides: {n_a} vs {n_b}")
        self.kernel, self.sigma, self.unbiased, self.diagonal = kernel, sigma, unbiased, diagonal
        self.kl = torch.full((n_a, n_b), float("nan"), dtype=torch.float64)
        self.kl[torch.eye(n_a, n_b, dtype=torch.bool) if diagonal else slice(None)] = 0.0
        self.kk = torch.zeros(n_a, dtype=torch.float64)
        self.ll = torch.zeros(n_b, dtype=torch.float64)
        self.batches = 0

    def prepare(self, f):
        """One layer's batch (n×p) → what :meth:`update` needs from it (its Gram matrix terms,
        or for very tall batches the centred features). Call it as the layer runs (the
        ``transform`` of :func:`~layerscope.layers.read_unchecked`) to hold no activations."""
        if isinstance(f, _GramTerms | _FeatureTerms):
            return f
        rows = len(f)
        if self.unbiased and rows < 4:
            raise ValueError(
                f"a minibatch of {rows} samples is too small for the unbiased HSIC (needs ≥ 4): "
                "use larger batches or drop the last one"
            )
        if rows > MAX_GRAM_ROWS:
            if self.kernel != "linear":
                raise ValueError(
                    f"{rows} rows per batch is too many for an RBF Gram matrix: use "
                    "reduce='flatten' or 'mean', or the linear kernel"
                )
            return _FeatureTerms(f)
        return _GramTerms(_gram_of(f, self.kernel, self.sigma), self.unbiased)

    def _block(self, a: list, b: list, paired: bool) -> torch.Tensor:
        """HSIC of the pairs of ``a`` × ``b`` (or zipped, ``paired``); NaN where the row counts
        differ. Gram terms of equal n go through one matrix product."""
        shape = (len(a),) if paired else (len(a), len(b))
        out = torch.full(shape, float("nan"), dtype=torch.float64)
        fast = all(isinstance(t, _GramTerms) for t in (*a, *b))
        if fast and len({t.n for t in (*a, *b)}) == 1:
            return _hsic_terms(a, b, self.unbiased, paired)
        for i, u in enumerate(a):
            for j, v in [(i, b[i])] if paired else enumerate(b):
                if self._rows(u) != self._rows(v):
                    continue
                if isinstance(u, _FeatureTerms):
                    value = u.hsic(v, self.unbiased)
                else:
                    value = float(_hsic_terms([u], [v], self.unbiased, paired=True)[0])
                out[(i,) if paired else (i, j)] = value
        return out

    @staticmethod
    def _rows(t) -> int:
        return t.n if isinstance(t, _GramTerms) else t.x.shape[0]

    def update(self, feats_a: list, feats_b: list) -> None:
        """Add one batch: a list of n×p matrices (or their :meth:`prepare` d terms) per side,
        the same inputs in order. With
        ``reduce="positions"`` layers of different spatial sizes have different row counts:
        those pairs are undefined and stay NaN; a lone pair that differs is an error."""
        a = [self.prepare(f) for f in feats_a]
        b = [self.prepare(f) for f in feats_b]
        rows_a, rows_b = [self._rows(t) for t in a], [self._rows(t) for t in b]
        if len(rows_a) == len(rows_b) == 1 and rows_a != rows_b:
            raise ValueError(f"A and B must hold the same inputs: {rows_a[0]} vs {rows_b[0]} rows")
        self.kk += self._block(a, a, paired=True)
        self.ll += self._block(b, b, paired=True)
        if self.diagonal:
            idx = torch.arange(len(a))
            self.kl[idx, idx] += self._block(a, b, paired=True)
        else:
            self.kl += self._block(a, b, paired=False)
        self.batches += 1

    def compute(self) -> np.ndarray:
        if self.batches == 0:
            raise ValueError("no batch was added")
        den = torch.sqrt(self.kk.clamp_min(0)[:, None] * self.ll.clamp_min(0)[None, :])
        out = torch.where(den > 0, self.kl / den, torch.full_like(den, float("nan")))
        return out.numpy()


class MinibatchCKA(CKAMatrix):
    """Streaming CKA of one pair (Nguyen et al. 2021): ``update(x_batch, y_batch)`` adds each
    batch's unbiased HSIC_1 of (K, L), (K, K), (L, L); ``compute()`` = mean_KL / √(mean_KK·mean_LL).
    Memory is one batch's Gram matrices, whatever the data set's size. Options as
    :class:`CKAMatrix`."""

    def __init__(self, kernel: str = "linear", sigma: float = 0.8, unbiased: bool = True) -> None:
        super().__init__(1, 1, kernel, sigma, unbiased)

    def update(self, x, y) -> None:  # type: ignore[override]
        super().update([x], [y])

    def compute(self) -> float:  # type: ignore[override]
        return float(super().compute()[0, 0])


# ---------------------------------------------------------------- CCA family


class CCAResult(tuple):
    """``(correlations, mean)``: all canonical correlations (descending) and their mean."""

    @property
    def correlations(self) -> np.ndarray:
        return self[0]

    @property
    def mean(self) -> float:
        return self[1]


class _Side:
    """One side of a CCA, factored once: X_c = Q·R (Householder QR, n×r and r×p) and
    R = U·diag(s)·Vᵀ, so X_c's left singular vectors are Q·U and every later step (whitening,
    SVCCA's truncation, PWCCA's weights) works on r×r matrices: no second pass over n×p.

    Constant columns (dead units) are dropped first. When nothing needs the singular vectors
    (no truncation, no ε) and R has full rank, Q itself is the orthonormal basis: only the
    singular values of R are computed (2.5× cheaper than the full SVD of R)."""

    def __init__(self, x: torch.Tensor, vectors: bool = True) -> None:
        xc = x - x.mean(0)
        live = xc.abs().amax(0) > 0 if xc.shape[0] else torch.ones(xc.shape[1], dtype=torch.bool)
        self.xc = xc if bool(live.all()) else xc[:, live]
        self.n = x.shape[0]
        self.q, self.r = torch.linalg.qr(self.xc)
        self.u = None
        self.s = torch.linalg.svdvals(self.r)
        tol = (
            self.s.max() * max(self.xc.shape) * torch.finfo(torch.float64).eps
            if self.s.numel()
            else 0
        )
        self.rank = int((self.s > tol).sum())
        if vectors or self.rank < self.q.shape[1]:
            self.u, self.s, _ = torch.linalg.svd(self.r, full_matrices=False)

    def directions(self, keep: float | int | None) -> int:
        """How many leading singular directions to use: all nonzero ones (``None``), the top
        ``keep`` (an int) or those that explain the share ``keep`` of the variance."""
        if keep is None:
            return self.rank
        if isinstance(keep, int) and not isinstance(keep, bool):
            return max(1, min(keep, self.rank))
        if not 0 < keep <= 1:
            raise ValueError(f"keep must be a share in (0, 1] or a count, not {keep}")
        var = self.s[: self.rank] ** 2
        share = torch.cumsum(var, 0) / var.sum()
        k = int(torch.searchsorted(share, torch.tensor(keep - 1e-12, dtype=share.dtype))) + 1
        return min(k, self.rank)

    def whitening(self, k: int, eps: float) -> torch.Tensor:
        """r×k coefficients W with Q·W the (regularised) whitened basis of the top k
        directions: orthonormal for ε = 0, shrunk by √(var/(var + ε)) otherwise (Σ + εI)."""
        if self.u is None:  # full rank, nothing to truncate or shrink: Q is the basis
            return torch.eye(self.q.shape[1], dtype=self.q.dtype)
        w = self.u[:, :k]
        if eps > 0:
            var = self.s[:k] ** 2 / (self.n - 1)
            w = w * torch.sqrt(var / (var + eps))
        return w


def _cca_core(x, y, eps: float, keep=None, weights: str | None = None):
    """Canonical correlations (descending) and, if asked, PWCCA's weights for ``"x"``, ``"y"``
    or ``"both"`` sides: α_i ∝ Σ_j |⟨h_i, x_j⟩| for the unit-norm canonical variates h_i of that
    side over its neurons x_j (centred columns)."""
    x, y = _pair(x, y)
    n = x.shape[0]
    vectors = keep is not None or eps > 0
    sx, sy = _Side(x, vectors), _Side(y, vectors)
    kx, ky = sx.directions(keep), sy.directions(keep)
    if eps == 0 and max(kx, ky) >= n - 1:
        raise ValueError(
            f"n = {n} inputs for {kx} and {ky} independent features: the canonical "
            "correlations would be trivially 1. Use more inputs than features, svcca (keep "
            "fewer directions), reduce='mean', or eps > 0"
        )
    wx, wy = sx.whitening(kx, eps), sy.whitening(ky, eps)
    m = wx.T @ (sx.q.T @ sy.q) @ wy
    if weights is None:
        return torch.linalg.svdvals(m).clamp(0, 1), {}
    p, rho, vh = torch.linalg.svd(m, full_matrices=False)
    alphas = {}
    for side, coef in (("x", (sx, wx @ p)), ("y", (sy, wy @ vh.T))):
        if weights in (side, "both"):
            s, c = coef  # canonical variates h = Q·c (Q orthonormal: ‖h_i‖ = ‖c_i‖)
            loads = (c / c.norm(dim=0, keepdim=True).clamp_min(1e-300)).T @ s.r  # ⟨h_i, x_j⟩
            alphas[side] = loads.abs().sum(1)
    return rho.clamp(0, 1), alphas


def cca(x, y, eps: float = 0.0) -> CCAResult:
    """Canonical correlations of X and Y (all of them, descending) and their mean."""
    rho, _ = _cca_core(x, y, eps)
    corr = rho.numpy()
    return CCAResult((corr, float(corr.mean()) if corr.size else float("nan")))


def svcca(x, y, keep: float | int = 0.99, eps: float = 0.0) -> CCAResult:
    """SVCCA: the top singular directions of X and Y keeping ``keep`` of the variance (a share)
    or ``keep`` directions (an int), then CCA between them."""
    rho, _ = _cca_core(x, y, eps, keep=keep)
    corr = rho.numpy()
    return CCAResult((corr, float(corr.mean()) if corr.size else float("nan")))


def pwcca(x, y, eps: float = 0.0, weights: str = "x") -> float:
    """Projection-weighted CCA (Morcos et al. 2018). ``weights``: ``"x"`` weights each ρ_i by
    Σ_j |⟨h_i, x_j⟩| over X's neurons (the paper's choice), ``"y"`` by Y's, ``"mean"`` is the
    symmetric mean of the two (one factorisation for both)."""
    if weights not in ("x", "y", "mean"):
        raise ValueError(f"weights must be x, y or mean, not {weights!r}")
    rho, alphas = _cca_core(x, y, eps, weights="both" if weights == "mean" else weights)
    values = []
    for alpha in alphas.values():
        if float(alpha.sum()) == 0:
            warnings.warn("a representation has no variance: PWCCA is undefined", stacklevel=2)
            return float("nan")
        values.append(float((alpha / alpha.sum() * rho).sum()))
    return sum(values) / len(values)
