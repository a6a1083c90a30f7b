"""OME-Zarr (NGFF 0.4 on zarr v2, NGFF 0.5 on zarr v3): lazy reading and block-wise writing.

Reading returns a :class:`~selfnet.io.Volume` whose ``data`` is a lazy dask array (one
multiscale level, one time point and channel), so nothing is loaded until a region is sliced.
Writing creates the store first, marked *incomplete* in its ``selfnet`` attributes and without
``multiscales`` metadata; :func:`finalize_store` adds the metadata only once every block is in,
so an interrupted store never looks like a finished image to viewers or to :func:`read_ngff`.
"""

from __future__ import annotations

import functools
import importlib
import itertools
import json
import math
import os
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import tifffile

from selfnet.errors import ConfigError, InputError, OutputError

if TYPE_CHECKING:
    import dask.array as da
    import zarr

    from selfnet.io import Volume


class _LazyModule:
    """A module imported on first attribute access: dask and zarr cost ~0.4 s of every CLI start."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        return getattr(importlib.import_module(self._name), attr)


if not TYPE_CHECKING:
    da = _LazyModule("dask.array")
    zarr = _LazyModule("zarr")


@functools.cache
def have_zarr() -> bool:
    """Whether zarr 3 is installed (it needs Python >= 3.11; TIFF and npy work without it)."""
    try:
        version = importlib.import_module("zarr").__version__
    except ImportError:
        return False
    return int(version.split(".")[0]) >= 3

__all__ = [
    "NGFF_VERSIONS",
    "ZARR_SUFFIXES",
    "add_pyramid",
    "check_zarr_output",
    "create_store",
    "default_chunks",
    "display_window",
    "finalize_store",
    "is_zarr_path",
    "lazy_tiff_series",
    "multiscales_metadata",
    "open_level",
    "pyramid_regions",
    "pyramid_shapes",
    "read_ngff",
    "remove_store",
    "selfnet_attrs",
    "write_ngff",
    "write_pyramid_level",
]

ZARR_SUFFIXES = (".ome.zarr", ".zarr")
NGFF_VERSIONS = ("0.4", "0.5")
DEFAULT_NGFF = "0.4"
_ZARR_MARKERS = ("zarr.json", ".zgroup", ".zarray", ".zattrs")
_UM_PER_NGFF_UNIT = {
    "angstrom": 1e-4, "nanometer": 1e-3, "nm": 1e-3, "micrometer": 1.0, "micron": 1.0, "um": 1.0,
    "\u00b5m": 1.0, "millimeter": 1e3, "mm": 1e3, "centimeter": 1e4, "cm": 1e4, "meter": 1e6, "m": 1e6,
}
_PYRAMID_MIN = 64
_PYRAMID_BLOCK = (32, 256, 256)


# --------------------------------------------------------------------------------------------
# paths
# --------------------------------------------------------------------------------------------


def is_zarr_path(path: str | Path) -> bool:
    """Whether ``path`` names a zarr store: a ``.zarr``/``.ome.zarr`` name or a folder with zarr metadata."""
    p = Path(path)
    if p.name.lower().rstrip("/").endswith(".zarr"):
        return True
    return p.is_dir() and any((p / m).exists() for m in _ZARR_MARKERS)


def _require_zarr() -> None:
    if not have_zarr():
        raise ConfigError("OME-Zarr needs the zarr package (version 3, Python >= 3.11): pip install 'zarr>=3'")


def _looks_like_store(p: Path) -> bool:
    return p.is_dir() and any((p / m).exists() for m in _ZARR_MARKERS)


def check_zarr_output(path: str | Path, *, overwrite: bool, resume: bool = False) -> Path:
    """Check that a zarr store can be created at ``path`` (refuse existing ones unless asked)."""
    _require_zarr()
    label = str(path)
    p = Path(path).expanduser()
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise OutputError(f"cannot write {label}: folder {parent} does not exist")
    if not _writable(parent):
        raise OutputError(f"cannot write {label}: folder {parent} is not writable")
    if p.exists() and not p.is_dir():
        raise OutputError(f"{label} exists and is a file, not a zarr store: choose another name")
    if p.exists() and any(p.iterdir()) and not _looks_like_store(p):
        raise OutputError(f"{label} is a non-empty folder that is not a zarr store: choose another name")
    if p.exists() and not (overwrite or resume):
        raise OutputError(f"{label} exists: pass --overwrite to replace it (or --resume to finish it)")
    return p.resolve()


def _writable(folder: Path) -> bool:
    return os.access(folder, os.W_OK | os.X_OK)


def remove_store(path: str | Path) -> None:
    """Delete a zarr store folder (refuses folders that are not zarr stores)."""
    p = Path(path)
    if not p.exists():
        return
    if p.is_dir() and (_looks_like_store(p) or not any(p.iterdir())):
        shutil.rmtree(p)
        return
    raise OutputError(f"refusing to delete {p}: it is not a zarr store")


# --------------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------------


def read_ngff(path: str | Path, *, lateral_um: float | None = None, axial_um: float | None = None,
              timepoint: int | None = None, channel: int | None = None, level: int = 0) -> Volume:
    """Open one level of an OME-Zarr image (or a plain 3D zarr array) as a lazy ZYX Volume.

    Parameters
    ----------
    path : store folder (``.zarr``/``.ome.zarr``), NGFF 0.4 (zarr v2) or 0.5 (zarr v3)
    lateral_um, axial_um : voxel sizes in µm overriding the store's ``scale``
    timepoint, channel : 0-based picks for ``t``/``c`` axes of size > 1
    level : multiscale level (0 = full resolution)
    """
    from selfnet.io import Volume

    _require_zarr()
    label = str(path)
    p = Path(path).expanduser()
    node = _open_node(p, label)
    if isinstance(node, zarr.Array):
        if level:
            raise InputError(f"--level {level} is out of range: {label} is a single array (level 0)")
        arr, axes, scale, units, version = node, _guess_axes(node.ndim), None, {}, None
    else:
        arr, axes, scale, units, version = _multiscale_level(node, level, label)
    data = da.from_zarr(arr)
    _check_dtype(data, label)
    data, selected = _select_zyx(data, axes, timepoint, channel, label)
    spacing, sources, notes = _spacing(axes, scale, units, lateral_um, axial_um, label)
    metadata: dict[str, Any] = {
        "source_format": "ome-zarr" if version else "zarr",
        "ngff_version": version,
        "zarr_format": arr.metadata.zarr_format,
        "level": level,
        "unit": "micrometer",
        "original_axes": "".join(axes).upper(),
        "original_shape": tuple(int(n) for n in arr.shape),
        "chunks": tuple(int(c) for c in arr.chunks),
        "selected": selected,
        "spacing_source": sources,
    }
    if notes:
        metadata["notes"] = notes
    if not isinstance(node, zarr.Array):
        metadata["display"] = _omero_display(node)
        interval = _frame_interval(axes, scale, units)
        if interval is not None:
            metadata["display"]["frame_interval_s"] = interval
    return Volume(data=data, spacing=spacing, path=p, metadata=metadata)


def _omero_display(group: zarr.Group) -> dict[str, Any]:
    """Channel names, colours and windows from ``omero`` metadata (empty when absent)."""
    try:
        channels = _ome_attrs(group)["omero"]["channels"]
        return {"names": [str(ch.get("label", "")) for ch in channels],
                "colors": [str(ch.get("color", "FFFFFF")) for ch in channels],
                "ranges": [(float(ch["window"]["start"]), float(ch["window"]["end"])) for ch in channels]}
    except (KeyError, TypeError, ValueError):
        return {}


_S_PER_TIME_UNIT = {"second": 1.0, "millisecond": 1e-3, "microsecond": 1e-6, "minute": 60.0, "hour": 3600.0,
                    "day": 86400.0}


def _frame_interval(axes: list[str], scale: list[float] | None, units: dict[str, str | None]) -> float | None:
    """Seconds between time points: the ``t`` scale, when the t axis has a time unit (else unknown)."""
    factor = _S_PER_TIME_UNIT.get(str(units.get("t")).lower())
    if "t" not in axes or scale is None or factor is None:
        return None
    value = scale[axes.index("t")] * factor
    return float(value) if math.isfinite(value) and value > 0 else None


def _open_node(p: Path, label: str) -> zarr.Group | zarr.Array:
    if not p.exists():
        raise InputError(f"{label} does not exist")
    if not p.is_dir():
        raise InputError(f"{label} is not a zarr store (a .zarr store is a folder)")
    try:
        node = zarr.open(str(p), mode="r")
    except (FileNotFoundError, ValueError, KeyError, TypeError, OSError) as exc:
        raise InputError(f"cannot read {label}: not a zarr store ({type(exc).__name__})") from None
    if isinstance(node, zarr.Group):
        status = selfnet_attrs(node).get("status")
        if status == "incomplete":
            raise InputError(f"{label} is an unfinished selfnet output: finish it with --resume")
        node = _image_group(node, label)
    return node


def _ome_attrs(group: zarr.Group) -> dict[str, Any]:
    attrs = dict(group.attrs)
    return dict(attrs["ome"]) if isinstance(attrs.get("ome"), dict) else attrs


def _image_group(group: zarr.Group, label: str) -> zarr.Group:
    """Follow a bioformats2raw layout (image in sub-group ``0``) to the multiscales group."""
    attrs = _ome_attrs(group)
    if "multiscales" not in attrs and "bioformats2raw.layout" in attrs and "0" in group:
        sub = group["0"]
        if isinstance(sub, zarr.Group):
            return sub
    return group


def _multiscale_level(group: zarr.Group, level: int, label: str
                      ) -> tuple[zarr.Array, list[str], list[float], dict[str, str | None], str]:
    attrs = _ome_attrs(group)
    ms = attrs.get("multiscales")
    if not isinstance(ms, list) or not ms or not isinstance(ms[0], dict):
        raise InputError(f"{label} has no OME-Zarr 'multiscales' metadata: not an OME-Zarr image")
    image = ms[0]
    version = str(attrs.get("version") or image.get("version") or "?")
    datasets = image.get("datasets") or []
    if not isinstance(level, int) or not 0 <= level < len(datasets):
        raise InputError(f"--level {level} is out of range: {label} has {len(datasets)} level(s) "
                         f"(0 to {len(datasets) - 1})")
    arr = group.get(datasets[level].get("path", ""))
    if not isinstance(arr, zarr.Array):
        raise InputError(f"cannot read {label}: level {level} ('{datasets[level].get('path')}') is missing")
    axes, units = _axes(image.get("axes"), arr.ndim, label)
    scale = _scale(datasets[level].get("coordinateTransformations"), arr.ndim)
    outer = _scale(image.get("coordinateTransformations"), arr.ndim)
    if scale is not None and outer is not None:
        scale = [a * b for a, b in zip(scale, outer)]
    return arr, axes, scale or outer, units, version


def _axes(raw: Any, ndim: int, label: str) -> tuple[list[str], dict[str, str | None]]:
    if raw is None:
        return _guess_axes(ndim), {}
    names: list[str] = []
    units: dict[str, str | None] = {}
    for item in raw:
        name = str(item.get("name") if isinstance(item, dict) else item).lower()
        kind = item.get("type") if isinstance(item, dict) else None
        name = {"time": "t", "channel": "c"}.get(str(kind), name)
        names.append(name)
        units[name] = item.get("unit") if isinstance(item, dict) else None
    if len(names) != ndim:
        raise InputError(f"cannot read {label}: {len(names)} axes in the metadata but the array has {ndim}")
    return names, units


def _guess_axes(ndim: int) -> list[str]:
    return list("tczyx"[-ndim:]) if ndim <= 5 else [f"d{i}" for i in range(ndim)]


def _scale(transforms: Any, ndim: int) -> list[float] | None:
    for t in transforms or []:
        if isinstance(t, dict) and t.get("type") == "scale" and len(t.get("scale", [])) == ndim:
            return [float(s) for s in t["scale"]]
    return None


def _check_dtype(data: da.Array, label: str) -> None:
    if data.dtype.kind not in "uif":
        raise InputError(f"{label} has data type {data.dtype}: selfnet reads integer or float grey-level images")


def _select_zyx(data: da.Array, axes: list[str], timepoint: int | None, channel: int | None,
                label: str) -> tuple[da.Array, dict[str, int]]:
    """Pick one time point / channel, drop other size-1 axes and check that ZYX is left."""
    selected: dict[str, int] = {}
    for axis, index, flag, noun in (("t", timepoint, "--timepoint", "time point"),
                                    ("c", channel, "--channel", "channel")):
        if axis not in axes:
            if index not in (None, 0):
                raise InputError(f"{flag} {index} is out of range: {label} has a single {noun} (0)")
            continue
        pos = axes.index(axis)
        size = data.shape[pos]
        if index is None and size > 1:
            raise InputError(f"{label} has {size} {noun}s: choose one with {flag} N")
        index = 0 if index is None else index
        if not 0 <= int(index) < size:
            raise InputError(f"{flag} {index} is out of range: {label} has {size} {noun}s (0 to {size - 1})")
        data = data[(slice(None),) * pos + (int(index),)]
        axes = axes[:pos] + axes[pos + 1:]
        selected[axis.upper()] = int(index)
    extra = [i for i, a in enumerate(axes) if a not in "zyx"]
    if any(data.shape[i] > 1 for i in extra):
        raise InputError(f"{label} has axes {''.join(axes)}: selfnet needs a ZYX z-stack (with optional t and c)")
    if extra:
        data = data.squeeze(axis=tuple(extra))
        axes = [a for a in axes if a in "zyx"]
    if axes != ["z", "y", "x"]:
        raise InputError(f"{label} has axes {''.join(axes)} {tuple(data.shape)}: selfnet needs a ZYX z-stack")
    if data.shape[0] < 2:
        raise InputError(f"{label} has only {data.shape[0]} z plane(s); selfnet needs at least 2")
    return data, selected


def _spacing(axes: list[str], scale: list[float] | None, units: dict[str, str | None],
             lateral_um: float | None, axial_um: float | None, label: str
             ) -> tuple[tuple[float, float, float], dict[str, str], list[str]]:
    found: dict[str, float] = {}
    unitless = False
    for name, value in zip(axes, scale or []):
        if name in "zyx":
            unit = units.get(name)
            unitless |= unit is None
            factor = _UM_PER_NGFF_UNIT.get(str(unit).lower()) if unit else 1.0
            if factor is not None and value > 0:
                found[name] = value * factor
    notes = ["axis unit missing: scale read as micrometer"] if unitless and scale is not None else []
    lateral = _option(lateral_um, "--lateral-um")
    axial = _option(axial_um, "--axial-um")
    dz = axial if axial is not None else found.get("z")
    dy, dx = (lateral, lateral) if lateral is not None else (found.get("y"), found.get("x"))
    if dz is None or dy is None or dx is None:
        missing = [f for f, v in (("--lateral-um", dx), ("--axial-um", dz)) if v is None]
        raise InputError(f"no voxel size in {label}: pass {' and '.join(missing)} (µm)")
    sources = {"axial": "argument" if axial is not None else "ngff",
               "lateral": "argument" if lateral is not None else "ngff"}
    return (float(dz), float(dy), float(dx)), sources, notes


def _option(value: float | None, flag: str) -> float | None:
    if value is None:
        return None
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise InputError(f"{flag} must be a positive number of µm, got {value}")
    return float(value)


def lazy_tiff_series(path: str | Path) -> da.Array:
    """The first series of a TIFF as a lazy dask array that reads pages (or tiles) on demand."""
    if not have_zarr():
        return tifffile.imread(str(path), series=0)  # no zarr: read eagerly
    store = tifffile.imread(str(path), aszarr=True, series=0, level=0)
    return da.from_zarr(zarr.open(store, mode="r"))


def open_level(path: str | Path, level: int = 0, *, mode: str = "r") -> zarr.Array:
    """The array of one multiscale level of a store written by selfnet (no metadata checks)."""
    _require_zarr()
    return zarr.open_array(str(Path(path) / str(level)), mode=mode)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------------------------


def multiscales_metadata(spacing: tuple[float, float, float], levels: int, *, version: str = DEFAULT_NGFF,
                         name: str = "selfnet", factor: int = 2, lead: str = "",
                         frame_interval_s: float | None = None) -> dict[str, Any]:
    """One NGFF ``multiscales`` entry: optional t/c axes (``lead``), z/y/x in micrometer, a scale per level."""
    axes: list[dict[str, Any]] = []
    if "t" in lead:  # a unit only with a known frame interval: a reader takes the t scale for one
        axes.append({"name": "t", "type": "time", **({"unit": "second"} if frame_interval_s else {})})
    if "c" in lead:
        axes.append({"name": "c", "type": "channel"})
    axes += [{"name": a, "type": "space", "unit": "micrometer"} for a in "zyx"]
    head = ([float(frame_interval_s or 1.0)] if "t" in lead else []) + ([1.0] if "c" in lead else [])
    datasets = [
        {"path": str(lv), "coordinateTransformations": [
            {"type": "scale", "scale": head + [float(s) * factor**lv for s in spacing]}]}
        for lv in range(levels)
    ]
    entry: dict[str, Any] = {"name": name, "axes": axes, "datasets": datasets}
    if levels > 1:
        entry["type"] = "mean"
        entry["metadata"] = {"description": f"{factor}x{factor}x{factor} mean per level"}
    if version == "0.4":
        entry = {"version": "0.4", **entry}
    return entry


def _omero(windows: list[tuple[float, float]] | None, version: str, names: list[str] | None = None,
           colors: list[str] | None = None) -> dict[str, Any] | None:
    """``omero`` display metadata: one entry per channel with its window, label and colour."""
    if not windows:
        return None
    channels = []
    for i, window in enumerate(windows):
        low, high = (float(v) for v in window)
        channels.append({"label": names[i] if names else ("selfnet" if len(windows) == 1 else f"channel {i}"),
                         "color": colors[i] if colors else "FFFFFF", "active": True,
                         "window": {"min": low, "max": high, "start": low, "end": high}})
    out: dict[str, Any] = {"channels": channels, "rdefs": {"model": "greyscale" if len(windows) == 1 else "color"}}
    if version == "0.4":
        out["version"] = "0.4"
    return out


def _check_version(version: str) -> str:
    if version not in NGFF_VERSIONS:
        raise OutputError(f"unsupported OME-Zarr version {version!r}: choose {' or '.join(NGFF_VERSIONS)}")
    return version


def default_chunks(shape: tuple[int, int, int], block: tuple[int, int, int] | None = None) -> tuple[int, int, int]:
    """Chunk shape: at most 64 x 256 x 256 voxels, dividing ``block`` when one is given."""
    target = (64, 256, 256)
    if block is None:
        return tuple(max(1, min(t, n)) for t, n in zip(target, shape))  # type: ignore[return-value]
    return tuple(_largest_divisor(b, t) for b, t in zip(block, target))  # type: ignore[return-value]


def _largest_divisor(n: int, at_most: int) -> int:
    return next(d for d in range(min(n, at_most), 0, -1) if n % d == 0)


def create_store(path: str | Path, shape: tuple[int, ...], dtype: str, *, chunks: tuple[int, ...],
                 version: str = DEFAULT_NGFF, attrs: dict[str, Any] | None = None,
                 dims: str | None = None) -> zarr.Array:
    """Create a group with an empty level-0 array (ZYX, or TCZYX-like with leading axes), marked incomplete.

    ``dims`` names the axes (``"tzyx"``...) where they are not the last of ``tczyx``.
    """
    _require_zarr()
    version = _check_version(version)
    fmt = 2 if version == "0.4" else 3
    group = zarr.open_group(str(path), mode="w", zarr_format=fmt)
    group.attrs["selfnet"] = {"status": "incomplete", **(attrs or {})}
    return _create_level(group, "0", shape, dtype, chunks, fmt, dims)


def _create_level(group: zarr.Group, name: str, shape: tuple[int, ...], dtype: str,
                  chunks: tuple[int, ...], fmt: int, dims: str | None = None) -> zarr.Array:
    chunks = tuple(max(1, min(c, n)) for c, n in zip(chunks, shape))
    kwargs: dict[str, Any] = {"shape": shape, "chunks": chunks, "dtype": dtype, "fill_value": 0,
                              "overwrite": True}
    if fmt == 2:
        kwargs["chunk_key_encoding"] = {"name": "v2", "separator": "/"}
    else:
        kwargs["dimension_names"] = list(dims or "tczyx"[-len(shape):])
    return group.create_array(name, **kwargs)


def selfnet_attrs(group: zarr.Group | str | Path) -> dict[str, Any]:
    """The ``selfnet`` attributes of a store (status, plan, normaliser...), empty if none."""
    _require_zarr()
    if not isinstance(group, zarr.Group):
        group = zarr.open_group(str(group), mode="r")
    value = dict(group.attrs).get("selfnet")
    return dict(value) if isinstance(value, dict) else {}


def display_window(path: str | Path) -> tuple[float, float] | None:
    """The display range (min, max) in a finished store's ``omero`` metadata, if any."""
    _require_zarr()
    attrs = _ome_attrs(zarr.open_group(str(path), mode="r"))
    try:
        window = attrs["omero"]["channels"][0]["window"]
        return float(window["min"]), float(window["max"])
    except (KeyError, IndexError, TypeError, ValueError):
        return None


