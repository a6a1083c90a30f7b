"""Run the real CLI over a generated zoo of bad inputs and count how many are handled cleanly.

    OMP_NUM_THREADS=1 python benchmarks/bad_inputs.py [--out bench_out/bad_inputs] [--only SUBSTRING] [-v]

"Handled" means: exit status 2, the last stderr line is ``selfnet: error: ...``, no traceback, and
no file appeared or changed in the output folder (outputs that existed are left untouched). Each
case runs ``python -m selfnet`` in a fresh process, as a user would; prints one line per case and
finally ``N tried, N handled``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile
import torch

from selfnet.config import NetConfig, make_config
from selfnet.phantoms.synthetic import make_phantom
from selfnet.training.loop import train_model

DZ, DX = 0.8, 0.2
RNG = np.random.default_rng(0)


@dataclass
class Case:
    """One bad invocation: the CLI arguments (OUT stands for the case's output folder)."""

    name: str
    args: list[str]


@dataclass
class Outcome:
    """What happened when a case ran."""

    handled: bool
    code: int
    line: str
    seconds: float


# --------------------------------------------------------------------------------------------
# the zoo
# --------------------------------------------------------------------------------------------


def _stack(shape: tuple[int, ...] = (12, 48, 48), dtype: str = "uint16") -> np.ndarray:
    return RNG.integers(0, 1000, shape).astype(dtype)


def _imagej(path: Path, data: np.ndarray, axes: str = "ZYX", dz: float = DZ, dy: float = DX,
            compression: str | None = None) -> str:
    tifffile.imwrite(path, data, imagej=True, resolution=(1 / DX, 1 / dy), compression=compression,
                     metadata={"axes": axes, "unit": "um", "spacing": dz})
    return str(path)


def _plain(path: Path, data: np.ndarray) -> str:
    tifffile.imwrite(path, data)
    return str(path)


def _npy(path: Path, data: np.ndarray) -> str:
    np.save(path, data)
    return str(path)


def _bytes(path: Path, content: bytes) -> str:
    path.write_bytes(content)
    return str(path)


def _with(value: float) -> np.ndarray:
    data = RNG.random((12, 48, 48)).astype(np.float32)
    data[3, 4, 5] = value
    return data


def _tiny_model(folder: Path) -> Path:
    """A model trained for a few steps on a small phantom (z/xy ratio 4)."""
    ph = make_phantom("neurites", (48, 64, 64), k=4.0, axial_ratio=3.0, photons=300, seed=1)
    cfg = make_config(epochs=1, steps_per_epoch=5, patch_size=32, pool_size=64, batch_size=4,
                      deblur=NetConfig(channels=8, blocks=1), generator_b=NetConfig(channels=8, blocks=1),
                      generator_a_channels=8)
    _imagej(folder / "phantom.tif", ph.raw, dz=ph.spacing_raw[0])
    return train_model(ph.raw, ph.spacing_raw, cfg, torch.device("cpu")).save(folder / "tiny.pt", overwrite=True)


def input_cases(d: Path) -> list[Case]:
    """Bad input files and voxel sizes for ``selfnet run``."""
    good = _imagej(d / "good.tif", _stack())
    whole = Path(good).read_bytes()
    corrupt = bytearray(whole)
    corrupt[4:8] = b"\xff\xff\xff\x7f"
    npy = Path(_npy(d / "whole.npy", _stack())).read_bytes()
    zipped = Path(_imagej(d / "zlib.tif", _stack(), compression="zlib")).read_bytes()
    damaged = bytearray(zipped)
    with tifffile.TiffFile(d / "zlib.tif") as tf:
        start = int(tf.pages[5].dataoffsets[0]) + 20  # inside the compressed pixels of plane 6
    damaged[start : start + 50] = bytes(50)
    (d / "folder.tif").mkdir(exist_ok=True)
    _npy(d / "neg.npy", _stack())
    (d / "neg.npy.json").write_text('{"spacing": [-1, 0.2, 0.2]}')
    sizes = ["--lateral-um", str(DX), "--axial-um", str(DZ)]
    files: list[tuple[str, list[str]]] = [
        ("missing path", [str(d / "nope.tif")]),
        ("directory instead of file", [str(d / "folder.tif")]),
        ("empty .tif", [_bytes(d / "empty.tif", b"")]),
        ("empty .npy", [_bytes(d / "empty.npy", b""), *sizes]),
        ("truncated TIFF (half)", [_bytes(d / "half.tif", whole[: len(whole) // 2])]),
        ("truncated TIFF (header only)", [_bytes(d / "head.tif", whole[:64])]),
        ("truncated TIFF (last planes cut)", [_bytes(d / "cut90.tif", whole[: len(whole) * 9 // 10])]),
        ("truncated compressed TIFF", [_bytes(d / "zcut.tif", zipped[: len(zipped) * 9 // 10])]),
        ("damaged compressed TIFF data", [_bytes(d / "zbad.tif", bytes(damaged))]),
        ("corrupt TIFF (IFD offset)", [_bytes(d / "corrupt.tif", bytes(corrupt))]),
        ("random bytes named .tif", [_bytes(d / "random.tif", RNG.bytes(4096))]),
        ("text file named .tif", [_bytes(d / "text.tif", b"hello, I am not an image\n")]),
        ("text file named .npy", [_bytes(d / "text.npy", b"hello\n"), *sizes]),
        ("truncated .npy", [_bytes(d / "cut.npy", npy[:500]), *sizes]),
        ("unsupported suffix .png", [_bytes(d / "img.png", b"\x89PNG\r\n")]),
        ("2D image", [_imagej(d / "flat.tif", _stack((48, 48)), axes="YX")]),
        ("single z-plane", [_npy(d / "one.npy", _stack((1, 48, 48))), *sizes]),
        ("too few planes for a patch", [_imagej(d / "few.tif", _stack((3, 48, 48)))]),
        ("too few pixels for a patch", [_imagej(d / "small.tif", _stack((12, 10, 10)))]),
        ("4D TIFF without axes", [_plain(d / "c.tif", _stack((3, 12, 48, 48))), *sizes]),
        ("5D TIFF without axes", [_plain(d / "tc.tif", _stack((2, 3, 12, 48, 48))), *sizes]),
        ("4D .npy without axes", [_npy(d / "c.npy", _stack((3, 12, 48, 48))), *sizes]),
        ("z planes stored as channels", [_imagej(d / "cyx.tif", _stack(), axes="CYX")]),
        ("channels, no --channel", [_imagej(d / "zc.tif", _stack((12, 2, 48, 48)), axes="ZCYX")]),
        ("time points, no --timepoint", [_imagej(d / "tz.tif", _stack((2, 12, 48, 48)), axes="TZYX")]),
        ("--channel out of range", [str(d / "zc.tif"), "--channel", "7"]),
        ("--axes of wrong length", [str(d / "c.tif"), *sizes, "--axes", "ZYX"]),
        ("RGB image", [_plain(d / "rgb.tif", _stack((12, 48, 48, 3), "uint8"))]),
        ("complex data", [_npy(d / "complex.npy", _stack().astype(np.complex64)), *sizes]),
        ("boolean data", [_npy(d / "bool.npy", _stack() > 500), *sizes]),
        ("all-zero volume", [_imagej(d / "zero.tif", np.zeros((12, 48, 48), np.uint16))]),
        ("constant volume", [_imagej(d / "const.tif", np.full((12, 48, 48), 3.5, np.float32))]),
        ("NaN values", [_imagej(d / "nan.tif", _with(np.nan))]),
        ("Inf values", [_imagej(d / "inf.tif", _with(np.inf))]),
        ("negative --axial-um", [good, "--axial-um", "-1"]),
        ("zero --lateral-um", [good, "--lateral-um", "0"]),
        ("negative spacing in sidecar", [str(d / "neg.npy")]),
        ("axial step smaller than pixel", [good, "--axial-um", "0.1"]),
        ("absurd ratio (1e6)", [good, "--axial-um", "1e6"]),
        ("absurd lateral size (1e-9 um)", [good, "--lateral-um", "1e-9"]),
        ("non-square pixel", [_imagej(d / "nonsq.tif", _stack(), dy=2 * DX)]),
        ("missing voxel size", [_plain(d / "nosize.tif", _stack())]),
        ("missing axial step", [str(d / "nosize.tif"), "--lateral-um", "0.2"]),
    ]
    return [Case(name, ["run", *args, "-o", "OUT/iso.tif", "--epochs", "1", "-q"]) for name, args in files]


def output_and_option_cases(d: Path) -> list[Case]:
    """Bad outputs, options, devices and memory for ``selfnet run`` on a good stack."""
    good = str(d / "good.tif")
    (d / "afile").write_text("x")
    ro = "/sys" if os.geteuid() == 0 else str(_read_only(d))
    cases = [
        ("unknown output suffix", ["-o", "OUT/iso.xyz"]),
        ("output parent is a file", ["-o", str(d / "afile" / "iso.tif")]),
        ("output parent missing", ["-o", "OUT/no/such/iso.tif"]),
        ("output is a folder", ["-o", "OUT/dir.tif"]),
        ("unwritable output folder", ["-o", f"{ro}/iso.tif"]),
        ("output exists, no --overwrite", ["-o", "OUT/exists.tif"]),
        ("interrupted training left, no --resume", ["-o", "OUT/ckpt.tif"]),
        ("unsupported --dtype", ["-o", "OUT/iso.tif", "--dtype", "int64"]),
        ("negative --max-minutes", ["-o", "OUT/iso.tif", "--max-minutes", "-5"]),
        ("infinite --max-minutes", ["-o", "OUT/iso.tif", "--max-minutes", "inf"]),
        ("negative --epochs", ["-o", "OUT/iso.tif", "--epochs", "-1"]),
        ("zero --epochs", ["-o", "OUT/iso.tif", "--epochs", "0"]),
        ("negative --seed", ["-o", "OUT/iso.tif", "--seed", "-3"]),
        ("unknown device", ["-o", "OUT/iso.tif", "--device", "tpu"]),
        ("CUDA index that does not exist", ["-o", "OUT/iso.tif", "--device", "cuda:99"]),
        ("missing --config file", ["-o", "OUT/iso.tif", "--config", str(d / "none.yaml")]),
        ("invalid --config values", ["-o", "OUT/iso.tif", "--config", _text(d / "bad.yaml", "patch_size: 33\n")]),
        ("not enough memory (capped at 10 MB)", ["-o", "OUT/iso.tif", "--env", "SELFNET_MEMORY_LIMIT_GB=0.01"]),
    ]
    return [Case(name, ["run", good, *args, "-q"]) for name, args in cases]


def model_cases(d: Path, model: Path) -> list[Case]:
    """Bad model files for ``selfnet restore`` on a good stack."""
    blob = model.read_bytes()
    torch.save({"state_dict": {"w": torch.zeros(3)}}, d / "foreign.pt")
    torch.save(torch.zeros(3), d / "tensor.pt")
    raw = torch.load(model, weights_only=True)
    raw["deblur"] = {"nonsense": torch.zeros(2)}
    torch.save(raw, d / "broken.pt")
    raw["format_version"] = 99
    torch.save(raw, d / "future.pt")
    phantom = str(d / "phantom.tif")
    files = [
        ("missing model", str(d / "none.pt")),
        ("empty model", _bytes(d / "empty.pt", b"")),
        ("text model", _bytes(d / "text.pt", b"not a model\n")),
        ("truncated model", _bytes(d / "cut.pt", blob[: len(blob) // 2])),
        ("foreign torch file (dict)", str(d / "foreign.pt")),
        ("foreign torch file (tensor)", str(d / "tensor.pt")),
        ("damaged weights", str(d / "broken.pt")),
        ("model from a newer selfnet", str(d / "future.pt")),
    ]
    cases = [Case(name, ["restore", phantom, "--model", path, "-o", "OUT/iso.tif", "-q"]) for name, path in files]
    cases.append(Case("model from a very different ratio",
                      ["restore", phantom, "--model", str(model), "-o", "OUT/iso.tif", "--axial-um", "2.0", "-q"]))
    return cases


def _text(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def _read_only(d: Path) -> Path:
    folder = d / "readonly"
    folder.mkdir(exist_ok=True)
    folder.chmod(0o500)
    return folder


# --------------------------------------------------------------------------------------------
# running
# --------------------------------------------------------------------------------------------


def _prepare_out(out: Path) -> dict[str, str]:
    """A fresh output folder with the files some cases must leave untouched; returns their hashes."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    (out / "dir.tif").mkdir()
    (out / "exists.tif").write_bytes(b"precious result")
    (out / "ckpt.tif.ckpt.pt").write_bytes(b"interrupted training")
    return _snapshot(out)


def _snapshot(out: Path) -> dict[str, str]:
    return {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(out.rglob("*"))}


def run_case(case: Case, out: Path) -> Outcome:
    """Run one case in a fresh process and judge it."""
    before = _prepare_out(out)
    args = [a.replace("OUT", str(out), 1) if a.startswith("OUT") else a for a in case.args]
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    if "--env" in args:
        i = args.index("--env")
        key, _, value = args[i + 1].partition("=")
        env[key] = value
        del args[i : i + 2]
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "selfnet", *args], capture_output=True, text=True, env=env,
                          timeout=300)
    seconds = time.perf_counter() - t0
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    last = lines[-1] if lines else ""
    handled = (proc.returncode == 2 and last.startswith("selfnet: error:") and "Traceback" not in proc.stderr
               and _snapshot(out) == before)
    return Outcome(handled, proc.returncode, last if handled else proc.stderr.strip()[-600:], seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench_out/bad_inputs"))
    parser.add_argument("--only", default=None, help="run only cases whose name contains this text")
    parser.add_argument("-v", "--verbose", action="store_true", help="print each error line")
    args = parser.parse_args()
    zoo = args.out / "zoo"
    shutil.rmtree(args.out, ignore_errors=True)
    zoo.mkdir(parents=True)
    model = _tiny_model(zoo)
    cases = input_cases(zoo) + output_and_option_cases(zoo) + model_cases(zoo, model)
    if args.only:
        cases = [c for c in cases if args.only.lower() in c.name.lower()]
    handled = 0
    for case in cases:
        res = run_case(case, args.out / "out")
        handled += res.handled
        mark = "ok  " if res.handled else "FAIL"
        shown = res.line.replace("selfnet: error: ", "") if res.handled else res.line
        print(f"{mark} {case.name:40s} rc={res.code} {res.seconds:4.1f}s  {shown if args.verbose or not res.handled else ''}"
              .rstrip(), flush=True)
    print(f"{len(cases)} tried, {handled} handled")
    _cleanup(zoo)
    sys.exit(0 if handled == len(cases) else 1)


def _cleanup(zoo: Path) -> None:
    readonly = zoo / "readonly"
    if readonly.exists():
        readonly.chmod(0o700)


if __name__ == "__main__":
    main()
