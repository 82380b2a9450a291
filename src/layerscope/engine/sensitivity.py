"""Sensitivity to smooth deformations vs white noise, at every layer (Petrini et al. 2021,
"Relative stability toward diffeomorphisms indicates performance in deep nets"; Tomasini et
al., "How deep convolutional neural networks lose spatial information with training")::

    D_f = E_{x,τ} ‖f(τ(x)) − f(x)‖² / E_{x1≠x2} ‖f(x1) − f(x2)‖²
    G_f = E_{x,η} ‖f(x + η) − f(x)‖² / E_{x1≠x2} ‖f(x1) − f(x2)‖²      ‖η‖ = ‖τ(x) − x‖ per image
    R_f = D_f / G_f

:class:`RandomDiffeo` draws the maximum-entropy random diffeomorphisms τ; :func:`matched_noise`
draws η; :func:`measure` computes D_f, G_f, R_f for the output and any layers of a model, with
clean, deformed and noisy copies of each batch in one truncated forward.

**Convention (T ↔ δ).** On the unit square (pixel centres at ``linspace(0, 1, n)`` on each
axis) each axis gets an independent field ``u(s, t) = Σ C_ij sin(iπs) sin(jπt)`` over the
modes with ``√(i² + j²) ≤ c``, ``C_ij ~ N(0, T / (i² + j²))``; a pixel moves by ``W·u_x``
horizontally and ``H·u_y`` vertically (the authors' ``n·u``). layerscope's displacement δ is
the *exact* RMS length of that displacement vector averaged over the image's pixels,
``δ² = T·(W² + H²)·Σ_ij a_i(W) a_j(H) / (i² + j²)`` with ``a_i(n)`` the pixel mean of
``sin²(iπs)``, so ``displacement=1`` moves pixels by 1 px RMS for any H, W and c. The
papers' δ is the continuum approximation ``δ_paper = n·√(πT ln c)/2`` (n = √(HW)), which
is not the RMS over the pixels of a real image: on 32×32 images layerscope's δ = 1 is
δ_paper = 1.34 at c = 3, 1.25 at c = 5 and 1.17 at c = 15 (with the authors' public sampler,
whose modes are ``√(i² + j²) < c + 0.5``, the RMS is about 0.84 δ_paper at c = 3 and 0.89 at
c = 15; layerscope keeps the papers' ``√(i² + j²) ≤ c``). δ, δ_paper and T are all recorded
with every result.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..core.errors import ConfigError
from ..core.progress import progress_bar
from .device import check_fits
from .layers import channel_axis, execution_order, read_unchecked, resolve_layers
from .models import as_model, fold_batchnorm

__all__ = [
    "ESTIMATORS",
    "RandomDiffeo",
    "filter_homogeneity",
    "matched_noise",
    "measure",
    "relative_depths",
]

ESTIMATORS = ("mean", "median")


def _sin2_mean(k: torch.Tensor, n: int) -> torch.Tensor:
    """Mean over the n pixel centres ``linspace(0, 1, n)`` of ``sin²(kπs)``."""
    s = torch.linspace(0, 1, n, dtype=torch.float64)
    return torch.sin(math.pi * k[:, None] * s[None, :]).pow(2).mean(1)


@dataclass
class RandomDiffeo:
    """Maximum-entropy random diffeomorphisms of a batch ``(n, C, H, W)`` (see the module
    docstring for the T ↔ δ convention). Give ``displacement`` (δ, RMS pixels, default 1) or
    ``temperature`` (T); ``cut`` is the cut-off c. Every image gets its own field, drawn from
    ``generator``; the border stays fixed (the sines vanish there); values are resampled
    bilinearly (``interp="nearest"`` also available), so they stay within the image's range.
    """

    displacement: float | None = None
    temperature: float | None = None
    cut: float = 3
    interp: str = "bilinear"
    generator: torch.Generator | None = None

    def __post_init__(self) -> None:
        if self.cut <= 1:
            raise ConfigError(
                f"--cut must be > 1 (c = 1 has ln c = 0: no valid temperature), not {self.cut:g}"
            )
        if self.cut < math.sqrt(2):
            raise ConfigError(f"--cut {self.cut:g} keeps no mode: √(i² + j²) ≥ √2; use c ≥ 2")
        k = math.floor(self.cut)  # the modes are K × K tables of float64 (four at once)
        check_fits(32.0 * k * k, f"--cut {self.cut:g} ({k:,} × {k:,} modes)",
                   "use a cut-off below the image side (the papers use c = 3 … 15)")  # fmt: skip
        if self.displacement is not None and self.temperature is not None:
            raise ConfigError("give the displacement δ or the temperature T, not both")
        if self.displacement is None and self.temperature is None:
            self.displacement = 1.0
        value = self.displacement if self.displacement is not None else self.temperature
        if not (math.isfinite(value) and value >= 0):
            raise ConfigError(f"displacement / temperature must be ≥ 0, not {value:g}")
        if self.interp not in ("bilinear", "nearest"):
            raise ConfigError(f"interp must be bilinear or nearest, not {self.interp!r}")

    # ------------------------------------------------------------- conventions

    def _modes(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Mode numbers 1..K and the mask ``√(i² + j²) ≤ c`` (K × K)."""
        k = torch.arange(1, math.floor(self.cut) + 1, dtype=torch.float64)
        r2 = k[:, None] ** 2 + k[None, :] ** 2
        return k, r2 <= self.cut**2 + 1e-9

    def _energy(self, h: int, w: int) -> float:
        """δ² / T for an h × w image (exact: pixel means of the modes' squares)."""
        k, mask = self._modes()
        r2 = k[:, None] ** 2 + k[None, :] ** 2
        # i runs along s (horizontal, W pixels), j along t (vertical, H pixels)
        per = _sin2_mean(k, w)[:, None] * _sin2_mean(k, h)[None, :] / r2
        return float((w**2 + h**2) * (per * mask).sum())

    def temperature_for(self, h: int, w: int) -> float:
        """T for this sampler on an h × w image (from δ when δ was given)."""
        if self.temperature is not None:
            return float(self.temperature)
        return float(self.displacement) ** 2 / self._energy(h, w)

    def displacement_for(self, h: int, w: int) -> float:
        """δ, the RMS pixel displacement, on an h × w image."""
        return math.sqrt(self.temperature_for(h, w) * self._energy(h, w))

    def paper_displacement(self, h: int, w: int) -> float:
        """The papers' δ = n·√(πT ln c)/2 (n = √(h·w)), for comparison with their numbers."""
        n = math.sqrt(h * w)
        return n * math.sqrt(math.pi * self.temperature_for(h, w) * math.log(self.cut)) / 2

    @staticmethod
    def temperature_range(n: int, cut: float) -> tuple[float, float]:
        """The useful T interval for an n × n image (the authors' bounds): from
        ``1/(π n² ln c)`` (the papers' δ = ½ px) to ``4/(π³ c² ln c)`` (beyond it the map
        can fold over)."""
        if cut <= 1:
            raise ConfigError(f"--cut must be > 1 (c = 1 has ln c = 0), not {cut:g}")
        log = math.log(cut)
        return 1 / (math.pi * n**2 * log), 4 / (math.pi**3 * cut**2 * log)

    def check(self, h: int, w: int) -> float:
        """T on an h × w image, refused with the valid interval when outside it."""
        t = self.temperature_for(h, w)
        lo, hi = self.temperature_range(round(math.sqrt(h * w)), self.cut)
        if t > hi * (1 + 1e-9) or (0 < t < lo * (1 - 1e-9)):
            what = f"δ = {self.displacement:g} px" if self.temperature is None else f"T = {t:.4g}"
            raise ConfigError(
                f"{what} at c = {self.cut:g} on {h}×{w} images is T = {t:.4g}, outside the "
                f"valid interval [{lo:.4g}, {hi:.4g}] (below: under half a pixel; above: the "
                f"map folds over); δ from {math.sqrt(lo * self._energy(h, w)):.3g} to "
                f"{math.sqrt(hi * self._energy(h, w)):.3g} px is valid here"
            )
        return t

    def config(self, h: int, w: int) -> dict:
        """What a run records: δ (RMS px), the papers' δ, T, c, interpolation."""
        return {
            "displacement": self.displacement_for(h, w),
            "displacement_paper": self.paper_displacement(h, w),
            "temperature": self.temperature_for(h, w),
            "cut": self.cut,
            "interp": self.interp,
            "convention": "displacement = RMS pixel displacement over the image (exact)",
        }

    # ------------------------------------------------------------- sampling

    def fields(self, n: int, h: int, w: int, device=None) -> torch.Tensor:
        """Displacement fields in pixels, ``(n, 2, h, w)``: channel 0 horizontal, 1 vertical."""
        k, mask = self._modes()
        t = self.temperature_for(h, w)
        gen_device = self.generator.device if self.generator is not None else "cpu"
        z = torch.randn(n, 2, len(k), len(k), generator=self.generator, device=gen_device)
        r2 = k[:, None] ** 2 + k[None, :] ** 2
        scale = (math.sqrt(t) * mask / r2.sqrt()).to(z.device, z.dtype)
        coef = (z * scale).to(device or z.device)
        k = k.to(coef.device, coef.dtype)
        sin_s = torch.sin(math.pi * torch.linspace(0, 1, w, device=coef.device)[:, None] * k)
        sin_t = torch.sin(math.pi * torch.linspace(0, 1, h, device=coef.device)[:, None] * k)
        u = torch.einsum("baij,xi,yj->bayx", coef, sin_s, sin_t)
        sides = torch.tensor([w, h], device=coef.device, dtype=coef.dtype).view(1, 2, 1, 1)
        return u * sides

    def apply(self, images: torch.Tensor, fields: torch.Tensor) -> torch.Tensor:
        """Resample ``images`` at each pixel + its displacement (border fixed)."""
        h, w = images.shape[-2:]
        ys = torch.linspace(-1, 1, h, device=images.device, dtype=images.dtype)
        xs = torch.linspace(-1, 1, w, device=images.device, dtype=images.dtype)
        gy, gx = torch.meshgrid(ys, xs, indexing="ij")
        f = fields.to(images.dtype)
        px = 2 / max(w - 1, 1) * f[:, 0]  # pixels → normalised coordinates
        py = 2 / max(h - 1, 1) * f[:, 1]
        grid = torch.stack([gx + px, gy + py], dim=-1)
        return F.grid_sample(
            images, grid, mode=self.interp, padding_mode="border", align_corners=True
        )

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if images.dim() != 4:
            raise ConfigError(f"RandomDiffeo takes a batch (n, C, H, W), not {tuple(images.shape)}")
        n, _, h, w = images.shape
        return self.apply(images, self.fields(n, h, w, images.device))


