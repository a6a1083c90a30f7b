"""The facade: :func:`run`, :func:`train`, :func:`restore` and :func:`qc` own the whole job.

The CLI, the napari plugin and scripts call only these. Each takes a path, a :class:`~selfnet.io.Volume`
or an array (with ``spacing=(dz, dy, dx)`` in µm) and returns a result object. They do the whole
sequence: read, validate, check outputs and memory before long work, decide in-RAM or block-wise,
checkpoint and resume, write atomically, QC report. ``progress`` is ``True`` (rich bars on stderr),
``False`` or a callable receiving :class:`ProgressEvent`; ``cancel`` is a :class:`CancelToken` that
stops the job at its next safe point (training saves its checkpoint first).

>>> import selfnet
>>> result = selfnet.run("stack.tif", "stack_iso.tif", max_minutes=5)        # doctest: +SKIP
>>> model = selfnet.train(array, spacing=(1.0, 0.25, 0.25), max_minutes=5)    # doctest: +SKIP
>>> iso = selfnet.restore(array, model, spacing=(1.0, 0.25, 0.25)).data       # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from selfnet import memory
from selfnet._version import __version__
from selfnet.config import TrainConfig, make_config
from selfnet.devices import resolve_device
from selfnet.errors import (
    Cancelled,
    CancelToken,
    ConfigError,
    InputError,
    OutputError,
    SelfnetError,
)
from selfnet.io import (
    FINE_RATIO,
    Volume,
    check_output_dtype,
    check_output_path,
    read_volume,
    validate_volume,
    write_volume,
)
from selfnet.method.beads import BOX_UM as PSF_BOX_UM
from selfnet.method.kernel import PSF_MISFIT
from selfnet.method.psf import WIDEFIELD
from selfnet.model import MODEL_SUFFIXES, Model
from selfnet.options import (
    ClusterSpec,
    Optics,
    OutputSpec,
    QCOptions,
    ReadOptions,
    SeriesOptions,
)

log = logging.getLogger("selfnet")
ISOTROPIC = 0.75
"""QC isotropy (lateral / axial FWHM) from which a stack with a fine z step counts as already isotropic."""
FIT_SIDE = 512
"""Largest lateral crop (pixels) of a stack that a computed PSF's depth is fitted to."""

Spacing = tuple[float, float, float]
Source = str | Path | Volume | np.ndarray
VOLUME_SUFFIXES = (".tif", ".tiff", ".npy", ".zarr")


@dataclass(frozen=True)
class ProgressEvent:
    """One progress update: ``done`` of ``total`` in ``stage``.

    Stages: ``stage 1 (CycleGAN)``, ``stage 2 (deblur)``, ``stage 3 (refine with the PSF)`` (``info`` holds
    the losses), ``restoring`` (slices) and ``blocks``.
    """

    stage: str
    done: int
    total: int
    info: dict[str, float] = field(default_factory=dict)


ProgressFn = Callable[[ProgressEvent], None]
Progress = bool | ProgressFn


@dataclass
class Restored:
    """An isotropic restoration: in memory (``data``) and/or written (``path``), with its timing."""

    data: np.ndarray | None
    path: Path | None
    shape: tuple[int, int, int]
    spacing: Spacing
    seconds: float
    device: str
    blocks: int = 1
    blocks_run: int = 1
    peak_rss: int | None = None
    worker_peak_rss: int | None = None
    axes: str = "ZYX"

    @property
    def mvox_per_s(self) -> float:
        """Output voxels per second of wall time, in millions."""
        return math.prod(self.shape) / 1e6 / max(self.seconds, 1e-9)


@dataclass
class RunResult:
    """What :func:`run` did: the model, the restoration, the QC measured on it and the report written."""

    model: Model
    restored: Restored
    train_seconds: float
    report: Path | None = None
    qc: Any = None  # selfnet.qc.report.QCResult (imported lazily: matplotlib)
    trained: bool = True


# --- reading ---------------------------------------------------------------------------------------


def open_volume(source: Source, spacing: Spacing | None = None, read: ReadOptions | None = None, *,
                lazy: bool = False) -> Volume:
    """A checked :class:`Volume` from a path, a Volume or an array with ``spacing``.

    Paths are read lazily; small stacks are then loaded and validated in full, large ones (or
    ``lazy=True``) are checked on a random sample and stay on disk.
    """
    read = read or ReadOptions()
    if isinstance(source, (str, Path)):
        return _read_path(Path(source), read, lazy)
    vol = _in_memory(source, spacing)
    validate_volume(vol)
    return vol


def _in_memory(source: Volume | np.ndarray, spacing: Spacing | None) -> Volume:
    """A Volume (``spacing`` replacing its own when given) or a 3D array with its required ``spacing``, unchecked."""
    if isinstance(source, Volume):
        return source if spacing is None else Volume(source.data, _spacing(spacing), source.path, source.metadata)
    if spacing is None:
        raise ConfigError("spacing=(dz, dy, dx) in µm is required for a plain array")
    arr = np.asarray(source)
    if arr.ndim != 3:
        raise ConfigError(f"expected a 3D ZYX array, got shape {arr.shape}")
    return Volume(arr, _spacing(spacing))


def _spacing(spacing: Any) -> Spacing:
    values = tuple(float(s) for s in spacing)
    if len(values) != 3:
        raise ConfigError(f"spacing must be (dz, dy, dx) in µm, got {spacing!r}")
    return values  # type: ignore[return-value]


def _read_path(path: Path, read: ReadOptions, lazy: bool) -> Volume:
    from selfnet.inference.plan import is_large
    from selfnet.io.source import read_region
    from selfnet.io.validate import validate_lazy

    vol = read_volume(path, lazy=True, **read.model_dump())
    with _damaged_pixels_are_input_errors(path):
        if lazy or is_large(vol):  # large data: checked on a sample, never loaded whole
            validate_lazy(vol)
        else:
            if not isinstance(vol.data, np.ndarray):
                vol.data = read_region(vol.data, (slice(None),) * 3)
            validate_volume(vol)
    dz, dy, dx = vol.spacing
    log.info(f"{path.name}: {'x'.join(map(str, vol.data.shape))} ZYX {vol.data.dtype.name}, "
             f"voxel {dz:.4g} x {dy:.4g} x {dx:.4g} µm (z/xy ratio {vol.ratio:.2f})")
    return vol


@contextlib.contextmanager
def _damaged_pixels_are_input_errors(path: Path) -> Iterator[None]:
    """Decoding a damaged compressed file fails in codec-specific ways: report it as one line."""
    from selfnet.io.source import DamagedDataError

    try:
        yield
    except DamagedDataError as err:
        raise InputError(f"cannot read {path}: {err}") from None
    except (SelfnetError, MemoryError, KeyboardInterrupt):
        raise
    except Exception as exc:  # noqa: BLE001 - zlib, imagecodecs, zarr and dask errors have no common base
        reason = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise InputError(f"cannot read {path}: its image data are damaged ({reason})") from None


