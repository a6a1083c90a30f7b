"""napari dock widgets (magicgui): restore a layer to isotropic resolution, measure its isotropy, make a PSF
from beads or from the optics.

Thin on purpose: what they compute is in :mod:`selfnet.napari._logic`; the work runs in a napari
``thread_worker`` so the viewer never freezes.
"""

from collections.abc import Callable
from typing import Any

import napari
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    FloatSpinBox,
    Label,
    ProgressBar,
    PushButton,
    RadioButtons,
)
from napari.layers import Image
from napari.qt.threading import create_worker
from napari.utils.notifications import show_error, show_info

from selfnet import api
from selfnet.errors import CancelToken, SelfnetError
from selfnet.napari import _logic as logic

UNITS = ("micrometer",) * 3


class _LayerWidget(Container):
    """A container that knows the viewer and lists its image layers."""

    def __init__(self, viewer: "napari.viewer.Viewer") -> None:
        super().__init__()
        self.viewer = viewer
        for event in ("inserted", "removed", "reordered"):
            getattr(viewer.layers.events, event).connect(lambda _e=None: self.reset_choices())

    def image_layers(self, _widget: Any = None) -> list[Image]:
        """The viewer's image layers, newest first."""
        return [layer for layer in reversed(self.viewer.layers) if isinstance(layer, Image)]

    def stack_of(self, layer: Image) -> Any:
        """The ZYX data of a layer at the viewer's current time point."""
        point = layer.world_to_data(self.viewer.dims.point)
        lead = [round(v) for v in list(point)[: max(layer.ndim - 3, 0)]]
        return logic.current_stack(layer.data, lead)


class _StackWidget(_LayerWidget):
    """A layer chooser and its voxel size (µm), prefilled from the layer's scale."""

    def __init__(self, viewer: "napari.viewer.Viewer", label: str) -> None:
        super().__init__(viewer)
        self.layer = ComboBox(label=label, choices=self.image_layers)
        self.dz = FloatSpinBox(label="z step (µm)", min=0.0001, max=10000, step=0.0001, value=1.0)
        self.dy = FloatSpinBox(label="y pixel (µm)", min=0.0001, max=10000, step=0.0001, value=1.0)
        self.dx = FloatSpinBox(label="x pixel (µm)", min=0.0001, max=10000, step=0.0001, value=1.0)
        self.extend([self.layer, self.dz, self.dy, self.dx])
        self.layer.changed.connect(self.prefill)

    def prefill(self, _value: Any = None) -> None:
        """Voxel sizes from the chosen layer's scale (µm); the user may edit them."""
        layer = self.layer.value
        if layer is not None and layer.ndim >= 3:
            self.dz.value, self.dy.value, self.dx.value = logic.spacing_from_scale(layer.scale)

    def spacing(self) -> tuple[float, float, float]:
        """The voxel size in the fields."""
        return (self.dz.value, self.dy.value, self.dx.value)


