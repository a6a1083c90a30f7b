"""The facade's job for multi-channel and time-lapse stacks (called by :mod:`selfnet.api` only).

Each channel is trained once (or all together, ``shared``) on a few time points spread over the
series, with one normaliser per channel fitted on those time points, so the restored series does
not flicker. Every selected (t, c) stack is then restored and written into one TCZYX-like store,
one stack at a time, with a progress marker per stack: ``resume`` skips finished stacks and reuses
the trained models kept in the store. A stack is restored in RAM, or block by block into its slot
(asked for, on Dask workers, or when one stack does not fit in RAM: memory bounded by one block),
with block markers so ``resume`` also continues inside a stack. OME-Zarr outputs may get a pyramid
(z/y/x down-sampled, t/c kept); TIFF and ``.npy`` outputs are streamed out of that hidden store at
the end through the one writer per format.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from selfnet import memory
from selfnet._version import __version__
from selfnet.config import TrainConfig
from selfnet.errors import Cancelled, CancelToken, ConfigError, ModelError, OutputError
from selfnet.io import Volume, to_dtype
from selfnet.io.series import SeriesLayout, parse_indices, series_volume, spread
from selfnet.model import Model, ModelSet
from selfnet.options import OutputSpec, SeriesOptions

log = logging.getLogger("selfnet")

MODELS_DIR = ".selfnet-models"
"""Inside a series store: the trained channel models, kept so that ``resume`` does not train again."""


@dataclass
class SeriesPlan:
    """Which time points and channels are restored, and which time points train each channel."""

    layout: SeriesLayout
    times: list[int]
    channels: list[int]
    train_times: list[int]
    shared: bool

    @property
    def axes(self) -> str:
        """Output axes: the input's T and C (when present), then ZYX."""
        return self.layout.axes + "ZYX"

    @property
    def out_lead(self) -> tuple[int, ...]:
        """Sizes of the output's leading T/C axes."""
        return tuple(len(self.times) if a == "T" else len(self.channels) for a in self.layout.axes)

    def index(self, ti: int, ci: int) -> tuple[int, ...]:
        """Position of the ``ti``-th time point and ``ci``-th channel in the output's leading axes."""
        return tuple(ti if a == "T" else ci for a in self.layout.axes)

    def stacks(self) -> list[tuple[int, int, int, int]]:
        """(ti, t, ci, c) for every stack to restore, time-major."""
        return [(ti, t, ci, c) for ti, t in enumerate(self.times) for ci, c in enumerate(self.channels)]


def plan_series(layout: SeriesLayout, options: SeriesOptions, model_channels: int | None = None) -> SeriesPlan:
    """Check the selection against the file (and the model set's channel count) and pick training time points."""
    times = parse_indices(options.timepoints, layout.n_t, "--timepoints", "time point")
    channels = parse_indices(options.channels, layout.n_c, "--channels", "channel")
    if options.train_timepoints is not None:
        train = parse_indices(options.train_timepoints, layout.n_t, "--train-timepoints", "time point")
    else:
        train = spread(times, options.train_count)
    if model_channels is not None and model_channels != len(channels):
        raise ModelError(f"the model holds {model_channels} channel models but {len(channels)} channels are "
                         f"restored ({layout.path.name} has {layout.n_c}): pick them with --channels")
    return SeriesPlan(layout, times, channels, train, options.shared_model)


# --- training ----------------------------------------------------------------------------------


TrainFn = Callable[[Volume, TrainConfig, Path | None, Any], Model]


def training_stack(plan: SeriesPlan, channels: list[int]) -> Volume:
    """The training time points of ``channels`` side by side along x: one volume to train and normalise on."""
    parts = [np.asarray(series_volume(plan.layout, t, c).data) for c in channels for t in plan.train_times]
    data = np.concatenate(parts, axis=2) if len(parts) > 1 else parts[0]
    meta = {"series_training": {"time points": plan.train_times, "channels": channels}}
    return Volume(data, plan.layout.spacing, plan.layout.path, meta)


