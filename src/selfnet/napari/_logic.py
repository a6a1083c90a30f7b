"""What the napari widgets do, without napari or Qt: requests, the background job, result and QC text.

The job calls only :mod:`selfnet.api` and :mod:`selfnet.io`; :func:`iter_job` turns its progress
callbacks into a generator, which is what a napari ``thread_worker`` runs.
"""

from __future__ import annotations

import math
import queue
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from selfnet import api
from selfnet.errors import Cancelled, CancelToken, ConfigError, SelfnetError
from selfnet.io import Volume, read_volume

Spacing = tuple[float, float, float]
T = TypeVar("T")

MODES = {"train and restore": "train", "apply a saved model": "apply"}
DEVICES = ("auto", "cpu", "cuda", "mps")
LAZY_VOXELS = 256 * 2**20  # larger results (1 GiB of float32) are written to OME-Zarr and shown lazily
PROGRESS_INTERVAL_S = 0.1


@dataclass(frozen=True)
class RestoreRequest:
    """What the restore widget asks for; ``options`` are extra training-config fields (e.g. ``epochs``)."""

    spacing: Spacing
    mode: str = "train"
    minutes: float = 5.0
    device: str = "auto"
    model: Path | None = None
    save_model: Path | None = None
    resume: bool = False
    output: Path | None = None
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class JobResult:
    """What a restore job left: the isotropic data (array or lazy dask) and scale, or why it stopped."""

    name: str
    data: Any = None
    spacing: Spacing | None = None
    path: Path | None = None
    qc: str = ""
    cancelled: bool = False
    failed: bool = False
    message: str = ""


def spacing_from_scale(scale: Sequence[float]) -> Spacing:
    """(dz, dy, dx) from a layer's scale: its last three entries."""
    values = [float(s) for s in scale]
    if len(values) < 3:
        raise ConfigError(f"a z-stack layer needs 3 spatial axes, this one has scale {tuple(values)}")
    return (values[-3], values[-2], values[-1])


def check_request(req: RestoreRequest) -> RestoreRequest:
    """The request if it can run, else a one-line :class:`ConfigError` (checked before any work starts)."""
    if not all(math.isfinite(v) and v > 0 for v in req.spacing):
        raise ConfigError(f"voxel sizes must be positive µm, got {req.spacing}")
    if req.mode not in MODES.values():
        raise ConfigError(f"unknown mode {req.mode!r}: use {' or '.join(MODES.values())}")
    if req.mode == "apply" and (req.model is None or not Path(req.model).is_file()):
        raise ConfigError(f"choose a saved model (.pt) to apply{f': {req.model} does not exist' if req.model else ''}")
    if req.mode == "train" and not req.minutes > 0:
        raise ConfigError("the training budget must be more than 0 minutes")
    if req.device not in DEVICES and not req.device.startswith("cuda:"):
        raise ConfigError(f"unknown device {req.device!r}: use {', '.join(DEVICES)}")
    return req


def current_stack(data: Any, lead: Sequence[int] = ()) -> Any:
    """The ZYX stack of a layer's data at the given leading (time) indices, clipped into range."""
    lead = list(lead)
    while getattr(data, "ndim", 3) > 3:
        index = lead.pop(0) if lead else 0
        data = data[int(min(max(index, 0), data.shape[0] - 1))]
    if getattr(data, "ndim", 0) != 3:
        raise ConfigError(f"restoring needs a 3D (or time-lapse 3D) image layer, got shape {np.shape(data)}")
    return data


def output_voxels(shape: Sequence[int], spacing: Spacing) -> int:
    """Voxels of the isotropic result: z stretched by dz / dx."""
    z, y, x = (int(n) for n in shape[-3:])
    return math.floor((z - 1) * spacing[0] / spacing[2]) * y * x + y * x


def result_path(req: RestoreRequest, shape: Sequence[int], name: str) -> Path | None:
    """Where the result is written: the asked file, a temporary OME-Zarr when large, else nowhere (RAM)."""
    if req.output is not None:
        return Path(req.output)
    if output_voxels(shape, req.spacing) <= LAZY_VOXELS:
        return None
    return Path(tempfile.mkdtemp(prefix="selfnet-")) / f"{safe_name(name)}_iso.ome.zarr"


