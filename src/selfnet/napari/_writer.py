"""napari writer: one image layer to ImageJ TIFF, OME-TIFF, ``.npy`` or OME-Zarr through :mod:`selfnet.io`, scale kept."""

from __future__ import annotations

from typing import Any

import numpy as np

from selfnet.io import write_volume

EXTENSIONS = (".tif", ".tiff", ".ome.tif", ".ome.tiff", ".npy", ".ome.zarr", ".zarr")
_KEPT = {"imagej": ("float32", "uint16", "uint8"), "ome": ("float32", "uint16", "uint8", "int16"),
         "npy": ("float32", "float16", "uint16", "uint8", "int16")}


def write_image(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    """Write one ZYX image layer with its scale (µm) as voxel size; return the path written."""
    stack = zyx(data)
    spacing = spacing_of(meta.get("scale"))
    out = write_volume(path, stack, spacing, dtype=output_dtype(path, stack.dtype), overwrite=True,
                       metadata={"name": str(meta.get("name", ""))})
    return [str(out)]


def zyx(data: Any) -> np.ndarray:
    """The layer as a ZYX array: leading axes of size 1 dropped; anything else is refused in one line."""
    arr = np.asarray(data)
    while arr.ndim > 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 3:
        raise ValueError(f"selfnet writes one ZYX stack per file; this layer has shape {arr.shape}: "
                         "save one time point or channel at a time")
    return arr


def spacing_of(scale: Any) -> tuple[float, float, float]:
    """(dz, dy, dx) from a layer's scale (its last three entries); 1 µm where no scale is given."""
    if scale is None:
        return (1.0, 1.0, 1.0)
    dz, dy, dx = (float(s) for s in list(scale)[-3:])
    return (dz, dy, dx)


def output_dtype(path: str, dtype: np.dtype) -> str:
    """The layer's own data type when the format holds it, else float32."""
    name = path.lower()
    kind = "npy" if name.endswith((".npy", ".zarr")) else "ome" if name.endswith((".ome.tif", ".ome.tiff")) \
        else "imagej"
    return dtype.name if dtype.name in _KEPT[kind] else "float32"
