"""Arrays to training data: z-interpolation, XY down/up-sampling, normalisation and patch pools.

Everything here is numpy on ZYX arrays and knows nothing of files or networks. Resampling along
an axis is a small dense matrix (Keys cubic convolution, 4 taps), so the same operator serves
the whole volume, a single patch and a torch batch, and non-integer ratios need no special case.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from selfnet.errors import InputError

_EPS = 1e-6


def n_iso(n_raw: int, ratio: float) -> int:
    """Number of isotropic planes spanned by ``n_raw`` planes spaced ``ratio`` apart."""
    return int(math.floor((n_raw - 1) * ratio + _EPS)) + 1


def keys_weights(t: np.ndarray) -> np.ndarray:
    """Keys cubic-convolution kernel (a = -0.5) evaluated at offsets ``t``."""
    a = -0.5
    t = np.abs(t)
    w = np.where(t <= 1, (a + 2) * t**3 - (a + 3) * t**2 + 1, a * t**3 - 5 * a * t**2 + 8 * a * t - 4 * a)
    return np.where(t < 2, w, 0.0)


def resample_matrix(n_in: int, positions: np.ndarray) -> np.ndarray:
    """Matrix ``W`` (len(positions), n_in) so that ``W @ x`` samples ``x`` at fractional ``positions``.

    Cubic convolution with edge samples replicated; rows sum to one.
    """
    positions = np.asarray(positions, dtype=np.float64)
    base = np.floor(positions).astype(np.int64)
    w = np.zeros((len(positions), n_in), dtype=np.float64)
    rows = np.arange(len(positions))
    for offset in (-1, 0, 1, 2):
        idx = base + offset
        weight = keys_weights(positions - idx)
        np.add.at(w, (rows, np.clip(idx, 0, n_in - 1)), weight)
    exact = np.isclose(positions, np.round(positions), atol=1e-9)
    w[exact] = 0.0
    w[rows[exact], np.clip(np.round(positions[exact]).astype(np.int64), 0, n_in - 1)] = 1.0
    return (w / w.sum(axis=1, keepdims=True)).astype(np.float32)


def upsample_matrix(n_raw: int, ratio: float) -> np.ndarray:
    """Interpolation from ``n_raw`` planes spaced ``ratio`` apart onto the unit grid."""
    return resample_matrix(n_raw, np.arange(n_iso(n_raw, ratio)) / ratio)


def degrade_matrix(n: int, ratio: float, phase: float = 0.0) -> np.ndarray:
    """(n, n) operator: keep rows at ``phase + j*ratio``, interpolate back onto all ``n`` rows.

    This is what z-sampling does to an axial profile; applied to sharp XY rows it makes XY_lr.
    """
    kept = np.arange(phase, n - 1 + _EPS, ratio)
    down = resample_matrix(n, kept)
    up = resample_matrix(len(kept), (np.arange(n) - phase) / ratio)
    return (up @ down).astype(np.float32)


def blur_matrix(n: int, sigma: float) -> np.ndarray:
    """(n, n) Gaussian blur along one axis with replicated edges (identity for sigma ~ 0)."""
    if sigma < 1e-3:
        return np.eye(n, dtype=np.float32)
    radius = int(np.ceil(4 * sigma))
    offsets = np.arange(-radius, radius + 1)
    taps = np.exp(-0.5 * (offsets / sigma) ** 2)
    w = np.zeros((n, n), dtype=np.float64)
    rows = np.arange(n)
    for off, tap in zip(offsets, taps / taps.sum()):
        np.add.at(w, (rows, np.clip(rows + off, 0, n - 1)), tap)
    return w.astype(np.float32)


def zinterp(volume: np.ndarray, ratio: float, *, block: int = 64) -> np.ndarray:
    """Interpolate a ZYX volume along z onto the isotropic grid (float32), block by block in y."""
    z, y, x = volume.shape
    w = upsample_matrix(z, ratio)
    out = np.empty((w.shape[0], y, x), dtype=np.float32)
    for y0 in range(0, y, block):
        chunk = np.asarray(volume[:, y0 : y0 + block], dtype=np.float32)
        out[:, y0 : y0 + block] = np.tensordot(w, chunk, axes=(1, 0))
    return out


@dataclass(frozen=True)
class Normalizer:
    """Percentile normalisation: ``low`` maps to 0 and ``high`` to 1 (CSBDeep convention)."""

    low: float
    high: float

    @classmethod
    def fit(cls, volume: np.ndarray, percentiles: tuple[float, float], *, max_samples: int = 4_000_000,
            seed: int = 0) -> Normalizer:
        """Percentiles of the volume, from a random subsample for large volumes."""
        flat = np.asarray(volume).reshape(-1)
        if flat.size > max_samples:
            flat = flat[np.random.default_rng(seed).integers(0, flat.size, max_samples)]
        low, high = np.percentile(flat.astype(np.float64), percentiles)
        if not high > low:
            low, high = float(flat.min()), float(flat.max())
        if not high > low:
            raise InputError("volume is constant: nothing to learn from")
        return cls(float(low), float(high))

    def __call__(self, data: np.ndarray) -> np.ndarray:
        """Normalised float32 copy."""
        out = np.asarray(data, dtype=np.float32) - np.float32(self.low)
        out *= np.float32(1.0 / (self.high - self.low))
        return out

    def inverse(self, data: np.ndarray) -> np.ndarray:
        """Map normalised values back onto the input's intensity scale (in place when float32)."""
        data *= np.float32(self.high - self.low)
        data += np.float32(self.low)
        return data


