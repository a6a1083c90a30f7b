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
