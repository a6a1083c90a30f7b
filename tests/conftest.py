"""Shared fixtures: tiny phantoms written as calibrated TIFFs, and a tiny fast training config."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from selfnet.config import NetConfig, TrainConfig, make_config
from selfnet.method.nets import ResNet2d
from selfnet.method.normalize import Normalizer
from selfnet.model import Model
from selfnet.phantoms.synthetic import Phantom, make_phantom, save_phantom


@pytest.fixture(scope="session")
def tiny_phantom() -> Phantom:
    """A 48x64x64 neurite phantom, every 4th plane kept (12 raw planes)."""
    return make_phantom("neurites", (48, 64, 64), k=4.0, axial_ratio=3.0, photons=300, seed=1)


@pytest.fixture(scope="session")
def tiny_tif(tiny_phantom: Phantom, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny phantom's raw stack as an ImageJ TIFF with voxel sizes."""
    return save_phantom(tiny_phantom, tmp_path_factory.mktemp("phantom"))["raw"]


@pytest.fixture(scope="session")
def fast_config() -> TrainConfig:
    """Seconds-long training: small nets, 32-pixel patches, few steps."""
    return make_config(epochs=2, steps_per_epoch=10, patch_size=32, pool_size=64, batch_size=4,
                       deblur=NetConfig(channels=8, blocks=1), generator_b=NetConfig(channels=8, blocks=1),
                       generator_a_channels=8, seed=0)


@pytest.fixture(scope="session")
def fast_config_file(fast_config: TrainConfig, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cfg") / "fast.yaml"
    path.write_text(fast_config.to_yaml())
    return path


def run_cli(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``python -m selfnet`` as a user would; returns the completed process."""
    return subprocess.run([sys.executable, "-m", "selfnet", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=600)


def random_model(ratio: float, net_cfg: NetConfig | None = None, seed: int = 0) -> Model:
    """A model whose deblurring net is random (tail included, so it really changes the image), no training."""
    torch.manual_seed(seed)
    cfg = TrainConfig(deblur=net_cfg or NetConfig())
    net = ResNet2d(cfg.deblur)
    with torch.no_grad():
        for p in net.tail.parameters():
            p.normal_(0.0, 0.05)
    return Model(config=cfg, ratio=ratio, spacing=(0.2 * ratio, 0.2, 0.2), normalizer=Normalizer(0.0, 1.0),
                 deblur_state={k: v.clone() for k, v in net.state_dict().items()})
