"""napari plugin fixtures: a 2-channel calibrated TIFF, a tiny training config, and why GUI tests may skip."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile

from selfnet.config import TrainConfig

CHANNEL_SPACING = (0.8, 0.2, 0.2)


def gui_skip_reason() -> str | None:
    """Why viewer tests cannot run here (napari or pytest-qt missing, no display), or None."""
    missing = [m for m in ("napari", "pytestqt", "qtpy") if importlib.util.find_spec(m) is None]
    if missing:
        return f"napari GUI tests need {', '.join(missing)}: pip install 'selfnet[napari-all]' pytest-qt"
    if os.environ.get("QT_QPA_PLATFORM") == "offscreen":
        return "QT_QPA_PLATFORM=offscreen cannot create the OpenGL context napari layers need: use xvfb-run -a"
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return "no display: run the napari GUI tests under a virtual X server (xvfb-run -a pytest ...)"
    return None


@pytest.fixture(scope="session")
def two_channel_tif(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ZCYX ImageJ TIFF: 6 planes, 2 channels, 32x40 pixels, voxel 0.8 x 0.2 x 0.2 µm."""
    rng = np.random.default_rng(0)
    data = rng.integers(0, 1000, (6, 2, 32, 40), dtype=np.uint16)
    path = tmp_path_factory.mktemp("napari") / "two_channels.tif"
    dz, dy, dx = CHANNEL_SPACING
    tifffile.imwrite(path, data, imagej=True, resolution=(1 / dx, 1 / dy),
                     metadata={"spacing": dz, "unit": "um", "axes": "ZCYX"})
    return path


@pytest.fixture(scope="session")
def fast_options(fast_config: TrainConfig) -> dict[str, Any]:
    """Training-config fields for a seconds-long job (one epoch of five steps)."""
    return {**fast_config.model_dump(), "epochs": 1, "steps_per_epoch": 5}
