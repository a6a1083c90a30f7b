"""Chunked restore at scale: throughput (Mvox/s) and peak memory vs volume size and Dask workers.

Each run is the real command line, ``selfnet restore IN.tif -m MODEL -o OUT.ome.zarr [--workers N]``,
on a synthetic uint16 stack written plane by plane (never held in memory). Speed does not depend on
the weights, so the model is an untrained default-size net with a random output layer. Peak memory
is sampled every 0.1 s as the summed RSS of the command and all its child processes (Dask workers
included); the command's own final line reports its main-process peak as well.

    python benchmarks/scale.py                      # default runs, prints a markdown table
    python benchmarks/scale.py --runs 48x512x512:0,48x512x512:2 --ratio 4
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psutil
import tifffile
import torch

from selfnet.config import TrainConfig
from selfnet.method.nets import ResNet2d
from selfnet.method.normalize import Normalizer
from selfnet.method.resample import n_iso
from selfnet.model import Model

DEFAULT_RUNS = "48x1024x1024:0,48x1024x1024:2,48x2048x2048:0"


@dataclass
class Run:
    """One measured command."""

    shape: tuple[int, int, int]
    workers: int
    seconds: float
    out_mvox: float
    tree_peak_gib: float
    main_peak_gib: float | None
    line: str


def make_model(path: Path, ratio: float) -> Path:
    """Default-size deblurring net with a random (non-zero) tail, saved as a model file."""
    torch.manual_seed(0)
    cfg = TrainConfig()
    net = ResNet2d(cfg.deblur)
    with torch.no_grad():
        for p in net.tail.parameters():
            p.normal_(0.0, 0.02)
    Model(config=cfg, ratio=ratio, spacing=(0.2 * ratio, 0.2, 0.2), normalizer=Normalizer(0.0, 1.0),
          deblur_state=net.state_dict()).save(path, overwrite=True)
    return path


def make_stack(path: Path, shape: tuple[int, int, int], ratio: float) -> Path:
    """A uint16 ImageJ TIFF of smooth random structure plus noise, written one plane at a time."""
    z, y, x = shape
    rng = np.random.default_rng(0)
    base = rng.integers(0, 2000, (y // 8 + 1, x // 8 + 1)).astype(np.float32)
    coarse = np.kron(base, np.ones((8, 8), np.float32))[:y, :x]

    def planes():
        for k in range(z):
            yield (100 + np.roll(coarse, 5 * k, axis=1) + rng.poisson(20, (y, x))).astype(np.uint16)

    tifffile.imwrite(path, planes(), shape=shape, dtype=np.uint16, imagej=True, resolution=(5.0, 5.0),
                     metadata={"axes": "ZYX", "spacing": 0.2 * ratio, "unit": "um"})
    return path


def measure(cmd: list[str]) -> tuple[float, float, str]:
    """Wall time, peak summed RSS (GiB) of the process tree, and stderr of a command."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    root = psutil.Process(proc.pid)
    peak = 0
    while proc.poll() is None:
        try:
            procs = [root, *root.children(recursive=True)]
            peak = max(peak, sum(_rss(p) for p in procs))
        except psutil.Error:
            pass
        time.sleep(0.1)
    out, err = proc.communicate()
    seconds = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{err}")
    return seconds, peak / 2**30, err


def _rss(p: psutil.Process) -> int:
    try:
        return p.memory_info().rss
    except psutil.Error:
        return 0


def run_one(work: Path, model: Path, shape: tuple[int, int, int], workers: int, ratio: float,
            block: str | None) -> Run:
    """Restore one synthetic stack to OME-Zarr with the CLI and measure it."""
    name = "x".join(map(str, shape))
    src = work / f"in_{name}.tif"
    if not src.exists():
        make_stack(src, shape, ratio)
    out = work / f"out_{name}_{workers}.ome.zarr"
    cmd = [sys.executable, "-m", "selfnet", "restore", str(src), "-m", str(model), "-o", str(out), "--quiet",
           "--overwrite", "--device", "cpu"]
    if workers:
        cmd += ["--workers", str(workers)]
    if block:
        cmd += ["--block", block]
    seconds, tree_peak, err = measure(cmd)
    line = err.strip().splitlines()[-1]
    main = re.search(r"peak RSS ([0-9.]+) GiB", line)
    mvox = n_iso(shape[0], ratio) * shape[1] * shape[2] / 1e6
    return Run(shape, workers, seconds, mvox, tree_peak, float(main.group(1)) if main else None, line)


def table(runs: list[Run]) -> str:
    """Markdown table of the runs."""
    rows = ["| input (ZYX, uint16) | output Mvox | workers | wall s | Mvox/s "
            "| peak RSS, all processes (GiB) | peak RSS, main (GiB) |",
            "|---|---|---|---|---|---|---|"]
    for r in runs:
        who = "in-process" if r.workers == 0 else f"LocalCluster {r.workers}"
        main = f"{r.main_peak_gib:.2f}" if r.main_peak_gib is not None else "-"
        rows.append(f"| {'x'.join(map(str, r.shape))} | {r.out_mvox:.0f} | {who} | {r.seconds:.0f} | "
                    f"{r.out_mvox / r.seconds:.3f} | {r.tree_peak_gib:.2f} | {main} |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default=DEFAULT_RUNS, help="comma list of ZxYxX:workers (0 = in-process)")
    parser.add_argument("--ratio", type=float, default=4.0, help="z/xy ratio of the synthetic stacks")
    parser.add_argument("--block", default=None, help="--block passed to selfnet (default: selfnet's)")
    parser.add_argument("--workdir", default=None, help="folder for inputs/outputs (default: a temp folder)")
    args = parser.parse_args()
    specs = []
    for item in args.runs.split(","):
        size, _, workers = item.partition(":")
        specs.append((tuple(int(n) for n in size.split("x")), int(workers or 0)))
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        work = Path(tmp)
        model = make_model(work / "model.pt", args.ratio)
        runs = []
        for shape, workers in specs:
            run = run_one(work, model, shape, workers, args.ratio, args.block)
            print(f"# {run.line}", flush=True)
            runs.append(run)
    print(f"\n{dt.date.today()}, {platform.node() or 'host'}: {os.cpu_count()} CPU cores, "
          f"{psutil.virtual_memory().total / 2**30:.0f} GiB RAM, torch {torch.__version__}, "
          f"z/xy ratio {args.ratio:g}, command: python benchmarks/scale.py --runs {args.runs} --ratio {args.ratio:g}"
          + (f" --block {args.block}" if args.block else ""))
    print(table(runs))


if __name__ == "__main__":
    main()