def _split_options(options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Route flat keywords to ReadOptions (series selection included), OutputSpec and TrainConfig fields."""
    read, out, train = {}, {}, {}
    for key, value in options.items():
        if key in ReadOptions.model_fields or key in SeriesOptions.model_fields:
            read[key] = value
        elif key in OutputSpec.model_fields:
            out[key] = value
        elif key in TrainConfig.model_fields:
            train[key] = value
        else:
            raise ConfigError(f"unknown option {key!r}")
    return read, out, train


def _series_options(series: SeriesOptions | None, flat: dict[str, Any]) -> SeriesOptions:
    """The series options given as an object and/or as flat keywords (which are taken out of ``flat``)."""
    given = {k: flat.pop(k) for k in list(flat) if k in SeriesOptions.model_fields}
    if series is not None and given:
        return SeriesOptions.make(**{**series.model_dump(), **given})
    return series or SeriesOptions.make(**given)


def _series_layout(source: Source, read: ReadOptions) -> Any:
    """The T/C layout of a file holding more than one stack (None: one stack, or not a file)."""
    from selfnet.io.series import probe_series

    if not isinstance(source, (str, Path)) or (read.timepoint is not None and read.channel is not None):
        return None
    layout = probe_series(source, **read.model_dump())
    free_t = read.timepoint is None and layout.n_t > 1
    free_c = read.channel is None and layout.n_c > 1
    return layout if (free_t or free_c) else None


def _restrict(series: SeriesOptions, read: ReadOptions) -> SeriesOptions:
    """A ``--timepoint``/``--channel`` given with a series narrows it to that time point / channel."""
    picks = {"timepoints": str(read.timepoint) if read.timepoint is not None else series.timepoints,
             "channels": str(read.channel) if read.channel is not None else series.channels}
    return SeriesOptions.make(**{**series.model_dump(), **picks})


def _check_psf(cfg: TrainConfig, layout: Any, series: SeriesOptions | None) -> None:
    """Read the PSF file (one channel per channel trained, for a multi-channel one) before any work starts."""
    if cfg.psf is None:
        return
    from selfnet import series as S
    from selfnet.training.loop import check_psf

    plan = S.plan_series(layout, series) if layout is not None and series is not None else None
    check_psf(cfg, [None] if plan is None or plan.shared else list(plan.channels))


def _config(config: TrainConfig | str | Path | None, overrides: dict[str, Any]) -> TrainConfig:
    """The training config: a file or object, with the options actually given (not None) on top."""
    if isinstance(config, (str, Path)):
        config = TrainConfig.from_file(config)
    base = config.model_dump() if config is not None else {}
    base.update({k: v for k, v in overrides.items() if v is not None})
    return make_config(**base)


# --- progress --------------------------------------------------------------------------------------


class _Reporter:
    """Turns the job's callbacks into rich bars (``progress=True``), events (a callable) or nothing."""

    def __init__(self, progress: Progress) -> None:
        from selfnet.progress import Bars

        self.fn = progress if callable(progress) else None
        self.bars = Bars(bool(progress) and self.fn is None)

    def __enter__(self) -> _Reporter:
        self.bars.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bars.__exit__(*exc)

    def train_step(self, stage: str, step: int, total: int, losses: dict[str, float]) -> None:
        """Training callback."""
        if self.fn:
            self.fn(ProgressEvent(stage, step, total, dict(losses)))
        self.bars.train_step(stage, step, total, losses)

    def restore_step(self, done: int, total: int) -> None:
        """Slices restored out of total."""
        if self.fn:
            self.fn(ProgressEvent("restoring", done, total))
        self.bars.restore_step(done, total)

    def block_step(self, done: int, total: int) -> None:
        """Blocks restored out of total."""
        if self.fn:
            self.fn(ProgressEvent("blocks", done, total))
        self.bars.block_step(done, total)


# --- train -----------------------------------------------------------------------------------------


def _refuse_isotropic(vol: Volume) -> None:
    """A stack sampled as finely along z as in XY is worth restoring only if QC finds its axial PSF wider."""
    from selfnet.qc.measure import estimate_resolution

    res = estimate_resolution(vol.data, vol.spacing)
    name = vol.path.name if vol.path is not None else "the stack"
    if not res.reliable:
        raise InputError(f"{name}: the z step is no coarser than the pixel and QC cannot measure an axial blur "
                         f"({res.note}): nothing to restore")
    if res.isotropy >= ISOTROPIC:
        raise InputError(f"{name}: already isotropic (QC: axial {res.axial_um:.3g} µm, lateral {res.lateral_um:.3g} µm, "
                         f"isotropy {res.isotropy:.2f}) and the z step is no coarser than the pixel: nothing to restore")
    log.info(f"z step no coarser than the pixel, but the axial resolution is {1 / res.isotropy:.1f}x the lateral "
             "(QC): learning the axial blur alone, no z interpolation")


def train(source: Source, spacing: Spacing | None = None, *, output: str | Path | None = None,
          config: TrainConfig | str | Path | None = None, read: ReadOptions | None = None, device: str = "auto",
          overwrite: bool = False, resume: bool = False, progress: Progress = True,
          cancel: CancelToken | None = None, series: SeriesOptions | None = None, **options: Any) -> Any:
    """Learn a Self-Net model from the stack itself; with ``output`` (``.pt``) also save it.

    ``options`` are training-config fields (``max_minutes=5, epochs=10, seed=1``) or read options
    (``timepoint=0``); given ones override ``config``. With ``output``, training keeps a checkpoint
    ``OUTPUT.ckpt.pt`` that ``resume=True`` continues. Returns the :class:`Model` (its ``summary``
    holds steps and timings); a multi-channel / time-lapse file gives a
    :class:`~selfnet.model.ModelSet`, one model per channel (or one ``shared_model``), saved as one file.
    """
    read_opts, out_opts, train_opts = _split_options(options)
    if out_opts:
        raise ConfigError(f"train() does not take {', '.join(out_opts)}")
    series = _series_options(series, read_opts)
    read = _merge_read(read, read_opts)
    cfg = _config(config, train_opts).for_channel(read.channel)  # --channel N takes PSF channel N
    torch_device = resolve_device(device)
    ckpt = None
    if output is not None:
        _refuse_in_place(source, [output, _checkpoint_name(output)], config)
        check_output_path(output, overwrite=overwrite, suffixes=MODEL_SUFFIXES)
        ckpt = _checkpoint_for(Path(output), resume, overwrite)
    layout = _series_layout(source, read)
    _check_psf(cfg, layout, _restrict(series, read) if layout is not None else None)
    if layout is not None:
        return _train_series(layout, _restrict(series, read), cfg, torch_device, output, overwrite, resume, progress,
                             cancel)
    vol = open_volume(source, spacing, read)
    if isinstance(source, (str, Path)) and not _is_large(vol):
        _check_memory(vol, cfg, None, "train on a crop of the stack (or use `selfnet run -o OUT.ome.zarr "
                      "--save-model MODEL.pt`, which trains on a bounded subset)")
    with _Reporter(progress) as rep:
        model = _train(vol, cfg, torch_device, rep, ckpt, resume, cancel)
    if output is not None:
        from selfnet.training.session import remove_checkpoint

        model.save(output, overwrite=overwrite)
        remove_checkpoint(ckpt)
    return model


def _merge_read(read: ReadOptions | None, flat: dict[str, Any]) -> ReadOptions:
    if read is not None and flat:
        return ReadOptions.make(**{**read.model_dump(), **flat})
    return read or ReadOptions.make(**flat)


def _train(vol: Volume, cfg: TrainConfig, device: Any, rep: _Reporter, checkpoint: Path | None, resume: bool,
           cancel: CancelToken | None) -> Model:
    """Train on ``vol`` (a bounded random subset when large) with the stack's one normaliser."""
    from selfnet.method.normalize import fit_normalizer
    from selfnet.training.loop import train_model
    from selfnet.training.subset import training_volume

    if vol.ratio < FINE_RATIO:
        _refuse_isotropic(vol)
    normalizer = fit_normalizer(vol.data, cfg.norm_percentiles)
    subset = training_volume(vol, seed=cfg.seed)
    if subset is not vol:
        log.info(f"training on a random subset of {'x'.join(map(str, subset.data.shape))} voxels "
                 "(full-z tiles side by side), not the whole stack")
    if resume and checkpoint is not None:
        found = checkpoint.is_file()
        log.info(f"--resume: {'continuing from' if found else 'no checkpoint'} {checkpoint}"
                 f"{'' if found else ', training from the start'}")
    model = train_model(subset.data, subset.spacing, cfg, device, on_step=rep.train_step, checkpoint=checkpoint,
                        resume=resume, normalizer=normalizer, cancel=cancel)
    from selfnet.export.info import (
        stack_provenance,  # export/info: training stack name, hash, date
    )

    model.summary.update(stack_provenance(vol.data, vol.path, vol.spacing))
    return model


def _checkpoint_for(output: Path, resume: bool, overwrite: bool) -> Path:
    """The training checkpoint kept next to OUTPUT; an unfinished one is never replaced silently."""
    from selfnet.training.session import checkpoint_path

    path = checkpoint_path(output)
    if path.exists() and not (resume or overwrite):
        raise OutputError(f"{path} holds an interrupted training: pass --resume to continue it "
                          "or --overwrite to start over")
    return path


def _is_large(vol: Volume) -> bool:
    from selfnet.inference.plan import is_large

    return is_large(vol)


def _check_memory(vol: Volume, cfg: TrainConfig | None, dtype: str | None, train_hint: str = memory.CHUNKED_HINT
                  ) -> None:
    """Stop before training/restoring in RAM when the machine cannot hold the planned arrays."""
    from selfnet.inference.plan import output_voxels
    from selfnet.training.subset import TRAIN_MAX_ISO_VOXELS

    shape, itemsize = tuple(int(n) for n in vol.data.shape), vol.data.dtype.itemsize
    shown = "x".join(map(str, shape))
    if cfg is not None:  # training sees at most TRAIN_MAX_ISO_VOXELS (training.subset)
        excess = output_voxels(vol) / TRAIN_MAX_ISO_VOXELS
        train_shape = shape if excess <= 1 else (shape[0], shape[1], max(1, int(shape[2] / excess)))
        need = memory.train_bytes(train_shape, itemsize, vol.ratio, patch_size=cfg.patch_size,
                                  pool_size=cfg.pool_size, refine=cfg.refines)
        memory.check_fits(need, f"training on {shown}", train_hint)
    if dtype is not None:
        out_itemsize = np.dtype(dtype).itemsize if dtype in ("uint8", "uint16", "int16", "float16") else 4
        memory.check_fits(memory.restore_bytes(shape, itemsize, vol.ratio, out_itemsize), f"restoring {shown}")


# --- restore ---------------------------------------------------------------------------------------


def restore(source: Source, model: Model | str | Path, spacing: Spacing | None = None, *,
            output: str | Path | None = None, read: ReadOptions | None = None, spec: OutputSpec | None = None,
            cluster: ClusterSpec | None = None, device: str = "auto", force: bool = False,
            views: tuple[str, ...] = ("xz", "yz"), progress: Progress = True, cancel: CancelToken | None = None,
            series: SeriesOptions | None = None, **options: Any) -> Restored:
    """Restore a stack to isotropic resolution with a trained model (a :class:`Model` or a ``.pt`` path).

    Without ``output`` the float32 ZYX result is returned in memory (``.data``); with one it is
    written (in RAM, or block by block for OME-Zarr outputs, ``chunked=True``, clusters and large
    stacks). Plain arrays need ``spacing``. The result's voxel size is the input's lateral pixel size.
    """
    read_opts, out_opts, train_opts = _split_options(options)
    if train_opts:
        raise ConfigError(f"restore() does not take training options ({', '.join(train_opts)})")
    series = _series_options(series, read_opts)
    read, spec = _merge_read(read, read_opts), _merge_spec(spec, out_opts)
    cluster = cluster or ClusterSpec()
    if output is not None:
        _refuse_in_place(source, [output, *_derived_outputs(output)], model)
    out = _check_outputs(output, spec) if output is not None else None
    device_name = str(resolve_device(device))
    models = _model_set(model)
    layout = _series_layout(source, read)
    if layout is not None:
        if out is None:
            raise ConfigError("a multi-channel / time-lapse stack is restored into a file: give an output")
        with _Reporter(progress) as rep:
            return _restore_series(layout, _restrict(series, read), models, out, spec, cluster,
                                   resolve_device(device), rep, cancel, {"models": _fingerprints(models)})
    net = _one_model(models, read)
    blocks = spec.wants_blocks(out, cluster)
    if blocks and out is None:
        raise ConfigError("block-wise restoring writes to a file: give an output")
    vol = open_volume(source, spacing, read, lazy=blocks)
    with _Reporter(progress) as rep:
        return _restore(vol, net, out, spec, cluster, device_name, force, views, rep, cancel, blocks)


def _refuse_in_place(source: Source, outputs: list[Any], *others: Any) -> None:
    """No output may be, hold or lie inside the input (or the model / config file read): checked first."""
    from selfnet.io.paths import check_not_input

    src = source.path if isinstance(source, Volume) else source if isinstance(source, (str, Path)) else None
    check_not_input(outputs, [src, *(o for o in others if isinstance(o, (str, Path)))])


def _checkpoint_name(output: str | Path) -> Path:
    from selfnet.training.session import checkpoint_path

    return checkpoint_path(output)


def _derived_outputs(output: str | Path, *, trains: bool = False) -> list[Path]:
    """What a job writes next to OUTPUT: the hidden partial store; for ``run`` also checkpoint and report."""
    from selfnet.inference.resume import partial_store

    if not trains:
        return [partial_store(output)]
    from selfnet.qc.report import (
        default_report_path,  # matplotlib: only where a report is written
    )

    return [partial_store(output), _checkpoint_name(output), default_report_path(output)]


def _merge_spec(spec: OutputSpec | None, flat: dict[str, Any]) -> OutputSpec:
    if spec is not None and flat:
        return OutputSpec.make(**{**spec.model_dump(), **flat})
    return spec or OutputSpec.make(**flat)


def _check_outputs(output: str | Path, spec: OutputSpec) -> Path:
    """Check, before any long work, that the volume output can be written in the chosen type."""
    from selfnet.io.zarr import check_zarr_output, is_zarr_path

    path = Path(output)
    if is_zarr_path(path):
        check_zarr_output(path, overwrite=spec.overwrite, resume=spec.resume)
    else:
        check_output_path(path, overwrite=spec.overwrite, suffixes=VOLUME_SUFFIXES)
    check_output_dtype(path, spec.dtype)
    return path


def _restore(vol: Volume, model: Model, output: Path | None, spec: OutputSpec, cluster: ClusterSpec, device: str,
             force: bool, views: tuple[str, ...], rep: _Reporter, cancel: CancelToken | None,
             blocks: bool, normalizer: Any = None) -> Restored:
    """In RAM (then written if asked) or block by block into ``output``.

    ``normalizer``: the stack's, when already fitted (``run`` passes the one training used).
    """
    if output is not None and (blocks or _is_large(vol)):
        return _restore_blocks(vol, model, output, spec, cluster, device, force, views, rep, cancel)
    from selfnet.inference.restore import restore_volume

    if isinstance(vol.data, np.ndarray) and vol.path is not None:
        _check_memory(vol, None, spec.dtype)
    t0 = time.perf_counter()
    data, spacing = restore_volume(vol.data, vol.spacing, model, resolve_device(device), views=views, force=force,
                                   on_progress=rep.restore_step, cancel=cancel, normalizer=normalizer)
    if output is not None:
        meta = {"selfnet_version": __version__, "source": str(vol.path), "model_ratio": model.ratio}
        write_volume(output, data, spacing, dtype=spec.dtype, overwrite=spec.overwrite, metadata=meta)
    shape = tuple(int(n) for n in data.shape)
    return Restored(data, output, shape, spacing, time.perf_counter() - t0, device)  # type: ignore[arg-type]


def _restore_blocks(vol: Volume, model: Model, output: Path, spec: OutputSpec, cluster: ClusterSpec, device: str,
                    force: bool, views: tuple[str, ...], rep: _Reporter, cancel: CancelToken | None) -> Restored:
    from selfnet.inference.cluster import restore_with_cluster

    meta = {"selfnet_version": __version__, "source": str(vol.path), "model_ratio": model.ratio}
    t0 = time.perf_counter()
    res = restore_with_cluster(vol, model, output, workers=cluster.workers, scheduler=cluster.scheduler,
                               tls_ca_file=cluster.tls_ca_file, tls_cert=cluster.tls_cert, tls_key=cluster.tls_key,
                               on_block=rep.block_step, device=device, dtype=spec.dtype, overwrite=spec.overwrite,
                               resume=spec.resume, pyramid=spec.pyramid, block=spec.block,
                               ngff_version=spec.ngff, force=force, metadata=meta, views=views, cancel=cancel)
    return Restored(None, res.path, res.shape, res.spacing, time.perf_counter() - t0, device, res.blocks,
                    res.blocks_run, res.peak_rss, res.worker_peak_rss)


# --- run -------------------------------------------------------------------------------------------


def run(source: Source, output: str | Path | None = None, *, spacing: Spacing | None = None,
        config: TrainConfig | str | Path | None = None, read: ReadOptions | None = None,
        spec: OutputSpec | None = None, cluster: ClusterSpec | None = None, device: str = "auto",
        save_model: str | Path | None = None, report: bool = True, lateral_fwhm: float | None = None,
        progress: Progress = True, cancel: CancelToken | None = None, series: SeriesOptions | None = None,
        **options: Any) -> RunResult:
    """The whole job: learn from the stack itself, restore it, write it and its HTML QC report.

    ``selfnet.run("stack.tif", "out.tif", max_minutes=5)`` does exactly what ``selfnet run`` does.
    Without ``output`` (arrays, notebooks) the restoration stays in memory and no report is written.
    Multi-channel / time-lapse files are restored whole (every channel at every time point) unless
    ``series`` (or ``channels=``, ``timepoints=``...) narrows them.
    """
    read_opts, out_opts, train_opts = _split_options(options)
    series = _series_options(series, read_opts)
    read, spec = _merge_read(read, read_opts), _merge_spec(spec, out_opts)
    cluster = cluster or ClusterSpec()
    QCOptions.make(lateral_fwhm=lateral_fwhm)
    derived = _derived_outputs(output, trains=True) if output is not None else []
    _refuse_in_place(source, [output, save_model, *derived], config)
    out = _check_outputs(output, spec) if output is not None else None
    ckpt = _checkpoint_for(out, spec.resume, spec.overwrite) if out is not None else None
    if save_model is not None:
        check_output_path(save_model, overwrite=spec.overwrite, suffixes=MODEL_SUFFIXES)
    report_path = _check_report_path(out, spec.overwrite) if (report and out is not None) else None
    torch_device = resolve_device(device)
    cfg = _config(config, train_opts).for_channel(read.channel)  # --channel N takes PSF channel N
    layout = _series_layout(source, read)
    _check_psf(cfg, layout, _restrict(series, read) if layout is not None else None)
    if layout is not None:
        if out is None:
            raise ConfigError("a multi-channel / time-lapse stack is restored into a file: give an output")
        return _run_series(layout, _restrict(series, read), cfg, out, spec, cluster, torch_device, save_model,
                           report_path, lateral_fwhm, progress, cancel)
    blocks = spec.wants_blocks(out, cluster)
    if blocks and out is None:
        raise ConfigError("block-wise restoring writes to a file: give an output")
    vol = open_volume(source, spacing, read, lazy=blocks)
    in_ram = not (blocks or _is_large(vol))
    if vol.path is not None:
        _check_memory(vol, cfg if in_ram else None, spec.dtype if in_ram else None)
    with _Reporter(progress) as rep:
        t0 = time.perf_counter()
        model = _saved_model(out) if (spec.resume and out is not None) else None
        trained = model is None
        if model is None:
            model = _train(vol, cfg, torch_device, rep, ckpt, spec.resume, cancel)
        train_s = time.perf_counter() - t0
        if save_model is not None:
            model.save(save_model, overwrite=spec.overwrite)
        restored = _restore(vol, model, out, spec, cluster, str(torch_device), False, ("xz", "yz"), rep, cancel,
                            blocks, model.normalizer if trained else None)
    if ckpt is not None:
        from selfnet.training.session import remove_checkpoint

        remove_checkpoint(ckpt)  # the output is complete: the training state is no longer needed
    result = RunResult(model, restored, train_s, trained=trained)
    if report_path is not None:  # after the volume is safely written
        settings = {"output": out, "device": str(torch_device), "output dtype": spec.dtype,
                    "config file": config if isinstance(config, (str, Path)) else None,
                    "lateral FWHM given (µm)": lateral_fwhm, **{k: v for k, v in train_opts.items()}}
        result.qc = _run_report(vol, restored, model, report_path, spec.overwrite,
                                {k: v for k, v in settings.items() if v is not None},
                                {"training": train_s, "restoration + writing": restored.seconds}, lateral_fwhm)
        result.report = report_path
    return result


def _saved_model(output: Path) -> Model | None:
    from selfnet.inference.resume import saved_model

    model = saved_model(output)
    if model is not None:
        log.info("--resume: using the model saved with the unfinished output (no training)")
    return model


def _check_report_path(output: Path, overwrite: bool) -> Path:
    """The report that ``run`` writes next to OUTPUT, checked before any long work."""
    from selfnet.qc.report import default_report_path

    return check_output_path(default_report_path(output), overwrite=overwrite, suffixes=(".html",))


def _run_report(vol: Volume, restored: Restored, model: Model, path: Path, overwrite: bool,
                settings: dict[str, object], timings: dict[str, float], lateral_fwhm: float | None) -> Any:
    """Measure raw vs restored (read back from the output) and write the HTML report."""
    from selfnet.qc.report import run_qc, write_report

    assert restored.path is not None
    back = read_volume(restored.path)
    result = run_qc(vol, back, model, lateral_fwhm_um=lateral_fwhm)
    write_report(path, result, overwrite=overwrite, title=f"selfnet report: {Path(str(vol.path)).name}",
                 settings=settings, timings=timings)
    return result


# --- multi-channel and time-lapse stacks (selfnet.series) --------------------------------------------


def _model_set(model: Any) -> Any:
    """Whatever model was given, as a :class:`~selfnet.model.ModelSet`."""
    from selfnet.model import ModelSet

    if isinstance(model, ModelSet):
        return model
    if isinstance(model, Model):
        return ModelSet([model], shared=True)
    return ModelSet.load(model)


def _one_model(models: Any, read: ReadOptions) -> Model:
    """The model for one 3D stack: the only one, or the picked channel's."""
    if len(models.models) == 1:
        return models.models[0]
    if read.channel is None:
        raise ConfigError(f"the model holds {len(models.models)} channel models: restore the whole multi-channel "
                          "stack with it, or pick one with --channel")
    if read.channel >= len(models.models):
        raise ConfigError(f"--channel {read.channel} is out of range: the model holds {len(models.models)} channel "
                          "models")
    return models.models[read.channel]


def _fingerprints(models: Any) -> list[str]:
    from selfnet.inference.job import model_fingerprint

    return [model_fingerprint(m) for m in models.models]


def _series_checkpoint(output: Path | None, group: int) -> Path | None:
    """Training checkpoint of the ``group``-th channel model (``OUTPUT.ckpt.pt``, ``OUTPUT.model1.ckpt.pt``...)."""
    if output is None:
        return None
    return _checkpoint_name(output if group == 0 else output.with_name(f"{output.name}.model{group}"))


def _series_trainer(device: Any, rep: _Reporter, resume: bool) -> Callable[..., Model]:
    def train_one(vol: Volume, cfg: TrainConfig, checkpoint: Path | None, cancel: CancelToken | None) -> Model:
        return _train(vol, cfg, device, rep, checkpoint, resume, cancel)

    return train_one


def _series_normalizers(plan: Any, fitted: dict[int, Any] | None) -> Callable[[int, Model], Any]:
    """Each channel's normaliser, fitted once on the training time points (or ``fitted`` on exactly those data)."""
    from selfnet import series as S
    from selfnet.method.normalize import fit_normalizer

    normalizers: dict[int, Any] = dict(fitted or {})

    def normalizer_for(ci: int, model: Model) -> Any:
        if ci not in normalizers:
            sample = S.training_stack(plan, [plan.channels[ci]]).data
            normalizers[ci] = fit_normalizer(sample, model.config.norm_percentiles)
        return normalizers[ci]

    return normalizer_for


def _series_restorer(plan: Any, store: Path, spec: OutputSpec, device: Any, rep: _Reporter,
                     cancel: CancelToken | None, blocks: bool, client: Any = None,
                     fitted: dict[int, Any] | None = None) -> Callable[..., dict[str, float]]:
    """Restore one (t, c) stack into its slot of ``store``: in RAM, or block by block (in-process or on ``client``).

    ``fitted``: normalisers already fitted on exactly the training data (per-channel models trained in this run).
    """
    from selfnet import series as S

    normalizer_for = _series_normalizers(plan, fitted)
    if blocks:
        from selfnet.inference.chunked import restore_into

        def restore_blocks(vol: Volume, model: Model, ti: int, ci: int) -> dict[str, float]:
            return restore_into(vol, model, store, plan.index(ti, ci), normalizer_for(ci, model), block=spec.block,
                                device=str(device), dtype=spec.dtype, client=client, on_block=rep.block_step,
                                cancel=cancel)

        return restore_blocks
    from selfnet.inference.restore import restore_volume

    def restore_one(vol: Volume, model: Model, ti: int, ci: int) -> np.ndarray:
        data, _ = restore_volume(vol.data, vol.spacing, model, device, normalizer=normalizer_for(ci, model),
                                 on_progress=rep.restore_step, cancel=cancel)
        return data

    return S.in_ram(plan, store, spec.dtype, restore_one)


def _restore_into_series(plan: Any, models: Any, store: Path, done: set, out: Path, spec: OutputSpec,
                         cluster: ClusterSpec, device: Any, rep: _Reporter, cancel: CancelToken | None,
                         fitted: dict[int, Any] | None = None) -> Any:
    """Restore the series' unfinished stacks (in RAM or block-wise, on a cluster if asked) and finish the output."""
    from selfnet import series as S
    from selfnet.inference.chunked import cluster_runner
    from selfnet.inference.cluster import cluster_client

    blocks = S.wants_blocks(plan, spec, cluster.used)
    with cluster_client(workers=cluster.workers, scheduler=cluster.scheduler, tls_ca_file=cluster.tls_ca_file,
                        tls_cert=cluster.tls_cert, tls_key=cluster.tls_key) as client:
        restore = _series_restorer(plan, store, spec, device, rep, cancel, blocks, client, fitted)
        result = S.restore_series(plan, models, store, done, restore, cancel)
        S.finish(result, plan, out, spec, {"selfnet_version": __version__, "source": str(plan.layout.path)},
                 run=cluster_runner(client))
    return result


def _train_series(layout: Any, series: SeriesOptions, cfg: TrainConfig, device: Any, output: str | Path | None,
                  overwrite: bool, resume: bool, progress: Progress, cancel: CancelToken | None) -> Any:
    """Train a multi-channel / time-lapse file: one model per channel (or shared), saved as one file."""
    from selfnet import series as S
    from selfnet.training.session import remove_checkpoint

    plan = S.plan_series(layout, series)
    log.info(S.describe(plan))
    out = Path(output) if output is not None else None
    with _Reporter(progress) as rep:
        models = S.train_models(plan, cfg, _series_trainer(device, rep, resume),
                                lambda g: _series_checkpoint(out, g), None, cancel)
    if out is not None:
        models.save(out, overwrite=overwrite)
        for g in range(len(models.models)):
            remove_checkpoint(_series_checkpoint(out, g))
    return models


def _restore_series(layout: Any, series: SeriesOptions, models: Any, out: Path, spec: OutputSpec,
                    cluster: ClusterSpec, device: Any, rep: _Reporter, cancel: CancelToken | None,
                    settings: dict[str, Any]) -> Restored:
    """Restore every (t, c) stack of a file with a model set into ``out``."""
    from selfnet import series as S

    S.check_series_output(out, spec)
    plan = S.plan_series(layout, series, models.channels)
    log.info(S.describe(plan))
    store, done = S.open_store(plan, out, spec, {**settings, **_plan_settings(plan, spec)})
    result = _restore_into_series(plan, models, store, done, out, spec, cluster, device, rep, cancel)
    return Restored(None, out, result.shape, result.spacing, result.seconds, str(device), result.stacks,  # type: ignore[arg-type]
                    result.stacks_run, axes=plan.axes)


def _plan_settings(plan: Any, spec: OutputSpec) -> dict[str, Any]:
    """What a series store must have been started with to be resumed."""
    return {"input": str(Path(plan.layout.path).resolve()), "times": plan.times, "channels": plan.channels,
            "train_times": plan.train_times, "shared": plan.shared, "dtype": spec.dtype}


def _run_series(layout: Any, series: SeriesOptions, cfg: TrainConfig, out: Path, spec: OutputSpec,
                cluster: ClusterSpec, device: Any, save_model: str | Path | None, report_path: Path | None,
                lateral_fwhm: float | None, progress: Progress, cancel: CancelToken | None) -> RunResult:
    """``run`` on a multi-channel / time-lapse file: train per channel, restore every (t, c), one report."""
    from selfnet import series as S
    from selfnet.training.session import remove_checkpoint

    S.check_series_output(out, spec)
    plan = S.plan_series(layout, series)
    log.info(S.describe(plan))
    t0 = time.perf_counter()
    with _Reporter(progress) as rep:
        store, done = S.open_store(plan, out, spec, {"train": cfg.model_dump(mode="json"),
                                                     **_plan_settings(plan, spec)})
        models = S.train_models(plan, cfg, _series_trainer(device, rep, spec.resume),
                                lambda g: _series_checkpoint(out, g), S.kept_models(store), cancel)
        train_s = time.perf_counter() - t0
        if save_model is not None:
            models.save(save_model, overwrite=spec.overwrite)
        fitted = None if models.shared else {ci: m.normalizer for ci, m in enumerate(models.models)}
        result = _restore_into_series(plan, models, store, done, out, spec, cluster, device, rep, cancel, fitted)
    for g in range(len(models.models)):
        remove_checkpoint(_series_checkpoint(out, g))
    restored = Restored(None, out, result.shape, result.spacing, result.seconds, str(device), result.stacks,  # type: ignore[arg-type]
                        result.stacks_run, axes=plan.axes)
    run_result = RunResult(models, restored, train_s)
    if report_path is not None:
        from selfnet.qc.report import write_series_report

        run_result.qc = write_series_report(report_path, plan, models, out, overwrite=spec.overwrite,
                                            lateral_fwhm=lateral_fwhm,
                                            timings={"training": train_s, "restoration + writing": result.seconds})
        run_result.report = report_path
    return run_result


# --- qc --------------------------------------------------------------------------------------------


def qc(source: Source, restored: Source | None = None, model: Model | str | Path | None = None, *,
       spacing: Spacing | None = None, read: ReadOptions | None = None, lateral_fwhm: float | None = None,
       report: str | Path | None = None, overwrite: bool = False) -> Any:
    """Resolution (FWHM, µm) and isotropy of a stack from the image itself; with ``restored``, before/after.

    ``report`` is a folder for ``<input name>.report.html``. Returns a
    :class:`~selfnet.qc.report.QCResult` (``.resolution``, ``.comparison``, ``.to_dict()``).
    """
    from selfnet.qc.report import default_report_path, run_qc, write_report

    if model is not None and restored is None:
        raise ConfigError("--model needs --compare RESTORED (the volume that model restored)")
    QCOptions.make(lateral_fwhm=lateral_fwhm)
    read = read or ReadOptions()
    report_path = None
    if report is not None:
        name = Path(source).name if isinstance(source, (str, Path)) else "volume.tif"
        report_path = _report_file(Path(report), default_report_path(name).name, overwrite)
    net = model if (model is None or isinstance(model, Model)) else Model.load(model)
    vol = _qc_volume(source, spacing, read)
    after = _restored_for_qc(restored, vol) if restored is not None else None
    result = run_qc(vol, after, net, lateral_fwhm_um=lateral_fwhm)
    if report_path is not None:
        label = Path(source).name if isinstance(source, (str, Path)) else "volume"
        write_report(report_path, result, overwrite=overwrite, title=f"selfnet QC: {label}")
        result.report = report_path
    return result


def _qc_volume(source: Source, spacing: Spacing | None, read: ReadOptions) -> Volume:
    """Any 3D stack (isotropic ones too), checked for what QC can measure."""
    from selfnet.qc.measure import check_volume

    if isinstance(source, (str, Path)):
        vol = read_volume(source, **read.model_dump(exclude={"level"}))
    elif isinstance(source, Volume):
        vol = source
    else:
        if spacing is None:
            raise ConfigError("spacing=(dz, dy, dx) in µm is required for a plain array")
        vol = Volume(np.asarray(source), _spacing(spacing))
    check_volume(vol.data, vol.spacing, str(vol.path or "volume"))
    return vol


def _restored_for_qc(source: Source, raw: Volume) -> Volume:
    """The restoration to compare with; without voxel sizes in the file, the raw lateral pixel is assumed."""
    dx = raw.spacing[2]
    if not isinstance(source, (str, Path)):
        return _qc_volume(source, (dx, dx, dx), ReadOptions())
    try:
        vol = _qc_volume(source, None, ReadOptions())
    except InputError as err:
        if "voxel size" not in str(err):
            raise
        vol = _qc_volume(source, None, ReadOptions(lateral_um=dx, axial_um=dx))
    if abs(vol.spacing[2] - dx) > 0.05 * dx:
        raise InputError(f"{source}: pixel {vol.spacing[2]:.4g} µm differs from the input's {dx:.4g} µm; "
                         "--compare expects the restoration of INPUT")
    return vol


def _report_file(folder: Path, name: str, overwrite: bool) -> Path:
    """FOLDER/<name>, creating FOLDER; checked before the analysis."""
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"--report {folder} is a file: give a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create report folder {folder}: {exc.strerror}") from None
    return check_output_path(folder / name, overwrite=overwrite, suffixes=(".html",))


