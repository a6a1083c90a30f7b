"""Pieces shared by the format readers and writers of :mod:`selfnet.io`.

``_Sizes`` and ``_Raw`` are what the TIFF and npy readers hand back to
:func:`~selfnet.io.volume.read_volume`; ``_first_line`` shortens exception text for one-line errors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class _Sizes:
    """Voxel sizes in µm found by one source; ``None`` where that source says nothing."""

    source: str
    z: float | None = None
    y: float | None = None
    x: float | None = None


@dataclass
class _Raw:
    """What a format reader found, before axis selection and spacing resolution."""

    data: np.ndarray
    axes: str
    sizes: list[_Sizes]
    source_format: str
    unit: str | None = None
    notes: list[str] = field(default_factory=list)
    display: dict[str, Any] = field(default_factory=dict)
    """Channel names, colours, display ranges and frame interval, when the file says (see ``_display``)."""


def _first_line(item: object) -> str:
    """First line of an exception or message, shortened, for one-line error messages."""
    lines = str(item).strip().splitlines()
    text = lines[0] if lines else type(item).__name__
    return text if len(text) <= 160 else text[:157] + "..."
