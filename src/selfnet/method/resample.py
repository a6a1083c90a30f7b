"""Arrays to training data: z-interpolation, XY down/up-sampling, normalisation and patch pools.

Everything here is numpy on ZYX arrays and knows nothing of files or networks. Resampling along
an axis is a small dense matrix (Keys cubic convolution, 4 taps), so the same operator serves
the whole volume, a single patch and a torch batch, and non-integer ratios need no special case.
"""

from __future__ import annotations

import math

import numpy as np

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
    return taps_matrix(n, np.exp(-0.5 * (offsets / sigma) ** 2))


def taps_matrix(n: int, taps: np.ndarray) -> np.ndarray:
    """(n, n) convolution along one axis with centred odd ``taps`` (normalised), edges replicated."""
    taps = np.asarray(taps, dtype=np.float64)
    offsets = np.arange(len(taps)) - len(taps) // 2
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
