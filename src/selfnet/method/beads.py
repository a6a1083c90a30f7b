"""A PSF distilled from a bead recording: isolated beads found, aligned to a fraction of a voxel, averaged.

One sub-resolution bead is a noisy PSF, and a bead recording holds dozens. :func:`average_beads`
keeps the beads that are bright, alone in their box, inside the stack, unsaturated, not a hot pixel
and not a clump, aligns them on their average (phase correlation, 1/10 voxel) and returns the mean,
its peak on a voxel: a PSF on the recording's grid.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from selfnet.errors import InputError
from selfnet.method.psf import border_voxels, centred, fwhm_um

BOX_UM = (6.0, 3.0, 3.0)  # default (z, y, x) extent of the averaged PSF, µm
DETECT_SDS = 8.0  # a bead's smoothed peak must stand this many noise sds above the background
SIDE_LOBE = 0.1  # a maximum dimmer than this share of a brighter bead whose box overlaps its own is that bead's ring
CLUMP = 1.6  # beads brighter than this multiple of the median bead are taken as clumps of two or more
HOT = 0.5  # a spot with more than this share of its light in one voxel is a hot pixel, not a bead
UPSAMPLE = 10  # alignment precision: 1 / UPSAMPLE voxel
EDGE = 0.02  # light at a face of the box, as a share of the peak, above which the box grows (or the summary says so)
GROW, GROWTHS = 1.5, 2  # the default box grows by this factor, at most this many times


@dataclass(frozen=True)
class BeadAverage:
    """The averaged PSF (Z, Y, X, unit sum, background 0) and what went into it."""

    psf: np.ndarray = field(repr=False)
    spacing: tuple[float, float, float]
    found: int
    used: int
    rejected: dict[str, int]
    fwhm_um: tuple[float, float, float]
    box_um: tuple[float, float, float]

    def edge_light(self) -> tuple[float, float]:
        """Light where the lines through the peak leave the box (3 x 3 voxels next to each face's centre,
        one voxel in: the sub-voxel alignment shifts zeros into the faces), as shares of the peak: at the
        z faces, and at the x/y faces."""
        p = self.psf
        near = [slice(n // 2 - 1, n // 2 + 2) for n in p.shape]
        z = max(p[1, near[1], near[2]].mean(), p[-2, near[1], near[2]].mean())
        lateral = max(p[near[0], 1, near[2]].mean(), p[near[0], -2, near[2]].mean(),
                      p[near[0], near[1], 1].mean(), p[near[0], near[1], -2].mean())
        return float(z / p.max()), float(lateral / p.max())

    def summary(self) -> str:
        """One line: beads used and why the others were left out, the PSF's FWHM (z, y, x), and a
        hint when the PSF is cut by its box."""
        left = ", ".join(f"{n} {why}" for why, n in self.rejected.items() if n)
        z, y, x = self.fwhm_um
        text = (f"average of {self.used} of {self.found} beads{f' ({left})' if left else ''} in a "
                f"{' x '.join(f'{b:.3g}' for b in self.box_um)} µm box; FWHM z {z:.3g} µm, y {y:.3g} µm, x {x:.3g} µm")
        cut = [f"{share:.0%} of its peak at the box's {side} faces"
               for share, side in zip(self.edge_light(), ("z", "x/y")) if share > EDGE]
        return text + (f"; the PSF still has {' and '.join(cut)}: a larger --box-um keeps its tails" if cut else "")


def average_beads(stack: np.ndarray, spacing: tuple[float, float, float], *,
                  box_um: tuple[float, float, float] | None = None) -> BeadAverage:
    """The mean PSF of the isolated beads in a (Z, Y, X) ``stack`` with voxel size ``spacing`` (µm).

    ``box_um`` is the PSF's extent; a bead needs its whole box inside the stack and no other bead in
    it. Without one, :data:`BOX_UM` grows :data:`GROW` times at a time (at most :data:`GROWTHS` times)
    while the average still has light at the box's faces and enough beads stay alone in the larger box.
    """
    data = np.asarray(stack, dtype=np.float32)  # crops are taken in float64
    if data.ndim != 3:
        raise InputError(f"a bead stack must be 3D (Z, Y, X), got shape {data.shape}")
    if not np.isfinite(data).all():
        raise InputError("the bead stack contains NaN or Inf values")
    if box_um is not None:
        return _average(stack, data, spacing, box_um)
    best = _average(stack, data, spacing, BOX_UM)
    for _ in range(GROWTHS):
        if max(best.edge_light()) <= EDGE:
            break
        try:
            best = _average(stack, data, spacing, tuple(GROW * b for b in best.box_um))
        except InputError:
            break
    return best


def _average(stack: np.ndarray, data: np.ndarray, spacing: tuple[float, float, float],
             box_um: tuple[float, float, float]) -> BeadAverage:
    """:func:`average_beads` with one box size."""
    half = tuple(max(math.ceil(b / 2 / s), 1) for b, s in zip(box_um, spacing))
    peaks, values = _maxima(data, half)
    rejected = {"at the edge": 0, "crowded": 0, "saturated": 0, "hot pixels": 0, "clumped": 0}
    crops = []
    for at in _isolated(peaks, values, half, rejected):
        if not _inside(at, half, data.shape):
            rejected["at the edge"] += 1
        elif _saturated(stack, at):
            rejected["saturated"] += 1
        elif (crop := _crop(data, at, half)).max() > HOT * crop.sum():
            rejected["hot pixels"] += 1
        else:
            crops.append(crop)
    crops = _without_clumps(crops, rejected)
    if not crops:
        raise InputError(f"no isolated bead found ({len(peaks)} bright spots: "
                         + ", ".join(f"{n} {why}" for why, n in rejected.items()) + "); "
                         "record sparser beads or give a smaller --box-um")
    psf = centred(_aligned_mean(crops))
    return BeadAverage(psf / psf.sum(), tuple(float(s) for s in spacing), len(peaks), len(crops), rejected,
                       fwhm_um(psf, spacing), tuple(float(b) for b in box_um))


def _maxima(data: np.ndarray, half: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Local maxima of the lightly smoothed stack that stand out of its noise, brightest first."""
    smooth = ndimage.gaussian_filter(data, 1.0)
    level = float(np.median(smooth))
    noise = 1.4826 * float(np.median(np.abs(smooth - level)))
    size = tuple(max(h // 2, 1) * 2 + 1 for h in half)
    is_peak = (smooth == ndimage.maximum_filter(smooth, size=size, mode="nearest"))
    is_peak &= smooth > level + DETECT_SDS * max(noise, 1e-12 * max(abs(level), 1.0))
    peaks = np.argwhere(is_peak)
    values = smooth[tuple(peaks.T)] - level
    order = np.argsort(-values, kind="stable")
    return peaks[order], values[order]


def _isolated(peaks: np.ndarray, values: np.ndarray, half: tuple[int, ...], rejected: dict[str, int]) -> list:
    """Peaks whose box overlaps no comparable peak's box. A peak under :data:`SIDE_LOBE` of a brighter
    neighbour's is that bead's side lobe (or too dim to matter), neither a bead nor a crowding."""
    beads: list[np.ndarray] = []
    crowded = np.zeros(len(peaks), dtype=bool)
    lobe = np.zeros(len(peaks), dtype=bool)
    for i in range(len(peaks)):  # brightest first, so a brighter neighbour's own status is settled
        near = np.all(np.abs(peaks - peaks[i]) <= 2 * np.asarray(half), axis=1)
        near[i] = False
        brighter = near & ~lobe & (values > values[i])
        if brighter.any() and values[i] < SIDE_LOBE * values[brighter].max():
            lobe[i] = True
        elif (near & ~lobe & (values >= SIDE_LOBE * values[i])).any():
            crowded[i] = True
    for i in range(len(peaks)):
        if crowded[i]:
            rejected["crowded"] += 1
        elif not lobe[i]:
            beads.append(peaks[i])
    return beads


def _inside(at: np.ndarray, half: tuple[int, ...], shape: tuple[int, ...]) -> bool:
    """Whether the bead's whole box lies in the stack."""
    return all(h <= p < n - h for p, h, n in zip(at, half, shape))


def _saturated(stack: np.ndarray, at: np.ndarray) -> bool:
    """Whether an integer stack reaches its type's maximum within 2 voxels of the bead's peak."""
    stack = np.asarray(stack)
    if not np.issubdtype(stack.dtype, np.integer):
        return False
    near = tuple(slice(max(p - 2, 0), p + 3) for p in at)
    return bool(stack[near].max() >= np.iinfo(stack.dtype).max)


def _crop(data: np.ndarray, at: np.ndarray, half: tuple[int, ...]) -> np.ndarray:
    """The bead's box less its own background (the median of the box's faces)."""
    box = data[tuple(slice(p - h, p + h + 1) for p, h in zip(at, half))].astype(np.float64)
    return box - np.median(border_voxels(box))


def _without_clumps(crops: list[np.ndarray], rejected: dict[str, int]) -> list[np.ndarray]:
    """Crops whose light is within :data:`CLUMP` times the median bead's (three beads or more to judge)."""
    if len(crops) < 3:
        return crops
    light = np.array([c.sum() for c in crops])
    keep = light <= CLUMP * np.median(light)
    rejected["clumped"] += int((~keep).sum())
    return [c for c, k in zip(crops, keep) if k]


def _aligned_mean(crops: list[np.ndarray]) -> np.ndarray:
    """Sum of the crops, each shifted (cubic spline) onto the first estimate of their average, twice."""
    from skimage.registration import (
        phase_cross_correlation,  # only here: importing it is slow
    )

    reference = np.sum(crops, axis=0)
    for _ in range(2):
        shifted = []
        for crop in crops:
            shift = phase_cross_correlation(reference, crop, upsample_factor=UPSAMPLE, normalization=None)[0]
            shifted.append(ndimage.shift(crop, shift, order=3, mode="constant"))
        reference = np.sum(shifted, axis=0)
    return reference
