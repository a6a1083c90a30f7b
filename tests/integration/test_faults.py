"""Faults a user meets on real machines: kill -9, damaged compressed blocks found mid-restore.

* ``kill -9`` (SIGKILL: no handler runs) during training and during a block-wise restore, then the
  same command with ``--resume``: the result equals an uninterrupted run of the same kind (CPU, one
  thread, a step budget), and no half-written output is ever visible under the output's name.
* A compressed chunk or page of the input that cannot be decoded, found after some blocks were
  written: one ``InputError`` line, the finished blocks kept; once the input is repaired,
  ``--resume`` completes the output, equal to an uninterrupted restore.

Bit-identity is asserted only between runs of the same kind (separate CLI processes with one
thread each, or the same process), where it holds; nothing here depends on timing or CPU model.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
import zarr

import selfnet
from selfnet.config import NetConfig, TrainConfig
from selfnet.errors import InputError
from selfnet.io import read_volume, write_volume
from selfnet.io import zarr as ngff
from selfnet.model import Model
from selfnet.phantoms.synthetic import Phantom

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "SELFNET_CHECKPOINT_EVERY_S": "0"}

from ..conftest import random_model


def _cli(*args: object) -> subprocess.CompletedProcess[str]:
    """``python -m selfnet ARGS`` with one thread and a checkpoint after every training step."""
    return subprocess.run([sys.executable, "-m", "selfnet", *map(str, args)], capture_output=True, text=True,
                          env=ENV, timeout=300, check=False)


def _kill_when(args: tuple[object, ...], ready: Callable[[], bool], timeout: float = 120.0) -> None:
    """Start ``selfnet ARGS``, SIGKILL it as soon as ``ready()``; fail if it finished first."""
    proc = subprocess.Popen([sys.executable, "-m", "selfnet", *map(str, args)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env=ENV)
    end = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None:
            raise AssertionError(f"finished before it could be killed: {proc.stderr.read() if proc.stderr else ''}")
        assert time.monotonic() < end, "never became ready to kill"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL
    if proc.stderr:
        proc.stderr.close()


def _visible(folder: Path) -> set[str]:
    """What a user sees in ``folder`` (hidden files left out)."""
    return {p.name for p in folder.iterdir() if not p.name.startswith(".")}


# --- kill -9 during training ------------------------------------------------------------------


def _steps_config(fast_config: TrainConfig, folder: Path) -> Path:
    """A step budget (no wall clock) long enough to be caught mid-way: 2 x 30 steps per stage."""
    path = folder / "steps.yaml"
    path.write_text(fast_config.model_copy(update={"epochs": 2, "steps_per_epoch": 30, "max_minutes": None})
                    .to_yaml())
    return path


def _weights(path: Path) -> dict[str, torch.Tensor]:
    model = Model.load(path)
    return {**{f"D.{k}": v for k, v in model.deblur_state.items()},
            **{f"GA.{k}": v for k, v in (model.generator_a_state or {}).items()}}


def test_kill_9_during_training_then_resume_equals_uninterrupted(tiny_tif: Path, fast_config: TrainConfig,
                                                                 tmp_path: Path) -> None:
    cfg = _steps_config(fast_config, tmp_path)
    reference = tmp_path / "ref" / "model.pt"
    reference.parent.mkdir()
    res = _cli("train", tiny_tif, "-o", reference, "--config", cfg, "--device", "cpu", "-q")
    assert res.returncode == 0, res.stderr
    work = tmp_path / "work"
    work.mkdir()
    out, ckpt = work / "model.pt", work / "model.pt.ckpt.pt"
    args = ("train", tiny_tif, "-o", out, "--config", cfg, "--device", "cpu", "-q")
    _kill_when(args, ckpt.is_file)  # at once: a fast machine must not finish first
    assert not out.exists(), "training finished before the kill: the test proves nothing"
    assert _visible(work) == {ckpt.name}  # the checkpoint only: never a half-written model
    res = _cli(*args, "--resume")
    assert res.returncode == 0, res.stderr
    assert f"continuing from {ckpt}" in res.stderr
    assert sorted(p.name for p in work.iterdir()) == ["model.pt"]  # no checkpoint, no stale temporary left
    resumed, uninterrupted = _weights(out), _weights(reference)
    assert resumed.keys() == uninterrupted.keys()
    for name, tensor in uninterrupted.items():  # same process kind and thread count: bit for bit
        assert torch.equal(resumed[name], tensor), name
    assert Model.load(out).summary["resumed"] is True


# --- kill -9 during a block-wise restore ------------------------------------------------------


def _random_model(ratio: float) -> Model:
    """A small deblurring net with a random output layer (really changes the image), no training."""
    return random_model(ratio, NetConfig(channels=8, blocks=1))


@pytest.fixture(scope="module")
def big_input(tiny_phantom: Phantom, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A 24x128x128 stack (many 32-voxel blocks) and a model for it."""
    folder = tmp_path_factory.mktemp("big")
    raw = np.tile(tiny_phantom.raw, (2, 2, 2)).astype(np.uint16)
    path = write_volume(folder / "big.tif", raw, tiny_phantom.spacing_raw, dtype="uint16")
    model = folder / "model.pt"
    _random_model(tiny_phantom.spacing_raw[0] / tiny_phantom.spacing_raw[2]).save(model)
    return path, model


