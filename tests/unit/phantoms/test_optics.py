"""Diffraction-model PSF phantoms: each optics has the shape that makes it a hard case."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("psfmodels", reason="diffraction-model phantoms need the extra: pip install 'selfnet[phantoms]'")

from selfnet.phantoms.optics import axial_profile, diffraction_psf, in_focus_kernel, make_optics_phantom  # noqa: E402


def _fwhm(profile: np.ndarray) -> int:
    above = np.flatnonzero(profile > 0.5 * profile.max())
    return int(above[-1] - above[0] + 1)


@pytest.fixture(scope="module")
def psfs() -> dict[str, np.ndarray]:
    return {o: diffraction_psf(o, half_z=20, half_xy=16) for o in ("confocal", "widefield", "aberrated")}


def test_psfs_are_normalised_peak_centred_and_axially_wider(psfs: dict[str, np.ndarray]) -> None:
    for psf in psfs.values():
        assert psf.sum() == pytest.approx(1.0, rel=1e-4)
        assert np.unravel_index(np.argmax(psf), psf.shape) == tuple(n // 2 for n in psf.shape)
        c = psf.shape[1] // 2
        assert _fwhm(psf[:, c, c]) >= 1.5 * _fwhm(psf[psf.shape[0] // 2, c, :])


def test_widefield_keeps_out_of_focus_haze_and_confocal_rejects_it(psfs: dict[str, np.ndarray]) -> None:
    def edge_share(psf: np.ndarray) -> float:
        planes = psf.sum(axis=(1, 2))
        return float(planes[0] / planes[len(planes) // 2])

    assert edge_share(psfs["widefield"]) > 0.3
    assert edge_share(psfs["confocal"]) < 0.05


def test_aberration_makes_the_axial_profile_longer(psfs: dict[str, np.ndarray]) -> None:
    assert _fwhm(axial_profile(psfs["aberrated"])) > 1.5 * _fwhm(axial_profile(psfs["confocal"]))


def test_in_focus_kernel_is_isotropic_with_the_lateral_width(psfs: dict[str, np.ndarray]) -> None:
    psf = psfs["confocal"]
    kernel = in_focus_kernel(psf)
    c = kernel.shape[0] // 2
    assert kernel.sum() == pytest.approx(1.0, rel=1e-4)
    widths = {_fwhm(kernel[:, c, c]), _fwhm(kernel[c, :, c]), _fwhm(kernel[c, c, :])}
    assert len(widths) == 1
    assert widths.pop() == _fwhm(psf[psf.shape[0] // 2, psf.shape[1] // 2, :])


def test_optics_phantom_records_like_the_gaussian_one() -> None:
    ph = make_optics_phantom("confocal", "beads", (48, 48, 48), k=4.0, seed=1)
    assert ph.raw.shape == (12, 48, 48) and ph.raw.dtype == np.uint16
    assert ph.spacing_raw == pytest.approx((0.32, 0.08, 0.08))
    assert ph.gt_lateral.shape == (48, 48, 48)
    assert ph.params["optics"] == "confocal"
