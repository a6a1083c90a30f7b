"""A block job: restore one block, write its chunks, leave its progress marker (in-process or as a Dask task)."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from selfnet.errors import InputError
from selfnet.inference.block import restore_block
from selfnet.inference.plan import BlockPlan
from selfnet.inference.resume import _mark_done
from selfnet.io import to_dtype
from selfnet.io.source import SourceSpec
from selfnet.io.zarr import open_level
from selfnet.method.normalize import Normalizer
from selfnet.model import Model

_NETS: dict[str, nn.Module] = {}
_KEPT_NETS = 4


@dataclass(frozen=True)
class BlockJob:
    """Everything a worker needs to restore and write blocks, except the model weights."""

    store: str
    plan: BlockPlan
    low: float
    high: float
    dtype: str
    views: tuple[str, ...]
    device: str
    fingerprint: str
    source: SourceSpec | None = None
    threads: int | None = None
    lead: tuple[int, ...] = ()
    """The (t, c) slot of a series store that the blocks fill (empty: a ZYX store)."""


def model_fingerprint(model: Model) -> str:
    """Short hash of the deblurring weights and net config (identifies a model in --resume)."""
    h = hashlib.sha256(json.dumps(model.config.deblur.model_dump(mode="json"), sort_keys=True).encode())
    for name in sorted(model.deblur_state):
        h.update(name.encode())
        h.update(model.deblur_state[name].detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _write_block(job: BlockJob, data: Any, index: tuple[int, ...], net: nn.Module,
                 device: torch.device) -> dict[str, float]:
    t0 = time.perf_counter()
    normalizer = Normalizer(job.low, job.high)
    out = to_dtype(restore_block(data, job.plan, index, net, device, normalizer, views=job.views), job.dtype)
    open_level(job.store, 0, mode="r+")[job.lead + job.plan.region(index)] = out
    stats = {"min": float(out.min()), "max": float(out.max()), "seconds": time.perf_counter() - t0}
    _mark_done(job.store, job.lead + tuple(index), stats)
    return stats


def _worker_block(index: tuple[int, ...], job: BlockJob, model: dict[str, Any]) -> dict[str, float]:
    """Dask task: restore and write one block; the net and the input are cached per worker."""
    from selfnet.devices import resolve_device

    device = resolve_device(job.device)
    if job.fingerprint not in _NETS:
        if job.threads:
            torch.set_num_threads(job.threads)
        if len(_NETS) >= _KEPT_NETS:  # a series alternates between its channel models
            _NETS.clear()
        _NETS[job.fingerprint] = Model.from_dict(model).deblur_net(device)
    data = job.source.open()  # type: ignore[union-attr]
    if tuple(data.shape) != tuple(job.plan.raw_shape):
        raise InputError(f"worker sees {job.source.path} with shape {tuple(data.shape)}, "  # type: ignore[union-attr]
                         f"not {job.plan.raw_shape}: do all workers see the same files?")
    return _write_block(job, data, index, _NETS[job.fingerprint], device)
