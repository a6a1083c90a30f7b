"""Command line: ``selfnet run | train | restore | qc | psf | demo | export | info``. Turns options into :mod:`selfnet.api` calls.

Nothing here knows how the job is done: each command builds the typed option objects, calls the
facade and prints its result. Errors a user can cause print one line on stderr and exit 2; Ctrl-C
and SIGTERM set the job's cancel token (a second one stops at once) and exit 130.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from selfnet import api
from selfnet._version import __version__
from selfnet.errors import Cancelled, CancelToken, ConfigError, SelfnetError
from selfnet.options import ClusterSpec, Optics, OutputSpec, ReadOptions, SeriesOptions

app = typer.Typer(
    add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
    help="Isotropic restoration of anisotropic 3D fluorescence stacks by deep self-learning (Self-Net).",
)

InputArg = Annotated[Path, typer.Argument(help="Input stack: TIFF, OME-TIFF, .npy or OME-Zarr (ZYX).", show_default=False)]
LateralOpt = Annotated[Optional[float], typer.Option("--lateral-um", help="Lateral pixel size in µm (overrides the file).")]
AxialOpt = Annotated[Optional[float], typer.Option("--axial-um", help="Axial step (z spacing) in µm (overrides the file).")]
TimeOpt = Annotated[Optional[int], typer.Option("--timepoint", help="Time point to use from a T-series (0-based).")]
ChannelOpt = Annotated[Optional[int], typer.Option("--channel", help="Channel to use from a multi-channel file (0-based).")]
MinutesOpt = Annotated[Optional[float], typer.Option("--max-minutes", help="Wall-clock training budget in minutes; training stops at this or --epochs, whichever first.")]
EpochsOpt = Annotated[Optional[int], typer.Option("--epochs", help="Training epochs (default 30, or unlimited when --max-minutes is given).")]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps.")]
SeedOpt = Annotated[Optional[int], typer.Option("--seed", help="Random seed, default 0 (same input, seed, machine and thread count give the same result); overrides the config's seed only when given.")]
ConfigOpt = Annotated[Optional[Path], typer.Option("--config", help="YAML training config (see docs); flags override it.")]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Replace existing output files.")]
DtypeOpt = Annotated[str, typer.Option("--dtype", help="Output type: float32, uint16 or uint8 (integers are rounded and clipped to their range).")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]
ChannelsOpt = Annotated[Optional[str], typer.Option("--channels", help="Multi-channel stacks: restore only these channels, e.g. 0,2 (default: all).")]
TimepointsOpt = Annotated[Optional[str], typer.Option("--timepoints", help="Time-lapse stacks: restore only these time points, e.g. 0-9 or 0,5,10 (default: all).")]
TrainTimesOpt = Annotated[Optional[str], typer.Option("--train-timepoints", help="Time-lapse stacks: train on these time points (default: 3 spread over the series).")]
SharedOpt = Annotated[bool, typer.Option("--shared-model", help="Multi-channel stacks: one model for all channels (default: one per channel).")]
AxesOpt = Annotated[Optional[str], typer.Option("--axes", help="Name the file's axes when it does not (or names them wrongly), e.g. CZYX or TZYX; then pick with --channel/--timepoint.")]
TrainResumeOpt = Annotated[bool, typer.Option("--resume", help="Continue an interrupted training from its checkpoint OUTPUT.ckpt.pt.")]
# --- large data (block-wise restoring) ---
ChunkedOpt = Annotated[bool, typer.Option("--chunked", help="Restore block by block in bounded memory (automatic for .zarr outputs and large stacks).")]
BlockOpt = Annotated[Optional[str], typer.Option("--block", help="Block size in output voxels: N or Z,Y,X, multiples of 8 (default 256). Implies --chunked.")]
WorkersOpt = Annotated[Optional[int], typer.Option("--workers", help="Restore blocks on a local Dask cluster of N processes. Implies --chunked.")]
SchedulerOpt = Annotated[Optional[str], typer.Option("--scheduler", help="Restore blocks on a running Dask cluster you trust, e.g. tls://host:8786 (workers need selfnet and the same paths; tcp:// is unencrypted and warned about off this machine). Implies --chunked.")]
TlsCaOpt = Annotated[Optional[Path], typer.Option("--tls-ca-file", help="With --scheduler tls://: the CA certificate (PEM) that signed the scheduler's certificate.")]
TlsCertOpt = Annotated[Optional[Path], typer.Option("--tls-cert", help="With --scheduler tls://: this client's certificate (PEM).")]
TlsKeyOpt = Annotated[Optional[Path], typer.Option("--tls-key", help="With --scheduler tls://: this client's private key (PEM), unless --tls-cert holds it.")]
ResumeOpt = Annotated[bool, typer.Option("--resume", help="Continue an interrupted run: training from its checkpoint OUTPUT.ckpt.pt, a chunked restore from the blocks already written.")]
PyramidOpt = Annotated[bool, typer.Option("--pyramid", help="Add 2x down-sampled levels to an OME-Zarr output, for viewers.")]
LevelOpt = Annotated[int, typer.Option("--level", help="Multiscale level of an OME-Zarr input (0 = full resolution).")]
NgffOpt = Annotated[str, typer.Option("--ngff", help="OME-Zarr output version: 0.4 (zarr v2) or 0.5 (zarr v3).")]
PsfOpt = Annotated[Optional[Path], typer.Option("--psf", help="A measured (beads) or computed PSF (TIFF, OME-TIFF or .npy with its voxel size): its axial blur replaces the one estimated from the stack, and the net is then refined on its own restoration re-recorded through the PSF in 3D (refine in --config; 0 turns it off). Helps confocal, aberrated and wide-field stacks alike when the PSF is right; a PSF that does not fit the stack is warned about (docs/BENCHMARKS.md).")]
LateralFwhmOpt = Annotated[Optional[float], typer.Option("--lateral-fwhm", help="Lateral resolution of the optics (FWHM, µm, e.g. 0.51 x wavelength / NA) if known: QC then measures only the axial blur. Recommended for filament-like samples (neurites, microtubules).")]


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  file: object = None, line: str | None = None) -> None:
    typer.echo(f"selfnet: warning: {message}", err=True)


_CANCEL = CancelToken()
"""The running command's cancel token: the first Ctrl-C / SIGTERM sets it."""


