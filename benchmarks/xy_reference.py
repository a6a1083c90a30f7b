"""How close are the XY planes, Self-Net's gold standard, to the truth? Noise-free, per phantom kind.

    python benchmarks/xy_reference.py

Self-Net trains its deblurring net to turn axial slices into what raw XY planes look like. But a
raw XY plane is the object blurred by the whole 3D PSF: it also holds out-of-focus light from the
planes above and below (axial blur along the plane's normal). Our benchmarks score against the truth
seen through the lateral PSF alone, so this out-of-focus haze is an error no XY-trained method is
taught to remove. This script measures it on noise-free stacks: PSNR / 3D SSIM (after the best affine
fit) of the raw XY planes against the truth's planes at the same depths, for each quality-benchmark
case. Seconds on a CPU.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter

from selfnet.phantoms.metrics import score
from selfnet.phantoms.synthetic import make_object

CASES = [  # kind, axial/lateral blur ratio, z step k (as benchmarks/quality.py's full run)
    ("neurites", 3.0, 4.0), ("nuclei", 3.0, 3.0), ("mix", 2.5, 2.5), ("beads", 4.0, 5.0), ("mix", 3.0, 4.0),
]
SHAPE = (96, 160, 160)
SIGMA_LATERAL = 1.0


def xy_plane_error(kind: str, axial_ratio: float, k: float, seed: int = 0) -> tuple[float, float]:
    """PSNR and SSIM of noise-free raw XY planes against the truth planes at the same depths."""
    obj = make_object(kind, SHAPE, seed=seed).astype(np.float32)
    truth = gaussian_filter(obj, SIGMA_LATERAL)
    planes = gaussian_filter(obj, (axial_ratio * SIGMA_LATERAL, SIGMA_LATERAL, SIGMA_LATERAL))
    depths = np.round(np.arange(8, SHAPE[0] - 8, k)).astype(int)  # away from the z borders
    s = score(planes[depths], truth[depths])
    return s.psnr, s.ssim


def main() -> None:
    print(f"# raw XY planes (noise-free) vs truth planes, {SHAPE[0]}x{SHAPE[1]}x{SHAPE[2]}, lateral sigma "
          f"{SIGMA_LATERAL:g} px\n")
    print("| kind | axial blur / lateral | k | PSNR (dB) | SSIM |\n|---|---|---|---|---|")
    for kind, ratio, k in CASES:
        psnr, ssim = xy_plane_error(kind, ratio, k)
        print(f"| {kind} | {ratio:g} | {k:g} | {psnr:.2f} | {ssim:.3f} |", flush=True)


if __name__ == "__main__":
    main()
