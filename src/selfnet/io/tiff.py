"""Read ImageJ hyperstacks, OME-TIFF and plain TIFF, with their voxel sizes in µm.

Voxel-size candidates come from OME ``PhysicalSize*``, ImageJ ``spacing``/``unit`` with the
X/YResolution tags, and physical ``ResolutionUnit`` tags; truncated or corrupt files are refused.
"""

from __future__ import annotations

import contextlib
import logging
import math
import struct
import xml.etree.ElementTree as ET
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from selfnet.errors import InputError
from selfnet.io.common import _first_line, _Raw, _Sizes

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

# What tifffile raises on malformed files (it has no single exception type for them).
_TIFF_READ_ERRORS = (
    tifffile.TiffFileError, ValueError, OSError, EOFError, struct.error, KeyError, IndexError, RuntimeError,
    zlib.error,
)
_FATAL_TIFF_WARNINGS = ("invalid page offset", "failed to reshape", "corrupted")


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
        display=_ome_display(tf) if tf.is_ome else _imagej_display(ij),
    )


def _imagej_display(ij: dict[str, Any] | None) -> dict[str, Any]:
    """Channel labels, display ranges, LUT colours and frame interval of an ImageJ hyperstack."""
    if not ij:
        return {}
    out: dict[str, Any] = {}
    channels = int(ij.get("channels", 1) or 1)
    labels = ij.get("Labels")
    if isinstance(labels, (list, tuple)) and len(labels) >= channels > 1:
        out["names"] = [str(v) for v in labels[:channels]]
    ranges = ij.get("Ranges")
    if isinstance(ranges, (list, tuple)) and len(ranges) >= 2 * channels:
        out["ranges"] = [(float(ranges[2 * i]), float(ranges[2 * i + 1])) for i in range(channels)]
    luts = ij.get("LUTs")
    if isinstance(luts, (list, tuple)) and len(luts) == channels:
        out["colors"] = [_lut_color(lut) for lut in luts]
    if ij.get("finterval"):
        out["frame_interval_s"] = float(ij["finterval"])
    return out


def _lut_color(lut: Any) -> str:
    """The colour (``RRGGBB``) an ImageJ 3x256 LUT ends at."""
    arr = np.asarray(lut)
    return "".join(f"{int(v):02X}" for v in arr[:, -1]) if arr.ndim == 2 and arr.shape[0] == 3 else "FFFFFF"


def _ome_display(tf: tifffile.TiffFile) -> dict[str, Any]:
    """Channel names and colours, and the time increment, of an OME-TIFF."""
    pixels = _ome_pixels(tf.ome_metadata or "")
    if pixels is None:
        return {}
    out: dict[str, Any] = {}
    channels = [el for el in pixels if el.tag.rsplit("}", 1)[-1] == "Channel"]
    if channels and all(ch.get("Name") for ch in channels):  # one named channel too: its name survives
        out["names"] = [str(ch.get("Name")) for ch in channels]
    if len(channels) > 1 and all(ch.get("Color") for ch in channels):
        with contextlib.suppress(ValueError):
            out["colors"] = [f"{(int(str(ch.get('Color'))) & 0xFFFFFFFF) >> 8:06X}" for ch in channels]
    if pixels.get("TimeIncrement"):
        with contextlib.suppress(ValueError):
            out["frame_interval_s"] = float(str(pixels.get("TimeIncrement")))
    return out


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
        from selfnet.io.zarr import lazy_tiff_series

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
