"""Noise and axial-blur estimates are checked against a phantom whose PSF and noise are known."""

import numpy as np
from scipy import ndimage

from selfnet.method.estimate import estimate_axial_blur, estimate_noise, noise_retention
from selfnet.method.normalize import Normalizer
from selfnet.method.resample import degrade_matrix, zinterp
from selfnet.phantoms.synthetic import make_phantom
from selfnet.training.patches import sample_axial_patches, sample_xy_patches


def test_noise_model_recovers_poisson_gaussian():
    rng = np.random.default_rng(0)
    signal = np.broadcast_to(np.linspace(20, 500, 96), (8, 96, 96)) + 30 * ndimage.gaussian_filter(rng.random((8, 96, 96)), 4)
    noisy = rng.poisson(signal) + rng.normal(0, 3, signal.shape)
    model = estimate_noise(noisy.astype(np.float32))
    assert abs(model.gain - 1.0) < 0.2
    assert model.read_var < 40


def test_axial_blur_estimate_matches_phantom_psf():
    ph = make_phantom("neurites", (96, 96, 96), k=4.0, axial_ratio=3.0, sigma_lateral_px=1.0, photons=300, seed=3)
    vol = Normalizer.fit(ph.raw, (0.1, 99.99))(ph.raw)
    rng = np.random.default_rng(0)
    size, margin = 48, 10
    xy = sample_xy_patches(vol, 512, size + 2 * margin, rng=rng)
    xy_lr = (degrade_matrix(size + 2 * margin, 4.0) @ xy[:, :, margin:-margin])[:, margin:-margin]
    axial = sample_axial_patches(zinterp(vol, 4.0), 512, size, rng=rng)
    noise = estimate_noise(vol)
    sigma = estimate_axial_blur(xy_lr, axial, 4.0, float(noise.variance(xy.mean())))
    truth = np.sqrt(3.0**2 - 1.0**2)  # extra blur beyond the lateral PSF
    assert abs(sigma - truth) / truth < 0.25


def test_noise_retention_decreases_with_blur():
    assert noise_retention(32, 4.0, 0.0) == 1.0
    assert 0 < noise_retention(32, 4.0, 3.0) < noise_retention(32, 4.0, 1.0) < 1