@contextlib.contextmanager
def _stops_cleanly() -> Iterator[None]:
    """A cancelled job says what it kept and how to continue, then exits 130."""
    try:
        yield
    except Cancelled as stop:
        typer.echo(f"selfnet: interrupted; {stop.hint()}", err=True)
        raise typer.Exit(130) from None


def _read(lateral_um: float | None, axial_um: float | None, timepoint: int | None, channel: int | None,
          axes: str | None, level: int = 0) -> ReadOptions:
    return ReadOptions.make(lateral_um=lateral_um, axial_um=axial_um, timepoint=timepoint, channel=channel,
                            axes=axes, level=level)


def _cluster(workers: int | None, scheduler: str | None, ca_file: Path | None, cert: Path | None,
             key: Path | None) -> ClusterSpec:
    return ClusterSpec.make(workers=workers, scheduler=scheduler, tls_ca_file=ca_file, tls_cert=cert, tls_key=key)


def _progress(quiet: bool) -> bool:
    return not quiet


def _series(channels: str | None, timepoints: str | None, train_timepoints: str | None = None,
            shared_model: bool = False) -> SeriesOptions:
    return SeriesOptions.make(channels=channels, timepoints=timepoints, train_timepoints=train_timepoints,
                              shared_model=shared_model)


def _restored_line(restored: api.Restored, train_s: float | None) -> str:
    """``wrote OUT (shape, µm isotropic), train N s, restore N s (Mvox/s) on DEVICE[, blocks, RSS]``."""
    axes = "" if restored.axes == "ZYX" else f" {restored.axes}"
    parts = [f"selfnet: wrote {restored.path} ({'x'.join(map(str, restored.shape))}{axes}, "
             f"{restored.spacing[2]:.4g} µm isotropic)"]
    if train_s is not None:
        parts.append(f"train {train_s:.0f} s")
    parts.append(f"restore {restored.seconds:.1f} s ({restored.mvox_per_s:.2f} Mvox/s) on {restored.device}")
    line = ", ".join(parts)
    if restored.data is None and restored.peak_rss is not None:  # written block by block
        line += f", {restored.blocks_run}/{restored.blocks} blocks, peak RSS {restored.peak_rss / 2**30:.2f} GiB"
        if restored.worker_peak_rss:
            line += f" (largest worker {restored.worker_peak_rss / 2**30:.2f} GiB)"
    return line