def matched_noise(
    clean: torch.Tensor, deformed: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """White noise η with, image by image, exactly the norm ‖τ(x) − x‖ of the deformation."""
    gen_device = generator.device if generator is not None else "cpu"
    eta = torch.randn(clean.shape, generator=generator, device=gen_device).to(clean)
    target = (deformed - clean).flatten(1).norm(dim=1)
    norm = eta.flatten(1).norm(dim=1).clamp_min(torch.finfo(eta.dtype).tiny)
    return eta * (target / norm).view(-1, *([1] * (clean.dim() - 1)))


# ------------------------------------------------------------------- measures


class _Accumulator:
    """Per layer: per-image ‖f(τx) − f(x)‖² and ‖f(x + η) − f(x)‖² (float64), and the running
    sums for the mean distinct-pair distance (shifted by the first batch's mean, so the
    float64 sums do not cancel). With the median estimator, the per-feature squared
    differences are kept too (n × features)."""

    def __init__(self, keep_features: bool) -> None:
        self.d: list[torch.Tensor] = []
        self.g: list[torch.Tensor] = []
        self.shift: torch.Tensor | None = None
        self.sum = 0.0
        self.sum_sq = 0.0
        self.count = 0
        self.keep = keep_features
        self.parts: dict[str, list[torch.Tensor]] = {"d": [], "g": [], "a": []}
        self.channels = 0
        self.d_channel = 0.0  # per channel: Σ_images ‖f_c(τx) − f_c(x)‖²
        self.sum_sq_channel = 0.0  # per channel: Σ_images ‖f_c(x) − shift_c‖²

    def update(self, out: torch.Tensor) -> None:
        b = out.shape[0] // 3
        axis = channel_axis(out)
        grouped = out.movedim(axis, 1).reshape(out.shape[0], out.shape[axis], -1)  # n × C × P
        self.channels = grouped.shape[1]
        flat = grouped.flatten(1)
        a, deformed, noisy = flat[:b].float(), flat[b : 2 * b].float(), flat[2 * b :].float()
        dd, dg = (deformed - a).pow(2), (noisy - a).pow(2)
        # one float64-accumulated reduction per (image, channel); image and channel totals
        # come from it (float32 elements, float64 sums)
        d_ic = dd.view(b, self.channels, -1).sum(2, dtype=torch.float64)
        self.d.append(d_ic.sum(1).cpu())
        self.g.append(dg.sum(1, dtype=torch.float64).cpu())
        self.d_channel = self.d_channel + d_ic.sum(0)
        if self.shift is None:
            self.shift = a.mean(0, dtype=torch.float64).float()
        c = a - self.shift  # centred on the first batch: the float64 sums below do not cancel
        c2_ic = c.pow(2).view(b, self.channels, -1).sum(2, dtype=torch.float64)
        self.sum = self.sum + c.sum(0, dtype=torch.float64)
        self.sum_sq += float(c2_ic.sum())
        self.sum_sq_channel = self.sum_sq_channel + c2_ic.sum(0)
        self.count += b
        if self.keep:
            self.parts["d"].append(dd.cpu())
            self.parts["g"].append(dg.cpu())
            self.parts["a"].append(a.cpu())

    def pair_mean(self) -> float:
        """E‖f(x1) − f(x2)‖² over all ordered pairs of distinct images (the zero diagonal
        excluded): (2N Σ‖a‖² − 2‖Σa‖²) / (N(N − 1))."""
        n = self.count
        if n < 2:
            return float("nan")
        total = 2 * n * self.sum_sq - 2 * float(torch.as_tensor(self.sum).pow(2).sum())
        return total / (n * (n - 1))

    def channel_sensitivities(self) -> torch.Tensor:
        """D_f of each channel's map alone (its own distinct-pair denominator); channels
        that are constant on the data (dead units) are left out."""
        n = self.count
        sums = torch.as_tensor(self.sum).view(self.channels, -1)
        den = (2 * n * self.sum_sq_channel - 2 * sums.pow(2).sum(1)) / (n * (n - 1))
        live = den > 1e-12 * float(den.max()) if n > 1 else den > 0
        return (self.d_channel / n)[live] / den[live]


def _median_estimate(acc: _Accumulator) -> tuple[float, float, float]:
    """Petrini et al.'s estimator (diffeo-sota ``relative_distance``): for each feature the
    median over images of the squared difference, summed over features; the denominator is the
    median of ‖f(x1) − f(x2)‖² over pairs of distinct images (their code also counts the zero
    distance of each image to itself)."""
    d = torch.cat(acc.parts["d"]).double()
    g = torch.cat(acc.parts["g"]).double()
    a = torch.cat(acc.parts["a"]).double()
    i, j = torch.triu_indices(len(a), len(a), offset=1)
    den = float(_median(torch.cdist(a, a).pow(2)[i, j]))
    return _ratio(float(_median(d).sum()), den), _ratio(float(_median(g).sum()), den), den


def _median(x: torch.Tensor) -> torch.Tensor:
    """The median along dim 0 as numpy defines it (the mean of the two middle values for an
    even count; ``torch.median`` returns the lower one)."""
    s = x.sort(0).values
    return (s[(len(s) - 1) // 2] + s[len(s) // 2]) / 2


def _batches(images, batch_size: int):
    if isinstance(images, torch.Tensor):
        yield from images.split(batch_size)
        return
    from torch.utils.data import DataLoader

    for x, *_ in DataLoader(images, batch_size=batch_size, shuffle=False):
        yield x


def measure(
    model: torch.nn.Module,
    images,
    layers: str | Sequence[str] = "all",
    diffeo: RandomDiffeo | None = None,
    *,
    estimator: str = "mean",
    batch_size: int = 64,
    bootstrap: int = 200,
    seed: int = 0,
    device: str | torch.device | None = None,
    progress: bool = False,
    max_median_bytes: float = 2e9,
) -> list[dict]:
    """D_f, G_f and R_f of ``model`` at each of ``layers`` and at its output (``"output"``).
    (One function of ~120 lines, most of it this docstring and the per-layer running sums
    that one pass over the batches fills: clean, deformed and noisy copies go through one
    truncated forward together.)

    ``images``: an ``n × 3 × H × W`` tensor or a data set of ``(image, label)`` (its order is
    kept). ``device``: where to compute (default: where the model is; the caller's model is
    never moved or changed). ``diffeo``: the deformations (default: δ = 1 px, c = 3, seeded
    by ``seed``); the matched noise is drawn from a generator seeded by ``seed`` too.

    ``estimator="mean"`` (default, Tomasini et al.'s code): means over images; the
    denominator is the mean over *all* pairs of distinct images (the zero diagonal excluded),
    computed exactly from running sums. For f = identity, D_f = G_f and R_f = 1 exactly,
    because the noise norm is matched image by image. ``"median"`` (Petrini et al.'s code):
    per-feature medians over images, summed, over the median distinct-pair distance; biased:
    for f = identity it gives R_f = 0.15 on 64 photo crops at 32 px (δ = 1 px, c = 3), not 1,
    since the median of a heavy-tailed deformation difference is far below that of Gaussian
    noise of the same norm. Error bars: the standard deviation of ``bootstrap`` resamples of the
    images (mean estimator; the denominator, over n(n − 1) pairs, is held fixed).

    Returns one dict per layer: layer, depth (the layer's position in the forward pass over
    the output's, so the output is 1), D, G, R, their ``*_err``, the denominator, n, the
    estimator and the deformation's δ, δ_paper, T, c; and ``D_channel_q25/median/q75``, the
    quartiles over channels of D_f of each channel's map alone. The whole layer's D_f is the
    average of the channels' D_f weighted by how much each channel varies across images, so
    ``D < D_channel_median`` says the channels that tell images apart are the stable ones:
    the layer's information sits in channels that pooled over the deformation (channel
    pooling), while typical channels stay sensitive.
    """
    if estimator not in ESTIMATORS:
        raise ConfigError(f"--estimator must be one of {', '.join(ESTIMATORS)}, not {estimator!r}")
    if batch_size < 2:
        raise ConfigError(f"--batch-size must be at least 2, not {batch_size}")
    model = as_model(model)
    param = next(model.parameters(), None)
    dev = torch.device(device) if device is not None else (
        param.device if param is not None else torch.device("cpu")
    )  # fmt: skip
    names = resolve_layers(model, layers)
    if "output" not in names:
        names.append("output")
    model = fold_batchnorm(model, keep=set(names))  # same function, ~1.3× faster on a CPU
    if param is not None and param.device != dev:
        model = copy.deepcopy(model).to(dev)  # the caller's model stays where it is
    diffeo = diffeo or RandomDiffeo(generator=torch.Generator().manual_seed(seed))
    noise_gen = torch.Generator().manual_seed(seed + 1)
    accs = {name: _Accumulator(estimator == "median") for name in names}

    def reduce(name: str, out: torch.Tensor) -> None:
        accs[name].update(out)
        return None

    shape = None
    total = len(images) if hasattr(images, "__len__") else None
    steps = None if total is None else math.ceil(total / batch_size)
    with torch.no_grad(), progress_bar(steps or 0, enabled=progress) as bar:
        for x in _batches(images, batch_size):
            if shape is None:
                shape = x.shape[-2:]
                diffeo.check(*shape)
                if estimator == "median":
                    _check_median_memory(model, x, names, total, max_median_bytes)
            x = x.to(dev, torch.float32)
            deformed = diffeo(x)
            noisy = x + matched_noise(x, deformed, noise_gen)
            read_unchecked(model, torch.cat([x, deformed, noisy]), names, transform=reduce)
            bar.advance(1)
    if shape is None:
        raise ConfigError("no images to measure")
    depths = relative_depths(model, names, shape, names)
    boot = torch.Generator().manual_seed(seed + 2)
    rows = []
    for name in names:
        acc = accs[name]
        den = acc.pair_mean()
        d, g = torch.cat(acc.d), torch.cat(acc.g)
        if estimator == "mean":
            dv, gv = _ratio(float(d.mean()), den), _ratio(float(g.mean()), den)
        else:
            dv, gv, den = _median_estimate(acc)
        errs = _bootstrap(d, g, den, bootstrap, boot) if estimator == "mean" else (math.nan,) * 3
        depth = depths[name]
        per_channel = acc.channel_sensitivities()
        quart = (
            torch.quantile(per_channel, torch.tensor([0.25, 0.5, 0.75], dtype=torch.float64))
            if len(per_channel)
            else torch.full((3,), math.nan)
        )
        rows.append(
            {
                "layer": name,
                "depth": depth,
                "D": dv,
                "G": gv,
                "R": dv / gv if gv > 0 else math.nan,
                "D_err": errs[0],
                "G_err": errs[1],
                "R_err": errs[2],
                "denominator": den,
                "D_channel_q25": float(quart[0]),
                "D_channel_median": float(quart[1]),
                "D_channel_q75": float(quart[2]),
                "channels": acc.channels,
                "n": acc.count,
                "estimator": estimator,
            }
            | {k: v for k, v in diffeo.config(*shape).items() if k != "convention"}
        )
    rows.sort(key=lambda r: r["depth"])
    return rows


def _ratio(num: float, den: float) -> float:
    """num / den, with 0 / 0 = 0: a layer that is constant on the data moves under nothing."""
    if den > 0:
        return num / den
    return 0.0 if num == 0 else math.inf


def relative_depths(
    model: torch.nn.Module, names: Sequence[str], shape, reference: Sequence[str]
) -> dict[str, float]:
    """Each module's position in the forward pass over that of the deepest module in
    ``reference`` (one more than it: that module is just below 1); ``"output"`` is 1."""
    model = as_model(model)
    dev = next((p.device for p in model.parameters()), torch.device("cpu"))
    order = execution_order(model, torch.zeros(1, 3, *shape, device=dev))
    last = max([order[n] for n in reference if n != "output"], default=-1) + 1
    return {n: 1.0 if n == "output" else (order[n] + 1) / (last + 1) for n in names}


def _bootstrap(
    d: torch.Tensor, g: torch.Tensor, den: float, replicates: int, generator: torch.Generator
) -> tuple[float, float, float]:
    if replicates < 2 or len(d) < 2:
        return (math.nan,) * 3
    idx = torch.randint(0, len(d), (replicates, len(d)), generator=generator)
    dd, gg = d[idx].mean(1) / den, g[idx].mean(1) / den
    return float(dd.std()), float(gg.std()), float((dd / gg).std())


def _check_median_memory(model, x, names, total, limit: float) -> None:
    from .layers import describe_layers

    if total is None:
        return
    sizes = {i.name: i.numel for i in describe_layers(model, x.shape[-1])}
    features = sum(sizes.get(n, 0) for n in names)
    need = 3 * 4 * features * total
    if need > limit:
        raise ConfigError(
            f"the median estimator keeps every image's features: {need / 1e9:.1f} GB for "
            f"{total} images here; use --estimator mean, fewer --layers or a smaller --n"
        )


def filter_homogeneity(model: torch.nn.Module) -> list[dict]:
    """Spatial pooling read from the weights (Tomasini et al.: a layer pools spatially when its
    filters approach the homogeneous filter, all F×F entries equal). For every convolution
    with a kernel larger than 1×1: the share of each filter ``w_{c,c'}``'s energy in its
    constant part, ``F²·mean(w)² / ‖w‖²``, averaged over the filters. 1 for an average-pooling
    filter; exactly ``1/F²`` in expectation for any initialisation with independent,
    sign-symmetric entries (PyTorch's default), so a value above ``1/F²`` after training is
    learned spatial pooling. (Channel pooling, the other half of the papers' decomposition,
    is not measured here.)"""
    net = as_model(model).net
    rows = []
    for name, module in net.named_modules():
        if (
            not isinstance(module, torch.nn.Conv2d)
            or module.weight.shape[-1] * module.weight.shape[-2] < 2
        ):
            continue
        w = module.weight.detach().double().flatten(2)  # out × in/groups × F²
        f2 = w.shape[-1]
        energy = w.pow(2).sum(-1)
        share = f2 * w.mean(-1).pow(2) / energy.clamp_min(torch.finfo(torch.float64).tiny)
        rows.append(
            {
                "layer": name,
                "homogeneity": float(share[energy > 0].mean()),
                "random_level": 1 / f2,
                "kernel": "×".join(map(str, module.weight.shape[-2:])),
                "filters": int(share.numel()),
            }
        )
    return rows
