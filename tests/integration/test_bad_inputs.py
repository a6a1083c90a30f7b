"""Bad input through the command line: one clear line on stderr, exit 2, no traceback, nothing written.

The CLI's ``main()`` runs in-process (same parsing, same error handling as ``python -m selfnet``,
without paying a torch import per case); every case checks that no output or temporary file is
left behind. Valid inputs of every integer and float type are restored through the CLI too.
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

from selfnet import cli
from selfnet.config import TrainConfig
from selfnet.phantoms.synthetic import Phantom
from selfnet.training.loop import train_model


@dataclass
class Result:
    """Exit code and captured streams of one in-process CLI call."""

    code: int
    stdout: str
    stderr: str


def run_main(*args: object, env: dict[str, str] | None = None) -> Result:
    """Run ``selfnet ARGS`` through ``cli.main()``; any escaping exception is reported as a traceback."""
    out, err = io.StringIO(), io.StringIO()
    argv, term = sys.argv, signal.getsignal(signal.SIGTERM)
    sys.argv = ["selfnet", *map(str, args)]
    saved = {k: os.environ.get(k) for k in (env or {})}
    os.environ.update(env or {})
    code = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                cli.main()
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
            except BaseException:  # noqa: BLE001 - a bug: show it as the user would see it
                traceback.print_exc(file=err)
                code = 99
    finally:
        sys.argv = argv
        signal.signal(signal.SIGTERM, term)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return Result(code, out.getvalue(), err.getvalue())


def assert_clean_error(res: Result, *fragments: str) -> None:
    """Exit 2, last stderr line ``selfnet: error: ...`` holding every fragment, no traceback."""
    assert res.code == 2, res.stderr
    assert "Traceback" not in res.stderr, res.stderr
    lines = [line for line in res.stderr.strip().splitlines() if line.strip()]
    assert lines and lines[-1].startswith("selfnet: error:"), res.stderr
    for fragment in fragments:
        assert fragment in lines[-1], lines[-1]


def assert_nothing_written(folder: Path, before: set[str]) -> None:
    """No new file (output, sidecar, checkpoint or hidden temporary) appeared in ``folder``."""
    assert {p.name for p in folder.iterdir()} == before


# --------------------------------------------------------------------------------------------
# a zoo of bad inputs, each written into tmp_path by a builder that returns the CLI arguments
# --------------------------------------------------------------------------------------------

DZ, DX = 0.8, 0.2
RNG = np.random.default_rng(0)


def _stack(shape: tuple[int, ...] = (12, 48, 48), dtype: str = "uint16") -> np.ndarray:
    return RNG.integers(0, 1000, shape).astype(dtype)


def _imagej(path: Path, data: np.ndarray, axes: str = "ZYX", dz: float = DZ) -> Path:
    meta = {"axes": axes, "unit": "um", "spacing": dz}
    tifffile.imwrite(path, data, imagej=True, resolution=(1 / DX, 1 / DX), metadata=meta)
    return path


def _sizes() -> list[str]:
    return ["--lateral-um", str(DX), "--axial-um", str(DZ)]


Builder = Callable[[Path], list[object]]


def _good(tmp: Path) -> Path:
    return _imagej(tmp / "good.tif", _stack())


def _truncated(tmp: Path, keep: float) -> Path:
    data = _good(tmp).read_bytes()
    path = tmp / f"cut{int(keep * 100)}.tif"
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def _strip_start(path: Path, page: int) -> int:
    """File offset of the first compressed strip of one page."""
    with tifffile.TiffFile(path) as tf:
        return int(tf.pages[page].dataoffsets[0])


def _compressed(tmp: Path, damage: str) -> Path:
    """A zlib-compressed ImageJ TIFF, cut short or with zeroed bytes inside the compressed data."""
    good = tmp / "zlib.tif"
    tifffile.imwrite(good, _stack(), imagej=True, resolution=(1 / DX, 1 / DX), compression="zlib",
                     metadata={"axes": "ZYX", "unit": "um", "spacing": DZ})
    data = bytearray(good.read_bytes())
    if damage == "cut":
        data = data[: len(data) * 9 // 10]
    else:
        start = _strip_start(good, 5) + 20
        data[start : start + 50] = bytes(50)
    path = tmp / f"zlib_{damage}.tif"
    path.write_bytes(bytes(data))
    return path


def _corrupt_ifd(tmp: Path) -> Path:
    data = bytearray(_good(tmp).read_bytes())
    data[4:8] = b"\xff\xff\xff\x7f"  # first IFD offset far beyond the end of the file
    path = tmp / "corrupt.tif"
    path.write_bytes(bytes(data))
    return path


def _text(tmp: Path, name: str) -> Path:
    path = tmp / name
    path.write_text("hello, I am not an image\n")
    return path


def _empty(tmp: Path, name: str) -> Path:
    path = tmp / name
    path.write_bytes(b"")
    return path


def _npy(tmp: Path, name: str, data: np.ndarray) -> Path:
    path = tmp / name
    np.save(path, data)
    return path


def _plain_tif(tmp: Path, name: str, data: np.ndarray) -> Path:
    path = tmp / name
    tifffile.imwrite(path, data)
    return path


def _with_values(tmp: Path, name: str, value: float) -> Path:
    data = RNG.random((12, 48, 48)).astype(np.float32)
    data[3, 4, 5] = value
    return _imagej(tmp / name, data)


def _truncated_npy(tmp: Path) -> Path:
    path = _npy(tmp, "whole.npy", _stack())
    cut = tmp / "cut.npy"
    cut.write_bytes(path.read_bytes()[:500])
    return cut


def _bad_sidecar(tmp: Path) -> Path:
    path = _npy(tmp, "neg.npy", _stack())
    (tmp / "neg.npy.json").write_text('{"spacing": [-1.0, 0.2, 0.2]}')
    return path


def _non_square(tmp: Path) -> Path:
    path = tmp / "ns.tif"
    tifffile.imwrite(path, _stack(), imagej=True, resolution=(1 / DX, 1 / (2 * DX)),
                     metadata={"axes": "ZYX", "unit": "um", "spacing": DZ})
    return path


INPUTS: dict[str, tuple[Builder, tuple[str, ...]]] = {
    "missing path": (lambda t: [t / "nope.tif"], ("does not exist",)),
    "directory": (lambda t: [(t / "folder.tif").mkdir() or t / "folder.tif"], ("is a directory",)),
    "empty tif": (lambda t: [_empty(t, "empty.tif")], ("empty",)),
    "empty npy": (lambda t: [_empty(t, "empty.npy"), *_sizes()], ("empty",)),
    "truncated tif": (lambda t: [_truncated(t, 0.5)], ("cannot read", "truncated or corrupt")),
    "truncated tif header": (lambda t: [_truncated(t, 0.01)], ("cannot read",)),
    "corrupt tif": (lambda t: [_corrupt_ifd(t)], ("cannot read",)),
    "truncated compressed tif": (lambda t: [_compressed(t, "cut")], ("cannot read", "truncated or corrupt")),
    "damaged compressed data": (lambda t: [_compressed(t, "zeroed")], ("cannot read", "damaged")),
    "text named .tif": (lambda t: [_text(t, "text.tif")], ("not a TIFF",)),
    "text named .npy": (lambda t: [_text(t, "text.npy"), *_sizes()], ("not a valid or complete .npy",)),
    "truncated npy": (lambda t: [_truncated_npy(t), *_sizes()], ("not a valid or complete .npy",)),
    "unsupported input suffix": (lambda t: [_text(t, "stack.png")], ("unsupported input format",)),
    "2D image": (lambda t: [_imagej(t / "flat.tif", _stack((48, 48)), axes="YX")], ("2D",)),
    "single z plane": (lambda t: [_npy(t, "one.npy", _stack((1, 48, 48))), *_sizes()], ("1 z plane",)),
    "too few planes": (lambda t: [_imagej(t / "few.tif", _stack((3, 48, 48)))], ("too small", "planes")),
    "too few pixels": (lambda t: [_imagej(t / "tiny.tif", _stack((12, 10, 10)))], ("too small", "pixels")),
    "4D tif without axes": (lambda t: [_plain_tif(t, "c.tif", _stack((3, 12, 48, 48))), *_sizes()],
                            ("--axes CZYX", "--channel")),
    "5D tif without axes": (lambda t: [_plain_tif(t, "tc.tif", _stack((2, 3, 12, 48, 48))), *_sizes()],
                            ("--axes TCZYX",)),
    "4D npy without axes": (lambda t: [_npy(t, "c.npy", _stack((3, 12, 48, 48))), *_sizes()], ("--axes",)),
    "z planes stored as channels": (lambda t: [_imagej(t / "cyx.tif", _stack(), axes="CYX")], ("--axes ZYX",)),
    "--channels out of range": (lambda t: [_imagej(t / "zc.tif", _stack((12, 2, 48, 48)), axes="ZCYX"),
                                          "--channels", "0,5"], ("--channels", "out of range")),
    "bad --timepoints": (lambda t: [_imagej(t / "tz.tif", _stack((2, 12, 48, 48)), axes="TZYX"),
                                    "--timepoints", "first"], ("--timepoints",)),
    "channel out of range": (lambda t: [_imagej(t / "zc.tif", _stack((12, 2, 48, 48)), axes="ZCYX"),
                                        "--channel", "5"], ("out of range",)),
    "bad --axes": (lambda t: [_plain_tif(t, "c.tif", _stack((3, 12, 48, 48))), *_sizes(), "--axes", "CZY"],
                   ("--axes CZY",)),
    "all zero": (lambda t: [_imagej(t / "zero.tif", np.zeros((12, 48, 48), np.uint16))], ("constant",)),
    "constant": (lambda t: [_imagej(t / "const.tif", np.full((12, 48, 48), 7.5, np.float32))], ("constant",)),
    "NaN values": (lambda t: [_with_values(t, "nan.tif", np.nan)], ("NaN",)),
    "Inf values": (lambda t: [_with_values(t, "inf.tif", -np.inf)], ("Inf",)),
    "negative --axial-um": (lambda t: [_good(t), "--axial-um", "-1"], ("--axial-um", "positive")),
    "zero --lateral-um": (lambda t: [_good(t), "--lateral-um", "0"], ("--lateral-um", "positive")),
    "negative voxel size in sidecar": (lambda t: [_bad_sidecar(t)], ("spacing",)),
    "axial step finer than pixel": (lambda t: [_good(t), "--axial-um", "0.1"], ("nothing to restore",)),
    "isotropic already": (lambda t: [_good(t), "--axial-um", str(DX)], ("nothing to restore",)),
    "axial step far finer": (lambda t: [_good(t), "--axial-um", "0.02"], ("finer than the lateral pixel", "bin")),
    "absurd ratio": (lambda t: [_good(t), "--axial-um", "1e6"], ("ratio too large",)),
    "absurd lateral size": (lambda t: [_good(t), "--lateral-um", "1e-9"], ("ratio too large",)),
    "non-square pixel": (lambda t: [_non_square(t)], ("not square",)),
    "missing voxel size": (lambda t: [_plain_tif(t, "nosize.tif", _stack())], ("--lateral-um", "--axial-um")),
    "missing axial step": (lambda t: [_plain_tif(t, "noz.tif", _stack()), "--lateral-um", "0.2"], ("--axial-um",)),
}


@pytest.mark.parametrize("case", list(INPUTS))
def test_bad_input_gives_one_line_error_and_no_output(case: str, tmp_path: Path) -> None:
    build, fragments = INPUTS[case]
    args = build(tmp_path)
    out = tmp_path / "out" / "iso.tif"
    out.parent.mkdir()
    res = run_main("run", *args, "-o", out, "--epochs", "1", "-q", "--device", "cpu")
    assert_clean_error(res, *fragments)
    assert_nothing_written(out.parent, set())


# --- outputs ---------------------------------------------------------------------------------


def _read_only_folder(tmp: Path) -> Path:
    """A folder this process cannot create files in (root ignores permissions: use /sys then)."""
    if os.geteuid() != 0:
        folder = tmp / "ro"
        folder.mkdir()
        folder.chmod(0o500)
        return folder
    for candidate in (Path("/sys"), Path("/proc/self")):
        try:
            os.close(os.open(candidate / ".probe", os.O_CREAT | os.O_WRONLY))
        except OSError:
            return candidate
    pytest.skip("no read-only folder available")
    raise AssertionError  # unreachable


OUTPUTS: dict[str, tuple[Callable[[Path], Path], tuple[str, ...]]] = {
    "unknown suffix": (lambda t: t / "iso.xyz", (".xyz", "suffix")),
    "parent is a file": (lambda t: (t / "afile").write_text("x") and t / "afile" / "iso.tif", ("not a folder",)),
    "parent missing": (lambda t: t / "no" / "such" / "iso.tif", ("does not exist",)),
    "output is a folder": (lambda t: (t / "dir.tif").mkdir() or t / "dir.tif", ("is a directory",)),
    "unwritable folder": (lambda t: _read_only_folder(t) / "iso.tif", ("not writable",)),
}


@pytest.mark.parametrize("case", list(OUTPUTS))
def test_bad_output_is_refused_before_any_work(case: str, tiny_tif: Path, tmp_path: Path) -> None:
    make, fragments = OUTPUTS[case]
    out = make(tmp_path)
    before = {p.name for p in tmp_path.iterdir()}
    res = run_main("run", tiny_tif, "-o", out, "--epochs", "1", "-q")
    assert_clean_error(res, *fragments)
    assert "ZYX" not in res.stderr  # refused before the input was even read
    assert_nothing_written(tmp_path, before)


@pytest.mark.parametrize("command", ["run", "train"])
def test_existing_output_is_refused_and_left_untouched(command: str, tiny_tif: Path, tmp_path: Path) -> None:
    out = tmp_path / ("iso.tif" if command == "run" else "model.pt")
    out.write_bytes(b"precious")
    res = run_main(command, tiny_tif, "-o", out, "--epochs", "1", "-q")
    assert_clean_error(res, "exists", "--overwrite")
    assert out.read_bytes() == b"precious"
    assert_nothing_written(tmp_path, {out.name})


def test_output_dtype_is_checked_before_training(tiny_tif: Path, tmp_path: Path) -> None:
    res = run_main("run", tiny_tif, "-o", tmp_path / "iso.tif", "--dtype", "int64", "-q")
    assert_clean_error(res, "int64")
    assert "ZYX" not in res.stderr
    assert_nothing_written(tmp_path, set())


# --- options and devices --------------------------------------------------------------------

OPTIONS: dict[str, tuple[list[str], tuple[str, ...]]] = {
    "negative budget": (["--max-minutes", "-2"], ("max_minutes",)),
    "zero budget": (["--max-minutes", "0"], ("max_minutes",)),
    "infinite budget": (["--max-minutes", "inf"], ("max_minutes", "finite")),
    "NaN budget": (["--max-minutes", "nan"], ("max_minutes",)),
    "negative epochs": (["--epochs", "-3"], ("epochs",)),
    "zero epochs": (["--epochs", "0"], ("epochs",)),
    "negative seed": (["--seed", "-1"], ("seed",)),
    "unknown device": (["--device", "quantum"], ("unknown device",)),
    "bad CUDA index": (["--device", "cuda:x"], ("cuda",)),
    "missing config": (["--config", "/no/such/config.yaml"], ("config",)),
}


@pytest.mark.parametrize("case", list(OPTIONS))
def test_bad_option_gives_one_line_error(case: str, tiny_tif: Path, tmp_path: Path) -> None:
    options, fragments = OPTIONS[case]
    res = run_main("run", tiny_tif, "-o", tmp_path / "iso.tif", *options, "-q")
    assert_clean_error(res, *fragments)
    assert_nothing_written(tmp_path, set())


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_request_without_cuda(tiny_tif: Path, tmp_path: Path) -> None:
    res = run_main("run", tiny_tif, "-o", tmp_path / "iso.tif", "--device", "cuda", "-q")
    assert_clean_error(res, "CUDA is not available")


def test_invalid_config_file(tiny_tif: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("patch_size: 33\nlr: -1\n")
    res = run_main("run", tiny_tif, "-o", tmp_path / "iso.tif", "--config", cfg, "-q")
    assert_clean_error(res, "invalid training config")
    assert_nothing_written(tmp_path, {"bad.yaml"})


def test_memory_estimate_stops_before_work_and_points_to_chunked_path(tiny_tif: Path, tmp_path: Path) -> None:
    res = run_main("run", tiny_tif, "-o", tmp_path / "iso.tif", "-q", env={"SELFNET_MEMORY_LIMIT_GB": "0.01"})
    assert_clean_error(res, "not enough memory", ".ome.zarr", "--chunked")
    assert_nothing_written(tmp_path, set())


# --- model files ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_model(tiny_phantom: Phantom, fast_config: TrainConfig, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model trained in seconds on the tiny phantom (z/xy ratio 4)."""
    model = train_model(tiny_phantom.raw, tiny_phantom.spacing_raw, fast_config, torch.device("cpu"))
    return model.save(tmp_path_factory.mktemp("model") / "tiny.pt")


