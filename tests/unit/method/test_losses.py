"""Losses: the fast SSIM equals the textbook 11x11 Gaussian-window definition."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from selfnet.method.losses import charbonnier, restoration_loss, ssim


def _ssim_by_2d_convolution(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    t = torch.arange(11, dtype=torch.float64) - 5
    g = torch.exp(-0.5 * (t / 1.5) ** 2)
    w = ((g[:, None] * g[None, :]) / g.sum() ** 2).view(1, 1, 11, 11)
    mu_p, mu_t = F.conv2d(pred, w), F.conv2d(target, w)
    var_p, var_t = F.conv2d(pred * pred, w) - mu_p**2, F.conv2d(target * target, w) - mu_t**2
    cov = F.conv2d(pred * target, w) - mu_p * mu_t
    c1, c2 = 0.01**2, 0.03**2
    return ((2 * mu_p * mu_t + c1) * (2 * cov + c2) / ((mu_p**2 + mu_t**2 + c1) * (var_p + var_t + c2))).mean()


@pytest.mark.parametrize("shape", [(4, 1, 64, 64), (2, 1, 40, 24)])
def test_ssim_matches_the_2d_window_definition(shape: tuple[int, int, int, int]) -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(shape, generator=gen, dtype=torch.float64)
    y = x + 0.1 * torch.randn(shape, generator=gen, dtype=torch.float64)
    assert float(ssim(x, y)) == pytest.approx(float(_ssim_by_2d_convolution(x, y)), abs=1e-10)
    assert float(ssim(x, x)) == pytest.approx(1.0)
    assert float(ssim(x, y)) < 0.99


def test_ssim_gradient_points_towards_the_target() -> None:
    gen = torch.Generator().manual_seed(1)
    target = torch.rand(2, 1, 32, 32, generator=gen)
    pred = (target + 0.2 * torch.randn(target.shape, generator=gen)).requires_grad_(True)
    before = float(restoration_loss(pred, target, 0.1).detach())
    restoration_loss(pred, target, 0.1).backward()
    with torch.no_grad():
        pred -= 0.5 * pred.grad / pred.grad.abs().max()
    assert float(restoration_loss(pred, target, 0.1).detach()) < before
    assert float(charbonnier(target, target)) == pytest.approx(1e-3)
