"""What the stack itself tells about its degradation: noise model and extra axial blur.

These estimates initialise the degradation generator G_A, so the CycleGAN starts near the right
answer and only refines it (vital on CPU budgets), and they are reported as sanity figures.
numpy/scipy only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from selfnet.method.resample import blur_matrix, degrade_matrix


@dataclass(frozen=True)
class NoiseModel:
    """Poisson-Gaussian noise: ``variance = gain * signal + read_var`` (normalised units)."""

    gain: float
    read_var: float

    def variance(self, signal: float | np.ndarray) -> float | np.ndarray:
        """Noise variance at a given mean signal."""
        return self.gain * np.maximum(signal, 0.0) + self.read_var


def estimate_noise(planes: np.ndarray, *, bins: int = 24) -> NoiseModel:
    """Fit variance = gain·signal + read_var from XY planes (robust local statistics).

    A 4-neighbour Laplacian residual isolates pixel-scale noise (variance factor 1.25 for white
    noise); a median-based variance in bins of local mean ignores the sparse structure edges.
    """
    planes = np.asarray(planes, dtype=np.float32)
    kernel = np.array([[0, -0.25, 0], [-0.25, 1, -0.25], [0, -0.25, 0]], dtype=np.float32)
    resid = ndimage.convolve(planes, kernel[None], mode="reflect")[:, 1:-1, 1:-1].ravel()
    local = ndimage.gaussian_filter(planes, (0, 2, 2))[:, 1:-1, 1:-1].ravel()
    edges = np.unique(np.percentile(local, np.linspace(0, 99.5, bins + 1)))
    which = np.digitize(local, edges[1:-1])
    means, variances, weights = [], [], []
    for b in range(len(edges) - 1):
        sel = resid[which == b]
        if sel.size < 200:
            continue
        mad = np.median(np.abs(sel - np.median(sel)))
        means.append(local[which == b].mean())
        variances.append((1.4826 * mad) ** 2 / 1.25)
        weights.append(np.sqrt(sel.size))
    if len(means) < 2:
        return NoiseModel(0.0, float(np.var(resid) / 1.25))
    gain, read = np.polyfit(np.array(means), np.array(variances), 1, w=np.array(weights))
    if gain < 0:
        gain, read = 0.0, float(np.median(variances))
    return NoiseModel(float(gain), float(max(read, 1e-8)))


def row_spectrum(patches: np.ndarray) -> np.ndarray:
    """Mean power spectrum along rows (axis -2) of a stack of patches, Hann-windowed."""
    p = patches - patches.mean(axis=-2, keepdims=True)
    win = np.hanning(p.shape[-2]).astype(np.float32)[:, None]
    spec = np.abs(np.fft.rfft(p * win, axis=-2)) ** 2
    return spec.mean(axis=(0, -1))


def estimate_axial_blur(xy_lr: np.ndarray, axial: np.ndarray, ratio: float, noise_var: float) -> float | None:
    """Extra Gaussian blur (sigma, px) along z of real axial patches relative to XY_lr patches.

    Ratio of the two row spectra after removing the (equal) interpolated-noise floor, fitted as
    ``log R(f) = c - 4 pi^2 sigma^2 f^2`` below the raw z Nyquist frequency. Frequencies where the
    signal is down to half the noise floor still count (sparse, dim samples have little else), each
    weighted by its signal-to-noise ratio. None when fewer than two frequencies are usable (the
    patches hold too little signal above the noise to tell).
    """
    size = xy_lr.shape[-2]
    freqs = np.fft.rfftfreq(size)
    rng = np.random.default_rng(0)
    white = rng.normal(0.0, np.sqrt(noise_var), (64, size, size)).astype(np.float32)
    floor = row_spectrum(degrade_matrix(size, ratio) @ white)
    sig_a = row_spectrum(axial) - floor
    sig_l = row_spectrum(xy_lr) - floor
    usable = (freqs > 1.5 / size) & (freqs < 0.45 / ratio) & (sig_l > 0.5 * floor) & (sig_a > 0.25 * floor)
    if usable.sum() < 2:
        return None
    f2 = freqs[usable] ** 2
    snr = np.minimum(sig_l[usable], sig_a[usable]) / floor[usable]
    slope, _ = np.polyfit(f2, np.log(sig_a[usable] / sig_l[usable]), 1, w=np.sqrt(np.clip(snr, 0.1, 10.0)))
    return float(np.clip(np.sqrt(max(-slope, 0.0) / (4 * np.pi**2)), 0.0, max_axial_sigma(ratio)))


def max_axial_sigma(ratio: float) -> float:
    """Largest extra axial blur (px) any estimate may report: three z steps, or 9 px for fine steps."""
    return 3.0 * max(ratio, 3.0)


def noise_retention(size: int, ratio: float, sigma: float) -> float:
    """Fraction of z-sampled noise variance that survives a z blur of ``sigma`` px before sampling."""
    if sigma <= 0:
        return 1.0
    noise = np.random.default_rng(1).normal(size=(16, size, size)).astype(np.float32)
    sampling = degrade_matrix(size, ratio)
    plain = sampling @ noise
    blurred = (sampling @ blur_matrix(size, sigma)) @ noise
    return float(blurred.var() / plain.var())
