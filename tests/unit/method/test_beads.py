"""A PSF averaged from a bead recording: it has the beads' widths, is steadier than one bead, and
leaves out beads at the edge, crowded, saturated, hot pixels or clumped; a stack without a lone bead is refused."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from selfnet.errors import InputError
from selfnet.method.beads import average_beads
from selfnet.method.psf import kernel_from_psf, subvoxel_peak
from selfnet.phantoms.optics import bead_recording

DX = 0.1
LATERAL, AXIAL = 1.2, 3.0  # PSF sds, pixels of the lateral grid


def gaussian_psf(half: tuple[int, int, int] = (12, 8, 8)) -> np.ndarray:
    """A 3D Gaussian PSF on the cubic grid, unit sum."""
    zz, yy, xx = np.meshgrid(*(np.arange(-h, h + 1) for h in half), indexing="ij")
    psf = np.exp(-0.5 * ((zz / AXIAL) ** 2 + (yy**2 + xx**2) / LATERAL**2))
    return psf / psf.sum()


def blobs(shape: tuple[int, int, int], centres: list[tuple[int, int, int]], brightness: list[float],
          seed: int = 0) -> np.ndarray:
    """Gaussian beads at given voxels over a background of 20, Poisson noise (uint16)."""
    image = np.zeros(shape)
    for c, b in zip(centres, brightness):
        image[c] += b
    image = ndimage.gaussian_filter(image, (AXIAL, LATERAL, LATERAL)) * (2 * np.pi) ** 1.5 * AXIAL * LATERAL**2
    return np.random.default_rng(seed).poisson(image + 20).astype(np.uint16)


def test_average_has_the_beads_widths() -> None:
    stack = bead_recording(gaussian_psf(), (96, 128, 128), 8, z_step=1, photons=2000, seed=0)
    average = average_beads(stack, (DX, DX, DX), box_um=(2.4, 1.6, 1.6))
    fwhm = 2 * np.sqrt(2 * np.log(2)) * DX
    assert average.used == average.found == 8
    assert average.fwhm_um == pytest.approx((fwhm * AXIAL, fwhm * LATERAL, fwhm * LATERAL), rel=0.1)
    assert average.psf.sum() == pytest.approx(1.0)
    assert np.unravel_index(np.argmax(average.psf), average.psf.shape) == tuple(n // 2 for n in average.psf.shape)
    assert "average of 8 of 8 beads" in average.summary()


def test_average_of_many_beads_gives_the_kernel_of_the_psf() -> None:
    truth = kernel_from_psf(gaussian_psf(), (DX, DX, DX), DX).sigma
    stack = bead_recording(gaussian_psf(), (96, 160, 160), 12, z_step=2, photons=500, seed=1)
    average = average_beads(stack, (2 * DX, DX, DX), box_um=(2.4, 1.6, 1.6))
    assert average.used >= 8
    assert kernel_from_psf(average.psf, average.spacing, DX).sigma == pytest.approx(truth, rel=0.1)


def test_beads_at_the_edge_crowded_saturated_hot_or_clumped_are_left_out() -> None:
    shape = (40, 120, 120)
    centres = [(20, 30, 30), (20, 30, 90), (20, 90, 30), (20, 90, 90),  # four lone beads
               (20, 60, 56), (20, 60, 66),  # a pair whose boxes overlap
               (20, 4, 60),  # at the edge
               (20, 60, 20)]  # twice as bright as the others: a clump of two
    brightness = [3000.0] * 7 + [6000.0]
    stack = blobs(shape, centres, brightness)
    stack[20, 90, 90] = np.iinfo(np.uint16).max  # a saturated bead
    stack[20, 100, 60] += 2000  # a hot pixel
    average = average_beads(stack, (DX, DX, DX), box_um=(2.0, 1.2, 1.2))
    assert average.rejected == {"at the edge": 1, "crowded": 2, "saturated": 1, "hot pixels": 1, "clumped": 1}
    assert average.used == 3


def test_a_stack_without_a_lone_bead_is_refused() -> None:
    noise = np.random.default_rng(0).poisson(20, (20, 64, 64)).astype(np.uint16)
    with pytest.raises(InputError, match="no isolated bead"):
        average_beads(noise, (DX, DX, DX))
    with pytest.raises(InputError, match="3D"):
        average_beads(noise[0], (DX, DX, DX))


def test_noise_away_from_the_bead_does_not_widen_the_kernel() -> None:
    psf = gaussian_psf((20, 20, 20))
    clean = kernel_from_psf(psf, (DX, DX, DX), DX)
    speckled = psf.copy()
    speckled[2, 2, 20] = speckled[38, 30, 20] = 0.2 * psf.max()  # hot pixels far from the bead, in its XZ plane
    assert kernel_from_psf(speckled, (DX, DX, DX), DX).sigma == pytest.approx(clean.sigma, rel=0.01)


def test_the_average_peaks_on_its_central_voxel() -> None:
    stack = bead_recording(gaussian_psf(), (96, 128, 128), 6, z_step=2, photons=5000, seed=3)
    average = average_beads(stack, (2 * DX, DX, DX), box_um=(4.8, 1.6, 1.6))
    centre = np.array(average.psf.shape) // 2
    assert np.abs(subvoxel_peak(average.psf) - centre).max() < 0.1


def test_a_psf_cut_by_its_box_says_so() -> None:
    stack = bead_recording(gaussian_psf(), (96, 128, 128), 8, z_step=1, photons=2000, seed=0)
    whole = average_beads(stack, (DX, DX, DX), box_um=(2.4, 1.6, 1.6))
    cut = average_beads(stack, (DX, DX, DX), box_um=(0.8, 1.6, 1.6))
    assert max(whole.edge_light()) < 0.02 and "larger --box-um" not in whole.summary()
    assert cut.edge_light()[0] > 0.05 and "at the box's z faces: a larger --box-um" in cut.summary()


def test_the_default_box_grows_to_hold_a_long_psf() -> None:
    zz, yy, xx = np.meshgrid(np.arange(-50, 51), np.arange(-8, 9), np.arange(-8, 9), indexing="ij")
    psf = np.exp(-0.5 * ((zz / 12.0) ** 2 + (yy**2 + xx**2) / 1.2**2))  # axial sd 1.2 µm: cut by a 6 µm box
    stack = bead_recording(psf / psf.sum(), (200, 192, 192), 6, z_step=2, photons=3000, seed=0)
    grown = average_beads(stack, (2 * DX, DX, DX))
    assert grown.box_um == pytest.approx((9.0, 4.5, 4.5)) and max(grown.edge_light()) < 0.02
    assert "9 x 4.5 x 4.5 µm box" in grown.summary()
    assert average_beads(stack, (2 * DX, DX, DX), box_um=(6.0, 3.0, 3.0)).edge_light()[0] > 0.02
