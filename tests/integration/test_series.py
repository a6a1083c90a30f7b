"""Multi-channel and time-lapse stacks end to end: every (t, c) restored, layout and metadata kept, resumable."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from selfnet import api
from selfnet.errors import Cancelled, CancelToken, ConfigError, ModelError
from selfnet.io import read_volume
from selfnet.io.series import parse_indices, probe_series, spread
from selfnet.model import ModelSet
from selfnet.phantoms.synthetic import make_phantom

from ..conftest import run_cli

N_T, N_C = 3, 2
NAMES = ["GFP", "RFP"]


@pytest.fixture(scope="module")
def hyperstack(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 3-time-point x 2-channel ImageJ hyperstack (TZCYX, uint16), channel 1 blurrier along z."""
    chans = []
    for c in range(N_C):
        frames = [make_phantom("neurites", (48, 48, 48), k=4.0, axial_ratio=3.0 + c, photons=300, seed=10 * c + t).raw
                  for t in range(N_T)]
        chans.append(np.stack(frames))
    data = np.stack(chans, axis=1).transpose(0, 2, 1, 3, 4)  # T Z C Y X
    path = tmp_path_factory.mktemp("hs") / "hs.tif"
    tifffile.imwrite(path, data.astype(np.uint16), imagej=True, resolution=(5.0, 5.0),
                     metadata={"axes": "TZCYX", "spacing": 0.8, "unit": "um", "finterval": 2.5,
                               "Labels": NAMES * (N_T * data.shape[1]), "Ranges": (0.0, 500.0, 0.0, 400.0)})
    return path


