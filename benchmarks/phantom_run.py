"""End-to-end acceptance run: `selfnet run` on a saved neurite phantom, scored against ground truth.

    python benchmarks/phantom_run.py --minutes 10 [--shape 192,256,256] [--k 4] [--config FILE]

Generates the phantom (isotropic truth, Gaussian PSF with axial sigma 3x lateral, every k-th plane
kept, Poisson + read noise) as an ImageJ TIFF, runs the real CLI on it with the given training
budget, and prints PSNR/SSIM of cubic z-interpolation and selfnet against the truth blurred with
the lateral PSF only, with wall times. Saves an XZ panel (raw interpolated | selfnet | truth).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch

from selfnet.inference.restore import interpolate_volume
from selfnet.io import read_volume
from selfnet.phantoms.metrics import affine_fit, score
from selfnet.phantoms.synthetic import make_phantom, save_phantom
from selfnet.qc.figures import save_panels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--shape", default="192,256,256")
    parser.add_argument("--k", type=float, default=4.0)
    parser.add_argument("--axial-ratio", type=float, default=3.0)
    parser.add_argument("--photons", type=float, default=200.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--config", type=Path, default=None, help="YAML training config passed to selfnet run")
    parser.add_argument("--out", type=Path, default=Path("bench_out/phantom_run"))
    parser.add_argument("--figure", type=Path, default=None, help="where to save the XZ panel PNG")
    args = parser.parse_args()
    shape = tuple(int(s) for s in args.shape.split(","))
    ph = make_phantom("neurites", shape, k=args.k, axial_ratio=args.axial_ratio, photons=args.photons,
                      seed=args.seed)
    paths = save_phantom(ph, args.out)
    output = args.out / "selfnet.tif"
    cmd = [sys.executable, "-m", "selfnet", "run", str(paths["raw"]), "-o", str(output), "--max-minutes",
           str(args.minutes), "--overwrite", "--quiet", "--seed", str(args.seed)]
    if args.config:
        cmd += ["--config", str(args.config)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode:
        sys.exit(f"selfnet run failed:\n{proc.stderr}")
    restored = read_volume(output).data
    truth = ph.gt_lateral[ph.iso_slice()]
    cubic = interpolate_volume(ph.raw, ph.spacing_raw)
    sc_cubic, sc_ours = score(cubic, truth), score(np.asarray(restored), truth)
    print(f"# phantom_run {date.today()}: neurites {shape}, k={args.k:g}, axial/lateral blur {args.axial_ratio:g}, "
          f"{args.photons:g} photons; {os.cpu_count()} CPU cores, torch {torch.__version__}")
    print(f"# command: {' '.join(cmd[1:])}")
    print(proc.stderr.strip().splitlines()[-1])
    print("\n| method | PSNR (dB) | SSIM | wall s |\n|---|---|---|---|")
    print(f"| cubic z-interpolation | {sc_cubic.psnr:.2f} | {sc_cubic.ssim:.3f} | |")
    print(f"| selfnet run --max-minutes {args.minutes:g} | {sc_ours.psnr:.2f} | {sc_ours.ssim:.3f} | {wall:.0f} |")
    print(f"| gain | {sc_ours.psnr - sc_cubic.psnr:+.2f} | {sc_ours.ssim - sc_cubic.ssim:+.3f} | |")
    if args.figure:
        y = int(np.argmax(truth.sum(axis=(0, 2))))
        views = [affine_fit(v[:, y, :], truth[:, y, :]) for v in (cubic, np.asarray(restored))] + [truth[:, y, :]]
        save_panels(args.figure, views, ["raw, cubic z-interpolation", "selfnet", "ground truth (lateral PSF)"],
                    scale_um=ph.spacing_iso[2])
        print(f"\nfigure: {args.figure}")


if __name__ == "__main__":
    main()