@app.command()
def run(
    input: InputArg,
    output: Annotated[Path, typer.Option("-o", "--output", help="Output volume (.tif, .ome.tif, .npy, .zarr or .ome.zarr).")],
    lateral_um: LateralOpt = None, axial_um: AxialOpt = None, timepoint: TimeOpt = None, channel: ChannelOpt = None,
    max_minutes: MinutesOpt = None, epochs: EpochsOpt = None, device: DeviceOpt = "auto", seed: SeedOpt = None,
    save_model: Annotated[Optional[Path], typer.Option("--save-model", help="Also save the trained model here (.pt).")] = None,
    config: ConfigOpt = None, dtype: DtypeOpt = "float32", overwrite: OverwriteOpt = False, quiet: QuietOpt = False,
    chunked_: ChunkedOpt = False, block: BlockOpt = None, workers: WorkersOpt = None, scheduler: SchedulerOpt = None,
    resume: ResumeOpt = False, pyramid: PyramidOpt = False, level: LevelOpt = 0, ngff: NgffOpt = "0.4",
    tls_ca_file: TlsCaOpt = None, tls_cert: TlsCertOpt = None, tls_key: TlsKeyOpt = None,
    no_report: Annotated[bool, typer.Option("--no-report", help="Do not write the HTML QC report OUTPUT.report.html.")] = False,
    axes: AxesOpt = None, lateral_fwhm: LateralFwhmOpt = None, channels: ChannelsOpt = None,
    timepoints: TimepointsOpt = None, train_timepoints: TrainTimesOpt = None, shared_model: SharedOpt = False,
    psf: PsfOpt = None,
) -> None:
    """Learn from INPUT itself and write its isotropic restoration to OUTPUT (plus an HTML QC report).

    Multi-channel and time-lapse stacks are restored whole: every channel at every time point.
    """
    spec = OutputSpec.make(dtype=dtype, overwrite=overwrite, resume=resume, chunked=chunked_, block=block,
                           pyramid=pyramid, ngff=ngff)
    with _stops_cleanly():
        result = api.run(input, output, read=_read(lateral_um, axial_um, timepoint, channel, axes, level), spec=spec,
                         cluster=_cluster(workers, scheduler, tls_ca_file, tls_cert, tls_key), config=config, device=device,
                         save_model=save_model, report=not no_report, lateral_fwhm=lateral_fwhm,
                         progress=_progress(quiet), cancel=_CANCEL, max_minutes=max_minutes, epochs=epochs, seed=seed,
                         psf=None if psf is None else str(psf), series=_series(channels, timepoints, train_timepoints, shared_model))
    typer.echo(_restored_line(result.restored, result.train_seconds), err=True)
    if result.report is not None and isinstance(result.qc, list):
        typer.echo(f"selfnet: wrote report {result.report} (one section per channel)", err=True)
    elif result.report is not None:
        comp = result.qc.comparison
        typer.echo(f"selfnet: wrote report {result.report} (isotropy {comp.before.isotropy:.2f} -> "
                   f"{comp.after.isotropy:.2f}, data consistency {comp.consistency.psnr_db:.1f} dB, noise limit "
                   f"{comp.consistency.ceiling_psnr_db:.1f} dB)", err=True)