@pytest.fixture(scope="module")
def models(hyperstack: Path, fast_config, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`selfnet train` on the hyperstack: one file holding both channel models."""
    out = tmp_path_factory.mktemp("m") / "models.pt"
    trained = api.train(hyperstack, output=out, config=fast_config, device="cpu", progress=False,
                        train_timepoints="0,2")
    assert isinstance(trained, ModelSet) and len(trained.models) == N_C and trained.channel_names == NAMES
    assert all(m.summary["series"]["train_timepoints"] == [0, 2] for m in trained.models)
    return out


def test_layout_is_probed_without_loading(hyperstack):
    lay = probe_series(hyperstack)
    assert (lay.n_t, lay.n_c, lay.axes, lay.shape) == (N_T, N_C, "TC", (12, 48, 48))
    assert lay.display["names"] == NAMES and lay.display["frame_interval_s"] == 2.5
    assert lay.display["ranges"] == [(0.0, 500.0), (0.0, 400.0)]


def test_run_restores_every_channel_and_time_point_with_imagej_metadata(hyperstack, fast_config, tmp_path):
    out = tmp_path / "iso.tif"
    result = api.run(hyperstack, out, config=fast_config, device="cpu", progress=False)
    assert result.restored.axes == "TCZYX" and result.restored.shape == (N_T, N_C, 45, 48, 48)
    assert result.report is not None and "Isotropy over time" in result.report.read_text()
    with tifffile.TiffFile(out) as tf:
        ij = tf.imagej_metadata
        assert tf.series[0].axes == "TZCYX" and not tf.is_bigtiff
        assert (ij["channels"], ij["frames"], ij["slices"]) == (N_C, N_T, 45)
        assert ij["spacing"] == pytest.approx(0.2) and ij["finterval"] == 2.5 and ij["Labels"][:2] == NAMES
        assert len(ij["Ranges"]) == 2 * N_C
    lay = probe_series(out)
    assert lay.spacing == pytest.approx((0.2, 0.2, 0.2)) and lay.display["names"] == NAMES
    for t in range(N_T):
        for c in range(N_C):
            vol = read_volume(out, timepoint=t, channel=c)
            assert vol.data.shape == (45, 48, 48) and float(vol.data.std()) > 0


@pytest.mark.parametrize("name", ["iso.ome.tif", "iso.npy", "iso.ome.zarr"])
def test_each_output_format_keeps_axes_and_metadata(hyperstack, models, tmp_path, name):
    out = tmp_path / name
    res = api.restore(hyperstack, models, output=out, device="cpu", progress=False)
    assert res.axes == "TCZYX" and res.shape == (N_T, N_C, 45, 48, 48)
    lay = probe_series(out)
    assert (lay.n_t, lay.n_c, lay.shape) == (N_T, N_C, (45, 48, 48))
    assert lay.spacing == pytest.approx((0.2, 0.2, 0.2)) and lay.display.get("names") == NAMES
    if not name.endswith(".zarr"):
        assert lay.display["frame_interval_s"] == 2.5
    ref = api.restore(hyperstack, models, output=tmp_path / ("ref_" + name.replace("ome.zarr", "npy")),
                      device="cpu", progress=False)
    assert ref.shape == res.shape


def test_restore_is_deterministic_and_resumes_in_the_middle_of_the_series(hyperstack, models, tmp_path):
    whole = api.restore(hyperstack, models, output=tmp_path / "a.npy", device="cpu", progress=False)
    again = api.restore(hyperstack, models, output=tmp_path / "b.npy", device="cpu", progress=False)
    np.testing.assert_array_equal(np.load(whole.path), np.load(again.path))
    token, last = CancelToken(), [0, 0]  # [stacks started, previous slice count]

    def stop_after_two(event: api.ProgressEvent) -> None:
        if event.done <= last[1]:  # the slice count starts again: a new stack
            last[0] += 1
            if last[0] == 2:  # the third stack begins: two are finished
                token.cancel()
        last[1] = event.done

    out = tmp_path / "c.npy"
    with pytest.raises(Cancelled, match="--resume"):
        api.restore(hyperstack, models, output=out, device="cpu", progress=stop_after_two, cancel=token)
    assert not out.exists()
    with pytest.raises(Exception, match="--resume"):
        api.restore(hyperstack, models, output=out, device="cpu", progress=False)
    res = api.restore(hyperstack, models, output=out, device="cpu", progress=False, resume=True)
    assert res.blocks_run == N_T * N_C - 2 and res.blocks == N_T * N_C
    np.testing.assert_array_equal(np.load(out), np.load(whole.path))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npy", "a.npy.json", "b.npy", "b.npy.json",
                                                          "c.npy", "c.npy.json"]


def test_selection_and_shared_model(hyperstack, fast_config, tmp_path):
    out = tmp_path / "sel.npy"
    result = api.run(hyperstack, out, config=fast_config, device="cpu", progress=False, report=False,
                     channels="1", timepoints="1-2", shared_model=True)
    assert result.restored.shape == (2, 1, 45, 48, 48)
    assert isinstance(result.model, ModelSet) and result.model.shared and len(result.model.models) == 1
    single = read_volume(hyperstack, timepoint=1, channel=1)  # --timepoint/--channel still pick one stack
    assert single.data.shape == (12, 48, 48)


def test_bad_series_options_are_one_line_errors(hyperstack, models, tmp_path):
    with pytest.raises(ConfigError, match="channel 5 is out of range"):
        api.restore(hyperstack, models, output=tmp_path / "x.tif", progress=False, channels="5")
    with pytest.raises(ConfigError, match="--timepoints"):
        api.restore(hyperstack, models, output=tmp_path / "x.tif", progress=False, timepoints="two")
    with pytest.raises(ModelError, match="2 channel models but 1"):
        api.restore(hyperstack, models, output=tmp_path / "x.tif", progress=False, channels="0")
    with pytest.raises(ConfigError, match="--block sizes"):
        api.restore(hyperstack, models, output=tmp_path / "x.zarr", progress=False, block="10")
    proc = run_cli("restore", hyperstack, "-m", models, "-o", tmp_path / "y.tif", "--channels", "0,7", "-q")
    assert proc.returncode == 2 and "out of range" in proc.stderr and "Traceback" not in proc.stderr
    assert not list(tmp_path.iterdir())


def test_index_lists():
    assert parse_indices("0-2,5", 8, "--timepoints", "time point") == [0, 1, 2, 5]
    assert parse_indices(None, 3, "--channels", "channel") == [0, 1, 2]
    assert spread(list(range(30)), 3) == [0, 14, 29] or spread(list(range(30)), 3) == [0, 15, 29]
    assert spread([4], 3) == [4]
