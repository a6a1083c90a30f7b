"""Series restored block by block: equal to the in-RAM series, on Dask workers, resumable inside a stack, pyramids."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr

from selfnet import api, memory
from selfnet.config import NetConfig
from selfnet.errors import Cancelled, CancelToken
from selfnet.inference import restore as in_ram_restore
from selfnet.inference import resume
from selfnet.io import read_volume
from selfnet.io import zarr as ngff
from selfnet.io.series import probe_series
from selfnet.model import ModelSet
from selfnet.options import ClusterSpec

from ..conftest import random_model, run_cli

N_T, N_C = 3, 2
NAMES = ["GFP", "RFP"]
BLOCK = "16"
OUT_SHAPE = (N_T, N_C, 29, 32, 32)
BLOCKS_PER_STACK = 2 * 2 * 2


@pytest.fixture(scope="module")
def hyperstack(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 3-time-point x 2-channel ImageJ hyperstack (TZCYX uint16, 8 planes of 32x32, z step 4x the pixel)."""
    data = np.random.default_rng(7).gamma(2.0, 100.0, (N_T, 8, N_C, 32, 32)).astype(np.uint16)
    path = tmp_path_factory.mktemp("hs") / "hs.tif"
    tifffile.imwrite(path, data, imagej=True, resolution=(5.0, 5.0),
                     metadata={"axes": "TZCYX", "spacing": 0.8, "unit": "um", "finterval": 2.5,
                               "Labels": NAMES * (N_T * 8)})
    return path


@pytest.fixture(scope="module")
def models() -> ModelSet:
    """Two untrained channel models with small random nets (training is not the point here)."""
    net = NetConfig(channels=8, blocks=1)
    return ModelSet([random_model(4.0, net, seed=0), random_model(4.0, net, seed=1)], shared=False, channel_names=NAMES)


@pytest.fixture(scope="module")
def in_ram(hyperstack: Path, models: ModelSet, tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    """The series restored one whole stack at a time in RAM: the reference."""
    out = tmp_path_factory.mktemp("ref") / "ref.npy"
    res = api.restore(hyperstack, models, output=out, device="cpu", progress=False)
    assert res.shape == OUT_SHAPE
    return np.load(out)


def _close(a: np.ndarray, b: np.ndarray) -> None:
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-3 * float(np.abs(b).max()))


def test_block_wise_series_equals_in_ram(hyperstack, models, in_ram, tmp_path):
    out = tmp_path / "b.npy"
    res = api.restore(hyperstack, models, output=out, device="cpu", progress=False, block=BLOCK)
    assert res.axes == "TCZYX" and res.shape == OUT_SHAPE and res.blocks_run == N_T * N_C
    _close(np.load(out), in_ram)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.npy", "b.npy.json"]  # hidden store removed


def test_stack_too_big_for_ram_goes_block_by_block(hyperstack, models, in_ram, tmp_path, monkeypatch):
    def no_whole_stack(*args, **kwargs):
        raise AssertionError("a whole stack was restored in RAM")

    monkeypatch.setattr(memory, "available_bytes", lambda: 2**20)  # less than one stack needs
    monkeypatch.setattr(in_ram_restore, "restore_volume", no_whole_stack)
    out = tmp_path / "auto.ome.tif"
    api.restore(hyperstack, models, output=out, device="cpu", progress=False)
    lay = probe_series(out)
    assert (lay.n_t, lay.n_c) == (N_T, N_C) and lay.display["names"] == NAMES
    _close(np.stack([[np.asarray(read_volume(out, timepoint=t, channel=c).data) for c in range(N_C)]
                     for t in range(N_T)]), in_ram)