def train_models(plan: SeriesPlan, cfg: TrainConfig, train: TrainFn, checkpoint_for: Callable[[int], Path | None],
                 kept: Path | None, cancel: CancelToken | None) -> ModelSet:
    """One model per channel (or one shared), each kept in ``kept`` as soon as it is trained."""
    groups = [plan.channels] if plan.shared else [[c] for c in plan.channels]
    models = []
    for gi, group in enumerate(groups):
        done = kept / f"model{gi}.pt" if kept is not None else None
        if done is not None and done.is_file():
            log.info(f"--resume: channel model {gi} was trained before; using it")
            models.append(Model.load(done))
            continue
        label = "all channels" if plan.shared else f"channel {group[0]}"
        log.info(f"training {label} on time point(s) {', '.join(map(str, plan.train_times))}")
        vol = training_stack(plan, group)
        memory.check_fits(memory.train_bytes(vol.data.shape, vol.data.dtype.itemsize, vol.ratio,
                                             patch_size=cfg.patch_size, pool_size=cfg.pool_size),
                          f"training {label}", "train on fewer time points (--train-timepoints)")
        model = train(vol, cfg.for_channel(None if plan.shared else group[0]), checkpoint_for(gi), cancel)
        model.summary["series"] = {"channels": group, "train_timepoints": plan.train_times}
        if done is not None:
            model.save(done, overwrite=True)
        models.append(model)
    names = plan.layout.display.get("names")
    return ModelSet(models, plan.shared, [names[c] for c in plan.channels] if names else None)


# --- restoring into the store ------------------------------------------------------------------


RestoreFn = Callable[[Volume, Model, int, int], np.ndarray]
"""Restore the stack of the ``ti``-th time point and ``ci``-th channel in RAM."""
StackFn = Callable[[Volume, Model, int, int], dict[str, float]]
"""Restore the stack of the ``ti``-th time point and ``ci``-th channel into its slot of the store; its min and max."""


@dataclass
class SeriesResult:
    """What a series restore did."""

    path: Path
    shape: tuple[int, ...]
    axes: str
    spacing: tuple[float, float, float]
    stacks: int
    stacks_run: int
    seconds: float
    ranges: list[tuple[float, float]] = field(default_factory=list)


def store_for(output: Path) -> Path:
    """Where the series is assembled: the output itself (OME-Zarr) or a hidden store beside it."""
    from selfnet.inference.resume import partial_store
    from selfnet.io.zarr import is_zarr_path

    return output if is_zarr_path(output) else partial_store(output)


def open_store(plan: SeriesPlan, output: Path, spec: OutputSpec, settings: dict[str, Any]) -> tuple[Path, set]:
    """Create the store, or reopen it with ``resume`` when it was made with the same settings; finished stacks."""
    from selfnet.inference.resume import done_blocks
    from selfnet.io.zarr import create_store, remove_store, selfnet_attrs

    store = store_for(output)
    if store.exists():
        if spec.resume:
            if selfnet_attrs(store).get("series") == settings:
                return store, set(done_blocks(store))
            raise OutputError(f"{store} was started with other settings or another input: start again with "
                              "--overwrite")
        if not spec.overwrite:
            raise OutputError(f"an unfinished restore of {output.name} exists ({store.name}): pass --resume to "
                              "finish it or --overwrite to start again")
        remove_store(store)
    shape = plan.out_lead + (_n_out(plan),) + plan.layout.shape[1:]
    chunks = (1,) * len(plan.out_lead) + (min(shape[-3], 64),) + tuple(min(n, 256) for n in shape[-2:])
    create_store(store, shape, spec.dtype, chunks=chunks, version=spec.ngff,
                 attrs={"series": settings, "selfnet_version": __version__}, dims=plan.axes.lower())
    return store, set()


