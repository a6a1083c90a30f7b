"""Torch modules: the deblurring ResNet, the two CycleGAN generators and the PatchGAN critic.

Images are (batch, 1, rows, cols) with the z (degraded) axis along rows. Modules only; losses
live in :mod:`selfnet.losses` and training loops in :mod:`selfnet.train`.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from selfnet.config import DiscConfig, NetConfig


class ResBlock(nn.Module):
    """conv-ReLU-conv with an identity skip."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(F.relu(self.conv1(x), inplace=True)).add_(x)


class ResNet2d(nn.Module):
    """Residual image-to-image net: optional pixel-unshuffle body, output = input + correction.

    ``unshuffle=2`` runs the body at half resolution with 4x the input channels, which cuts the
    cost per pixel ~4x at equal width while keeping a large receptive field.
    """

    def __init__(self, cfg: NetConfig) -> None:
        super().__init__()
        u = cfg.unshuffle
        self.multiple = u
        self.down = nn.PixelUnshuffle(u) if u > 1 else nn.Identity()
        self.up = nn.PixelShuffle(u) if u > 1 else nn.Identity()
        self.head = nn.Conv2d(u * u, cfg.channels, cfg.head_kernel, padding=cfg.head_kernel // 2)
        self.body = nn.Sequential(*[ResBlock(cfg.channels) for _ in range(cfg.blocks)])
        self.tail = nn.Conv2d(cfg.channels, u * u, 3, padding=1)
        nn.init.zeros_(self.tail.weight)
        nn.init.zeros_(self.tail.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = F.relu(self.head(self.down(x)), inplace=True)
        return x + self.up(self.tail(self.body(feat)))


def gaussian_kernel1d(sigma: float, radius: int) -> torch.Tensor:
    """Normalised 1D Gaussian taps (a delta for sigma ~ 0)."""
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    if sigma < 1e-3:
        return (t == 0).float()
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()


class DegradationGenerator(nn.Module):
    """G_A: XY_lr -> axial-like. Learnable z blur + small residual CNN + signal-dependent noise.

    Output mean = blur(x) + cnn(x); sample = mean + sqrt(gain*mean + read_var) * scale * eps,
    where ``eps`` is white noise passed through the same z down/up-sampling as the data, so the
    injected noise has the correlation of real interpolated axial noise. The blur and noise
    parameters start at the values estimated from the stack (:mod:`selfnet.estimate`).
    """

    def __init__(self, channels: int, *, sigma: float = 1.0, radius: int = 12, gain: float = 0.0,
                 read_var: float = 1e-4, noise_scale: float = 1.0) -> None:
        super().__init__()
        self.kernel = nn.Parameter(gaussian_kernel1d(sigma, radius).view(1, 1, -1, 1))
        self.radius = radius
        self.cnn = nn.Sequential(
            nn.Conv2d(1, channels, 3, padding=1), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(channels, channels, 3, padding=1), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(channels, 1, 3, padding=1),
        )
        nn.init.zeros_(self.cnn[-1].weight)
        nn.init.zeros_(self.cnn[-1].bias)
        self.log_gain = nn.Parameter(torch.tensor(math.log(max(gain, 1e-8))))
        self.log_read = nn.Parameter(torch.tensor(math.log(max(read_var, 1e-10))))
        self.log_scale = nn.Parameter(torch.tensor(math.log(max(noise_scale, 1e-3))))

    def taps(self) -> torch.Tensor:
        """The z kernel normalised to unit sum and projected to zero centroid (shape (1, 1, 2r+1, 1)).

        Unpaired learning cannot tell where an axial slice's z origin is (a critic sees a shifted
        slice as just as real), so a free kernel may drift off centre, and D then learns to move
        objects back by as much. Removing the kernel's first moment pins the origin while keeping
        any skew (asymmetric axial PSFs); the linear ramp removed sums to zero, so the sum stays 1.
        The raw taps are clamped non-negative before normalising (a blur's are): free signs let their sum
        approach zero, and the normalised kernel then grew large taps of both signs (a sharpening, not a
        blur) in long stage-1 runs. Only the centroid projection can leave small negative taps.
        """
        k = self.kernel.clamp(min=0.0)
        k = k / k.sum().clamp(min=1e-8)
        t = torch.arange(-self.radius, self.radius + 1, dtype=k.dtype, device=k.device).view(1, 1, -1, 1)
        return k - t * (k * t).sum() / (t * t).sum()

    @torch.no_grad()
    def project_(self) -> None:
        """Put raw taps pushed below zero back at zero after an optimiser step (projected gradient).

        The clamp in :meth:`taps` alone passes no gradient to a negative raw tap, so one step that pushes
        a tap below zero froze it there for good: every side tap of the identity start died in the first
        steps and the learned kernel stayed the identity. At zero a tap can grow again.
        """
        self.kernel.clamp_(min=0.0)

    def blur(self, x: torch.Tensor) -> torch.Tensor:
        """Convolve along rows with the learned zero-centroid kernel."""
        xp = F.pad(x, (0, 0, self.radius, self.radius), mode="replicate")
        return F.conv2d(xp, self.taps())

    def mean(self, x: torch.Tensor) -> torch.Tensor:
        """Deterministic part of the degradation (used by cycle losses)."""
        return self.mean_and_residual(x)[0]

    def mean_and_residual(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Deterministic output and the CNN's share of it (penalised to keep G_A near the physics)."""
        residual = self.cnn(x)
        return self.blur(x) + residual, residual

    def noise_std(self, mean: torch.Tensor) -> torch.Tensor:
        """Per-pixel standard deviation of the injected noise."""
        var = self.log_gain.exp() * mean.clamp(min=0) + self.log_read.exp()
        return var.sqrt() * self.log_scale.exp()

    def forward(self, x: torch.Tensor, eps: torch.Tensor | None = None) -> torch.Tensor:
        mean = self.mean(x)
        return mean if eps is None else mean + self.noise_std(mean.detach()) * eps


class PatchDiscriminator(nn.Module):
    """PatchGAN critic (LSGAN): stride-2 4x4 convs, instance norm, one score per receptive field."""

    def __init__(self, cfg: DiscConfig) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(1, cfg.channels, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True)]
        ch = cfg.channels
        for _ in range(cfg.layers - 1):
            layers += [nn.Conv2d(ch, ch * 2, 4, 2, 1), nn.InstanceNorm2d(ch * 2), nn.LeakyReLU(0.2, inplace=True)]
            ch *= 2
        layers.append(nn.Conv2d(ch, 1, 3, 1, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
