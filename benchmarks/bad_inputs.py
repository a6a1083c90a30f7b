"""Run the real CLI over a generated zoo of bad inputs and count how many are handled cleanly.

    OMP_NUM_THREADS=1 python benchmarks/bad_inputs.py [--out bench_out/bad_inputs] [--only SUBSTRING] [-v]

"Handled" means: exit status 2, the last stderr line is ``selfnet: error: ...``, no traceback, and
no file appeared or changed in the output folder (outputs that existed are left untouched), nor in
the inputs a case could destroy (outputs that are the input: same path, symlink, hard link, zarr
nesting, ``.npy`` sidecar). Each case runs ``python -m selfnet`` in a fresh process, as a user would
(API cases run ``python -c`` on the facade). Fault cases judge themselves: ``kill -9`` during
training and during block-wise restores, then ``--resume``, must give the uninterrupted result with
no half-written output ever visible; a compressed block damaged mid-restore must give one line and
a state that ``--resume`` completes once the input is repaired; flags must override ``--config``
only when given. Prints one line per case and finally ``N tried, N handled``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
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
    watch: tuple[str, ...] = ()
    """Inputs that must stay byte for byte the same (files or folders)."""
    python: str | None = None
    """Run ``python -c`` with this code instead of ``python -m selfnet ARGS`` (API cases)."""
    stderr_has: tuple[str, ...] = field(default_factory=tuple)
    """Fragments stderr must hold besides the error line (e.g. a warning)."""


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
        ("--channels out of range", [_imagej(d / "zc.tif", _stack((12, 2, 48, 48)), axes="ZCYX"),
                                     "--channels", "0,5"]),
        ("--timepoints not a list", [_imagej(d / "tz.tif", _stack((2, 12, 48, 48)), axes="TZYX"),
                                     "--timepoints", "first"]),
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


def in_place_cases(d: Path, model: Path) -> list[Case]:
    """Outputs that are, hold or lie inside the input, under every flag: refused, the input untouched."""
    from selfnet.io import write_volume

    src = d / "inplace"
    src.mkdir(exist_ok=True)
    data = _stack((12, 48, 48))
    tif, npy = _imagej(src / "in.tif", data), _npy(src / "in.npy", data)
    (src / "in.npy.json").write_text(f'{{"spacing": [{DZ}, {DX}, {DX}]}}')
    store = str(write_volume(src / "in.ome.zarr", data, (DZ, DX, DX), dtype="uint16"))
    os.symlink(tif, src / "alias.tif")
    os.link(tif, src / "hard.tif")
    os.symlink(tif, src / "alias.pt")
    os.symlink(src / "in.npy.json", src / "other.npy.json")
    holder = d / "holder.zarr"
    holder.mkdir(exist_ok=True)
    (holder / "zarr.json").write_text('{"zarr_format": 3, "node_type": "group", "attributes": {}}')
    held = _imagej(holder / "raw.tif", data)
    os.symlink(model, d / "model_alias.tif")
    restore = ["restore", "--model", str(model)]
    cases = [
        ("zarr restored onto itself, --overwrite", [*restore[:1], store, *restore[1:], "-o", store, "--overwrite"]),
        ("zarr restored onto itself, --resume", [*restore[:1], store, *restore[1:], "-o", store, "--resume"]),
        ("zarr run onto itself, --overwrite", ["run", store, "-o", store, "--overwrite", "--epochs", "1"]),
        ("zarr run onto itself, --resume", ["run", store, "-o", store, "--resume", "--epochs", "1"]),
        ("TIFF restored onto itself, --overwrite", [*restore[:1], tif, *restore[1:], "-o", tif, "--overwrite"]),
        ("TIFF run onto itself, --overwrite", ["run", tif, "-o", tif, "--overwrite", "--epochs", "1"]),
        (".npy restored onto itself, --overwrite", [*restore[:1], npy, *restore[1:], "-o", npy, "--overwrite"]),
        ("output via another spelling", [*restore[:1], tif, *restore[1:], "-o", str(src / "x" / ".." / "in.tif"),
                                         "--overwrite"]),
        ("output is a symlink to the input", [*restore[:1], tif, *restore[1:], "-o", str(src / "alias.tif"),
                                              "--overwrite"]),
        ("output is a hard link to the input", [*restore[:1], tif, *restore[1:], "-o", str(src / "hard.tif"),
                                                "--overwrite"]),
        ("output inside the input zarr", [*restore[:1], store, *restore[1:], "-o", f"{store}/0/iso.tif",
                                          "--overwrite"]),
        ("output zarr inside the input zarr", [*restore[:1], store, *restore[1:], "-o", f"{store}/iso.ome.zarr"]),
        ("output folder holds the input", [*restore[:1], held, *restore[1:], "-o", str(holder), "--overwrite"]),
        (".npy output whose sidecar is the input's", [*restore[:1], npy, *restore[1:], "-o",
                                                      str(src / "other.npy"), "--overwrite"]),
        ("--save-model is the input (symlink)", ["run", tif, "-o", "OUT/iso.tif", "--save-model",
                                                 str(src / "alias.pt"), "--overwrite", "--epochs", "1"]),
        ("train output is the input (symlink)", ["train", tif, "-o", str(src / "alias.pt"), "--overwrite",
                                                 "--epochs", "1"]),
        ("output is the model file (symlink)", [*restore[:1], tif, *restore[1:], "-o", str(d / "model_alias.tif"),
                                                "--overwrite"]),
    ]
    watch = (str(src), str(holder), str(model))
    return [Case(name, [*args, "-q"], watch=watch) for name, args in cases]


def cluster_and_api_cases(d: Path, model: Path) -> list[Case]:
    """Dask TLS options, a plain-text scheduler off the loopback, and the facade on a plain array."""
    good = str(d / "phantom.tif")
    (d / "fake.pem").write_text("not a certificate\n")
    pem = str(d / "fake.pem")
    base = ["restore", good, "--model", str(model), "-o", "OUT/iso.ome.zarr", "-q"]
    api = (f"import numpy as np, selfnet\nm = selfnet.Model.load({str(model)!r})\n"
           "selfnet.restore(np.random.default_rng(0).random((12, 48, 48), dtype=np.float32), m, progress=False)")
    return [
        Case("--tls-cert file missing", [*base, "--scheduler", "tls://127.0.0.1:1", "--tls-ca-file", pem,
                                         "--tls-cert", str(d / "none.pem")]),
        Case("TLS options with a tcp:// scheduler", [*base, "--scheduler", "tcp://127.0.0.1:1", "--tls-ca-file", pem,
                                                    "--tls-cert", pem]),
        Case("TLS options without --scheduler", [*base, "--tls-ca-file", pem, "--tls-cert", pem]),
        Case("tls:// scheduler without certificates", [*base, "--scheduler", "tls://127.0.0.1:1"]),
        Case("plain tcp:// scheduler off the loopback", [*base, "--scheduler", "tcp://192.0.2.1:8786"],
             stderr_has=("warning", "not encrypted")),
        Case("API: restore(array, model) without spacing", [], python=api),
    ]


_API = """import sys
from selfnet.errors import SelfnetError
try:
{body}
except SelfnetError as err:
    print(f"selfnet: error: {{err}}", file=sys.stderr)
    sys.exit(2)
