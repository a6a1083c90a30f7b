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
    ``.zarr``/``.ome.zarr`` gives an OME-Zarr image (NGFF 0.4) written by :mod:`selfnet.ngff`.
    """
    # --- OME-Zarr (selfnet.ngff) ---
    if Path(path).name.lower().endswith(".zarr"):
        from selfnet.io.zarr import write_ngff

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
