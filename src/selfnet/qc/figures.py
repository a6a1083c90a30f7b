"""PNG figures for docs, demos and reports (matplotlib, headless)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from selfnet.io import atomic_write  # noqa: E402


def display_range(image: np.ndarray, percentiles: tuple[float, float] = (0.5, 99.8)) -> tuple[float, float]:
    """Contrast limits shared by panels so they are compared at the same contrast."""
    lo, hi = np.percentile(image, percentiles)
    return float(lo), float(hi if hi > lo else lo + 1)


def save_panels(path: str | Path, images: Sequence[np.ndarray], titles: Sequence[str], *,
                contrast_from: int = -1, scale_um: float | None = None, dpi: int = 110) -> Path:
    """Save images side by side in grey at one contrast (taken from ``images[contrast_from]``)."""
    lo, hi = display_range(images[contrast_from])
    width = sum(im.shape[1] for im in images)
    height = max(im.shape[0] for im in images)
    fig_w = min(18.0, 2.0 + width / 60)
    fig_h = fig_w * height / width + 0.5
    fig, axes = plt.subplots(1, len(images), figsize=(fig_w, fig_h))
    for ax, im, title in zip(np.atleast_1d(axes), images, titles):
        ax.imshow(im, cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
        ax.set_title(title, fontsize=9)
        ax.set_axis_off()
    if scale_um:
        fig.text(0.01, 0.01, f"pixel = {scale_um:.3g} µm (isotropic)", fontsize=7)
    fig.tight_layout()
    out = Path(path)
    with atomic_write(out) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    plt.close(fig)
    return out
