"""Read and write anisotropic z-stacks with their voxel sizes.

Inputs are ImageJ hyperstacks, OME-TIFF, plain TIFF and ``.npy`` (with an optional JSON sidecar);
outputs are ImageJ TIFF, OME-TIFF or ``.npy`` so that Fiji and napari show the right scale.
Every problem a user can cause raises :class:`~selfnet.errors.InputError` or
:class:`~selfnet.errors.OutputError` with a one-line message.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import secrets
import struct
import warnings
import xml.etree.ElementTree as ET
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from selfnet.errors import InputError, OutputError

__all__ = [
    "MAX_RATIO",
    "MIN_RATIO",
    "SQUARE_TOLERANCE",
    "Volume",
    "atomic_write",
    "check_output_dtype",
    "check_output_path",
    "read_volume",
    "to_dtype",
    "validate_volume",
    "write_volume",
]

MIN_RATIO = 1.05
"""Smallest dz/dx worth restoring: below this the stack is already (nearly) isotropic."""
MAX_RATIO = 20.0
"""Largest dz/dx accepted: beyond this there is too little axial information to learn from."""
SQUARE_TOLERANCE = 0.05
"""Largest relative difference between dy and dx for a pixel to count as square."""

_MICRO = "\u00b5"
_UM_PER_UNIT: dict[str, float] = {
    f"{_MICRO}m": 1.0,
    "um": 1.0,
    "micron": 1.0,
    "microns": 1.0,
    "micrometer": 1.0,
    "micrometers": 1.0,
    "micrometre": 1.0,
    "micrometres": 1.0,
    "nm": 1e-3,
    "nanometer": 1e-3,
    "nanometers": 1e-3,
    "nanometre": 1e-3,
    "nanometres": 1e-3,
    "\u00e5": 1e-4,
    "angstrom": 1e-4,
    "mm": 1e3,
    "millimeter": 1e3,
    "millimetre": 1e3,
    "cm": 1e4,
    "centimeter": 1e4,
    "centimetre": 1e4,
    "m": 1e6,
    "meter": 1e6,
    "metre": 1e6,
    "inch": 25400.0,
    "in": 25400.0,
}
# TIFF ResolutionUnit codes (4 and 5 are tifffile extensions) -> micrometres per unit.
_UM_PER_RESUNIT: dict[int, float] = {2: 25400.0, 3: 1e4, 4: 1e3, 5: 1.0}
# Desktop software stamps 72-300 dpi on any image; such values are not a microscope calibration.
_MAX_DESKTOP_DPI = 1200.0

_TIFF_SUFFIXES = (".tif", ".tiff")
_UNKNOWN_AXES = "QI"
# What tifffile raises on malformed files (it has no single exception type for them).
_TIFF_READ_ERRORS = (
    tifffile.TiffFileError, ValueError, OSError, EOFError, struct.error, KeyError, IndexError, RuntimeError,
    zlib.error,
)
_FATAL_TIFF_WARNINGS = ("invalid page offset", "failed to reshape", "corrupted")
_SCAN_BYTES = 64 * 2**20
_BIGTIFF_BYTES = int(3.5 * 2**30)

_DTYPES = ("float32", "float16", "uint16", "uint8", "int16")
_IMAGEJ_DTYPES = ("float32", "uint16", "uint8")
_OME_DTYPES = ("float32", "uint16", "uint8", "int16")


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


# --------------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------------


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
    from selfnet.ngff import is_zarr_path, read_ngff

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


# --- npy ------------------------------------------------------------------------------------


def _read_npy(p: Path, label: str) -> _Raw:
    """Memory-map a ``.npy`` array; its voxel sizes come from a JSON sidecar if there is one."""
    try:
        data = np.load(p, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        reason = _first_line(exc)
        raise InputError(f"cannot read {label}: not a valid or complete .npy file ({reason})") from exc
    if not isinstance(data, np.ndarray):
        raise InputError(f"cannot read {label}: not a single NumPy array")
    axes = "ZYX"[-data.ndim :] if data.ndim <= 3 else "Q" * (data.ndim - 3) + "ZYX"
    sizes, notes = _npy_sidecar_sizes(p)
    unit = "µm" if sizes else None
    return _Raw(data=data, axes=axes, sizes=sizes, source_format="npy", unit=unit, notes=notes)


def _npy_sidecar_sizes(p: Path) -> tuple[list[_Sizes], list[str]]:
    """Read ``{"spacing": [dz, dy, dx]}`` (µm) from ``<file>.json`` or ``<stem>.json``."""
    for sidecar in (p.with_name(p.name + ".json"), p.with_suffix(".json")):
        if sidecar.is_file():
            dz, dy, dx = _parse_sidecar(sidecar)
            return [_Sizes("sidecar", z=dz, y=dy, x=dx)], [f"voxel size from {sidecar.name}"]
    return [], []


def _parse_sidecar(sidecar: Path) -> tuple[float, float, float]:
    """Parse and check the spacing list of a sidecar JSON file."""
    try:
        content = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot read sidecar {sidecar}: not valid JSON ({_first_line(exc)})") from exc
    spacing = content.get("spacing") if isinstance(content, dict) else None
    try:
        values = tuple(float(v) for v in spacing)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        values = ()
    if len(values) != 3 or not all(math.isfinite(v) and v > 0 for v in values):
        raise InputError(f'sidecar {sidecar} needs "spacing": [dz, dy, dx] with three positive µm values')
    return values[0], values[1], values[2]


# --- tiff -----------------------------------------------------------------------------------


def _read_tiff(p: Path, label: str, *, lazy: bool = False) -> _Raw:
    """Open a TIFF, check it is complete and collect data, axes and voxel-size candidates."""
    with _captured_tifffile_log() as log:
        try:
            with tifffile.TiffFile(p) as tf:
                raw = _raw_from_tiff(tf, p, label, log, lazy=lazy)
        except _TIFF_READ_ERRORS as exc:
            reason = _first_line(exc)
            raise InputError(f"cannot read {label}: not a valid or complete TIFF file ({reason})") from exc
    return raw


def _raw_from_tiff(
    tf: tifffile.TiffFile, p: Path, label: str, log: list[str], *, lazy: bool = False
) -> _Raw:
    """Build the raw reading of an open TiffFile (first series only)."""
    if not tf.series:
        raise InputError(f"cannot read {label}: the TIFF file holds no image")
    series = tf.series[0]
    _check_tiff_complete(tf, series, p, label, log)
    data = _series_data(tf, series, p, lazy=lazy)
    ij = tf.imagej_metadata if tf.is_imagej else None
    sizes = [_ome_sizes(tf) if tf.is_ome else None, _imagej_sizes(tf, ij), _tag_sizes(tf)]
    kind = series.kind.lower()
    source_format = kind if kind in ("ome", "imagej") else "tiff"
    return _Raw(
        data=data,
        axes=series.axes,
        sizes=[s for s in sizes if s is not None],
        source_format=source_format,
        unit=_declared_unit(tf, ij),
        notes=list(log),
    )


@contextlib.contextmanager
def _captured_tifffile_log() -> Iterator[list[str]]:
    """Collect tifffile's logged warnings instead of printing them to stderr."""
    messages: list[str] = []

    class _Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            messages.append(_first_line(record.getMessage()))

    logger = logging.getLogger("tifffile")
    handler = _Collect(level=logging.WARNING)
    previous = logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield messages
    finally:
        logger.removeHandler(handler)
        logger.propagate = previous