def _n_out(plan: SeriesPlan) -> int:
    from selfnet.method.resample import n_iso

    dz, _, dx = plan.layout.spacing
    return n_iso(plan.layout.shape[0], dz / dx)


def in_ram(plan: SeriesPlan, store: Path, dtype: str, restore: RestoreFn) -> StackFn:
    """A :data:`StackFn` that restores a whole stack in RAM and writes it into its slot of ``store``."""
    from selfnet.io.zarr import open_level

    arr = open_level(store, 0, mode="r+")

    def write(vol: Volume, model: Model, ti: int, ci: int) -> dict[str, float]:
        out = to_dtype(restore(vol, model, ti, ci), dtype)
        arr[plan.index(ti, ci)] = out
        return {"min": float(out.min()), "max": float(out.max())}

    return write


def restore_series(plan: SeriesPlan, models: ModelSet, store: Path, done: set, restore: StackFn,
                   cancel: CancelToken | None) -> SeriesResult:
    """Restore every planned (t, c) stack not yet ``done`` into ``store``, one stack at a time."""
    from selfnet.inference.resume import _mark_done, done_blocks, forget_blocks
    from selfnet.io.zarr import open_level

    t0 = time.perf_counter()
    todo = [s for s in plan.stacks() if plan.index(s[0], s[2]) not in done]
    hint = f"finished stacks are kept in {store}: rerun the same command with --resume to complete it"
    for n, (ti, t, ci, c) in enumerate(todo, start=1):
        if cancel is not None and cancel.cancelled:
            raise Cancelled(hint)
        log.info(f"restoring time point {t} ({ti + 1}/{len(plan.times)}), channel {c} ({ci + 1}/"
                 f"{len(plan.channels)}) [{n}/{len(todo)}]")
        try:
            stats = restore(series_volume(plan.layout, t, c), models.for_channel(ci), ti, ci)
        except Cancelled:
            raise Cancelled(hint) from None
        _mark_done(store, plan.index(ti, ci), stats)
        forget_blocks(store, plan.index(ti, ci))  # the stack's marker now stands for its blocks
    markers = done_blocks(store)
    ranges = [_channel_range(markers, plan, ci) for ci in range(len(plan.channels))]
    shape = tuple(int(n) for n in open_level(store, 0).shape)
    spacing = (plan.layout.spacing[2], plan.layout.spacing[1], plan.layout.spacing[2])
    return SeriesResult(store, shape, plan.axes, spacing, len(plan.stacks()), len(todo),
                        time.perf_counter() - t0, ranges)


def kept_models(store: Path) -> Path:
    """The folder in a series store that keeps the trained channel models for ``resume``."""
    folder = store / MODELS_DIR
    folder.mkdir(exist_ok=True)
    return folder


def _channel_range(stats: dict[tuple[int, ...], dict[str, float]], plan: SeriesPlan, ci: int) -> tuple[float, float]:
    """Display range of one channel over the whole series (from the per-stack markers)."""
    vals = [s for (ti, _, cj, _) in plan.stacks() if cj == ci for s in [stats.get(plan.index(ti, cj))] if s]
    return (min(v["min"] for v in vals), max(v["max"] for v in vals)) if vals else (0.0, 1.0)


def display_of(plan: SeriesPlan, ranges: list[tuple[float, float]]) -> dict[str, Any]:
    """Channel names, colours, ranges and frame interval of the output (input's, restricted to the channels kept)."""
    src = plan.layout.display
    out: dict[str, Any] = {"ranges": ranges}
    for key in ("names", "colors"):
        values = src.get(key)
        if values and len(values) == plan.layout.n_c:
            out[key] = [values[c] for c in plan.channels]
    if src.get("frame_interval_s"):
        out["frame_interval_s"] = float(src["frame_interval_s"])
    return out


