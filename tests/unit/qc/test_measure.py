"""Resolution / isotropy estimates and the data-consistency check, on phantoms with a known PSF."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import ndimage

from selfnet.errors import InputError
from selfnet.method.resample import zinterp
from selfnet.phantoms.synthetic import acquire, make_object, make_phantom
from selfnet.qc.measure import (
    FWHM_PER_SIGMA,
    check_volume,
    compare,
    consistency,
    estimate_resolution,
    noise_variance,
    redegrade,
)

SIGMA = 1.5  # lateral PSF sigma (px) of the validation phantoms; see docs/BENCHMARKS.md


@pytest.fixture(scope="module")
def objects() -> dict[str, np.ndarray]:
    return {kind: make_object(kind, (64, 64, 64), seed=0) for kind in ("nuclei", "beads", "mix")}


@pytest.mark.parametrize("kind", ["nuclei", "beads", "mix"])
@pytest.mark.parametrize("ratio", [1.0, 2.0, 3.0, 4.0])
def test_isotropy_within_20_percent_of_truth(objects, kind, ratio):
    ph = acquire(objects[kind], k=1.0, axial_ratio=ratio, sigma_lateral_px=SIGMA, seed=0, dx_um=0.25)
    res = estimate_resolution(ph.raw, ph.spacing_raw)
    truth = 1.0 / ratio  # lateral / axial FWHM
    assert res.reliable, res.note
    assert abs(res.isotropy / truth - 1.0) < 0.2, (kind, ratio, res)
    assert res.isotropy == pytest.approx(res.lateral_um / res.axial_um)


@pytest.mark.xfail(strict=True, reason="image-only limit: tube cross-sections as wide as the PSF read as lateral "
                   "blur, so neurite isotropy comes out up to ~+50 % too high; give --lateral-fwhm (docs/BENCHMARKS.md)")
def test_neurite_isotropy_within_20_percent_of_truth():
    errors = {}
    for seed in (0, 1, 2):
        obj = make_object("neurites", (64, 64, 64), seed=seed)
        for sigma in (SIGMA, 1.0):
            for ratio in (1.0, 2.0, 4.0):
                ph = acquire(obj, k=1.0, axial_ratio=ratio, sigma_lateral_px=sigma, seed=seed, dx_um=0.25)
                errors[seed, sigma, ratio] = estimate_resolution(ph.raw, ph.spacing_raw).isotropy * ratio - 1.0
    assert max(abs(e) for e in errors.values()) < 0.2, errors


def test_known_lateral_resolution_measures_the_axial_blur_alone():
    errors = {}
    for seed in (0, 1, 2):
        obj = make_object("neurites", (64, 64, 64), seed=seed)
        for ratio in (2.0, 4.0):
            ph = acquire(obj, k=1.0, axial_ratio=ratio, sigma_lateral_px=SIGMA, seed=seed, dx_um=0.25)
            res = estimate_resolution(ph.raw, ph.spacing_raw, lateral_fwhm_um=FWHM_PER_SIGMA * SIGMA * 0.25)
            assert res.lateral_um == pytest.approx(FWHM_PER_SIGMA * SIGMA * 0.25)
            assert "lateral FWHM given" in res.note
            errors[seed, ratio] = res.isotropy * ratio - 1.0
    assert max(abs(e) for e in errors.values()) < 0.2, errors


def test_raw_anisotropic_stack_gives_psf_fwhm_in_um():
    ph = make_phantom("nuclei", (64, 64, 64), k=4.0, axial_ratio=3.0, sigma_lateral_px=SIGMA, seed=2, dx_um=0.2)
    res = estimate_resolution(ph.raw, ph.spacing_raw)
    lateral = FWHM_PER_SIGMA * SIGMA * 0.2
    assert res.lateral_um == pytest.approx(lateral, rel=0.2)
    assert res.axial_um == pytest.approx(3.0 * lateral, rel=0.2)
    assert res.isotropy == pytest.approx(1 / 3, rel=0.2)
    assert res.sampling_limited == ()


def test_axial_resolution_never_finer_than_the_z_sampling():
    ph = make_phantom("beads", (64, 64, 64), k=4.0, axial_ratio=1.5, sigma_lateral_px=1.0, seed=1, dx_um=0.2)
    res = estimate_resolution(ph.raw, ph.spacing_raw)
    assert "axial" in res.sampling_limited
    assert res.axial_um == pytest.approx(2 * ph.spacing_raw[0])


def test_interpolation_is_not_credited_but_a_true_restoration_is():
    ph = make_phantom("mix", (64, 64, 64), k=4.0, axial_ratio=3.0, sigma_lateral_px=SIGMA, seed=3, dx_um=0.2)
    cubic = zinterp(ph.raw, ph.k)
    ideal = ph.gt_lateral[ph.iso_slice()]
    plain = compare(ph.raw, ph.spacing_raw, cubic, ph.spacing_iso)
    good = compare(ph.raw, ph.spacing_raw, ideal, ph.spacing_iso)
    assert plain.after.isotropy == pytest.approx(plain.before.isotropy, rel=0.2)
    assert good.after.isotropy > 0.85
    assert good.to_dict()["isotropy_gain"] > 2.0


def test_noise_only_volume_is_flagged_unreliable():
    noise = np.random.default_rng(0).normal(100, 5, (32, 48, 48)).astype(np.float32)
    res = estimate_resolution(noise, (1.0, 0.25, 0.25))
    assert not res.reliable and res.note
    json.dumps(res.to_dict())  # NaN/inf become null, never invalid JSON


def test_redegrade_samples_raw_planes_and_blurs_along_z():
    vol = np.random.default_rng(0).random((25, 6, 7)).astype(np.float32)
    np.testing.assert_allclose(redegrade(vol, 4.0, 0.0), vol[::4], atol=1e-6)
    blurred = redegrade(vol, 4.0, 2.0)
    assert blurred.shape == (7, 6, 7)
    assert blurred[1:-1].std() < vol[4:-4:4].std()
    const = np.full((25, 6, 7), 3.0, dtype=np.float32)
    np.testing.assert_allclose(redegrade(const, 2.5, 3.0), 3.0, atol=1e-5)


def test_consistency_with_a_tailed_blur_needs_its_profile():
    """Raw planes blurred with a tailed z profile are consistent with the restoration only when QC
    re-degrades with that profile, not with a Gaussian of the same sd (what a model with a fitted
    tail or cone hands to QC)."""
    from selfnet.method.kernel import AxialKernel, profile_sigma

    truth = ndimage.gaussian_filter(np.random.default_rng(3).random((64, 32, 32)), 1.5).astype(np.float32)
    profile = AxialKernel(1.5, tail=0.5, tail_sigma=7.5).profile()
    raw = redegrade(truth, 4.0, 0.0, profile=profile) + np.random.default_rng(4).normal(0, 1e-4, (16, 32, 32))
    sd = profile_sigma(profile)
    with_profile = consistency(raw.astype(np.float32), truth, 4.0, sd, profile=profile)
    gaussian = consistency(raw.astype(np.float32), truth, 4.0, sd)
    assert with_profile.psnr_db > gaussian.psnr_db + 10
    assert with_profile.correlation > 0.999


def test_noise_variance_ignores_structure():
    rng = np.random.default_rng(1)
    signal = 200 * ndimage.gaussian_filter(rng.random((16, 96, 96)), (0, 3, 3))
    noisy = signal + rng.normal(0, 4.0, signal.shape)
    assert noise_variance(noisy) == pytest.approx(16.0, rel=0.15)


def test_consistency_prefers_the_truth_over_hallucinated_or_noisy_restorations():
    ph = make_phantom("nuclei", (64, 64, 64), k=4.0, axial_ratio=3.0, sigma_lateral_px=SIGMA, seed=2, dx_um=0.2)
    truth = ph.gt_lateral[ph.iso_slice()]
    sigma = SIGMA * math.sqrt(3.0**2 - 1.0)  # extra axial blur of the raw data beyond the lateral PSF
    rng = np.random.default_rng(0)
    spots = np.zeros_like(truth)
    spots[tuple(rng.integers(0, n, 40) for n in truth.shape)] = 1.0
    invented = truth + ndimage.gaussian_filter(spots, 1.5) * float(truth.max()) * 30
    noisy = truth + rng.normal(0, float(truth.std()), truth.shape).astype(np.float32)
    scores = {name: consistency(ph.raw, vol, ph.k, sigma) for name, vol in
              (("truth", truth), ("invented", invented), ("noisy", noisy))}
    assert scores["truth"].psnr_db > scores["invented"].psnr_db + 0.5
    assert scores["truth"].psnr_db > scores["noisy"].psnr_db + 3
    assert scores["truth"].correlation > max(scores["invented"].correlation, scores["noisy"].correlation)
    # the truth reaches about the noise limit of the raw planes
    assert scores["truth"].psnr_db == pytest.approx(scores["truth"].ceiling_psnr_db, abs=2.0)
    assert len(scores["truth"].plane_correlation) == ph.raw.shape[0]


def test_consistency_needs_matching_lateral_size():
    with pytest.raises(InputError, match="does not match"):
        consistency(np.zeros((4, 16, 16)), np.zeros((13, 16, 15)), 4.0, 1.0)


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (np.zeros((16, 16)), "dimensions"),
        (np.zeros((4, 32, 32)), "at least 8"),
        (np.full((16, 16, 16), 7.0), "constant"),
        (np.pad(np.full((15, 16, 16), np.nan), ((0, 1), (0, 0), (0, 0))), "NaN"),
    ],
)
def test_check_volume_refuses_what_qc_cannot_measure(data, fragment):
    with pytest.raises(InputError, match=fragment):
        check_volume(data, (1.0, 0.2, 0.2), "stack")


def test_sampling_limited_lateral_on_the_restoration_falls_back_on_the_raw_lateral(monkeypatch):
    """A denoised restoration can read as laterally sharper than its raw stack; isotropy then uses the raw lateral."""
    import dataclasses

    from selfnet.qc import measure

    ph = make_phantom("mix", (64, 64, 64), k=4.0, axial_ratio=3.0, sigma_lateral_px=SIGMA, seed=3, dx_um=0.2)
    ideal = ph.gt_lateral[ph.iso_slice()]
    real = measure.estimate_resolution

    def limited(volume, spacing, **kw):
        res = real(volume, spacing, **kw)
        if kw.get("kz_max") and kw.get("lateral_fwhm_um") is None:  # the restoration, measured freely
            res = dataclasses.replace(res, lateral_um=2 * spacing[2], sampling_limited=("lateral",))
        return res

    monkeypatch.setattr(measure, "estimate_resolution", limited)
    result = compare(ph.raw, ph.spacing_raw, ideal, ph.spacing_iso)
    assert result.after.lateral_um == pytest.approx(result.before.lateral_um)
    assert "excess over the raw lateral" in result.after.note
    assert result.after.isotropy > result.before.isotropy
