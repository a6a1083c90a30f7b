"""Tests for selfnet.io: reading voxel sizes and axes, validation, safe atomic writing."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import tifffile

from selfnet.errors import InputError, OutputError
from selfnet.io import (
    Volume,
    atomic_write,
    check_output_path,
    read_volume,
    to_dtype,
    validate_volume,
    write_volume,
)

SHAPE = (6, 16, 16)
REPO = Path(__file__).resolve().parents[3]
DATA_DIR = REPO.parent / "shared" / "data"
"""The real stacks live in ``../shared/data`` beside the repository (see README, "Real data")."""


def _stack(shape: tuple[int, ...] = SHAPE, dtype: str = "uint16") -> np.ndarray:
    """A small non-constant test volume whose every voxel differs."""
    return (np.arange(np.prod(shape)) % 1000).reshape(shape).astype(dtype)


def _imagej(path: Path, data: np.ndarray, *, dz: float, dx: float, unit: str, axes: str = "ZYX") -> Path:
    """Write an ImageJ hyperstack with a z step, a lateral pixel size and a unit string."""
    tifffile.imwrite(
        path,
        data,
        imagej=True,
        resolution=(1 / dx, 1 / dx),
        metadata={"spacing": dz, "unit": unit, "axes": axes},
    )
    return path


def _input_error(path: Path, **kwargs: object) -> str:
    """Read ``path`` expecting an InputError; return its (one-line) message."""
    with pytest.raises(InputError) as info:
        read_volume(path, **kwargs)  # type: ignore[arg-type]
    message = str(info.value)
    assert "\n" not in message
    return message


# --- reading voxel sizes -------------------------------------------------------------------


def test_imagej_round_trip_keeps_spacing_and_data(tmp_path: Path) -> None:
    data = np.random.default_rng(0).random(SHAPE, dtype=np.float32)
    out = write_volume(tmp_path / "out.tif", data, (1.0, 0.2, 0.2))
    vol = read_volume(out)
    assert vol.spacing == pytest.approx((1.0, 0.2, 0.2), rel=1e-4)
    assert vol.data.dtype == np.float32
    np.testing.assert_array_equal(vol.data, data)
    assert vol.metadata["source_format"] == "imagej"
    assert vol.ratio == pytest.approx(5.0, rel=1e-4)


def test_ome_round_trip_keeps_spacing_and_data(tmp_path: Path) -> None:
    data = _stack()
    out = write_volume(tmp_path / "out.ome.tif", data, (0.25, 0.0655, 0.0655), dtype="uint16")
    vol = read_volume(out)
    assert vol.metadata["source_format"] == "ome"
    assert vol.spacing == pytest.approx((0.25, 0.0655, 0.0655), rel=1e-4)
    np.testing.assert_array_equal(vol.data, data)


def test_npy_round_trip_uses_sidecar(tmp_path: Path) -> None:
    data = _stack(dtype="float32")
    out = write_volume(tmp_path / "out.npy", data, (2.0, 0.5, 0.5), metadata={"model": "m.pt"})
    sidecar = json.loads((tmp_path / "out.npy.json").read_text(encoding="utf-8"))
    assert sidecar["spacing"] == [2.0, 0.5, 0.5]
    assert sidecar["metadata"] == {"model": "m.pt"}
    vol = read_volume(out)
    assert vol.spacing == (2.0, 0.5, 0.5)
    assert isinstance(vol.data, np.memmap)
    np.testing.assert_array_equal(vol.data, data)


def test_npy_without_sidecar_needs_both_flags(tmp_path: Path) -> None:
    np.save(tmp_path / "vol.npy", _stack())
    message = _input_error(tmp_path / "vol.npy")
    assert "--lateral-um" in message and "--axial-um" in message and "vol.npy" in message
    vol = read_volume(tmp_path / "vol.npy", lateral_um=0.3, axial_um=1.2)
    assert vol.spacing == (1.2, 0.3, 0.3)


def test_invalid_sidecar_is_an_input_error(tmp_path: Path) -> None:
    np.save(tmp_path / "vol.npy", _stack())
    (tmp_path / "vol.npy.json").write_text('{"spacing": [1, 0.2]}', encoding="utf-8")
    assert "spacing" in _input_error(tmp_path / "vol.npy")


def test_plain_tiff_without_sizes_names_both_flags(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "plain.tif", _stack())
    message = _input_error(tmp_path / "plain.tif")
    assert message == f"no voxel size in {tmp_path / 'plain.tif'}: pass --lateral-um and --axial-um (µm)"


def test_plain_tiff_with_cm_resolution_only_lacks_axial(tmp_path: Path) -> None:
    per_cm = 1e4 / 0.1
    tifffile.imwrite(tmp_path / "cm.tif", _stack(), resolution=(per_cm, per_cm), resolutionunit="CENTIMETER")
    message = _input_error(tmp_path / "cm.tif")
    assert "--axial-um" in message and "--lateral-um" not in message
    vol = read_volume(tmp_path / "cm.tif", axial_um=0.4)
    assert vol.spacing == pytest.approx((0.4, 0.1, 0.1), rel=1e-4)
    assert vol.data.shape == SHAPE  # tifffile's unnamed 'Q' axis is taken as Z


def test_desktop_dpi_is_not_taken_as_calibration(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "dpi.tif", _stack(), resolution=(72, 72), resolutionunit="INCH")
    assert "--lateral-um and --axial-um" in _input_error(tmp_path / "dpi.tif")


def test_explicit_sizes_override_each_axis(tmp_path: Path) -> None:
    path = _imagej(tmp_path / "ij.tif", _stack(), dz=1.0, dx=0.2, unit="um")
    assert read_volume(path, lateral_um=0.1).spacing == pytest.approx((1.0, 0.1, 0.1))
    vol = read_volume(path, axial_um=3.0)
    assert vol.spacing == pytest.approx((3.0, 0.2, 0.2))
    assert vol.metadata["spacing_source"] == {"axial": "argument", "lateral": "imagej"}


@pytest.mark.parametrize("value", [0.0, -1.0, float("nan")])
def test_non_positive_override_is_refused(tmp_path: Path, value: float) -> None:
    path = _imagej(tmp_path / "ij.tif", _stack(), dz=1.0, dx=0.2, unit="um")
    assert "--axial-um" in _input_error(path, axial_um=value)


@pytest.mark.parametrize(
    ("unit", "dz", "dx", "expected"),
    [
        ("\\u00B5m", 0.15, 1 / 29.53846, (0.15, 0.033854, 0.033854)),  # literal text, as in a real file
        ("micron", 4.0, 1 / 1.206792, (4.0, 0.828643, 0.828643)),
        ("nm", 500.0, 100.0, (0.5, 0.1, 0.1)),
        ("mm", 0.002, 0.0004, (2.0, 0.4, 0.4)),
    ],
)
def test_imagej_units_are_converted_to_um(
    tmp_path: Path, unit: str, dz: float, dx: float, expected: tuple[float, float, float]
) -> None:
    vol = read_volume(_imagej(tmp_path / "u.tif", _stack(), dz=dz, dx=dx, unit=unit))
    assert vol.spacing == pytest.approx(expected, rel=1e-4)
    assert vol.metadata["unit"] == unit


def test_imagej_pixel_unit_means_unknown(tmp_path: Path) -> None:
    path = _imagej(tmp_path / "px.tif", _stack(), dz=1.0, dx=1.0, unit="pixel")
    assert "--lateral-um and --axial-um" in _input_error(path)


def test_ome_nm_units_are_converted(tmp_path: Path) -> None:
    meta = {"axes": "ZYX", "PhysicalSizeX": 65.5, "PhysicalSizeXUnit": "nm", "PhysicalSizeY": 65.5}
    meta.update(PhysicalSizeYUnit="nm", PhysicalSizeZ=250, PhysicalSizeZUnit="nm")
    tifffile.imwrite(tmp_path / "nm.ome.tif", _stack(), ome=True, metadata=meta)
    assert read_volume(tmp_path / "nm.ome.tif").spacing == pytest.approx((0.25, 0.0655, 0.0655), rel=1e-4)


# --- axes -----------------------------------------------------------------------------------


def test_tzyx_needs_a_timepoint(tmp_path: Path) -> None:
    data = _stack((3, *SHAPE))
    path = _imagej(tmp_path / "t.tif", data, dz=1.0, dx=0.2, unit="um", axes="TZYX")
    message = _input_error(path)
    assert message == f"{path} has 3 time points (axes TZYX): choose one with --timepoint N"
    vol = read_volume(path, timepoint=2)
    np.testing.assert_array_equal(vol.data, data[2])
    assert vol.metadata["original_axes"] == "TZYX"
    assert vol.metadata["selected"] == {"T": 2}
    assert "out of range" in _input_error(path, timepoint=3)


def test_channel_selection(tmp_path: Path) -> None:
    data = _stack((SHAPE[0], 2, *SHAPE[1:]))
    path = _imagej(tmp_path / "c.tif", data, dz=1.0, dx=0.2, unit="um", axes="ZCYX")
    assert "--channel N" in _input_error(path)
    vol = read_volume(path, channel=1)
    np.testing.assert_array_equal(vol.data, data[:, 1])
    assert vol.metadata["selected"] == {"C": 1}


def test_size_one_time_axis_is_squeezed(tmp_path: Path) -> None:
    data = _stack((1, *SHAPE))
    path = _imagej(tmp_path / "t1.tif", data, dz=1.0, dx=0.2, unit="um", axes="TZYX")
    assert read_volume(path).data.shape == SHAPE
    assert read_volume(path, timepoint=0).data.shape == SHAPE
    assert "out of range" in _input_error(path, timepoint=1)


def test_contiguous_tiff_is_memory_mapped(tmp_path: Path) -> None:
    data = _stack()
    vol = read_volume(_imagej(tmp_path / "m.tif", data, dz=1.0, dx=0.2, unit="um"))
    assert isinstance(vol.data, np.memmap)
    np.testing.assert_array_equal(vol.data, data)


def test_compressed_tiff_is_read(tmp_path: Path) -> None:
    data = _stack()
    tifffile.imwrite(tmp_path / "z.tif", data, compression="zlib")
    np.testing.assert_array_equal(read_volume(tmp_path / "z.tif", lateral_um=0.2, axial_um=1.0).data, data)


# --- input errors ---------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    assert "does not exist" in _input_error(tmp_path / "nope.tif")


def test_directory(tmp_path: Path) -> None:
    (tmp_path / "d.tif").mkdir()
    assert "is a directory" in _input_error(tmp_path / "d.tif")


def test_empty_file(tmp_path: Path) -> None:
    (tmp_path / "e.tif").write_bytes(b"")
    assert "empty" in _input_error(tmp_path / "e.tif")


def test_text_named_tif(tmp_path: Path) -> None:
    (tmp_path / "t.tif").write_text("not an image\n", encoding="utf-8")
    assert "not a valid or complete TIFF" in _input_error(tmp_path / "t.tif")


@pytest.mark.parametrize("name", ["ij.tif", "ome.ome.tif", "plain.tif"])
def test_truncated_tiff(tmp_path: Path, name: str) -> None:
    full = tmp_path / f"full-{name}"
    if name.startswith("ij"):
        _imagej(full, _stack(), dz=1.0, dx=0.2, unit="um")
    else:
        tifffile.imwrite(full, _stack(), ome=name.startswith("ome"))
    raw = full.read_bytes()
    (tmp_path / name).write_bytes(raw[: len(raw) // 2])
    assert "truncated" in _input_error(tmp_path / name, lateral_um=0.2, axial_um=1.0)


def test_truncated_npy(tmp_path: Path) -> None:
    np.save(tmp_path / "full.npy", _stack())
    raw = (tmp_path / "full.npy").read_bytes()
    (tmp_path / "cut.npy").write_bytes(raw[: len(raw) // 2])
    assert "not a valid or complete .npy" in _input_error(tmp_path / "cut.npy")


def test_unsupported_suffix(tmp_path: Path) -> None:
    (tmp_path / "x.png").write_bytes(b"\x89PNG")
    assert "unsupported input format" in _input_error(tmp_path / "x.png")


def test_2d_image(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "2d.tif", _stack((16, 16)))
    assert "is 2D (YX); selfnet needs a z-stack" in _input_error(tmp_path / "2d.tif")


def test_single_plane(tmp_path: Path) -> None:
    np.save(tmp_path / "one.npy", _stack((1, 16, 16)))
    assert "only 1 z plane" in _input_error(tmp_path / "one.npy", lateral_um=0.2, axial_um=1.0)


def test_rgb_is_refused(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "rgb.tif", _stack((*SHAPE, 3), dtype="uint8"), photometric="rgb")
    assert "RGB" in _input_error(tmp_path / "rgb.tif", lateral_um=0.2, axial_um=1.0)


def test_bool_npy_is_refused(tmp_path: Path) -> None:
    np.save(tmp_path / "b.npy", np.zeros(SHAPE, dtype=bool))
    assert "data type bool" in _input_error(tmp_path / "b.npy")


# --- validation -----------------------------------------------------------------------------


def _volume(data: np.ndarray | None = None, spacing: tuple[float, float, float] = (1.0, 0.2, 0.2)) -> Volume:
    data = _stack(dtype="float32") if data is None else data
    return Volume(data=data, spacing=spacing, path=Path("in.tif"))


def _validation_error(vol: Volume) -> str:
    with pytest.raises(InputError) as info:
        validate_volume(vol)
    assert "\n" not in str(info.value)
    return str(info.value)


def test_valid_volume_passes() -> None:
    validate_volume(_volume())


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_or_inf(bad: float) -> None:
    data = _stack(dtype="float32")
    data[3, 4, 5] = bad
    assert "contains NaN or Inf values" in _validation_error(_volume(data))


@pytest.mark.parametrize("value", [0.0, 7.0])
def test_constant_volume(value: float) -> None:
    assert "constant" in _validation_error(_volume(np.full(SHAPE, value, dtype=np.float32)))


def test_axial_step_far_finer_than_lateral() -> None:
    message = _validation_error(_volume(spacing=(0.04, 0.2, 0.2)))
    assert "axial step 0.04 µm is 5x finer than the lateral pixel 0.2 µm: bin the stack along z first" in message


def test_fine_axial_step_is_valid() -> None:
    validate_volume(_volume(spacing=(0.1, 0.2, 0.2)))


def test_ratio_too_large() -> None:
    assert "ratio too large" in _validation_error(_volume(spacing=(5.0, 0.2, 0.2)))


def test_non_square_pixels() -> None:
    assert "not square" in _validation_error(_volume(spacing=(1.0, 0.2, 0.3)))


def test_non_positive_spacing() -> None:
    assert "positive" in _validation_error(_volume(spacing=(1.0, 0.0, 0.2)))


def test_validation_needs_two_planes() -> None:
    assert "only 1 z plane" in _validation_error(_volume(_stack((1, 16, 16), dtype="float32")))


# --- output paths and atomic writes ---------------------------------------------------------


def test_check_output_path_accepts_supported_suffixes(tmp_path: Path) -> None:
    for name in ("a.tif", "b.TIFF", "c.ome.tif", "d.npy"):
        assert check_output_path(tmp_path / name, overwrite=False) == (tmp_path / name).resolve()
    assert check_output_path(tmp_path / "m.pt", overwrite=False, suffixes=(".pt",)).name == "m.pt"


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("out.png", "unsupported output suffix"),
        ("missing/out.tif", "does not exist"),
        ("file.txt/out.tif", "not a folder"),
    ],
)
def test_check_output_path_errors(tmp_path: Path, name: str, fragment: str) -> None:
    (tmp_path / "file.txt").write_text("x", encoding="utf-8")
    with pytest.raises(OutputError, match=fragment):
        check_output_path(tmp_path / name, overwrite=True)


def test_check_output_path_existing_file(tmp_path: Path) -> None:
    target = tmp_path / "output.tif"
    target.write_bytes(b"old")
    with pytest.raises(OutputError) as info:
        check_output_path(target, overwrite=False)
    assert str(info.value) == f"{target} exists: pass --overwrite to replace it"
    assert check_output_path(target, overwrite=True) == target.resolve()


def test_check_output_path_directory(tmp_path: Path) -> None:
    (tmp_path / "dir.tif").mkdir()
    with pytest.raises(OutputError, match="is a directory"):
        check_output_path(tmp_path / "dir.tif", overwrite=True)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root can write anywhere")
def test_check_output_path_read_only_folder(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(OutputError, match="not writable"):
            check_output_path(folder / "out.tif", overwrite=False)
    finally:
        folder.chmod(0o700)


def test_check_output_path_unwritable_folder_even_as_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "access", lambda *args, **kwargs: False)
    with pytest.raises(OutputError, match="is not writable"):
        check_output_path(tmp_path / "out.tif", overwrite=False)


def test_atomic_write_replaces_on_success(tmp_path: Path) -> None:
    target = tmp_path / "out.ome.tif"
    with atomic_write(target) as temp:
        assert temp.parent == tmp_path and temp.name.startswith(".out") and temp.name.endswith(".ome.tif")
        temp.write_bytes(b"new")
    assert target.read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir()] == ["out.ome.tif"]


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_atomic_write_cleans_up_and_keeps_old_file(tmp_path: Path, error: type[BaseException]) -> None:
    target = tmp_path / "model.pt"
    target.write_bytes(b"old")
    with pytest.raises(error), atomic_write(target) as temp:
        temp.write_bytes(b"half")
        raise error()
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]


def test_atomic_write_leaves_nothing_when_new(tmp_path: Path) -> None:
    with pytest.raises(ValueError), atomic_write(tmp_path / "out.npy") as temp:
        temp.write_bytes(b"half")
        raise ValueError("boom")
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_turns_os_errors_into_output_errors(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match="cannot write"), atomic_write(tmp_path / "out.tif") as temp:
        temp.write_bytes(b"half")
        raise OSError(28, "No space left on device")
    assert list(tmp_path.iterdir()) == []


# --- write_volume and dtypes ----------------------------------------------------------------


def test_write_refuses_existing_unless_overwrite(tmp_path: Path) -> None:
    target = tmp_path / "out.tif"
    target.write_bytes(b"old")
    with pytest.raises(OutputError, match="--overwrite"):
        write_volume(target, _stack(), (1.0, 0.2, 0.2))
    assert target.read_bytes() == b"old"
    write_volume(target, _stack(), (1.0, 0.2, 0.2), overwrite=True)
    assert read_volume(target).data.shape == SHAPE


def test_write_refuses_dtype_imagej_cannot_hold(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match="int16"):
        write_volume(tmp_path / "out.tif", _stack(), (1.0, 0.2, 0.2), dtype="int16")
    assert list(tmp_path.iterdir()) == []


def test_write_uint8_rounds_and_clips(tmp_path: Path) -> None:
    data = np.linspace(-10, 300, np.prod(SHAPE), dtype=np.float32).reshape(SHAPE)
    vol = read_volume(write_volume(tmp_path / "o.tif", data, (1.0, 0.2, 0.2), dtype="uint8"))
    assert vol.data.dtype == np.uint8
    np.testing.assert_array_equal(vol.data, np.clip(np.rint(data), 0, 255).astype(np.uint8))


def test_to_dtype_rounds_and_clips() -> None:
    values = np.array([-5.0, 0.4, 0.6, 254.5, 300.0, np.nan], dtype=np.float32)
    np.testing.assert_array_equal(to_dtype(values, "uint8"), [0, 0, 1, 254, 255, 0])
    np.testing.assert_array_equal(to_dtype(np.array([-1.0, 7e4]), "uint16"), [0, 65535])
    np.testing.assert_array_equal(to_dtype(np.array([-4e4, 4e4]), "int16"), [-32768, 32767])
    np.testing.assert_array_equal(to_dtype(np.array([-3, 70000], dtype=np.int32), "uint16"), [0, 65535])


def test_to_dtype_float32_passes_through() -> None:
    data = np.array([-1.5, 1e6], dtype=np.float32)
    assert to_dtype(data, "float32") is data
    with pytest.raises(OutputError, match="float64"):
        to_dtype(data, "float64")


# --- real data (skipped where ../shared/data beside the repository is absent) -------------


@pytest.mark.parametrize(
    ("name", "kwargs", "shape", "spacing"),
    [
        ("tissue_nuclei_ZYX.tif", {}, (37, 118, 132), (4.0, 0.8286, 0.8286)),
        ("chromosomes_ZYX.tif", {}, (40, 152, 126), (0.15, 0.03385, 0.03385)),
        ("yeast_mitochondria_TZYX.ome.tif", {"timepoint": 0}, (17, 192, 279), (0.25, 0.0655, 0.0655)),
    ],
)
def test_real_files(
    name: str, kwargs: dict[str, int], shape: tuple[int, ...], spacing: tuple[float, ...]
) -> None:
    path = DATA_DIR / name
    if not path.is_file():
        pytest.skip(f"{path} not available")
    vol = read_volume(path, **kwargs)  # type: ignore[arg-type]
    assert vol.data.shape == shape
    assert vol.spacing == pytest.approx(spacing, rel=1e-3)
    validate_volume(vol)


def test_real_timeseries_needs_timepoint() -> None:
    path = DATA_DIR / "yeast_mitochondria_TZYX.ome.tif"
    if not path.is_file():
        pytest.skip(f"{path} not available")
    assert "has 30 time points (axes TZYX): choose one with --timepoint N" in _input_error(path)
