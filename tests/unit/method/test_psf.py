"""The axial kernel taken from a user's PSF file: a Gaussian PSF gives the extra z blur alone, voxel
sizes are honoured, a skewed PSF keeps its skew, and bad PSFs are refused in one line."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from scipy.signal import fftconvolve

from selfnet.errors import InputError
from selfnet.method.kernel import profile_sigma
from selfnet.method.psf import (
    WIDEFIELD,
    forward_kernel,
    in_focus_kernel,
    kernel_from_psf,
    out_of_focus_spread,
)


def gaussian_psf(lateral: float, axial: float, shape: tuple[int, int, int] = (41, 41, 41),
                 z_step: float = 1.0) -> np.ndarray:
    """A 3D Gaussian PSF (sds in pixels of the lateral grid), z sampled every ``z_step`` pixels."""
    z = (np.arange(shape[0]) - shape[0] // 2) * z_step
    y = np.arange(shape[1]) - shape[1] // 2
    x = np.arange(shape[2]) - shape[2] // 2
    zz, yy, xx = np.meshgrid(z, y, x, indexing="ij")
    psf = np.exp(-0.5 * ((zz / axial) ** 2 + (yy / lateral) ** 2 + (xx / lateral) ** 2))
    return psf / psf.sum()


def x_width(row: np.ndarray) -> float:
    x = np.arange(len(row)) - len(row) // 2
    return float(np.sqrt((row * x**2).sum() / row.sum()))


def test_gaussian_psf_gives_its_extra_z_blur_and_no_x_spread() -> None:
    kernel = kernel_from_psf(gaussian_psf(1.2, 3.0), (0.1, 0.1, 0.1), 0.1)
    taps = kernel.taps()
    r = kernel.radius
    assert taps.sum() == pytest.approx(1.0)
    assert kernel.sigma == pytest.approx(np.sqrt(3.0**2 - 1.2**2), rel=0.05)
    assert x_width(taps[r]) < 0.3 and x_width(taps[r + 4]) < 0.3  # a z blur: nothing spreads along x
    profile = kernel.profile()
    assert np.allclose(profile, profile[::-1], atol=1e-6)
    assert kernel.as_dict()["source"] == "psf"


def test_psf_voxel_size_is_honoured() -> None:
    """The same optics sampled at a 3x coarser z step, and at half the stack's pixel, give the same kernel."""
    fine = kernel_from_psf(gaussian_psf(1.2, 3.0), (0.1, 0.1, 0.1), 0.1)
    coarse_z = kernel_from_psf(gaussian_psf(1.2, 3.0, (15, 41, 41), z_step=3.0), (0.3, 0.1, 0.1), 0.1)
    finer_psf = kernel_from_psf(gaussian_psf(2.4, 6.0, (81, 81, 81)), (0.05, 0.05, 0.05), 0.1)
    assert coarse_z.sigma == pytest.approx(fine.sigma, rel=0.1)
    assert finer_psf.sigma == pytest.approx(fine.sigma, rel=0.1)


def test_a_recorded_bead_gives_the_kernel_of_its_psf() -> None:
    """Background and shot noise of a bead image do not widen the kernel (its noise floor is taken off)."""
    psf = gaussian_psf(1.2, 3.0)
    bead = np.random.default_rng(0).poisson(psf / psf.max() * 20000 + 20).astype(np.float64)
    assert kernel_from_psf(bead, (0.1, 0.1, 0.1), 0.1).sigma == pytest.approx(
        kernel_from_psf(psf, (0.1, 0.1, 0.1), 0.1).sigma, rel=0.15)


def test_skewed_psf_keeps_its_skew_and_its_peak_in_place() -> None:
    """An aberrated PSF's long tail on one side stays on that side; its focus stays at the centre."""
    psf = gaussian_psf(1.2, 2.0)
    tail = ndimage.shift(gaussian_psf(2.5, 8.0), (6, 0, 0), order=1)
    kernel = kernel_from_psf(psf + 0.3 * tail, (0.1, 0.1, 0.1), 0.1)
    profile = kernel.profile()
    t = np.arange(len(profile)) - len(profile) // 2
    mean = float((profile * t).sum())
    third = float((profile * (t - mean) ** 3).sum())
    assert third > 0  # the tail goes deeper, as in the PSF
    assert int(np.argmax(profile)) == len(profile) // 2
    assert profile_sigma(profile) > 3.0


