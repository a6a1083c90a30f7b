"""OME-Zarr reading and writing: NGFF 0.4/0.5, zarr v2/v3, levels, axes, units, lazy TIFF."""

from __future__ import annotations

import json

import dask.array as da
import numpy as np
import pytest
import tifffile
import zarr

from selfnet.errors import InputError, OutputError
from selfnet.io import check_output_path, read_volume, write_volume
from selfnet.io import zarr as ngff


@pytest.fixture()
def volume() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 4000, (9, 40, 36)).astype(np.uint16)


def _group_attrs(path) -> dict:
    return dict(zarr.open_group(str(path), mode="r").attrs)


def test_write_volume_zarr_v2_ngff04_metadata_and_round_trip(volume, tmp_path):
    out = write_volume(tmp_path / "iso.ome.zarr", volume, (0.2, 0.2, 0.2), dtype="uint16")
    attrs = _group_attrs(out)
    ms = attrs["multiscales"][0]
    assert ms["version"] == "0.4"
    assert ms["axes"] == [{"name": a, "type": "space", "unit": "micrometer"} for a in "zyx"]
    assert ms["datasets"] == [{"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [0.2] * 3}]}]
    assert attrs["selfnet"]["status"] == "complete"
    assert json.loads((out / "0" / ".zarray").read_text())["dimension_separator"] == "/"
    vol = read_volume(out)
    assert isinstance(vol.data, da.Array)  # lazy
    assert vol.spacing == (0.2, 0.2, 0.2)
    assert vol.data.dtype == np.uint16
    np.testing.assert_array_equal(np.asarray(vol.data), volume)
    assert vol.metadata["source_format"] == "ome-zarr" and vol.metadata["zarr_format"] == 2


def test_write_ngff05_is_zarr_v3_with_ome_key(volume, tmp_path):
    out = ngff.write_ngff(tmp_path / "iso.zarr", volume, (0.5, 0.25, 0.25), version="0.5")
    meta = json.loads((out / "zarr.json").read_text())
    assert meta["zarr_format"] == 3
    ome = meta["attributes"]["ome"]
    assert ome["version"] == "0.5" and "version" not in ome["multiscales"][0]
    assert ome["multiscales"][0]["datasets"][0]["coordinateTransformations"][0]["scale"] == [0.5, 0.25, 0.25]
    assert json.loads((out / "0" / "zarr.json").read_text())["dimension_names"] == ["z", "y", "x"]
    vol = read_volume(out)
    assert vol.spacing == (0.5, 0.25, 0.25) and vol.metadata["ngff_version"] == "0.5"
    np.testing.assert_allclose(np.asarray(vol.data), volume)


def test_pyramid_levels_are_2x_means_with_doubled_scale(tmp_path):
    data = np.random.default_rng(1).random((33, 300, 270)).astype(np.float32)
    out = ngff.write_ngff(tmp_path / "p.zarr", data, (0.3, 0.3, 0.3), pyramid=True)
    datasets = _group_attrs(out)["multiscales"][0]["datasets"]
    shapes = [zarr.open_array(str(out / d["path"])).shape for d in datasets]
    assert shapes == [(33, 300, 270), (17, 150, 135), (9, 75, 68)]
    assert [d["coordinateTransformations"][0]["scale"][0] for d in datasets] == pytest.approx([0.3, 0.6, 1.2])
    level1 = np.asarray(zarr.open_array(str(out / "1")))
    padded = np.pad(data, ((0, 1), (0, 0), (0, 0)), mode="edge")
    expected = padded.reshape(17, 2, 150, 2, 135, 2).mean(axis=(1, 3, 5))
    np.testing.assert_allclose(level1, expected, rtol=1e-6)
    vol = read_volume(out, level=2)
    assert vol.data.shape == (9, 75, 68) and vol.spacing == pytest.approx((1.2, 1.2, 1.2))
    with pytest.raises(InputError, match="--level 3 is out of range"):
        read_volume(out, level=3)


def _foreign_store(path, fmt: int, unit: str = "nanometer") -> np.ndarray:
    """A 5D tczyx OME-Zarr with two levels, as other tools write it."""
    data = np.random.default_rng(2).integers(0, 255, (2, 3, 6, 16, 16)).astype(np.uint8)
    group = zarr.open_group(str(path), mode="w", zarr_format=fmt)
    group.create_array("s0", data=data, chunks=(1, 1, 6, 8, 8))
    group.create_array("s1", data=data[:, :, :, ::2, ::2], chunks=(1, 1, 6, 8, 8))
    axes = [{"name": "t", "type": "time"}, {"name": "c", "type": "channel"}] + [
        {"name": a, "type": "space", "unit": unit} for a in "zyx"]
    ms = {"axes": axes, "datasets": [
        {"path": "s0", "coordinateTransformations": [{"type": "scale", "scale": [1, 1, 800, 100, 100]}]},
        {"path": "s1", "coordinateTransformations": [{"type": "scale", "scale": [1, 1, 800, 200, 200]}]}]}
    if fmt == 2:
        group.attrs["multiscales"] = [{"version": "0.4", **ms}]
    else:
        group.attrs["ome"] = {"version": "0.5", "multiscales": [ms]}
    return data


@pytest.mark.parametrize("fmt", [2, 3])
def test_foreign_5d_store_channel_timepoint_level_units(tmp_path, fmt):
    data = _foreign_store(tmp_path / "f.ome.zarr", fmt)
    vol = read_volume(tmp_path / "f.ome.zarr", timepoint=1, channel=2)
    assert vol.spacing == pytest.approx((0.8, 0.1, 0.1))
    np.testing.assert_array_equal(np.asarray(vol.data), data[1, 2])
    assert vol.metadata["selected"] == {"T": 1, "C": 2}
    low = read_volume(tmp_path / "f.ome.zarr", timepoint=0, channel=0, level=1)
    assert low.spacing == pytest.approx((0.8, 0.2, 0.2)) and low.data.shape == (6, 8, 8)
    with pytest.raises(InputError, match="choose one with --timepoint"):
        read_volume(tmp_path / "f.ome.zarr", channel=0)
    with pytest.raises(InputError, match="--channel 3 is out of range"):
        read_volume(tmp_path / "f.ome.zarr", timepoint=0, channel=3)
    over = read_volume(tmp_path / "f.ome.zarr", timepoint=0, channel=0, lateral_um=0.3, axial_um=1.5)
    assert over.spacing == (1.5, 0.3, 0.3)


def test_bioformats2raw_layout_is_followed(tmp_path):
    root = zarr.open_group(str(tmp_path / "b.zarr"), mode="w", zarr_format=2)
    root.attrs["bioformats2raw.layout"] = 3
    data = _foreign_store(tmp_path / "b.zarr" / "0", 2, unit="micrometer")
    vol = read_volume(tmp_path / "b.zarr", timepoint=0, channel=1)
    assert vol.spacing == pytest.approx((800, 100, 100))
    np.testing.assert_array_equal(np.asarray(vol.data), data[0, 1])


def test_plain_array_needs_voxel_size_flags(tmp_path, volume):
    zarr.create_array(str(tmp_path / "plain.zarr"), data=volume, chunks=(3, 20, 20))
    with pytest.raises(InputError, match="--lateral-um and --axial-um"):
        read_volume(tmp_path / "plain.zarr")
    vol = read_volume(tmp_path / "plain.zarr", lateral_um=0.2, axial_um=1.0)
    assert vol.spacing == (1.0, 0.2, 0.2) and vol.data.shape == volume.shape


def test_group_without_multiscales_and_incomplete_stores_are_refused(tmp_path, volume):
    zarr.open_group(str(tmp_path / "g.zarr"), mode="w")
    with pytest.raises(InputError, match="no OME-Zarr 'multiscales'"):
        read_volume(tmp_path / "g.zarr")
    arr = ngff.create_store(tmp_path / "part.zarr", volume.shape, "uint16", chunks=(3, 20, 20))
    arr[:3] = volume[:3]
    assert "multiscales" not in _group_attrs(tmp_path / "part.zarr")
    with pytest.raises(InputError, match="unfinished selfnet output: finish it with --resume"):
        read_volume(tmp_path / "part.zarr")
    (tmp_path / "file.zarr").write_text("not a store")
    with pytest.raises(InputError, match="not a zarr store"):
        read_volume(tmp_path / "file.zarr")
    with pytest.raises(InputError, match="does not exist"):
        read_volume(tmp_path / "missing.zarr")


def test_output_checks(tmp_path, volume):
    write_volume(tmp_path / "a.zarr", volume, (1, 1, 1), dtype="uint16")
    with pytest.raises(OutputError, match="exists: pass --overwrite"):
        write_volume(tmp_path / "a.zarr", volume, (1, 1, 1))
    write_volume(tmp_path / "a.zarr", volume * 0 + 7, (1, 1, 1), dtype="uint16", overwrite=True)
    assert int(np.asarray(read_volume(tmp_path / "a.zarr").data).max()) == 7
    folder = tmp_path / "photos.zarr"
    folder.mkdir()
    (folder / "holiday.jpg").write_text("x")
    with pytest.raises(OutputError, match="not a zarr store"):
        write_volume(folder, volume, (1, 1, 1), overwrite=True)
    assert (folder / "holiday.jpg").exists()
    assert check_output_path(tmp_path / "new.ome.zarr", overwrite=False,
                             suffixes=(".tif", ".zarr")) == (tmp_path / "new.ome.zarr").resolve()
    with pytest.raises(OutputError, match="unsupported OME-Zarr version"):
        ngff.write_ngff(tmp_path / "v.zarr", volume, (1, 1, 1), version="0.3")


def test_compressed_tiff_is_read_lazily_only_when_asked(tmp_path, volume):
    path = tmp_path / "c.tif"
    tifffile.imwrite(path, volume, imagej=True, compression="zlib", resolution=(5.0, 5.0),
                     metadata={"axes": "ZYX", "spacing": 1.0, "unit": "um"})
    eager = read_volume(path)
    lazy = read_volume(path, lazy=True)
    assert isinstance(eager.data, np.ndarray) and isinstance(lazy.data, da.Array)
    assert lazy.spacing == eager.spacing == pytest.approx((1.0, 0.2, 0.2))
    np.testing.assert_array_equal(np.asarray(lazy.data[3:5, 10:20]), volume[3:5, 10:20])
    with pytest.raises(InputError, match="--level applies to OME-Zarr"):
        read_volume(path, level=1)


def test_pyramid_shapes_stop_at_viewer_size():
    assert ngff.pyramid_shapes((100, 100, 100)) == [(100, 100, 100)]
    assert ngff.pyramid_shapes((189, 2048, 2048))[-1] == (6, 64, 64)
    assert ngff.default_chunks((189, 2048, 2048), (256, 384, 384)) == (64, 192, 192)
