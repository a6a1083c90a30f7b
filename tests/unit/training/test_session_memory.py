"""Checkpoints, resume, divergence guard, interrupt handling, memory planning and atomic outputs."""

from __future__ import annotations

import importlib
import os
import signal
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from selfnet import memory
from selfnet.config import TrainConfig
from selfnet.errors import ResourceError, TrainingError
from selfnet.io import write_volume
from selfnet.model import Model
from selfnet.phantoms.synthetic import Phantom
from selfnet.training.session import (
    MAX_ROLLBACKS,
    InterruptFlag,
    TrainingInterrupted,
    TrainSession,
    checkpoint_path,
    remove_checkpoint,
)

train_mod = importlib.import_module("selfnet.training.loop")  # `selfnet.train` the attribute is the API function
CPU = torch.device("cpu")


def _train(phantom: Phantom, cfg: TrainConfig, **kwargs: Any) -> Model:
    return train_mod.train_model(phantom.raw, phantom.spacing_raw, cfg, CPU, **kwargs)


def _same_weights(a: Model, b: Model) -> bool:
    pairs = [(a.deblur_state, b.deblur_state), (a.generator_a_state or {}, b.generator_a_state or {})]
    return all(x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x) for x, y in pairs)


@pytest.fixture(scope="module")
def reference(tiny_phantom: Phantom, fast_config: TrainConfig) -> Model:
    """An uninterrupted training run of the fast config."""
    return _train(tiny_phantom, fast_config)


# --- checkpoint and resume ------------------------------------------------------------------


def test_checkpoint_lives_next_to_the_output(tmp_path: Path) -> None:
    assert checkpoint_path(tmp_path / "iso.ome.tif") == tmp_path / "iso.ome.tif.ckpt.pt"
    remove_checkpoint(tmp_path / "absent.ckpt.pt")  # no error


def test_same_seed_gives_identical_weights(reference: Model, tiny_phantom: Phantom, fast_config: TrainConfig) -> None:
    assert _same_weights(reference, _train(tiny_phantom, fast_config))


@pytest.mark.parametrize(("stage", "step"), [("stage 1 (CycleGAN)", 3), ("stage 2 (deblur)", 5)])
def test_interrupted_then_resumed_equals_uninterrupted(stage: str, step: int, reference: Model,
                                                       tiny_phantom: Phantom, fast_config: TrainConfig,
                                                       tmp_path: Path) -> None:
    ckpt = tmp_path / "m.pt.ckpt.pt"

    def ctrl_c_at(name: str, i: int, total: int, losses: dict[str, float]) -> None:
        if (name, i) == (stage, step):
            os.kill(os.getpid(), signal.SIGINT)  # a real Ctrl-C, caught between steps

    before = signal.getsignal(signal.SIGINT)  # not always Python's default: a background job starts with SIG_IGN
    with pytest.raises(TrainingInterrupted) as info:
        _train(tiny_phantom, fast_config, on_step=ctrl_c_at, checkpoint=ckpt)
    assert info.value.path == ckpt and "--resume" in str(info.value)
    assert ckpt.is_file() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert signal.getsignal(signal.SIGINT) is before  # handlers restored
    resumed = _train(tiny_phantom, fast_config, checkpoint=ckpt, resume=True)
    assert _same_weights(resumed, reference)
    assert resumed.summary["resumed"] is True
    assert resumed.summary["stage2_steps"] == reference.summary["stage2_steps"]


def test_checkpoint_of_other_settings_or_input_is_refused(tiny_phantom: Phantom, fast_config: TrainConfig,
                                                          tmp_path: Path) -> None:
    ckpt = tmp_path / "m.ckpt.pt"
    _train(tiny_phantom, fast_config, checkpoint=ckpt)  # leaves the final checkpoint
    assert ckpt.is_file()
    with pytest.raises(TrainingError, match="another input or other settings"):
        _train(tiny_phantom, fast_config.model_copy(update={"seed": 1}), checkpoint=ckpt, resume=True)
    with pytest.raises(TrainingError, match="another input or other settings"):
        TrainSession.open(ckpt, "0123456789abcdef", resume=True)


@pytest.mark.parametrize(("content", "message"), [
    (b"garbage", "damaged"),
    ({"weights": torch.zeros(2)}, "not a selfnet checkpoint"),
    ({"format": "selfnet-checkpoint", "format_version": 1}, "another selfnet version"),
])
def test_unusable_checkpoint_is_a_one_line_error(content: Any, message: str, tmp_path: Path) -> None:
    ckpt = tmp_path / "x.ckpt.pt"
    if isinstance(content, bytes):
        ckpt.write_bytes(content)
    else:
        torch.save(content, ckpt)
    with pytest.raises(TrainingError, match=message) as info:
        TrainSession.open(ckpt, "key", resume=True)
    assert "\n" not in str(info.value)


def test_periodic_checkpoints_are_written(tiny_phantom: Phantom, fast_config: TrainConfig, tmp_path: Path) -> None:
    ckpt = tmp_path / "m.ckpt.pt"
    seen: list[bool] = []
    _train(tiny_phantom, fast_config, checkpoint=ckpt, checkpoint_every_s=0.0,
           on_step=lambda *a: seen.append(ckpt.is_file()))
    assert seen[0] is False and all(seen[1:])  # saved after the first step, and every step after that


# --- interrupt flag -------------------------------------------------------------------------


