"""Self-Net as one portable torch module: z-interpolate, deblur every XZ and YZ slice, fuse.

This file is shipped verbatim inside bioimage.io packages as the ``pytorch_state_dict``
architecture, so it imports nothing but torch and is TorchScript-able. It works on normalised
intensities (the package declares the percentile scaling around it) and reproduces
``selfnet.inference.block.restore_block`` for a whole volume: the same Keys cubic z-interpolation
matrix (edges replicated, rows summing to one), the same reflect margin and unshuffle padding
per slice, the mean of the two views. Tensors are (batch, channel, z, y, x); every
batch/channel image is restored on its own.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

MARGIN = 8
"""Reflect padding at a slice's borders (as ``selfnet.inference.plan.MARGIN``)."""
SLICE_PIXELS = 1 << 20
"""Pixels per batch of slices through the net (bounds the activations' memory)."""


class _ResBlock(nn.Module):
    """conv-ReLU-conv with an identity skip (same parameter names as selfnet's ResBlock)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv2(F.relu(self.conv1(x))) + x


class DeblurNet(nn.Module):
    """The deblurring net D: optional pixel-unshuffle body, output = input + correction."""

    def __init__(self, channels: int, blocks: int, unshuffle: int, head_kernel: int) -> None:
        super().__init__()
        u = unshuffle
        self.down = nn.PixelUnshuffle(u) if u > 1 else nn.Identity()
        self.up = nn.PixelShuffle(u) if u > 1 else nn.Identity()
        self.head = nn.Conv2d(u * u, channels, head_kernel, padding=head_kernel // 2)
        self.body = nn.Sequential(*[_ResBlock(channels) for _ in range(blocks)])
        self.tail = nn.Conv2d(channels, u * u, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        feat = F.relu(self.head(self.down(x)))
        return x + self.up(self.tail(self.body(feat)))


def keys_weights(t: Tensor) -> Tensor:
    """Keys cubic-convolution kernel (a = -0.5) at offsets ``t``."""
    a = -0.5
    t = t.abs()
    near = (a + 2.0) * t**3 - (a + 3.0) * t**2 + 1.0
    far = a * t**3 - 5.0 * a * t**2 + 8.0 * a * t - 4.0 * a
    w = torch.where(t <= 1.0, near, far)
    return torch.where(t < 2.0, w, torch.zeros_like(w))


def z_matrix(n_in: int, n_out: int, ratio: float) -> Tensor:
    """(n_out, n_in) float32 matrix sampling ``n_in`` planes at ``arange(n_out) / ratio`` (as selfnet's)."""
    pos = torch.arange(n_out, dtype=torch.float64) / ratio
    base = torch.floor(pos)
    w = torch.zeros(n_out, n_in, dtype=torch.float64)
    for offset in [-1, 0, 1, 2]:
        idx = base + float(offset)
        weight = keys_weights(pos - idx)
        w.scatter_add_(1, idx.clamp(0, n_in - 1).long().unsqueeze(1), weight.unsqueeze(1))
    nearest = torch.round(pos)
    exact = (pos - nearest).abs() <= 1e-9 + 1e-5 * nearest.abs()
    onehot = torch.zeros(n_out, n_in, dtype=torch.float64)
    onehot.scatter_(1, nearest.clamp(0, n_in - 1).long().unsqueeze(1), 1.0)
    w = torch.where(exact.unsqueeze(1), onehot, w)
    return (w / w.sum(dim=1, keepdim=True)).float()


def _pads(n: int, multiple: int, margin: int) -> list[int]:
    """[before, after] reflect padding of a slice axis of length ``n``: the margin, then up to a multiple."""
    m = min(margin, n - 1)
    extra = (multiple - (n + 2 * m) % multiple) % multiple
    return [m, m + extra]


class IsotropicRestorer(nn.Module):
    """Normalised (B, C, Z, Y, X) stack in, isotropic normalised stack out.

    With ``interpolate`` the input is the raw stack (z step ``z_scale_in``, pixel ``z_scale_out``)
    and the output has ``int(Z * z_scale_in / z_scale_out + z_offset)`` planes, the first planes of
    selfnet's isotropic grid (restored on the whole grid, so they equal ``selfnet restore``); without it the input is already on the isotropic grid and keeps its size.
    """

    def __init__(self, channels: int = 32, blocks: int = 4, unshuffle: int = 2, head_kernel: int = 3,
                 ratio: float = 1.0, interpolate: bool = True, z_scale_in: float = 1.0, z_scale_out: float = 1.0,
                 z_offset: int = 0) -> None:
        super().__init__()
        self.net = DeblurNet(channels, blocks, unshuffle, head_kernel)
        self.multiple = int(unshuffle)
        self.ratio = float(ratio)
        self.interpolate = bool(interpolate)
        self.z_scale_in = float(z_scale_in)
        self.z_scale_out = float(z_scale_out)
        self.z_offset = int(z_offset)
        self.margin = MARGIN
        self.slice_pixels = SLICE_PIXELS

    def n_out(self, n_in: int) -> int:
        """Output planes for ``n_in`` input planes (the package's size formula, evaluated identically)."""
        if not self.interpolate:
            return n_in
        return int(n_in * self.z_scale_in / self.z_scale_out + self.z_offset)

    def n_grid(self, n_in: int) -> int:
        """Planes of selfnet's full isotropic grid (``selfnet.method.resample.n_iso``); the net sees all of them."""
        return math.floor((n_in - 1) * self.ratio + 1e-6) + 1

    def _slices(self, s: Tensor) -> Tensor:
        """Run the net on (N, 1, rows, cols) slices with selfnet's border padding, in bounded batches."""
        rows, cols = s.shape[2], s.shape[3]
        pr, pc = _pads(rows, self.multiple, self.margin), _pads(cols, self.multiple, self.margin)
        step = max(1, self.slice_pixels // ((rows + pr[0] + pr[1]) * (cols + pc[0] + pc[1])))
        parts: list[Tensor] = []
        for s0 in range(0, s.shape[0], step):
            x = F.pad(s[s0 : s0 + step], [pc[0], pc[1], pr[0], pr[1]], mode="reflect")
            y = self.net(x)
            parts.append(y[:, :, pr[0] : pr[0] + rows, pc[0] : pc[0] + cols])
        return torch.cat(parts, dim=0)

    def _view(self, v: Tensor, xz: bool) -> Tensor:
        """Restore all XZ (``xz``) or YZ slices of a (N, Z, Y, X) volume."""
        n, z, y, x = v.shape[0], v.shape[1], v.shape[2], v.shape[3]
        if xz:
            s = v.permute(0, 2, 1, 3).reshape(n * y, 1, z, x)
            return self._slices(s).reshape(n, y, z, x).permute(0, 2, 1, 3)
        s = v.permute(0, 3, 1, 2).reshape(n * x, 1, z, y)
        return self._slices(s).reshape(n, x, z, y).permute(0, 2, 3, 1)

    def forward(self, input: Tensor) -> Tensor:
        b, c, z, y, x = input.shape[0], input.shape[1], input.shape[2], input.shape[3], input.shape[4]
        v = input.float().reshape(b * c, z, y, x)
        n = z
        if self.interpolate:
            w = z_matrix(z, self.n_grid(z), self.ratio).to(v.device)
            v = torch.matmul(w, v.reshape(b * c, z, y * x)).reshape(b * c, w.shape[0], y, x)
            n = min(self.n_out(z), w.shape[0])
        out = (self._view(v, True) + self._view(v, False)) * 0.5
        return out[:, :n].reshape(b, c, n, y, x)