class RestoreWidget(_StackWidget):
    """Train on a layer and restore it (or apply a saved model); the result becomes a new isotropic layer."""

    def __init__(self, viewer: "napari.viewer.Viewer") -> None:
        super().__init__(viewer, "image")
        self.train_options: dict[str, Any] = {}  # extra training-config fields (tests use tiny ones)
        self.worker: Any = None
        self.token: CancelToken | None = None
        self.last_result: logic.JobResult | None = None
        self.mode = RadioButtons(label="job", choices=list(logic.MODES), value="train and restore")
        self.minutes = FloatSpinBox(label="budget (min)", min=0.01, max=1440, step=0.5, value=5.0)
        self.device = ComboBox(label="device", choices=list(logic.DEVICES), value="auto")
        self.model = FileEdit(label="saved model", mode="r", filter="*.pt")
        self.save_model = FileEdit(label="save model to", mode="w", filter="*.pt")
        self.psf = FileEdit(label="PSF (optional)", mode="r", filter="*.tif *.tiff *.npy")
        self.psf.tooltip = "a measured or computed PSF with its voxel size: its axial blur replaces the estimate"
        self.resume = CheckBox(text="continue an interrupted training")
        self.run_button = PushButton(text="Restore")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.progress = ProgressBar(label="progress", min=0, max=1, value=0)
        self.status = Label(label="status", value="ready")
        self.qc = Label(label="isotropy", value="")
        self.qc.native.setMinimumHeight(3 * self.qc.native.fontMetrics().lineSpacing() + 6)  # three QC lines
        self.extend([self.mode, self.minutes, self.device, self.model, self.save_model, self.psf, self.resume,
                     self.run_button, self.cancel_button, self.progress, self.status, self.qc])
        self.mode.changed.connect(self.show_mode)
        viewer.layers.events.inserted.connect(self.take_new_psf)
        self.run_button.changed.connect(self.start)
        self.cancel_button.changed.connect(self.cancel)
        self.show_mode()
        self.prefill()

    def take_new_psf(self, event: Any) -> None:
        """A PSF just made by the *PSF from beads* widget fills an empty PSF field."""
        made = logic.psf_of_layer(getattr(event, "value", None))
        if made is not None and logic.optional_path(self.psf.value) is None:
            self.psf.value = made

    def show_mode(self, _value: Any = None) -> None:
        """Training fields for "train and restore", the model field for "apply a saved model"."""
        train = logic.MODES[self.mode.value] == "train"
        for widget in (self.minutes, self.save_model, self.psf, self.resume):
            widget.visible = train
        self.model.visible = not train

    def request(self) -> logic.RestoreRequest:
        """The job the fields describe."""
        return logic.RestoreRequest(
            spacing=self.spacing(), mode=logic.MODES[self.mode.value],
            minutes=self.minutes.value, device=self.device.value, model=logic.optional_path(self.model.value),
            save_model=logic.optional_path(self.save_model.value), resume=self.resume.value,
            options=dict(self.train_options) | logic.psf_option(self.psf.value))

    def start(self, _value: Any = None) -> None:
        """Check the request, then run the job in a background thread."""
        layer = self.layer.value
        try:
            if layer is None:
                raise SelfnetError("open or pick an image layer first")
            req = logic.check_request(self.request())
            stack = self.stack_of(layer)
        except SelfnetError as err:
            show_error(f"selfnet: {err}")
            return
        self.token = CancelToken()
        self.worker = create_worker(logic.job_generator, stack, req, layer.name, self.token, _start_thread=False)
        self.worker.yielded.connect(self.on_progress)
        self.worker.returned.connect(self.on_result)
        self.worker.finished.connect(self.on_finished)
        self.run_button.enabled, self.cancel_button.enabled = False, True
        self.status.value, self.qc.value, self.progress.value = "starting", "", 0
        self.worker.start()

    def cancel(self, _value: Any = None) -> None:
        """Stop the job at its next safe point; training saves its checkpoint first."""
        if self.token is not None:
            self.token.cancel()
            self.status.value = "cancelling (the checkpoint is saved first)"

    def on_progress(self, event: Any) -> None:
        """Progress bar and stage line."""
        self.progress.max = int(event.total)  # 0: a busy bar
        self.progress.value = min(int(event.done), self.progress.max)
        self.status.value = logic.progress_text(event)

    def on_result(self, result: logic.JobResult) -> None:
        """Add the isotropic layer and its QC, or say why the job stopped."""
        self.last_result = result
        if result.cancelled or result.failed:
            self.status.value = ("cancelled: " if result.cancelled else "failed: ") + result.message
            (show_info if result.cancelled else show_error)(f"selfnet: {result.message}")
            return
        self.viewer.add_image(result.data, name=result.name, scale=result.spacing, units=UNITS,
                              metadata={"selfnet": {"spacing": list(result.spacing or ()), "path": str(result.path or "")}})
        self.qc.value = result.qc
        self.progress.max, self.progress.value = 1, 1
        self.status.value = "done" + (f": written to {result.path}" if result.path else "")

    def on_finished(self) -> None:
        """Buttons back to idle."""
        self.run_button.enabled, self.cancel_button.enabled = True, False
        self.token = None


