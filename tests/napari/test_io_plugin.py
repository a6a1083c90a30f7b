"""Reader, writer and sample data of the napari plugin: plain LayerData, no napari needed."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile

from selfnet.io import read_volume
from selfnet.napari._reader import napari_get_reader
from selfnet.napari._sample import SAMPLE_SHAPE, neurite_sample
from selfnet.napari._writer import write_image
from tests.napari.conftest import CHANNEL_SPACING


def test_two_channels_become_one_layer_per_channel_with_the_voxel_size(two_channel_tif):
    reader = napari_get_reader(str(two_channel_tif))
    assert reader is not None
    [(data, meta, kind)] = reader(str(two_channel_tif))
    assert kind == "image" and meta["channel_axis"] == 0
    assert data.shape == (2, 6, 32, 40)
    assert meta["scale"] == CHANNEL_SPACING
    assert meta["name"] == ["two_channels [c0]", "two_channels [c1]"]
    raw = tifffile.imread(two_channel_tif)
    np.testing.assert_array_equal(np.asarray(data[1]), raw[:, 1])


def test_time_lapse_puts_time_first(tmp_path):
    data = np.arange(3 * 4 * 8 * 8, dtype=np.uint16).reshape(3, 4, 8, 8)
    path = tmp_path / "movie.tif"
    tifffile.imwrite(path, data, imagej=True, resolution=(2.0, 2.0), metadata={"spacing": 1.5, "unit": "um",
                                                                                 "axes": "TZYX"})
    [(layer, meta, _)] = napari_get_reader(str(path))(str(path))
    assert layer.shape == (3, 4, 8, 8) and meta["scale"] == (1.0, 1.5, 0.5, 0.5)
    np.testing.assert_array_equal(np.asarray(layer), data)


def test_uncalibrated_tiff_opens_at_one_micrometre(tmp_path):
    path = tmp_path / "plain.tif"
    tifffile.imwrite(path, np.zeros((5, 8, 8), np.uint8), photometric="minisblack")
    [(_, meta, _)] = napari_get_reader(str(path))(str(path))
    assert meta["scale"] == (1.0, 1.0, 1.0) and meta["metadata"]["selfnet"]["calibrated"] is False
    assert "units" not in meta


def test_npy_with_sidecar_and_named_axes(tmp_path):
    path = tmp_path / "cells.npy"
    np.save(path, np.ones((2, 4, 8, 8), np.float32))
    path.with_name("cells.npy.json").write_text(json.dumps({"spacing": [2.0, 0.5, 0.5], "axes": "CZYX"}))
    [(data, meta, _)] = napari_get_reader(str(path))(str(path))
    assert data.shape == (2, 4, 8, 8) and meta["channel_axis"] == 0 and meta["scale"] == (2.0, 0.5, 0.5)


@pytest.mark.parametrize("name, content", [("a.png", b"x"), ("broken.tif", b"not a tiff"), ("empty.npy", b""),
                                            ("missing.tif", None), ("flat.tif", "2d")])
def test_reader_says_none_for_what_it_cannot_read(tmp_path, name, content):
    path = tmp_path / name
    if content == "2d":
        tifffile.imwrite(path, np.zeros((8, 8), np.uint8))
    elif content is not None:
        path.write_bytes(content)
    assert napari_get_reader(str(path)) is None
    assert napari_get_reader([str(path)]) is None


@pytest.mark.parametrize("name", ["out.tif", "out.ome.tif", "out.npy", "out.ome.zarr"])
def test_writer_keeps_the_scale(tmp_path, name):
    data = np.random.default_rng(0).random((5, 16, 16)).astype(np.float32)
    [written] = write_image(str(tmp_path / name), data, {"scale": (1.0, 2.0, 0.25, 0.25), "name": "x"})
    back = read_volume(written)
    assert back.spacing == pytest.approx((2.0, 0.25, 0.25))
    np.testing.assert_allclose(np.asarray(back.data), data)


def test_writer_keeps_integer_types_and_refuses_what_is_not_one_stack(tmp_path):
    data = np.full((3, 8, 8), 7, np.uint16)
    [written] = write_image(str(tmp_path / "u16.tif"), data, {"scale": (1.0, 0.5, 0.5)})
    assert read_volume(written).data.dtype == np.uint16
    with pytest.raises(ValueError, match="one ZYX stack"):
        write_image(str(tmp_path / "t.tif"), np.zeros((2, 3, 8, 8)), {"scale": (1, 1, 1, 1)})


def test_sample_is_a_calibrated_anisotropic_stack():
    [(data, meta, kind)] = neurite_sample()
    dz, dy, dx = meta["scale"]
    assert kind == "image" and data.ndim == 3 and data.shape[1:] == SAMPLE_SHAPE[1:]
    assert dz == pytest.approx(4 * dx) and dy == dx
