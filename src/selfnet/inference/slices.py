"""What every restore shares: ratio checks, batch sizes, the cancel check and the one forward pass of D.

The slice runner itself is :mod:`selfnet.inference.block`; a whole-volume restore
(:mod:`selfnet.inference.restore`) is its one-block case, so the two cannot drift.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch

from selfnet.errors import ModelError

VIEWS = ("xz", "yz")
RATIO_WARN = 0.10
RATIO_REFUSE = 0.50
ProgressFn = Callable[[int, int], None]


def check_ratio(model_ratio: float, volume_ratio: float, *, force: bool = False) -> None:
    """Warn when the stack's z/xy ratio differs from the model's by >10 %; refuse beyond 50 %."""
    rel = abs(volume_ratio - model_ratio) / model_ratio
    if rel > RATIO_REFUSE and not force:
        raise ModelError(
            f"model was trained for z/xy ratio {model_ratio:.2f} but this stack has {volume_ratio:.2f}: "
            "train a model on this kind of stack (or pass --force)")
    if rel > RATIO_WARN:
        warnings.warn(f"stack ratio {volume_ratio:.2f} differs from the model's {model_ratio:.2f} "
                      f"by {rel:.0%}: results may be degraded", stacklevel=2)


def batch_pixels_for(device: torch.device) -> int:
    """Pixels per inference batch: small on CPU (activations stay in cache), large on accelerators."""
    return 1 << 17 if device.type == "cpu" else 1 << 22


def forward(net: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """One inference pass on a (B, 1, rows, cols) batch; float16 autocast on CUDA, float32 elsewhere."""
    x = x.contiguous(memory_format=torch.channels_last)
    if x.device.type == "cuda":
        with torch.autocast("cuda", dtype=torch.float16):
            return net(x).float()
    return net(x)