@app.command()
def train(
    input: InputArg,
    output: Annotated[Path, typer.Option("-o", "--output", help="Model file to write (.pt).")],
    lateral_um: LateralOpt = None, axial_um: AxialOpt = None, timepoint: TimeOpt = None, channel: ChannelOpt = None,
    max_minutes: MinutesOpt = None, epochs: EpochsOpt = None, device: DeviceOpt = "auto", seed: SeedOpt = None,
    config: ConfigOpt = None, overwrite: OverwriteOpt = False, quiet: QuietOpt = False, level: LevelOpt = 0,
    resume: TrainResumeOpt = False, axes: AxesOpt = None, channels: ChannelsOpt = None,
    train_timepoints: TrainTimesOpt = None, shared_model: SharedOpt = False, psf: PsfOpt = None,
) -> None:
    """Train a model on INPUT and save it, to restore this and similar stacks later.

    On a multi-channel / time-lapse stack the file holds one model per channel (or one shared).
    """
    with _stops_cleanly():
        model = api.train(input, output=output, read=_read(lateral_um, axial_um, timepoint, channel, axes, level),
                          config=config, device=device, overwrite=overwrite, resume=resume, progress=_progress(quiet),
                          cancel=_CANCEL, max_minutes=max_minutes, epochs=epochs, seed=seed, psf=None if psf is None else str(psf),
                          series=_series(channels, None, train_timepoints, shared_model))
    models = getattr(model, "models", [model])
    seconds = sum(float(m.summary.get("prepare_s", 0)) + float(m.summary.get("train_s", 0)) for m in models)
    what = f"{len(models)} channel models" if len(models) > 1 else "model"
    typer.echo(f"selfnet: saved {what} {output} (z/xy ratio {models[0].ratio:.2f}) after {seconds:.0f} s on "
               f"{models[0].summary.get('device', device)}", err=True)


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
    axes: AxesOpt = None, tls_ca_file: TlsCaOpt = None, tls_cert: TlsCertOpt = None, tls_key: TlsKeyOpt = None,
    channels: ChannelsOpt = None, timepoints: TimepointsOpt = None,
) -> None:
    """Restore INPUT with a trained MODEL (every channel and time point of a multi-channel / time-lapse stack)."""
    spec = OutputSpec.make(dtype=dtype, overwrite=overwrite, resume=resume, chunked=chunked_, block=block,
                           pyramid=pyramid, ngff=ngff)
    with _stops_cleanly():
        restored = api.restore(input, model, output=output, read=_read(lateral_um, axial_um, timepoint, channel, axes,
                                                                       level),
                               spec=spec, cluster=_cluster(workers, scheduler, tls_ca_file, tls_cert, tls_key), device=device,
                               force=force, progress=_progress(quiet), cancel=_CANCEL,
                               series=_series(channels, timepoints))
    typer.echo(_restored_line(restored, None), err=True)


def _echo_qc(result: Any, as_json: bool) -> None:
    """Human summary (stdout, or stderr under --json); under --json the JSON object is the last stdout line."""
    import json

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
    result = api.qc(input, compare, model, read=_read(lateral_um, axial_um, timepoint, channel, None),
                    lateral_fwhm=lateral_fwhm, report=report, overwrite=overwrite)
    if report is not None:
        typer.echo(f"selfnet: wrote report {result.report}", err=True)
    _echo_qc(result, json_out)


@app.command()
def demo(
    out: Annotated[Path, typer.Option("--out", help="Folder for the phantom, results and figure.")] = Path("selfnet_demo"),
    max_minutes: Annotated[float, typer.Option("--max-minutes", help="Training budget in minutes.")] = 3.0,
    size: Annotated[str, typer.Option("--size", help="Phantom size: tiny (tests), small (default) or full.")] = "small",
    device: DeviceOpt = "auto", seed: SeedOpt = None, overwrite: OverwriteOpt = False, quiet: QuietOpt = False,
) -> None:
    """Run the whole job on a built-in synthetic neurite stack with known ground truth and score it."""
    from selfnet.phantoms.demo import (
        run_demo,  # a script on the facade, like the user's own
    )

    result = run_demo(out, max_minutes=max_minutes, size=size, device=device, seed=seed or 0, overwrite=overwrite,
                      progress=_progress(quiet))
    typer.echo(result.table())
    typer.echo(f"selfnet: demo outputs in {out}/ (figure: {result.figure.name})", err=True)