def test_resume_after_cancel_inside_a_stack(hyperstack, models, in_ram, tmp_path):
    token, stacks = CancelToken(), [0]

    def cancel_in_second_stack(event: api.ProgressEvent) -> None:
        if event.stage != "blocks":
            return
        if event.done == 0:
            stacks[0] += 1
        if stacks[0] == 2 and event.done == 3:
            token.cancel()

    out = tmp_path / "r.ome.zarr"
    with pytest.raises(Cancelled, match="--resume"):
        api.restore(hyperstack, models, output=out, device="cpu", progress=cancel_in_second_stack, cancel=token,
                    block=BLOCK)
    markers = resume.done_blocks(out)
    assert sorted(k for k in markers if len(k) == 2) == [(0, 0)]  # one whole stack
    assert sorted(k for k in markers if len(k) == 5) == [(0, 1, 0, 0, 0), (0, 1, 0, 0, 1), (0, 1, 0, 1, 0)]
    runs: list[int] = []
    res = api.restore(hyperstack, models, output=out, device="cpu", block=BLOCK, resume=True,
                      progress=lambda e: runs.append(e.done) if e.stage == "blocks" else None)
    assert res.blocks_run == N_T * N_C - 1 and runs[0] == 3  # the second stack went on from its 4th block
    assert runs.count(0) == N_T * N_C - 2 and len(runs) == (BLOCKS_PER_STACK - 2) + 4 * (BLOCKS_PER_STACK + 1)
    _close(np.asarray(zarr.open_array(str(out / "0"), mode="r")), in_ram)
    assert not (out / resume.PROGRESS_DIR).exists()


def test_dask_series_with_pyramid_and_frame_interval(hyperstack, models, in_ram, tmp_path, monkeypatch):
    """Blocks on a loopback Dask cluster; the pyramid keeps t and c; the frame interval is read back."""
    from distributed import LocalCluster

    monkeypatch.setattr(ngff, "_PYRAMID_MIN", 8)
    out = tmp_path / "d.ome.zarr"
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None,
                      host="127.0.0.1") as cluster:
        api.restore(hyperstack, models, output=out, device="cpu", progress=False, block=BLOCK, pyramid=True,
                    cluster=ClusterSpec(scheduler=cluster.scheduler_address))
    _close(np.asarray(zarr.open_array(str(out / "0"), mode="r")), in_ram)
    ms = dict(zarr.open_group(str(out), mode="r").attrs)["multiscales"][0]
    assert [a["name"] for a in ms["axes"]] == ["t", "c", "z", "y", "x"]
    shapes = [zarr.open_array(str(out / d["path"]), mode="r").shape for d in ms["datasets"]]
    assert shapes == [OUT_SHAPE, (N_T, N_C, 15, 16, 16), (N_T, N_C, 8, 8, 8)]
    scales = [d["coordinateTransformations"][0]["scale"] for d in ms["datasets"]]
    assert scales[2] == pytest.approx([2.5, 1.0, 0.8, 0.8, 0.8])
    level1 = np.asarray(zarr.open_array(str(out / "1"), mode="r"))
    level0 = np.asarray(zarr.open_array(str(out / "0"), mode="r"))
    np.testing.assert_allclose(level1[2, 1, :14], level0[2, 1, :28].reshape(14, 2, 16, 2, 16, 2).mean(axis=(1, 3, 5)),
                               rtol=1e-5)
    lay = probe_series(out)
    assert lay.display["frame_interval_s"] == 2.5 and lay.display["names"] == NAMES
    assert read_volume(out, timepoint=2, channel=1, level=1).data.shape == (15, 16, 16)


def test_pyramid_in_process_ngff_05(hyperstack, models, in_ram, tmp_path, monkeypatch):
    monkeypatch.setattr(ngff, "_PYRAMID_MIN", 8)
    out = tmp_path / "p.ome.zarr"
    api.restore(hyperstack, models, output=out, device="cpu", progress=False, pyramid=True, ngff="0.5")
    meta = json.loads((out / "1" / "zarr.json").read_text())
    assert meta["dimension_names"] == ["t", "c", "z", "y", "x"] and meta["shape"] == [N_T, N_C, 15, 16, 16]
    _close(np.asarray(zarr.open_array(str(out / "0"), mode="r")), in_ram)
    assert probe_series(out).display["frame_interval_s"] == 2.5


def test_pyramid_on_a_tiff_series_is_one_line_error(hyperstack, models, tmp_path):
    model = tmp_path / "m" / "models.pt"
    model.parent.mkdir()
    models.save(model)
    proc = run_cli("restore", hyperstack, "-m", model, "-o", tmp_path / "x.tif", "--pyramid", "-q")
    assert proc.returncode == 2 and "--pyramid needs an OME-Zarr" in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and sorted(p.name for p in tmp_path.iterdir()) == ["m"]
