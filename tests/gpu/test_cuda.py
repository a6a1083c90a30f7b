"""CUDA paths: skipped unless a CUDA GPU is present (CI has none; run them on a GPU machine)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

from selfnet.config import TrainConfig
from selfnet.devices import resolve_device
from selfnet.inference.restore import restore_volume
from selfnet.model import Model
from selfnet.phantoms.synthetic import Phantom
from selfnet.training.loop import train_model

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture(scope="module")
def cuda_model(tiny_phantom: Phantom, fast_config: TrainConfig) -> Model:
    return train_model(tiny_phantom.raw, tiny_phantom.spacing_raw, fast_config, torch.device("cuda"))


def test_auto_picks_cuda_and_turns_on_autotune() -> None:
    assert resolve_device("auto").type == "cuda"
    assert torch.backends.cudnn.benchmark


def test_training_on_cuda_records_device_and_loads_on_cpu(cuda_model: Model, tmp_path: Path) -> None:
    assert cuda_model.summary["device"].startswith("cuda")
    assert cuda_model.summary["stage2_steps"] > 0
    cuda_model.save(tmp_path / "m.pt")
    loaded = Model.load(tmp_path / "m.pt")
    assert all(t.device.type == "cpu" for t in loaded.deblur_net(torch.device("cpu")).state_dict().values())


def test_float16_restore_on_cuda_matches_float32_on_cpu(cuda_model: Model, tiny_phantom: Phantom) -> None:
    gpu, spacing_gpu = restore_volume(tiny_phantom.raw, tiny_phantom.spacing_raw, cuda_model, torch.device("cuda"))
    cpu, spacing_cpu = restore_volume(tiny_phantom.raw, tiny_phantom.spacing_raw, cuda_model, torch.device("cpu"))
    assert gpu.shape == cpu.shape and spacing_gpu == spacing_cpu
    assert np.isfinite(gpu).all()
    rel = np.abs(gpu - cpu).max() / (cpu.max() - cpu.min())
    assert rel < 0.02, f"fp16 CUDA restore differs from fp32 CPU by {rel:.3%} of the range"


def test_cli_run_on_cuda(tiny_tif: Path, fast_config_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "iso.tif"
    proc = subprocess.run([sys.executable, "-m", "selfnet", "run", str(tiny_tif), "-o", str(out), "--device", "cuda",
                           "--config", str(fast_config_file), "--quiet"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    with tifffile.TiffFile(out) as tif:
        assert tif.series[0].shape[0] > 12
