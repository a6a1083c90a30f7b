"""Command line: ``selfnet run | train | restore | qc | demo``. Parses, validates, calls the API.

Errors a user can cause print one line on stderr and exit non-zero; no traceback.
"""

from __future__ import annotations

import contextlib
import math
import signal
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Optional

import numpy as np
import typer

from selfnet import __version__, chunked, memory
from selfnet.checkpoint import TrainingInterrupted, checkpoint_path, remove_checkpoint
from selfnet.config import TrainConfig, make_config
from selfnet.devices import resolve_device
from selfnet.errors import ConfigError, InputError, OutputError, SelfnetError
from selfnet.io import Volume, check_output_dtype, check_output_path, read_volume, validate_volume, write_volume
from selfnet.model import MODEL_SUFFIXES, Model
from selfnet.ngff import NGFF_VERSIONS, check_zarr_output, is_zarr_path
from selfnet.progress import Bars
from selfnet.restore import restore_volume
from selfnet.train import train_model

app = typer.Typer(
    add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
    help="Isotropic restoration of anisotropic 3D fluorescence stacks by deep self-learning (Self-Net).",
)

VOLUME_SUFFIXES = (".tif", ".tiff", ".npy", ".zarr")

InputArg = Annotated[Path, typer.Argument(help="Input stack: TIFF, OME-TIFF, .npy or OME-Zarr (ZYX).", show_default=False)]
LateralOpt = Annotated[Optional[float], typer.Option("--lateral-um", help="Lateral pixel size in µm (overrides the file).")]
AxialOpt = Annotated[Optional[float], typer.Option("--axial-um", help="Axial step (z spacing) in µm (overrides the file).")]
TimeOpt = Annotated[Optional[int], typer.Option("--timepoint", help="Time point to use from a T-series (0-based).")]
ChannelOpt = Annotated[Optional[int], typer.Option("--channel", help="Channel to use from a multi-channel file (0-based).")]
MinutesOpt = Annotated[Optional[float], typer.Option("--max-minutes", help="Wall-clock training budget in minutes; training stops at this or --epochs, whichever first.")]
EpochsOpt = Annotated[Optional[int], typer.Option("--epochs", help="Training epochs (default 30, or unlimited when --max-minutes is given).")]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps.")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Random seed (same input, seed and CPU give the same result).")]
ConfigOpt = Annotated[Optional[Path], typer.Option("--config", help="YAML training config (see docs); flags override it.")]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Replace existing output files.")]
DtypeOpt = Annotated[str, typer.Option("--dtype", help="Output type: float32, uint16 or uint8 (integers are rounded and clipped to their range).")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]
AxesOpt = Annotated[Optional[str], typer.Option("--axes", help="Name the file's axes when it does not (or names them wrongly), e.g. CZYX or TZYX; then pick with --channel/--timepoint.")]
TrainResumeOpt = Annotated[bool, typer.Option("--resume", help="Continue an interrupted training from its checkpoint OUTPUT.ckpt.pt.")]
# --- large data (selfnet.chunked) ---
ChunkedOpt = Annotated[bool, typer.Option("--chunked", help="Restore block by block in bounded memory (automatic for .zarr outputs and large stacks).")]
BlockOpt = Annotated[Optional[str], typer.Option("--block", help="Block size in output voxels: N or Z,Y,X, multiples of 8 (default 256). Implies --chunked.")]
WorkersOpt = Annotated[Optional[int], typer.Option("--workers", help="Restore blocks on a local Dask cluster of N processes. Implies --chunked.")]
SchedulerOpt = Annotated[Optional[str], typer.Option("--scheduler", help="Restore blocks on a running Dask cluster, e.g. tcp://host:8786 (workers need selfnet and the same paths). Implies --chunked.")]
ResumeOpt = Annotated[bool, typer.Option("--resume", help="Continue an interrupted run: training from its checkpoint OUTPUT.ckpt.pt, a chunked restore from the blocks already written.")]
PyramidOpt = Annotated[bool, typer.Option("--pyramid", help="Add 2x down-sampled levels to an OME-Zarr output, for viewers.")]
LevelOpt = Annotated[int, typer.Option("--level", help="Multiscale level of an OME-Zarr input (0 = full resolution).")]
NgffOpt = Annotated[str, typer.Option("--ngff", help="OME-Zarr output version: 0.4 (zarr v2) or 0.5 (zarr v3).")]
LateralFwhmOpt = Annotated[Optional[float], typer.Option("--lateral-fwhm", help="Lateral resolution of the optics (FWHM, µm, e.g. 0.51 x wavelength / NA) if known: QC then measures only the axial blur. Recommended for filament-like samples (neurites, microtubules).")]


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  file: object = None, line: str | None = None) -> None:
    typer.echo(f"selfnet: warning: {message}", err=True)


