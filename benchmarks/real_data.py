"""Restore the real stacks in ../shared/data with no flags and save XZ before/after figures.

    python benchmarks/real_data.py [--minutes 3] [--data ../shared/data] [--out docs/img]

Prints the voxel sizes read from each file, training/restore times and a data-consistency figure
(the restored volume sampled back on the raw planes vs the raw planes), for the docs.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

import selfnet
from selfnet.inference.restore import interpolate_volume
from selfnet.qc.figures import save_panels

STACKS = {
    "tissue_nuclei": "tissue_nuclei_ZYX.tif",
    "chromosomes": "chromosomes_ZYX.tif",
}


def xz_panel(path: Path, cubic: np.ndarray, restored: np.ndarray, dx: float) -> None:
    """XZ slice at the brightest y: cubic-interpolated raw vs selfnet, same contrast."""
    y = int(np.argmax(cubic.sum(axis=(0, 2))))
    save_panels(path, [cubic[:, y, :], restored[:, y, :]], ["raw, cubic z-interpolation", "selfnet"],
                contrast_from=0, scale_um=dx)


def consistency(raw: np.ndarray, restored: np.ndarray, ratio: float) -> float:
    """Correlation between raw planes and the restored volume at the raw plane positions."""
    idx = np.round(np.arange(raw.shape[0]) * ratio).astype(int)
    idx = idx[idx < restored.shape[0]]
    return float(np.corrcoef(raw[: len(idx)].ravel().astype(np.float64), restored[idx].ravel())[0, 1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--out", type=Path, default=Path("docs/img"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    print("| stack | shape ZYX | voxel dz/dy/dx (µm) | ratio | train s | restore s | raw-plane corr |")
    print("|---|---|---|---|---|---|---|")
    for name, filename in STACKS.items():
        vol = selfnet.read_volume(args.data / filename)
        t0 = time.perf_counter()
        model = selfnet.train(vol, max_minutes=args.minutes, device="cpu", progress=False)
        t1 = time.perf_counter()
        restored = selfnet.restore(vol, model, device="cpu", progress=False)
        t2 = time.perf_counter()
        cubic = interpolate_volume(vol.data, vol.spacing)
        xz_panel(args.out / f"real_{name}_xz.png", cubic, restored, vol.spacing[2])
        sizes = "/".join(f"{s:.4g}" for s in vol.spacing)
        print(f"| {name} | {'x'.join(map(str, vol.data.shape))} | {sizes} | {vol.ratio:.2f} | {t1 - t0:.0f} | "
              f"{t2 - t1:.1f} | {consistency(np.asarray(vol.data), restored, vol.ratio):.3f} |", flush=True)


if __name__ == "__main__":
    main()
