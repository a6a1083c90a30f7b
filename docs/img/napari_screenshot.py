"""Make docs/img/napari.png: the restore widget next to the sample stack and its restoration (run under xvfb-run -a)."""

from __future__ import annotations

import sys
from pathlib import Path

import napari
from qtpy.QtTest import QTest

from selfnet.napari._widget import RestoreWidget

OUT = Path(__file__).with_name("napari.png")


def main(minutes: float = 4.0) -> None:
    """Open the neurite sample, train and restore it from the widget, show XZ views side by side, grab the window."""
    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1500, 900)
    [raw] = viewer.open_sample("selfnet", "neurites")
    widget = RestoreWidget(viewer)
    viewer.window.add_dock_widget(widget, name="selfnet: restore isotropic", area="right")
    widget.minutes.value, widget.device.value = minutes, "cpu"
    widget.run_button.clicked.emit()
    while widget.last_result is None or not widget.run_button.enabled:
        QTest.qWait(100)
    viewer.dims.order = (1, 0, 2)  # show X-Z planes: rows are z, where the anisotropy is
    viewer.dims.set_point(1, raw.data.shape[1] * raw.scale[1] / 2)
    viewer.grid.enabled = True
    viewer.reset_view()
    viewer.text_overlay.update({"visible": True, "font_size": 14, "color": "white", "position": "top_center",
                                "text": "X-Z view   left: raw, dz = 4 dx   right: selfnet, isotropic"})
    QTest.qWait(500)
    viewer.window._qt_window.grab().save(str(OUT))
    print(f"wrote {OUT}: {widget.qc.value!r}")
    viewer.close()


if __name__ == "__main__":
    main(float(sys.argv[1]) if len(sys.argv) > 1 else 4.0)
