"""Refuse volumes selfnet cannot restore: shape, voxel size and anisotropy range, NaN/Inf, constant data."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np

from selfnet.errors import InputError
from selfnet.io.source import EXACT_NORMALIZER_VOXELS, read_region, sample_planes
from selfnet.io.volume import Volume

MIN_RATIO = 0.25
"""Smallest dz/dx accepted: a finer z step oversamples any axial PSF (bin the stack along z first)."""
FINE_RATIO = 1.05
"""Below this dz/dx there is no z step to fill: only a wider axial PSF is worth restoring (checked by QC)."""
MAX_RATIO = 20.0
"""Largest dz/dx accepted: beyond this there is too little axial information to learn from."""
SQUARE_TOLERANCE = 0.05
"""Largest relative difference between dy and dx for a pixel to count as square."""
_SCAN_BYTES = 64 * 2**20


def validate_volume(vol: Volume) -> None:
    """Refuse volumes selfnet cannot restore: bad shape or spacing, NaN/Inf, constant data."""
    label = str(vol.path) if vol.path is not None else "volume"
    _check_shape(vol.data, label)
    _check_spacing(vol.spacing, label)
    _check_values(vol.data, label)


def _check_shape(data: np.ndarray, label: str) -> None:
    """A ZYX array with at least two planes."""
    if data.ndim != 3:
        raise InputError(f"{label} has {data.ndim} dimensions {tuple(data.shape)}: selfnet needs ZYX")
    if data.shape[0] < 2:
        raise InputError(f"{label} has only {data.shape[0]} z plane(s); selfnet needs at least 2")


def _check_spacing(spacing: tuple[float, float, float], label: str) -> None:
    """Positive sizes, square lateral pixels and an anisotropy selfnet can work with."""
    dz, dy, dx = (float(v) for v in spacing)
    if not all(math.isfinite(v) and v > 0 for v in (dz, dy, dx)):
        raise InputError(f"{label}: voxel size {spacing} µm must be positive")
    if abs(dy - dx) > SQUARE_TOLERANCE * max(dy, dx):
        raise InputError(
            f"{label}: lateral pixel is not square (dy {dy:.4g} µm, dx {dx:.4g} µm): "
            f"selfnet needs dy and dx within {SQUARE_TOLERANCE:.0%}"
        )
    ratio = dz / dx
    if ratio < MIN_RATIO:
        raise InputError(
            f"{label}: axial step {dz:.4g} µm is {1 / ratio:.3g}x finer than the lateral pixel {dx:.4g} µm: "
            f"bin the stack along z first (selfnet takes steps down to {MIN_RATIO:g}x the pixel)"
        )
    if ratio > MAX_RATIO:
        raise InputError(
            f"{label}: axial step {dz:.4g} µm is {ratio:.3g}x the lateral pixel {dx:.4g} µm: "
            f"ratio too large (at most {MAX_RATIO:g})"
        )


def _check_values(data: np.ndarray, label: str) -> None:
    """No NaN/Inf and not constant, scanned in slabs so memory-mapped data stay on disk."""
    low, high = math.inf, -math.inf
    for slab in _slabs(data):
        if slab.dtype.kind == "f" and not np.isfinite(slab).all():
            raise InputError(f"{label} contains NaN or Inf values")
        low, high = min(low, float(slab.min())), max(high, float(slab.max()))
    if low == high:
        raise InputError(f"{label} is constant (every voxel is {low:g}): nothing to restore")


def _slabs(data: np.ndarray) -> Iterator[np.ndarray]:
    """Consecutive groups of z planes of about 64 MiB each."""
    plane_bytes = max(1, int(np.prod(data.shape[1:])) * data.dtype.itemsize)
    step = max(1, _SCAN_BYTES // plane_bytes)
    for start in range(0, data.shape[0], step):
        yield np.asarray(data[start : start + step])


def validate_lazy(vol: Volume) -> None:
    """Check shape, voxel size and values of a large volume on a random sample, without a full scan."""
    if len(vol.data.shape) != 3:
        validate_volume(vol)
    if math.prod(vol.data.shape) <= EXACT_NORMALIZER_VOXELS:
        validate_volume(Volume(read_region(vol.data, (slice(None),) * 3), vol.spacing, vol.path, vol.metadata))
        return
    validate_volume(Volume(sample_planes(vol.data, seed=1), vol.spacing, vol.path, vol.metadata))