def _check_tiff_complete(
    tf: tifffile.TiffFile, series: tifffile.TiffPageSeries, p: Path, label: str, log: list[str]
) -> None:
    """Refuse truncated or corrupt files instead of silently reading a fragment."""
    problem = next((m for m in log if any(f in m for f in _FATAL_TIFF_WARNINGS)), None)
    file_size = p.stat().st_size
    if problem is None and _data_beyond_eof(series, file_size):
        problem = "image data end beyond the end of the file"
    if problem is None and _declared_size(tf) not in (None, series.size):
        problem = "fewer images than its metadata declares"
    if problem is not None:
        raise InputError(f"cannot read {label}: TIFF file is truncated or corrupt ({problem})")


def _data_beyond_eof(series: tifffile.TiffPageSeries, file_size: int) -> bool:
    """Whether any image data of the series lie past the end of the file."""
    offset = series.dataoffset
    if offset is not None:
        return offset + series.nbytes > file_size
    for page in series.pages:
        if page is None:
            continue
        ends = (o + c for o, c in zip(page.dataoffsets, page.databytecounts, strict=False))
        if any(end > file_size for end in ends):
            return True
    return False


def _declared_size(tf: tifffile.TiffFile) -> int | None:
    """Number of pixel values the ImageJ, shaped or OME metadata say the first series holds."""
    try:
        if tf.is_ome:
            pixels = _ome_pixels(tf.ome_metadata or "")
            if pixels is None:
                return None
            return math.prod(int(pixels.get(f"Size{a}", "1")) for a in "XYZCT")
        if tf.is_imagej and tf.imagej_metadata:
            return int(tf.imagej_metadata.get("images", 1)) * int(tf.pages[0].size)
        if tf.is_shaped and tf.shaped_metadata:
            return math.prod(int(n) for n in tf.shaped_metadata[0]["shape"])
    except (TypeError, ValueError, KeyError, AttributeError):
        return None
    return None


