"""The one writer per format (in-memory and zarr-backed data alike) and the series layout of a file."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import zarr

from selfnet.errors import ConfigError
from selfnet.io import read_volume
from selfnet.io.series import parse_indices, probe_series, series_volume, spread
from selfnet.io.write import write_array

SPACING = (0.25, 0.25, 0.25)
DISPLAY = {"names": ["a", "b"], "colors": ["00FF00", "FF00FF"], "ranges": [(0.0, 1.0), (0.0, 2.0)],
           "frame_interval_s": 3.0}


@pytest.fixture(scope="module")
def tczyx() -> np.ndarray:
    return np.random.default_rng(0).random((2, 2, 5, 16, 12), dtype=np.float32)


@pytest.mark.parametrize("name", ["s.tif", "s.ome.tif", "s.npy"])
def test_series_round_trip_in_memory_and_streamed(tczyx, tmp_path, name):
    lazy = zarr.create_array(store=str(tmp_path / "z.zarr"), shape=tczyx.shape, chunks=(1, 1, 2, 16, 12),
                             dtype="float32")
    lazy[:] = tczyx
    for kind, data in (("mem", tczyx), ("lazy", lazy)):
        out = tmp_path / f"{kind}_{name}"
        write_array(out, data, SPACING, axes="TCZYX", display=DISPLAY)
        lay = probe_series(out)
        assert (lay.n_t, lay.n_c, lay.shape, lay.axes) == (2, 2, (5, 16, 12), "TC")
        assert lay.spacing == pytest.approx(SPACING) and lay.display["names"] == ["a", "b"]
        assert lay.display["frame_interval_s"] == 3.0
        for t in range(2):
            for c in range(2):
                np.testing.assert_array_equal(np.asarray(series_volume(lay, t, c).data), tczyx[t, c])


def test_imagej_colours_and_ranges(tczyx, tmp_path):
    out = write_array(tmp_path / "c.tif", tczyx, SPACING, axes="TCZYX", display=DISPLAY)
    with tifffile.TiffFile(out) as tf:
        ij = tf.imagej_metadata
        assert tf.series[0].axes == "TZCYX" and ij["Ranges"] == (0.0, 1.0, 0.0, 2.0)
    assert probe_series(out).display["colors"] == ["00FF00", "FF00FF"]


def test_zyx_writer_keeps_single_stacks_as_before(tmp_path):
    vol = np.arange(5 * 8 * 8, dtype=np.float32).reshape(5, 8, 8)
    out = write_array(tmp_path / "v.tif", vol, SPACING, dtype="uint16")
    back = read_volume(out)
    assert back.data.dtype == np.uint16 and back.spacing == pytest.approx(SPACING)
    with pytest.raises(ValueError, match="TCZYX order"):
        write_array(tmp_path / "w.tif", vol[None], SPACING, axes="ZCYX")


def test_index_lists_and_spread():
    assert parse_indices("3,0-1", 5, "--channels", "channel") == [0, 1, 3]
    assert parse_indices([2], 5, "--channels", "channel") == [2]
    for bad, match in (("5", "out of range"), ("2-1", "0-based"), ("x", "0-based")):
        with pytest.raises(ConfigError, match=match):
            parse_indices(bad, 5, "--channels", "channel")
    assert spread(list(range(10)), 3) == [0, 4, 9] or spread(list(range(10)), 3) == [0, 5, 9]
    assert spread(list(range(10)), 1) == [5] and spread([1, 2], 5) == [1, 2]