# --- psf (a PSF distilled from a bead recording; selfnet.method.beads) --------------------------------


@dataclass(frozen=True)
class BeadPSF:
    """What :func:`psf` wrote: the PSF file, and per channel the beads averaged into it."""

    path: Path
    channels: list[Any]
    """One :class:`~selfnet.method.beads.BeadAverage` per channel of the PSF file (one for a plain stack)."""

    def summary(self) -> str:
        """The beads used and the PSF's FWHM, per channel where the file has several."""
        if len(self.channels) == 1:
            return self.channels[0].summary()
        return "; ".join(f"channel {c}: {average.summary()}" for c, average in enumerate(self.channels))


def psf(beads: Source, output: str | Path, *, spacing: Spacing | None = None, read: ReadOptions | None = None,
        box_um: tuple[float, ...] | str | None = None, overwrite: bool = False) -> BeadPSF:
    """Average the isolated beads of a bead recording into a PSF file ``output`` (TIFF, OME-TIFF or .npy).

    The PSF (unit sum, background 0, on the recording's voxel grid and with its voxel size) is what
    ``psf=`` / ``--psf`` takes. ``box_um`` is its (z, y, x) extent in µm: each bead needs that box
    inside the stack and to itself; without it the box starts at :data:`PSF_BOX_UM` and grows while
    the PSF still reaches its faces. A multi-channel recording (no ``channel=``) gives one PSF per
    channel in one file, and a multi-channel stack trained with it takes channel N's PSF for channel N.
    """
    from selfnet.io.write import write_array
    from selfnet.method.beads import average_beads

    box = None if box_um is None else _box(box_um)
    _refuse_in_place(beads, [output])
    path = check_output_path(output, overwrite=overwrite, suffixes=(".tif", ".tiff", ".npy"))
    stacks, voxel, names = _bead_stacks(beads, spacing, read or ReadOptions())
    averages = [average_beads(stack, voxel, box_um=box) for stack in stacks]
    data = np.stack([a.psf for a in averages]) if len(averages) > 1 else averages[0].psf
    written = write_array(path, data.astype(np.float32), voxel, axes="CZYX" if len(averages) > 1 else "ZYX",
                          overwrite=overwrite, display={"names": names} if names else None)
    return BeadPSF(written, averages)