def _series_data(
    tf: tifffile.TiffFile, series: tifffile.TiffPageSeries, p: Path, *, lazy: bool = False
) -> np.ndarray:
    """Memory-map contiguous uncompressed data, otherwise read it into memory.

    A memory map keeps the file's byte order (ImageJ writes big-endian), which NumPy handles
    transparently; convert with ``np.asarray(..., dtype=np.float32)`` before handing to torch.
    """
    offset = series.dataoffset
    if offset is not None:
        dtype = np.dtype(series.dtype).newbyteorder(tf.byteorder)
        return np.memmap(p, dtype=dtype, mode="r", offset=offset, shape=series.shape)
    if lazy:  # big compressed/tiled TIFFs: pages are read on demand (selfnet.ngff)
        from selfnet.ngff import lazy_tiff_series

        return lazy_tiff_series(p)  # type: ignore[return-value]
    return np.asarray(series.asarray())


def _ome_pixels(xml: str) -> ET.Element | None:
    """The first ``Pixels`` element of an OME-XML document, or None if unparsable."""
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return None
    return next((el for el in root.iter() if el.tag.rsplit("}", 1)[-1] == "Pixels"), None)


def _ome_sizes(tf: tifffile.TiffFile) -> _Sizes | None:
    """Voxel sizes from OME ``PhysicalSizeX/Y/Z`` (unit defaults to µm as in the OME schema)."""
    pixels = _ome_pixels(tf.ome_metadata or "")
    if pixels is None:
        return None

    def size(axis: str) -> float | None:
        value = pixels.get(f"PhysicalSize{axis}")
        return _scaled(value, pixels.get(f"PhysicalSize{axis}Unit", "µm"))

    return _Sizes("ome", z=size("Z"), y=size("Y"), x=size("X"))


def _imagej_sizes(tf: tifffile.TiffFile, ij: dict[str, Any] | None) -> _Sizes | None:
    """Voxel sizes from ImageJ ``spacing``/``unit`` and the X/YResolution tags."""
    if ij is None:
        return None
    unit = ij.get("unit")
    z_unit = ij.get("zunit", unit)
    y_unit = ij.get("yunit", unit)
    page = tf.pages[0]
    return _Sizes(
        "imagej",
        z=_scaled(ij.get("spacing"), z_unit),
        y=_pixel_size(page, "YResolution", _unit_to_um(y_unit)),
        x=_pixel_size(page, "XResolution", _unit_to_um(unit)),
    )


def _tag_sizes(tf: tifffile.TiffFile) -> _Sizes | None:
    """Lateral pixel size from X/YResolution with a physical ``ResolutionUnit`` (inch, cm, ...)."""
    page = tf.pages[0]
    tag = page.tags.get("ResolutionUnit")
    um_per_unit = _UM_PER_RESUNIT.get(int(tag.value)) if tag is not None else None
    if um_per_unit is None:
        return None
    sizes = _Sizes("tiff-tags", y=_pixel_size(page, "YResolution", um_per_unit))
    sizes.x = _pixel_size(page, "XResolution", um_per_unit)
    if um_per_unit == _UM_PER_RESUNIT[2] and _is_desktop_dpi(sizes.x):
        return None
    return sizes


def _is_desktop_dpi(pixel_um: float | None) -> bool:
    """Whether a per-inch resolution looks like a desktop default (72-1200 dpi), not a calibration."""
    return pixel_um is not None and pixel_um >= _UM_PER_RESUNIT[2] / _MAX_DESKTOP_DPI