def safe_name(name: str) -> str:
    """A layer name usable in a file name."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name).strip("._") or "volume"


def run_job(stack: Any, req: RestoreRequest, name: str, progress: api.ProgressFn,
            cancel: CancelToken) -> JobResult:
    """Train (or load) a model, restore ``stack``, measure QC: all through :mod:`selfnet.api`."""
    data = np.asarray(stack)
    try:
        if req.mode == "apply":
            model: Any = Path(req.model)  # type: ignore[arg-type]
        else:
            model = api.train(data, req.spacing, output=req.save_model, resume=req.resume, device=req.device,
                              progress=progress, cancel=cancel, **{**req.options, "max_minutes": req.minutes})
        out = result_path(req, data.shape, name)
        restored = api.restore(data, model, req.spacing, output=out, device=req.device, progress=progress,
                               cancel=cancel, overwrite=req.output is not None)
    except Cancelled as stop:
        return JobResult(name, cancelled=True, message=widget_hint(stop.hint()))
    progress(api.ProgressEvent("qc", 0, 0))  # no steps: a busy bar
    iso = restored.data if restored.data is not None else read_volume(restored.path, lazy=True).data
    report = api.qc(data, restored.data if restored.data is not None else restored.path, model, spacing=req.spacing)
    return JobResult(f"{name} isotropic", iso, restored.spacing, restored.path, qc_text(report))


def widget_hint(hint: str) -> str:
    """A cancel hint in the widget's words: its checkbox, not the CLI's ``--resume``."""
    return hint.replace("rerun the same command with --resume",
                        'tick "continue an interrupted training" and press Restore')


def iter_job(job: Callable[[api.ProgressFn], T], cancel: CancelToken | None = None,
             interval: float = PROGRESS_INTERVAL_S) -> Iterator[api.ProgressEvent | T]:
    """Run ``job(progress)`` in a thread; yield its progress events, return its value.

    Events are thinned to one per ``interval``, keeping each stage's first and last.

    Errors in the job are raised here. If the generator is closed early, ``cancel`` is set and the job is awaited.
    """
    events: queue.Queue[tuple[str, Any]] = queue.Queue()

    def target() -> None:
        try:
            events.put(("done", job(lambda ev: events.put(("event", ev)))))
        except BaseException as exc:  # noqa: BLE001 - handed to the generator, which re-raises it
            events.put(("error", exc))

    thread = threading.Thread(target=target, name="selfnet-job", daemon=True)
    thread.start()
    last, stage = 0.0, None
    try:
        while True:
            kind, value = events.get()
            if kind == "error":
                raise value
            if kind == "done":
                return value
            now = time.monotonic()
            if now - last >= interval or value.done >= value.total or value.stage != stage:
                last, stage = now, value.stage
                yield value
    finally:
        if thread.is_alive() and cancel is not None:
            cancel.cancel()
            thread.join()


def job_generator(stack: Any, req: RestoreRequest, name: str, cancel: CancelToken
                  ) -> Iterator[api.ProgressEvent | JobResult]:
    """What the widget's ``thread_worker`` runs: progress events, then a :class:`JobResult` (user errors included)."""
    try:
        return (yield from iter_job(lambda progress: run_job(stack, req, name, progress, cancel), cancel))
    except SelfnetError as err:
        return JobResult(name, failed=True, message=str(err))


def optional_path(value: Any) -> Path | None:
    """A file chosen in a widget, or None when the field is empty."""
    text = str(value or "").strip()
    return Path(text).expanduser() if text not in ("", ".") else None


def psf_option(value: Any) -> dict[str, str]:
    """The training option for a PSF file chosen in the widget (none when the field is empty)."""
    path = optional_path(value)
    return {} if path is None else {"psf": str(path)}


