"""Inference: z-interpolate, run D on every XZ and every YZ slice, fuse, undo normalisation."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import torch
from torch.nn import functional as F

from selfnet.errors import ModelError
from selfnet.model import Model
from selfnet.sampling import Normalizer, n_iso, zinterp

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


def _pad_amounts(n: int, margin: int, multiple: int) -> tuple[int, int]:
    total = n + 2 * margin
    extra = (-total) % multiple
    return margin, margin + extra


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


@torch.inference_mode()
def apply_to_slices(net: torch.nn.Module, slices: np.ndarray, device: torch.device, *,
                    margin: int = 8, multiple: int = 1) -> np.ndarray:
    """Run a 2D net on a (B, rows, cols) float32 stack; reflect-padded so borders are clean."""
    x = torch.from_numpy(np.ascontiguousarray(slices)).to(device).unsqueeze(1)
    b, _, r, c = x.shape
    pr, pc = _pad_amounts(r, min(margin, r - 1), multiple), _pad_amounts(c, min(margin, c - 1), multiple)
    x = F.pad(x, (pc[0], pc[1], pr[0], pr[1]), mode="reflect")
    y = forward(net, x)[:, 0, pr[0] : pr[0] + r, pc[0] : pc[0] + c]
    return y.cpu().numpy()


def restore_normalized(iso: np.ndarray, net: torch.nn.Module, device: torch.device, *,
                       views: tuple[str, ...] = VIEWS, batch_pixels: int | None = None,
                       on_progress: ProgressFn | None = None) -> np.ndarray:
    """Deblur a normalised isotropic-grid volume slice by slice along the chosen views and average."""
    zi, y, x = iso.shape
    out = np.zeros_like(iso, dtype=np.float32)
    multiple = getattr(net, "multiple", 1)
    batch_pixels = batch_pixels or batch_pixels_for(device)
    plans = {"xz": (y, zi * x), "yz": (x, zi * y)}
    total = sum(plans[v][0] for v in views)
    done = 0
    for view in views:
        count, pixels = plans[view]
        step = max(1, batch_pixels // pixels)
        for s0 in range(0, count, step):
            s1 = min(count, s0 + step)
            if view == "xz":
                res = apply_to_slices(net, iso[:, s0:s1, :].transpose(1, 0, 2), device, multiple=multiple)
                out[:, s0:s1, :] += res.transpose(1, 0, 2)
            else:
                res = apply_to_slices(net, iso[:, :, s0:s1].transpose(2, 0, 1), device, multiple=multiple)
                out[:, :, s0:s1] += res.transpose(1, 2, 0)
            done += s1 - s0
            if on_progress:
                on_progress(done, total)
    out /= len(views)
    return out


def restore_volume(volume: np.ndarray, spacing: tuple[float, float, float], model: Model,
                   device: torch.device, *, views: tuple[str, ...] = VIEWS, force: bool = False,
                   on_progress: ProgressFn | None = None) -> tuple[np.ndarray, tuple[float, float, float]]:
    """Restore a raw ZYX stack to an isotropic float32 volume on the input's intensity scale.

    Returns the volume and its spacing ``(dx, dy, dx)``: every axis gets the lateral pixel size.
    """
    ratio = spacing[0] / spacing[2]
    check_ratio(model.ratio, ratio, force=force)
    normalizer = Normalizer.fit(volume, model.config.norm_percentiles)
    iso = zinterp(normalizer(volume), ratio)
    assert iso.shape[0] == n_iso(volume.shape[0], ratio)
    net = model.deblur_net(device)
    out = restore_normalized(iso, net, device, views=views, on_progress=on_progress)
    del iso
    return normalizer.inverse(out), (spacing[2], spacing[1], spacing[2])


def interpolate_volume(volume: np.ndarray, spacing: tuple[float, float, float]) -> np.ndarray:
    """Cubic z-interpolation onto the isotropic grid: the baseline selfnet must beat."""
    return zinterp(volume, spacing[0] / spacing[2])