def pyramid_shapes(shape: tuple[int, int, int], *, min_size: int = _PYRAMID_MIN, factor: int = 2
                   ) -> list[tuple[int, int, int]]:
    """Shapes of the levels: halve every axis until the largest lateral side is below ``min_size``."""
    shapes = [tuple(shape)]
    while max(shapes[-1][1:]) >= 2 * min_size and min(shapes[-1]) >= factor:
        shapes.append(tuple(-(-n // factor) for n in shapes[-1]))
    return shapes  # type: ignore[return-value]


def pyramid_regions(shape: tuple[int, int, int], block: tuple[int, int, int] = _PYRAMID_BLOCK
                    ) -> list[tuple[slice, slice, slice]]:
    """Output regions (aligned to ``block``) that tile one pyramid level."""
    grid = [range(0, n, b) for n, b in zip(shape, block)]
    return [tuple(slice(o, min(o + b, n)) for o, b, n in zip(origin, block, shape))  # type: ignore[misc]
            for origin in itertools.product(*grid)]


def write_pyramid_level(path: str | Path, level: int, region: tuple[slice, slice, slice],
                        lead: tuple[int, ...] = ()) -> None:
    """Compute one region of ``level`` as the 2x2x2 mean of ``level - 1`` (edges replicated).

    ``lead`` picks one stack (t, c) of a store with leading axes; only z/y/x are down-sampled.
    """
    src = open_level(path, level - 1)
    dst = open_level(path, level, mode="r+")
    sl = tuple(slice(2 * s.start, min(2 * s.stop, n)) for s, n in zip(region, src.shape[len(lead):]))
    block = np.asarray(src[lead + sl], dtype=np.float32)
    want = tuple(2 * (s.stop - s.start) for s in region)
    pad = [(0, w - b) for w, b in zip(want, block.shape)]
    if any(p[1] for p in pad):
        block = np.pad(block, pad, mode="edge")
    z, y, x = (s.stop - s.start for s in region)
    mean = block.reshape(z, 2, y, 2, x, 2).mean(axis=(1, 3, 5))
    dst[lead + region] = _cast(mean, dst.dtype)


def _cast(data: np.ndarray, dtype: np.dtype) -> np.ndarray:
    from selfnet.io import to_dtype

    return to_dtype(data, np.dtype(dtype).name)


def add_pyramid(path: str | Path, *, run: Callable[[Callable[..., None], list[Any]], None] | None = None,
                min_size: int | None = None) -> int:
    """Add down-sampled levels 1.. to a store whose level 0 is complete; return the level count.

    Leading t/c axes (a series store) are kept at full size: every (t, c) stack is down-sampled in
    z/y/x alone. ``run(fn, items)`` may execute ``fn(item)`` for all items in parallel (default: in a loop).
    """
    base = open_level(path, 0)
    n_lead = base.ndim - 3
    lead_shape, zyx = tuple(base.shape[:n_lead]), tuple(base.shape[n_lead:])
    shapes = pyramid_shapes(zyx, min_size=min_size or _PYRAMID_MIN)  # type: ignore[arg-type]
    group = zarr.open_group(str(path), mode="r+")
    fmt = group.metadata.zarr_format
    dims = "".join(getattr(base.metadata, "dimension_names", None) or ()) or None
    for level, shape in enumerate(shapes[1:], start=1):
        _create_level(group, str(level), lead_shape + shape, base.dtype.name, (1,) * n_lead + default_chunks(shape),
                      fmt, dims)
        jobs = [(str(path), level, r, tuple(int(i) for i in lead))
                for lead in np.ndindex(*lead_shape) for r in pyramid_regions(shape)]
        if run is None:
            for job in jobs:
                write_pyramid_level(*job)
        else:
            run(_pyramid_job, jobs)
    return len(shapes)


def _pyramid_job(job: tuple[str, int, tuple[slice, slice, slice], tuple[int, ...]]) -> None:
    write_pyramid_level(*job)


def finalize_store(path: str | Path, spacing: tuple[float, float, float], levels: int, *,
                   window: tuple[float, float] | None = None, name: str = "selfnet",
                   extra: dict[str, Any] | None = None, lead: str = "",
                   display: dict[str, Any] | None = None) -> None:
    """Write the ``multiscales`` (and ``omero``) metadata and mark the store complete.

    ``lead`` names leading ``t``/``c`` axes; ``display`` holds per-channel ``windows``, ``names``,
    ``colors`` and the ``frame_interval_s``.
    """
    group = zarr.open_group(str(path), mode="r+")
    version = "0.4" if group.metadata.zarr_format == 2 else "0.5"
    display = display or {}
    ms = multiscales_metadata(spacing, levels, version=version, name=name, lead=lead,
                              frame_interval_s=display.get("frame_interval_s"))
    windows = display.get("windows") or ([window] if window else None)
    omero = _omero(windows, version, display.get("names"), display.get("colors"))
    if version == "0.4":
        group.attrs["multiscales"] = [ms]
        if omero:
            group.attrs["omero"] = omero
    else:
        ome: dict[str, Any] = {"version": "0.5", "multiscales": [ms]}
        if omero:
            ome["omero"] = omero
        group.attrs["ome"] = ome
    group.attrs["selfnet"] = {**selfnet_attrs(group), **(extra or {}), "status": "complete"}


def write_ngff(path: str | Path, data: np.ndarray, spacing: tuple[float, float, float], *,
               dtype: str = "float32", overwrite: bool = False, metadata: dict[str, Any] | None = None,
               pyramid: bool = False, version: str = DEFAULT_NGFF) -> Path:
    """Write an in-memory ZYX array as an OME-Zarr image (optionally with a pyramid)."""
    from selfnet.io import to_dtype

    final = check_zarr_output(path, overwrite=overwrite)
    volume = np.asarray(data)
    if volume.ndim != 3:
        raise ValueError(f"write_ngff needs a ZYX array, got shape {volume.shape}")
    if final.exists():
        remove_store(final)
    out = to_dtype(volume, dtype)
    arr = create_store(final, out.shape, dtype, chunks=default_chunks(out.shape), version=version,
                       attrs={"metadata": _jsonable(metadata or {})})
    for region in _slabs(out.shape, arr.chunks[0]):
        arr[region] = out[region]
    levels = add_pyramid(final) if pyramid else 1
    window = (float(out.min()), float(out.max())) if out.size else None
    finalize_store(final, spacing, levels, window=window)
    return final


def _slabs(shape: tuple[int, ...], step: int) -> Iterable[tuple[slice, ...]]:
    for z0 in range(0, shape[0], step):
        yield (slice(z0, min(z0 + step, shape[0])),)


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))
