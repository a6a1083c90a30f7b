"""Command line: ``selfnet run | train | restore | demo``. Parses, validates, calls the API.

Errors a user can cause print one line on stderr and exit non-zero; no traceback.
"""

from __future__ import annotations

import math
import sys
import time
import warnings
from pathlib import Path
from typing import Annotated, Optional

import typer

from selfnet import __version__
from selfnet.config import TrainConfig, make_config
from selfnet.devices import resolve_device
from selfnet.errors import SelfnetError
from selfnet.io import Volume, check_output_path, read_volume, validate_volume, write_volume
from selfnet.model import MODEL_SUFFIXES, Model
from selfnet.progress import Bars
from selfnet.restore import restore_volume
from selfnet.train import train_model

app = typer.Typer(
    add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
    help="Isotropic restoration of anisotropic 3D fluorescence stacks by deep self-learning (Self-Net).",
)

VOLUME_SUFFIXES = (".tif", ".tiff", ".npy")

InputArg = Annotated[Path, typer.Argument(help="Input stack: TIFF, OME-TIFF or .npy (ZYX).", show_default=False)]
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


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  file: object = None, line: str | None = None) -> None:
    typer.echo(f"selfnet: warning: {message}", err=True)


def _load(path: Path, lateral: float | None, axial: float | None, timepoint: int | None,
          channel: int | None) -> Volume:
    vol = read_volume(path, lateral_um=lateral, axial_um=axial, timepoint=timepoint, channel=channel)
    validate_volume(vol)
    dz, dy, dx = vol.spacing
    typer.echo(f"selfnet: {path.name}: {'x'.join(map(str, vol.data.shape))} ZYX {vol.data.dtype.name}, "
               f"voxel {dz:.4g} x {dy:.4g} x {dx:.4g} µm (z/xy ratio {vol.ratio:.2f})", err=True)
    return vol


def _config(config: Path | None, **flags: object) -> TrainConfig:
    base = TrainConfig.from_file(config).model_dump() if config else {}
    base.update({k: v for k, v in flags.items() if v is not None})
    return make_config(**base)


def _train(vol: Volume, cfg: TrainConfig, device: str, quiet: bool) -> Model:
    with Bars(not quiet) as bars:
        return train_model(vol.data, vol.spacing, cfg, resolve_device(device), on_step=bars.train_step)


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
             device: str) -> None:
    mvox = math.prod(shape) / 1e6
    parts = [f"selfnet: wrote {output} ({'x'.join(map(str, shape))}, {spacing_um:.4g} µm isotropic)"]
    if train_s is not None:
        parts.append(f"train {train_s:.0f} s")
    parts.append(f"restore {restore_s:.1f} s ({mvox / max(restore_s, 1e-9):.2f} Mvox/s) on {resolve_device(device)}")
    typer.echo(", ".join(parts), err=True)


@app.command()
def run(
    input: InputArg,
    output: Annotated[Path, typer.Option("-o", "--output", help="Output volume (.tif, .ome.tif or .npy).")],
    lateral_um: LateralOpt = None, axial_um: AxialOpt = None, timepoint: TimeOpt = None, channel: ChannelOpt = None,
    max_minutes: MinutesOpt = None, epochs: EpochsOpt = None, device: DeviceOpt = "auto", seed: SeedOpt = 0,
    save_model: Annotated[Optional[Path], typer.Option("--save-model", help="Also save the trained model here (.pt).")] = None,
    config: ConfigOpt = None, dtype: DtypeOpt = "float32", overwrite: OverwriteOpt = False, quiet: QuietOpt = False,
) -> None:
    """Learn from INPUT itself and write its isotropic restoration to OUTPUT."""
    check_output_path(output, overwrite=overwrite, suffixes=VOLUME_SUFFIXES)
    if save_model:
        check_output_path(save_model, overwrite=overwrite, suffixes=MODEL_SUFFIXES)
    resolve_device(device)
    cfg = _config(config, max_minutes=max_minutes, epochs=epochs, seed=seed)
    vol = _load(input, lateral_um, axial_um, timepoint, channel)
    t0 = time.perf_counter()
    model = _train(vol, cfg, device, quiet)
    train_s = time.perf_counter() - t0
    if save_model:
        model.save(save_model, overwrite=overwrite)
    restore_s, shape = _restore_and_write(vol, model, output, device, dtype, overwrite, quiet)
    _summary(output, shape, vol.spacing[2], train_s, restore_s, device)


@app.command()
def train(
    input: InputArg,
    output: Annotated[Path, typer.Option("-o", "--output", help="Model file to write (.pt).")],
    lateral_um: LateralOpt = None, axial_um: AxialOpt = None, timepoint: TimeOpt = None, channel: ChannelOpt = None,
    max_minutes: MinutesOpt = None, epochs: EpochsOpt = None, device: DeviceOpt = "auto", seed: SeedOpt = 0,
    config: ConfigOpt = None, overwrite: OverwriteOpt = False, quiet: QuietOpt = False,
) -> None:
    """Train a model on INPUT and save it, to restore this and similar stacks later."""
    check_output_path(output, overwrite=overwrite, suffixes=MODEL_SUFFIXES)
    resolve_device(device)
    cfg = _config(config, max_minutes=max_minutes, epochs=epochs, seed=seed)
    vol = _load(input, lateral_um, axial_um, timepoint, channel)
    t0 = time.perf_counter()
    model = _train(vol, cfg, device, quiet)
    model.save(output, overwrite=overwrite)
    typer.echo(f"selfnet: saved model {output} (z/xy ratio {model.ratio:.2f}) after "
               f"{time.perf_counter() - t0:.0f} s on {resolve_device(device)}", err=True)


@app.command()
def restore(
    input: InputArg,
    model: Annotated[Path, typer.Option("--model", "-m", help="Model file written by `selfnet train` or --save-model.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Output volume (.tif, .ome.tif or .npy).")],
    lateral_um: LateralOpt = None, axial_um: AxialOpt = None, timepoint: TimeOpt = None, channel: ChannelOpt = None,
    device: DeviceOpt = "auto", dtype: DtypeOpt = "float32", overwrite: OverwriteOpt = False,
    force: Annotated[bool, typer.Option("--force", help="Restore even if the stack's z/xy ratio is far from the model's.")] = False,
    quiet: QuietOpt = False,
) -> None:
    """Restore INPUT with a trained MODEL."""
    check_output_path(output, overwrite=overwrite, suffixes=VOLUME_SUFFIXES)
    resolve_device(device)
    net = Model.load(model)
    vol = _load(input, lateral_um, axial_um, timepoint, channel)
    restore_s, shape = _restore_and_write(vol, net, output, device, dtype, overwrite, quiet, force=force)
    _summary(output, shape, vol.spacing[2], None, restore_s, device)


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


def main() -> None:
    """Console entry point: user errors become one line on stderr and a non-zero exit code."""
    warnings.showwarning = _show_warning  # type: ignore[assignment]
    try:
        app()
    except SelfnetError as err:
        typer.echo(f"selfnet: error: {err}", err=True)
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        typer.echo("selfnet: interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