@dataclass
class OpticsPSF:
    """What :func:`theoretical_psf` wrote: the PSF file, the optics it was computed for and its FWHM."""

    path: Path
    optics: Optics
    psf: np.ndarray = field(repr=False)
    spacing: Spacing
    fwhm_um: tuple[float, float, float]
    """Full width at half maximum through the peak, (z, y, x) µm."""
    out_of_focus_spread: float
    """How much wider along z its light per plane spreads than its centre (above 3: wide-field haze)."""
    depth_fit: dict[float, float] | None = None
    """With ``fit_depth_to``: each depth tried (µm) and how much worse its PSF explained the stack than the
    stack's own estimate (:func:`~selfnet.training.loop.stack_misfit_scorer`)."""

    def summary(self) -> str:
        """The optics (the fitted depth and its misfit), the PSF's FWHM, and the wide-field note where it applies."""
        z, y, x = self.fwhm_um
        text = f"{self.optics.summary()}; FWHM z {z:.3g} µm, y {y:.3g} µm, x {x:.3g} µm"
        if self.depth_fit:
            best, surface = self.depth_fit[self.optics.depth_um], self.depth_fit[min(self.depth_fit)]
            text += (f"; depth fitted to the stack over {len(self.depth_fit)} depths: misfit {best:.2f} "
                     f"(at the coverslip {surface:.2f})")
            if best > PSF_MISFIT:
                text += "; it still does not fit: check the other numbers, or leave --psf out"
        if self.out_of_focus_spread > WIDEFIELD:
            text += ("; a wide-field PSF: it pays with the refinement (the default); without it (refine 0) the blur "
                     "estimated from wide-field stacks did better (docs/BENCHMARKS.md)")
        return text


