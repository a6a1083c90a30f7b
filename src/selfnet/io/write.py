"""Write volumes with their voxel size: ImageJ TIFF, OME-TIFF or ``.npy`` + JSON sidecar.

Also the checks run before any long work (output path writable, data type the format can hold)
and :func:`to_dtype`. OME-Zarr outputs are delegated to :mod:`selfnet.ngff`.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from selfnet.errors import OutputError
from selfnet.io.atomic import _remove_quietly, atomic_write

_BIGTIFF_BYTES = int(3.5 * 2**30)

_DTYPES = ("float32", "float16", "uint16", "uint8", "int16")
_IMAGEJ_DTYPES = ("float32", "uint16", "uint8")
_OME_DTYPES = ("float32", "uint16", "uint8", "int16")


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
        from selfnet.io.zarr import check_zarr_output

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
    ``.zarr``/``.ome.zarr`` gives an OME-Zarr image (NGFF 0.4) written by :mod:`selfnet.io.zarr`.
    """
    # --- OME-Zarr (selfnet.io.zarr) ---
    if Path(path).name.lower().endswith(".zarr"):
        from selfnet.io.zarr import write_ngff

        return write_ngff(path, data, spacing, dtype=dtype, overwrite=overwrite, metadata=metadata)
    # ---
    volume = np.asarray(data)
    if volume.ndim != 3:
        raise ValueError(f"write_volume needs a ZYX array, got shape {volume.shape}")
    return write_array(path, volume, spacing, axes="ZYX", dtype=dtype, overwrite=overwrite, metadata=metadata)


def write_array(
    path: str | Path,
    data: Any,
    spacing: tuple[float, float, float],
    *,
    axes: str = "ZYX",
    dtype: str = "float32",
    overwrite: bool = False,
    metadata: dict[str, Any] | None = None,
    display: dict[str, Any] | None = None,
) -> Path:
    """The one writer per file format, for in-memory and streamed (zarr-backed) data alike.

    ``data`` is a numpy array, or a lazy array (zarr) already in ``dtype`` that is read one slab at a
    time, so outputs larger than RAM stream out. ``axes`` is ``ZYX`` with optional leading ``T``/``C``
    (in ``TCZYX`` order); ``display`` may hold per-channel ``names``, ``colors`` (``RRGGBB``),
    ``ranges`` and ``frame_interval_s``, written where the format has a place for them.
    """
    final = check_output_path(path, overwrite=overwrite)
    kind = _output_kind(final)
    _check_output_dtype(final, kind, dtype)
    if list(axes) != [a for a in "TCZYX" if a in axes] or not axes.endswith("ZYX"):
        raise ValueError(f"write_array needs axes in TCZYX order ending in ZYX, got {axes!r}")
    dz, dy, dx = (float(v) for v in spacing)
    if not all(math.isfinite(v) and v > 0 for v in (dz, dy, dx)):
        raise ValueError(f"write_array needs a positive spacing, got {spacing}")
    if isinstance(data, np.ndarray):
        data = to_dtype(data, dtype)
    writer = {"imagej": _write_imagej, "ome": _write_ome, "npy": _write_npy}[kind]
    writer(final, data, axes, (dz, dy, dx), metadata or {}, display or {})
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


def _slabs(data: Any, axis: int) -> Iterator[tuple[int, np.ndarray]]:
    """In-memory slabs of ``data`` along ``axis`` (a chunk's depth at a time for lazy arrays)."""
    n = int(data.shape[axis])
    step = n if isinstance(data, np.ndarray) else max(1, int(getattr(data, "chunks", [1] * data.ndim)[axis]))
    for s0 in range(0, n, step):
        index = [slice(None)] * data.ndim
        index[axis] = slice(s0, min(n, s0 + step))
        yield s0, np.asarray(data[tuple(index)])


def _planes(data: Any, axes: str, order: str) -> Iterator[np.ndarray]:
    """YX planes in the plane order ``order`` (e.g. ImageJ's ``TZCYX``), reading one outer slab at a time."""
    lead = [a for a in order if a not in "YX"]
    perm = [axes.index(a) for a in lead] + [axes.index("Y"), axes.index("X")]
    for _, slab in _slabs(data, perm[0]):
        part = slab.transpose(perm)
        yield from part.reshape(-1, *part.shape[-2:])


def _ordered_shape(data: Any, axes: str, order: str) -> tuple[int, ...]:
    return tuple(int(data.shape[axes.index(a)]) for a in order)


def _value_range(data: Any) -> tuple[float, float] | None:
    """Min and max of in-memory data (lazy data: None, the caller passes ranges)."""
    if isinstance(data, np.ndarray) and data.size:
        return float(data.min()), float(data.max())
    return None


