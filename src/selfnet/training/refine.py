"""Refining D with a 3D PSF: its own restoration, re-recorded through the PSF, as exact training pairs.

Stage 2 learns from XY planes through a 2D kernel, a stand-in for what an axial slice goes through: it
misses the light from beside the slice, and the XY planes carry the stack's haze and noise. Given a
PSF file the forward model is known in 3D. D's restoration of the stack, turned so that a lateral
(sharp) axis becomes z, is a pseudo-object with the sample's own structure. Blurred by the PSF's
forward kernel, z-sampled and given the stack's noise, it yields (input, target) axial slices that D
trains on like the supervised oracle (measured: docs/BENCHMARKS.md).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.signal import fftconvolve

from selfnet.inference.block import restore_block
from selfnet.inference.restore import one_block_plan
from selfnet.memory import REFINE_MAX_ISO_VOXELS
from selfnet.method.estimate import NoiseModel
from selfnet.method.normalize import Normalizer
from selfnet.method.resample import n_iso, resample_matrix, zinterp

TURNS = ((1, 0, 2), (2, 0, 1))  # pseudo-objects: old y (or x) becomes z, old z lies beside the axial slices
_EPS = 1e-6
MIN_SIZE = 16  # smallest patch (px) worth refining on


def restore_normalised(volume: np.ndarray, ratio: float, net: torch.nn.Module, device: torch.device,
                       normalizer: Normalizer) -> np.ndarray:
    """D's isotropic restoration of the raw ``volume`` (normalised units) by the one slice runner."""
    was_training = net.training
    net.eval()
    plan = one_block_plan(tuple(int(n) for n in volume.shape), ratio, int(getattr(net, "multiple", 1)))
    with torch.no_grad():
        out = restore_block(volume, plan, (0, 0, 0), net, device, normalizer)
    net.train(was_training)
    return normalizer(out)


def blur3d(volume: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """``volume`` convolved with an odd 3D ``kernel``, edges mirrored (no dark rim), same shape, float32."""
    half = [(n // 2, n // 2) for n in kernel.shape]
    reach = [min(h[0], n - 1) for h, n in zip(half, volume.shape)]
    padded = np.pad(volume, [(r, r) for r in reach], mode="reflect")
    cut = tuple(slice(h[0] - r, h[0] + r + 1) for h, r in zip(half, reach))
    return fftconvolve(padded, kernel[cut], mode="valid").astype(np.float32)


def rerecord(obj: np.ndarray, kernel: np.ndarray, ratio: float, noise: NoiseModel,
             rng: np.random.Generator) -> np.ndarray:
    """An isotropic ``obj`` (z first) as the stack would hold it after cubic z-interpolation: through
    ``kernel``, every ``ratio``-th plane kept, the stack's Poisson-Gaussian noise added."""
    blurred = blur3d(obj, kernel)
    raw = np.tensordot(resample_matrix(obj.shape[0], _kept_planes(obj.shape[0], ratio)), blurred, axes=(1, 0))
    raw += rng.standard_normal(raw.shape).astype(np.float32) * np.sqrt(noise.variance(raw)).astype(np.float32)
    return zinterp(raw, ratio)


def axial_pairs(inputs: np.ndarray, targets: np.ndarray, count: int, size: int,
                rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``count`` aligned (size, size) XZ patches (z along rows) of two volumes of the same shape."""
    nz, ny, nx = inputs.shape
    z0 = rng.integers(0, nz - size + 1, count)[:, None, None] + np.arange(size)[None, :, None]
    x0 = rng.integers(0, nx - size + 1, count)[:, None, None] + np.arange(size)[None, None, :]
    y = rng.integers(0, ny, count)[:, None, None]
    return inputs[z0, y, x0], targets[z0, y, x0]


def refine_pairs(volume: np.ndarray, ratio: float, net: torch.nn.Module, device: torch.device,
                 normalizer: Normalizer, kernel: np.ndarray, noise: NoiseModel, count: int, size: int,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray] | None:
    """(input, target) axial patches, normalised: D's restoration of ``volume`` turned both ways as the
    target, the same re-recorded through the forward ``kernel`` as the input (one turn at a time, to bound
    memory). ``size`` shrinks to fit; None when not even :data:`MIN_SIZE` px fit."""
    restored = restore_normalised(_bounded(volume, ratio, rng), ratio, net, device, normalizer)
    fit = min(size, *(_recorded_planes(restored.shape[turn[0]], ratio) for turn in TURNS),
              *(restored.shape[turn[2]] for turn in TURNS)) // 8 * 8
    if fit < MIN_SIZE:
        return None
    inputs, targets = [], []
    for turn in TURNS:
        obj = restored.transpose(turn)
        recorded = rerecord(obj, kernel, ratio, noise, rng)
        pair = axial_pairs(recorded, obj[: recorded.shape[0]], count // len(TURNS), fit, rng)
        inputs.append(pair[0])
        targets.append(pair[1])
    return np.concatenate(inputs), np.concatenate(targets)


def _bounded(volume: np.ndarray, ratio: float, rng: np.random.Generator) -> np.ndarray:
    """A random full-z window of ``volume`` whose restoration holds at most :data:`~selfnet.memory.REFINE_MAX_ISO_VOXELS` (all of a small one)."""
    z, y, x = volume.shape
    shrink = math.sqrt(n_iso(z, ratio) * y * x / REFINE_MAX_ISO_VOXELS)
    if shrink <= 1:
        return volume
    h, w = max(min(y, 64), int(y / shrink)), max(min(x, 64), int(x / shrink))
    y0, x0 = int(rng.integers(0, y - h + 1)), int(rng.integers(0, x - w + 1))
    return volume[:, y0:y0 + h, x0:x0 + w]


def _kept_planes(n: int, ratio: float) -> np.ndarray:
    """Where :func:`rerecord` keeps a plane of an object ``n`` planes deep: every ``ratio`` from the first."""
    return np.arange(0.0, n - 1 + _EPS, ratio)


def _recorded_planes(n: int, ratio: float) -> int:
    """Isotropic planes :func:`rerecord` returns for an object ``n`` planes deep."""
    return n_iso(len(_kept_planes(n, ratio)), ratio)