def _markers(store: Path) -> int:
    folder = store / ".selfnet-progress"
    return len(list(folder.glob("*.json"))) if folder.is_dir() else 0


@pytest.mark.parametrize("suffix", [".ome.zarr", ".tif"])
def test_kill_9_during_blockwise_restore_then_resume_equals_uninterrupted(suffix: str, big_input: tuple[Path, Path],
                                                                          tmp_path: Path) -> None:
    src, model = big_input
    reference = tmp_path / f"ref{suffix}"
    res = _cli("restore", src, "-m", model, "-o", reference, "--block", "32", "--chunked", "-q")
    assert res.returncode == 0, res.stderr
    work = tmp_path / "work"
    work.mkdir()
    out = work / f"iso{suffix}"
    store = out if suffix.endswith(".zarr") else work / f".{out.name}.partial.zarr"
    args = ("restore", src, "-m", model, "-o", out, "--block", "32", "--chunked", "-q")
    _kill_when(args, lambda: _markers(store) >= 3)
    done = _markers(store)
    assert 3 <= done < 48, done  # killed mid-way (4 x 4 x 3 blocks)
    if suffix.endswith(".zarr"):  # the store is there, but never taken for a finished image
        with pytest.raises(selfnet.SelfnetError, match="incomplete|unfinished"):
            read_volume(out)
    else:
        assert _visible(work) == set()  # no TIFF under the output's name until it is complete
    res = _cli(*args)  # without --resume the unfinished work is neither reused nor destroyed
    assert res.returncode == 2 and "--resume" in res.stderr, res.stderr
    assert _markers(store) == done
    res = _cli(*args, "--resume")
    assert res.returncode == 0, res.stderr
    assert f"{48 - done}/48 blocks" in res.stderr, res.stderr
    assert _visible(work) == {out.name} and not store.with_name(f".{out.name}.partial.zarr").exists()
    np.testing.assert_array_equal(np.asarray(read_volume(out).data), np.asarray(read_volume(reference).data))


# --- a damaged compressed block found in the middle of a block-wise restore -------------------


