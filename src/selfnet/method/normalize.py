"""The one normalisation policy: percentiles fitted once per stack, then passed along.

``Normalizer`` maps the low percentile to 0 and the high one to 1 (CSBDeep convention);
:func:`fit_normalizer` fits it on the whole stack when small, else on a bounded random sample.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from selfnet.errors import InputError
from selfnet.io.source import (
    EXACT_NORMALIZER_VOXELS,
    SAMPLE_VOXELS,
    read_region,
    sample_planes,
)


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


def fit_normalizer(data: Any, percentiles: tuple[float, float], *, max_samples: int = SAMPLE_VOXELS,
                   seed: int = 0) -> Normalizer:
    """The global percentile normaliser, from a bounded random sample of a (lazy) volume.

    Volumes up to ``EXACT_NORMALIZER_VOXELS`` get exactly what whole-volume restoring computes.
    """
    if math.prod(data.shape) <= EXACT_NORMALIZER_VOXELS:
        return Normalizer.fit(read_region(data, (slice(None),) * 3), percentiles, max_samples=max_samples, seed=seed)
    sample = sample_planes(data, max_samples, seed=seed)
    return Normalizer.fit(sample, percentiles, max_samples=max_samples, seed=seed)
