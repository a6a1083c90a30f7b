"""Tests for the synthetic phantom generator: geometry, determinism, physics and I/O."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
from scipy.ndimage import gaussian_filter, map_coordinates

from selfnet.phantoms.synthetic import (
    KINDS,
    Phantom,
    acquire,
    make_object,
    make_phantom,
    n_raw_planes,
    save_phantom,
)

SHAPE = (40, 48, 48)

# Bounds on the fraction of voxels above 0.1 for each kind at SHAPE.
FOREGROUND = {
    "neurites": (0.03, 0.10),
    "nuclei": (0.05, 0.45),
    "beads": (1e-5, 1e-3),
    "sparse-beads": (1e-5, 1e-3),
    "mix": (0.03, 0.40),
}


def _second_moment_sigma(profile: np.ndarray) -> float:
    """Standard deviation of a non-negative 1D profile treated as a distribution."""
    profile = np.clip(profile, 0.0, None)
    pos = np.arange(profile.size, dtype=np.float64)
    mean = float(np.sum(pos * profile) / np.sum(profile))
    return float(np.sqrt(np.sum((pos - mean) ** 2 * profile) / np.sum(profile)))


def _signal(ph: Phantom) -> np.ndarray:
    """Raw counts converted back to expected-signal units (offset and background removed)."""
    p = ph.params
    floor = float(p["offset"]) + float(p["background"]) * float(p["gain"])
    return ph.raw.astype(np.float64) - floor


# ---------------------------------------------------------------------------------- objects


@pytest.mark.parametrize("kind", KINDS)
def test_object_range_and_foreground(kind: str) -> None:
    obj = make_object(kind, SHAPE, seed=3)
    assert obj.shape == SHAPE and obj.dtype == np.float32
    assert obj.min() >= 0.0
    assert obj.max() == pytest.approx(1.0, abs=1e-6)
    lo, hi = FOREGROUND[kind]
    assert lo <= float(np.mean(obj > 0.1)) <= hi


def test_beads_are_sparse_points_away_from_borders() -> None:
    obj = make_object("beads", SHAPE, seed=1)
    idx = np.argwhere(obj > 0)
    assert len(idx) >= 3
    assert idx.min() >= 1
    assert np.all(idx.max(axis=0) <= np.asarray(SHAPE) - 2)
    assert len(np.unique(obj[obj > 0])) >= 3  # varying brightness


def test_neurites_run_in_all_directions() -> None:
    """Tubes cross along z as much as laterally: gradient energy is similar on every axis."""
    obj = make_object("neurites", (64, 64, 64), seed=0)
    energy = [float(np.mean(np.diff(obj, axis=a) ** 2)) for a in range(3)]
    assert max(energy) / min(energy) < 1.6


def test_nuclei_have_bright_rim_and_dim_interior() -> None:
    obj = make_object("nuclei", (64, 64, 64), seed=2)
    assert float(np.mean(obj > 0.7)) < float(np.mean((obj > 0.1) & (obj < 0.6)))


def test_unknown_kind_raises() -> None:
    with pytest.raises(ValueError, match="unknown phantom kind"):
        make_object("galaxies", SHAPE)


def test_object_is_deterministic() -> None:
    a = make_object("mix", SHAPE, seed=5)
    assert np.array_equal(a, make_object("mix", SHAPE, seed=5))
    assert not np.array_equal(a, make_object("mix", SHAPE, seed=6))


# ------------------------------------------------------------------------- shapes/metadata


@pytest.mark.parametrize(("k", "z_raw", "n_iso"), [(4.0, 10, 37), (2.5, 16, 38), (1.0, 40, 40)])
def test_shapes_and_iso_slice(k: float, z_raw: int, n_iso: int) -> None:
    ph = make_phantom("neurites", SHAPE, k=k, seed=0, dx_um=0.25)
    assert ph.raw.dtype == np.uint16
    assert ph.raw.shape == (z_raw, 48, 48)
    assert ph.gt.shape == ph.gt_lateral.shape == SHAPE
    assert ph.gt.dtype == ph.gt_lateral.dtype == np.float32
    sl = ph.iso_slice()
    assert (sl.start, sl.stop) == (0, n_iso)
    assert ph.spacing_raw == pytest.approx((0.25 * k, 0.25, 0.25))
    assert ph.spacing_iso == pytest.approx((0.25, 0.25, 0.25))
    assert ph.k == k and ph.params["kind"] == "neurites"
    assert ph.params["sigma_axial_px"] == pytest.approx(3.0)


def test_n_raw_planes() -> None:
    assert n_raw_planes(40, 4.0) == 10
    assert n_raw_planes(41, 4.0) == 11
    assert n_raw_planes(40, 2.5) == 16
    assert n_raw_planes(1, 3.0) == 1


def test_phantom_is_deterministic() -> None:
    a = make_phantom("mix", SHAPE, seed=11)
    b = make_phantom("mix", SHAPE, seed=11)
    c = make_phantom("mix", SHAPE, seed=12)
    assert np.array_equal(a.raw, b.raw) and np.array_equal(a.gt_lateral, b.gt_lateral)
    assert not np.array_equal(a.raw, c.raw)


def test_acquire_rejects_bad_input() -> None:
    obj = make_object("beads", SHAPE)
    with pytest.raises(ValueError):
        acquire(obj, k=0.5)
    with pytest.raises(ValueError):
        acquire(np.zeros(SHAPE, np.float32))
    with pytest.raises(ValueError):
        acquire(obj[0])


# ---------------------------------------------------------------------------------- physics


@pytest.mark.parametrize("k", [4.0, 2.5])
def test_raw_matches_anisotropic_blur_sampled_at_ik(k: float) -> None:
    obj = make_object("mix", SHAPE, seed=4)
    ph = acquire(obj, k=k, photons=3e4, read_noise=0.0, background=10.0, offset=100.0, seed=1)
    blurred = gaussian_filter(obj.astype(np.float64), (3.0, 1.0, 1.0), mode="reflect")
    z = np.arange(ph.raw.shape[0]) * k
    zz, yy, xx = np.meshgrid(z, np.arange(48), np.arange(48), indexing="ij")
    expected = map_coordinates(blurred, [zz, yy, xx], order=1) * 3e4 / blurred.max()
    sig = _signal(ph)
    assert np.corrcoef(sig.ravel(), expected.ravel())[0, 1] > 0.99
    assert np.linalg.norm(sig - expected) / np.linalg.norm(expected) < 0.05


@pytest.mark.parametrize(("sigma", "ratio"), [(1.0, 3.0), (1.5, 2.0)])
def test_psf_widths_from_a_bead(sigma: float, ratio: float) -> None:
    obj = np.zeros((64, 33, 33), np.float32)
    obj[32, 16, 16] = 1.0
    ph = acquire(obj, k=1.0, sigma_lateral_px=sigma, axial_ratio=ratio, photons=5e4,
                 background=0.0, read_noise=0.0, seed=0)
    sig = _signal(ph)
    assert _second_moment_sigma(sig[:, 16, 16]) == pytest.approx(ratio * sigma, rel=0.15)
    assert _second_moment_sigma(sig[32, 16, :]) == pytest.approx(sigma, rel=0.15)
    assert sig.max() == pytest.approx(5e4, rel=0.02)


@pytest.mark.parametrize("gain", [1.0, 2.0])
def test_noise_variance_in_electrons(gain: float) -> None:
    photons, background, read_noise = 50.0, 10.0, 2.0
    ph = acquire(np.ones((8, 64, 64), np.float32), k=1.0, photons=photons, background=background,
                 read_noise=read_noise, offset=100.0, gain=gain, seed=7)
    electrons = (ph.raw.astype(np.float64) - 100.0) / gain
    assert electrons.mean() == pytest.approx(photons + background, rel=0.02)
    assert electrons.var() == pytest.approx(photons + background + read_noise**2, rel=0.15)


def test_gt_units_and_lateral_blur() -> None:
    obj = make_object("neurites", SHAPE, seed=8)
    ph = acquire(obj, k=2.0, sigma_lateral_px=1.2, axial_ratio=2.5, photons=500.0, gain=1.5)
    peak = gaussian_filter(obj.astype(np.float64), (3.0, 1.2, 1.2)).max()
    scale = 500.0 * 1.5 / peak
    np.testing.assert_allclose(ph.gt, obj * scale, rtol=1e-5)
    expected = gaussian_filter(obj.astype(np.float64) * scale, 1.2, mode="reflect")
    np.testing.assert_allclose(ph.gt_lateral, expected, atol=2e-3 * expected.max())
    assert ph.params["signal_scale"] == pytest.approx(scale, rel=1e-4)


def test_isotropic_psf_raw_equals_gt_lateral() -> None:
    """Without axial elongation the raw signal is gt_lateral itself on the sampled planes."""
    obj = make_object("nuclei", SHAPE, seed=9)
    ph = acquire(obj, k=2.0, axial_ratio=1.0, photons=3e4, background=20.0, read_noise=0.0,
                 gain=2.0)
    target = ph.gt_lateral[ph.iso_slice()][::2]
    sig = _signal(ph)
    assert np.linalg.norm(sig - target) / np.linalg.norm(target) < 0.03


# ---------------------------------------------------------------------------------------- IO


def test_save_phantom_roundtrip(tmp_path: Path) -> None:
    ph = make_phantom("beads", SHAPE, k=2.5, seed=2, dx_um=0.3)
    paths = save_phantom(ph, tmp_path / "demo")
    assert set(paths) == {"raw", "gt_lateral", "params"}
    with tifffile.TiffFile(paths["raw"]) as tif:
        assert tif.is_imagej
        assert np.array_equal(tif.asarray(), ph.raw)
        meta = tif.imagej_metadata
        assert meta is not None
        assert meta["spacing"] == pytest.approx(0.75)
        assert meta["unit"] == "um"
        num, den = tif.pages[0].tags["XResolution"].value
        assert num / den == pytest.approx(1 / 0.3, rel=1e-4)
    with tifffile.TiffFile(paths["gt_lateral"]) as tif:
        gt = tif.asarray()
        assert gt.dtype == np.float32 and gt.shape == SHAPE
        assert tif.imagej_metadata["spacing"] == pytest.approx(0.3)
    params = json.loads(paths["params"].read_text())
    assert params["kind"] == "beads" and params["k"] == 2.5 and params["seed"] == 2