"""


# --------------------------------------------------------------------------------------------
# faults: kill -9, a block damaged mid-restore, flag precedence (each judges itself)
# --------------------------------------------------------------------------------------------

FaultCheck = Callable[[], tuple[bool, str]]
_FAULT_ENV = {**os.environ, "OMP_NUM_THREADS": "1", "SELFNET_CHECKPOINT_EVERY_S": "0"}


def fault_cases(d: Path, model: Path) -> list[tuple[str, FaultCheck]]:
    """Faults that must leave a resumable state and never a half-written output."""
    f = d / "faults"
    f.mkdir(exist_ok=True)
    phantom = d / "phantom.tif"
    raw = tifffile.imread(phantom)
    big = _imagej(f / "big.tif", np.tile(raw, (2, 2, 2)), dz=4 * DX)
    small = dict(patch_size=32, pool_size=64, batch_size=4, deblur=NetConfig(channels=8, blocks=1),
                 generator_b=NetConfig(channels=8, blocks=1), generator_a_channels=8)
    steps = _text(f / "steps.yaml", make_config(epochs=2, steps_per_epoch=30, **small).to_yaml())
    flags = _text(f / "flags.yaml", make_config(epochs=1, steps_per_epoch=2, seed=3, max_minutes=5, **small).to_yaml())
    return [
        ("kill -9 during training, then --resume", lambda: _kill_training(f, phantom, steps)),
        ("kill -9 mid block-wise restore (OME-Zarr), --resume", lambda: _kill_restore(f, big, model, ".ome.zarr")),
        ("kill -9 mid block-wise restore (TIFF), --resume", lambda: _kill_restore(f, big, model, ".tif")),
        ("compressed block damaged mid-restore", lambda: _damaged_mid_restore(f, raw, model)),
        ("flags override --config only when given", lambda: _precedence(f, phantom, flags)),
    ]


def _cli(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "selfnet", *map(str, args)], capture_output=True, text=True,
                          env=_FAULT_ENV, timeout=600, check=False)


def _kill_when(args: list[object], ready: Callable[[], bool]) -> bool:
    """Start ``selfnet ARGS`` and SIGKILL it once ``ready()``; False if it finished first."""
    proc = subprocess.Popen([sys.executable, "-m", "selfnet", *map(str, args)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=_FAULT_ENV)
    while not ready():
        if proc.poll() is not None:
            return False
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return True


def _visible(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir() if not p.name.startswith(".")}


def _markers(store: Path) -> int:
    folder = store / ".selfnet-progress"
    return len(list(folder.glob("*.json"))) if folder.is_dir() else 0


def _kill_training(f: Path, phantom: Path, cfg: str) -> tuple[bool, str]:
    from selfnet.model import Model

    ref = f / "ref_model.pt"
    if (res := _cli("train", phantom, "-o", ref, "--config", cfg, "--device", "cpu", "-q")).returncode:
        return False, res.stderr[-300:]
    work = f / "train"
    work.mkdir()
    out, ckpt = work / "model.pt", work / "model.pt.ckpt.pt"
    args: list[object] = ["train", phantom, "-o", out, "--config", cfg, "--device", "cpu", "-q"]
    if not _kill_when(args, ckpt.is_file) or out.exists():
        return False, "training finished before the kill"
    if _visible(work) != {ckpt.name}:
        return False, f"visible after the kill: {sorted(_visible(work))}"
    if (res := _cli(*args, "--resume")).returncode:
        return False, res.stderr[-300:]
    a, b = Model.load(out), Model.load(ref)
    same = all(np.array_equal(a.deblur_state[k].numpy(), v.numpy()) for k, v in b.deblur_state.items())
    clean = sorted(p.name for p in work.iterdir()) == ["model.pt"]
    return same and clean, "resumed model = uninterrupted, bit for bit" if same else "weights differ"


def _kill_restore(f: Path, big: str, model: Path, suffix: str) -> tuple[bool, str]:
    from selfnet.errors import SelfnetError
    from selfnet.io import read_volume

    ref = f / f"ref{suffix}"
    common: list[object] = ["-m", model, "--block", "32", "--chunked", "-q"]
    if (res := _cli("restore", big, "-o", ref, *common)).returncode:
        return False, res.stderr[-300:]
    work = f / f"restore{suffix.replace('.', '_')}"
    work.mkdir()
    out = work / f"iso{suffix}"
    store = out if suffix.endswith(".zarr") else work / f".{out.name}.partial.zarr"
    args: list[object] = ["restore", big, "-o", out, *common]
    if not _kill_when(args, lambda: _markers(store) >= 3):
        return False, "the restore finished before the kill"
    done = _markers(store)
    if suffix.endswith(".zarr"):
        try:
            read_volume(out)
            return False, "a killed store reads as a finished image"
        except SelfnetError:
            pass
    elif _visible(work):
        return False, f"visible after the kill: {sorted(_visible(work))}"
    if (res := _cli(*args, "--resume")).returncode:
        return False, res.stderr[-300:]
    same = np.array_equal(np.asarray(read_volume(out).data), np.asarray(read_volume(ref).data))
    return same and _visible(work) == {out.name}, f"killed after {done} blocks; resumed = uninterrupted, bit for bit"


_DAMAGE = """import pathlib, selfnet, tifffile
src = pathlib.Path({src!r})
with tifffile.TiffFile(src) as tf:
    start, count = int(tf.pages[-1].dataoffsets[0]), int(tf.pages[-1].databytecounts[0])
