"""A whole chunked restore into an OME-Zarr store, in-process or on a Dask cluster.

``restore_into`` fills one (t, c) slot of a series store with the same block jobs. Blocks run in any order; the pyramid and ``multiscales`` metadata are written after the last
block, so an interrupted store never looks like a finished OME-Zarr image.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import resource
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from selfnet._version import __version__
from selfnet.errors import CancelToken
from selfnet.inference.job import (
    BlockJob,
    _worker_block,
    _write_block,
    model_fingerprint,
)
from selfnet.inference.plan import BlockPlan, choose_halo, parse_block
from selfnet.inference.resume import (
    PROGRESS_DIR,
    _open_or_create,
    done_blocks,
    stack_blocks,
)
from selfnet.inference.slices import VIEWS, check_ratio
from selfnet.io import Volume
from selfnet.io.source import DamagedDataError, SourceSpec
from selfnet.io.zarr import DEFAULT_NGFF, add_pyramid, check_zarr_output, finalize_store
from selfnet.method.normalize import Normalizer
from selfnet.model import Model

ProgressFn = Callable[[int, int], None]


def peak_rss() -> int:
    """Peak resident memory of this process in bytes."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)


@dataclass
class ChunkedResult:
    """What a chunked restore did."""

    path: Path
    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    blocks: int
    blocks_run: int
    seconds: float
    levels: int
    peak_rss: int
    worker_peak_rss: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def mvox_per_s(self) -> float:
        """Output voxels per second of wall time, in millions."""
        return math.prod(self.shape) / 1e6 / max(self.seconds, 1e-9)


def restore_chunked(vol: Volume, model: Model, output: str | Path, *, block: Sequence[int] | None = None,
                    device: str = "cpu", dtype: str = "float32", overwrite: bool = False, resume: bool = False,
                    pyramid: bool = False, client: Any = None, ngff_version: str = DEFAULT_NGFF,
                    views: tuple[str, ...] = VIEWS, force: bool = False, on_block: ProgressFn | None = None,
                    metadata: dict[str, Any] | None = None, chunks: tuple[int, int, int] | None = None,
                    halo: int | None = None, cancel: CancelToken | None = None) -> ChunkedResult:
    """Restore ``vol`` block by block into the OME-Zarr store ``output``.

    Parameters
    ----------
    vol : lazy or in-memory ZYX volume with its spacing (a file-backed Volume for ``client``)
    model : trained model
    output : ``.zarr``/``.ome.zarr`` store to create (or to finish, with ``resume``)
    block : output block shape (z, y, x); multiples of 8
    client : a ``dask.distributed.Client``: blocks run on its workers, which write to ``output``
    on_block : ``on_block(done, total)`` after every block
    cancel : checked between blocks; finished blocks are kept for ``resume``
    """
    from selfnet.devices import resolve_device

    t0 = time.perf_counter()
    check_ratio(model.ratio, vol.spacing[0] / vol.spacing[2], force=force)
    torch_device = resolve_device(device)
    net = model.deblur_net(torch_device)
    plan = _block_plan(vol, net, block, halo)
    spacing = (vol.spacing[2], vol.spacing[1], vol.spacing[2])
    store = check_zarr_output(output, overwrite=overwrite, resume=resume)
    fingerprint = model_fingerprint(model)
    settings = {"plan": plan.to_dict(), "model": fingerprint, "dtype": dtype, "views": list(views),
                "selfnet_version": __version__}
    normalizer, done = _open_or_create(store, vol, model, plan, settings, resume, ngff_version, chunks, metadata)
    if done is None:
        return _already_complete(store, plan, spacing, t0)
    job = BlockJob(str(store), plan, normalizer.low, normalizer.high, dtype, tuple(views), device, fingerprint)
    todo = [i for i in plan.indices() if i not in done]
    worker_rss = _run_blocks(job, vol, model, net, torch_device, todo, len(done), client, on_block, cancel)
    levels = _finish(store, spacing, pyramid, client)
    return ChunkedResult(store, plan.out_shape, spacing, len(plan.indices()), len(todo), time.perf_counter() - t0,
                         levels, peak_rss(), worker_rss, {"halo": plan.halo, "block": plan.block})


def restore_into(vol: Volume, model: Model, store: str | Path, lead: tuple[int, ...], normalizer: Normalizer, *,
                 block: Sequence[int] | str | None = None, device: str = "cpu", dtype: str = "float32",
                 views: tuple[str, ...] = VIEWS, client: Any = None, force: bool = False, halo: int | None = None,
                 on_block: ProgressFn | None = None, cancel: CancelToken | None = None) -> dict[str, float]:
    """Restore ``vol`` block by block into the (t, c) slot ``lead`` of an existing series store; its min and max.

    The series' ``normalizer`` is used (one per channel, so time points do not flicker); blocks
    already marked for this stack with the same plan are skipped, so ``resume`` works inside a stack.
    """
    from selfnet.devices import resolve_device

    check_ratio(model.ratio, vol.spacing[0] / vol.spacing[2], force=force)
    torch_device = resolve_device(device)
    net = model.deblur_net(torch_device)
    plan = _block_plan(vol, net, block, halo)
    store = Path(store)
    done = stack_blocks(store, lead, plan)
    job = BlockJob(str(store), plan, normalizer.low, normalizer.high, dtype, tuple(views), device,
                   model_fingerprint(model), lead=tuple(int(i) for i in lead))
    todo = [i for i in plan.indices() if i not in done]
    _run_blocks(job, vol, model, net, torch_device, todo, len(done), client, on_block, cancel)
    stats = list(stack_blocks(store, lead, plan).values())
    return {"min": min(s["min"] for s in stats), "max": max(s["max"] for s in stats)}


