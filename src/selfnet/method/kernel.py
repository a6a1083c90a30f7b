"""The extra blur an axial slice has over an XY slice, as a 2D (z, x) kernel fitted to the stack's spectra.

A Gaussian PSF needs only a z blur, but real optics do not: a confocal PSF has long axial tails,
and a wide-field PSF spreads out-of-focus light into a cone (its haze), so the blur of an XZ slice
grows along x with the distance from focus. :class:`AxialKernel` is a small family covering these
(a Gaussian core, a broad z tail and a cone), and :func:`fit_axial_kernel` picks the member whose
2D transfer function best explains the ratio of the real axial to the XY_lr power spectra.
numpy for the fit; :func:`blur2d` applies a kernel to torch batches, and :func:`kernel_retention`
says how much of the z-sampled noise it keeps (which bounds the recorrupted pairs' alpha).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Protocol

import numpy as np
import torch

from selfnet.method.estimate import noise_retention
from selfnet.method.resample import degrade_matrix

TAILS: tuple[float, ...] = (0.0, 0.15, 0.3, 0.5, 0.7, 0.85)
TAIL_WIDTHS: tuple[float, ...] = (2.5, 5.0, 8.0)  # times the core; a wide-field PSF sends most light far (0.85, 8)
CONES: tuple[float, ...] = (0.0, 0.4, 0.8, 1.2, 1.6, 2.4)
MAX_RADIUS = 32
BAND = 0.3  # highest z frequency fitted, as a fraction of the raw z sampling rate: above it aliasing bends the ratio
PARSIMONY = 0.75  # a tail or cone must cut the fit's residual by 25 % over the best Gaussian to be kept
RING_WIDTH = 2.0  # frequency bins per ring of the free radial factor
PSF_MISFIT = 2.0  # a PSF file's kernel explaining the stack's spectra this many times worse than the fit: other optics


class Kernel2D(Protocol):
    """What training needs of an axial kernel: fitted (:class:`AxialKernel`) or from a PSF file."""

    @property
    def sigma(self) -> float: ...

    @property
    def gaussian(self) -> bool: ...

    @property
    def radius(self) -> int: ...

    def taps(self, radius: int | None = None) -> np.ndarray: ...

    def profile(self) -> np.ndarray: ...


@dataclass(frozen=True)
class AxialKernel:
    """z blur (rows) and out-of-focus spread (columns) of an axial slice relative to an XY slice.

    The z profile is ``(1 - tail) N(0, sigma) + tail N(0, tail_sigma)``; the light arriving from
    ``|z|`` beyond the core spreads along x with standard deviation ``cone * (|z| - sigma)``.
    ``tail = cone = 0`` is the plain Gaussian z blur of the physics prior.
    """

    sigma: float
    tail: float = 0.0
    tail_sigma: float = 0.0
    cone: float = 0.0

    @property
    def gaussian(self) -> bool:
        """A z blur alone (no tail, no cone)."""
        return self.tail == 0 and self.cone == 0

    @property
    def radius(self) -> int:
        """Half-size (px) of :meth:`taps`: three standard deviations of the widest z part."""
        width = max(self.sigma, self.tail_sigma if self.tail > 0 else 0.0)
        return min(math.ceil(3 * width), MAX_RADIUS)

    def taps(self, radius: int | None = None) -> np.ndarray:
        """(2r + 1, 2r + 1) kernel, z along rows, unit sum (a delta for no blur)."""
        r = self.radius if radius is None else radius
        t = np.arange(-r, r + 1, dtype=np.float64)
        z = _gauss(t, self.sigma)
        if self.tail > 0:
            z = (1 - self.tail) * z + self.tail * _gauss(t, self.tail_sigma)
        spread = self.cone * np.clip(np.abs(t) - self.sigma, 0.0, None)
        rows = np.stack([_gauss(t, s) for s in spread])
        kernel = z[:, None] * rows
        return kernel / kernel.sum()

    def profile(self) -> np.ndarray:
        """The z profile (the kernel summed over x)."""
        return self.taps().sum(axis=1)

    def as_dict(self) -> dict[str, float]:
        """Rounded parameters for the model summary."""
        return {k: round(v, 3) for k, v in asdict(self).items()}


def _gauss(t: np.ndarray, sigma: float) -> np.ndarray:
    """Normalised Gaussian taps at ``t`` (a delta for sigma ~ 0)."""
    if sigma < 1e-3:
        return (t == 0).astype(np.float64)
    g = np.exp(-0.5 * (t / sigma) ** 2)
    return g / g.sum()


def profile_sigma(profile: np.ndarray) -> float:
    """Standard deviation (px) of a centred 1D profile of unit sum (0 for a negative variance)."""
    t = np.arange(len(profile)) - len(profile) // 2
    mean = float((profile * t).sum())
    return float(math.sqrt(max(float((profile * (t - mean) ** 2).sum()), 0.0)))


def spectrum2d(patches: np.ndarray) -> np.ndarray:
    """Mean 2D power spectrum (rows: full FFT, columns: rFFT) of Hann-windowed, mean-free patches."""
    p = patches - patches.mean(axis=(-2, -1), keepdims=True)
    win = np.outer(np.hanning(p.shape[-2]), np.hanning(p.shape[-1])).astype(np.float32)
    return (np.abs(np.fft.rfft2(p * win)) ** 2).mean(axis=0)


def centred_grid(taps: np.ndarray, height: int, width: int) -> np.ndarray:
    """An odd kernel on a (height, width) grid with its centre at the origin (for FFT convolution)."""
    taps = np.asarray(taps, dtype=np.float64)
    grid = np.zeros((height, width))
    grid[:taps.shape[0], :taps.shape[1]] = taps
    return np.roll(grid, (-(taps.shape[0] // 2), -(taps.shape[1] // 2)), axis=(0, 1))


def transfer2(kernel: Kernel2D, size: int) -> np.ndarray:
    """|H|^2 of ``kernel`` on the (size, size // 2 + 1) grid of :func:`spectrum2d`."""
    taps = kernel.taps(min(kernel.radius, size // 2 - 1))
    return np.abs(np.fft.rfft2(centred_grid(taps, size, size))) ** 2


def fit_axial_kernel(xy_lr: np.ndarray, axial: np.ndarray, ratio: float, noise_var: float,
                     max_sigma: float) -> tuple[AxialKernel, float] | None:
    """Member of the :class:`AxialKernel` family whose |H|^2 best matches the axial / XY_lr spectra.

    A tail or cone is kept only where it explains clearly more than a Gaussian (:data:`PARSIMONY`).
    Returns the kernel and that evidence (best tail/cone residual over best Gaussian residual), or
    None when the patches hold too little signal (see :func:`spectral_cost`).
    """
    cost = spectral_cost(xy_lr, axial, ratio, noise_var)
    if cost is None:
        return None
    gaussian, richer = _best(cost, max_sigma)
    evidence = richer[0] / max(gaussian[0], 1e-12)
    return (richer[1] if evidence < PARSIMONY else gaussian[1]), evidence


def misfit_scorer(xy_lr: np.ndarray, axial: np.ndarray, ratio: float, noise_var: float,
                  max_sigma: float) -> Callable[[Kernel2D], float] | None:
    """How much worse a kernel (from a PSF) explains the stack's spectra than the best family member.

    1 or below: the PSF fits the stack at least as well as the fit itself; well above (a PSF computed
    without the sample's aberration, a wrong voxel size): the PSF describes other optics. None when
    the patches hold too little signal to tell. The spectra are read once, for many kernels.
    """
    cost = spectral_cost(xy_lr, axial, ratio, noise_var)
    if cost is None:
        return None
    best = max(min(value for value, _ in _best(cost, max_sigma)), 1e-12)
    return lambda kernel: cost(kernel) / best


def _best(cost: Callable[[Kernel2D], float], max_sigma: float) -> tuple[tuple[float, AxialKernel], ...]:
    """(cost, kernel) of the best Gaussian and of the best kernel with a tail or cone, on the grid."""
    best: dict[bool, tuple[float, AxialKernel]] = {}
    for kernel in _candidates(max_sigma):
        value = cost(kernel)
        if kernel.gaussian not in best or value < best[kernel.gaussian][0]:
            best[kernel.gaussian] = (value, kernel)
    return best[True], best[False]


def spectral_cost(xy_lr: np.ndarray, axial: np.ndarray, ratio: float,
                  noise_var: float) -> Callable[[Kernel2D], float] | None:
    """How badly a kernel's |H|^2 explains the ratio of the real axial to the XY_lr power spectra.

    Frequencies well below the raw z Nyquist frequency (:data:`BAND`) with signal above the noise
    floor (fainter ones bend the fit towards tails wherever the floor is a little off), over both
    axes, so that how the z blur changes with lateral frequency (a cone) shows. An XY slice is a
    thicker optical section than an axial one, which changes its spectrum by a factor of the
    frequency's magnitude alone (isotropic objects), so the cost leaves a free factor per ring of
    ``|f|`` and judges a kernel by the direction dependence it explains: weighted least squares in
    log power. None when the patches hold too little signal.
    """
    size = xy_lr.shape[-2]
    white = np.random.default_rng(0).normal(0.0, math.sqrt(noise_var), (64, size, size)).astype(np.float32)
    floor = spectrum2d(degrade_matrix(size, ratio) @ white)
    sig_a, sig_l = spectrum2d(axial) - floor, spectrum2d(xy_lr) - floor
    fz = np.abs(np.fft.fftfreq(size))[:, None] * np.ones((1, floor.shape[1]))
    usable = (fz > 1.5 / size) & (fz < BAND / ratio) & (sig_l > floor) & (sig_a > floor)
    if np.unique(fz[usable]).size < 2:
        return None
    ratio_log = np.log(sig_a[usable] / sig_l[usable])
    weight = np.sqrt(np.clip(np.minimum(sig_l[usable], sig_a[usable]) / floor[usable], 0.1, 10.0))
    fx = np.fft.rfftfreq(size)[None, :]
    ring = np.round(np.hypot(fz, fx)[usable] * size / RING_WIDTH).astype(np.int64)
    ring_weight = np.maximum(np.bincount(ring, weight), 1e-12)

    def cost(kernel: Kernel2D) -> float:
        resid = ratio_log - np.log(np.maximum(transfer2(kernel, size)[usable], 1e-12))
        resid -= (np.bincount(ring, weight * resid) / ring_weight)[ring]
        return float(np.average(resid**2, weights=weight))

    return cost


def _candidates(max_sigma: float) -> list[AxialKernel]:
    """The search grid: every core width with every tail and cone (tail 0 and cone 0: the Gaussians)."""
    out = []
    for s in np.arange(0.0, max_sigma + 1e-9, 0.25):
        for tail, width, cone in itertools.product(TAILS, TAIL_WIDTHS, CONES):
            if tail == 0 and width != TAIL_WIDTHS[0]:
                continue
            out.append(AxialKernel(float(s), tail, float(width * max(s, 1.0)) if tail else 0.0, cone))
    return out


def kernel_spectrum(taps: np.ndarray, height: int, width: int, device: torch.device | None = None) -> torch.Tensor:
    """rFFT of ``taps`` centred on a (height, width) grid: computed once, applied by :func:`filter2d`."""
    return torch.fft.rfft2(torch.from_numpy(centred_grid(taps, height, width)).float().to(device))


def filter2d(x: torch.Tensor, spectrum: torch.Tensor) -> torch.Tensor:
    """Circular 2D convolution of (..., H, W) with a kernel given by its :func:`kernel_spectrum`.

    Callers keep a frame of at least the kernel radius around what they use, so the wrap-around
    never reaches it.
    """
    return torch.fft.irfft2(torch.fft.rfft2(x) * spectrum, s=x.shape[-2:])


def blur2d(x: torch.Tensor, taps: np.ndarray) -> torch.Tensor:
    """:func:`filter2d` with a centred odd kernel given by its taps."""
    return filter2d(x, kernel_spectrum(taps, *x.shape[-2:], device=x.device))


def kernel_retention(size: int, step: float, kernel: Kernel2D) -> float:
    """Fraction of z-sampled noise variance that survives ``kernel`` before the sampling."""
    if kernel.gaussian:
        return noise_retention(size, step, kernel.sigma)
    noise = torch.from_numpy(np.random.default_rng(1).normal(size=(16, size, size)).astype(np.float32))
    sampling = torch.from_numpy(degrade_matrix(size, step))
    r = max(kernel.radius, 1)
    plain = (sampling @ noise)[:, r:-r, r:-r]
    blurred = (sampling @ blur2d(noise, kernel.taps()))[:, r:-r, r:-r]
    return float(blurred.var() / plain.var())