def _random_windows(rng: np.random.Generator, n: int, count: int, size: int) -> np.ndarray:
    return rng.integers(0, n - size + 1, count)


def sample_xy_patches(planes: np.ndarray, count: int, size: int, *, rng: np.random.Generator,
                      foreground_percentile: float = 50.0, oversample: int = 4) -> np.ndarray:
    """Random (count, size, size) patches of the sharp XY planes, brighter candidates preferred.

    ``oversample`` times more candidates are drawn; those whose mean is below the
    ``foreground_percentile`` of candidate means are dropped (the paper's intensity threshold).
    """
    z, y, x = planes.shape
    if y < size or x < size:
        raise InputError(f"XY planes of {y}x{x} pixels are smaller than the {size}-pixel training patch")
    n = count * oversample
    zi = rng.integers(0, z, n)
    yi = _random_windows(rng, y, n, size)
    xi = _random_windows(rng, x, n, size)
    r = np.arange(size)
    patches = planes[zi[:, None, None], (yi[:, None] + r)[:, :, None], (xi[:, None] + r)[:, None, :]]
    return _keep_foreground(patches, count, foreground_percentile, rng)


def sample_axial_patches(iso: np.ndarray, count: int, size: int, *, rng: np.random.Generator,
                         foreground_percentile: float = 50.0, oversample: int = 4) -> np.ndarray:
    """Random XZ and YZ patches (z along rows) of the z-interpolated volume, half of each."""
    zi_n, y, x = iso.shape
    if zi_n < size:
        raise InputError(f"the stack spans only {zi_n} isotropic planes, fewer than the {size}-pixel patch")
    n = count * oversample
    r = np.arange(size)
    z0 = _random_windows(rng, zi_n, n, size)
    zz = (z0[:, None] + r)[:, :, None]
    half = n // 2
    ys, xs = rng.integers(0, y, half), _random_windows(rng, x, half, size)
    xz = iso[zz[:half], ys[:, None, None], (xs[:, None] + r)[:, None, :]]
    xfix, ys2 = rng.integers(0, x, n - half), _random_windows(rng, y, n - half, size)
    yz = iso[zz[half:], (ys2[:, None] + r)[:, None, :], xfix[:, None, None]]
    return _keep_foreground(np.concatenate([xz, yz]), count, foreground_percentile, rng)


def _keep_foreground(patches: np.ndarray, count: int, percentile: float,
                     rng: np.random.Generator) -> np.ndarray:
    means = patches.reshape(len(patches), -1).mean(axis=1)
    keep = np.flatnonzero(means >= np.percentile(means, percentile))
    keep = rng.permutation(keep)[:count]
    if len(keep) < count:
        keep = np.concatenate([keep, rng.choice(keep, count - len(keep))])
    return np.ascontiguousarray(patches[keep], dtype=np.float32)