def _pixel_size(page: tifffile.TiffPage, tag_name: str, um_per_unit: float | None) -> float | None:
    """Pixel size in µm from a resolution tag (pixels per unit) and the unit's size in µm."""
    tag = page.tags.get(tag_name)
    if tag is None or um_per_unit is None:
        return None
    value = tag.value
    try:
        per_unit = value[0] / value[1] if isinstance(value, tuple) else float(value)
    except (TypeError, ZeroDivisionError, IndexError):
        return None
    if not math.isfinite(per_unit) or per_unit <= 0:
        return None
    return um_per_unit / per_unit


def _declared_unit(tf: tifffile.TiffFile, ij: dict[str, Any] | None) -> str | None:
    """The length unit as written in the file (ImageJ unit or OME PhysicalSizeXUnit)."""
    if tf.is_ome:
        pixels = _ome_pixels(tf.ome_metadata or "")
        if pixels is not None and pixels.get("PhysicalSizeX") is not None:
            return pixels.get("PhysicalSizeXUnit", "µm")
    if ij is not None and ij.get("unit") is not None:
        return str(ij["unit"])
    return None


def _scaled(value: Any, unit: Any) -> float | None:
    """A length ``value`` in ``unit`` converted to µm, or None if either is unknown."""
    factor = _unit_to_um(unit)
    if value is None or factor is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(number) or number <= 0:
        return None
    return number * factor


def _unit_to_um(unit: Any) -> float | None:
    """Micrometres per ``unit``; None for pixel, missing or unrecognised units.

    Handles the literal text ``\\u00B5m`` that some ImageJ versions write instead of ``µm``.
    """
    if not isinstance(unit, str):
        return None
    text = unit.strip().lower().replace("\\u00b5", _MICRO).replace("\u03bc", _MICRO)
    return _UM_PER_UNIT.get(text)


# --- axes -----------------------------------------------------------------------------------


def _parse_axes(text: str, shape: tuple[int, ...], label: str) -> str:
    """Check an ``--axes`` value: one distinct letter of TCZYX per dimension, Z, Y and X included."""
    axes = str(text).strip().upper()
    if not axes or any(a not in "TCZYX" for a in axes) or len(set(axes)) != len(axes):
        raise InputError(f"--axes {text!r}: use distinct letters from T, C, Z, Y, X, e.g. --axes CZYX")
    if len(axes) != len(shape):
        raise InputError(f"--axes {axes} names {len(axes)} axes but {label} has {len(shape)} dimensions {tuple(shape)}")
    if not set("ZYX") <= set(axes):
        raise InputError(f"--axes {axes} must include Z, Y and X")
    return axes


def _select_zyx(
    data: np.ndarray, axes: str, timepoint: int | None, channel: int | None, label: str
) -> tuple[np.ndarray, dict[str, int]]:
    """Pick one time point / channel and return a ZYX view plus the selection made."""
    if "S" in axes:
        raise InputError(
            f"{label} is an RGB/multi-sample image (axes {axes}): selfnet needs a grey-level z-stack"
        )
    if len(axes) == 3 and axes[1:] == "YX" and axes[0] in "TC" and data.shape[0] > 1:
        noun = "time point" if axes[0] == "T" else "channel"
        raise InputError(f"{label} has {data.shape[0]} {noun}s and no z axis (axes {axes}): "
                         "if they are z planes, pass --axes ZYX")
    selected: dict[str, int] = {}
    choices = (("T", timepoint, "--timepoint", "time point"), ("C", channel, "--channel", "channel"))
    for axis, index, flag, noun in choices:
        data, axes, chosen = _pick_axis(data, axes, axis, index, flag, noun, label)
        if chosen is not None:
            selected[axis] = chosen
    data, axes = _squeeze_singletons(data, axes)
    return _as_zyx(data, axes, label), selected


