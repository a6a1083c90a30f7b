"""Scores against a known ground truth (phantoms, benchmarks): PSNR and 3D SSIM after an affine fit.

A restoration is free to differ from the truth by gain and offset (unknown photon scale and
background), so both scores are taken after the least-squares fit ``a * pred + b ~ truth``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from skimage.metrics import structural_similarity


@dataclass(frozen=True)
class Score:
    """PSNR (dB, data range of the truth) and mean 3D SSIM."""

    psnr: float
    ssim: float


def affine_fit(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """``a * pred + b`` with (a, b) minimising the squared error to ``truth``."""
    p = pred.astype(np.float64).ravel()
    t = truth.astype(np.float64).ravel()
    a, b = np.polyfit(p, t, 1) if p.std() > 0 else (0.0, t.mean())
    return (a * pred + b).astype(np.float32)


def psnr(pred: np.ndarray, truth: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB with the truth's range as peak."""
    mse = float(np.mean((pred.astype(np.float64) - truth) ** 2))
    rng = float(truth.max() - truth.min())
    return float("inf") if mse == 0 else 10 * np.log10(rng * rng / mse)


def score(pred: np.ndarray, truth: np.ndarray, *, margin: int = 4) -> Score:
    """PSNR and 3D SSIM of ``pred`` vs ``truth`` (same shape) after affine fit, borders cropped."""
    if pred.shape != truth.shape:
        raise ValueError(f"shape mismatch: {pred.shape} vs {truth.shape}")
    crop = tuple(slice(margin, n - margin) if n > 2 * margin + 7 else slice(None) for n in truth.shape)
    p, t = pred[crop], truth[crop].astype(np.float32)
    fitted = affine_fit(p, t)
    rng = float(t.max() - t.min())
    return Score(psnr(fitted, t), float(structural_similarity(fitted, t, data_range=rng)))


def bead_centers(truth: np.ndarray, *, min_brightness: float = 0.5, spacing: int = 12) -> np.ndarray:
    """(N, 3) voxel positions of bright point sources in ``truth`` with no other one within ``spacing``."""
    pos = np.argwhere(truth > min_brightness * truth.max())
    inside = np.all((pos >= spacing) & (pos < np.asarray(truth.shape) - spacing), axis=1)
    every = np.argwhere(truth > 0)
    keep = [p for p in pos[inside] if (np.abs(every - p).max(axis=1) < spacing).sum() == 1]
    return np.asarray(keep, dtype=int).reshape(-1, 3)


def axial_profiles(volume: np.ndarray, centers: np.ndarray, half: int = 10) -> np.ndarray:
    """(N, 2*half+1) z profiles through each centre, summed over its 3x3 lateral neighbourhood, baseline 0.

    The baseline is the median of the three outermost samples at each end, so that a bead's
    profile stands on zero whatever the background.
    """
    rows = []
    for z, y, x in centers:
        prof = np.asarray(volume[z - half:z + half + 1, y - 1:y + 2, x - 1:x + 2], dtype=np.float64).sum(axis=(1, 2))
        rows.append(prof - np.median(np.r_[prof[:3], prof[-3:]]))
    return np.asarray(rows).reshape(len(rows), 2 * half + 1)


def peak_centroid(profile: np.ndarray) -> float:
    """Offset (px) of a profile's peak from its centre: intensity centroid of the part above half maximum."""
    c = len(profile) // 2
    top = float(profile.max())
    if top <= 0:
        return float("nan")
    peak = int(np.argmax(profile))
    lo, hi = peak, peak
    while lo > 0 and profile[lo - 1] > 0.5 * top:
        lo -= 1
    while hi < len(profile) - 1 and profile[hi + 1] > 0.5 * top:
        hi += 1
    w = profile[lo:hi + 1] - 0.5 * top
    return float((w * np.arange(lo, hi + 1)).sum() / w.sum() - c)


def bead_z_shift(volume: np.ndarray, truth: np.ndarray, centers: np.ndarray) -> float:
    """Median signed z shift (voxels, + = deeper) of bead peaks in ``volume`` relative to ``truth``."""
    got = [peak_centroid(p) for p in axial_profiles(volume, centers)]
    ref = [peak_centroid(p) for p in axial_profiles(truth, centers)]
    return float(np.nanmedian(np.subtract(got, ref))) if len(got) else float("nan")


