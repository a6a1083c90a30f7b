"""Resampling operators, normalisation and patch pools."""

import numpy as np
import pytest

from selfnet.errors import InputError
from selfnet.method.normalize import Normalizer
from selfnet.method.resample import (
    degrade_matrix,
    n_iso,
    resample_matrix,
    upsample_matrix,
    zinterp,
)
from selfnet.training.patches import sample_axial_patches, sample_xy_patches


@pytest.mark.parametrize(("n_raw", "ratio", "expected"), [(10, 4.0, 37), (10, 2.5, 23), (2, 1.5, 2), (5, 3.0, 13)])
def test_n_iso(n_raw, ratio, expected):
    assert n_iso(n_raw, ratio) == expected


def test_resample_rows_sum_to_one_and_hit_samples():
    w = resample_matrix(6, np.array([0.0, 1.0, 2.5, 5.0]))
    np.testing.assert_allclose(w.sum(axis=1), 1, atol=1e-6)
    np.testing.assert_allclose(w[1], np.eye(6)[1])
    np.testing.assert_allclose(w[3], np.eye(6)[5])


@pytest.mark.parametrize("ratio", [2.0, 2.5, 4.0])
def test_upsample_reproduces_smooth_signals(ratio):
    raw = np.arange(12, dtype=np.float32)
    up = upsample_matrix(12, ratio) @ raw
    inner = slice(int(np.ceil(ratio)), -int(np.ceil(ratio)))  # edges replicate the end samples
    np.testing.assert_allclose(up[inner], (np.arange(len(up)) / ratio)[inner], atol=1e-4)  # ramps are exact


def test_zinterp_keeps_raw_planes_on_integer_ratio():
    vol = np.random.default_rng(0).random((5, 7, 9)).astype(np.float32)
    iso = zinterp(vol, 3.0, block=4)
    assert iso.shape == (13, 7, 9) and iso.dtype == np.float32
    np.testing.assert_allclose(iso[::3], vol, atol=1e-6)


def test_degrade_matrix_keeps_sampled_rows():
    m = degrade_matrix(16, 4.0, phase=0.0)
    x = np.random.default_rng(1).random((16, 3)).astype(np.float32)
    np.testing.assert_allclose((m @ x)[::4], x[::4], atol=1e-6)
    assert not np.allclose((m @ x)[1::4], x[1::4])


def test_normalizer_roundtrip_and_constant():
    vol = np.linspace(0, 1000, 1000, dtype=np.float32).reshape(10, 10, 10)
    norm = Normalizer.fit(vol, (1, 99))
    x = norm(vol)
    assert abs(np.percentile(x, 1)) < 1e-3 and abs(np.percentile(x, 99) - 1) < 1e-3
    np.testing.assert_allclose(norm.inverse(x), vol, rtol=1e-4, atol=1e-2)
    with pytest.raises(InputError):
        Normalizer.fit(np.full((4, 4, 4), 7.0), (1, 99))


def test_patches_shapes_and_foreground_preference():
    rng = np.random.default_rng(0)
    vol = np.zeros((6, 40, 40), np.float32)
    vol[:, :, 20:] = 1.0
    xy = sample_xy_patches(vol, 32, 16, rng=rng, foreground_percentile=50)
    assert xy.shape == (32, 16, 16)
    assert xy.mean() > 0.5  # the bright half is preferred
    iso = zinterp(vol, 4.0)
    ax = sample_axial_patches(iso, 20, 16, rng=rng)
    assert ax.shape == (20, 16, 16)
    with pytest.raises(InputError):
        sample_xy_patches(vol, 4, 64, rng=rng)
    with pytest.raises(InputError, match="isotropic planes"):
        sample_axial_patches(iso, 4, 32, rng=rng)


def test_xy_patches_with_a_mirrored_frame_reach_the_plane_edges():
    """A frame beyond the plane lets the patch's middle sit anywhere, with the edge mirrored around it."""
    rng = np.random.default_rng(1)
    ramp = np.tile(np.arange(24, dtype=np.float32), (2, 24, 1))  # x along columns
    frame = 8
    xy = sample_xy_patches(ramp, 400, 8 + 2 * frame, rng=rng, foreground_percentile=0, pad=frame)
    middles = xy[:, frame:-frame, frame:-frame]
    assert middles.min() == 0 and middles.max() == 23  # the middles cover the whole plane, edges included
    first = xy[np.argmin(middles[:, 0, 0])]
    np.testing.assert_array_equal(first[0, :frame + 1], np.arange(frame, -1, -1))  # mirrored about pixel 0
    with pytest.raises(ValueError, match="mirrored frame"):
        sample_xy_patches(ramp, 4, 60, rng=rng, pad=24)
