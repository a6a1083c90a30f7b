"""`selfnet psf`: a bead recording becomes a PSF file with the recording's voxel size that `--psf`
takes; bad recordings and existing outputs are refused in one line, and the recording is never touched."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import tifffile

import selfnet
from selfnet.io.series import probe_series
from selfnet.method.psf import kernel_from_psf
from selfnet.phantoms.optics import bead_recording
from selfnet.phantoms.synthetic import make_phantom

from ..conftest import run_cli

DX = 0.1


def gaussian_psf(axial: float = 3.0) -> np.ndarray:
    zz, yy, xx = np.meshgrid(np.arange(-12, 13), np.arange(-8, 9), np.arange(-8, 9), indexing="ij")
    psf = np.exp(-0.5 * ((zz / axial) ** 2 + (yy**2 + xx**2) / 1.2**2))
    return psf / psf.sum()


@pytest.fixture()
def beads_tif(tmp_path: Path) -> Path:
    """A calibrated ImageJ bead recording: 8 Gaussian beads, z step twice the pixel."""
    path = tmp_path / "beads.tif"
    stack = bead_recording(gaussian_psf(), (96, 128, 128), 8, z_step=2, photons=2000, seed=0)
    tifffile.imwrite(path, stack, imagej=True, resolution=(1 / DX, 1 / DX),
                     metadata={"spacing": 2 * DX, "unit": "um", "axes": "ZYX"})
    return path


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_cli_writes_a_psf_that_psf_takes(beads_tif, tmp_path):
    before = digest(beads_tif)
    out = tmp_path / "psf.tif"
    proc = run_cli("psf", beads_tif, "-o", out, "--box-um", "4.8,1.6")
    assert proc.returncode == 0, proc.stderr
    assert "average of" in proc.stderr and "FWHM z" in proc.stderr
    psf = selfnet.read_volume(out)
    assert psf.spacing == pytest.approx((2 * DX, DX, DX))
    assert psf.data.shape == (25, 17, 17) and float(np.sum(psf.data)) == pytest.approx(1.0, rel=1e-4)
    truth = kernel_from_psf(gaussian_psf(), (DX, DX, DX), DX).sigma
    assert kernel_from_psf(np.asarray(psf.data), psf.spacing, DX).sigma == pytest.approx(truth, rel=0.15)
    assert digest(beads_tif) == before


@pytest.mark.parametrize(("args", "fragment"), [
    (("--box-um", "6,x"), "--box-um"),
    (("--box-um", "60,30"), "no isolated bead"),
    (("--overwrite", "-o", "{input}"), "input"),
    (("-o", "{existing}"), "--overwrite"),
])
def test_bad_requests_are_refused_in_one_line(args, fragment, beads_tif, tmp_path):
    existing = tmp_path / "old.tif"
    existing.write_bytes(b"keep")
    before = digest(beads_tif)
    args = tuple(a.format(input=beads_tif, existing=existing) for a in args)
    out = () if "-o" in args else ("-o", tmp_path / "psf.tif")
    proc = run_cli("psf", beads_tif, *out, *args)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("selfnet: error:") and fragment in lines[0], proc.stderr
    assert digest(beads_tif) == before and existing.read_bytes() == b"keep"
    assert not (tmp_path / "psf.tif").exists()


def test_api_takes_an_array_with_its_spacing(tmp_path):
    stack = bead_recording(gaussian_psf(), (96, 128, 128), 8, z_step=1, photons=2000, seed=1)
    result = selfnet.psf(stack, tmp_path / "psf.npy", spacing=(DX, DX, DX), box_um=(2.4, 1.6, 1.6))
    assert result.path == (tmp_path / "psf.npy").resolve() and result.channels[0].used >= 6
    assert selfnet.read_volume(result.path).spacing == pytest.approx((DX, DX, DX))
    with pytest.raises(selfnet.SelfnetError, match="spacing"):
        selfnet.psf(stack, tmp_path / "other.npy")


def test_a_two_channel_recording_gives_each_channel_of_a_stack_its_psf(fast_config, tmp_path):
    recordings = [bead_recording(gaussian_psf(axial), (96, 128, 128), 8, z_step=2, photons=2000, seed=c)
                  for c, axial in enumerate((2.5, 4.0))]
    beads = tmp_path / "beads2.tif"
    tifffile.imwrite(beads, np.stack(recordings, axis=1), imagej=True, resolution=(1 / DX, 1 / DX),
                     metadata={"spacing": 2 * DX, "unit": "um", "axes": "ZCYX"})
    proc = run_cli("psf", beads, "-o", tmp_path / "psf2.tif", "--box-um", "4.8,1.6")
    assert proc.returncode == 0, proc.stderr
    assert "channel 0: average of" in proc.stderr and "channel 1: average of" in proc.stderr
    assert probe_series(tmp_path / "psf2.tif").n_c == 2

    stack = np.stack([make_phantom("neurites", (48, 64, 64), k=4.0, axial_ratio=3.0, photons=300, seed=c).raw
                      for c in range(2)], axis=1)
    two = tmp_path / "two.tif"
    tifffile.imwrite(two, stack.astype(np.uint16), imagej=True, resolution=(1 / DX, 1 / DX),
                     metadata={"spacing": 4 * DX, "unit": "um", "axes": "ZCYX"})
    models = selfnet.train(two, config=fast_config, psf=str(tmp_path / "psf2.tif"), device="cpu", progress=False)
    assert [m.config.psf_channel for m in models.models] == [0, 1]
    sigmas = [m.summary["estimated_axial_sigma_px"] for m in models.models]
    assert sigmas[1] > 1.3 * sigmas[0]  # channel 1's beads are blurrier along z
    one = selfnet.train(two, config=fast_config, psf=str(tmp_path / "psf2.tif"), channel=1, device="cpu",
                        progress=False)
    assert one.config.psf_channel == 1 and one.summary["estimated_axial_sigma_px"] == pytest.approx(sigmas[1])
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(selfnet.SelfnetError, match="2 channels and no channel was chosen"):  # before any work
        selfnet.run(two, tmp_path / "iso.tif", config=fast_config, psf=str(tmp_path / "psf2.tif"), shared_model=True,
                    device="cpu", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == before
