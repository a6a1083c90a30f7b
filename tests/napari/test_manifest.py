"""The npe2 manifest ships with the package and validates."""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata

import pytest


def test_manifest_is_registered_under_the_napari_entry_point():
    [entry] = [e for e in metadata.entry_points(group="napari.manifest") if e.name == "selfnet"]
    assert entry.value == "selfnet.napari:napari.yaml"


def test_npe2_validate_selfnet():
    pytest.importorskip("npe2", reason="npe2 is in the napari extra: pip install 'selfnet[napari]'")
    proc = subprocess.run([sys.executable, "-m", "npe2", "validate", "selfnet"], capture_output=True, text=True, check=False,
                          timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "valid" in proc.stdout
