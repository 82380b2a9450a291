"""How well a layer's map can be inverted at an input, measured: the singular values of the
Jacobian of the layer's output with respect to the input (Badger's "spiky ball" of poor
conditioning, measured instead of drawn).

:func:`jacobian_spectrum` never materialises the Jacobian of a big layer: the top k singular
values come from SciPy's ``svds`` (ARPACK Lanczos) on a ``LinearOperator`` whose products are
Jacobian-vector (``torch.func.jvp``) and vector-Jacobian (``torch.func.vjp``) products of the
truncated forward. Where the dense Jacobian fits (``dense_limit`` entries) it is formed with
``torch.func.jacrev`` and its full spectrum computed exactly, which also gives the bottom of
the spectrum, the numerical rank and the condition number of the restricted map (σ_max over
the smallest non-zero σ). :func:`circular_conv_singular_values` is the closed form of Sedghi
et al. (ICLR 2019) for a circular convolution, a test oracle.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .layers import read_unchecked, resolve_layers
from .models import as_model, evaluating

__all__ = ["circular_conv_singular_values", "jacobian_spectrum"]


def _layer_map(model, layer: str):
    def f(x: torch.Tensor) -> torch.Tensor:
        return read_unchecked(model, x, [layer])[layer].flatten()

    return f


def jacobian_spectrum(
    model: torch.nn.Module,
    image: torch.Tensor,
    layer: str,
    k: int = 20,
    dense_limit: float = 2.5e7,
    tol: float | None = None,
    dtype: torch.dtype = torch.float64,
    method: str = "auto",
) -> dict:
    """Singular values of ∂O_layer/∂x at ``image`` (1×3×H×W), in ``dtype`` (float64 for the
    small end). ``method``: ``dense`` (exact, full spectrum), ``lanczos`` (matrix-free top k)
    or ``auto`` (dense when m·n ≤ ``dense_limit``). Returns m, n, method, ``sigma`` (all, or
    the top k, descending), σ_max, σ_k, the numerical rank (σ > tol, default
    ``max(m, n)·eps·σ_max``; dense only) and the condition number of the restricted map
    (σ_max / smallest non-zero σ; dense only)."""
    model = as_model(model)
    name = resolve_layers(model, [layer])[0]
    x = image.to(dtype)
    with evaluating(model.net):  # torch.func needs eval-mode BatchNorm
        converted = [(p, p.data) for p in model.parameters()] + [
            (b, b.data) for b in model.buffers() if b.is_floating_point()
        ]
        for t, _ in converted:
            t.data = t.data.to(dtype)
        try:
            return _spectrum(model, x, name, k, dense_limit, tol, method)
        finally:
            for t, data in converted:
                t.data = data


def _spectrum(model, x, name, k, dense_limit, tol, method) -> dict:
    from torch.func import jacrev, jvp, vjp

    f = _layer_map(model, name)
    with torch.no_grad():
        m = int(f(x).numel())
    n = x.numel()
    if method == "auto":
        method = "dense" if m * n <= dense_limit else "lanczos"
    if method == "dense":
        jac = jacrev(f)(x).reshape(m, n)
        sigma = torch.linalg.svdvals(jac.detach()).cpu().numpy()
    elif method == "lanczos":
        from scipy.sparse.linalg import LinearOperator, svds

        _, vjp_fn = vjp(f, x)
        dt = x.dtype

        def matvec(v):
            v = torch.as_tensor(np.asarray(v).reshape(x.shape), dtype=dt, device=x.device)
            return jvp(f, (x,), (v,))[1].detach().cpu().numpy().astype(np.float64)

        def rmatvec(u):
            u = torch.as_tensor(np.asarray(u).reshape(-1), dtype=dt, device=x.device)
            return vjp_fn(u)[0].detach().cpu().numpy().reshape(-1).astype(np.float64)

        op = LinearOperator((m, n), matvec=matvec, rmatvec=rmatvec, dtype=np.float64)
        kk = min(k, min(m, n) - 1)
        rng = np.random.default_rng(0)
        sigma = svds(op, k=kk, return_singular_vectors=False, v0=rng.standard_normal(min(m, n)))
        sigma = np.sort(sigma)[::-1]
    else:
        raise ValueError(f"method must be auto, dense or lanczos, not {method!r}")
    smax = float(sigma[0])
    out = {"m": m, "n": n, "method": method, "sigma": sigma, "sigma_max": smax,
           "sigma_k": float(sigma[min(k, len(sigma)) - 1]), "rank": math.nan,
           "condition": math.nan, "sigma_min_nonzero": math.nan}  # fmt: skip
    if method == "dense":
        cut = tol if tol is not None else max(m, n) * np.finfo(np.float64).eps * smax
        live = sigma[sigma > cut]
        out |= {"rank": len(live), "sigma_min_nonzero": float(live[-1]),
                "condition": smax / float(live[-1])}  # fmt: skip
    return out


def circular_conv_singular_values(weight: torch.Tensor, h: int, w: int) -> np.ndarray:
    """Singular values of the linear map of a stride-1 convolution with circular padding on
    h × w inputs (Sedghi, Gupta & Long, ICLR 2019): the union over the 2-D DFT frequencies of
    the singular values of the c_out × c_in matrices of the kernel's transform."""
    k = weight.detach().double().cpu().numpy()  # c_out × c_in × kh × kw
    # cross-correlation with kernel k ↔ convolution with k flipped: the singular values of
    # each frequency's matrix are those of its conjugate, so the transform of k itself serves
    transform = np.fft.fft2(k, s=(h, w), axes=(2, 3))  # c_out × c_in × h × w
    mats = np.transpose(transform, (2, 3, 0, 1)).reshape(h * w, k.shape[0], k.shape[1])
    return np.sort(np.linalg.svd(mats, compute_uv=False).ravel())[::-1]