def finish(result: SeriesResult, plan: SeriesPlan, output: Path, spec: OutputSpec, metadata: dict[str, Any],
           run: Callable[[Callable[..., None], list[Any]], None] | None = None) -> Path:
    """Pyramid (asked for) and metadata last for OME-Zarr; TIFF / npy streamed out of the hidden store.

    ``run(fn, items)`` computes the pyramid's regions on a Dask cluster (default: in this process).
    """
    import shutil

    from selfnet.inference.resume import PROGRESS_DIR
    from selfnet.io.write import write_array
    from selfnet.io.zarr import (
        add_pyramid,
        finalize_store,
        is_zarr_path,
        open_level,
        remove_store,
    )

    display = display_of(plan, result.ranges)
    if is_zarr_path(output):
        display["windows"] = display.pop("ranges")
        levels = add_pyramid(result.path, run=run) if spec.pyramid else 1
        finalize_store(result.path, result.spacing, levels, lead=plan.layout.axes.lower(), display=display,
                       extra={"metadata": metadata})
        shutil.rmtree(result.path / PROGRESS_DIR, ignore_errors=True)
        return output
    write_array(output, open_level(result.path, 0), result.spacing, axes=plan.axes, dtype=spec.dtype,
                overwrite=spec.overwrite, metadata=metadata, display=display)
    remove_store(result.path)
    return output


def check_series_output(output: Path, spec: OutputSpec) -> None:
    """Options that make no sense for this series output, refused before anything is written."""
    from selfnet.inference.plan import parse_block
    from selfnet.io.zarr import is_zarr_path

    if spec.pyramid and not is_zarr_path(output):
        raise ConfigError("--pyramid needs an OME-Zarr output (.zarr or .ome.zarr)")
    if spec.block is not None:
        parse_block(spec.block)


def wants_blocks(plan: SeriesPlan, spec: OutputSpec, cluster_used: bool) -> bool:
    """Block-wise when asked (``--chunked``, ``--block``, a Dask cluster), for large stacks, or when one does not fit in RAM."""
    from selfnet.inference.plan import AUTO_CHUNK_VOXELS

    if spec.chunked or spec.block is not None or cluster_used:
        return True
    if _n_out(plan) * plan.layout.shape[1] * plan.layout.shape[2] > AUTO_CHUNK_VOXELS:
        log.info("one stack of the series is large: restoring each block by block")
        return True
    free = memory.available_bytes()
    if free is not None and stack_bytes(plan, spec.dtype) > free:
        log.info("one stack of the series does not fit in RAM: restoring each block by block")
        return True
    return False


def stack_bytes(plan: SeriesPlan, dtype: str) -> int:
    """Memory that restoring one (t, c) stack in RAM needs."""
    z, y, x = plan.layout.shape
    itemsize = np.dtype(plan.layout.dtype).itemsize
    out_itemsize = np.dtype(dtype).itemsize if dtype != "float32" else 4
    dz, _, dx = plan.layout.spacing
    return memory.restore_bytes((z, y, x), itemsize, dz / dx, out_itemsize)


def describe(plan: SeriesPlan) -> str:
    """One line: what the series is and what will be done."""
    lay = plan.layout
    kind = " x ".join(p for p in (f"{lay.n_t} time points" if lay.n_t > 1 else "",
                                 f"{lay.n_c} channels" if lay.n_c > 1 else "") if p)
    models = ("one model" if len(plan.channels) == 1 else "one shared model" if plan.shared
              else f"{len(plan.channels)} channel models")
    return (f"{lay.path.name}: {kind} of {'x'.join(map(str, lay.shape))} ZYX; restoring "
            f"{len(plan.times)} x {len(plan.channels)} stacks with {models}"
            f" trained on time point(s) {', '.join(map(str, plan.train_times))}")


def total_voxels(plan: SeriesPlan) -> int:
    """Output voxels of the whole series."""
    return math.prod(plan.out_lead) * _n_out(plan) * plan.layout.shape[1] * plan.layout.shape[2]