def _write_imagej(p: Path, data: Any, axes: str, spacing: tuple[float, float, float], extra: dict[str, Any],
                  display: dict[str, Any]) -> None:
    """ImageJ hyperstack in ImageJ's TZCYX plane order, µm calibration, channel labels, ranges and LUTs.

    Never BigTIFF: tifffile writes stacks beyond 4 GB as contiguous data after one header, which
    ImageJ reads.
    """
    dz, dy, dx = spacing
    order = "".join(a for a in "TZCYX" if a in axes)
    ij: dict[str, Any] = {"axes": order, "spacing": dz, "unit": "um"}
    ij.update(_imagej_display(data, axes, display))
    if extra:
        ij["Info"] = json.dumps(extra, default=str)
    shape = _ordered_shape(data, axes, order)
    with atomic_write(p) as temp, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*truncating ImageJ file", category=UserWarning)
        tifffile.imwrite(temp, _planes(data, axes, order), shape=shape, dtype=data.dtype, imagej=True,
                         resolution=(1.0 / dx, 1.0 / dy), metadata=ij, photometric="minisblack")


def _imagej_display(data: Any, axes: str, display: dict[str, Any]) -> dict[str, Any]:
    """ImageJ metadata for display: min/max (one channel) or Ranges, LUTs and slice Labels, finterval."""
    out: dict[str, Any] = {}
    n_c = int(data.shape[axes.index("C")]) if "C" in axes else 1
    ranges = display.get("ranges")
    if n_c == 1:
        window = tuple(ranges[0]) if ranges else _value_range(data)
        if window:
            out.update(min=float(window[0]), max=float(window[1]))
    else:
        if ranges and len(ranges) == n_c:
            out["Ranges"] = tuple(float(v) for r in ranges for v in r)
        colors = display.get("colors")
        if colors and len(colors) == n_c:
            out["LUTs"] = [_lut(c) for c in colors]
        names = display.get("names")
        if names and len(names) == n_c:
            planes = math.prod(int(data.shape[axes.index(a)]) for a in axes if a in "TZ")
            out["Labels"] = [str(names[i % n_c]) for i in range(planes * n_c)]
    if display.get("frame_interval_s"):
        out["finterval"] = float(display["frame_interval_s"])
    return out


def _lut(color: str) -> np.ndarray:
    """A 3x256 ImageJ LUT ramping from black to ``RRGGBB``."""
    rgb = [int(str(color)[i : i + 2], 16) for i in (0, 2, 4)]
    ramp = np.arange(256, dtype=np.float64) / 255.0
    return np.stack([np.round(ramp * v) for v in rgb]).astype(np.uint8)


def _write_ome(p: Path, data: Any, axes: str, spacing: tuple[float, float, float], extra: dict[str, Any],
               display: dict[str, Any]) -> None:
    """OME-TIFF with PhysicalSizeX/Y/Z in µm, channel names and time increment (BigTIFF beyond ~3.5 GB)."""
    dz, dy, dx = spacing
    ome: dict[str, Any] = {"axes": axes}
    for axis, size in (("X", dx), ("Y", dy), ("Z", dz)):
        ome[f"PhysicalSize{axis}"] = size
        ome[f"PhysicalSize{axis}Unit"] = "µm"
    if display.get("names") and "C" in axes:
        ome["Channel"] = {"Name": [str(n) for n in display["names"]]}
    if display.get("frame_interval_s") and "T" in axes:
        ome["TimeIncrement"], ome["TimeIncrementUnit"] = float(display["frame_interval_s"]), "s"
    if extra:
        ome["Description"] = json.dumps(extra, default=str)
    nbytes = math.prod(int(n) for n in data.shape) * np.dtype(data.dtype).itemsize
    with atomic_write(p) as temp:
        tifffile.imwrite(temp, _planes(data, axes, axes), shape=tuple(int(n) for n in data.shape),
                         dtype=data.dtype, ome=True, bigtiff=nbytes > _BIGTIFF_BYTES, photometric="minisblack",
                         resolution=(1e4 / dx, 1e4 / dy), resolutionunit="CENTIMETER", metadata=ome)


def _write_npy(p: Path, data: Any, axes: str, spacing: tuple[float, float, float], extra: dict[str, Any],
               display: dict[str, Any]) -> None:
    """``.npy`` array (streamed slab by slab) plus ``<file>.json`` sidecar with spacing, axes and display."""
    sidecar = p.with_name(p.name + ".json")
    content: dict[str, Any] = {"spacing": list(spacing), "unit": "µm", "axes": axes}
    if display:
        content["display"] = display
    if extra:
        content["metadata"] = extra
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(data.dtype)), "fortran_order": False,
              "shape": tuple(int(n) for n in data.shape)}
    with atomic_write(p) as temp_array, atomic_write(sidecar) as temp_json:
        with open(temp_array, "wb") as fh:
            np.lib.format.write_array_header_2_0(fh, header)
            for _, slab in _slabs(data, 0):
                fh.write(np.ascontiguousarray(slab).tobytes())
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