@app.command()
def psf(
    output: Annotated[Path, typer.Option("-o", "--output", help="PSF file to write (.tif, .ome.tif or .npy), for `selfnet run --psf`.")],
    input: Annotated[Optional[Path], typer.Argument(help="Bead recording: a 3D stack of sparse sub-resolution fluorescent beads (TIFF, OME-TIFF, .npy or OME-Zarr) with its voxel size. Without one, --optics computes the PSF from the objective's numbers.", show_default=False)] = None,
    box_um: Annotated[Optional[str], typer.Option("--box-um", help="Extent of the PSF in µm: Z,XY or Z,Y,X (default: 6,3; from beads grown up to 2.25x while the PSF still reaches its faces). Each bead needs this box inside the stack and to itself.")] = None,
    optics: Annotated[Optional[str], typer.Option("--optics", help="Compute the PSF instead (no beads): widefield or confocal, with --na, --emission-um (confocal: --excitation-um) and --lateral-um; needs psfmodels (selfnet's psf extra).")] = None,
    na: Annotated[Optional[float], typer.Option("--na", help="(--optics) Numerical aperture of the objective.")] = None,
    emission_um: Annotated[Optional[float], typer.Option("--emission-um", help="(--optics) Emission wavelength in µm.")] = None,
    excitation_um: Annotated[Optional[float], typer.Option("--excitation-um", help="(--optics confocal) Excitation wavelength in µm.")] = None,
    pinhole_au: Annotated[Optional[float], typer.Option("--pinhole-au", help="(--optics confocal) Pinhole diameter in Airy units (default: 1).")] = None,
    immersion_index: Annotated[Optional[float], typer.Option("--immersion-index", help="(--optics) Refractive index of the immersion medium (default: 1.515, oil).")] = None,
    sample_index: Annotated[Optional[float], typer.Option("--sample-index", help="(--optics) Refractive index of the sample (default: 1.47, mounted); with --depth-um, a mismatch adds spherical aberration.")] = None,
    depth_um: Annotated[Optional[float], typer.Option("--depth-um", help="(--optics) Depth of the imaged plane below the coverslip in µm (default: 0).")] = None,
    fit_depth: Annotated[Optional[Path], typer.Option("--fit-depth", help="(--optics) Find the depth whose PSF best explains this stack's axial blur (needs --sample-index unlike the immersion's); the PSF gets the stack's pixel size.", show_default=False)] = None,
    lateral_um: LateralOpt = None, axial_um: Annotated[Optional[float], typer.Option("--axial-um", help="Axial step in µm (overrides the file; with --optics, the PSF's z step, default: the lateral pixel).")] = None,
    timepoint: TimeOpt = None, channel: ChannelOpt = None, axes: AxesOpt = None, overwrite: OverwriteOpt = False,
) -> None:
    """Average the isolated beads of a bead recording into a PSF for --psf (one per channel), or compute one from the optics."""
    if optics is None:
        if input is None:
            raise ConfigError("give a bead recording, or --optics widefield|confocal to compute a PSF")
        result: api.BeadPSF | api.OpticsPSF = api.psf(
            input, output, read=_read(lateral_um, axial_um, timepoint, channel, axes), box_um=box_um, overwrite=overwrite)
    else:
        if input is not None:
            raise ConfigError("give a bead recording or --optics, not both")
        if lateral_um is None and fit_depth is None:
            raise ConfigError("--optics needs the pixel size the PSF is computed on (--lateral-um)")
        numbers = {"modality": optics, "na": na, "emission_um": emission_um, "excitation_um": excitation_um,
                   "pinhole_au": pinhole_au, "immersion_index": immersion_index, "sample_index": sample_index,
                   "depth_um": depth_um}
        grid = None if fit_depth is not None else (axial_um or lateral_um, lateral_um, lateral_um)  # else the stack's
        result = api.theoretical_psf(output, Optics.make(**numbers), spacing=grid, fit_depth_to=fit_depth,
                                     read=_read(lateral_um, axial_um, timepoint, channel, axes), box_um=box_um,
                                     overwrite=overwrite)
    typer.echo(f"selfnet: wrote {result.path}: {result.summary()}", err=True)