def _pick_axis(
    data: np.ndarray, axes: str, axis: str, index: int | None, flag: str, noun: str, label: str
) -> tuple[np.ndarray, str, int | None]:
    """Index one T or C position (or squeeze a size-1 axis); index must be in range."""
    size = data.shape[axes.index(axis)] if axis in axes else 1
    if index is None:
        if size > 1:
            raise InputError(f"{label} has {size} {noun}s (axes {axes}): choose one with {flag} N")
        index = 0
    elif not isinstance(index, (int, np.integer)) or not 0 <= int(index) < size:
        held = f"{size} {noun}s (0 to {size - 1})" if size > 1 else f"a single {noun} (0)"
        raise InputError(f"{flag} {index} is out of range: {label} has {held}")
    if axis not in axes:
        return data, axes, None
    position = axes.index(axis)
    view = data[(slice(None),) * position + (int(index),)]
    return view, axes.replace(axis, ""), int(index)


def _squeeze_singletons(data: np.ndarray, axes: str) -> tuple[np.ndarray, str]:
    """Drop remaining size-1 axes other than Z, Y and X."""
    keep = [i for i, a in enumerate(axes) if data.shape[i] > 1 or a in "ZYX"]
    if len(keep) == len(axes):
        return data, axes
    drop = tuple(i for i in range(len(axes)) if i not in keep)
    return data.squeeze(axis=drop), "".join(axes[i] for i in keep)


def _as_zyx(data: np.ndarray, axes: str, label: str) -> np.ndarray:
    """Check that what is left is a ZYX stack with at least two planes."""
    if len(axes) == 3 and axes[1:] == "YX" and axes[0] in _UNKNOWN_AXES:
        axes = "ZYX"
    if len(axes) == 2 and axes == "YX":
        raise InputError(f"{label} is 2D (YX); selfnet needs a z-stack")
    if any(a in _UNKNOWN_AXES for a in axes):
        example = "TCZYX"[-len(axes):] if len(axes) <= 5 else "CZYX"
        raise InputError(
            f"{label} has {len(axes)} dimensions {tuple(data.shape)} without axis names: name them with "
            f"--axes (e.g. --axes {example}), then pick one stack with --channel N / --timepoint N"
        )
    if sorted(axes) == sorted("ZYX") and axes != "ZYX":
        data = data.transpose([axes.index(a) for a in "ZYX"])
        axes = "ZYX"
    if axes != "ZYX":
        raise InputError(
            f"{label} has axes {axes} {tuple(data.shape)}: selfnet needs a ZYX z-stack "
            "(with optional T and C axes)"
        )
    if data.shape[0] < 2:
        raise InputError(f"{label} has only {data.shape[0]} z plane(s); selfnet needs at least 2")
    return data


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


# --------------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------------


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
            f"{label}: axial step {dz:.4g} µm is not coarser than the lateral pixel {dx:.4g} µm: "
            "nothing to restore"
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


# --------------------------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------------------------


def check_output_path(
    path: str | Path, *, overwrite: bool, suffixes: tuple[str, ...] = (".tif", ".tiff", ".npy")
) -> Path:
    """Check, before any long work, that ``path`` can be written; return it resolved.

    ``.ome.tif`` counts as ``.tif``. Existing files are refused unless ``overwrite``. When
    ``suffixes`` holds ``.zarr``, OME-Zarr store folders are checked by :mod:`selfnet.ngff`.
    """
    label = str(path)
    p = Path(path).expanduser()
    # --- OME-Zarr (selfnet.ngff) ---
    if ".zarr" in suffixes and p.name.lower().endswith(".zarr"):
        from selfnet.ngff import check_zarr_output

        return check_zarr_output(p, overwrite=overwrite)
    # ---
    if not p.name.lower().endswith(tuple(s.lower() for s in suffixes)):
        raise OutputError(f"{label}: unsupported output suffix: use {', '.join(suffixes)}")
    if p.is_dir():
        raise OutputError(f"{label} is a directory: give a file name inside it")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.exists():
        raise OutputError(f"cannot write {label}: folder {parent} does not exist")
    if not parent.is_dir():
        raise OutputError(f"cannot write {label}: {parent} is not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write {label}: folder {parent} is not writable")
    _probe_writable(parent, label)
    if p.exists() and not overwrite:
        raise OutputError(f"{label} exists: pass --overwrite to replace it")
    return p.resolve()


