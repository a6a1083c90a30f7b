"""The command line as a user runs it: outputs, voxel sizes, models and one-line errors."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from selfnet.io import read_volume
from selfnet.model import Model

from ..conftest import run_cli


def _assert_clean_error(proc, *fragments: str) -> None:
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    assert lines and lines[-1].startswith("selfnet: error:"), proc.stderr
    assert "Traceback" not in proc.stderr
    for fragment in fragments:
        assert fragment in proc.stderr, proc.stderr


def test_run_writes_isotropic_tif_with_voxel_sizes(tiny_tif, tiny_phantom, fast_config_file, tmp_path):
    out, model = tmp_path / "iso.tif", tmp_path / "model.pt"
    proc = run_cli("run", tiny_tif, "-o", out, "--config", fast_config_file, "--save-model", model, "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert "wrote" in proc.stderr and "Mvox/s" in proc.stderr
    vol = read_volume(out)
    dx = tiny_phantom.spacing_raw[2]
    assert vol.spacing == pytest.approx((dx, dx, dx), rel=1e-4)
    assert vol.data.shape == tiny_phantom.gt_lateral[tiny_phantom.iso_slice()].shape
    assert vol.data.dtype == np.float32
    with tifffile.TiffFile(out) as tf:
        assert tf.is_imagej and tf.imagej_metadata["spacing"] == pytest.approx(dx)
    assert Model.load(model).ratio == pytest.approx(4.0)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left


def test_train_then_restore_uint16(tiny_tif, fast_config_file, tmp_path):
    model, out = tmp_path / "m.pt", tmp_path / "iso16.tif"
    assert run_cli("train", tiny_tif, "-o", model, "--config", fast_config_file, "-q").returncode == 0
    proc = run_cli("restore", tiny_tif, "--model", model, "-o", out, "--dtype", "uint16", "-q")
    assert proc.returncode == 0, proc.stderr
    assert read_volume(out).data.dtype == np.uint16


def test_existing_output_is_refused_and_untouched(tiny_tif, tmp_path):
    out = tmp_path / "exists.tif"
    out.write_bytes(b"precious")
    proc = run_cli("run", tiny_tif, "-o", out, "--epochs", "1")
    _assert_clean_error(proc, "--overwrite")
    assert out.read_bytes() == b"precious"


@pytest.mark.parametrize(
    ("make", "fragments"),
    [
        ("missing", ("does not exist",)),
        ("flat2d", ("2D",)),
        ("no_spacing", ("--lateral-um", "--axial-um")),
        ("text_tif", ()),
    ],
)
def test_bad_inputs_give_one_line_errors(make, fragments, tmp_path):
    src = tmp_path / "in.tif"
    if make == "flat2d":
        tifffile.imwrite(src, np.ones((32, 32), np.uint16), imagej=True, resolution=(5, 5))
    elif make == "no_spacing":
        tifffile.imwrite(src, np.random.default_rng(0).integers(0, 99, (8, 32, 32), dtype=np.uint16))
    elif make == "text_tif":
        src.write_text("hello, I am not an image")
    out = tmp_path / "out.tif"
    proc = run_cli("run", src, "-o", out, "--epochs", "1")
    _assert_clean_error(proc, *fragments)
    assert not out.exists()


def test_bad_options_give_one_line_errors(tiny_tif, tmp_path):
    _assert_clean_error(run_cli("run", tiny_tif, "-o", tmp_path / "o.tif", "--max-minutes", "-2"), "max_minutes")
    _assert_clean_error(run_cli("run", tiny_tif, "-o", tmp_path / "o.xyz"), ".xyz")
    _assert_clean_error(run_cli("run", tiny_tif, "-o", tmp_path / "o.tif", "--device", "quantum"), "unknown device")
    _assert_clean_error(run_cli("restore", tiny_tif, "--model", tmp_path / "none.pt", "-o", tmp_path / "o.tif"),
                        "model file not found")


def test_help_reads_well():
    proc = run_cli("--help")
    assert proc.returncode == 0
    for command in ("run", "train", "restore", "demo"):
        assert command in proc.stdout
    assert "--max-minutes" in run_cli("run", "--help").stdout
