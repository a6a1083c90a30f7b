"""Bead and banding measures of the quality benchmark: they find a known shift, tail and stripe pattern."""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter, shift

from selfnet.phantoms.metrics import (
    AXIAL_BANDS,
    axial_asymmetry,
    axial_transfer,
    banding,
    bead_centers,
    bead_z_shift,
    peak_centroid,
    z_shift,
)

SHAPE = (64, 64, 64)


def _beads() -> tuple[np.ndarray, np.ndarray]:
    """Four isolated point sources and their blurred image."""
    obj = np.zeros(SHAPE, np.float32)
    for z, y, x in [(20, 20, 20), (20, 44, 44), (44, 20, 44), (44, 44, 20)]:
        obj[z, y, x] = 1.0
    return obj, gaussian_filter(obj, (2.0, 1.0, 1.0))


def test_bead_centers_finds_isolated_sources() -> None:
    obj, _ = _beads()
    assert len(bead_centers(obj)) == 4


def test_peak_centroid_is_subvoxel() -> None:
    t = np.arange(21) - 10
    assert abs(peak_centroid(np.exp(-0.5 * ((t - 0.3) / 2) ** 2)) - 0.3) < 0.05


def test_z_shift_of_a_shifted_volume() -> None:
    obj, img = _beads()
    centers = bead_centers(obj)
    assert abs(bead_z_shift(img, img, centers)) < 1e-6
    moved = shift(img, (1.5, 0, 0), order=3)
    assert abs(bead_z_shift(moved, img, centers) - 1.5) < 0.2


def test_asymmetry_sign_follows_a_tail() -> None:
    obj, img = _beads()
    centers = bead_centers(obj)
    assert abs(axial_asymmetry(img, centers)) < 0.02
    tail = np.zeros(9, np.float32)
    tail[4:] = np.exp(-np.arange(5) / 2.0)
    tailed = np.apply_along_axis(lambda p: np.convolve(p, tail / tail.sum(), mode="same"), 0, img)
    assert axial_asymmetry(tailed, centers) > 0.1


def test_banding_sees_phase_dependent_noise() -> None:
    rng = np.random.default_rng(0)
    truth = np.zeros(SHAPE, np.float32)
    truth[:, 30:34, 30:34] = 10.0
    even = truth + rng.normal(0, 1, SHAPE).astype(np.float32)
    striped = truth + rng.normal(0, 1, SHAPE).astype(np.float32) * (1 + (np.arange(64) % 4 == 0))[:, None, None]
    assert banding(even, truth, 4.0) < 0.1
    assert banding(striped, truth, 4.0) > 0.5
    assert banding(striped, truth, 1.0) == 0.0  # dz = dx: every plane is a raw plane, there are no phases


def test_global_z_shift_by_correlation() -> None:
    rng = np.random.default_rng(1)
    truth = gaussian_filter(rng.random(SHAPE).astype(np.float32), 2.0)
    assert abs(z_shift(truth, truth)) < 0.02
    assert abs(z_shift(shift(truth, (-1.3, 0, 0), order=3), truth) + 1.3) < 0.15


def test_axial_transfer_sees_a_z_blur_and_ignores_a_lateral_one() -> None:
    """The truth restores all of itself; a Gaussian z blur restores, per band, what its transfer
    exp(-2 pi^2 sigma^2 kz^2) passes there (relative to the first band: the affine fit rescales), falling
    with frequency; a lateral blur leaves the z-dominant bands nearly untouched."""
    truth = gaussian_filter(np.random.default_rng(0).normal(size=SHAPE), 1.0).astype(np.float32)
    assert np.allclose(axial_transfer(truth, truth), 1.0)
    blurred = axial_transfer(gaussian_filter(truth, (2.0, 0.0, 0.0)), truth)
    e = np.asarray(AXIAL_BANDS)

    def passed(kz: np.ndarray) -> np.ndarray:
        return np.exp(-2 * (np.pi * 2.0 * kz) ** 2)

    relative = blurred / blurred[0]  # a band's kz lies between 0.8 and 1 times its radius
    assert np.all(np.diff(blurred) < 0)
    assert np.all(relative >= passed(e[1:]) / passed(0.8 * e[0]) - 1e-6)
    assert np.all(relative <= passed(0.8 * e[:-1]) / passed(e[1]) + 1e-6)
    assert axial_transfer(gaussian_filter(truth, (0.0, 1.5, 1.5)), truth).min() > 0.85