def compute_psf(optics: dict[str, Any], spacing: Spacing, output: Path | None, overwrite: bool = False,
                fit_to: tuple[Any, Spacing] | None = None) -> tuple[api.OpticsPSF | None, str]:
    """``api.theoretical_psf`` for a worker thread: ``(OpticsPSF, summary)``, or ``(None, one-line reason)``.

    ``optics`` are the widget's fields; an excitation wavelength goes only with a confocal PSF. With
    ``fit_to`` (a stack and its voxel size) the depth is fitted to it and the PSF takes its pixel size.
    """
    try:
        if output is None:
            raise ConfigError("choose where to save the PSF (.tif or .npy)")
        if optics.get("modality") != "confocal":
            optics = {k: v for k, v in optics.items() if k not in ("excitation_um", "pinhole_au")}
        if fit_to is None:
            result = api.theoretical_psf(output, optics, spacing=spacing, overwrite=overwrite)
        else:
            stack = Volume(np.asarray(fit_to[0]), tuple(float(v) for v in fit_to[1]))  # type: ignore[arg-type]
            result = api.theoretical_psf(output, optics, fit_depth_to=stack, overwrite=overwrite)
    except SelfnetError as err:
        return None, str(err)
    return result, result.summary()


def psf_of_layer(layer: Any) -> Path | None:
    """The PSF file a layer shows, when a PSF widget made it (its metadata say so)."""
    path = (getattr(layer, "metadata", None) or {}).get("selfnet", {}).get("psf")
    return Path(path) if path else None


def progress_text(event: api.ProgressEvent) -> str:
    """``training stage 1 (CycleGAN): 12 / 50`` and the like; just the stage when it has no steps."""
    labels = {"restoring": "restoring slices", "blocks": "restoring blocks", "qc": "measuring isotropy"}
    label = labels.get(event.stage, f"training {event.stage}" if event.stage.startswith("stage") else event.stage)
    return f"{label}: {event.done} / {event.total}" if event.total > 0 else label


def qc_text(result: Any) -> str:
    """One line per measure: isotropy (lateral / axial FWHM) of a stack, or before → after for two."""
    if result.comparison is None:
        res = result.resolution
        return (f"isotropy {res.isotropy:.2f}\nlateral FWHM {res.lateral_um:.3g} µm, "
                f"axial FWHM {res.axial_um:.3g} µm")
    before, after = result.comparison.before, result.comparison.after
    return (f"isotropy {before.isotropy:.2f} → {after.isotropy:.2f}\n"
            f"axial FWHM {before.axial_um:.3g} → {after.axial_um:.3g} µm\n"
            f"lateral FWHM {before.lateral_um:.3g} → {after.lateral_um:.3g} µm")


def measure(stack: Any, spacing: Spacing, restored: Any = None, restored_spacing: Spacing | None = None) -> str:
    """QC text for one layer, or for a raw layer and its restoration (whose voxel must be the raw lateral pixel)."""
    if restored is not None and restored_spacing is not None:
        dx = spacing[2]
        if any(abs(s - dx) > 0.05 * dx for s in restored_spacing):
            raise ConfigError(f"the restored layer's voxel {tuple(round(s, 4) for s in restored_spacing)} µm "
                              f"is not the raw lateral pixel {dx:.4g} µm: pick the raw layer's restoration")
    after = None if restored is None else np.asarray(restored)
    return qc_text(api.qc(np.asarray(stack), after, spacing=spacing))


def measure_or_error(stack: Any, spacing: Spacing, restored: Any = None,
                     restored_spacing: Spacing | None = None) -> tuple[bool, str]:
    """:func:`measure` for a worker thread: ``(True, text)`` or ``(False, one-line reason)``."""
    try:
        return True, measure(stack, spacing, restored, restored_spacing)
    except SelfnetError as err:
        return False, str(err)


def make_psf(stack: Any, spacing: Spacing, box_um: tuple[float, float, float] | None, output: Path | None,
             overwrite: bool = False) -> tuple[api.BeadPSF | None, str]:
    """``api.psf`` for a worker thread: ``(BeadPSF, summary)``, or ``(None, one-line reason)``."""
    try:
        if output is None:
            raise ConfigError("choose where to save the PSF (.tif or .npy)")
        result = api.psf(np.asarray(stack), output, spacing=spacing, box_um=box_um, overwrite=overwrite)
    except SelfnetError as err:
        return None, str(err)
    return result, result.summary()