@contextlib.contextmanager
def _damaged_pixels_are_input_errors(path: Path) -> Iterator[None]:
    """Decoding a damaged compressed file fails in codec-specific ways: report it as one line."""
    try:
        yield
    except (SelfnetError, MemoryError, KeyboardInterrupt):
        raise
    except Exception as exc:  # noqa: BLE001 - zlib, imagecodecs, zarr and dask errors have no common base
        reason = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise InputError(f"cannot read {path}: its image data are damaged ({reason})") from None


def _load(path: Path, lateral: float | None, axial: float | None, timepoint: int | None,
          channel: int | None, level: int = 0, lazy: bool = False, axes: str | None = None) -> Volume:
    vol = read_volume(path, lateral_um=lateral, axial_um=axial, timepoint=timepoint, channel=channel,
                      level=level, lazy=True, axes=axes)
    with _damaged_pixels_are_input_errors(path):
        if lazy or chunked.is_large(vol):  # large data: checked on a sample, never loaded whole
            chunked.validate_lazy(vol)
        else:
            if not isinstance(vol.data, np.ndarray):
                vol.data = chunked.read_region(vol.data, (slice(None),) * 3)
            validate_volume(vol)
    dz, dy, dx = vol.spacing
    typer.echo(f"selfnet: {path.name}: {'x'.join(map(str, vol.data.shape))} ZYX {vol.data.dtype.name}, "
               f"voxel {dz:.4g} x {dy:.4g} x {dx:.4g} µm (z/xy ratio {vol.ratio:.2f})", err=True)
    return vol


def _config(config: Path | None, **flags: object) -> TrainConfig:
    base = TrainConfig.from_file(config).model_dump() if config else {}
    base.update({k: v for k, v in flags.items() if v is not None})
    return make_config(**base)


def _train(vol: Volume, cfg: TrainConfig, device: str, quiet: bool, checkpoint: Path | None = None,
           resume: bool = False) -> Model:
    subset = chunked.training_volume(vol, seed=cfg.seed)
    if subset is not vol:
        typer.echo(f"selfnet: training on a random subset of {'x'.join(map(str, subset.data.shape))} voxels "
                   "(full-z tiles side by side), not the whole stack", err=True)
        vol = subset
    if resume and checkpoint is not None:
        found = checkpoint.is_file()
        typer.echo(f"selfnet: --resume: {'continuing from' if found else 'no checkpoint'} {checkpoint}"
                   f"{'' if found else ', training from the start'}", err=True)
    try:
        with Bars(not quiet) as bars:
            return train_model(vol.data, vol.spacing, cfg, resolve_device(device), on_step=bars.train_step,
                               checkpoint=checkpoint, resume=resume)
    except TrainingInterrupted as stop:
        typer.echo(f"selfnet: interrupted; {stop.hint()}", err=True)
        raise


# --- reliability: checkpoints and memory planning (selfnet.checkpoint, selfnet.memory) ---
def _checkpoint_for(output: Path, resume: bool, overwrite: bool) -> Path:
    """The training checkpoint kept next to OUTPUT; an unfinished one is never replaced silently."""
    path = checkpoint_path(output)
    if path.exists() and not (resume or overwrite):
        raise OutputError(f"{path} holds an interrupted training: pass --resume to continue it "
                          "or --overwrite to start over")
    return path


