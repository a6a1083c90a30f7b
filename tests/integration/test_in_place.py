"""No output may be, hold or lie inside an input: one line, exit 2, the input byte for byte untouched.

Every way to name the input again is tried (same path, another spelling, symlink, hard link, a
folder holding it, a file inside a ``.zarr`` input, the ``.npy.json`` sidecar) for ``run``,
``train`` and ``restore``, with ``--overwrite`` and ``--resume``, through the CLI in-process.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import selfnet
from selfnet.errors import OutputError
from selfnet.io import read_volume, write_volume
from selfnet.io.paths import check_not_input, overlaps
from selfnet.model import Model
from selfnet.phantoms.synthetic import Phantom

from .test_bad_inputs import assert_clean_error, run_main


def _digest(path: Path) -> dict[str, str]:
    """Content hash of every file under ``path`` (or of the file), to prove nothing changed."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file() and not p.is_symlink())
    return {str(p.relative_to(path.parent)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


@pytest.fixture(scope="module")
def model_file(tiny_phantom: Phantom, fast_config, tmp_path_factory) -> Path:
    import torch

    from selfnet.training.loop import train_model

    cfg = fast_config.model_copy(update={"epochs": 1, "steps_per_epoch": 2})
    path = tmp_path_factory.mktemp("model") / "tiny.pt"
    train_model(tiny_phantom.raw, tiny_phantom.spacing_raw, cfg, torch.device("cpu")).save(path)
    return path


def _inputs(tiny_phantom: Phantom, folder: Path) -> dict[str, Path]:
    """The tiny stack as TIFF, OME-TIFF, ``.npy`` + sidecar and OME-Zarr."""
    folder.mkdir(exist_ok=True)
    out = {}
    for name in ("in.tif", "in.ome.tif", "in.npy", "in.ome.zarr"):
        out[name] = write_volume(folder / name, tiny_phantom.raw.astype(np.uint16), tiny_phantom.spacing_raw,
                                 dtype="uint16")
    return out


# --- the path comparison itself ---------------------------------------------------------------


def test_overlaps_sees_aliases_links_and_nesting(tmp_path: Path) -> None:
    src = tmp_path / "in.tif"
    src.write_bytes(b"data")
    os.link(src, tmp_path / "hard.tif")
    os.symlink(src, tmp_path / "soft.tif")
    (tmp_path / "in.zarr" / "0").mkdir(parents=True)
    os.symlink(tmp_path / "in.zarr", tmp_path / "alias.zarr")
    assert overlaps(src, src) and overlaps(tmp_path / "sub" / ".." / "in.tif", src)
    assert overlaps(tmp_path / "hard.tif", src) and overlaps(tmp_path / "soft.tif", src)
    assert overlaps(tmp_path / "in.zarr" / "0" / "x.tif", tmp_path / "in.zarr")
    assert overlaps(tmp_path / "alias.zarr" / "new.ome.zarr", tmp_path / "in.zarr")
    assert overlaps(tmp_path, src)  # a folder that holds the input
    assert not overlaps(tmp_path / "out.tif", src) and not overlaps(tmp_path / "in.tiff", src)
    with pytest.raises(OutputError, match="the same file through another path"):
        check_not_input([tmp_path / "hard.tif"], [src])
    with pytest.raises(OutputError, match="sidecar|in.npy"):
        check_not_input([tmp_path / "in.npy"], [tmp_path / "in.npy"])
    check_not_input([None, tmp_path / "out.tif"], [None, src])


def test_npy_sidecar_counts_as_part_of_the_input(tmp_path: Path) -> None:
    (tmp_path / "a.npy").write_bytes(b"x")
    (tmp_path / "a.npy.json").write_text("{}")
    os.symlink(tmp_path / "a.npy.json", tmp_path / "b.npy.json")
    with pytest.raises(OutputError):  # writing b.npy would write its sidecar b.npy.json = a's sidecar
        check_not_input([tmp_path / "b.npy"], [tmp_path / "a.npy"])


# --- through the command line -----------------------------------------------------------------

Aliases = Callable[[Path, Path], Path]


def _same(src: Path, folder: Path) -> Path:
    return src


def _respelled(src: Path, folder: Path) -> Path:
    (folder / "sub").mkdir(exist_ok=True)
    return folder / "sub" / ".." / src.name


def _relative(src: Path, folder: Path) -> Path:
    return Path(os.path.relpath(src))


def _symlink(src: Path, folder: Path) -> Path:
    link = folder / ("link" + "".join(src.suffixes))
    if not link.is_symlink():
        os.symlink(src, link)
    return link


def _hardlink(src: Path, folder: Path) -> Path:
    link = folder / ("hard" + "".join(src.suffixes))
    if not link.exists():
        os.link(src, link)
    return link


ALIASES: dict[str, Aliases] = {"same path": _same, "respelled": _respelled, "relative": _relative,
                               "symlink": _symlink, "hard link": _hardlink}
FLAGS = {"plain": [], "--overwrite": ["--overwrite"], "--resume": ["--resume"],
         "--overwrite --resume": ["--overwrite", "--resume"]}


@pytest.mark.parametrize("flags", list(FLAGS), ids=list(FLAGS))
@pytest.mark.parametrize("alias", list(ALIASES), ids=list(ALIASES))
@pytest.mark.parametrize("name", ["in.tif", "in.ome.tif", "in.npy", "in.ome.zarr"])
def test_restore_in_place_is_refused(name: str, alias: str, flags: str, tiny_phantom: Phantom, model_file: Path,
                                     tmp_path: Path) -> None:
    if alias == "hard link" and name.endswith(".zarr"):
        pytest.skip("folders cannot be hard-linked")
    src = _inputs(tiny_phantom, tmp_path / "data")[name]
    out = ALIASES[alias](src, tmp_path / "data")
    before = _digest(src.parent)
    res = run_main("restore", src, "--model", model_file, "-o", out, "-q", *FLAGS[flags])
    assert_clean_error(res, "would overwrite the input", "choose an output outside the input")
    assert _digest(src.parent) == before
    assert read_volume(src).data.shape == tiny_phantom.raw.shape


@pytest.mark.parametrize("flags", ["--overwrite", "--resume"])
def test_run_in_place_on_zarr_and_tif_is_refused_before_training(flags: str, tiny_phantom: Phantom,
                                                                 fast_config_file: Path, tmp_path: Path) -> None:
    inputs = _inputs(tiny_phantom, tmp_path / "data")
    before = _digest(tmp_path / "data")
    for name in ("in.ome.zarr", "in.tif", "in.npy"):
        res = run_main("run", inputs[name], "-o", inputs[name], "--config", fast_config_file, "-q", flags)
        assert_clean_error(res, "would overwrite the input")
    assert _digest(tmp_path / "data") == before


def test_outputs_inside_or_around_a_zarr_input_are_refused(tiny_phantom: Phantom, model_file: Path,
                                                           tmp_path: Path) -> None:
    store = _inputs(tiny_phantom, tmp_path / "data")["in.ome.zarr"]
    before = _digest(tmp_path / "data")
    inside = [store / "iso.tif", store / "0" / "iso.ome.zarr", store / "nested.zarr"]
    for out in inside:
        res = run_main("restore", store, "--model", model_file, "-o", out, "-q", "--overwrite")
        assert_clean_error(res, "would overwrite the input", "inside")
    # an output store that holds the input: replacing it would delete the input first
    holder = tmp_path / "holder.zarr"
    holder.mkdir()
    (holder / "zarr.json").write_text('{"zarr_format": 3, "node_type": "group", "attributes": {}}')
    raw = write_volume(holder / "raw.tif", tiny_phantom.raw.astype(np.uint16), tiny_phantom.spacing_raw,
                       dtype="uint16")
    held = _digest(holder)
    res = run_main("restore", raw, "--model", model_file, "-o", holder, "-q", "--overwrite")
    assert_clean_error(res, "would overwrite the input", "holds it")
    assert _digest(holder) == held and _digest(tmp_path / "data") == before


def test_save_model_report_and_model_paths_are_checked(tiny_phantom: Phantom, fast_config_file: Path,
                                                       model_file: Path, tmp_path: Path) -> None:
    src = _inputs(tiny_phantom, tmp_path / "data")["in.tif"]
    before, model_before = _digest(tmp_path / "data"), _digest(model_file)
    link = tmp_path / "data" / "in_alias.pt"
    os.symlink(src, link)
    res = run_main("run", src, "-o", tmp_path / "iso.tif", "--save-model", link, "--overwrite", "-q",
                   "--config", fast_config_file)
    assert_clean_error(res, "would overwrite the input")
    res = run_main("train", src, "-o", link, "--overwrite", "-q", "--config", fast_config_file)
    assert_clean_error(res, "would overwrite the input")
    # the report of `run` (OUTPUT.report.html) must not be the input either
    report_alias = tmp_path / "data" / "iso.report.html"
    os.symlink(src, report_alias)
    res = run_main("run", src, "-o", tmp_path / "data" / "iso.tif", "--overwrite", "-q", "--config", fast_config_file)
    assert_clean_error(res, "would overwrite the input")
    report_alias.unlink()
    # restoring over the model file read for it
    mlink = tmp_path / "model_alias.tif"
    os.symlink(model_file, mlink)
    res = run_main("restore", src, "--model", model_file, "-o", mlink, "--overwrite", "-q")
    assert_clean_error(res, "would overwrite the input")
    assert _digest(tmp_path / "data") == before and _digest(model_file) == model_before
    assert not (tmp_path / "iso.tif").exists()


def test_api_refuses_in_place_for_volumes_too(tiny_phantom: Phantom, model_file: Path, tmp_path: Path) -> None:
    src = _inputs(tiny_phantom, tmp_path / "data")["in.ome.zarr"]
    before = _digest(tmp_path / "data")
    vol = selfnet.read_volume(src, lazy=True)
    with pytest.raises(OutputError, match="would overwrite the input"):
        selfnet.restore(vol, Model.load(model_file), output=src, overwrite=True, progress=False)
    with pytest.raises(OutputError, match="would overwrite the input"):
        selfnet.run(src, src, overwrite=True, resume=True, progress=False)
    assert _digest(tmp_path / "data") == before


def test_plain_array_restore_needs_spacing(tiny_phantom: Phantom, model_file: Path) -> None:
    """``selfnet.restore(array, model)`` does not silently assume the model's voxel sizes."""
    with pytest.raises(selfnet.SelfnetError, match=r"spacing=\(dz, dy, dx\)"):
        selfnet.restore(tiny_phantom.raw, Model.load(model_file), device="cpu", progress=False)
    out = selfnet.restore(tiny_phantom.raw, Model.load(model_file), spacing=tiny_phantom.spacing_raw, device="cpu",
                          progress=False)
    assert out.data is not None and out.spacing[2] == pytest.approx(tiny_phantom.spacing_raw[2])
