"""Loss functions of both stages: Charbonnier, SSIM, LSGAN."""

from __future__ import annotations

import functools

import torch


def charbonnier(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """Smooth L1-like loss ``mean(sqrt((p - t)^2 + eps^2))`` (robust to outliers, smooth at 0)."""
    return torch.sqrt((pred - target) ** 2 + eps * eps).mean()


@functools.lru_cache(maxsize=16)
def _window_matrix(n: int, device: torch.device, dtype: torch.dtype, size: int = 11,
                   sigma: float = 1.5) -> torch.Tensor:
    """(n - size + 1, n) banded matrix: 1D Gaussian window sums at every valid position."""
    t = torch.arange(size, dtype=torch.float64) - size // 2
    g = torch.exp(-0.5 * (t / sigma) ** 2)
    rows = torch.arange(n - size + 1)
    m = torch.zeros(n - size + 1, n, dtype=torch.float64)
    m[rows[:, None], rows[:, None] + torch.arange(size)] = g / g.sum()
    return m.to(device=device, dtype=dtype)


def ssim(pred: torch.Tensor, target: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Mean structural similarity of two (B, 1, H, W) batches, Gaussian window 11 / sigma 1.5.

    The separable window runs as two banded matrix products on all five moment maps at once:
    ~18x faster than 11x11 single-channel convolutions on a CPU (forward and backward).
    """
    b, _, h, w = pred.shape
    rows = _window_matrix(h, pred.device, pred.dtype)
    cols = _window_matrix(w, pred.device, pred.dtype)
    moments = rows @ torch.cat([pred, target, pred * pred, target * target, pred * target]) @ cols.T
    mu_p, mu_t, pp, tt, pt = moments.split(b)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    var_p, var_t, cov = pp - mu_p**2, tt - mu_t**2, pt - mu_p * mu_t
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