def axial_asymmetry(volume: np.ndarray, centers: np.ndarray, half: int = 10) -> float:
    """Median (deeper - shallower) / total of each bead's z profile around its true centre (0 = symmetric).

    A comet tail along +z gives a positive value; only the positive part of each profile counts.
    """
    values = []
    for prof in axial_profiles(volume, centers, half):
        p = np.clip(prof, 0, None)
        total = p.sum()
        if total > 0:
            values.append((p[half + 1:].sum() - p[:half].sum()) / total)
    return float(np.median(values)) if values else float("nan")


def banding(volume: np.ndarray, truth: np.ndarray, ratio: float, *, background: float = 0.01) -> float:
    """Spread of the background noise across z phases: (max - min) / mean of the per-phase noise std.

    Output plane ``j`` sits at phase ``(j / ratio) mod 1`` between raw planes; a restoration whose
    noise depends on that phase shows stripes with the z-step period in XZ/YZ views. Background
    voxels are those where ``truth`` is below ``background`` times its maximum (after an affine fit).
    At ``ratio <= 1`` every output plane is a raw plane: one phase, so no banding (0).
    """
    if ratio <= 1.0:
        return 0.0
    fitted = affine_fit(volume, truth)
    mask = truth < background * float(truth.max())
    bins = max(2, int(round(ratio)))
    phase = np.floor(((np.arange(truth.shape[0]) / ratio) % 1.0) * bins + 1e-6).astype(int) % bins
    resid = fitted - truth
    per_plane = np.array([resid[j][mask[j]].std() if mask[j].sum() > 100 else np.nan
                          for j in range(truth.shape[0])])
    per_phase = np.array([np.nanmedian(per_plane[phase == b]) for b in range(bins)])
    return float((per_phase.max() - per_phase.min()) / per_phase.mean())


def z_shift(volume: np.ndarray, truth: np.ndarray, max_shift: int = 4) -> float:
    """Global z shift (voxels, + = deeper) of ``volume`` against ``truth``: the peak of their correlation.

    Works on dense samples where isolated beads are few; sub-voxel by a parabola through the peak.
    """
    n = truth.shape[0]
    core = slice(max_shift, n - max_shift)
    t = truth[core].astype(np.float64)
    t = (t - t.mean()).ravel()
    corr = []
    for s in range(-max_shift, max_shift + 1):
        v = volume[max_shift + s:n - max_shift + s].astype(np.float64).ravel()
        corr.append(float(np.dot(v - v.mean(), t)))
    i = int(np.argmax(corr))
    if 0 < i < len(corr) - 1:
        a, b, c = corr[i - 1], corr[i], corr[i + 1]
        denom = a - 2 * b + c
        return float(i - max_shift + (0.5 * (a - c) / denom if denom else 0.0))
    return float(i - max_shift)


AXIAL_BANDS: tuple[float, ...] = (0.025, 0.05, 0.1, 0.15, 0.2, 0.25)  # edges, cycles per isotropic voxel


def axial_transfer(pred: np.ndarray, truth: np.ndarray, edges: tuple[float, ...] = AXIAL_BANDS,
                   *, cone: float = 0.8) -> np.ndarray:
    """How much of the truth's detail along z ``pred`` restores, per band of spatial frequency (1 = all of it).

    The cross-spectrum ``Re<P T*> / <|T|^2>`` over frequencies within the z-dominant cone
    (``|kz| / |k| > cone``), after an affine fit like :func:`score`'s, between consecutive ``edges``. Below
    1: detail along z left blurred (or lost to noise); PSNR alone cannot say in which band.
    """
    fitted = affine_fit(pred, truth)
    t = truth.astype(np.float64) - truth.mean()
    p = fitted.astype(np.float64) - fitted.mean()
    spec_t, spec_p = np.fft.rfftn(t), np.fft.rfftn(p)
    fz = np.fft.fftfreq(t.shape[0])[:, None, None]
    fy = np.fft.fftfreq(t.shape[1])[None, :, None]
    fx = np.fft.rfftfreq(t.shape[2])[None, None, :]
    radius = np.sqrt(fz**2 + fy**2 + fx**2)
    inside = np.abs(fz) > cone * radius
    n = len(edges) - 1
    band = np.digitize(radius, edges) - 1
    keep = inside & (band >= 0) & (band < n)
    cross = np.bincount(band[keep], (spec_p * spec_t.conj()).real[keep], n)
    power = np.bincount(band[keep], (np.abs(spec_t) ** 2)[keep], n)
    return cross / np.maximum(power, 1e-30)
