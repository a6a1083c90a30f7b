"""The 2D axial kernel: its family, its spectral fit (a cone and tails where the optics have them,
a Gaussian where they do not) and the FFT convolution training applies it with."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage
from torch.nn import functional as F

from selfnet.method.estimate import noise_retention
from selfnet.method.kernel import (
    AxialKernel,
    blur2d,
    fit_axial_kernel,
    kernel_retention,
)
from selfnet.method.resample import degrade_matrix


def test_gaussian_kernel_is_a_z_blur_alone() -> None:
    taps = AxialKernel(2.0).taps()
    r = taps.shape[0] // 2
    assert taps.sum() == pytest.approx(1.0)
    assert np.allclose(taps[:, np.arange(taps.shape[1]) != r], 0.0)  # nothing spreads along x
    assert np.allclose(taps[:, r], taps[::-1, r])


def test_cone_spreads_light_along_x_away_from_focus() -> None:
    kernel = AxialKernel(1.0, tail=0.3, tail_sigma=5.0, cone=1.0)
    taps = kernel.taps()
    r = kernel.radius
    x = np.arange(-r, r + 1)

    def width(row: np.ndarray) -> float:
        return float(np.sqrt((row * x**2).sum() / row.sum()))

    assert taps.sum() == pytest.approx(1.0)
    assert width(taps[r]) < 0.1 < width(taps[r + 4]) < width(taps[r + 8])
    assert np.allclose(taps, taps[::-1]) and np.allclose(taps, taps[:, ::-1])
    assert kernel.profile().sum() == pytest.approx(1.0)


def _images(n: int, seed: int) -> np.ndarray:
    """Isotropic test scenes: sparse points and short random lines seen through a 1 px Gaussian."""
    rng = np.random.default_rng(seed)
    img = np.zeros((n, 128, 128))
    for i in range(n):
        img[i][tuple(rng.integers(0, 128, (2, 60)))] = rng.uniform(0.5, 1.0, 60)
        for _ in range(6):
            a, t = rng.uniform(0, np.pi), np.linspace(-20, 20, 80)
            y0, x0 = rng.uniform(20, 108, 2)
            ys, xs = np.clip(y0 + t * np.sin(a), 0, 127).astype(int), np.clip(x0 + t * np.cos(a), 0, 127).astype(int)
            img[i, ys, xs] += 0.3
    return ndimage.gaussian_filter(img, (0, 1.0, 1.0)).astype(np.float32)


def _fit(kernel: AxialKernel, ratio: float = 3.0) -> tuple[AxialKernel, float] | None:
    """Fit the family to XY_lr patches and axial patches made with ``kernel`` from other scenes."""
    size, m = 48, 36
    crops = [im[y:y + size + 2 * m, x:x + size + 2 * m] for im in _images(24, 0) for y in (0, 8) for x in (0, 8)]
    scenes = torch.from_numpy(np.stack(crops))
    blurred = blur2d(torch.from_numpy(np.stack(
        [im[y:y + size + 2 * m, x:x + size + 2 * m] for im in _images(24, 1) for y in (0, 8) for x in (0, 8)])),
        kernel.taps())
    sampling = torch.from_numpy(degrade_matrix(size + 2 * m, ratio))
    xy_lr = (sampling @ scenes)[:, m:-m, m:-m].numpy()
    axial = (sampling @ blurred)[:, m:-m, m:-m].numpy()
    return fit_axial_kernel(xy_lr, axial, ratio, 1e-6, 9.0)


def test_fit_keeps_a_gaussian_blur_gaussian() -> None:
    fit = _fit(AxialKernel(2.0))
    assert fit is not None
    fitted, evidence = fit
    assert fitted.gaussian and evidence > 0.85  # no tail or cone comes near explaining clearly more
    assert fitted.sigma == pytest.approx(2.0, abs=0.5)


def test_fit_gives_up_without_signal() -> None:
    noise = np.random.default_rng(0).normal(size=(64, 32, 32)).astype(np.float32)
    assert fit_axial_kernel(noise, noise.copy(), 4.0, 1.0, 9.0) is None


def test_blur2d_matches_a_direct_convolution_away_from_the_edges() -> None:
    x = torch.randn(2, 1, 40, 40)
    taps = torch.from_numpy(AxialKernel(1.5, tail=0.3, tail_sigma=4.0, cone=0.8).taps()).float()
    r = taps.shape[0] // 2
    direct = F.conv2d(x, taps.flip(0, 1).view(1, 1, *taps.shape))
    assert torch.allclose(blur2d(x, taps.numpy())[..., r:-r, r:-r], direct, atol=1e-5)


def test_kernel_retention_follows_the_kernel() -> None:
    """A Gaussian keeps what the 1D estimate says; a tail and cone on the same core keep less noise."""
    assert kernel_retention(96, 4.0, AxialKernel(2.0)) == noise_retention(96, 4.0, 2.0)
    hazy = kernel_retention(96, 4.0, AxialKernel(2.0, tail=0.5, tail_sigma=8.0, cone=1.0))
    assert 0.0 < hazy < noise_retention(96, 4.0, 2.0) < 1.0