original = src.read_bytes()
def damage(event):
    if event.stage == "blocks" and event.done == 1:
        bad = bytearray(original)
        bad[start + 2 : start + count] = bytes(range(256)) * ((count - 2) // 256) + bytes((count - 2) % 256)
        src.write_bytes(bytes(bad))
selfnet.restore(src, {model!r}, output={out!r}, block=(16, 32, 32), device="cpu", progress=damage)"""


def _damaged_mid_restore(f: Path, raw: np.ndarray, model: Path) -> tuple[bool, str]:
    from selfnet.io import read_volume

    src = Path(_imagej(f / "zlib.tif", raw, dz=4 * DX, compression="zlib"))
    original = src.read_bytes()
    ref, out = f / "zref.ome.zarr", f / "zout.ome.zarr"
    if (res := _cli("restore", src, "-m", model, "-o", ref, "--block", "16,32,32", "-q")).returncode:
        return False, res.stderr[-300:]
    code = _API.format(body=_indent(_DAMAGE.format(src=str(src), model=str(model), out=str(out))))
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_FAULT_ENV, check=False)
    last = (res.stderr.strip().splitlines() or [""])[-1]
    if res.returncode != 2 or "Traceback" in res.stderr or "damaged" not in last or "--resume" not in last:
        return False, res.stderr[-400:]
    src.write_bytes(original)  # the user repairs the input
    if (res := _cli("restore", src, "-m", model, "-o", out, "--block", "16,32,32", "-q", "--resume")).returncode:
        return False, res.stderr[-300:]
    a, b = np.asarray(read_volume(out).data), np.asarray(read_volume(ref).data)
    same = np.array_equal(a, b)
    close = np.allclose(a, b, rtol=1e-5, atol=1e-3 * float(np.abs(b).max()))
    how = "bit for bit" if same else "to float rounding"
    return close, f"{last.removeprefix('selfnet: error: ')[:70]}...; resumed = uninterrupted, {how}"


def _precedence(f: Path, phantom: Path, cfg: str) -> tuple[bool, str]:
    from selfnet.model import Model

    got = []
    for name, extra in (("file.pt", []), ("flags.pt", ["--seed", "4", "--epochs", "2", "--max-minutes", "4"])):
        if (res := _cli("train", phantom, "-o", f / name, "--config", cfg, "--device", "cpu", "-q", *extra)).returncode:
            return False, res.stderr[-300:]
        c = Model.load(f / name).config
        got.append((c.seed, c.epochs, c.max_minutes))
    ok = got == [(3, 1, 5.0), (4, 2, 4.0)]
    return ok, f"config (seed, epochs, minutes) {got[0]}, with flags {got[1]}"


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
    return {str(p.relative_to(out)): _digest(p) for p in sorted(out.rglob("*"))}


def _digest(p: Path) -> str:
    """Content hash of a file; symlinks and folders by what they are, not followed."""
    if p.is_symlink():
        return f"link -> {os.readlink(p)}"
    return hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"


def _watched(paths: tuple[str, ...]) -> dict[str, str]:
    """Hashes of every file under the watched inputs."""
    found: dict[str, str] = {}
    for name in paths:
        root = Path(name)
        for p in [root, *sorted(root.rglob("*"))] if root.is_dir() else [root]:
            found[str(p)] = _digest(p)
    return found


def run_case(case: Case, out: Path) -> Outcome:
    """Run one case in a fresh process and judge it."""
    before = _prepare_out(out)
    inputs = _watched(case.watch)
    args = [a.replace("OUT", str(out), 1) if a.startswith("OUT") else a for a in case.args]
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    if "--env" in args:
        i = args.index("--env")
        key, _, value = args[i + 1].partition("=")
        env[key] = value
        del args[i : i + 2]
    t0 = time.perf_counter()
    command = ["-c", _API.format(body=_indent(case.python))] if case.python else ["-m", "selfnet", *args]
    proc = subprocess.run([sys.executable, *command], capture_output=True, text=True, env=env, timeout=300)
    seconds = time.perf_counter() - t0
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    last = lines[-1] if lines else ""
    handled = (proc.returncode == 2 and last.startswith("selfnet: error:") and "Traceback" not in proc.stderr
               and _snapshot(out) == before and _watched(case.watch) == inputs
               and all(f in proc.stderr for f in case.stderr_has))
    return Outcome(handled, proc.returncode, last if handled else proc.stderr.strip()[-600:], seconds)


def _indent(code: str) -> str:
    return "\n".join("    " + line for line in code.splitlines())


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
    cases = (input_cases(zoo) + output_and_option_cases(zoo) + model_cases(zoo, model) + in_place_cases(zoo, model)
             + cluster_and_api_cases(zoo, model))
    faults = fault_cases(zoo, model)
    if args.only:
        cases = [c for c in cases if args.only.lower() in c.name.lower()]
        faults = [c for c in faults if args.only.lower() in c[0].lower()]
    handled = 0
    for case in cases:
        res = run_case(case, args.out / "out")
        handled += res.handled
        mark = "ok  " if res.handled else "FAIL"
        shown = res.line.replace("selfnet: error: ", "") if res.handled else res.line
        print(f"{mark} {case.name:40s} rc={res.code} {res.seconds:4.1f}s  {shown if args.verbose or not res.handled else ''}"
              .rstrip(), flush=True)
    for name, check in faults:
        t0 = time.perf_counter()
        try:
            ok, detail = check()
        except Exception as exc:  # noqa: BLE001 - a failed fault check is reported, not raised
            ok, detail = False, f"{type(exc).__name__}: {exc}"
        handled += ok
        print(f"{'ok  ' if ok else 'FAIL'} {name:40s} {time.perf_counter() - t0:5.1f}s  {detail}", flush=True)
    print(f"{len(cases) + len(faults)} tried, {handled} handled")
    _cleanup(zoo)
    sys.exit(0 if handled == len(cases) + len(faults) else 1)


def _cleanup(zoo: Path) -> None:
    readonly = zoo / "readonly"
    if readonly.exists():
        readonly.chmod(0o700)


if __name__ == "__main__":
    main()