def _check_memory(vol: Volume, cfg: TrainConfig | None, dtype: str | None, train_hint: str = memory.CHUNKED_HINT
                  ) -> None:
    """Stop before training/restoring in RAM when the machine cannot hold the planned arrays."""
    shape, itemsize = tuple(int(n) for n in vol.data.shape), vol.data.dtype.itemsize
    shown = "x".join(map(str, shape))
    if cfg is not None:  # training sees at most TRAIN_MAX_ISO_VOXELS (chunked.training_volume)
        excess = chunked.output_voxels(vol) / chunked.TRAIN_MAX_ISO_VOXELS
        train_shape = shape if excess <= 1 else (shape[0], shape[1], max(1, int(shape[2] / excess)))
        need = memory.train_bytes(train_shape, itemsize, vol.ratio, patch_size=cfg.patch_size,
                                  pool_size=cfg.pool_size)
        memory.check_fits(need, f"training on {shown}", train_hint)
    if dtype is not None:
        out_itemsize = np.dtype(dtype).itemsize if dtype in ("uint8", "uint16", "int16", "float16") else 4
        memory.check_fits(memory.restore_bytes(shape, itemsize, vol.ratio, out_itemsize), f"restoring {shown}")
# ---


def _restore_and_write(vol: Volume, model: Model, output: Path, device: str, dtype: str, overwrite: bool,
                       quiet: bool, force: bool = False) -> tuple[float, tuple[int, ...]]:
    t0 = time.perf_counter()
    with Bars(not quiet) as bars:
        out, spacing = restore_volume(vol.data, vol.spacing, model, resolve_device(device), force=force,
                                      on_progress=bars.restore_step)
    meta = {"selfnet_version": __version__, "source": str(vol.path), "model_ratio": model.ratio}
    write_volume(output, out, spacing, dtype=dtype, overwrite=overwrite, metadata=meta)
    return time.perf_counter() - t0, out.shape


def _summary(output: Path, shape: tuple[int, ...], spacing_um: float, train_s: float | None, restore_s: float,
             device: str, extra: str = "") -> None:
    mvox = math.prod(shape) / 1e6
    parts = [f"selfnet: wrote {output} ({'x'.join(map(str, shape))}, {spacing_um:.4g} µm isotropic)"]
    if train_s is not None:
        parts.append(f"train {train_s:.0f} s")
    parts.append(f"restore {restore_s:.1f} s ({mvox / max(restore_s, 1e-9):.2f} Mvox/s) on {resolve_device(device)}")
    typer.echo(", ".join(parts) + extra, err=True)


# --- large data (selfnet.chunked) ---
def _wants_chunked(output: Path, chunked_flag: bool, block: str | None, workers: int | None,
                   scheduler: str | None, resume: bool, pyramid: bool) -> bool:
    return bool(chunked_flag or block or workers or scheduler or resume or pyramid) or is_zarr_path(output)


def _check_volume_output(output: Path, overwrite: bool, resume: bool, ngff: str = "0.4") -> None:
    if ngff not in NGFF_VERSIONS:
        raise ConfigError(f"--ngff must be {' or '.join(NGFF_VERSIONS)}, got {ngff!r}")
    if is_zarr_path(output):
        check_zarr_output(output, overwrite=overwrite, resume=resume)
    else:
        check_output_path(output, overwrite=overwrite, suffixes=VOLUME_SUFFIXES)


def _restore_chunked(vol: Volume, model: Model, output: Path, device: str, dtype: str, overwrite: bool,
                     quiet: bool, force: bool, block: str | None, workers: int | None, scheduler: str | None,
                     resume: bool, pyramid: bool, ngff: str) -> chunked.ChunkedResult:
    meta = {"selfnet_version": __version__, "source": str(vol.path), "model_ratio": model.ratio}
    t0 = time.perf_counter()
    try:
        res = chunked.restore_with_cluster(
            vol, model, output, workers=workers, scheduler=scheduler, progress=not quiet, device=device,
            dtype=dtype, overwrite=overwrite, resume=resume, pyramid=pyramid, block=block, ngff_version=ngff,
            force=force, metadata=meta)
        res.seconds = time.perf_counter() - t0  # wall time, cluster start-up included
        return res
    except KeyboardInterrupt:
        typer.echo(f"selfnet: interrupted; finished blocks are kept: rerun the same command with --resume "
                   f"to complete {output}", err=True)
        raise