def _block_plan(vol: Volume, net: Any, block: Sequence[int] | str | None, halo: int | None) -> BlockPlan:
    """How the output of ``vol`` is cut into blocks for ``net`` (origins on its unshuffle multiple)."""
    multiple = int(getattr(net, "multiple", 1))
    raw_shape = tuple(int(n) for n in vol.data.shape)
    return BlockPlan(raw_shape, float(vol.spacing[0] / vol.spacing[2]), parse_block(block, multiple),  # type: ignore[arg-type]
                     halo or choose_halo(net), multiple)


def _run_blocks(job: BlockJob, vol: Volume, model: Model, net: Any, device: Any, todo: list[tuple[int, ...]],
                finished: int, client: Any, on_block: ProgressFn | None, cancel: CancelToken | None) -> int | None:
    """Run the ``todo`` blocks in-process or on ``client``'s workers; the largest worker's peak memory."""
    total = finished + len(todo)
    store = Path(job.store)
    if on_block:
        on_block(finished, total)
    with _damaged_input_keeps_blocks(vol, store):
        if client is None:
            for index in todo:
                _check_cancel(cancel, store)
                _write_block(job, vol.data, index, net, device)
                finished += 1
                if on_block:
                    on_block(finished, total)
            return None
        _run_distributed(client, job, vol, model, todo, finished, total, on_block, cancel)
        return _worker_peak(client)


def _already_complete(store: Path, plan: BlockPlan, spacing: tuple[float, float, float], t0: float) -> ChunkedResult:
    levels = len([k for k in os.listdir(store) if k.isdigit()])
    return ChunkedResult(store, plan.out_shape, spacing, len(plan.indices()), 0, time.perf_counter() - t0,
                         levels, peak_rss())


@contextlib.contextmanager
def _damaged_input_keeps_blocks(vol: Volume, store: Path) -> Iterator[None]:
    """A block whose input cannot be decoded stops the restore with one line; finished blocks stay resumable."""
    try:
        yield
    except DamagedDataError as err:
        kept = len(done_blocks(store))
        raise DamagedDataError(f"cannot read {vol.path or 'the input'}: {err}; the {kept} finished blocks are kept "
                               f"in {store}: repair or replace the input, then rerun with --resume") from None


def _check_cancel(cancel: CancelToken | None, store: Path) -> None:
    if cancel is not None:
        cancel.raise_if_cancelled(f"finished blocks are kept in {store}: rerun the same command with --resume "
                                  "to complete it")


def _run_distributed(client: Any, job: BlockJob, vol: Volume, model: Model, todo: list[tuple[int, ...]],
                     finished: int, total: int, on_block: ProgressFn | None, cancel: CancelToken | None) -> None:
    from distributed import as_completed

    info = client.scheduler_info()
    workers = info.get("workers", {})
    cores = os.cpu_count() or 1
    threads = max(1, cores // max(1, len(workers))) if _is_local(info) else None
    job = dataclasses.replace(job, source=SourceSpec.from_volume(vol), threads=threads)
    # one datum under a fresh key: a dict scattered as is puts each entry under its own name ("deblur", ...),
    # which the next stack's model reuses while these are being released (lost data, or the wrong weights)
    weights = client.scatter([model.to_dict()], broadcast=True, hash=False)[0]
    futures = client.map(_worker_block, todo, job=job, model=weights, pure=False)
    try:
        for fut in as_completed(futures):
            fut.result()
            _check_cancel(cancel, Path(job.store))
            finished += 1
            if on_block:
                on_block(finished, total)
    except BaseException:
        client.cancel(futures)
        raise


def _is_local(info: dict[str, Any]) -> bool:
    address = str(info.get("address", ""))
    return any(host in address for host in ("127.0.0.1", "localhost", "inproc://"))


def _worker_peak(client: Any) -> int | None:
    with contextlib.suppress(Exception):
        return max(client.run(peak_rss).values())
    return None


def cluster_runner(client: Any) -> Callable[[Callable[..., None], list[Any]], None] | None:
    """``run(fn, items)`` that maps ``fn`` over ``items`` on the cluster and waits (None: in-process)."""
    if client is None:
        return None

    def run(fn: Callable[..., None], items: list[Any]) -> None:
        client.gather(client.map(fn, items, pure=False))

    return run


def _finish(store: Path, spacing: tuple[float, float, float], pyramid: bool, client: Any) -> int:
    """Pyramid (optional), then metadata; the store counts as complete only after this."""
    stats = done_blocks(store).values()
    window = (min(s["min"] for s in stats), max(s["max"] for s in stats)) if stats else None
    levels = add_pyramid(store, run=cluster_runner(client)) if pyramid else 1
    finalize_store(store, spacing, levels, window=window)
    with contextlib.suppress(OSError):
        shutil.rmtree(store / PROGRESS_DIR)
    return levels
