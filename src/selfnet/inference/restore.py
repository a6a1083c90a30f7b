"""Whole-volume restoring in RAM: the one-block case of the block plan, so it shares the slice runner."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from selfnet.inference.block import restore_block
from selfnet.inference.plan import BlockPlan
from selfnet.inference.slices import VIEWS, ProgressFn, check_ratio
from selfnet.method.normalize import Normalizer, fit_normalizer
from selfnet.method.resample import n_iso, zinterp
from selfnet.model import Model

Spacing = tuple[float, float, float]


def restore_volume(volume: Any, spacing: Spacing, model: Model, device: torch.device, *,
                   normalizer: Normalizer | None = None, views: tuple[str, ...] = VIEWS, force: bool = False,
                   on_progress: ProgressFn | None = None, cancel: Any = None) -> tuple[np.ndarray, Spacing]:
    """Restore a raw ZYX stack to an isotropic float32 volume on the input's intensity scale.

    ``normalizer`` is the stack's (:func:`~selfnet.method.normalize.fit_normalizer` when omitted).
    Returns the volume and its spacing ``(dx, dy, dx)``: every axis gets the lateral pixel size.
    """
    ratio = spacing[0] / spacing[2]
    check_ratio(model.ratio, ratio, force=force)
    normalizer = normalizer or fit_normalizer(volume, model.config.norm_percentiles)
    net = model.deblur_net(device)
    plan = one_block_plan(tuple(int(n) for n in volume.shape), ratio, int(getattr(net, "multiple", 1)))
    out = restore_block(volume, plan, (0, 0, 0), net, device, normalizer, views=views, on_progress=on_progress,
                        cancel=cancel)
    return out, (spacing[2], spacing[1], spacing[2])


def one_block_plan(raw_shape: tuple[int, ...], ratio: float, multiple: int) -> BlockPlan:
    """The plan whose single block is the whole isotropic output (no halo needed: every edge is a border)."""
    z, y, x = raw_shape
    return BlockPlan((z, y, x), float(ratio), (n_iso(z, ratio), y, x), 0, multiple)


def interpolate_volume(volume: np.ndarray, spacing: Spacing) -> np.ndarray:
    """Cubic z-interpolation onto the isotropic grid: the baseline selfnet must beat."""
    return zinterp(volume, spacing[0] / spacing[2])
