"""Interrupted and repeated runs through the real command line (subprocesses, real signals).

* Ctrl-C / SIGTERM during training: a checkpoint is saved, the user is told how to resume, exit 130,
  no output or temporary file is left; ``--resume`` finishes the run to the same budget.
* Same input, seed and CPU: byte-identical outputs.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from selfnet.config import TrainConfig
from selfnet.model import Model

from ..conftest import run_cli
from .test_bad_inputs import assert_clean_error, run_main

BUDGET_MIN = 0.12  # 7.2 s of training: long enough to interrupt on any machine, short for CI


def _budget_config(fast_config: TrainConfig, folder: Path) -> Path:
    """The fast test config without an epoch cap, so --max-minutes alone sets the length."""
    path = folder / "budget.yaml"
    path.write_text(fast_config.model_copy(update={"epochs": None}).to_yaml())
    return path


class _Lines:
    """Collect a subprocess's stderr lines on a thread so the test can wait for one."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, args=(proc,), daemon=True).start()

    def _pump(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            self._queue.put(line)
        self._queue.put(None)

    def wait_for(self, fragment: str, timeout: float = 120.0) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                line = self._queue.get(timeout=max(0.0, end - time.monotonic()))
            except queue.Empty:
                break
            if line is None:
                break
            self.lines.append(line)
            if fragment in line:
                return
        raise AssertionError(f"{fragment!r} never appeared in stderr: {''.join(self.lines)}")

    def rest(self, timeout: float = 120.0) -> str:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            line = self._queue.get(timeout=max(0.0, end - time.monotonic()))
            if line is None:
                break
            self.lines.append(line)
        return "".join(self.lines)


def _start(*args: object) -> subprocess.Popen[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "selfnet", *map(str, args)], stderr=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, text=True, env=env)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_saves_checkpoint_and_resume_finishes(sig: signal.Signals, tiny_tif: Path,
                                                     fast_config: TrainConfig, tmp_path: Path) -> None:
    cfg = _budget_config(fast_config, tmp_path)
    out, model = tmp_path / "iso.tif", tmp_path / "model.pt"
    args = ("run", tiny_tif, "-o", out, "--config", cfg, "--max-minutes", BUDGET_MIN, "--save-model", model,
            "-q", "--no-report")
    proc = _start(*args)
    lines = _Lines(proc)
    lines.wait_for("ZYX")  # the input is loaded: training starts now
    time.sleep(2.0)
    proc.send_signal(sig)
    assert proc.wait(timeout=60) == 130
    stderr = lines.rest()
    assert "Traceback" not in stderr, stderr
    ckpt = tmp_path / "iso.tif.ckpt.pt"
    assert ckpt.is_file()
    assert f"interrupted; training state saved to {ckpt}" in stderr and "--resume" in stderr, stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["budget.yaml", ckpt.name]  # no output, no temp file
    if sig == signal.SIGTERM:
        return
    res = run_cli(*args, "--resume")
    assert res.returncode == 0, res.stderr
    assert f"continuing from {ckpt}" in res.stderr
    assert out.is_file() and not ckpt.exists()
    summary = Model.load(model).summary
    assert summary["resumed"] is True
    budget = BUDGET_MIN * 60
    assert budget - 0.5 <= summary["train_s"] <= budget + 5  # the budget was continued, not restarted
    assert sorted(p.name for p in tmp_path.iterdir()) == ["budget.yaml", "iso.tif", "model.pt"]


def test_checkpoint_left_by_an_interrupted_run_is_not_overwritten(tiny_tif: Path, tmp_path: Path) -> None:
    ckpt = tmp_path / "iso.tif.ckpt.pt"
    ckpt.write_bytes(b"work in progress")
    res = run_main("run", tiny_tif, "-o", tmp_path / "iso.tif", "-q")
    assert_clean_error(res, str(ckpt), "--resume", "--overwrite")
    assert ckpt.read_bytes() == b"work in progress"


def test_resume_from_a_damaged_checkpoint_is_refused(tiny_tif: Path, fast_config_file: Path, tmp_path: Path) -> None:
    ckpt = tmp_path / "model.pt.ckpt.pt"
    ckpt.write_bytes(b"not a checkpoint")
    res = run_main("train", tiny_tif, "-o", tmp_path / "model.pt", "--config", fast_config_file, "--resume", "-q")
    assert_clean_error(res, "cannot resume", "damaged")
    assert sorted(p.name for p in tmp_path.iterdir()) == [ckpt.name]


def test_same_input_seed_and_cpu_give_byte_identical_output(tiny_tif: Path, fast_config_file: Path,
                                                            tmp_path: Path) -> None:
    outputs = [tmp_path / "a.tif", tmp_path / "b.tif"]
    for out in outputs:
        res = run_cli("run", tiny_tif, "-o", out, "--config", fast_config_file, "--seed", "7", "--device", "cpu",
                      "-q", "--no-report")
        assert res.returncode == 0, res.stderr
    assert outputs[0].read_bytes() == outputs[1].read_bytes()


def test_ctrl_c_during_restore_says_so_and_leaves_nothing(tiny_phantom, fast_config: TrainConfig,
                                                          tmp_path: Path) -> None:
    import numpy as np

    from selfnet.config import NetConfig
    from selfnet.io import write_volume

    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(fast_config.model_copy(update={"deblur": NetConfig(), "epochs": 1, "steps_per_epoch": 2}).to_yaml())
    model = tmp_path / "model.pt"
    assert run_cli("train", tiny_phantom_path := _save(tiny_phantom, tmp_path), "--config", cfg, "-o", model,
                   "-q").returncode == 0, tiny_phantom_path
    big = tmp_path / "big.tif"
    write_volume(big, np.tile(tiny_phantom.raw, (4, 4, 4)).astype(np.uint16), tiny_phantom.spacing_raw,
                 dtype="uint16")
    out = tmp_path / "iso.tif"
    proc = _start("restore", big, "--model", model, "-o", out)
    lines = _Lines(proc)
    lines.wait_for("ZYX")
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 130
    stderr = lines.rest()
    assert "Traceback" not in stderr and "selfnet: interrupted" in stderr, stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.tif", "cfg.yaml", "model.pt", "raw.tif"]


def _save(phantom, folder: Path) -> Path:
    from selfnet.phantoms.synthetic import save_phantom

    paths = save_phantom(phantom, folder)
    for key in ("gt_lateral", "params"):
        paths[key].unlink()
    return paths["raw"]
