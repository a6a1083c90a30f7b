"""napari reader: TIFF / OME-TIFF / ``.npy`` stacks through :mod:`selfnet.io`, scaled in µm, one layer per channel."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from selfnet.errors import InputError
from selfnet.io.series import SeriesLayout, probe_series, series_volume

LayerData = tuple[Any, dict[str, Any], str]
ReaderFn = Callable[[str | Sequence[str]], list[LayerData]]
SUFFIXES = (".tif", ".tiff", ".npy")
_MISSING_SIZES = {"no voxel size": (1.0, 1.0), "no lateral pixel size": (1.0, None), "no axial step": (None, 1.0)}


@dataclass
class Stack:
    """Every channel of a file, each a (T, Z, Y, X) or (Z, Y, X) array, with the voxel size (dz, dy, dx) in µm."""

    channels: list[Any]
    spacing: tuple[float, float, float]
    timepoints: int = 1
    calibrated: bool = True
    metadata: dict[str, Any] = field(default_factory=dict)


def napari_get_reader(path: str | Sequence[str]) -> ReaderFn | None:
    """The reader if selfnet can open every path (checked lazily), else None; never raises."""
    paths = [path] if isinstance(path, (str, Path)) else list(path)
    if not paths or not all(_readable(p) for p in paths):
        return None
    return read_layers


def read_layers(path: str | Sequence[str]) -> list[LayerData]:
    """Image layers for one or more files: scale from the voxel sizes, time leading, channels split."""
    paths = [path] if isinstance(path, (str, Path)) else list(path)
    return [layer for p in paths for layer in stack_layers(read_stack(p), Path(p))]


def _readable(path: str | Path) -> bool:
    """Whether ``path`` is a file selfnet reads: suffix, then a lazy open of its first stack."""
    if not str(path).lower().endswith(SUFFIXES):
        return False
    try:
        _probe(Path(path))
    except Exception:  # noqa: BLE001 - a reader that cannot read says None (codec, zarr and OS errors alike)
        return False
    return True


def read_stack(path: str | Path) -> Stack:
    """All channels and time points of a file, lazily, through the series layout the CLI and API use."""
    path = Path(path)
    layout, calibrated = _probe(path)
    volumes = [[series_volume(layout, t, c) for t in range(layout.n_t)] for c in range(layout.n_c)]
    first = volumes[0][0].metadata
    meta = {k: first[k] for k in ("source_format", "original_axes", "spacing_source", "display") if k in first}
    channels = [frames[0].data if layout.n_t == 1 else _lazy_stack([f.data for f in frames]) for frames in volumes]
    return Stack(channels, layout.spacing, layout.n_t, calibrated, meta)


def _probe(path: Path) -> tuple[SeriesLayout, bool]:
    """The file's layout, and whether it carries its voxel size (a file without one is read at 1 µm)."""
    axes = _axes_hint(path)
    try:
        return probe_series(path, axes=axes), True
    except InputError as err:
        missing = next((v for k, v in _MISSING_SIZES.items() if str(err).startswith(k)), None)
        if missing is None:
            raise
    lateral, axial = missing
    return probe_series(path, axes=axes, lateral_um=lateral, axial_um=axial), False


def _axes_hint(path: Path) -> str | None:
    """Axis names of a ``.npy`` file from its JSON sidecar (``"axes": "CZYX"``), if it gives them."""
    if not path.name.lower().endswith(".npy"):
        return None
    for sidecar in (path.with_name(path.name + ".json"), path.with_suffix(".json")):
        try:
            axes = json.loads(sidecar.read_text(encoding="utf-8")).get("axes")
        except (OSError, ValueError, AttributeError):
            continue
        return str(axes) if axes else None
    return None


def _lazy_stack(frames: list[Any]) -> Any:
    """Time points stacked without loading them (dask)."""
    import dask.array as da

    return da.stack([da.asarray(f) for f in frames])


def stack_layers(stack: Stack, path: Path) -> list[LayerData]:
    """One LayerData for the file: channels split by napari (``channel_axis=0``) when there are several."""
    scale = (1.0,) * (stack.timepoints > 1) + tuple(stack.spacing)
    meta = {"selfnet": {"path": str(path), "spacing": list(stack.spacing), "calibrated": stack.calibrated,
                        **stack.metadata}}
    kwargs: dict[str, Any] = {"scale": scale, "name": _stem(path), "metadata": meta}
    if stack.calibrated:
        kwargs["units"] = ("micrometer",) * len(scale)
    if len(stack.channels) == 1:
        return [(stack.channels[0], kwargs, "image")]
    import dask.array as da

    n = len(stack.channels)
    display = stack.metadata.get("display") or {}
    names = display.get("names") if len(display.get("names") or []) == n else None
    kwargs.update(channel_axis=0, name=[f"{_stem(path)} [{names[c] if names else f'c{c}'}]" for c in range(n)],
                  metadata=[{"selfnet": {**meta["selfnet"], "channel": c}} for c in range(n)])
    if len(display.get("ranges") or []) == n:
        kwargs["contrast_limits"] = [list(r) for r in display["ranges"]]
    return [(da.stack([da.asarray(ch) for ch in stack.channels]), kwargs, "image")]


def _stem(path: Path) -> str:
    """The file name without ``.ome.tif``, ``.tif`` or ``.npy``."""
    name = path.name
    for suffix in (".ome.tiff", ".ome.tif", ".tiff", ".tif", ".npy"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name