@pytest.mark.parametrize(("psf", "message"), [
    (np.ones((5, 5)), "3D"),
    (np.full((5, 5, 5), np.nan), "NaN"),
    (np.zeros((5, 5, 5)), "no light"),
])
def test_bad_psfs_are_refused_in_one_line(psf: np.ndarray, message: str) -> None:
    with pytest.raises(InputError, match=message) as err:
        kernel_from_psf(psf, (0.1, 0.1, 0.1), 0.1)
    assert "\n" not in str(err.value)


def test_psf_whose_peak_is_at_its_edge_is_refused() -> None:
    psf = np.zeros((9, 9, 9))
    psf[0, 4, 4] = 1.0
    with pytest.raises(InputError, match="edge"):
        kernel_from_psf(psf, (0.1, 0.1, 0.1), 0.1)


def test_a_psf_peaking_between_voxels_gives_a_centred_kernel() -> None:
    psf = ndimage.shift(gaussian_psf(1.2, 3.0), (0.4, 0.0, 0.2), order=3)  # the bead sat between planes
    profile = kernel_from_psf(psf, (0.1, 0.1, 0.1), 0.1).profile()
    t = np.arange(len(profile)) - len(profile) // 2
    assert abs((profile * t).sum() / profile.sum()) < 0.05


def test_a_wide_field_psf_is_told_from_a_confocal_one() -> None:
    z = np.arange(-30, 31)[:, None, None]
    r2 = (np.arange(-30, 31)[None, :, None] ** 2 + np.arange(-30, 31)[None, None, :] ** 2)
    width = 1.2 + 0.5 * np.abs(z)  # out-of-focus light spreads, each plane keeps the same total
    widefield = np.exp(-0.5 * r2 / width**2) / width**2
    assert out_of_focus_spread(gaussian_psf(1.2, 3.0)) == pytest.approx(1.0, abs=0.05)
    assert out_of_focus_spread(widefield) > WIDEFIELD


def test_forward_kernel_takes_the_in_focus_kernel_to_the_psf() -> None:
    """A Gaussian PSF's forward kernel is its extra z blur alone (no lateral spread), and the isotropic
    in-focus kernel through it gives the PSF back: the 3D model the refinement re-records with."""
    psf = gaussian_psf(1.2, 3.0)
    kernel = forward_kernel(psf, (0.1, 0.1, 0.1), 0.1)
    c = np.array(kernel.shape) // 2
    assert kernel.sum() == pytest.approx(1.0, abs=1e-5)
    assert profile_sigma(kernel.sum(axis=(1, 2))) == pytest.approx(np.sqrt(3.0**2 - 1.2**2), rel=0.05)
    assert x_width(kernel[c[0], c[1]]) < 0.5 and x_width(kernel[c[0] + 3, c[1]]) < 0.5  # the PSF: 1.2
    focus = in_focus_kernel(psf)
    assert profile_sigma(focus.sum(axis=(1, 2))) == pytest.approx(1.2, rel=0.1)  # isotropic, the lateral width
    back = fftconvolve(focus.astype(np.float64), kernel.astype(np.float64), mode="same")
    box = tuple(slice(n // 2 - 8, n // 2 + 9) for n in back.shape)
    want = psf[tuple(slice(n // 2 - 8, n // 2 + 9) for n in psf.shape)]
    assert np.abs(back[box] - want).max() < 0.02 * want.max()


def test_forward_kernel_keeps_an_asymmetric_psf_asymmetric() -> None:
    """A PSF with a tail on one side along z gives a forward kernel whose light leans the same way."""
    psf = gaussian_psf(1.2, 3.0)
    tail = ndimage.shift(gaussian_psf(1.2, 3.0), (6, 0, 0), order=1) * 0.3
    kernel = forward_kernel(psf + tail, (0.1, 0.1, 0.1), 0.1)
    profile = kernel.sum(axis=(1, 2))
    z = np.arange(len(profile)) - len(profile) // 2
    assert (profile * z).sum() / profile.sum() > 0.8