def _truncated_model(model: Path, tmp: Path) -> Path:
    path = tmp / "cut.pt"
    path.write_bytes(model.read_bytes()[: model.stat().st_size // 2])
    return path


def _foreign_model(tmp: Path) -> Path:
    path = tmp / "foreign.pt"
    torch.save({"state_dict": {"w": torch.zeros(3)}}, path)
    return path


def _incomplete_model(model: Path, tmp: Path) -> Path:
    raw = torch.load(model, weights_only=True)
    raw["deblur"] = {"nonsense": torch.zeros(2)}
    path = tmp / "broken.pt"
    torch.save(raw, path)
    return path


MODELS: dict[str, tuple[Callable[[Path, Path], Path], tuple[str, ...]]] = {
    "missing model": (lambda m, t: t / "none.pt", ("model file not found",)),
    "empty model": (lambda m, t: _empty(t, "empty.pt"), ("not a readable selfnet model",)),
    "text model": (lambda m, t: _text(t, "text.pt"), ("not a readable selfnet model",)),
    "truncated model": (_truncated_model, ("not a readable selfnet model",)),
    "foreign torch file": (lambda m, t: _foreign_model(t), ("not a selfnet model",)),
    "damaged weights": (_incomplete_model, ("damaged or incomplete",)),
}


@pytest.mark.parametrize("case", list(MODELS))
def test_bad_model_file_gives_one_line_error(case: str, tiny_model: Path, tiny_tif: Path, tmp_path: Path) -> None:
    make, fragments = MODELS[case]
    model = make(tiny_model, tmp_path)
    before = {p.name for p in tmp_path.iterdir()}
    res = run_main("restore", tiny_tif, "--model", model, "-o", tmp_path / "iso.tif", "-q")
    assert_clean_error(res, *fragments)
    assert_nothing_written(tmp_path, before)


def test_model_from_a_very_different_ratio_is_refused(tiny_model: Path, tiny_tif: Path, tmp_path: Path) -> None:
    res = run_main("restore", tiny_tif, "--model", tiny_model, "-o", tmp_path / "iso.tif", "--axial-um", "2.0", "-q")
    assert_clean_error(res, "ratio", "--force")
    assert_nothing_written(tmp_path, set())


# --- every integer and float type works -----------------------------------------------------

DTYPES = ["int8", "uint8", "int16", "uint16", "int32", "uint32", "float16", "float32", "float64"]


def _as_dtype(raw: np.ndarray, dtype: str) -> np.ndarray:
    """The phantom scaled into most of the type's range (signed types get negative values)."""
    unit = (raw - raw.min()) / (raw.max() - raw.min())
    if np.dtype(dtype).kind == "f":
        return (unit * 1000 - 200).astype(dtype)
    info = np.iinfo(dtype)
    low, high = max(info.min, -30000), min(info.max, 60000)
    return np.round(unit * (high - low) + low).astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_every_integer_and_float_type_is_restored(dtype: str, tiny_model: Path, tiny_phantom: Phantom,
                                                  tmp_path: Path) -> None:
    data = _as_dtype(tiny_phantom.raw, dtype)
    suffix = "npy" if dtype == "float16" else "tif"
    src = tmp_path / f"in.{suffix}"
    np.save(src, data) if suffix == "npy" else tifffile.imwrite(src, data, metadata={"axes": "ZYX"})
    dz, _, dx = tiny_phantom.spacing_raw
    out = tmp_path / "iso.tif"
    res = run_main("restore", src, "--model", tiny_model, "-o", out, "--lateral-um", dx, "--axial-um", dz, "-q")
    assert res.code == 0, res.stderr
    restored = tifffile.imread(out)
    assert restored.dtype == np.float32 and np.isfinite(restored).all()
    assert restored.shape == (45, *data.shape[1:])
    corr = np.corrcoef(restored[::4][: data.shape[0]].ravel(), data.astype(np.float64).ravel())[0, 1]
    assert corr > 0.5  # on the input's intensity scale, not garbage


def test_signed_input_trains_through_run(tiny_phantom: Phantom, fast_config_file: Path, tmp_path: Path) -> None:
    src = tmp_path / "signed.npy"
    np.save(src, _as_dtype(tiny_phantom.raw, "int16"))
    dz, _, dx = tiny_phantom.spacing_raw
    res = run_main("run", src, "-o", tmp_path / "iso.npy", "--config", fast_config_file, "--epochs", "1",
                   "--lateral-um", dx, "--axial-um", dz, "-q", "--no-report")
    assert res.code == 0, res.stderr
    assert np.isfinite(np.load(tmp_path / "iso.npy")).all()