def _zarr_input(raw: np.ndarray, spacing: tuple[float, float, float], path: Path,
                monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """An OME-Zarr input in 2x32x32 chunks; returns it and the chunk file holding its last planes."""
    with monkeypatch.context() as m:
        m.setattr(ngff, "default_chunks", lambda shape, block=None: (2, 32, 32))
        write_volume(path, raw, spacing, dtype="uint16")
    arr = zarr.open_array(str(path / "0"), mode="r")
    z, y, x = (n // c - 1 for n, c in zip(arr.shape, arr.chunks))
    sep = arr.metadata.dimension_separator if hasattr(arr.metadata, "dimension_separator") else "/"
    chunk = path / "0" / sep.join(map(str, (z, y, x)))
    assert chunk.is_file(), sorted(p.name for p in (path / "0").iterdir())
    return path, chunk


def _tiff_input(raw: np.ndarray, spacing: tuple[float, float, float], path: Path) -> tuple[Path, Path]:
    tifffile.imwrite(path, raw, imagej=True, compression="zlib", resolution=(1 / spacing[2], 1 / spacing[1]),
                     metadata={"axes": "ZYX", "unit": "um", "spacing": spacing[0]})
    return path, path


def _damage(path: Path, source: Path) -> bytes:
    """Overwrite the compressed bytes of the last plane (TIFF) or chunk (zarr); return the original file."""
    original = path.read_bytes()
    damaged = bytearray(original)
    if path.suffix == ".tif":
        with tifffile.TiffFile(path) as tf:
            start, count = int(tf.pages[-1].dataoffsets[0]), int(tf.pages[-1].databytecounts[0])
    else:
        start, count = 0, len(original)
    damaged[start + 2 : start + count] = bytes(range(256)) * ((count - 2) // 256) + bytes((count - 2) % 256)
    path.write_bytes(bytes(damaged))
    return original


@pytest.mark.parametrize("kind", ["ome-zarr", "compressed tiff"])
def test_damaged_block_mid_restore_is_one_line_and_resumable(kind: str, tiny_phantom: Phantom, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    raw = tiny_phantom.raw.astype(np.uint16)
    if kind == "ome-zarr":
        src, damaged_file = _zarr_input(raw, tiny_phantom.spacing_raw, tmp_path / "in.ome.zarr", monkeypatch)
    else:
        src, damaged_file = _tiff_input(raw, tiny_phantom.spacing_raw, tmp_path / "in.tif")
    model = _random_model(tiny_phantom.spacing_raw[0] / tiny_phantom.spacing_raw[2])
    options = {"block": (16, 32, 32), "device": "cpu", "chunked": True}
    reference = selfnet.restore(src, model, output=tmp_path / "ref.ome.zarr", progress=False, **options)
    original: list[bytes] = []

    def damage_after_first_block(event: selfnet.api.ProgressEvent) -> None:
        if event.stage == "blocks" and event.done == 1 and not original:
            original.append(_damage(damaged_file, src))

    out = tmp_path / "iso.ome.zarr"
    with pytest.raises(InputError) as err:
        selfnet.restore(src, model, output=out, progress=damage_after_first_block, **options)
    line = str(err.value)
    assert "\n" not in line and "damaged" in line and "--resume" in line and str(out) in line, line
    assert _markers(out) >= 1
    with pytest.raises(selfnet.SelfnetError, match="incomplete|unfinished"):
        read_volume(out)
    damaged_file.write_bytes(original[0])  # the user repairs (re-copies) the input
    done = selfnet.restore(src, model, output=out, progress=False, resume=True, **options)
    assert 0 < done.blocks_run < done.blocks
    np.testing.assert_array_equal(np.asarray(read_volume(out).data),
                                  np.asarray(read_volume(reference.path).data))  # same process: bit for bit


def test_damaged_block_through_the_cli_is_one_line(tiny_phantom: Phantom, big_input: tuple[Path, Path],
                                                   tmp_path: Path) -> None:
    """A page damaged before the run but outside the normaliser's sample: the CLI says so in one line."""
    raw = tiny_phantom.raw.astype(np.uint16)
    src, _ = _tiff_input(raw, tiny_phantom.spacing_raw, tmp_path / "in.tif")
    _damage(src, src)
    res = _cli("restore", src, "-m", big_input[1], "-o", tmp_path / "iso.ome.zarr", "--block", "16,32,32", "-q")
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    assert res.stderr.strip().splitlines()[-1].startswith("selfnet: error: cannot read"), res.stderr
    assert "damaged" in res.stderr
