"""`selfnet psf --optics`: a PSF computed from the objective's numbers, for users without beads. It is
written with its voxel size, `--psf` trains from it, and bad requests are refused in one line."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

import selfnet
from selfnet.errors import ConfigError

from ..conftest import run_cli

CONFOCAL = ("--optics", "confocal", "--na", "1.4", "--emission-um", "0.52", "--excitation-um", "0.488")


@pytest.fixture()
def psfmodels() -> None:
    pytest.importorskip("psfmodels", reason="computed PSFs need the extra: pip install 'selfnet[psf]'")


def test_cli_computes_a_psf_with_its_voxel_size(psfmodels, tmp_path):
    out = tmp_path / "psf.tif"
    proc = run_cli("psf", "-o", out, *CONFOCAL, "--lateral-um", "0.1", "--axial-um", "0.2", "--box-um", "3,1.6")
    assert proc.returncode == 0, proc.stderr
    assert "confocal NA 1.4" in proc.stderr and "FWHM z" in proc.stderr and "wide-field" not in proc.stderr
    psf = selfnet.read_volume(out)
    assert psf.spacing == pytest.approx((0.2, 0.1, 0.1))
    assert psf.data.shape == (17, 17, 17) and float(np.sum(psf.data)) == pytest.approx(1.0, rel=1e-4)
    again = run_cli("psf", "-o", out, *CONFOCAL, "--lateral-um", "0.1")
    assert again.returncode == 2 and "--overwrite" in again.stderr


def test_a_computed_psf_trains_like_a_measured_one(psfmodels, tiny_phantom, fast_config, tmp_path):
    ph = tiny_phantom
    computed = selfnet.theoretical_psf(tmp_path / "psf.tif", {"modality": "confocal", "na": 1.0, "emission_um": 0.52,
                                                              "excitation_um": 0.488}, spacing=(0.1, 0.1, 0.1))
    assert computed.fwhm_um[0] > 2 * computed.fwhm_um[2]
    model = selfnet.train(ph.raw, ph.spacing_raw, config=fast_config, psf=str(computed.path), device="cpu",
                          progress=False)
    assert model.summary["estimated_axial_sigma_from"] == "psf" and model.summary["estimated_axial_sigma_px"] > 0


def test_a_widefield_psf_is_flagged(psfmodels, tmp_path):
    computed = selfnet.theoretical_psf(tmp_path / "wf.tif", selfnet.Optics(modality="widefield", na=1.4, emission_um=0.52),
                                       spacing=(0.08, 0.08, 0.08))
    assert "a wide-field PSF" in computed.summary()


@pytest.mark.parametrize(("args", "fragment"), [
    (("--lateral-um", "0.1"), "give a bead recording, or --optics"),
    (("BEADS", *CONFOCAL, "--lateral-um", "0.1"), "not both"),
    (CONFOCAL, "--lateral-um"),
    (("--optics", "confocal", "--na", "1.4", "--emission-um", "0.52", "--lateral-um", "0.1"), "--excitation-um"),
    (("--optics", "widefield", "--na", "1.4", "--emission-um", "0.52", "--immersion-index", "1.33",
      "--lateral-um", "0.1"), "immersion"),
    (("--optics", "spinning", "--na", "1.4", "--emission-um", "0.52", "--lateral-um", "0.1"), "modality"),
    ((*CONFOCAL, "--lateral-um", "0.1", "--box-um", "3,x"), "--box-um"),
    ((*CONFOCAL, "--sample-index", "1.515", "--fit-depth", "BEADS"), "sample index unlike the immersion"),
    ((*CONFOCAL, "--sample-index", "1.33", "--fit-depth", "PSF", "--overwrite"), "input"),
])
def test_bad_requests_are_refused_in_one_line(args, fragment, tmp_path):
    paths = {"BEADS": tmp_path / "beads.tif", "PSF": tmp_path / "psf.tif"}
    args = tuple(str(paths.get(a, a)) for a in args)
    proc = run_cli("psf", "-o", tmp_path / "psf.tif", *args)
    assert proc.returncode == 2, proc.stderr
    assert fragment in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "psf.tif").exists()


def test_the_depth_is_fitted_to_an_aberrated_stack(psfmodels, tmp_path):
    """A stack 10 µm deep in water under oil: the fitted depth lies near 10 µm and explains it far better."""
    from selfnet.phantoms.optics import make_optics_phantom

    ph = make_optics_phantom("aberrated", "mix", (64, 96, 96), k=4.0, photons=300, seed=0)
    optics = {"modality": "confocal", "na": 1.4, "emission_um": 0.52, "excitation_um": 0.488, "sample_index": 1.33}
    fitted = selfnet.theoretical_psf(tmp_path / "psf.tif", optics, fit_depth_to=selfnet.Volume(ph.raw, ph.spacing_raw),
                                     box_um="4,1.6")
    assert fitted.depth_fit is not None and 5.0 <= fitted.optics.depth_um <= 20.0
    assert fitted.depth_fit[fitted.optics.depth_um] < 0.5 * fitted.depth_fit[0.0]
    assert fitted.spacing == pytest.approx((ph.spacing_raw[2],) * 3)  # the stack's pixel
    assert selfnet.read_volume(fitted.path).spacing == pytest.approx(fitted.spacing)
    assert "deep; FWHM" in fitted.summary() and "depth fitted to the stack" in fitted.summary()


def test_without_psfmodels_the_extra_is_named(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "psfmodels", None)
    with pytest.raises(ConfigError, match=r"selfnet\[psf\]"):
        selfnet.theoretical_psf(tmp_path / "psf.tif", {"modality": "widefield", "na": 1.2, "emission_um": 0.6,
                                                       "immersion_index": 1.33}, spacing=(0.1, 0.1, 0.1))
    assert not Path(tmp_path / "psf.tif").exists()
