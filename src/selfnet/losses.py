"""Loss functions of both stages: Charbonnier, SSIM, LSGAN."""

from __future__ import annotations

import torch
from torch.nn import functional as F


def charbonnier(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """Smooth L1-like loss ``mean(sqrt((p - t)^2 + eps^2))`` (robust to outliers, smooth at 0)."""
    return torch.sqrt((pred - target) ** 2 + eps * eps).mean()


def _gauss_window(size: int = 11, sigma: float = 1.5, device: torch.device | None = None) -> torch.Tensor:
    t = torch.arange(size, dtype=torch.float32, device=device) - size // 2
    g = torch.exp(-0.5 * (t / sigma) ** 2)
    g = g / g.sum()
    return (g[:, None] * g[None, :]).view(1, 1, size, size)


def ssim(pred: torch.Tensor, target: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Mean structural similarity of two (B, 1, H, W) batches, Gaussian window 11 / sigma 1.5."""
    w = _gauss_window(device=pred.device).to(pred.dtype)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mu_p, mu_t = F.conv2d(pred, w), F.conv2d(target, w)
    var_p = F.conv2d(pred * pred, w) - mu_p**2
    var_t = F.conv2d(target * target, w) - mu_t**2
    cov = F.conv2d(pred * target, w) - mu_p * mu_t
    num = (2 * mu_p * mu_t + c1) * (2 * cov + c2)
    den = (mu_p**2 + mu_t**2 + c1) * (var_p + var_t + c2)
    return (num / den).mean()


def restoration_loss(pred: torch.Tensor, target: torch.Tensor, ssim_weight: float) -> torch.Tensor:
    """Charbonnier + ``ssim_weight`` * (1 - SSIM), the paper's deblurring loss."""
    loss = charbonnier(pred, target)
    if ssim_weight > 0:
        loss = loss + ssim_weight * (1.0 - ssim(pred, target))
    return loss


def lsgan(scores: torch.Tensor, real: bool) -> torch.Tensor:
    """Least-squares GAN loss towards 1 (real) or 0 (fake)."""
    return ((scores - (1.0 if real else 0.0)) ** 2).mean()
