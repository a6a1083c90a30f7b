"""Stacks sampled at least as finely along z as in XY: restored when their axial PSF is wider, refused
(one line, exit 2, nothing written) when QC finds them already isotropic."""

from __future__ import annotations

from pathlib import Path

import pytest

from selfnet.io import read_volume
from selfnet.phantoms.synthetic import make_phantom, save_phantom
from ..conftest import run_cli


def _stack(tmp: Path, axial_ratio: float) -> Path:
    ph = make_phantom("mix", (40, 64, 64), k=1.0, axial_ratio=axial_ratio, photons=300, seed=3)
    return save_phantom(ph, tmp)["raw"]


def test_fine_z_step_with_a_wide_axial_psf_is_restored(tmp_path: Path, fast_config_file: Path) -> None:
    out = tmp_path / "out.tif"
    proc = run_cli("run", _stack(tmp_path, 3.5), "-o", out, "--config", fast_config_file, "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert "learning the axial blur alone" in proc.stderr
    vol = read_volume(out)
    assert vol.data.shape == (40, 64, 64)
    assert vol.spacing == pytest.approx((0.2, 0.2, 0.2))


def test_already_isotropic_stack_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "out.tif"
    proc = run_cli("run", _stack(tmp_path, 1.0), "-o", out, "--max-minutes", "0.1")
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.splitlines() if "error" in ln]
    assert len(lines) == 1 and "already isotropic" in lines[0] and "nothing to restore" in lines[0]
    assert not out.exists() and not list(tmp_path.glob("out*"))
