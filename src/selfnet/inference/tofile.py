"""Chunked restoring to TIFF / OME-TIFF / ``.npy``: through a hidden partial store, then streamed out."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from selfnet.errors import ConfigError, OutputError
from selfnet.inference.chunked import ChunkedResult, peak_rss, restore_chunked
from selfnet.inference.plan import parse_block
from selfnet.inference.resume import partial_store
from selfnet.io import Volume, check_output_path
from selfnet.io.write import write_array
from selfnet.io.zarr import (
    default_chunks,
    display_window,
    is_zarr_path,
    open_level,
    remove_store,
)
from selfnet.model import Model

_EXPORT_SLAB_BYTES = 128 * 2**20


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
    """Stream level 0 of a store into a TIFF, OME-TIFF or ``.npy`` through the one writer per format."""
    arr = open_level(store, 0)
    window = display_window(store)
    write_array(output, arr, spacing, axes="ZYX", dtype=str(arr.dtype), overwrite=True, metadata=metadata,
                display={"ranges": [window]} if window else None)
