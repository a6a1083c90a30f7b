"""Block-wise restoring: equals whole-volume restoring, resumes, runs on a Dask cluster, exports files."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
import torch
import zarr

from selfnet.config import NetConfig
from selfnet.errors import ConfigError, InputError, OutputError
from selfnet.inference import chunked as blockwise
from selfnet.inference import cluster as dask_cluster
from selfnet.inference import plan, resume, tofile
from selfnet.inference.restore import restore_volume
from selfnet.io import Volume, read_volume, write_volume
from selfnet.io import write as io_write
from selfnet.io import zarr as ngff
from selfnet.method import normalize
from selfnet.method.nets import ResNet2d
from selfnet.method.normalize import Normalizer
from selfnet.model import Model
from selfnet.phantoms.synthetic import make_phantom
from selfnet.training import subset

from ..conftest import random_model, run_cli


def _model(ratio: float, net_cfg: NetConfig | None = None, seed: int = 0) -> Model:
    """A model whose deblurring net is random (tail included), so it really changes the image."""
    return random_model(ratio, net_cfg, seed)


@pytest.fixture(scope="module")
def phantom_volume() -> Volume:
    ph = make_phantom("neurites", (64, 72, 80), k=3.0, seed=0)
    return Volume(ph.raw, ph.spacing_raw)


@pytest.fixture(scope="module")
def model3() -> Model:
    return _model(3.0)


@pytest.fixture(scope="module")
def whole(phantom_volume, model3) -> np.ndarray:
    out, _ = restore_volume(phantom_volume.data, phantom_volume.spacing, model3, torch.device("cpu"))
    return out


@pytest.fixture(scope="module")
def phantom_tif(phantom_volume, tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("in") / "raw.tif"
    write_volume(path, phantom_volume.data, phantom_volume.spacing, dtype="uint16")
    return str(path)


def _level0(path) -> np.ndarray:
    return np.asarray(zarr.open_array(str(path) + "/0", mode="r"))


def _close(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / np.abs(b).max())


def test_receptive_field_and_windows():
    net = ResNet2d(NetConfig())
    assert plan.receptive_radius(net) == 21  # 2 x (1 head + 8 body + 1 tail) half-res px, +1 for parity
    assert plan.choose_halo(net) == 24
    interior = plan.axis_window(64, 96, 200, 24, 2)
    assert (interior.start, interior.stop, interior.reflect) == (40, 120, (0, 0))
    border = plan.axis_window(0, 32, 45, 24, 2)
    assert (border.start, border.stop, border.reflect, border.extra) == (0, 45, (8, 9), 0)
    assert (border.keep.start, border.keep.stop) == (8, 40)


def test_chunked_equals_whole_volume(phantom_volume, model3, whole, tmp_path):
    res = blockwise.restore_chunked(phantom_volume, model3, tmp_path / "a.zarr", block=(24, 32, 40))
    assert res.blocks == 3 * 3 * 2 and res.shape == whole.shape
    assert _close(_level0(tmp_path / "a.zarr"), whole) < 1e-5
    too_small = blockwise.restore_chunked(phantom_volume, model3, tmp_path / "b.zarr", block=(24, 32, 40), halo=8)
    assert too_small.extra["halo"] == 8
    assert _close(_level0(tmp_path / "b.zarr"), whole) > 1e-4  # the halo is what makes blocks exact


@pytest.mark.parametrize(("net_cfg", "ratio", "shape", "block"), [
    (NetConfig(channels=8, blocks=2, unshuffle=4, head_kernel=7), 2.5, (23, 70, 66), (16, 32, 32)),
    (NetConfig(channels=8, blocks=1, unshuffle=1), 3.7, (15, 41, 53), (16, 16, 24)),
])
def test_chunked_exact_for_other_nets_and_ratios(net_cfg, ratio, shape, block, tmp_path):
    raw = np.random.default_rng(3).gamma(2.0, 100.0, shape).astype(np.float32)
    spacing = (0.2 * ratio, 0.2, 0.2)
    model = _model(ratio, net_cfg, seed=1)
    whole, _ = restore_volume(raw, spacing, model, torch.device("cpu"))
    blockwise.restore_chunked(Volume(raw, spacing), model, tmp_path / "o.zarr", block=block)
    assert _close(_level0(tmp_path / "o.zarr"), whole) < 1e-5


class _Stop(Exception):
    pass


def test_resume_after_interruption(phantom_volume, model3, whole, tmp_path):
    out = tmp_path / "r.ome.zarr"
    calls: list[int] = []

    def interrupt(done: int, total: int) -> None:
        calls.append(done)
        if done == 3:
            raise _Stop

    with pytest.raises(_Stop):
        blockwise.restore_chunked(phantom_volume, model3, out, block=(32, 32, 40), on_block=interrupt)
    attrs = dict(zarr.open_group(str(out), mode="r").attrs)
    assert attrs["selfnet"]["status"] == "incomplete" and "multiscales" not in attrs
    assert len(resume.done_blocks(out)) == 3
    with pytest.raises(InputError, match="--resume"):
        read_volume(out)
    with pytest.raises(OutputError, match="exists"):
        blockwise.restore_chunked(phantom_volume, model3, out, block=(32, 32, 40))
    with pytest.raises(OutputError, match="another model"):
        blockwise.restore_chunked(phantom_volume, _model(3.0, seed=5), out, block=(32, 32, 40), resume=True)
    assert resume.saved_model(out) is not None
    progress: list[tuple[int, int]] = []
    res = blockwise.restore_chunked(phantom_volume, model3, out, block=(32, 32, 40), resume=True,
                                  on_block=lambda d, t: progress.append((d, t)))
    assert res.blocks == 12 and res.blocks_run == 9
    assert progress[0] == (3, 12) and progress[-1] == (12, 12)
    assert _close(np.asarray(read_volume(out).data), whole) < 1e-5
    assert not (out / resume.PROGRESS_DIR).exists()
    again = blockwise.restore_chunked(phantom_volume, model3, out, block=(32, 32, 40), resume=True)
    assert again.blocks_run == 0


def test_tiff_and_npy_outputs_through_partial_store(phantom_volume, model3, whole, tmp_path, monkeypatch):
    res = tofile.restore_to_file(phantom_volume, model3, tmp_path / "o.tif", block=(32, 64, 64), dtype="uint16")
    assert res.path == (tmp_path / "o.tif").resolve()
    back = read_volume(tmp_path / "o.tif")
    assert back.spacing == pytest.approx((0.2, 0.2, 0.2)) and back.data.dtype == np.uint16
    assert np.abs(back.data.astype(np.float32) - np.clip(np.rint(whole), 0, 65535)).max() <= 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.tif"]  # partial store removed
    tofile.restore_to_file(phantom_volume, model3, tmp_path / "o.npy")
    assert _close(np.load(tmp_path / "o.npy"), whole) < 1e-5
    assert json.loads((tmp_path / "o.npy.json").read_text())["spacing"] == pytest.approx([0.2] * 3)
    monkeypatch.setattr(io_write, "_BIGTIFF_BYTES", 0)  # as if the outputs were beyond 3.5 GiB
    for name, bigtiff in (("big.tif", False), ("big.ome.tif", True)):  # ImageJ never BigTIFF: Fiji reads it
        tofile.restore_to_file(phantom_volume, model3, tmp_path / name)
        with tifffile.TiffFile(tmp_path / name) as tf:
            assert tf.is_bigtiff == bigtiff
        big = read_volume(tmp_path / name)
        assert big.spacing == pytest.approx((0.2, 0.2, 0.2)) and _close(np.asarray(big.data), whole) < 1e-5
    with pytest.raises(ConfigError, match="--pyramid needs an OME-Zarr"):
        tofile.restore_to_file(phantom_volume, model3, tmp_path / "p.tif", pyramid=True)


def test_interrupted_tiff_output_resumes(phantom_volume, model3, whole, tmp_path):
    def interrupt(done: int, total: int) -> None:
        if done == 2:
            raise _Stop

    with pytest.raises(_Stop):
        tofile.restore_to_file(phantom_volume, model3, tmp_path / "o.tif", block=(32, 32, 40), on_block=interrupt)
    assert not (tmp_path / "o.tif").exists() and resume.partial_store(tmp_path / "o.tif").is_dir()
    with pytest.raises(OutputError, match="pass --resume"):
        tofile.restore_to_file(phantom_volume, model3, tmp_path / "o.tif", block=(32, 32, 40))
    res = tofile.restore_to_file(phantom_volume, model3, tmp_path / "o.tif", block=(32, 32, 40), resume=True)
    assert res.blocks_run == res.blocks - 2
    assert _close(read_volume(tmp_path / "o.tif").data, whole) < 1e-5
    assert not resume.partial_store(tmp_path / "o.tif").exists()


def test_normalizer_sample_and_training_subset(phantom_volume, monkeypatch):
    exact = Normalizer.fit(phantom_volume.data, (0.1, 99.99))
    assert normalize.fit_normalizer(phantom_volume.data, (0.1, 99.99)) == exact
    monkeypatch.setattr(normalize, "EXACT_NORMALIZER_VOXELS", 1000)
    approx = normalize.fit_normalizer(phantom_volume.data, (0.1, 99.99), max_samples=60_000)
    assert approx.low == pytest.approx(exact.low, rel=0.05) and approx.high == pytest.approx(exact.high, rel=0.2)
    data = phantom_volume.data
    sub = subset.sample_training_volume(data, 3.0, max_iso_voxels=64 * 32 * 32 * 4, tile=32)
    assert sub.shape == (data.shape[0], 32, 128) and sub.dtype == data.dtype  # four full-z tiles
    deep = subset.sample_training_volume(data, 3.0, max_iso_voxels=64 * 32 * 32 * 3, tile=32)
    assert deep.shape == (16, 32, 128)  # tiles too deep for the budget keep fewer planes
    assert subset.sample_training_volume(data, 3.0) is not data  # small: the whole volume, as an array
    small = subset.training_volume(phantom_volume)
    assert small is phantom_volume


def test_block_option_errors():
    assert plan.parse_block("64") == (64, 64, 64)
    assert plan.parse_block("32,128,128") == (32, 128, 128)
    for bad in ("12", "a,b", "16,16"):
        with pytest.raises(ConfigError):
            plan.parse_block(bad)


def test_dask_clusters_match_in_process_results(phantom_tif, model3, tmp_path, monkeypatch):
    """--scheduler (an existing loopback cluster) and --workers (a local one) both equal in-process.

    Equal to float rounding, not bit for bit: single-threaded workers and a multi-threaded process
    sum convolutions in different orders (1 ulp differences on some CPUs).
    """
    from distributed import LocalCluster

    monkeypatch.setattr(ngff, "_PYRAMID_MIN", 16)
    vol = read_volume(phantom_tif)
    local = blockwise.restore_chunked(vol, model3, tmp_path / "local.zarr", block=(32, 32, 40), pyramid=True)
    assert local.levels == 3
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                      host="127.0.0.1") as cluster:
        res = dask_cluster.restore_with_cluster(vol, model3, tmp_path / "remote.zarr",
                                                scheduler=cluster.scheduler_address, block=(32, 32, 40), pyramid=True)
    assert res.worker_peak_rss and res.blocks_run == local.blocks
    for level in range(3):
        np.testing.assert_allclose(zarr.open_array(str(tmp_path / "remote.zarr" / str(level)))[:],
                                   zarr.open_array(str(tmp_path / "local.zarr" / str(level)))[:], rtol=1e-5, atol=1e-3)
    proc = run_cli("restore", phantom_tif, "-m", _save(model3, tmp_path), "-o", tmp_path / "w.tif",
                   "--workers", "2", "--block", "32,32,40", "--quiet")
    assert proc.returncode == 0, proc.stderr
    np.testing.assert_allclose(read_volume(tmp_path / "w.tif").data, _level0(tmp_path / "local.zarr"), rtol=1e-5,
                               atol=1e-3)
    assert "largest worker" in proc.stderr


def _save(model: Model, folder) -> str:
    path = folder / "model.pt"
    if not path.exists():
        model.save(path)
    return str(path)


def test_cli_zarr_output_pyramid_resume_and_errors(phantom_tif, model3, whole, tmp_path):
    model = _save(model3, tmp_path)
    out = tmp_path / "iso.ome.zarr"
    proc = run_cli("restore", phantom_tif, "-m", model, "-o", out, "--block", "32", "--pyramid", "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert "Mvox/s" in proc.stderr and "peak RSS" in proc.stderr
    vol = read_volume(out)
    assert vol.spacing == pytest.approx((0.2, 0.2, 0.2))
    assert _close(np.asarray(vol.data), whole) < 1e-5
    # an interrupted store (made through the API) is finished by the CLI's --resume
    part = tmp_path / "part.zarr"

    def interrupt(done: int, total: int) -> None:
        if done == 1:
            raise _Stop

    with pytest.raises(_Stop):
        blockwise.restore_chunked(read_volume(phantom_tif), model3, part, block=(32, 32, 32), on_block=interrupt)
    proc = run_cli("restore", phantom_tif, "-m", model, "-o", part, "--block", "32", "--quiet")
    assert proc.returncode == 2 and "--resume" in proc.stderr
    proc = run_cli("restore", phantom_tif, "-m", model, "-o", part, "--block", "32", "--resume", "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert _close(np.asarray(read_volume(part).data), whole) < 1e-5
    for args, text in ((("-o", tmp_path / "x.tif", "--pyramid"), "--pyramid needs an OME-Zarr"),
                       (("-o", tmp_path / "y.zarr", "--ngff", "0.3"), "--ngff must be"),
                       (("-o", tmp_path / "z.zarr", "--block", "10"), "--block sizes"),
                       (("-o", tmp_path / "w.zarr", "--workers", "2", "--scheduler", "tcp://x:1"), "either")):
        proc = run_cli("restore", phantom_tif, "-m", model, *args, "--quiet")
        assert proc.returncode == 2 and text in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


def test_cli_run_large_input_trains_on_subset_and_resumes(tiny_tif, fast_config_file, tmp_path, monkeypatch):
    """`run` on a 'large' stack: training reads a subset, restoring goes block by block; --resume reuses the model."""
    from typer.testing import CliRunner

    from selfnet.cli import app

    monkeypatch.setattr(subset, "TRAIN_MAX_ISO_VOXELS", 40_000)
    monkeypatch.setattr(plan, "AUTO_CHUNK_VOXELS", 100_000)
    runner = CliRunner()
    out = tmp_path / "iso.tif"
    result = runner.invoke(app, ["run", str(tiny_tif), "-o", str(out), "--config", str(fast_config_file), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "training on a random subset" in result.output and "peak RSS" in result.output
    assert read_volume(out).data.shape == (45, 64, 64)
    vol = read_volume(tiny_tif)
    part = tmp_path / "part.zarr"

    def interrupt(done: int, total: int) -> None:
        if done == 1:
            raise _Stop

    with pytest.raises(_Stop):
        blockwise.restore_chunked(vol, _model(vol.ratio), part, block=(32, 32, 32), on_block=interrupt)
    result = runner.invoke(app, ["run", str(tiny_tif), "-o", str(part), "--config", str(fast_config_file),
                                 "--block", "32", "--resume", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "using the model saved with the unfinished output" in result.output
    assert read_volume(part).data.shape == (45, 64, 64)