def _probe_writable(folder: Path, label: str) -> None:
    """Create and delete a hidden file in ``folder``: catches read-only mounts that os.access misses."""
    probe = folder / f".selfnet-probe-{os.getpid()}-{secrets.token_hex(3)}"
    try:
        os.close(os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except OSError as exc:
        raise OutputError(f"cannot write {label}: folder {folder} is not writable ({exc.strerror})") from None
    _remove_quietly(probe)


def check_output_dtype(path: str | Path, dtype: str) -> None:
    """Refuse, before any long work, an output data type that the output format cannot hold."""
    p = Path(path)
    if p.name.lower().endswith(".zarr"):
        if dtype not in _DTYPES:
            raise OutputError(f"{p.name}: cannot write data type {dtype!r}: choose one of {', '.join(_DTYPES)}")
        return
    _check_output_dtype(p, _output_kind(p), dtype)


@contextlib.contextmanager
def atomic_write(path: str | Path) -> Iterator[Path]:
    """Yield a hidden temporary path next to ``path``; move it into place only on success.

    The temporary name keeps the real suffix (e.g. ``.out.tmp-12-ab34cd.ome.tif``) so writers
    pick the right format. On any exception, Ctrl-C included, the temporary file is removed and
    an existing file at ``path`` is left untouched.
    """
    final = Path(path)
    temp = final.with_name(_temp_name(final.name))
    try:
        yield temp
        os.replace(temp, final)
    except OSError as exc:
        _remove_quietly(temp)
        raise OutputError(f"cannot write {final}: {exc.strerror or _first_line(exc)}") from exc
    except BaseException:
        _remove_quietly(temp)
        raise


def _temp_name(name: str) -> str:
    """Hidden temporary name that keeps the full suffix (``.ome.tif`` stays at the end)."""
    suffix = _full_suffix(name)
    stem = name[: len(name) - len(suffix)] if suffix else name
    return f".{stem}.tmp-{os.getpid()}-{secrets.token_hex(3)}{suffix}"


def _full_suffix(name: str) -> str:
    """The suffix of a file name, ``.ome.tif``/``.ome.tiff`` counted as one."""
    lower = name.lower()
    for double in (".ome.tif", ".ome.tiff"):
        if lower.endswith(double):
            return name[-len(double) :]
    return Path(name).suffix


def _remove_quietly(p: Path) -> None:
    """Delete a file if it exists, ignoring errors (used while cleaning up)."""
    with contextlib.suppress(OSError):
        p.unlink()


def write_volume(
    path: str | Path,
    data: np.ndarray,
    spacing: tuple[float, float, float],
    *,
    dtype: str = "float32",
    overwrite: bool = False,
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Write a ZYX volume with its voxel size (µm) atomically; return the resolved path.

    ``.tif``/``.tiff`` gives an ImageJ hyperstack, ``.ome.tif`` an OME-TIFF and ``.npy`` an array
    plus a ``<file>.json`` sidecar, so that the spacing survives a round trip through read_volume.
    ``.zarr``/``.ome.zarr`` gives an OME-Zarr image (NGFF 0.4) written by :mod:`selfnet.ngff`.
    """
    # --- OME-Zarr (selfnet.ngff) ---
    if Path(path).name.lower().endswith(".zarr"):
        from selfnet.ngff import write_ngff

        return write_ngff(path, data, spacing, dtype=dtype, overwrite=overwrite, metadata=metadata)
    # ---
    final = check_output_path(path, overwrite=overwrite)
    kind = _output_kind(final)
    _check_output_dtype(final, kind, dtype)
    volume = np.asarray(data)
    if volume.ndim != 3:
        raise ValueError(f"write_volume needs a ZYX array, got shape {volume.shape}")
    dz, dy, dx = (float(v) for v in spacing)
    if not all(math.isfinite(v) and v > 0 for v in (dz, dy, dx)):
        raise ValueError(f"write_volume needs a positive spacing, got {spacing}")
    out = to_dtype(volume, dtype)
    writer = {"imagej": _write_imagej, "ome": _write_ome, "npy": _write_npy}[kind]
    writer(final, out, (dz, dy, dx), metadata or {})
    return final


def _output_kind(p: Path) -> str:
    """``ome``, ``imagej`` or ``npy`` from the output file name."""
    name = p.name.lower()
    if name.endswith(".npy"):
        return "npy"
    return "ome" if name.endswith((".ome.tif", ".ome.tiff")) else "imagej"


def _check_output_dtype(p: Path, kind: str, dtype: str) -> None:
    """Refuse data types the chosen output format cannot hold."""
    allowed = {"imagej": _IMAGEJ_DTYPES, "ome": _OME_DTYPES, "npy": _DTYPES}[kind]
    if dtype not in allowed:
        raise OutputError(f"{p.name}: cannot write data type {dtype!r}: choose one of {', '.join(allowed)}")


def _write_imagej(
    p: Path, data: np.ndarray, spacing: tuple[float, float, float], extra: dict[str, Any]
) -> None:
    """ImageJ hyperstack (µm calibration); stacks beyond 4 GB use ImageJ's own large-file layout."""
    dz, dy, dx = spacing
    ij: dict[str, Any] = {"axes": "ZYX", "spacing": dz, "unit": "um"}
    if data.size:
        ij.update(min=float(data.min()), max=float(data.max()))
    if extra:
        ij["Info"] = json.dumps(extra, default=str)
    with atomic_write(p) as temp, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*truncating ImageJ file", category=UserWarning)
        tifffile.imwrite(temp, data, imagej=True, resolution=(1.0 / dx, 1.0 / dy), metadata=ij)


def _write_ome(
    p: Path, data: np.ndarray, spacing: tuple[float, float, float], extra: dict[str, Any]
) -> None:
    """OME-TIFF with PhysicalSizeX/Y/Z in µm (BigTIFF beyond about 3.5 GB)."""
    dz, dy, dx = spacing
    ome: dict[str, Any] = {"axes": "ZYX"}
    for axis, size in (("X", dx), ("Y", dy), ("Z", dz)):
        ome[f"PhysicalSize{axis}"] = size
        ome[f"PhysicalSize{axis}Unit"] = "µm"
    if extra:
        ome["Description"] = json.dumps(extra, default=str)
    with atomic_write(p) as temp:
        tifffile.imwrite(
            temp,
            data,
            ome=True,
            bigtiff=data.nbytes > _BIGTIFF_BYTES,
            photometric="minisblack",
            resolution=(1e4 / dx, 1e4 / dy),
            resolutionunit="CENTIMETER",
            metadata=ome,
        )


def _write_npy(
    p: Path, data: np.ndarray, spacing: tuple[float, float, float], extra: dict[str, Any]
) -> None:
    """``.npy`` array plus ``<file>.json`` sidecar holding the spacing in µm."""
    sidecar = p.with_name(p.name + ".json")
    content = {"spacing": list(spacing), "unit": "µm", "axes": "ZYX"}
    if extra:
        content["metadata"] = extra
    with atomic_write(p) as temp_array, atomic_write(sidecar) as temp_json:
        with open(temp_array, "wb") as fh:
            np.save(fh, data, allow_pickle=False)
        temp_json.write_text(json.dumps(content, indent=2, default=str, ensure_ascii=False), encoding="utf-8")


def to_dtype(data: np.ndarray, dtype: str) -> np.ndarray:
    """Convert restored intensities to an output data type.

    ``float32`` passes values through unchanged (no copy if already float32). Integer types
    round to the nearest integer and clip to the type's range (below 0 -> 0 for unsigned types,
    above the maximum -> maximum); NaN becomes 0. ``float16`` clips to its finite range.
    """
    if dtype not in _DTYPES:
        raise OutputError(f"unsupported output data type {dtype!r}: choose one of {', '.join(_DTYPES)}")
    target = np.dtype(dtype)
    if target == np.float32:
        return np.asarray(data, dtype=np.float32)
    if target.kind == "f":
        limit = float(np.finfo(target).max)
        return np.clip(np.nan_to_num(data, nan=0.0), -limit, limit).astype(target)
    info = np.iinfo(target)
    if data.dtype.kind in "ui":
        return np.clip(data, info.min, info.max).astype(target)
    work = np.rint(np.asarray(data, dtype=np.float64 if data.dtype.itemsize > 4 else np.float32))
    np.nan_to_num(work, copy=False, nan=0.0)
    np.clip(work, info.min, info.max, out=work)
    return work.astype(target)


def _first_line(item: object) -> str:
    """First line of an exception or message, shortened, for one-line error messages."""
    lines = str(item).strip().splitlines()
    text = lines[0] if lines else type(item).__name__
    return text if len(text) <= 160 else text[:157] + "..."