def theoretical_psf(output: str | Path, optics: Optics | dict[str, Any], *, spacing: Spacing | None = None,
                    fit_depth_to: Source | None = None, read: ReadOptions | None = None,
                    box_um: tuple[float, ...] | str | None = None, overwrite: bool = False) -> OpticsPSF:
    """Compute the PSF of ``optics`` (a vectorial model, psfmodels) into ``output`` for ``psf=`` / ``--psf``.

    For users without a bead recording (:func:`psf` is better where there is one: a real objective
    is rarely as good as its model). ``spacing`` is the PSF's (dz, dy, dx) grid in µm: the stack's
    pixel and a z step no coarser than it; ``box_um`` its (z, lateral) extent (default 6 x 3 µm).
    ``fit_depth_to`` (a stack, read with ``read``) replaces the optics' depth by the one whose PSF best
    explains that stack's axial blur (the sample index must differ from the immersion's); the grid is
    then the stack's pixel, unless ``spacing`` says otherwise.
    """
    from selfnet.io.write import write_array
    from selfnet.method.psf import fwhm_um, out_of_focus_spread

    optics = optics if isinstance(optics, Optics) else Optics.make(**optics)
    if spacing is None and fit_depth_to is None:
        raise ConfigError("a computed PSF needs its voxel size (--lateral-um)")
    if fit_depth_to is not None:
        _refuse_in_place(fit_depth_to, [output])
    path = check_output_path(output, overwrite=overwrite, suffixes=(".tif", ".tiff", ".npy"))
    stack = None if fit_depth_to is None else _fit_stack(fit_depth_to, read or ReadOptions(), optics)
    dz, dy, dx = _spacing(spacing if spacing is not None else (stack.spacing[2],) * 3)  # type: ignore[union-attr]
    if not all(math.isfinite(v) and v > 0 for v in (dz, dy, dx)):
        raise ConfigError(f"voxel size must be positive µm, got {dz:g}, {dy:g}, {dx:g}")
    if not math.isclose(dy, dx, rel_tol=1e-3):
        raise ConfigError(f"a computed PSF needs square pixels, got {dy:g} x {dx:g} µm")
    box = _box(box_um or PSF_BOX_UM)[:2]
    compute = _psf_of(optics, (dz, dx), box)
    tried = None
    if stack is not None:
        optics, tried = _fit_depth(optics, stack, compute, (dz, dy, dx))
    data = compute(optics.depth_um)
    written = write_array(path, data, (dz, dy, dx), overwrite=overwrite)
    return OpticsPSF(written, optics, data, (dz, dy, dx), fwhm_um(data, (dz, dy, dx)), out_of_focus_spread(data), tried)