class QCWidget(_LayerWidget):
    """Isotropy and resolution (FWHM, µm) of a layer; with a restored layer, before and after."""

    def __init__(self, viewer: "napari.viewer.Viewer") -> None:
        super().__init__(viewer)
        self.worker: Any = None
        self.layer = ComboBox(label="stack", choices=self.image_layers)
        self.restored = ComboBox(label="restored (optional)", choices=self.restored_choices, nullable=True)
        self.measure_button = PushButton(text="Measure")
        self.result = Label(label="result", value="")
        self.extend([self.layer, self.restored, self.measure_button, self.result])
        self.measure_button.changed.connect(self.start)

    def restored_choices(self, _widget: Any = None) -> list[Any]:
        """No second layer, or any image layer."""
        return [None, *self.image_layers()]

    def start(self, _value: Any = None) -> None:
        """Measure in a background thread; the result (or error) shows when done."""
        layer, after = self.layer.value, self.restored.value
        if layer is None:
            show_error("selfnet: open or pick an image layer first")
            return
        try:
            args = (self.stack_of(layer), logic.spacing_from_scale(layer.scale),
                    None if after is None else self.stack_of(after),
                    None if after is None else logic.spacing_from_scale(after.scale))
        except SelfnetError as err:
            show_error(f"selfnet: {err}")
            return
        self.worker = create_worker(logic.measure_or_error, *args, _start_thread=False)
        self.worker.returned.connect(self.on_result)
        self.measure_button.enabled = False
        self.worker.finished.connect(lambda: setattr(self.measure_button, "enabled", True))
        self.result.value = "measuring…"
        self.worker.start()

    def on_result(self, text: tuple[bool, str]) -> None:
        """Show the measure, or the one-line reason it could not be made."""
        ok, message = text
        self.result.value = message if ok else ""
        if not ok:
            show_error(f"selfnet: {message}")


class PsfWidget(_StackWidget):
    """Average the isolated beads of a bead-recording layer into a PSF file, for the restore widget's PSF field."""

    def __init__(self, viewer: "napari.viewer.Viewer") -> None:
        super().__init__(viewer, "bead recording")
        self.worker: Any = None
        self.last_result: tuple[Any, str] | None = None
        self.box_z = FloatSpinBox(label="PSF box z (µm)", min=0.01, max=1000, step=0.5, value=api.PSF_BOX_UM[0])
        self.box_xy = FloatSpinBox(label="PSF box x, y (µm)", min=0.01, max=1000, step=0.5, value=api.PSF_BOX_UM[1])
        self.output = FileEdit(label="save PSF to", mode="w", filter="*.tif *.tiff *.npy")
        self.box_z.tooltip = self.box_xy.tooltip = ("each bead needs this box to itself; the default one grows "
                                                    "(up to 2.25x) while the PSF still reaches its faces")
        self.overwrite = CheckBox(text="replace an existing file")
        self.run_button = PushButton(text="Make PSF")
        self.result = Label(label="result", value="")
        self.extend([self.box_z, self.box_xy, self.output, self.overwrite, self.run_button, self.result])
        self.run_button.changed.connect(self.start)
        self.prefill()

    def start(self, _value: Any = None) -> None:
        """Average in a background thread; the PSF becomes a layer when done."""
        layer = self.layer.value
        if layer is None:
            show_error("selfnet: open or pick the bead recording's layer first")
            return
        try:
            stack = self.stack_of(layer)
        except SelfnetError as err:
            show_error(f"selfnet: {err}")
            return
        box = (self.box_z.value, self.box_xy.value, self.box_xy.value)
        if box == api.PSF_BOX_UM:
            box = None  # the default box, which grows while the PSF still reaches its faces
        self.worker = create_worker(logic.make_psf, stack, self.spacing(), box,
                                    logic.optional_path(self.output.value), self.overwrite.value,
                                    _start_thread=False)
        self.worker.returned.connect(lambda result: self.on_result(result, layer.name))
        self.worker.finished.connect(lambda: setattr(self.run_button, "enabled", True))
        self.run_button.enabled, self.result.value = False, "finding beads…"
        self.worker.start()

    def on_result(self, result: tuple[Any, str], name: str) -> None:
        """Show the PSF as a layer with its summary, or the one-line reason it could not be made."""
        _show_psf(self, result, lambda made: (made.channels[0].psf, made.channels[0].spacing, f"{name} PSF"))


