"""Exact restoring of one output block from the raw planes and halo it needs.

The z-interpolation rows are the whole-volume matrix rows restricted to the raw planes they touch,
so stitched blocks equal whole-volume restoring (up to float rounding).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from selfnet.errors import InputError
from selfnet.inference.plan import BlockPlan, Window, axis_window
from selfnet.inference.slices import VIEWS, ProgressFn, batch_pixels_for, forward
from selfnet.io.source import read_region
from selfnet.method.normalize import Normalizer
from selfnet.method.resample import resample_matrix


def _interp_rows(n_raw: int, ratio: float, start: int, stop: int) -> tuple[np.ndarray, int, int]:
    """Rows ``start:stop`` of the z-interpolation matrix, restricted to the raw planes they use."""
    w = resample_matrix(n_raw, np.arange(start, stop) / ratio)
    used = np.flatnonzero(np.any(w != 0, axis=0))
    r0, r1 = int(used.min()), int(used.max()) + 1
    return np.ascontiguousarray(w[:, r0:r1]), r0, r1


@torch.inference_mode()
def _run_net(net: nn.Module, slices: torch.Tensor, device: torch.device, rows: Window, cols: Window) -> np.ndarray:
    x = slices.contiguous().to(device).unsqueeze(1)
    (rb, ra), (cb, ca) = rows.reflect, cols.reflect
    if rb or ra or cb or ca:
        x = F.pad(x, (cb, ca, rb, ra), mode="reflect")
    if rows.extra or cols.extra:
        x = F.pad(x, (0, cols.extra, 0, rows.extra))
    y = forward(net, x)[:, 0, rows.keep, cols.keep]
    return y.cpu().numpy()


def _pass(out: np.ndarray, raw: np.ndarray, w: np.ndarray, normalizer: Normalizer, net: nn.Module,
          device: torch.device, wz: Window, lateral: Window, view: str, batch_pixels: int,
          tick: Callable[[int], None]) -> None:
    """Add the net's output over all XZ (or YZ) slices of ``raw`` into ``out``; ``tick(n)`` after each batch."""
    axis = 1 if view == "xz" else 2
    count = raw.shape[axis]
    step = max(1, batch_pixels // (w.shape[0] * raw.shape[3 - axis]))
    weights = torch.from_numpy(w)
    for s0 in range(0, count, step):
        s1 = min(count, s0 + step)
        part = raw[:, s0:s1] if axis == 1 else raw[:, :, s0:s1]
        # z-interpolation in torch: numpy's BLAS threads would spin between batches and halve the
        # speed of the convolutions that share the cores with them
        iso = torch.tensordot(weights, torch.from_numpy(normalizer(part)), dims=([1], [0]))
        if view == "xz":
            out[:, s0:s1, :] += _run_net(net, iso.permute(1, 0, 2), device, wz, lateral).transpose(1, 0, 2)
        else:
            out[:, :, s0:s1] += _run_net(net, iso.permute(2, 0, 1), device, wz, lateral).transpose(1, 2, 0)
        tick(s1 - s0)


def restore_block(data: Any, plan: BlockPlan, index: Sequence[int], net: nn.Module, device: torch.device,
                  normalizer: Normalizer, *, views: tuple[str, ...] = VIEWS, batch_pixels: int | None = None,
                  on_progress: ProgressFn | None = None, cancel: Any = None) -> np.ndarray:
    """Restore one output block (float32, on the input's intensity scale) from the raw ``data``.

    ``on_progress(done, total)`` counts slices; ``cancel`` (a :class:`~selfnet.errors.CancelToken`)
    is checked between batches.
    """
    zr, yr, xr = plan.region(index)
    nz, ny, nx = plan.out_shape
    batch_pixels = batch_pixels or batch_pixels_for(device)
    wz = axis_window(zr.start, zr.stop, nz, plan.halo, plan.multiple)
    wy = axis_window(yr.start, yr.stop, ny, plan.halo, plan.multiple)
    wx = axis_window(xr.start, xr.stop, nx, plan.halo, plan.multiple)
    w, r0, r1 = _interp_rows(plan.raw_shape[0], plan.ratio, wz.start, wz.stop)
    y0, y1 = (wy.start, wy.stop) if "yz" in views else (yr.start, yr.stop)
    x0, x1 = (wx.start, wx.stop) if "xz" in views else (xr.start, xr.stop)
    raw = read_region(data, (slice(r0, r1), slice(y0, y1), slice(x0, x1)))
    if raw.dtype.kind == "f" and not np.isfinite(raw).all():
        raise InputError(f"the input contains NaN or Inf values (near z {r0}-{r1}, y {y0}-{y1}, x {x0}-{x1})")
    out = np.zeros((zr.stop - zr.start, yr.stop - yr.start, xr.stop - xr.start), dtype=np.float32)
    total = sum(out.shape[1] if view == "xz" else out.shape[2] for view in views)
    done = [0]

    def tick(n: int) -> None:
        done[0] += n
        if on_progress:
            on_progress(done[0], total)
        if cancel is not None:
            cancel.raise_if_cancelled()

    for view in views:
        if view == "xz":
            sub = raw[:, yr.start - y0 : yr.stop - y0, wx.start - x0 : wx.stop - x0]
            _pass(out, sub, w, normalizer, net, device, wz, wx, "xz", batch_pixels, tick)
        else:
            sub = raw[:, wy.start - y0 : wy.stop - y0, xr.start - x0 : xr.stop - x0]
            _pass(out, sub, w, normalizer, net, device, wz, wy, "yz", batch_pixels, tick)
    out /= len(views)
    return normalizer.inverse(out)
