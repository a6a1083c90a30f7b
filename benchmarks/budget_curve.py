"""Quality vs training budget: PSNR at several --max-minutes for our default and the published config.

    python benchmarks/budget_curve.py [--minutes 1,2,5,10] [--device cpu] [--figure docs/img/budget_curve.png]

One neurite phantom (raw 48x256x256, k = 4, axial blur 3x lateral, 200 photons), the same for every
run; each budget trains from scratch in-process and restores the whole stack. Scores are PSNR / 3D
SSIM after the best affine fit against the truth seen through the lateral PSF. Prints a markdown
table and saves a PNG of PSNR vs minutes. Run it alone: budgets are wall-clock.
"""

from __future__ import annotations

import argparse
import os
import time
from datetime import date
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from selfnet.config import TrainConfig, make_config  # noqa: E402
from selfnet.devices import resolve_device  # noqa: E402
from selfnet.inference.restore import interpolate_volume, restore_volume  # noqa: E402
from selfnet.phantoms.metrics import score  # noqa: E402
from selfnet.phantoms.synthetic import make_phantom  # noqa: E402
from selfnet.training.loop import train_model  # noqa: E402

CONFIGS = {
    "selfnet default": lambda m, seed, **kw: make_config(max_minutes=m, seed=seed, **kw),
    "published config (64 ch)": lambda m, seed, **kw: TrainConfig.published(max_minutes=m, seed=seed, **kw),
}


def save_curve(path: Path, rows: list[dict], cubic_psnr: float, where: str) -> None:
    """PSNR vs minutes, one line per config, cubic interpolation as a horizontal reference."""
    fig, ax = plt.subplots(figsize=(5.5, 3.6), dpi=130)
    for name in CONFIGS:
        pts = [(r["minutes"], r["psnr"]) for r in rows if r["config"] == name]
        ax.plot(*zip(*pts), marker="o", label=name)
    ax.axhline(cubic_psnr, color="grey", ls="--", label="cubic z-interpolation")
    ax.set_xscale("log")
    ax.set_xticks([r["minutes"] for r in rows if r["config"] == "selfnet default"])
    ax.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.get_xaxis().set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel(f"training budget (--max-minutes), {where}")
    ax.set_ylabel("PSNR vs truth (dB)")
    ax.set_title("neurites 48x256x256, k=4, axial blur 3x")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", default="1,2,5,10")
    parser.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated subset of the configs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="cpu, cuda, auto, ...")
    parser.add_argument("--batch-size", type=int, default=None, help="override both configs' batch size")
    parser.add_argument("--figure", type=Path, default=Path("bench_out/budget_curve.png"))
    args = parser.parse_args()
    device = resolve_device(args.device)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{os.cpu_count()} CPU cores"
    ph = make_phantom("neurites", (189, 256, 256), k=4.0, axial_ratio=3.0, photons=200, seed=args.seed)
    truth = ph.gt_lateral[ph.iso_slice()]
    cubic = score(interpolate_volume(ph.raw, ph.spacing_raw), truth)
    print(f"# budget curve {date.today()}: neurites raw {'x'.join(map(str, ph.raw.shape))}, k=4, axial blur 3x, "
          f"200 photons; {where}, {torch.get_num_threads()} CPU threads, torch {torch.__version__}")
    print(f"# cubic z-interpolation: {cubic.psnr:.2f} dB, SSIM {cubic.ssim:.3f}")
    print("\n| config | --max-minutes | steps stage 1/2 | train s | restore s | PSNR (dB) | SSIM | gain over cubic (dB) |")
    print("|---|---|---|---|---|---|---|---|")
    rows = []
    extra = {"batch_size": args.batch_size} if args.batch_size else {}
    for name in args.configs.split(","):
        for minutes in (float(m) for m in args.minutes.split(",")):
            t0 = time.perf_counter()
            model = train_model(ph.raw, ph.spacing_raw, CONFIGS[name](minutes, args.seed, **extra), device)
            t1 = time.perf_counter()
            restored, _ = restore_volume(ph.raw, ph.spacing_raw, model, device)
            t2 = time.perf_counter()
            sc = score(restored, truth)
            steps = f"{model.summary.get('stage1_steps', 0)}/{model.summary.get('stage2_steps', 0)}"
            rows.append({"config": name, "minutes": minutes, "psnr": sc.psnr})
            print(f"| {name} | {minutes:g} | {steps} | {t1 - t0:.0f} | {t2 - t1:.1f} | {sc.psnr:.2f} | {sc.ssim:.3f} | "
                  f"{sc.psnr - cubic.psnr:+.2f} |", flush=True)
    save_curve(args.figure, rows, cubic.psnr, where)
    print(f"\nfigure: {args.figure}")


if __name__ == "__main__":
    main()
