"""Multi-channel time-lapse benchmark: every (t, c) of a 2-channel phantom scored against its truth.

    python benchmarks/series.py [--minutes 1] [--times 4] [--shape 96,128,128] [--seed 0]

The phantom is one neurite object drifting 2 pixels per time point along x, acquired in two channels
with different axial blur (axial sigma 3x and 4.5x the lateral one, as longer wavelengths blur more),
every 4th plane kept, Poisson + read noise; saved as a TZCYX ImageJ hyperstack. `selfnet run` (the real
CLI, no series flags) restores it once with one model per channel and once with `--shared-model`;
every (t, c) is scored (PSNR / SSIM after an affine fit) against the truth blurred with the lateral PSF
only, next to cubic z-interpolation. `--minutes` is the training budget of each model.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile
import torch

from selfnet.inference.restore import interpolate_volume
from selfnet.io import read_volume
from selfnet.phantoms.metrics import score
from selfnet.phantoms.synthetic import acquire, make_object

AXIAL_RATIOS = (3.0, 4.5)


def make_series(shape: tuple[int, int, int], times: int, seed: int) -> tuple[np.ndarray, list[list[object]]]:
    """TZCYX raw data and the phantoms (with truth) per time point and channel."""
    obj = make_object("neurites", shape, seed=seed)
    phantoms = [[acquire(np.roll(obj, 2 * t, axis=2), k=4.0, axial_ratio=a, photons=200, seed=seed + 10 * t + c)
                 for c, a in enumerate(AXIAL_RATIOS)] for t in range(times)]
    raw = np.stack([np.stack([ph.raw for ph in row], axis=1) for row in phantoms])  # T Z C Y X
    return raw, phantoms


def run(raw_path: Path, out: Path, minutes: float, seed: int, shared: bool) -> float:
    cmd = [sys.executable, "-m", "selfnet", "run", str(raw_path), "-o", str(out), "--max-minutes", str(minutes),
           "--seed", str(seed), "--no-report", "--quiet", "--overwrite"] + (["--shared-model"] if shared else [])
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        sys.exit(proc.stderr)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=1.0)
    parser.add_argument("--times", type=int, default=4)
    parser.add_argument("--shape", default="96,128,128")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    shape = tuple(int(s) for s in args.shape.split(","))
    raw, phantoms = make_series(shape, args.times, args.seed)
    ph0 = phantoms[0][0]
    dz, dy, dx = ph0.spacing_raw
    print(f"# series benchmark: {args.times} time points x 2 channels, raw {raw.shape[1]}x{shape[1]}x{shape[2]} "
          f"ZYX per stack, axial blur {AXIAL_RATIOS} x lateral, {args.minutes} min per model; "
          f"{os.cpu_count()} cores ({platform.machine()}), torch {torch.__version__}")
    with tempfile.TemporaryDirectory() as tmp:
        raw_path = Path(tmp) / "series.tif"
        tifffile.imwrite(raw_path, raw, imagej=True, resolution=(1 / dx, 1 / dy),
                         metadata={"axes": "TZCYX", "spacing": dz, "unit": "um", "finterval": 10.0})
        print("\n| models | channel | time point | cubic PSNR / SSIM | selfnet PSNR / SSIM | gain dB |")
        print("|---|---|---|---|---|---|")
        summary = []
        for shared in (False, True):
            out = Path(tmp) / ("shared.tif" if shared else "per_channel.tif")
            wall = run(raw_path, out, args.minutes, args.seed, shared)
            gains = {0: [], 1: []}
            for t, row in enumerate(phantoms):
                for c, ph in enumerate(row):
                    truth = ph.gt_lateral[ph.iso_slice()]
                    ours = np.asarray(read_volume(out, timepoint=t, channel=c).data)
                    cubic = interpolate_volume(ph.raw, ph.spacing_raw)
                    s_cubic, s_ours = score(cubic, truth), score(ours, truth)
                    gains[c].append(s_ours.psnr - s_cubic.psnr)
                    print(f"| {'shared' if shared else 'per channel'} | {c} | {t} | {s_cubic.psnr:.2f} / "
                          f"{s_cubic.ssim:.3f} | {s_ours.psnr:.2f} / {s_ours.ssim:.3f} | {gains[c][-1]:+.2f} |",
                          flush=True)
            summary.append((shared, wall, gains))
        print("\n| models | channel | gain over cubic, mean ± sd over time points (dB) | wall time of `selfnet run` |")
        print("|---|---|---|---|")
        for shared, wall, gains in summary:
            for c, values in gains.items():
                print(f"| {'shared' if shared else 'per channel'} | {c} (axial {AXIAL_RATIOS[c]}x) | "
                      f"{np.mean(values):+.2f} ± {np.std(values):.2f} | {wall:.0f} s |")


if __name__ == "__main__":
    main()
