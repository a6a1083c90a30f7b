"""Speed benchmark: training patches/s per stage and `selfnet restore` throughput by volume size.

    python benchmarks/speed.py [--device auto] [--sizes 48x128x128,48x256x256] [--published] [--batch-sizes 8,32]

Restore throughput counts the whole `selfnet restore` command (process start, reading, inference,
writing) in Mvox/s of OUTPUT voxels, and also the in-process restore alone. Peak RSS is that of the
restore subprocess itself (``wait4`` of that one command, through a small launcher, so an earlier, bigger child never shows
up in a later row). Prints markdown tables with the device and torch version.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from selfnet.config import TrainConfig, make_config
from selfnet.devices import resolve_device
from selfnet.inference.restore import restore_volume
from selfnet.method.resample import n_iso
from selfnet.phantoms.synthetic import make_phantom, save_phantom
from selfnet.training.loop import train_model


def restore_command(raw_path: Path, model_path: Path, out_path: Path, device: str) -> tuple[float, float]:
    """Wall time and peak RSS (MiB) of one `selfnet restore` subprocess: its own peak, not any earlier child's."""
    cmd = [sys.executable, "-m", "selfnet", "restore", str(raw_path), "--model", str(model_path), "-o",
           str(out_path), "--device", device, "--overwrite", "--quiet"]
    t0 = time.perf_counter()
    code, stderr, maxrss = run_measured(cmd)
    wall = time.perf_counter() - t0
    if code:
        sys.exit(stderr)
    return wall, peak_rss_mib(maxrss)


_LAUNCHER = """import os, sys
pid = os.fork()
if pid == 0:
    os.execv(sys.argv[2], sys.argv[2:])
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as fh:
    fh.write(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status))
"""


def run_measured(cmd: list[str]) -> tuple[int, str, int]:
    """Run ``cmd``; return its exit status, stderr and its own peak RSS (``ru_maxrss``, ``wait4``).

    A child forked straight from this (torch-sized) process would inherit our high-water mark
    across ``exec``; a tiny launcher in between forks it from a fresh, small process instead.
    """
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "maxrss"
        proc = subprocess.run([sys.executable, "-S", "-c", _LAUNCHER, str(result), *cmd], stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
        maxrss = int(result.read_text()) if result.is_file() else 0
    return proc.returncode, proc.stderr, maxrss


def peak_rss_mib(maxrss: int) -> float:
    """``ru_maxrss`` in MiB (kilobytes on Linux, bytes on macOS)."""
    return maxrss / (2**20 if sys.platform == "darwin" else 1024)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--sizes", default="48x128x128,48x256x256")
    parser.add_argument("--published", action="store_true", help="also measure the paper's 64-channel nets")
    parser.add_argument("--steps", type=int, default=60, help="steps per stage for the training throughput")
    parser.add_argument("--batch-sizes", default="8", help="training throughput at these batch sizes (default only)")
    args = parser.parse_args()
    device = resolve_device(args.device)
    print(f"# speed benchmark: device {device}, {os.cpu_count()} CPU cores ({platform.machine()}), "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    run = dict(epochs=2, steps_per_epoch=args.steps, seed=0, stage1_fraction=0.5)
    configs = {"selfnet default": make_config(**run, batch_size=batch_sizes[0])}
    throughput_only = {f"selfnet default, batch {bs}": bs for bs in batch_sizes[1:]}  # trained, not restored
    configs.update({name: make_config(**run, batch_size=bs) for name, bs in throughput_only.items()})
    if args.published:
        configs["published (64 ch)"] = TrainConfig.published(**run)
    print("\n| config | batch | stage 1 patches/s | stage 2 patches/s |\n|---|---|---|---|")
    models = {}
    for name, cfg in configs.items():
        ph = make_phantom("neurites", (96, 160, 160), k=4.0, seed=0)
        model = train_model(ph.raw, ph.spacing_raw, cfg, device)
        if name not in throughput_only:
            models[name] = model
        print(f"| {name} | {cfg.batch_size} | {model.summary['stage1_patches_per_s']:.0f} | {model.summary['stage2_patches_per_s']:.0f} |",
              flush=True)
    print("\n| config | raw ZYX | output voxels | in-process restore s | Mvox/s | `selfnet restore` s | Mvox/s | peak RSS MiB |")
    print("|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes.split(","):
            z, y, x = (int(v) for v in size.split("x"))
            ph = make_phantom("neurites", ((z - 1) * 4 + 1, y, x), k=4.0, seed=1)
            raw_path = save_phantom(ph, Path(tmp) / size)["raw"]
            n_out = n_iso(ph.raw.shape[0], 4.0) * y * x / 1e6
            for name, model in models.items():
                model_path = Path(tmp) / f"{name.split()[0]}.pt"
                model.save(model_path, overwrite=True)
                t0 = time.perf_counter()
                restore_volume(ph.raw, ph.spacing_raw, model, device)
                inproc = time.perf_counter() - t0
                wall, rss = restore_command(raw_path, model_path, Path(tmp) / "out.tif", str(device))
                print(f"| {name} | {'x'.join(map(str, ph.raw.shape))} | {n_out:.1f} M | {inproc:.1f} | "
                      f"{n_out / inproc:.2f} | {wall:.1f} | {n_out / wall:.2f} | {rss:.0f} |", flush=True)


if __name__ == "__main__":
    main()
