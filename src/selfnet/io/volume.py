"""The :class:`Volume` type and :func:`read_volume`: format dispatch, axis selection, voxel size.

Explicit ``--lateral-um``/``--axial-um`` win over file metadata; the TIFF and npy readers
(:mod:`selfnet.io.tiff`, :mod:`selfnet.io.npy`) propose voxel-size candidates that are resolved here.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from selfnet.errors import InputError
from selfnet.io.axes import _parse_axes, _select_zyx
from selfnet.io.common import _Sizes
from selfnet.io.npy import _read_npy
from selfnet.io.tiff import _read_tiff

_TIFF_SUFFIXES = (".tif", ".tiff")


@dataclass
class Volume:
    """A ZYX z-stack with its voxel size (dz, dy, dx) in micrometres.

    ``data`` keeps the file's dtype and may be a read-only, possibly big-endian ``np.memmap``.
    """

    data: np.ndarray
    spacing: tuple[float, float, float]
    path: Path | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        """Anisotropy dz / dx: how many lateral pixels fit in one axial step."""
        return self.spacing[0] / self.spacing[2]


def read_volume(
    path: str | Path,
    *,
    lateral_um: float | None = None,
    axial_um: float | None = None,
    timepoint: int | None = None,
    channel: int | None = None,
    level: int = 0,
    lazy: bool = False,
    axes: str | None = None,
) -> Volume:
    """Read a ZYX z-stack and its voxel size in µm from TIFF/OME-TIFF/ImageJ, ``.npy`` or OME-Zarr.

    Explicit ``lateral_um``/``axial_um`` win over file metadata; T and C axes of size > 1 need
    ``timepoint``/``channel`` (0-based). ``axes`` (e.g. ``"CZYX"``) names the file's axes when
    it does not, or names them wrongly. Data are memory-mapped where the layout allows;
    ``lazy=True`` reads compressed TIFFs page by page (dask) instead of loading them. OME-Zarr
    stores (``.zarr``) are always read lazily, multiscale ``level`` 0 unless asked.
    """
    label = str(path)
    p = Path(path).expanduser()
    overrides = _override_sizes(lateral_um, axial_um)
    # --- OME-Zarr (selfnet.ngff) ---
    from selfnet.io.zarr import is_zarr_path, read_ngff

    if is_zarr_path(p):
        if axes is not None:
            raise InputError(f"--axes applies to TIFF and .npy inputs; {label} names its own axes")
        return read_ngff(p, lateral_um=lateral_um, axial_um=axial_um, timepoint=timepoint, channel=channel,
                         level=level)
    if level:
        raise InputError(f"--level applies to OME-Zarr inputs; {label} is not one")
    # ---
    _check_input_file(p, label)
    raw = _read_npy(p, label) if _is_npy(p) else _read_tiff(p, label, lazy=lazy)
    _check_data_type(raw.data, label)
    if axes is not None:
        raw.axes = _parse_axes(axes, raw.data.shape, label)
    data, selected = _select_zyx(raw.data, raw.axes, timepoint, channel, label)
    spacing, sources = _resolve_spacing([overrides, *raw.sizes], label)
    metadata: dict[str, Any] = {
        "source_format": raw.source_format,
        "unit": raw.unit,
        "original_axes": raw.axes,
        "original_shape": tuple(int(n) for n in raw.data.shape),
        "selected": selected,
        "spacing_source": sources,
    }
    if raw.notes:
        metadata["notes"] = raw.notes
    if axes is not None:  # workers that re-open the file (io.source.SourceSpec) need the same naming
        metadata["axes_option"] = axes
    if raw.display:
        metadata["display"] = raw.display
    return Volume(data=data, spacing=spacing, path=p, metadata=metadata)


def _override_sizes(lateral_um: float | None, axial_um: float | None) -> _Sizes:
    """Turn the explicit voxel-size options into the highest-precedence size source."""
    lateral = _positive_option(lateral_um, "--lateral-um")
    axial = _positive_option(axial_um, "--axial-um")
    return _Sizes("argument", z=axial, y=lateral, x=lateral)


def _positive_option(value: float | None, flag: str) -> float | None:
    """Check that an optional voxel-size option is a finite positive number."""
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{flag} must be a number of µm, got {value!r}") from None
    if not math.isfinite(number) or number <= 0:
        raise InputError(f"{flag} must be a positive number of µm, got {value}")
    return number


def _check_input_file(p: Path, label: str) -> None:
    """Refuse missing, directory, empty, unreadable or unsupported input paths."""
    if not p.exists():
        raise InputError(f"{label} does not exist")
    if p.is_dir():
        raise InputError(f"{label} is a directory, not an image file")
    if not (_is_npy(p) or _is_tiff(p)):
        raise InputError(
            f"{label}: unsupported input format '{p.suffix}': use .tif/.tiff (ImageJ, OME-TIFF) or .npy"
        )
    if p.stat().st_size == 0:
        raise InputError(f"{label} is empty (0 bytes)")
    if not os.access(p, os.R_OK):
        raise InputError(f"cannot read {label}: permission denied")


def _is_npy(p: Path) -> bool:
    """Whether the path names a NumPy ``.npy`` file."""
    return p.name.lower().endswith(".npy")


def _is_tiff(p: Path) -> bool:
    """Whether the path names a TIFF file (``.ome.tif`` included)."""
    return p.name.lower().endswith(_TIFF_SUFFIXES)


def _check_data_type(data: np.ndarray, label: str) -> None:
    """Accept only real integer or float pixels (not bool, complex, strings or objects)."""
    if data.dtype.kind not in "uif":
        raise InputError(
            f"{label} has data type {data.dtype}: selfnet reads integer or float grey-level images"
        )


# --- spacing --------------------------------------------------------------------------------


def _resolve_spacing(
    candidates: list[_Sizes], label: str
) -> tuple[tuple[float, float, float], dict[str, str]]:
    """Take dz and (dy, dx) from the first source that knows them; name missing flags."""
    axial = next((s for s in candidates if s.z is not None), None)
    lateral = next((s for s in candidates if s.y is not None and s.x is not None), None)
    if axial is None or lateral is None:
        raise InputError(_missing_size_message(label, lateral is None, axial is None))
    spacing = (float(axial.z), float(lateral.y), float(lateral.x))  # type: ignore[arg-type]
    return spacing, {"axial": axial.source, "lateral": lateral.source}


def _missing_size_message(label: str, no_lateral: bool, no_axial: bool) -> str:
    """One-line message that names only the voxel-size flags the user must pass."""
    if no_lateral and no_axial:
        return f"no voxel size in {label}: pass --lateral-um and --axial-um (µm)"
    if no_lateral:
        return f"no lateral pixel size in {label}: pass --lateral-um (µm)"
    return f"no axial step (z spacing) in {label}: pass --axial-um (µm)"
