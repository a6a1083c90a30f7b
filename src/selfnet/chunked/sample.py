"""Bounded random samples of a large volume: the global normaliser, lazy validation, the training subset."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from selfnet.chunked.plan import output_voxels
from selfnet.chunked.source import read_region
from selfnet.io import Volume, validate_volume
from selfnet.sampling import Normalizer, n_iso

EXACT_NORMALIZER_VOXELS = 16_000_000
"""Volumes up to this many voxels get exactly the whole-volume normaliser (``Normalizer.fit``)."""
SAMPLE_VOXELS = 4_000_000
TRAIN_MAX_ISO_VOXELS = 64_000_000
"""Training reads at most this many isotropic-grid voxels' worth of raw data."""


def _random_regions(shape: tuple[int, int, int], count: int, size: tuple[int, int], seed: int
                    ) -> list[tuple[slice, slice, slice]]:
    rng = np.random.default_rng(seed)
    z, y, x = shape
    zs = rng.integers(0, z, count)
    ys, xs = rng.integers(0, y - size[0] + 1, count), rng.integers(0, x - size[1] + 1, count)
    return [(slice(int(a), int(a) + 1), slice(int(b), int(b) + size[0]), slice(int(c), int(c) + size[1]))
            for a, b, c in zip(zs, ys, xs)]


def sample_planes(data: Any, max_samples: int = SAMPLE_VOXELS, *, seed: int = 0, tile: int = 256) -> np.ndarray:
    """Random XY tiles (at most ``max_samples`` voxels), stacked as a small ZYX array."""
    shape = tuple(int(n) for n in data.shape)
    size = (min(tile, shape[1]), min(tile, shape[2]))
    count = max(2, -(-max_samples // (size[0] * size[1])))
    regions = sorted(_random_regions(shape, count, size, seed), key=lambda r: r[0].start)
    return np.concatenate([read_region(data, r) for r in regions])


def fit_normalizer(data: Any, percentiles: tuple[float, float], *, max_samples: int = SAMPLE_VOXELS,
                   seed: int = 0) -> Normalizer:
    """The global percentile normaliser, from a bounded random sample of a (lazy) volume.

    Volumes up to ``EXACT_NORMALIZER_VOXELS`` get exactly what whole-volume restoring computes.
    """
    if math.prod(data.shape) <= EXACT_NORMALIZER_VOXELS:
        return Normalizer.fit(read_region(data, (slice(None),) * 3), percentiles, max_samples=max_samples, seed=seed)
    sample = sample_planes(data, max_samples, seed=seed)
    return Normalizer.fit(sample, percentiles, max_samples=max_samples, seed=seed)


def validate_lazy(vol: Volume) -> None:
    """Check shape, voxel size and values of a large volume on a random sample, without a full scan."""
    if len(vol.data.shape) != 3:
        validate_volume(vol)
    if math.prod(vol.data.shape) <= EXACT_NORMALIZER_VOXELS:
        validate_volume(Volume(read_region(vol.data, (slice(None),) * 3), vol.spacing, vol.path, vol.metadata))
        return
    validate_volume(Volume(sample_planes(vol.data, seed=1), vol.spacing, vol.path, vol.metadata))


def sample_training_volume(data: Any, ratio: float, *, max_iso_voxels: int | None = None,
                           tile: int = 256, seed: int = 0) -> np.ndarray:
    """A bounded random subset of a large stack for training, as one smaller ZYX array.

    Full-z tiles of ``tile`` x ``tile`` pixels (fewer planes for very deep stacks) are taken at
    random grid positions, the brighter half of twice as many candidates kept, and laid side by
    side along x. Returns the whole volume when it is small enough already.
    """
    z, y, x = (int(n) for n in data.shape)
    max_iso_voxels = max_iso_voxels or TRAIN_MAX_ISO_VOXELS
    if n_iso(z, ratio) * y * x <= max_iso_voxels:
        return read_region(data, (slice(None),) * 3)
    ty, tx = min(tile, y), min(tile, x)
    tz = z
    while tz > 16 and n_iso(tz, ratio) * ty * tx * 4 > max_iso_voxels:
        tz = max(16, tz // 2)
    count = max(1, max_iso_voxels // (n_iso(tz, ratio) * ty * tx))
    cells = [(j * ty, i * tx) for j in range(y // ty) for i in range(x // tx)]
    rng = np.random.default_rng(seed)
    picks = rng.permutation(len(cells))[: 2 * count]
    starts = rng.integers(0, z - tz + 1, len(picks))
    regions = [(slice(int(s), int(s) + tz), slice(cells[p][0], cells[p][0] + ty),
                slice(cells[p][1], cells[p][1] + tx)) for p, s in zip(picks, starts)]
    score = [float(read_region(data, (slice(r[0].start + tz // 2, r[0].start + tz // 2 + 1), r[1], r[2])).mean())
             for r in regions]
    keep = [regions[i] for i in np.argsort(score)[::-1][:count]]
    return np.concatenate([read_region(data, r) for r in keep], axis=2)


def training_volume(vol: Volume, *, max_iso_voxels: int | None = None, seed: int = 0) -> Volume:
    """``vol`` itself when small, else a bounded random subset (:func:`sample_training_volume`)."""
    max_iso_voxels = max_iso_voxels or TRAIN_MAX_ISO_VOXELS
    if output_voxels(vol) <= max_iso_voxels and isinstance(vol.data, np.ndarray):
        return vol
    data = sample_training_volume(vol.data, vol.ratio, max_iso_voxels=max_iso_voxels, seed=seed)
    meta = {**vol.metadata, "training_subset": tuple(int(n) for n in data.shape)}
    return Volume(data, vol.spacing, vol.path, meta)
