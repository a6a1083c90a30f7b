"""Block-wise restoring with halos: any volume size in bounded memory, locally or on a Dask cluster.

The isotropic output grid is cut into blocks (default 256 x 256 x 256 voxels). Each block reads
only the raw planes its Keys-cubic z-interpolation needs plus a lateral and axial halo at least
as wide as the network's receptive field, runs the deblurring net on its XZ and YZ slices and
writes its own chunks of the output store. Reflect padding is applied only where a block touches
the true volume border and block origins are multiples of the net's pixel-unshuffle factor, so
the stitched result equals whole-volume restoring (up to float rounding). The intensity
normaliser is fitted once, globally, from a bounded random sample.

Every finished block leaves a marker in ``<store>/.selfnet-progress``; ``resume=True`` skips
those blocks. ``multiscales`` metadata are written last, so an interrupted store never looks
like a finished OME-Zarr image.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import json
import math
import mmap
import os
import resource
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from selfnet import __version__
from selfnet.errors import ConfigError, InputError, OutputError
from selfnet.io import Volume, atomic_write, check_output_path, to_dtype, validate_volume
from selfnet.model import Model
from selfnet.ngff import (
    DEFAULT_NGFF,
    add_pyramid,
    check_zarr_output,
    create_store,
    default_chunks,
    display_window,
    finalize_store,
    is_zarr_path,
    open_level,
    remove_store,
    selfnet_attrs,
)
from selfnet.restore import VIEWS, batch_pixels_for, check_ratio, forward
from selfnet.sampling import Normalizer, n_iso, resample_matrix

__all__ = [
    "DEFAULT_BLOCK",
    "BlockPlan",
    "ChunkedResult",
    "SourceSpec",
    "axis_window",
    "block_progress",
    "choose_halo",
    "fit_normalizer",
    "local_client",
    "parse_block",
    "peak_rss",
    "read_region",
    "receptive_radius",
    "restore_block",
    "restore_chunked",
    "restore_to_file",
    "sample_training_volume",
    "validate_lazy",
]

MARGIN = 8
"""Reflect padding at a slice's true borders; must equal ``restore.apply_to_slices``'s margin."""
DEFAULT_BLOCK = (256, 256, 256)
EXACT_NORMALIZER_VOXELS = 16_000_000
"""Volumes up to this many voxels get exactly the whole-volume normaliser (``Normalizer.fit``)."""
SAMPLE_VOXELS = 4_000_000
TRAIN_MAX_ISO_VOXELS = 64_000_000
"""Training reads at most this many isotropic-grid voxels' worth of raw data."""
PROGRESS_DIR = ".selfnet-progress"
MODEL_FILE = "model.pt"
"""The model is kept with an unfinished store, so ``selfnet run --resume`` need not retrain."""
AUTO_CHUNK_VOXELS = 128_000_000
"""Outputs larger than this (isotropic voxels) are restored block by block automatically."""
_EXPORT_SLAB_BYTES = 128 * 2**20
_BIGTIFF_BYTES = int(3.5 * 2**30)
ProgressFn = Callable[[int, int], None]


# --------------------------------------------------------------------------------------------
# geometry
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    """Where a block's network input lies along one axis.

    Real data ``[start, stop)`` are reflect-padded by ``reflect`` (only at true borders), then
    zero-padded by ``extra`` at an interior end so the length is a multiple of the unshuffle
    factor; ``keep`` selects the block's own outputs in the padded tensor.
    """

    start: int
    stop: int
    reflect: tuple[int, int]
    extra: int
    keep: slice


def axis_window(c0: int, c1: int, n: int, halo: int, multiple: int) -> Window:
    """Input window for outputs ``[c0, c1)`` of an axis of length ``n`` (see :class:`Window`)."""
    m = min(MARGIN, n - 1)
    start, before = (0, m) if c0 - halo <= 0 else (c0 - halo, 0)
    if c1 + halo >= n:
        stop, after, extra = n, m + (-(n + 2 * m)) % multiple, 0
    else:
        stop, after = c1 + halo, 0
        extra = (-(before + stop - start)) % multiple
    return Window(start, stop, (before, after), extra, slice(c0 - start + before, c1 - start + before))