class OpticsPsfWidget(_LayerWidget):
    """Compute a PSF from the microscope's optics (no beads), for the restore widget's PSF field."""

    def __init__(self, viewer: "napari.viewer.Viewer") -> None:
        super().__init__(viewer)
        self.worker: Any = None
        self.last_result: tuple[Any, str] | None = None
        self.modality = RadioButtons(label="microscope", choices=["confocal", "widefield"], value="confocal")
        self.na = FloatSpinBox(label="NA", min=0.05, max=1.7, step=0.05, value=1.4)
        self.emission = FloatSpinBox(label="emission (µm)", min=0.25, max=1.9, step=0.005, value=0.52)
        self.excitation = FloatSpinBox(label="excitation (µm)", min=0.25, max=1.9, step=0.005, value=0.488)
        self.pinhole = FloatSpinBox(label="pinhole (AU)", min=0.05, max=20, step=0.1, value=1.0)
        self.immersion = FloatSpinBox(label="immersion index", min=1.0, max=2.0, step=0.001, value=1.515)
        self.sample = FloatSpinBox(label="sample index", min=1.0, max=2.0, step=0.001, value=1.47)
        self.depth = FloatSpinBox(label="depth (µm)", min=0.0, max=500, step=1.0, value=0.0)
        self.depth.tooltip = "depth of the imaged plane below the coverslip: with a sample index unlike the immersion's, spherical aberration"
        self.fit_to = ComboBox(label="fit depth to", choices=self.image_layers, nullable=True, value=None)
        self.fit_to.tooltip = ("a stack of this sample: the depth whose PSF best explains its axial blur replaces the "
                               "one above (needs a sample index unlike the immersion's); the PSF takes its pixel size")
        self.dz = FloatSpinBox(label="PSF z step (µm)", min=0.0001, max=100, step=0.01, value=0.1)
        self.dx = FloatSpinBox(label="pixel (µm)", min=0.0001, max=100, step=0.01, value=0.1)
        self.output = FileEdit(label="save PSF to", mode="w", filter="*.tif *.tiff *.npy")
        self.overwrite = CheckBox(text="replace an existing file")
        self.run_button = PushButton(text="Compute PSF")
        self.result = Label(label="result", value="")
        self.extend([self.modality, self.na, self.emission, self.excitation, self.pinhole, self.immersion, self.sample,
                     self.depth, self.fit_to, self.dz, self.dx, self.output, self.overwrite, self.run_button, self.result])
        self.modality.changed.connect(self.show_modality)
        self.run_button.changed.connect(self.start)

    def show_modality(self, _value: Any = None) -> None:
        """Excitation and pinhole only for a confocal PSF."""
        for widget in (self.excitation, self.pinhole):
            widget.visible = self.modality.value == "confocal"

    def optics(self) -> dict[str, Any]:
        """The optics the fields describe, as :class:`selfnet.options.Optics` fields."""
        return {"modality": self.modality.value, "na": self.na.value, "emission_um": self.emission.value,
                "excitation_um": self.excitation.value, "pinhole_au": self.pinhole.value,
                "immersion_index": self.immersion.value, "sample_index": self.sample.value, "depth_um": self.depth.value}

    def start(self, _value: Any = None) -> None:
        """Compute in a background thread; the PSF becomes a layer when done."""
        layer = self.fit_to.value
        try:
            fit = None if layer is None else (self.stack_of(layer), logic.spacing_from_scale(layer.scale))
        except SelfnetError as err:
            show_error(f"selfnet: {err}")
            return
        self.worker = create_worker(logic.compute_psf, self.optics(), (self.dz.value, self.dx.value, self.dx.value),
                                    logic.optional_path(self.output.value), self.overwrite.value, fit,
                                    _start_thread=False)
        self.worker.returned.connect(self.on_result)
        self.worker.finished.connect(lambda: setattr(self.run_button, "enabled", True))
        self.run_button.enabled, self.result.value = False, "computing…"
        self.worker.start()

    def on_result(self, result: tuple[Any, str]) -> None:
        """Show the PSF as a layer with its summary, or the one-line reason it could not be made."""
        _show_psf(self, result, lambda made: (made.psf, made.spacing, f"{made.optics.modality} PSF"))


def _show_psf(widget: Any, result: tuple[Any, str], layer: Callable[[Any], tuple[Any, Any, str]]) -> None:
    """A PSF widget's finished job: the PSF (data, voxel size, name from ``layer``) as a layer whose metadata
    name its file, for the restore widget's PSF field; or the one-line reason it could not be made."""
    widget.last_result = result
    made, message = result
    if made is None:
        widget.result.value = ""
        show_error(f"selfnet: {message}")
        return
    data, spacing, name = layer(made)
    widget.viewer.add_image(data, name=name, scale=spacing, units=UNITS, metadata={"selfnet": {"psf": str(made.path)}})
    widget.result.value = f"{message}\nwritten to {made.path}"


__all__ = ["OpticsPsfWidget", "PsfWidget", "QCWidget", "RestoreWidget"]