def _rss_note(result: chunked.ChunkedResult) -> str:
    note = f", {result.blocks_run}/{result.blocks} blocks, peak RSS {result.peak_rss / 2**30:.2f} GiB"
    if result.worker_peak_rss:
        note += f" (largest worker {result.worker_peak_rss / 2**30:.2f} GiB)"
    return note
# ---


@app.command()
def run(
    input: InputArg,
    output: Annotated[Path, typer.Option("-o", "--output", help="Output volume (.tif, .ome.tif, .npy, .zarr or .ome.zarr).")],
    lateral_um: LateralOpt = None, axial_um: AxialOpt = None, timepoint: TimeOpt = None, channel: ChannelOpt = None,
    max_minutes: MinutesOpt = None, epochs: EpochsOpt = None, device: DeviceOpt = "auto", seed: SeedOpt = 0,
    save_model: Annotated[Optional[Path], typer.Option("--save-model", help="Also save the trained model here (.pt).")] = None,
    config: ConfigOpt = None, dtype: DtypeOpt = "float32", overwrite: OverwriteOpt = False, quiet: QuietOpt = False,
    chunked_: ChunkedOpt = False, block: BlockOpt = None, workers: WorkersOpt = None, scheduler: SchedulerOpt = None,
    resume: ResumeOpt = False, pyramid: PyramidOpt = False, level: LevelOpt = 0, ngff: NgffOpt = "0.4",
    no_report: Annotated[bool, typer.Option("--no-report", help="Do not write the HTML QC report OUTPUT.report.html.")] = False,
    axes: AxesOpt = None, lateral_fwhm: LateralFwhmOpt = None,
) -> None:
    """Learn from INPUT itself and write its isotropic restoration to OUTPUT (plus an HTML QC report)."""
    _check_lateral_fwhm(lateral_fwhm)
    _check_volume_output(output, overwrite, resume, ngff)
    check_output_dtype(output, dtype)
    ckpt = _checkpoint_for(output, resume, overwrite)
    if save_model:
        check_output_path(save_model, overwrite=overwrite, suffixes=MODEL_SUFFIXES)
    report_path = None if no_report else _check_report_path(output, overwrite)
    resolve_device(device)
    cfg = _config(config, max_minutes=max_minutes, epochs=epochs, seed=seed)
    lazy = _wants_chunked(output, chunked_, block, workers, scheduler, resume, pyramid)
    vol = _load(input, lateral_um, axial_um, timepoint, channel, level, lazy, axes)
    in_ram = not (lazy or chunked.is_large(vol))
    _check_memory(vol, cfg if in_ram else None, dtype if in_ram else None)
    t0 = time.perf_counter()
    model = chunked.saved_model(output) if resume else None
    if model is not None:
        typer.echo("selfnet: --resume: using the model saved with the unfinished output (no training)", err=True)
    else:
        model = _train(vol, cfg, device, quiet, ckpt, resume)
    train_s = time.perf_counter() - t0
    if save_model:
        model.save(save_model, overwrite=overwrite)
    if lazy or chunked.is_large(vol):
        res = _restore_chunked(vol, model, output, device, dtype, overwrite, quiet, False, block, workers,
                               scheduler, resume, pyramid, ngff)
        _summary(res.path, res.shape, vol.spacing[2], train_s, res.seconds, device, _rss_note(res))
        restore_s = res.seconds
    else:
        restore_s, shape = _restore_and_write(vol, model, output, device, dtype, overwrite, quiet)
        _summary(output, shape, vol.spacing[2], train_s, restore_s, device)
    remove_checkpoint(ckpt)  # the output is complete: the training state is no longer needed
    if report_path is not None:  # QC report (selfnet.report), after the volume is safely written
        settings = {"output": output, "max minutes": max_minutes, "epochs": epochs, "device": resolve_device(device),
                    "seed": seed, "output dtype": dtype, "config file": config, "lateral FWHM given (µm)": lateral_fwhm}
        _write_run_report(vol, output, model, report_path, overwrite,
                          settings={k: v for k, v in settings.items() if v is not None},
                          timings={"training": train_s, "restoration + writing": restore_s},
                          lateral_fwhm=lateral_fwhm)


