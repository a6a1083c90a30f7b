"""Patch pools for training: random sharp XY patches and axial (XZ/YZ) patches, brighter ones preferred."""

from __future__ import annotations

import numpy as np

from selfnet.errors import InputError


def _random_windows(rng: np.random.Generator, n: int, count: int, size: int) -> np.ndarray:
    return rng.integers(0, n - size + 1, count)


def sample_xy_patches(planes: np.ndarray, count: int, size: int, *, rng: np.random.Generator,
                      foreground_percentile: float = 50.0, oversample: int = 4, pad: int = 0) -> np.ndarray:
    """Random (count, size, size) patches of the sharp XY planes, candidates with structure preferred.

    ``oversample`` times more candidates are drawn; those whose :func:`foreground_score` is below
    the ``foreground_percentile`` of all candidates' are dropped (the paper's intensity threshold,
    scored by the brightest pixels rather than the mean so that sparse samples keep their objects).
    A window may reach ``pad`` pixels beyond the plane's edges, which are mirrored there: the frame a
    wide blur needs around a patch then no longer confines patches to the middle of the planes.
    """
    z, y, x = planes.shape
    if y + 2 * pad < size or x + 2 * pad < size:
        raise InputError(f"XY planes of {y}x{x} pixels are smaller than the {size - 2 * pad}-pixel training patch")
    if pad >= min(y, x):
        raise ValueError(f"a {pad}-pixel mirrored frame needs planes larger than {y}x{x}")
    n = count * oversample
    zi = rng.integers(0, z, n)
    yi = _random_windows(rng, y + 2 * pad, n, size) - pad
    xi = _random_windows(rng, x + 2 * pad, n, size) - pad
    r = np.arange(size)
    rows, cols = _mirror(yi[:, None] + r, y), _mirror(xi[:, None] + r, x)
    patches = planes[zi[:, None, None], rows[:, :, None], cols[:, None, :]]
    return _keep_foreground(patches, count, foreground_percentile, rng)


def _mirror(index: np.ndarray, n: int) -> np.ndarray:
    """Indices in [-n + 1, 2n - 1) reflected into [0, n) about the edge pixels (numpy's 'reflect')."""
    index = np.abs(index)
    return np.where(index >= n, 2 * (n - 1) - index, index)


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


def foreground_score(patches: np.ndarray, top: float = 0.01) -> np.ndarray:
    """Mean of each patch's brightest ``top`` fraction of pixels: how much structure it holds.

    A plain patch mean cannot tell a patch holding one bright bead from a patch of background
    noise when the sample is sparse (beads, puncta): both then sit near the background level,
    the "brighter half" is mostly noise and the blur estimate and both stages starve of signal.
    """
    flat = patches.reshape(len(patches), -1)
    n = max(1, int(round(top * flat.shape[1])))
    return np.partition(flat, flat.shape[1] - n, axis=1)[:, -n:].mean(axis=1)


def _keep_foreground(patches: np.ndarray, count: int, percentile: float,
                     rng: np.random.Generator) -> np.ndarray:
    scores = foreground_score(patches)
    keep = np.flatnonzero(scores >= np.percentile(scores, percentile))
    keep = rng.permutation(keep)[:count]
    if len(keep) < count:
        keep = np.concatenate([keep, rng.choice(keep, count - len(keep))])
    return np.ascontiguousarray(patches[keep], dtype=np.float32)
