"""How the isotropic output is cut into blocks, and how wide each block's halo must be.

A block's network input extends by a halo at least as wide as the net's receptive field (measured
on an impulse); reflect padding only at the true volume border, origins on multiples of the
pixel-unshuffle factor. ``is_large`` decides when a volume is restored block by block at all.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from selfnet.errors import ConfigError
from selfnet.io import Volume
from selfnet.method.resample import n_iso

MARGIN = 8
"""Reflect padding at a slice's true borders; must equal ``restore.apply_to_slices``'s margin."""
DEFAULT_BLOCK = (256, 256, 256)
AUTO_CHUNK_VOXELS = 128_000_000
"""Outputs larger than this (isotropic voxels) are restored block by block automatically."""


@dataclass(frozen=True)
class Window:
    """Where a block's network input lies along one axis.

    Real data ``[start, stop)`` are reflect-padded by ``reflect`` (only at true borders), then
    zero-padded by ``extra`` at an interior end so the length is a multiple of the unshuffle
    factor; ``keep`` selects the block's own outputs in the padded tensor.
    """

    start: int
    stop: int
    reflect: tuple[int, int]
    extra: int
    keep: slice


def axis_window(c0: int, c1: int, n: int, halo: int, multiple: int) -> Window:
    """Input window for outputs ``[c0, c1)`` of an axis of length ``n`` (see :class:`Window`)."""
    m = min(MARGIN, n - 1)
    start, before = (0, m) if c0 - halo <= 0 else (c0 - halo, 0)
    if c1 + halo >= n:
        stop, after, extra = n, m + (-(n + 2 * m)) % multiple, 0
    else:
        stop, after = c1 + halo, 0
        extra = (-(before + stop - start)) % multiple
    return Window(start, stop, (before, after), extra, slice(c0 - start + before, c1 - start + before))


@dataclass(frozen=True)
class BlockPlan:
    """How the isotropic output of a raw ``raw_shape`` stack is cut into blocks."""

    raw_shape: tuple[int, int, int]
    ratio: float
    block: tuple[int, int, int]
    halo: int
    multiple: int

    @property
    def out_shape(self) -> tuple[int, int, int]:
        """Shape of the isotropic output (ZYX)."""
        z, y, x = self.raw_shape
        return n_iso(z, self.ratio), y, x

    @property
    def grid(self) -> tuple[int, int, int]:
        """Number of blocks along z, y and x."""
        return tuple(-(-n // b) for n, b in zip(self.out_shape, self.block))  # type: ignore[return-value]

    def indices(self) -> list[tuple[int, int, int]]:
        """All block indices in z-major order."""
        return [tuple(int(i) for i in idx) for idx in np.ndindex(*self.grid)]  # type: ignore[misc]

    def region(self, index: Sequence[int]) -> tuple[slice, slice, slice]:
        """Output region of block ``index``."""
        return tuple(slice(i * b, min((i + 1) * b, n))  # type: ignore[return-value]
                     for i, b, n in zip(index, self.block, self.out_shape))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (stored in the output's attributes for --resume)."""
        return json.loads(json.dumps(asdict(self)))


def parse_block(text: str | Sequence[int] | None, multiple: int = 2) -> tuple[int, int, int]:
    """``"256"`` or ``"128,512,512"`` (z,y,x output voxels) -> a checked block shape."""
    if text is None:
        return DEFAULT_BLOCK
    try:
        parts = [int(p) for p in str(text).replace("x", ",").split(",")] if isinstance(text, str) else list(text)
    except ValueError:
        raise ConfigError(f"--block must be N or Z,Y,X (voxels), got {text!r}") from None
    if len(parts) == 1:
        parts = parts * 3
    step = max(8, multiple)
    if len(parts) != 3 or any(p < 16 or p % step for p in parts):
        raise ConfigError(f"--block sizes must be three multiples of {step} of at least 16, got {text!r}")
    return parts[0], parts[1], parts[2]


def receptive_radius(net: nn.Module, *, limit: int = 2048) -> int:
    """Receptive-field radius of a 2D net in pixels, measured from an impulse response.

    All conv weights of a copy are made positive (biases zero), so every input pixel that can
    influence an output does: the non-zero extent of the response is the structural field.
    """
    probe = copy.deepcopy(net).cpu().double().eval()
    with torch.no_grad():
        for mod in probe.modules():
            if isinstance(mod, nn.Conv2d):
                mod.weight.fill_(1.0 / mod.weight[0].numel())
                if mod.bias is not None:
                    mod.bias.zero_()
    size = 64
    while True:
        radius = max(_impulse_extent(probe, size, shift) for shift in (0, 1))
        if radius < size // 4 or size >= limit:
            return radius
        size *= 2


@torch.no_grad()
def _impulse_extent(net: nn.Module, size: int, shift: int) -> int:
    x = torch.zeros(1, 1, size, size, dtype=torch.float64)
    c = size // 2 + shift
    x[0, 0, c, c] = 1.0
    y = (net(x) - x)[0, 0].abs() > 0
    rows, cols = torch.nonzero(y, as_tuple=True)
    if len(rows) == 0:
        return 0
    return int(max((rows - c).abs().max(), (cols - c).abs().max()))


def choose_halo(net: nn.Module) -> int:
    """Halo (px) for exact block restoring: receptive radius plus a little, a multiple of 8."""
    multiple = int(getattr(net, "multiple", 1))
    radius = receptive_radius(net) + multiple
    return max(16, -(-radius // 8) * 8)


def output_voxels(vol: Volume) -> int:
    """Voxels of the isotropic output of ``vol``."""
    z, y, x = (int(n) for n in vol.data.shape)
    return n_iso(z, vol.spacing[0] / vol.spacing[2]) * y * x


def is_large(vol: Volume) -> bool:
    """Whether ``vol`` should be restored block by block (and trained on a subset)."""
    return output_voxels(vol) > AUTO_CHUNK_VOXELS