@app.command()
def train(
    input: InputArg,
    output: Annotated[Path, typer.Option("-o", "--output", help="Model file to write (.pt).")],
    lateral_um: LateralOpt = None, axial_um: AxialOpt = None, timepoint: TimeOpt = None, channel: ChannelOpt = None,
    max_minutes: MinutesOpt = None, epochs: EpochsOpt = None, device: DeviceOpt = "auto", seed: SeedOpt = 0,
    config: ConfigOpt = None, overwrite: OverwriteOpt = False, quiet: QuietOpt = False, level: LevelOpt = 0,
    resume: TrainResumeOpt = False, axes: AxesOpt = None,
) -> None:
    """Train a model on INPUT and save it, to restore this and similar stacks later."""
    check_output_path(output, overwrite=overwrite, suffixes=MODEL_SUFFIXES)
    ckpt = _checkpoint_for(output, resume, overwrite)
    resolve_device(device)
    cfg = _config(config, max_minutes=max_minutes, epochs=epochs, seed=seed)
    vol = _load(input, lateral_um, axial_um, timepoint, channel, level, axes=axes)
    if not chunked.is_large(vol):
        _check_memory(vol, cfg, None, "train on a crop of the stack (or use `selfnet run -o OUT.ome.zarr "
                      "--save-model MODEL.pt`, which trains on a bounded subset)")
    t0 = time.perf_counter()
    model = _train(vol, cfg, device, quiet, ckpt, resume)
    model.save(output, overwrite=overwrite)
    remove_checkpoint(ckpt)
    typer.echo(f"selfnet: saved model {output} (z/xy ratio {model.ratio:.2f}) after "
               f"{time.perf_counter() - t0:.0f} s on {resolve_device(device)}", err=True)


@app.command()
def restore(
    input: InputArg,
    model: Annotated[Path, typer.Option("--model", "-m", help="Model file written by `selfnet train` or --save-model.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Output volume (.tif, .ome.tif, .npy, .zarr or .ome.zarr).")],
    lateral_um: LateralOpt = None, axial_um: AxialOpt = None, timepoint: TimeOpt = None, channel: ChannelOpt = None,
    device: DeviceOpt = "auto", dtype: DtypeOpt = "float32", overwrite: OverwriteOpt = False,
    force: Annotated[bool, typer.Option("--force", help="Restore even if the stack's z/xy ratio is far from the model's.")] = False,
    quiet: QuietOpt = False,
    chunked_: ChunkedOpt = False, block: BlockOpt = None, workers: WorkersOpt = None, scheduler: SchedulerOpt = None,
    resume: ResumeOpt = False, pyramid: PyramidOpt = False, level: LevelOpt = 0, ngff: NgffOpt = "0.4",
    axes: AxesOpt = None,
) -> None:
    """Restore INPUT with a trained MODEL."""
    _check_volume_output(output, overwrite, resume, ngff)
    check_output_dtype(output, dtype)
    resolve_device(device)
    net = Model.load(model)
    lazy = _wants_chunked(output, chunked_, block, workers, scheduler, resume, pyramid)
    vol = _load(input, lateral_um, axial_um, timepoint, channel, level, lazy, axes)
    if not (lazy or chunked.is_large(vol)):
        _check_memory(vol, None, dtype)
    if lazy or chunked.is_large(vol):
        res = _restore_chunked(vol, net, output, device, dtype, overwrite, quiet, force, block, workers,
                               scheduler, resume, pyramid, ngff)
        _summary(res.path, res.shape, vol.spacing[2], None, res.seconds, device, _rss_note(res))
        return
    restore_s, shape = _restore_and_write(vol, net, output, device, dtype, overwrite, quiet, force=force)
    _summary(output, shape, vol.spacing[2], None, restore_s, device)


# --- QC: `selfnet qc` and the report written by `run` (selfnet.qc, selfnet.report) ----------------


