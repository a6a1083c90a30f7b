"""Training from a user's PSF file (``--psf``): its axial blur replaces the estimate, a run with it
restores and reports, and a bad PSF is refused in one line before any training."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import tifffile

import selfnet
from selfnet.model import Model
from selfnet.phantoms.synthetic import Phantom, make_phantom
from selfnet.method.kernel import PSF_MISFIT

from ..conftest import run_cli


def write_psf(path: Path, ph: Phantom, z_step_px: float = 2.0) -> Path:
    """The phantom's Gaussian PSF as an ImageJ TIFF, z sampled every ``z_step_px`` lateral pixels."""
    dx = ph.spacing_raw[2]
    lateral, axial = float(ph.params["sigma_lateral_px"]), float(ph.params["sigma_axial_px"])
    z = (np.arange(21) - 10) * z_step_px
    r = np.arange(31) - 15
    zz, yy, xx = np.meshgrid(z, r, r, indexing="ij")
    psf = np.exp(-0.5 * ((zz / axial) ** 2 + (yy**2 + xx**2) / lateral**2)).astype(np.float32)
    tifffile.imwrite(path, psf, imagej=True, resolution=(1 / dx, 1 / dx),
                     metadata={"spacing": dx * z_step_px, "unit": "um", "axes": "ZYX"})
    return path


def test_training_takes_its_axial_blur_from_the_psf(tiny_phantom, fast_config, tmp_path):
    ph = tiny_phantom
    psf = write_psf(tmp_path / "psf.tif", ph)
    model = selfnet.train(ph.raw, ph.spacing_raw, config=fast_config, psf=str(psf), device="cpu", progress=False)
    summary = model.summary
    extra = math.sqrt(float(ph.params["sigma_axial_px"]) ** 2 - float(ph.params["sigma_lateral_px"]) ** 2)
    assert summary["estimated_axial_sigma_from"] == "psf"
    assert summary["estimated_axial_kernel"]["source"] == "psf"
    assert summary["estimated_axial_sigma_px"] == pytest.approx(extra, rel=0.1)
    assert model.config.psf == str(psf)
    assert summary.get("stage1_steps", 0) == 0 and summary["degradation"] == "psf"  # no CycleGAN drift from it
    assert summary["refine_steps"] > 0  # and D refined on its restoration re-recorded through the PSF
    out = selfnet.restore(ph.raw, model, ph.spacing_raw, device="cpu", progress=False).data
    assert out.shape == ph.gt_lateral[ph.iso_slice()].shape


def test_cli_run_with_psf_writes_volume_report_and_model(tiny_tif, tiny_phantom, fast_config_file, tmp_path):
    psf = write_psf(tmp_path / "psf.tif", tiny_phantom)
    out, model = tmp_path / "iso.tif", tmp_path / "m.pt"
    proc = run_cli("run", tiny_tif, "-o", out, "--config", fast_config_file, "--psf", psf, "--save-model", model,
                   "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert out.exists() and out.with_name("iso.report.html").exists()
    assert Model.load(model).config.psf == str(psf.absolute())
    assert "model: refine_steps" in out.with_name("iso.report.html").read_text()  # the refinement is reported


@pytest.mark.parametrize(("make", "fragment"), [
    ("missing", "does not exist"),
    ("uncalibrated", "voxel size"),
    ("flat", "2D"),
])
def test_bad_psf_is_refused_in_one_line(make, fragment, tiny_tif, fast_config_file, tmp_path):
    psf = tmp_path / "psf.tif"
    if make == "uncalibrated":
        tifffile.imwrite(psf, np.random.default_rng(0).random((9, 9, 9), dtype=np.float32))
    elif make == "flat":
        tifffile.imwrite(psf, np.ones((1, 9, 9), np.float32), imagej=True, resolution=(10, 10),
                         metadata={"spacing": 0.1, "unit": "um"})
    model = tmp_path / "m.pt"
    proc = run_cli("train", tiny_tif, "-o", model, "--config", fast_config_file, "--psf", psf, "-q")
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    assert lines[-1].startswith("selfnet: error:") and "PSF" in lines[-1] and fragment in lines[-1], proc.stderr
    assert "Traceback" not in proc.stderr
    assert not model.exists()


def test_a_psf_that_does_not_fit_the_stack_is_warned_about(fast_config, tmp_path):
    """A PSF twice as long along z as the stack's (other optics, a wrong voxel size) is flagged; the right one is not."""
    ph = make_phantom("neurites", (96, 96, 96), k=4.0, axial_ratio=3.0, photons=300, seed=1)
    right = write_psf(tmp_path / "right.tif", ph)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        model = selfnet.train(ph.raw, ph.spacing_raw, config=fast_config, psf=str(right), device="cpu", progress=False)
    assert model.summary["psf_misfit"] < PSF_MISFIT
    ph.params["sigma_axial_px"] = 2 * float(ph.params["sigma_axial_px"])
    wrong = write_psf(tmp_path / "wrong.tif", ph)
    with pytest.warns(UserWarning, match="does not fit this stack"):
        model = selfnet.train(ph.raw, ph.spacing_raw, config=fast_config, psf=str(wrong), device="cpu", progress=False)
    assert model.summary["psf_misfit"] > PSF_MISFIT
