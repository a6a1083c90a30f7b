"""A PSF computed from the optics (``selfnet psf --optics``): diffraction-limited widths, wide-field haze,
and the long, skewed axial profile that spherical aberration brings."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("psfmodels", reason="computed PSFs need the extra: pip install 'selfnet[psf]'")

from selfnet.method.optics import vectorial_psf  # noqa: E402
from selfnet.method.psf import WIDEFIELD, fwhm_um, out_of_focus_spread  # noqa: E402

DX = 0.08
OIL = {"na": 1.4, "emission_um": 0.52, "excitation_um": 0.488, "box_um": (3.2, 1.6)}


def skew(profile: np.ndarray) -> float:
    t = np.arange(len(profile), dtype=np.float64)
    p = profile / profile.sum()
    mean = (p * t).sum()
    sd = np.sqrt((p * (t - mean) ** 2).sum())
    return float((p * (t - mean) ** 3).sum() / sd**3)


@pytest.fixture(scope="module")
def confocal() -> np.ndarray:
    return vectorial_psf("confocal", voxel_um=(DX, DX), **OIL)


def test_confocal_psf_is_centred_with_diffraction_limited_widths(confocal: np.ndarray) -> None:
    assert confocal.shape == (41, 21, 21)
    assert float(confocal.sum()) == pytest.approx(1.0, rel=1e-4)
    assert np.unravel_index(np.argmax(confocal), confocal.shape) == (20, 10, 10)
    z, y, x = fwhm_um(confocal, (DX, DX, DX))
    assert y == pytest.approx(x)
    assert 0.17 < y < 0.23  # about 0.37 lambda / NA for a 1 AU pinhole
    assert 0.33 < z < 0.45


def test_widefield_psf_spreads_its_light_out_of_focus(confocal: np.ndarray) -> None:
    widefield = vectorial_psf("widefield", voxel_um=(DX, DX), **(OIL | {"box_um": (6.0, 1.6)}))  # the haze needs depth
    assert out_of_focus_spread(widefield) > WIDEFIELD > out_of_focus_spread(confocal)


def test_index_mismatch_at_depth_lengthens_and_skews_the_axial_profile(confocal: np.ndarray) -> None:
    deep = vectorial_psf("confocal", voxel_um=(DX, DX), sample_index=1.33, depth_um=10.0, **OIL)
    c = deep.shape[1] // 2
    assert fwhm_um(deep, (DX, DX, DX))[0] > 1.8 * fwhm_um(confocal, (DX, DX, DX))[0]
    assert abs(skew(deep[:, c, c])) > 0.2 > abs(skew(confocal[:, c, c]))


def test_a_coarser_z_step_samples_the_same_psf(confocal: np.ndarray) -> None:
    coarse = vectorial_psf("confocal", voxel_um=(2 * DX, DX), **OIL)
    assert coarse.shape == (21, 21, 21)
    assert fwhm_um(coarse, (2 * DX, DX, DX))[0] == pytest.approx(fwhm_um(confocal, (DX, DX, DX))[0], rel=0.15)


def test_the_depth_fit_closes_in_on_the_best_depth() -> None:
    from selfnet.method.optics import fit_depth

    calls: list[float] = []

    def misfit(depth: float) -> float:
        calls.append(depth)
        return 1.0 + (depth - 13.7) ** 2 / 50

    best, tried = fit_depth(misfit)
    assert abs(best - 13.7) <= 1.25 and tried[best] == min(tried.values())
    assert len(calls) == len(set(calls)) == len(tried) <= 12  # each depth (a PSF to compute) once
    assert fit_depth(lambda d: 1.0 + d)[0] == 0.0