def _check_lateral_fwhm(value: float | None) -> None:
    """--lateral-fwhm must be a positive, finite size in µm."""
    if value is not None and not (math.isfinite(value) and value > 0):
        raise ConfigError(f"--lateral-fwhm must be a positive number of µm, not {value}")


def _check_report_path(output: Path, overwrite: bool) -> Path:
    """The report that `run` writes next to OUTPUT, checked before any long work."""
    from selfnet.report import default_report_path

    return check_output_path(default_report_path(output), overwrite=overwrite, suffixes=(".html",))


def _write_run_report(vol: Volume, output: Path, model: Model, path: Path, overwrite: bool,
                      settings: dict[str, object], timings: dict[str, float], lateral_fwhm: float | None = None) -> None:
    """Measure raw vs restored (read back from OUTPUT) and write the HTML report."""
    from selfnet.report import run_qc, write_report

    restored = read_volume(output)
    result = run_qc(vol, restored, model, lateral_fwhm_um=lateral_fwhm)
    write_report(path, result, overwrite=overwrite, title=f"selfnet report: {Path(str(vol.path)).name}",
                 settings=settings, timings=timings)
    comp = result.comparison
    assert comp is not None
    typer.echo(f"selfnet: wrote report {path} (isotropy {comp.before.isotropy:.2f} -> {comp.after.isotropy:.2f}, "
               f"data consistency {comp.consistency.psnr_db:.1f} dB, noise limit "
               f"{comp.consistency.ceiling_psnr_db:.1f} dB)", err=True)


def _load_for_qc(path: Path, lateral: float | None, axial: float | None, timepoint: int | None,
                 channel: int | None) -> Volume:
    """Read any 3D stack (isotropic ones too) and check that QC can measure it."""
    from selfnet.qc import check_volume

    vol = read_volume(path, lateral_um=lateral, axial_um=axial, timepoint=timepoint, channel=channel)
    check_volume(vol.data, vol.spacing, str(path))
    return vol


def _load_restored(path: Path, raw: Volume) -> Volume:
    """The restoration to compare with; without voxel sizes in the file, the raw lateral pixel is assumed."""
    dx = raw.spacing[2]
    try:
        vol = _load_for_qc(path, None, None, None, None)
    except InputError as err:
        if "voxel size" not in str(err):
            raise
        vol = _load_for_qc(path, dx, dx, None, None)
    if abs(vol.spacing[2] - dx) > 0.05 * dx:
        raise InputError(f"{path}: pixel {vol.spacing[2]:.4g} µm differs from the input's {dx:.4g} µm; "
                         "--compare expects the restoration of INPUT")
    return vol


def _qc_report_file(folder: Path, input: Path, overwrite: bool) -> Path:
    """DIR/<input name>.report.html, creating DIR; checked before the analysis."""
    from selfnet.report import default_report_path

    if folder.exists() and not folder.is_dir():
        raise OutputError(f"--report {folder} is a file: give a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create report folder {folder}: {exc.strerror}") from None
    return check_output_path(folder / default_report_path(input).name, overwrite=overwrite, suffixes=(".html",))


def _echo_qc(result: object, as_json: bool) -> None:
    """Human summary (stdout, or stderr under --json); under --json the JSON object is the last stdout line."""
    import json

    from selfnet.report import QCResult

    assert isinstance(result, QCResult)
    lines = []
    for vol, res in ((result.volume, result.resolution),
                     (result.restored, result.comparison.after if result.comparison else None)):
        if vol is None or res is None:
            continue
        lines.append(f"{Path(str(vol.path)).name}: lateral {res.lateral_um:.3g} µm, axial {res.axial_um:.3g} µm "
                     f"(FWHM), isotropy {res.isotropy:.2f}")
        if not res.reliable:
            typer.echo(f"selfnet: warning: {Path(str(vol.path)).name}: {res.note}", err=True)
    if result.comparison is not None:
        c = result.comparison.consistency
        lines.append(f"data consistency: PSNR {c.psnr_db:.1f} dB (noise limit {c.ceiling_psnr_db:.1f} dB), "
                     f"correlation {c.correlation:.3f} (noise limit {c.ceiling_correlation:.3f})")
    for line in lines:
        typer.echo(line, err=as_json)
    if as_json:
        typer.echo(json.dumps(result.to_dict(), ensure_ascii=False))


