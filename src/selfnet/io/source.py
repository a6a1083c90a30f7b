"""Reading regions of a (lazy, memory-mapped, zarr or dask) input, and re-opening it on Dask workers."""

from __future__ import annotations

import contextlib
import json
import mmap
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from selfnet.errors import ConfigError, InputError, SelfnetError
from selfnet.io.volume import Volume


def read_region(data: Any, region: tuple[slice, ...]) -> np.ndarray:
    """A region of a numpy / memory-mapped / zarr / dask array as an in-memory numpy array.

    Pages of a memory map are dropped afterwards so resident memory does not grow with the file.
    """
    try:
        part = data[region]
        if hasattr(part, "compute"):
            part = part.compute(scheduler="synchronous")
        out = np.array(part, copy=True)
    except (SelfnetError, MemoryError, IndexError, TypeError, AttributeError):
        raise
    except Exception as exc:  # noqa: BLE001 - zlib, imagecodecs, numcodecs, zarr errors have no common base
        raise DamagedDataError(f"its image data are damaged{_where(region)} ({_reason(exc)})") from None
    _drop_pages(data)
    return out


class DamagedDataError(InputError):
    """A compressed chunk or page of the input cannot be decoded."""


def _where(region: tuple[slice, ...]) -> str:
    """`` at z 4:8, y 0:64`` (bounded axes only) for an error line."""
    parts = [f"{axis} {s.start or 0}:{s.stop}" for axis, s in zip("zyx", region)
             if isinstance(s, slice) and s.stop is not None]
    return f" at {', '.join(parts)}" if parts else ""


def _reason(exc: BaseException) -> str:
    """The first line of an exception, or its type name."""
    text = str(exc).strip()
    return text.splitlines()[0][:160] if text else type(exc).__name__


def _drop_pages(data: Any) -> None:
    mapping = getattr(data, "_mmap", None)
    if isinstance(mapping, mmap.mmap) and hasattr(mapping, "madvise"):
        with contextlib.suppress(OSError, ValueError):
            mapping.madvise(mmap.MADV_DONTNEED)


@dataclass(frozen=True)
class SourceSpec:
    """How a worker re-opens the input lazily: path plus the reading options."""

    path: str
    lateral_um: float
    axial_um: float
    timepoint: int | None = None
    channel: int | None = None
    level: int = 0
    axes: str | None = None

    @classmethod
    def from_volume(cls, vol: Volume) -> SourceSpec:
        """The spec that re-reads ``vol`` (same selection, same voxel size)."""
        if vol.path is None:
            raise ConfigError("a distributed restore needs a volume read from a file (workers re-open it)")
        sel = vol.metadata.get("selected", {}) or {}
        return cls(str(Path(vol.path).resolve()), float(vol.spacing[2]), float(vol.spacing[0]),
                   sel.get("T"), sel.get("C"), int(vol.metadata.get("level", 0) or 0),
                   vol.metadata.get("axes_option"))

    def open(self) -> Any:
        """The lazy ZYX data (cached per process)."""
        key = json.dumps(asdict(self), sort_keys=True)
        if key not in _OPEN_SOURCES:
            from selfnet.io import read_volume

            if len(_OPEN_SOURCES) >= _KEPT_SOURCES:  # a series opens one (t, c) stack after another
                _OPEN_SOURCES.clear()

            vol = read_volume(self.path, lateral_um=self.lateral_um, axial_um=self.axial_um,
                              timepoint=self.timepoint, channel=self.channel, level=self.level, lazy=True,
                              axes=self.axes)
            _OPEN_SOURCES[key] = vol.data
        return _OPEN_SOURCES[key]


_OPEN_SOURCES: dict[str, Any] = {}
_KEPT_SOURCES = 8


EXACT_NORMALIZER_VOXELS = 16_000_000
"""Volumes up to this many voxels get exactly the whole-volume normaliser (``Normalizer.fit``)."""
SAMPLE_VOXELS = 4_000_000


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
