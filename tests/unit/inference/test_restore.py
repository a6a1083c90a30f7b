"""Whole-volume restoring is the one-block case of the block runner: same numbers, progress, cancel."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from selfnet.config import TrainConfig
from selfnet.errors import Cancelled, CancelToken, ModelError
from selfnet.inference.block import restore_block
from selfnet.inference.plan import BlockPlan, choose_halo
from selfnet.inference.restore import interpolate_volume, one_block_plan, restore_volume
from selfnet.method.nets import ResNet2d
from selfnet.method.normalize import Normalizer, fit_normalizer
from selfnet.method.resample import n_iso
from selfnet.model import Model

SPACING = (1.0, 0.25, 0.25)


def _model(ratio: float = 4.0) -> Model:
    torch.manual_seed(0)
    cfg = TrainConfig()
    net = ResNet2d(cfg.deblur)
    return Model(config=cfg, ratio=ratio, spacing=SPACING, normalizer=Normalizer(0.0, 1.0),
                 deblur_state={k: v.clone() for k, v in net.state_dict().items()})


@pytest.fixture(scope="module")
def volume() -> np.ndarray:
    return np.random.default_rng(0).gamma(2.0, 50.0, (10, 40, 36)).astype(np.float32)


def test_one_block_plan_covers_the_output(volume):
    plan = one_block_plan(volume.shape, 4.0, 2)
    assert plan.grid == (1, 1, 1) and plan.out_shape == (n_iso(10, 4.0), 40, 36)
    assert plan.region((0, 0, 0)) == tuple(slice(0, n) for n in plan.out_shape)


def test_whole_volume_equals_stitched_blocks(volume):
    model = _model()
    out, spacing = restore_volume(volume, SPACING, model, torch.device("cpu"))
    assert spacing == (0.25, 0.25, 0.25) and out.shape == (n_iso(10, 4.0), 40, 36)
    net = model.deblur_net("cpu")
    plan = BlockPlan(volume.shape, 4.0, (16, 16, 16), choose_halo(net), net.multiple)
    norm = fit_normalizer(volume, model.config.norm_percentiles)
    stitched = np.zeros_like(out)
    for index in plan.indices():
        stitched[plan.region(index)] = restore_block(volume, plan, index, net, torch.device("cpu"), norm)
    np.testing.assert_allclose(stitched, out, rtol=1e-5, atol=1e-3)


def test_progress_counts_every_slice_and_cancel_stops(volume):
    seen: list[tuple[int, int]] = []
    restore_volume(volume, SPACING, _model(), torch.device("cpu"), on_progress=lambda d, t: seen.append((d, t)))
    assert seen[-1] == (40 + 36, 40 + 36)
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        restore_volume(volume, SPACING, _model(), torch.device("cpu"), cancel=token)


def test_ratio_far_from_the_model_is_refused(volume):
    with pytest.raises(ModelError, match="ratio"):
        restore_volume(volume, SPACING, _model(ratio=10.0), torch.device("cpu"))


def test_cubic_baseline_keeps_raw_planes(volume):
    iso = interpolate_volume(volume, SPACING)
    np.testing.assert_allclose(iso[::4], volume, atol=1e-3)