def _psf_of(optics: Optics, voxel_um: tuple[float, float], box_um: tuple[float, float]) -> Callable[[float], np.ndarray]:
    """The PSF of ``optics`` at a given depth (µm), each depth computed once."""
    from functools import cache

    from selfnet.method.optics import vectorial_psf

    @cache
    def compute(depth_um: float) -> np.ndarray:
        return vectorial_psf(optics.modality, na=optics.na, emission_um=optics.emission_um, voxel_um=voxel_um,
                             excitation_um=optics.excitation_um, pinhole_au=optics.pinhole_au,
                             immersion_index=optics.immersion_index, sample_index=optics.sample_index,
                             depth_um=depth_um, box_um=box_um)

    return compute


def _fit_stack(source: Source, read: ReadOptions, optics: Optics) -> Volume:
    """The stack a depth is fitted to: a central lateral crop of at most :data:`FIT_SIDE` pixels, in memory."""
    if math.isclose(optics.sample_index, optics.immersion_index):
        raise ConfigError("fitting the depth needs a sample index unlike the immersion's (--sample-index): "
                          "without that mismatch the depth changes nothing")
    vol = open_volume(source, read=read)
    _, y, x = vol.data.shape[-3:]
    sy, sx = (slice(max(0, (n - FIT_SIDE) // 2), max(0, (n - FIT_SIDE) // 2) + FIT_SIDE) for n in (y, x))
    return Volume(np.asarray(vol.data[:, sy, sx], dtype=np.float32), vol.spacing, vol.path, vol.metadata)


def _fit_depth(optics: Optics, stack: Volume, compute: Callable[[float], np.ndarray],
               voxel: Spacing) -> tuple[Optics, dict[float, float]]:
    """``optics`` with the depth whose PSF best explains the stack, and the misfit of every depth tried."""
    from selfnet.method.optics import fit_depth
    from selfnet.training.loop import stack_misfit_scorer

    score = stack_misfit_scorer(np.asarray(stack.data), stack.spacing, make_config())
    if score is None:
        raise InputError("the stack holds too little detail above its noise to fit a depth to")
    log.info("fitting the PSF's depth to %s (a PSF per depth tried, seconds each)", stack.path or "the stack")
    best, tried = fit_depth(lambda depth: score(compute(depth), voxel))
    return optics.model_copy(update={"depth_um": best}), tried


def _bead_stacks(source: Source, spacing: Spacing | None, read: ReadOptions) -> tuple[list[np.ndarray], Spacing, Any]:
    """The recording's stacks (every channel, unless one is chosen), their voxel size and channel names."""
    from selfnet.io.series import probe_series, series_volume

    if isinstance(source, (str, Path)) and read.channel is None:
        layout = probe_series(source, **read.model_dump(exclude={"level"}))
        if layout.n_c > 1:
            if layout.n_t > 1 and read.timepoint is None:
                raise ConfigError(f"{source} has {layout.n_t} time points: pick the beads' with --timepoint")
            t = read.timepoint or 0
            return ([np.asarray(series_volume(layout, t, c).data) for c in range(layout.n_c)], layout.spacing,
                    layout.display.get("names"))
    vol = _bead_volume(source, spacing, read)
    return [np.asarray(vol.data)], vol.spacing, None


def _box(box_um: Any) -> tuple[float, float, float]:
    """(z, y, x) extent in µm from three numbers, or two (z, lateral); text as ``"6,3"``."""
    try:
        values = tuple(float(v) for v in (box_um.split(",") if isinstance(box_um, str) else box_um))
    except (TypeError, ValueError):
        raise ConfigError(f"box size (--box-um) must be Z,XY or Z,Y,X in µm, got {box_um!r}") from None
    if len(values) == 2:
        values = (values[0], values[1], values[1])
    if len(values) != 3 or not all(math.isfinite(v) and v > 0 for v in values):
        raise ConfigError(f"box size (--box-um) must be 2 or 3 positive sizes in µm, got {box_um!r}")
    return values  # type: ignore[return-value]


def _bead_volume(source: Source, spacing: Spacing | None, read: ReadOptions) -> Volume:
    """The bead recording with its voxel size, not checked as a stack to restore: any z step will do
    (a bead recording is often finer along z than a sample)."""
    if isinstance(source, (str, Path)):
        return read_volume(source, **read.model_dump(exclude={"level"}))
    return _in_memory(source, spacing)


# --- export / info (bioimage.io packages, provenance; selfnet.export) ----------------------------------


def export(model: str | Path, output: str | Path, *, interpolated_input: bool = False, sample: Source | None = None,
           spacing: Spacing | None = None, overwrite: bool = False) -> Path:
    """Write MODEL (a ``.pt`` or an exported ``.zip``) as a bioimage.io model package ``output`` (``.zip``).

    ``interpolated_input``: the package takes a stack already z-interpolated to isotropic voxels and
    returns the same size. ``sample`` (a stack like the training one) gives the test tensors and cover;
    without it a synthetic phantom at the model's z/xy ratio is used. Needs ``selfnet[bioimageio]``.
    """
    from selfnet.export.bioimageio import export_package
    from selfnet.export.zipped import original_model_bytes

    check_output_path(output, overwrite=overwrite, suffixes=(".zip",))
    net = Model.load(model)
    data = None if sample is None else np.asarray(open_volume(sample, spacing).data, dtype=np.float32)
    return export_package(net, original_model_bytes(Path(model)), output, interpolated_input=interpolated_input,
                          sample=data, overwrite=overwrite)


def info(model: str | Path) -> dict[str, Any]:
    """Provenance of a model file or exported package: voxel sizes, ratio, training stack, settings, versions, date."""
    from selfnet.export.info import provenance

    return provenance(Model.load(model), model)


__all__ = [
    "PSF_BOX_UM",
    "BeadPSF",
    "CancelToken",
    "Cancelled",
    "ProgressEvent",
    "Restored",
    "RunResult",
    "export",
    "info",
    "open_volume",
    "psf",
    "qc",
    "restore",
    "run",
    "train",
]