def test_interrupt_flag_defers_the_first_signal_and_not_the_second() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with InterruptFlag() as flag:
        os.kill(os.getpid(), signal.SIGTERM)
        assert flag.requested
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGTERM) is before


# --- divergence guard -----------------------------------------------------------------------


def _poison(monkeypatch: pytest.MonkeyPatch, name: str, at: set[int]) -> None:
    """Make the ``name`` loss of the training module NaN on the given (1-based) calls."""
    original = getattr(train_mod, name)
    calls = {"n": 0}

    def poisoned(*args: Any, **kwargs: Any) -> torch.Tensor:
        calls["n"] += 1
        out = original(*args, **kwargs)
        return out * float("nan") if calls["n"] in at else out

    monkeypatch.setattr(train_mod, name, poisoned)


@pytest.mark.parametrize(("loss", "stage"), [("lsgan", "stage1"), ("restoration_loss", "stage2")])
def test_nan_loss_rolls_back_with_lower_learning_rate(loss: str, stage: str, monkeypatch: pytest.MonkeyPatch,
                                                      tiny_phantom: Phantom, fast_config: TrainConfig) -> None:
    _poison(monkeypatch, loss, {5})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = _train(tiny_phantom, fast_config)
    told = [str(w.message) for w in caught if "NaN/Inf" in str(w.message)]
    assert len(told) == 1 and told[0].startswith(stage) and "rolled back" in told[0], told
    assert model.summary["divergence_rollbacks"] == 1
    assert model.summary["final_lr_scale"] == pytest.approx(0.5)
    assert all(torch.isfinite(v).all() for v in model.deblur_state.values())
    assert all(np.isfinite(h[k]) for st in model.summary["history"].values() for h in st for k in h)


def test_persistent_divergence_stops_with_a_clear_error(monkeypatch: pytest.MonkeyPatch, tiny_phantom: Phantom,
                                                        fast_config: TrainConfig) -> None:
    _poison(monkeypatch, "restoration_loss", set(range(1, 1000)))
    with warnings.catch_warnings(), pytest.raises(TrainingError, match="diverged") as info:
        warnings.simplefilter("ignore")
        _train(tiny_phantom, fast_config)
    assert f"{MAX_ROLLBACKS + 1} times" in str(info.value)


# --- memory planning ------------------------------------------------------------------------


def test_meminfo_is_parsed() -> None:
    text = "MemTotal:       24684092 kB\nMemFree:        1000 kB\nMemAvailable:   2048 kB\n"
    assert memory.parse_meminfo(text) == 2048 * 1024
    assert memory.parse_meminfo("MemTotal: 1 kB\n") is None


def test_memory_estimate_follows_the_in_ram_arrays() -> None:
    shape, ratio = (100, 512, 512), 4.0
    n, n_iso = 100 * 512 * 512, 397 * 512 * 512
    assert memory.restore_bytes(shape, 2, ratio) == n * (2 + 4) + 8 * n_iso + memory.OVERHEAD_BYTES
    assert memory.restore_bytes(shape, 2, 2 * ratio) > memory.restore_bytes(shape, 2, ratio)
    assert memory.train_bytes(shape, 2, ratio, patch_size=64, pool_size=1024) > n * 6
    refining = memory.train_bytes(shape, 2, ratio, patch_size=64, pool_size=1024, refine=True)  # with a PSF file
    assert refining == n * 2 + memory.REFINE_BYTES_PER_VOXEL * memory.REFINE_MAX_ISO_VOXELS + memory.OVERHEAD_BYTES


def test_memory_cap_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(memory.ENV_LIMIT, "0.5")
    available = memory.available_bytes()
    assert available is not None and available <= 2**29
    memory.check_fits(2**20, "restoring a tiny stack")
    with pytest.raises(ResourceError, match="not enough memory: restoring 9x9x9 in RAM needs about 1.0 GiB") as info:
        memory.check_fits(2**30, "restoring 9x9x9")
    assert ".ome.zarr" in str(info.value) and "\n" not in str(info.value)


# --- atomic outputs -------------------------------------------------------------------------


def _interrupting() -> Any:
    """A writer that writes part of its file, then gets Ctrl-C."""
    def writer(*args: Any, **kwargs: Any) -> None:
        target = next(a for a in args if isinstance(a, (str, Path)))  # imwrite(path, ...), save(obj, path)
        Path(target).write_bytes(b"partial")
        raise KeyboardInterrupt
    return writer


def test_interrupted_volume_write_leaves_old_file_and_no_temp(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    io_mod = importlib.import_module("selfnet.io")
    out = tmp_path / "iso.tif"
    out.write_bytes(b"previous result")
    monkeypatch.setattr(io_mod.tifffile, "imwrite", _interrupting())
    with pytest.raises(KeyboardInterrupt):
        write_volume(out, np.ones((4, 8, 8), np.float32), (1.0, 0.25, 0.25), overwrite=True)
    assert out.read_bytes() == b"previous result"
    assert [p.name for p in tmp_path.iterdir()] == ["iso.tif"]


def test_interrupted_model_and_checkpoint_saves_leave_no_file(monkeypatch: pytest.MonkeyPatch, reference: Model,
                                                              tmp_path: Path) -> None:
    monkeypatch.setattr(torch, "save", _interrupting())
    with pytest.raises(KeyboardInterrupt):
        reference.save(tmp_path / "model.pt")
    session = TrainSession(path=tmp_path / "m.ckpt.pt", key="k")
    with pytest.raises(KeyboardInterrupt):
        session.save(0, [])
    assert list(tmp_path.iterdir()) == []