# --- export / info (selfnet.export) ---


@app.command()
def export(
    model: Annotated[Path, typer.Argument(help="Model file written by `selfnet train` (.pt) or an exported .zip.", show_default=False)],
    bioimageio: Annotated[Path, typer.Option("--bioimageio", help="bioimage.io model package to write (.zip).")],
    interpolated_input: Annotated[bool, typer.Option("--interpolated-input", help="Package for tools that only run same-size models: input already z-interpolated to isotropic voxels, output the same size.")] = False,
    sample: Annotated[Optional[Path], typer.Option("--sample", help="A stack like the training one, for the package's test tensors and cover (default: a synthetic phantom).")] = None,
    lateral_um: LateralOpt = None, axial_um: AxialOpt = None, overwrite: OverwriteOpt = False,
) -> None:
    """Write MODEL as a bioimage.io model package (for bioimageio.core, deepImageJ in Fiji, sharing)."""
    read = _read(lateral_um, axial_um, None, None, None)
    out = api.export(model, bioimageio, interpolated_input=interpolated_input,
                     sample=None if sample is None else api.open_volume(sample, read=read), overwrite=overwrite)
    typer.echo(f"selfnet: wrote {out} (bioimage.io model, "
               f"{'z-interpolated' if interpolated_input else 'raw'} input)", err=True)


@app.command()
def info(
    model: Annotated[Path, typer.Argument(help="Model file (.pt) or bioimage.io package (.zip) written by selfnet.", show_default=False)],
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of lines.")] = False,
) -> None:
    """Print a model's provenance: voxel sizes, ratio, training stack, settings, steps, versions, date."""
    import json

    record = api.info(model)
    if json_out:
        typer.echo(json.dumps(record, ensure_ascii=False))
        return
    for key, value in record.items():
        typer.echo(f"{key}: {json.dumps(value) if isinstance(value, dict) else value}")


@app.callback(invoke_without_command=True)
def _root(version: Annotated[bool, typer.Option("--version", help="Show the version and exit.")] = False) -> None:
    _log_to_stderr()
    if version:
        typer.echo(f"selfnet {__version__}")
        raise typer.Exit()


def _interrupt(signum: int, frame: object) -> None:
    """First Ctrl-C / SIGTERM: ask the job to stop at its next safe point; a second one stops at once."""
    if _CANCEL.cancelled:
        raise KeyboardInterrupt
    typer.echo("selfnet: interrupted", err=True)
    _CANCEL.cancel()


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the time (test runners swap it)."""

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def _log_to_stderr() -> None:
    """The facade's progress notes (``selfnet`` logger) as ``selfnet: ...`` lines on stderr, once."""
    logger = logging.getLogger("selfnet")
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("selfnet: %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)


def main() -> None:
    """Console entry point: user errors become one line on stderr and a non-zero exit code."""
    global _CANCEL
    _CANCEL = CancelToken()
    warnings.showwarning = _show_warning  # type: ignore[assignment]
    previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        app()
    except SelfnetError as err:
        typer.echo(f"selfnet: error: {err}", err=True)
        sys.exit(err.exit_code)
    except KeyboardInterrupt as stop:
        hint = stop.hint() if hasattr(stop, "hint") else ""
        typer.echo(f"selfnet: interrupted{'; ' + hint if hint else ''}", err=True)
        sys.exit(130)
    finally:  # callers that run main() in-process (tests, notebooks) get their handlers back
        for sig, h in previous.items():
            signal.signal(sig, h)


if __name__ == "__main__":
    main()