@app.command()
def qc(
    input: InputArg,
    json_out: Annotated[bool, typer.Option("--json", help="Print the results as one JSON object (the last stdout line).")] = False,
    report: Annotated[Optional[Path], typer.Option("--report", help="Folder for an HTML report (created if missing).")] = None,
    compare: Annotated[Optional[Path], typer.Option("--compare", help="Isotropic restoration of INPUT: before/after and data consistency.")] = None,
    model: Annotated[Optional[Path], typer.Option("--model", "-m", help="With --compare: the model that restored it (learned degradation, training curves).")] = None,
    lateral_fwhm: LateralFwhmOpt = None,
    lateral_um: LateralOpt = None, axial_um: AxialOpt = None, timepoint: TimeOpt = None, channel: ChannelOpt = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Measure lateral and axial resolution (µm) and isotropy of INPUT from the image itself, no beads needed."""
    from selfnet.report import run_qc, write_report

    if model is not None and compare is None:
        raise ConfigError("--model needs --compare RESTORED (the volume that model restored)")
    _check_lateral_fwhm(lateral_fwhm)
    report_path = _qc_report_file(report, input, overwrite) if report is not None else None
    net = Model.load(model) if model is not None else None
    vol = _load_for_qc(input, lateral_um, axial_um, timepoint, channel)
    restored = _load_restored(compare, vol) if compare is not None else None
    result = run_qc(vol, restored, net, lateral_fwhm_um=lateral_fwhm)
    if report_path is not None:
        write_report(report_path, result, overwrite=overwrite, title=f"selfnet QC: {input.name}")
        typer.echo(f"selfnet: wrote report {report_path}", err=True)
    _echo_qc(result, json_out)


@app.command()
def demo(
    out: Annotated[Path, typer.Option("--out", help="Folder for the phantom, results and figure.")] = Path("selfnet_demo"),
    max_minutes: Annotated[float, typer.Option("--max-minutes", help="Training budget in minutes.")] = 3.0,
    size: Annotated[str, typer.Option("--size", help="Phantom size: tiny (tests), small (default) or full.")] = "small",
    device: DeviceOpt = "auto", seed: SeedOpt = 0, overwrite: OverwriteOpt = False, quiet: QuietOpt = False,
) -> None:
    """Run the whole job on a built-in synthetic neurite stack with known ground truth and score it."""
    from selfnet.demo import run_demo

    resolve_device(device)
    result = run_demo(out, max_minutes=max_minutes, size=size, device=device, seed=seed, overwrite=overwrite,
                      progress=not quiet)
    typer.echo(result.table())
    typer.echo(f"selfnet: demo outputs in {out}/ (figure: {result.figure.name})", err=True)


@app.callback(invoke_without_command=True)
def _root(version: Annotated[bool, typer.Option("--version", help="Show the version and exit.")] = False) -> None:
    if version:
        typer.echo(f"selfnet {__version__}")
        raise typer.Exit()


def _interrupt(signum: int, frame: object) -> None:
    """Ctrl-C and SIGTERM: say so, then unwind (partial outputs are removed; exit status 130).

    Training installs its own handler meanwhile (checkpoint + resume hint). Typer turns the
    KeyboardInterrupt into a silent exit 130, hence the message here.
    """
    typer.echo("selfnet: interrupted", err=True)
    raise KeyboardInterrupt


def main() -> None:
    """Console entry point: user errors become one line on stderr and a non-zero exit code."""
    warnings.showwarning = _show_warning  # type: ignore[assignment]
    previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        app()
    except SelfnetError as err:
        typer.echo(f"selfnet: error: {err}", err=True)
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        typer.echo("selfnet: interrupted", err=True)
        sys.exit(130)
    finally:  # callers that run main() in-process (tests, notebooks) get their handlers back
        for sig, handler in previous.items():
            signal.signal(sig, handler)


if __name__ == "__main__":
    main()
