"""Multi-channel and time-lapse stacks: what a file holds along T and C, and one ZYX stack at a time.

:func:`probe_series` reads the layout (sizes, voxel size, channel names, colours, display ranges,
frame interval) without loading pixels; :func:`series_volume` opens the stack at one (t, c), lazily
(memory-mapped or page by page), so a series of any length is worked through one stack at a time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from selfnet.errors import ConfigError
from selfnet.io.volume import Volume, read_volume


@dataclass(frozen=True)
class SeriesLayout:
    """The T and C extent of a file and what every (t, c) stack shares."""

    path: Path
    n_t: int
    n_c: int
    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    dtype: str
    axes: str
    """The leading axes the output keeps: ``T`` and/or ``C`` where the input has them, in TC order."""
    display: dict[str, Any] = field(default_factory=dict)
    read: dict[str, Any] = field(default_factory=dict)

    @property
    def is_series(self) -> bool:
        """More than one stack (time points x channels) in the file."""
        return self.n_t * self.n_c > 1


def probe_series(path: str | Path, **read: Any) -> SeriesLayout:
    """The layout of ``path`` read from its first stack; ``read`` are :func:`read_volume` options."""
    options = {k: v for k, v in read.items() if k not in ("timepoint", "channel")}
    first = read_volume(path, timepoint=0, channel=0, lazy=True, **options)
    axes, shape = str(first.metadata.get("original_axes", "ZYX")).upper(), first.metadata.get("original_shape")
    sizes = dict(zip(axes, shape)) if shape else {}
    n_t, n_c = int(sizes.get("T", 1)), int(sizes.get("C", 1))
    lead = "".join(a for a in "TC" if a in axes)
    return SeriesLayout(Path(path), n_t, n_c, tuple(int(n) for n in first.data.shape),  # type: ignore[arg-type]
                        first.spacing, str(first.data.dtype), lead, dict(first.metadata.get("display", {}) or {}),
                        options)


def series_volume(layout: SeriesLayout, t: int, c: int) -> Volume:
    """The ZYX stack at time point ``t`` and channel ``c`` (lazy), with the series' voxel size."""
    vol = read_volume(layout.path, timepoint=t, channel=c, lazy=True, **layout.read)
    if tuple(vol.data.shape) != layout.shape:
        raise ConfigError(f"{layout.path}: the stack at time point {t}, channel {c} has shape "
                          f"{tuple(vol.data.shape)}, not {layout.shape} like the first: cannot restore it as a series")
    return vol


def parse_indices(text: str | list[int] | None, size: int, flag: str, noun: str) -> list[int]:
    """``"0,2"``, ``"0-9"`` or ``"0-3,7"`` (0-based, inclusive ranges) -> sorted indices, checked against ``size``."""
    if text is None:
        return list(range(size))
    picked: set[int] = set()
    parts = [str(v) for v in text] if isinstance(text, list) else str(text).split(",")
    try:
        for part in (p.strip() for p in parts):
            first, _, last = part.partition("-")
            lo, hi = int(first), int(last) if last else int(first)
            if hi < lo:
                raise ValueError(part)
            picked.update(range(lo, hi + 1))
    except ValueError:
        raise ConfigError(f"{flag} takes 0-based {noun}s like 0,2 or 0-9, got {text!r}") from None
    bad = sorted(i for i in picked if not 0 <= i < size)
    if bad:
        held = f"{size} {noun}s (0 to {size - 1})" if size > 1 else f"a single {noun} (0)"
        raise ConfigError(f"{flag}: {noun} {bad[0]} is out of range: the stack has {held}")
    return sorted(picked)


def spread(indices: list[int], count: int) -> list[int]:
    """``count`` entries of ``indices`` spread evenly from first to last (all of them when fewer)."""
    if count >= len(indices):
        return list(indices)
    if count == 1:
        return [indices[len(indices) // 2]]
    step = (len(indices) - 1) / (count - 1)
    return sorted({indices[round(i * step)] for i in range(count)})
