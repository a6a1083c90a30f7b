"""``selfnet demo``: the whole job on a built-in synthetic neurite stack with known ground truth.

Generates the phantom (nothing is downloaded), trains, restores, scores cubic z-interpolation and
selfnet against the ground truth seen through the lateral PSF, and saves an XZ comparison figure.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from selfnet.api import restore, train
from selfnet.errors import ConfigError
from selfnet.inference.restore import interpolate_volume
from selfnet.io import check_output_path, write_volume
from selfnet.phantoms.metrics import Score, affine_fit, score
from selfnet.phantoms.synthetic import Phantom, make_phantom, save_phantom
from selfnet.qc.figures import save_panels

SIZES: dict[str, tuple[int, int, int]] = {
    "tiny": (64, 72, 72),
    "small": (128, 160, 160),
    "full": (192, 256, 256),
}
OUTPUTS = ("raw.tif", "gt_lateral.tif", "cubic.tif", "selfnet.tif", "model.pt", "xz_comparison.png")


@dataclass
class DemoResult:
    """Scores and timings of one demo run."""

    cubic: Score
    selfnet: Score
    train_s: float
    restore_s: float
    shape: tuple[int, ...]
    figure: Path

    def table(self) -> str:
        """Markdown table of PSNR/SSIM against the ground truth (lateral PSF)."""
        gain = self.selfnet.psnr - self.cubic.psnr
        return "\n".join([
            f"| method ({'x'.join(map(str, self.shape))} voxels) | PSNR (dB) | SSIM |",
            "|---|---|---|",
            f"| cubic z-interpolation | {self.cubic.psnr:.2f} | {self.cubic.ssim:.3f} |",
            f"| selfnet | {self.selfnet.psnr:.2f} | {self.selfnet.ssim:.3f} |",
            f"| gain | {gain:+.2f} | {self.selfnet.ssim - self.cubic.ssim:+.3f} |",
            "",
            f"train {self.train_s:.0f} s, restore {self.restore_s:.1f} s",
        ])


def xz_figure(path: Path, ph: Phantom, cubic: np.ndarray, restored: np.ndarray, truth: np.ndarray) -> Path:
    """XZ slices (raw interpolated, selfnet, ground truth) at one contrast, at the busiest y."""
    y = int(np.argmax(truth.sum(axis=(0, 2))))
    views = [affine_fit(v[:, y, :], truth[:, y, :]) for v in (cubic, restored)] + [truth[:, y, :]]
    titles = ["raw, cubic z-interpolation", "selfnet", "ground truth (lateral PSF)"]
    return save_panels(path, views, titles, scale_um=ph.spacing_iso[2])


def run_demo(out: Path, *, max_minutes: float = 3.0, size: str = "small", device: str = "auto", seed: int = 0,
             overwrite: bool = False, progress: bool = True) -> DemoResult:
    """Generate, train, restore, score; files go to ``out``."""
    if size not in SIZES:
        raise ConfigError(f"unknown demo size '{size}': choose {', '.join(SIZES)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for name in OUTPUTS:
        check_output_path(out / name, overwrite=overwrite, suffixes=(".tif", ".pt", ".png"))
    ph = make_phantom("neurites", SIZES[size], k=4.0, axial_ratio=3.0, seed=seed)
    save_phantom(ph, out)
    t0 = time.perf_counter()
    model = train(ph.raw, ph.spacing_raw, max_minutes=max_minutes, seed=seed, device=device, progress=progress)
    train_s = time.perf_counter() - t0
    model.save(out / "model.pt", overwrite=True)
    t0 = time.perf_counter()
    restored = restore(ph.raw, model, ph.spacing_raw, device=device, progress=progress).data
    restore_s = time.perf_counter() - t0
    cubic = interpolate_volume(ph.raw, ph.spacing_raw)
    truth = ph.gt_lateral[ph.iso_slice()]
    write_volume(out / "selfnet.tif", restored, ph.spacing_iso, overwrite=True)
    write_volume(out / "cubic.tif", cubic, ph.spacing_iso, overwrite=True)
    figure = xz_figure(out / "xz_comparison.png", ph, cubic, restored, truth)
    return DemoResult(score(cubic, truth), score(restored, truth), train_s, restore_s, restored.shape, figure)
