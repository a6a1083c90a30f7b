"""Chunked restoring to TIFF / OME-TIFF / ``.npy``: through a hidden partial store, then streamed out."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from selfnet.errors import ConfigError, OutputError
from selfnet.inference.chunked import ChunkedResult, peak_rss, restore_chunked
from selfnet.inference.plan import parse_block
from selfnet.inference.resume import partial_store
from selfnet.io import Volume, atomic_write, check_output_path
from selfnet.io.zarr import (
    default_chunks,
    display_window,
    is_zarr_path,
    open_level,
    remove_store,
)
from selfnet.model import Model

_EXPORT_SLAB_BYTES = 128 * 2**20
_BIGTIFF_BYTES = int(3.5 * 2**30)


def restore_to_file(vol: Volume, model: Model, output: str | Path, *, overwrite: bool = False,
                    resume: bool = False, pyramid: bool = False, dtype: str = "float32",
                    block: Sequence[int] | None = None, **options: Any) -> ChunkedResult:
    """Chunked restore to any output: OME-Zarr directly, TIFF/npy through a hidden partial store."""
    if is_zarr_path(output):
        return restore_chunked(vol, model, output, overwrite=overwrite, resume=resume, pyramid=pyramid,
                               dtype=dtype, block=block, **options)
    if pyramid:
        raise ConfigError("--pyramid needs an OME-Zarr output (.zarr or .ome.zarr)")
    final = check_output_path(output, overwrite=overwrite)
    partial = partial_store(final)
    if partial.exists() and not (resume or overwrite):
        raise OutputError(f"an unfinished restore of {final.name} exists ({partial.name}): "
                          "pass --resume to finish it or --overwrite to start again")
    t0 = time.perf_counter()
    plan_block = parse_block(block)
    y, x = (int(n) for n in vol.data.shape[1:])
    depth = max(1, min(plan_block[0], _EXPORT_SLAB_BYTES // (y * x * 4)))
    chunks = (next(d for d in range(depth, 0, -1) if plan_block[0] % d == 0),) + default_chunks(
        (1, y, x), plan_block)[1:]
    result = restore_chunked(vol, model, partial, overwrite=True, resume=resume, dtype=dtype, block=plan_block,
                             chunks=chunks, **options)  # type: ignore[arg-type]
    export_volume(partial, final, result.spacing, metadata=options.get("metadata"))
    remove_store(partial)
    result.path, result.seconds = final, time.perf_counter() - t0
    result.peak_rss = peak_rss()
    return result


def export_volume(store: str | Path, output: Path, spacing: tuple[float, float, float], *,
                  metadata: dict[str, Any] | None = None) -> None:
    """Stream level 0 of a store into a TIFF (BigTIFF when > 3.5 GiB), OME-TIFF or ``.npy``."""
    arr = open_level(store, 0)
    name = output.name.lower()
    window = display_window(store)
    if name.endswith(".npy"):
        _export_npy(arr, output, spacing, metadata)
    else:
        _export_tiff(arr, output, spacing, metadata, window, ome=name.endswith((".ome.tif", ".ome.tiff")))


def _slabs(arr: Any) -> Iterator[np.ndarray]:
    step = int(arr.chunks[0])
    for z0 in range(0, arr.shape[0], step):
        yield np.asarray(arr[z0 : z0 + step])


def _planes(arr: Any) -> Iterator[np.ndarray]:
    for slab in _slabs(arr):
        yield from slab


def _export_tiff(arr: Any, output: Path, spacing: tuple[float, float, float], metadata: dict[str, Any] | None,
                 window: tuple[float, float] | None, *, ome: bool) -> None:
    import warnings

    import tifffile

    dz, dy, dx = spacing
    big = math.prod(arr.shape) * arr.dtype.itemsize > _BIGTIFF_BYTES
    kwargs: dict[str, Any] = {"shape": arr.shape, "dtype": arr.dtype, "bigtiff": big, "photometric": "minisblack"}
    if ome:
        meta: dict[str, Any] = {"axes": "ZYX"}
        for axis, size in (("X", dx), ("Y", dy), ("Z", dz)):
            meta[f"PhysicalSize{axis}"], meta[f"PhysicalSize{axis}Unit"] = size, "µm"
        kwargs.update(ome=True, resolution=(1e4 / dx, 1e4 / dy), resolutionunit="CENTIMETER")
    else:
        meta = {"axes": "ZYX", "spacing": dz, "unit": "um"}
        if window:
            meta.update(min=window[0], max=window[1])
        kwargs.update(imagej=True, resolution=(1.0 / dx, 1.0 / dy))
    if metadata:
        meta["Description" if ome else "Info"] = json.dumps(metadata, default=str)
    with atomic_write(output) as temp, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*nonconformant BigTIFF ImageJ", category=UserWarning)
        tifffile.imwrite(temp, _planes(arr), metadata=meta, **kwargs)


def _export_npy(arr: Any, output: Path, spacing: tuple[float, float, float], metadata: dict[str, Any] | None) -> None:
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(arr.dtype)), "fortran_order": False,
              "shape": tuple(arr.shape)}
    sidecar = output.with_name(output.name + ".json")
    content: dict[str, Any] = {"spacing": list(spacing), "unit": "µm", "axes": "ZYX"}
    if metadata:
        content["metadata"] = metadata
    with atomic_write(output) as temp, atomic_write(sidecar) as temp_json:
        with open(temp, "wb") as fh:
            np.lib.format.write_array_header_2_0(fh, header)
            for slab in _slabs(arr):
                fh.write(np.ascontiguousarray(slab).tobytes())
        temp_json.write_text(json.dumps(content, indent=2, default=str, ensure_ascii=False), encoding="utf-8")
