"""Reading the config's PSF file for training: a wide-field PSF is used but warned about when the refinement is off,
a confocal-like one is not."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import tifffile

from selfnet.config import TrainConfig
from selfnet.errors import InputError
from selfnet.training.loop import psf_kernel


def write(path, psf: np.ndarray, dx: float = 0.1):
    tifffile.imwrite(path, psf.astype(np.float32), imagej=True, resolution=(1 / dx, 1 / dx),
                     metadata={"spacing": dx, "unit": "um", "axes": "ZYX"})
    return path


def test_a_wide_field_psf_is_warned_about_without_the_refinement(tmp_path):
    z = np.arange(-30, 31)[:, None, None]
    r2 = np.arange(-30, 31)[None, :, None] ** 2 + np.arange(-30, 31)[None, None, :] ** 2
    width = 1.2 + 0.5 * np.abs(z)
    path = write(tmp_path / "wf.tif", np.exp(-0.5 * r2 / width**2) / width**2)
    with pytest.warns(UserWarning, match="looks wide-field"):
        kernel = psf_kernel(TrainConfig(psf=str(path), refine=0.0), 0.1)
    assert kernel is not None and kernel.taps().sum() == pytest.approx(1.0)
    with warnings.catch_warnings():  # refined in 3D, a wide-field PSF did best (docs/BENCHMARKS.md)
        warnings.simplefilter("error")
        assert psf_kernel(TrainConfig(psf=str(path)), 0.1) is not None


def test_a_confocal_like_psf_is_not(tmp_path):
    zz, yy, xx = np.meshgrid(np.arange(-15, 16), np.arange(-10, 11), np.arange(-10, 11), indexing="ij")
    path = write(tmp_path / "c.tif", np.exp(-0.5 * ((zz / 3.0) ** 2 + (yy**2 + xx**2) / 1.2**2)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert psf_kernel(TrainConfig(psf=str(path)), 0.1) is not None


def test_a_multi_channel_psf_gives_each_channel_its_own(tmp_path):
    zz, yy, xx = np.meshgrid(np.arange(-15, 16), np.arange(-10, 11), np.arange(-10, 11), indexing="ij")
    psfs = np.stack([np.exp(-0.5 * ((zz / axial) ** 2 + (yy**2 + xx**2) / 1.2**2)) for axial in (2.5, 4.0)])
    path = tmp_path / "psf2.tif"
    tifffile.imwrite(path, psfs.transpose(1, 0, 2, 3).astype(np.float32), imagej=True,
                     resolution=(10, 10), metadata={"spacing": 0.1, "unit": "um", "axes": "ZCYX"})
    sigmas = [psf_kernel(TrainConfig(psf=str(path), psf_channel=c), 0.1).sigma for c in (0, 1)]
    assert sigmas == pytest.approx([np.sqrt(2.5**2 - 1.2**2), np.sqrt(4.0**2 - 1.2**2)], rel=0.1)
    with pytest.raises(InputError, match="2 channels and no channel was chosen"):
        psf_kernel(TrainConfig(psf=str(path)), 0.1)
    with pytest.raises(InputError, match="none for channel 2"):
        psf_kernel(TrainConfig(psf=str(path), psf_channel=2), 0.1)
