"""The supervised oracle of the benchmarks: D trained on known (degraded, sharp) pairs."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from selfnet.config import TrainConfig
from selfnet.method.nets import DegradationGenerator, PatchDiscriminator, ResNet2d
from selfnet.training.loop import (
    BUDGET_ONLY_EPOCHS,
    DEFAULT_EPOCHS,
    Nets,
    ProgressFn,
    StageClock,
    _timed,
    paired_batches,
    run_stage2,
)


def train_supervised(inputs: np.ndarray, targets: np.ndarray, cfg: TrainConfig, device: torch.device,
                     on_step: ProgressFn | None = None) -> tuple[ResNet2d, dict[str, Any]]:
    """Train the deblurring net alone on given (N, P, P) pairs: the oracle baseline of the benchmarks."""
    torch.manual_seed(cfg.seed)
    gen = torch.Generator(device=device).manual_seed(cfg.seed)
    net = ResNet2d(cfg.deblur).to(device=device, memory_format=torch.channels_last)
    nets = Nets(g_a=DegradationGenerator(4), g_b=ResNet2d(cfg.generator_b), d_a=PatchDiscriminator(cfg.disc),
                d_b=PatchDiscriminator(cfg.disc), deblur=net)
    stream = paired_batches(torch.from_numpy(inputs).unsqueeze(1).to(device),
                            torch.from_numpy(targets).unsqueeze(1).to(device), cfg.batch_size, gen, flip_z=True)
    epochs = cfg.epochs or (BUDGET_ONLY_EPOCHS if cfg.max_minutes else DEFAULT_EPOCHS)
    deadline = None if cfg.max_minutes is None else time.perf_counter() + cfg.max_minutes * 60
    clock = StageClock(epochs * cfg.steps_per_epoch, deadline)
    result = _timed(run_stage2, nets, stream, cfg, clock, on_step, use_cyclegan=False)
    return net.eval(), result