@dataclass(frozen=True)
class BlockPlan:
    """How the isotropic output of a raw ``raw_shape`` stack is cut into blocks."""

    raw_shape: tuple[int, int, int]
    ratio: float
    block: tuple[int, int, int]
    halo: int
    multiple: int

    @property
    def out_shape(self) -> tuple[int, int, int]:
        """Shape of the isotropic output (ZYX)."""
        z, y, x = self.raw_shape
        return n_iso(z, self.ratio), y, x

    @property
    def grid(self) -> tuple[int, int, int]:
        """Number of blocks along z, y and x."""
        return tuple(-(-n // b) for n, b in zip(self.out_shape, self.block))  # type: ignore[return-value]

    def indices(self) -> list[tuple[int, int, int]]:
        """All block indices in z-major order."""
        return [tuple(int(i) for i in idx) for idx in np.ndindex(*self.grid)]  # type: ignore[misc]

    def region(self, index: Sequence[int]) -> tuple[slice, slice, slice]:
        """Output region of block ``index``."""
        return tuple(slice(i * b, min((i + 1) * b, n))  # type: ignore[return-value]
                     for i, b, n in zip(index, self.block, self.out_shape))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (stored in the output's attributes for --resume)."""
        return json.loads(json.dumps(asdict(self)))


def parse_block(text: str | Sequence[int] | None, multiple: int = 2) -> tuple[int, int, int]:
    """``"256"`` or ``"128,512,512"`` (z,y,x output voxels) -> a checked block shape."""
    if text is None:
        return DEFAULT_BLOCK
    try:
        parts = [int(p) for p in str(text).replace("x", ",").split(",")] if isinstance(text, str) else list(text)
    except ValueError:
        raise ConfigError(f"--block must be N or Z,Y,X (voxels), got {text!r}") from None
    if len(parts) == 1:
        parts = parts * 3
    step = max(8, multiple)
    if len(parts) != 3 or any(p < 16 or p % step for p in parts):
        raise ConfigError(f"--block sizes must be three multiples of {step} of at least 16, got {text!r}")
    return parts[0], parts[1], parts[2]


def receptive_radius(net: nn.Module, *, limit: int = 2048) -> int:
    """Receptive-field radius of a 2D net in pixels, measured from an impulse response.

    All conv weights of a copy are made positive (biases zero), so every input pixel that can
    influence an output does: the non-zero extent of the response is the structural field.
    """
    probe = copy.deepcopy(net).cpu().double().eval()
    with torch.no_grad():
        for mod in probe.modules():
            if isinstance(mod, nn.Conv2d):
                mod.weight.fill_(1.0 / mod.weight[0].numel())
                if mod.bias is not None:
                    mod.bias.zero_()
    size = 64
    while True:
        radius = max(_impulse_extent(probe, size, shift) for shift in (0, 1))
        if radius < size // 4 or size >= limit:
            return radius
        size *= 2


@torch.no_grad()
def _impulse_extent(net: nn.Module, size: int, shift: int) -> int:
    x = torch.zeros(1, 1, size, size, dtype=torch.float64)
    c = size // 2 + shift
    x[0, 0, c, c] = 1.0
    y = (net(x) - x)[0, 0].abs() > 0
    rows, cols = torch.nonzero(y, as_tuple=True)
    if len(rows) == 0:
        return 0
    return int(max((rows - c).abs().max(), (cols - c).abs().max()))


def choose_halo(net: nn.Module) -> int:
    """Halo (px) for exact block restoring: receptive radius plus a little, a multiple of 8."""
    multiple = int(getattr(net, "multiple", 1))
    radius = receptive_radius(net) + multiple
    return max(16, -(-radius // 8) * 8)


# --------------------------------------------------------------------------------------------
# reading sources
# --------------------------------------------------------------------------------------------


def read_region(data: Any, region: tuple[slice, ...]) -> np.ndarray:
    """A region of a numpy / memory-mapped / zarr / dask array as an in-memory numpy array.

    Pages of a memory map are dropped afterwards so resident memory does not grow with the file.
    """
    part = data[region]
    if hasattr(part, "compute"):
        part = part.compute(scheduler="synchronous")
    out = np.array(part, copy=True)
    _drop_pages(data)
    return out


def _drop_pages(data: Any) -> None:
    mapping = getattr(data, "_mmap", None)
    if isinstance(mapping, mmap.mmap) and hasattr(mapping, "madvise"):
        with contextlib.suppress(OSError, ValueError):
            mapping.madvise(mmap.MADV_DONTNEED)


def _random_regions(shape: tuple[int, int, int], count: int, size: tuple[int, int], seed: int
                    ) -> list[tuple[slice, slice, slice]]:
    rng = np.random.default_rng(seed)
    z, y, x = shape
    zs = rng.integers(0, z, count)
    ys, xs = rng.integers(0, y - size[0] + 1, count), rng.integers(0, x - size[1] + 1, count)
    return [(slice(int(a), int(a) + 1), slice(int(b), int(b) + size[0]), slice(int(c), int(c) + size[1]))
            for a, b, c in zip(zs, ys, xs)]


def sample_planes(data: Any, max_samples: int = SAMPLE_VOXELS, *, seed: int = 0, tile: int = 256) -> np.ndarray:
    """Random XY tiles (at most ``max_samples`` voxels), stacked as a small ZYX array."""
    shape = tuple(int(n) for n in data.shape)
    size = (min(tile, shape[1]), min(tile, shape[2]))
    count = max(2, -(-max_samples // (size[0] * size[1])))
    regions = sorted(_random_regions(shape, count, size, seed), key=lambda r: r[0].start)
    return np.concatenate([read_region(data, r) for r in regions])


def fit_normalizer(data: Any, percentiles: tuple[float, float], *, max_samples: int = SAMPLE_VOXELS,
                   seed: int = 0) -> Normalizer:
    """The global percentile normaliser, from a bounded random sample of a (lazy) volume.

    Volumes up to ``EXACT_NORMALIZER_VOXELS`` get exactly what whole-volume restoring computes.
    """
    if math.prod(data.shape) <= EXACT_NORMALIZER_VOXELS:
        return Normalizer.fit(read_region(data, (slice(None),) * 3), percentiles, max_samples=max_samples, seed=seed)
    sample = sample_planes(data, max_samples, seed=seed)
    return Normalizer.fit(sample, percentiles, max_samples=max_samples, seed=seed)


def validate_lazy(vol: Volume) -> None:
    """Check shape, voxel size and values of a large volume on a random sample, without a full scan."""
    if len(vol.data.shape) != 3:
        validate_volume(vol)
    if math.prod(vol.data.shape) <= EXACT_NORMALIZER_VOXELS:
        validate_volume(Volume(read_region(vol.data, (slice(None),) * 3), vol.spacing, vol.path, vol.metadata))
        return
    validate_volume(Volume(sample_planes(vol.data, seed=1), vol.spacing, vol.path, vol.metadata))


def sample_training_volume(data: Any, ratio: float, *, max_iso_voxels: int | None = None,
                           tile: int = 256, seed: int = 0) -> np.ndarray:
    """A bounded random subset of a large stack for training, as one smaller ZYX array.

    Full-z tiles of ``tile`` x ``tile`` pixels (fewer planes for very deep stacks) are taken at
    random grid positions, the brighter half of twice as many candidates kept, and laid side by
    side along x. Returns the whole volume when it is small enough already.
    """
    z, y, x = (int(n) for n in data.shape)
    max_iso_voxels = max_iso_voxels or TRAIN_MAX_ISO_VOXELS
    if n_iso(z, ratio) * y * x <= max_iso_voxels:
        return read_region(data, (slice(None),) * 3)
    ty, tx = min(tile, y), min(tile, x)
    tz = z
    while tz > 16 and n_iso(tz, ratio) * ty * tx * 4 > max_iso_voxels:
        tz = max(16, tz // 2)
    count = max(1, max_iso_voxels // (n_iso(tz, ratio) * ty * tx))
    cells = [(j * ty, i * tx) for j in range(y // ty) for i in range(x // tx)]
    rng = np.random.default_rng(seed)
    picks = rng.permutation(len(cells))[: 2 * count]
    starts = rng.integers(0, z - tz + 1, len(picks))
    regions = [(slice(int(s), int(s) + tz), slice(cells[p][0], cells[p][0] + ty),
                slice(cells[p][1], cells[p][1] + tx)) for p, s in zip(picks, starts)]
    score = [float(read_region(data, (slice(r[0].start + tz // 2, r[0].start + tz // 2 + 1), r[1], r[2])).mean())
             for r in regions]
    keep = [regions[i] for i in np.argsort(score)[::-1][:count]]
    return np.concatenate([read_region(data, r) for r in keep], axis=2)


@dataclass(frozen=True)
class SourceSpec:
    """How a worker re-opens the input lazily: path plus the reading options."""

    path: str
    lateral_um: float
    axial_um: float
    timepoint: int | None = None
    channel: int | None = None
    level: int = 0

    @classmethod
    def from_volume(cls, vol: Volume) -> SourceSpec:
        """The spec that re-reads ``vol`` (same selection, same voxel size)."""
        if vol.path is None:
            raise ConfigError("a distributed restore needs a volume read from a file (workers re-open it)")
        sel = vol.metadata.get("selected", {}) or {}
        return cls(str(Path(vol.path).resolve()), float(vol.spacing[2]), float(vol.spacing[0]),
                   sel.get("T"), sel.get("C"), int(vol.metadata.get("level", 0) or 0))

    def open(self) -> Any:
        """The lazy ZYX data (cached per process)."""
        key = json.dumps(asdict(self), sort_keys=True)
        if key not in _OPEN_SOURCES:
            from selfnet.io import read_volume

            vol = read_volume(self.path, lateral_um=self.lateral_um, axial_um=self.axial_um,
                              timepoint=self.timepoint, channel=self.channel, level=self.level, lazy=True)
            _OPEN_SOURCES[key] = vol.data
        return _OPEN_SOURCES[key]


_OPEN_SOURCES: dict[str, Any] = {}
_NETS: dict[str, nn.Module] = {}


# --------------------------------------------------------------------------------------------
# one block
# --------------------------------------------------------------------------------------------


def _interp_rows(n_raw: int, ratio: float, start: int, stop: int) -> tuple[np.ndarray, int, int]:
    """Rows ``start:stop`` of the z-interpolation matrix, restricted to the raw planes they use."""
    w = resample_matrix(n_raw, np.arange(start, stop) / ratio)
    used = np.flatnonzero(np.any(w != 0, axis=0))
    r0, r1 = int(used.min()), int(used.max()) + 1
    return np.ascontiguousarray(w[:, r0:r1]), r0, r1


@torch.inference_mode()
def _run_net(net: nn.Module, slices: np.ndarray, device: torch.device, rows: Window, cols: Window) -> np.ndarray:
    x = torch.from_numpy(np.ascontiguousarray(slices)).to(device).unsqueeze(1)
    (rb, ra), (cb, ca) = rows.reflect, cols.reflect
    if rb or ra or cb or ca:
        x = F.pad(x, (cb, ca, rb, ra), mode="reflect")
    if rows.extra or cols.extra:
        x = F.pad(x, (0, cols.extra, 0, rows.extra))
    y = forward(net, x)[:, 0, rows.keep, cols.keep]
    return y.cpu().numpy()


def _pass(out: np.ndarray, raw: np.ndarray, w: np.ndarray, normalizer: Normalizer, net: nn.Module,
          device: torch.device, wz: Window, lateral: Window, view: str, batch_pixels: int) -> None:
    """Add the net's output over all XZ (or YZ) slices of ``raw`` into ``out``."""
    axis = 1 if view == "xz" else 2
    count = raw.shape[axis]
    step = max(1, batch_pixels // (w.shape[0] * raw.shape[3 - axis]))
    for s0 in range(0, count, step):
        s1 = min(count, s0 + step)
        part = raw[:, s0:s1] if axis == 1 else raw[:, :, s0:s1]
        iso = np.tensordot(w, normalizer(part), axes=(1, 0))
        if view == "xz":
            out[:, s0:s1, :] += _run_net(net, iso.transpose(1, 0, 2), device, wz, lateral).transpose(1, 0, 2)
        else:
            out[:, :, s0:s1] += _run_net(net, iso.transpose(2, 0, 1), device, wz, lateral).transpose(1, 2, 0)


def restore_block(data: Any, plan: BlockPlan, index: Sequence[int], net: nn.Module, device: torch.device,
                  normalizer: Normalizer, *, views: tuple[str, ...] = VIEWS,
                  batch_pixels: int | None = None) -> np.ndarray:
    """Restore one output block (float32, on the input's intensity scale) from the raw ``data``."""
    zr, yr, xr = plan.region(index)
    nz, ny, nx = plan.out_shape
    batch_pixels = batch_pixels or batch_pixels_for(device)
    wz = axis_window(zr.start, zr.stop, nz, plan.halo, plan.multiple)
    wy = axis_window(yr.start, yr.stop, ny, plan.halo, plan.multiple)
    wx = axis_window(xr.start, xr.stop, nx, plan.halo, plan.multiple)
    w, r0, r1 = _interp_rows(plan.raw_shape[0], plan.ratio, wz.start, wz.stop)
    y0, y1 = (wy.start, wy.stop) if "yz" in views else (yr.start, yr.stop)
    x0, x1 = (wx.start, wx.stop) if "xz" in views else (xr.start, xr.stop)
    raw = read_region(data, (slice(r0, r1), slice(y0, y1), slice(x0, x1)))
    if raw.dtype.kind == "f" and not np.isfinite(raw).all():
        raise InputError(f"the input contains NaN or Inf values (near z {r0}-{r1}, y {y0}-{y1}, x {x0}-{x1})")
    out = np.zeros((zr.stop - zr.start, yr.stop - yr.start, xr.stop - xr.start), dtype=np.float32)
    for view in views:
        if view == "xz":
            sub = raw[:, yr.start - y0 : yr.stop - y0, wx.start - x0 : wx.stop - x0]
            _pass(out, sub, w, normalizer, net, device, wz, wx, "xz", batch_pixels)
        else:
            sub = raw[:, wy.start - y0 : wy.stop - y0, xr.start - x0 : xr.stop - x0]
            _pass(out, sub, w, normalizer, net, device, wz, wy, "yz", batch_pixels)
    out /= len(views)
    return normalizer.inverse(out)


# --------------------------------------------------------------------------------------------
# block jobs (in-process or on Dask workers)
# --------------------------------------------------------------------------------------------


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


def model_fingerprint(model: Model) -> str:
    """Short hash of the deblurring weights and net config (identifies a model in --resume)."""
    h = hashlib.sha256(json.dumps(model.config.deblur.model_dump(mode="json"), sort_keys=True).encode())
    for name in sorted(model.deblur_state):
        h.update(name.encode())
        h.update(model.deblur_state[name].detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _marker(store: str | Path, index: Sequence[int]) -> Path:
    return Path(store) / PROGRESS_DIR / ("_".join(map(str, index)) + ".json")


def _mark_done(store: str | Path, index: Sequence[int], stats: dict[str, float]) -> None:
    path = _marker(store, index)
    path.parent.mkdir(exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(stats))
    os.replace(tmp, path)


def done_blocks(store: str | Path) -> dict[tuple[int, ...], dict[str, float]]:
    """Blocks already written (index -> stats), read from the progress markers."""
    folder = Path(store) / PROGRESS_DIR
    found: dict[tuple[int, ...], dict[str, float]] = {}
    for path in folder.glob("*.json") if folder.is_dir() else []:
        with contextlib.suppress(ValueError, OSError):
            found[tuple(int(i) for i in path.stem.split("_"))] = json.loads(path.read_text())
    return found


def _write_block(job: BlockJob, data: Any, index: tuple[int, ...], net: nn.Module,
                 device: torch.device) -> dict[str, float]:
    t0 = time.perf_counter()
    normalizer = Normalizer(job.low, job.high)
    out = to_dtype(restore_block(data, job.plan, index, net, device, normalizer, views=job.views), job.dtype)
    open_level(job.store, 0, mode="r+")[job.plan.region(index)] = out
    stats = {"min": float(out.min()), "max": float(out.max()), "seconds": time.perf_counter() - t0}
    _mark_done(job.store, index, stats)
    return stats


def _worker_block(index: tuple[int, ...], job: BlockJob, model: dict[str, Any]) -> dict[str, float]:
    """Dask task: restore and write one block; the net and the input are cached per worker."""
    from selfnet.devices import resolve_device

    device = resolve_device(job.device)
    if job.fingerprint not in _NETS:
        if job.threads:
            torch.set_num_threads(job.threads)
        _NETS.clear()
        _NETS[job.fingerprint] = Model.from_dict(model).deblur_net(device)
    data = job.source.open()  # type: ignore[union-attr]
    if tuple(data.shape) != tuple(job.plan.raw_shape):
        raise InputError(f"worker sees {job.source.path} with shape {tuple(data.shape)}, "  # type: ignore[union-attr]
                         f"not {job.plan.raw_shape}: do all workers see the same files?")
    return _write_block(job, data, index, _NETS[job.fingerprint], device)


def peak_rss() -> int:
    """Peak resident memory of this process in bytes."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)


# --------------------------------------------------------------------------------------------
# whole run
# --------------------------------------------------------------------------------------------


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
                    halo: int | None = None) -> ChunkedResult:
    """Restore ``vol`` block by block into the OME-Zarr store ``output``.

    Parameters
    ----------
    vol : lazy or in-memory ZYX volume with its spacing (a file-backed Volume for ``client``)
    model : trained model
    output : ``.zarr``/``.ome.zarr`` store to create (or to finish, with ``resume``)
    block : output block shape (z, y, x); multiples of 8
    client : a ``dask.distributed.Client``: blocks run on its workers, which write to ``output``
    on_block : ``on_block(done, total)`` after every block
    """
    from selfnet.devices import resolve_device

    t0 = time.perf_counter()
    ratio = vol.spacing[0] / vol.spacing[2]
    check_ratio(model.ratio, ratio, force=force)
    torch_device = resolve_device(device)
    net = model.deblur_net(torch_device)
    multiple = int(getattr(net, "multiple", 1))
    raw_shape = tuple(int(n) for n in vol.data.shape)
    plan = BlockPlan(raw_shape, float(ratio), parse_block(block, multiple),  # type: ignore[arg-type]
                     halo or choose_halo(net), multiple)
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
    total, finished = len(plan.indices()), len(done)
    if on_block:
        on_block(finished, total)
    worker_rss = None
    if client is None:
        for index in todo:
            _write_block(job, vol.data, index, net, torch_device)
            finished += 1
            if on_block:
                on_block(finished, total)
    else:
        _run_distributed(client, job, vol, model, todo, finished, total, on_block)
        worker_rss = _worker_peak(client)
    levels = _finish(store, spacing, pyramid, client)
    return ChunkedResult(store, plan.out_shape, spacing, total, len(todo), time.perf_counter() - t0, levels,
                         peak_rss(), worker_rss, {"halo": plan.halo, "block": plan.block})


def _open_or_create(store: Path, vol: Volume, model: Model, plan: BlockPlan, settings: dict[str, Any],
                    resume: bool, version: str, chunks: tuple[int, int, int] | None,
                    metadata: dict[str, Any] | None) -> tuple[Normalizer, dict[tuple[int, ...], Any] | None]:
    """Resume an unfinished store (same settings) or start a new one; ``None`` blocks = complete."""
    if store.exists() and resume and any(store.iterdir()):
        attrs = _attrs_or_empty(store)
        if attrs.get("status") == "complete" and _same(attrs, settings):
            return Normalizer(**attrs["normalizer"]), None
        if attrs.get("status") != "incomplete":
            raise OutputError(f"{store} is not an unfinished selfnet restore: cannot --resume it")
        if not _same(attrs, settings):
            raise OutputError(f"{store} was started with another model, block size or output type: "
                              "use the same options to --resume, or --overwrite to start again")
        return Normalizer(**attrs["normalizer"]), done_blocks(store)
    if store.exists():
        remove_store(store)
    normalizer = fit_normalizer(vol.data, model.config.norm_percentiles)
    attrs = {**settings, "normalizer": {"low": normalizer.low, "high": normalizer.high},
             "source": str(Path(vol.path).resolve()) if vol.path else None,
             "metadata": json.loads(json.dumps(metadata or {}, default=str))}
    chunks = chunks or default_chunks(plan.out_shape, plan.block)
    create_store(store, plan.out_shape, settings["dtype"], chunks=chunks, version=version, attrs=attrs)
    (store / PROGRESS_DIR).mkdir()
    model.save(store / PROGRESS_DIR / MODEL_FILE)
    return normalizer, {}


def _attrs_or_empty(store: Path) -> dict[str, Any]:
    try:
        return selfnet_attrs(store)
    except (FileNotFoundError, ValueError, KeyError, TypeError, OSError):
        return {}


def _same(attrs: dict[str, Any], settings: dict[str, Any]) -> bool:
    return all(attrs.get(k) == json.loads(json.dumps(v)) for k, v in settings.items() if k != "selfnet_version")


def _already_complete(store: Path, plan: BlockPlan, spacing: tuple[float, float, float], t0: float) -> ChunkedResult:
    levels = len([k for k in os.listdir(store) if k.isdigit()])
    return ChunkedResult(store, plan.out_shape, spacing, len(plan.indices()), 0, time.perf_counter() - t0,
                         levels, peak_rss())


def _run_distributed(client: Any, job: BlockJob, vol: Volume, model: Model, todo: list[tuple[int, ...]],
                     finished: int, total: int, on_block: ProgressFn | None) -> None:
    from distributed import as_completed

    info = client.scheduler_info()
    workers = info.get("workers", {})
    cores = os.cpu_count() or 1
    threads = max(1, cores // max(1, len(workers))) if _is_local(info) else None
    job = dataclasses.replace(job, source=SourceSpec.from_volume(vol), threads=threads)
    weights = client.scatter(model.to_dict(), broadcast=True, hash=False)
    futures = client.map(_worker_block, todo, job=job, model=weights, pure=False)
    try:
        for fut in as_completed(futures):
            fut.result()
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


def _cluster_runner(client: Any) -> Callable[[Callable[..., None], list[Any]], None] | None:
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
    levels = add_pyramid(store, run=_cluster_runner(client)) if pyramid else 1
    finalize_store(store, spacing, levels, window=window)
    with contextlib.suppress(OSError):
        shutil.rmtree(store / PROGRESS_DIR)
    return levels


# --------------------------------------------------------------------------------------------
# files other than OME-Zarr, progress, local cluster
# --------------------------------------------------------------------------------------------


def partial_store(output: str | Path) -> Path:
    """Hidden resumable store next to a TIFF/npy output of a chunked restore."""
    p = Path(output).expanduser().resolve()
    return p.with_name(f".{p.name}.partial.zarr")


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


@contextlib.contextmanager
def block_progress(enabled: bool = True) -> Iterator[ProgressFn]:
    """A rich progress bar over blocks; yields the ``on_block(done, total)`` callback."""
    from rich.console import Console
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)

    progress = Progress(TextColumn("{task.description:<20}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), TimeRemainingColumn(), console=Console(file=sys.stderr),
                        disable=not enabled)
    with progress:
        task = progress.add_task("restoring blocks", total=None)

        def update(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        yield update


@contextlib.contextmanager
def local_client(workers: int) -> Iterator[Any]:
    """A Dask ``LocalCluster`` of ``workers`` single-threaded processes and its client."""
    import logging

    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise ConfigError("--workers and --scheduler need dask.distributed: pip install distributed") from None
    if workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {workers}")
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                      silence_logs=logging.ERROR, memory_limit=0) as cluster, Client(cluster) as client:
        yield client


@contextlib.contextmanager
def remote_client(address: str) -> Iterator[Any]:
    """A client of an existing Dask scheduler (``tcp://host:port``)."""
    try:
        from distributed import Client
    except ImportError:
        raise ConfigError("--scheduler needs dask.distributed: pip install distributed") from None
    try:
        client = Client(address, timeout=30)
    except (OSError, TimeoutError, ValueError) as exc:
        raise ConfigError(f"cannot reach the Dask scheduler at {address} ({type(exc).__name__})") from None
    with client:
        yield client


# --------------------------------------------------------------------------------------------
# helpers for the command line
# --------------------------------------------------------------------------------------------


def output_voxels(vol: Volume) -> int:
    """Voxels of the isotropic output of ``vol``."""
    z, y, x = (int(n) for n in vol.data.shape)
    return n_iso(z, vol.spacing[0] / vol.spacing[2]) * y * x


def is_large(vol: Volume) -> bool:
    """Whether ``vol`` should be restored block by block (and trained on a subset)."""
    return output_voxels(vol) > AUTO_CHUNK_VOXELS


def saved_model(output: str | Path) -> Model | None:
    """The model stored with an unfinished chunked restore of ``output``, if there is one."""
    store = Path(output).expanduser() if is_zarr_path(output) else partial_store(output)
    path = store / PROGRESS_DIR / MODEL_FILE
    return Model.load(path) if path.is_file() else None


def training_volume(vol: Volume, *, max_iso_voxels: int | None = None, seed: int = 0) -> Volume:
    """``vol`` itself when small, else a bounded random subset (:func:`sample_training_volume`)."""
    max_iso_voxels = max_iso_voxels or TRAIN_MAX_ISO_VOXELS
    if output_voxels(vol) <= max_iso_voxels and isinstance(vol.data, np.ndarray):
        return vol
    data = sample_training_volume(vol.data, vol.ratio, max_iso_voxels=max_iso_voxels, seed=seed)
    meta = {**vol.metadata, "training_subset": tuple(int(n) for n in data.shape)}
    return Volume(data, vol.spacing, vol.path, meta)


def restore_with_cluster(vol: Volume, model: Model, output: str | Path, *, workers: int | None = None,
                         scheduler: str | None = None, progress: bool = True, **options: Any) -> ChunkedResult:
    """:func:`restore_to_file` in-process, on a local cluster (``workers``) or a remote one, with a bar."""
    if workers and scheduler:
        raise ConfigError("use either --workers or --scheduler, not both")
    if workers is not None and workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {workers}")
    if scheduler:
        cluster = remote_client(scheduler)
    elif workers:
        cluster = local_client(workers)
    else:
        cluster = contextlib.nullcontext(None)
    with cluster as client, block_progress(progress) as on_block:
        return restore_to_file(vol, model, output, client=client, on_block=on_block, **options)
