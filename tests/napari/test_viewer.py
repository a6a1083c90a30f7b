"""The plugin in a real napari viewer (pytest-qt's ``make_napari_viewer``); needs a display: ``xvfb-run -a``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.napari.conftest import CHANNEL_SPACING, gui_skip_reason

SKIP = gui_skip_reason()
pytestmark = pytest.mark.skipif(SKIP is not None, reason=SKIP or "")
WAIT_MS = 60_000


@pytest.fixture
def viewer(make_napari_viewer):
    return make_napari_viewer()


def _restore_widget(viewer, fast_options, **fields):
    from selfnet.napari._widget import RestoreWidget

    widget = RestoreWidget(viewer)
    viewer.window.add_dock_widget(widget, name="selfnet restore")
    widget.train_options = fast_options
    widget.device.value = "cpu"
    for name, value in fields.items():
        getattr(widget, name).value = value
    return widget


def test_reader_opens_two_calibrated_channels(viewer, two_channel_tif):
    layers = viewer.open(str(two_channel_tif), plugin="selfnet")
    assert [layer.name for layer in layers] == ["two_channels [c0]", "two_channels [c1]"]
    for layer in layers:
        assert layer.data.shape == (6, 32, 40)
        np.testing.assert_allclose(layer.scale, CHANNEL_SPACING)


def test_restore_widget_adds_an_isotropic_layer(viewer, qtbot, tiny_phantom, fast_options):
    raw = viewer.add_image(tiny_phantom.raw, name="raw", scale=tiny_phantom.spacing_raw)
    widget = _restore_widget(viewer, fast_options, minutes=0.1)
    assert widget.layer.value is raw
    assert (widget.dz.value, widget.dy.value, widget.dx.value) == pytest.approx(tiny_phantom.spacing_raw)
    widget.run_button.clicked.emit()
    assert not widget.run_button.enabled and widget.cancel_button.enabled
    qtbot.waitUntil(lambda: widget.last_result is not None and widget.run_button.enabled, timeout=WAIT_MS)
    iso = viewer.layers["raw isotropic"]
    dx = tiny_phantom.spacing_raw[2]
    z, y, x = tiny_phantom.raw.shape
    assert iso.data.shape == (int((z - 1) * tiny_phantom.k) + 1, y, x)
    np.testing.assert_allclose(iso.scale, (dx, dx, dx))
    assert "→" in widget.qc.value and widget.status.value.startswith("done")


def test_restore_widget_trains_with_a_chosen_psf(viewer, tiny_phantom, fast_options, tmp_path):
    viewer.add_image(tiny_phantom.raw, name="raw", scale=tiny_phantom.spacing_raw)
    widget = _restore_widget(viewer, fast_options)
    assert widget.request().options.get("psf") is None
    widget.psf.value = tmp_path / "psf.tif"
    assert widget.request().options["psf"] == str(tmp_path / "psf.tif")
    assert not widget.psf.native.isHidden()
    widget.mode.value = "apply a saved model"  # a saved model was trained already: no PSF field
    assert widget.psf.native.isHidden() and not widget.model.native.isHidden()


def test_cancel_leaves_nothing_half_done(viewer, qtbot, tiny_phantom, fast_options, tmp_path):
    viewer.add_image(tiny_phantom.raw, name="raw", scale=tiny_phantom.spacing_raw)
    model = tmp_path / "model.pt"
    widget = _restore_widget(viewer, {**fast_options, "epochs": 100}, save_model=model)
    widget.run_button.clicked.emit()
    qtbot.waitUntil(lambda: widget.status.value.startswith("training"), timeout=WAIT_MS)
    widget.cancel_button.clicked.emit()
    qtbot.waitUntil(lambda: widget.last_result is not None and widget.run_button.enabled, timeout=WAIT_MS)
    assert widget.last_result.cancelled and widget.status.value.startswith("cancelled")
    assert [layer.name for layer in viewer.layers] == ["raw"]  # no result layer
    [kept] = list(tmp_path.iterdir())  # the checkpoint only: no model, no partial output
    assert not model.exists() and kept.name.endswith(".ckpt.pt") and "continue" in widget.status.value
    assert not widget.cancel_button.enabled and widget.token is None


def test_errors_become_notifications_and_the_widget_stays_usable(viewer, qtbot, tiny_phantom, tmp_path,
                                                                  monkeypatch):
    import selfnet.napari._widget as widget_module

    shown: list[str] = []
    monkeypatch.setattr(widget_module, "show_error", shown.append)
    viewer.add_image(tiny_phantom.raw, name="raw", scale=tiny_phantom.spacing_raw)
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a model")
    widget = _restore_widget(viewer, {}, mode="apply a saved model")
    widget.run_button.clicked.emit()  # no model chosen: refused before any work
    assert shown and "choose a saved model" in shown[-1] and widget.worker is None
    widget.model.value = bad
    widget.run_button.clicked.emit()
    qtbot.waitUntil(lambda: widget.last_result is not None and widget.run_button.enabled, timeout=WAIT_MS)
    assert widget.last_result.failed and "bad.pt" in shown[-1] and len(viewer.layers) == 1


def test_qc_widget_measures_before_and_after(viewer, qtbot, tiny_phantom):
    from selfnet.napari._widget import QCWidget

    dx = tiny_phantom.spacing_raw[2]
    viewer.add_image(tiny_phantom.raw, name="raw", scale=tiny_phantom.spacing_raw)
    after = viewer.add_image(tiny_phantom.gt_lateral[tiny_phantom.iso_slice()], name="iso", scale=(dx, dx, dx))
    widget = QCWidget(viewer)
    widget.layer.value, widget.restored.value = viewer.layers["raw"], after
    widget.measure_button.clicked.emit()
    qtbot.waitUntil(lambda: "→" in widget.result.value, timeout=WAIT_MS)
    assert widget.result.value.startswith("isotropy")


def test_psf_widget_adds_the_averaged_psf_and_writes_it(viewer, qtbot, tmp_path, monkeypatch):
    import selfnet.napari._widget as widget_module
    from selfnet.io import read_volume
    from selfnet.phantoms.optics import bead_recording

    shown: list[str] = []
    monkeypatch.setattr(widget_module, "show_error", shown.append)
    zz, yy, xx = np.meshgrid(np.arange(-12, 13), np.arange(-8, 9), np.arange(-8, 9), indexing="ij")
    psf = np.exp(-0.5 * ((zz / 3.0) ** 2 + (yy**2 + xx**2) / 1.2**2))
    beads = bead_recording(psf / psf.sum(), (96, 128, 128), 8, z_step=2, seed=0)
    viewer.add_image(beads, name="beads", scale=(0.2, 0.1, 0.1))
    widget = widget_module.PsfWidget(viewer)
    viewer.window.add_dock_widget(widget, name="selfnet psf")
    restore = widget_module.RestoreWidget(viewer)
    assert widget.dz.value == pytest.approx(0.2) and widget.dx.value == pytest.approx(0.1)
    widget.box_z.value, widget.box_xy.value = 4.8, 1.6
    widget.run_button.clicked.emit()  # no file chosen: refused, nothing added
    qtbot.waitUntil(lambda: widget.last_result is not None and widget.run_button.enabled, timeout=WAIT_MS)
    assert "choose where to save" in shown[-1] and len(viewer.layers) == 1
    widget.output.value = tmp_path / "psf.tif"
    widget.last_result = None
    widget.run_button.clicked.emit()
    qtbot.waitUntil(lambda: widget.last_result is not None and widget.run_button.enabled, timeout=WAIT_MS)
    layer = viewer.layers["beads PSF"]
    assert tuple(layer.scale) == pytest.approx((0.2, 0.1, 0.1)) and layer.data.shape == (25, 17, 17)
    assert read_volume(tmp_path / "psf.tif").spacing == pytest.approx((0.2, 0.1, 0.1))
    assert "average of" in widget.result.value and "psf.tif" in widget.result.value
    assert Path(restore.psf.value) == tmp_path / "psf.tif"  # the restore widget takes the PSF just made


def test_optics_psf_widget_adds_the_computed_psf_for_the_restore_widget(viewer, qtbot, tmp_path):
    pytest.importorskip("psfmodels", reason="computed PSFs need the extra: pip install 'selfnet[psf]'")
    from selfnet.io import read_volume
    from selfnet.napari._widget import OpticsPsfWidget, RestoreWidget

    widget = OpticsPsfWidget(viewer)
    viewer.window.add_dock_widget(widget, name="selfnet optics psf")
    restore = RestoreWidget(viewer)
    widget.modality.value = "widefield"
    assert widget.excitation.native.isHidden() and widget.pinhole.native.isHidden()  # (the test viewer is not shown)
    widget.modality.value = "confocal"
    assert not widget.excitation.native.isHidden()
    widget.na.value, widget.dz.value, widget.dx.value = 1.2, 0.2, 0.1
    widget.immersion.value = widget.sample.value = 1.33
    widget.output.value = tmp_path / "psf.tif"
    widget.run_button.clicked.emit()
    qtbot.waitUntil(lambda: widget.last_result is not None and widget.run_button.enabled, timeout=WAIT_MS)
    layer = viewer.layers["confocal PSF"]
    assert tuple(layer.scale) == pytest.approx((0.2, 0.1, 0.1)) and layer.data.ndim == 3
    assert read_volume(tmp_path / "psf.tif").spacing == pytest.approx((0.2, 0.1, 0.1))
    assert "confocal NA 1.2" in widget.result.value and "psf.tif" in widget.result.value
    assert Path(restore.psf.value) == tmp_path / "psf.tif"  # the restore widget takes the PSF just made


def test_optics_psf_widget_fits_the_depth_to_a_chosen_layer(viewer, qtbot, tmp_path, monkeypatch):
    import selfnet.napari._widget as widget_module

    asked: list[tuple] = []
    monkeypatch.setattr(widget_module.logic, "compute_psf", lambda *args: asked.append(args) or (None, "stop"))
    monkeypatch.setattr(widget_module, "show_error", lambda _text: None)
    stack = viewer.add_image(np.zeros((8, 16, 16), np.float32), name="sample", scale=(0.4, 0.1, 0.1))
    widget = widget_module.OpticsPsfWidget(viewer)
    assert widget.fit_to.value is None and stack in widget.fit_to.choices
    widget.output.value = tmp_path / "psf.tif"
    for choice in (None, stack):
        widget.fit_to.value, widget.last_result = choice, None
        widget.run_button.clicked.emit()
        qtbot.waitUntil(lambda: widget.last_result is not None and widget.run_button.enabled, timeout=WAIT_MS)
    assert asked[0][-1] is None  # no layer chosen: computed on the fields' grid
    data, spacing = asked[1][-1]
    assert data.shape == (8, 16, 16) and spacing == pytest.approx((0.4, 0.1, 0.1))


def test_sample_and_widgets_load_through_the_manifest(viewer):
    layers = viewer.open_sample("selfnet", "neurites")
    assert layers[0].data.ndim == 3 and layers[0].scale[0] == pytest.approx(4 * layers[0].scale[2])
    _dock, widget = viewer.window.add_plugin_dock_widget("selfnet", "Restore isotropic")
    assert widget.layer.value is layers[0]
    assert widget.dz.value == pytest.approx(layers[0].scale[0])
    viewer.window.add_plugin_dock_widget("selfnet", "Isotropy QC")
    viewer.window.add_plugin_dock_widget("selfnet", "PSF from beads")
    viewer.window.add_plugin_dock_widget("selfnet", "PSF from optics")


def test_writer_saves_a_layer_with_its_scale(viewer, tmp_path):
    from selfnet.io import read_volume

    viewer.add_image(np.ones((4, 8, 8), np.float32), name="stack", scale=(2.0, 0.5, 0.5))
    [written] = viewer.layers.save(str(tmp_path / "stack.ome.tif"), selected=False, plugin="selfnet")
    assert read_volume(Path(written)).spacing == pytest.approx((2.0, 0.5, 0.5))
