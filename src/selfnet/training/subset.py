"""A bounded random subset of a large stack to train on (full-z tiles side by side)."""

from __future__ import annotations

from typing import Any

import numpy as np

from selfnet.io.source import read_region
from selfnet.io.volume import Volume
from selfnet.method.resample import n_iso

TRAIN_MAX_ISO_VOXELS = 64_000_000
"""Training reads at most this many isotropic-grid voxels' worth of raw data."""


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
    if n_iso(int(vol.data.shape[0]), vol.ratio) * int(vol.data.shape[1]) * int(vol.data.shape[2]) <= max_iso_voxels and isinstance(vol.data, np.ndarray):
        return vol
    data = sample_training_volume(vol.data, vol.ratio, max_iso_voxels=max_iso_voxels, seed=seed)
    meta = {**vol.metadata, "training_subset": tuple(int(n) for n in data.shape)}
    return Volume(data, vol.spacing, vol.path, meta)
