"""Training really improves on cubic z-interpolation; restoring keeps shapes, scale and determinism."""

import numpy as np
import pytest

import selfnet
from selfnet.config import NetConfig
from selfnet.inference.restore import interpolate_volume
from selfnet.phantoms.metrics import score
from selfnet.phantoms.synthetic import make_phantom


def test_short_training_beats_cubic_interpolation():
    ph = make_phantom("neurites", (64, 80, 80), k=4.0, axial_ratio=3.0, photons=300, seed=2)
    model = selfnet.train(ph.raw, ph.spacing_raw, epochs=6, steps_per_epoch=40, patch_size=48, pool_size=256,
                          deblur=NetConfig(channels=16, blocks=2), seed=0, device="cpu", progress=False)
    restored = selfnet.restore(ph.raw, model, ph.spacing_raw, device="cpu", progress=False).data
    truth = ph.gt_lateral[ph.iso_slice()]
    assert restored.shape == truth.shape
    cubic, ours = score(interpolate_volume(ph.raw, ph.spacing_raw), truth), score(restored, truth)
    assert ours.psnr > cubic.psnr + 1.0, (cubic, ours)
    assert ours.ssim > cubic.ssim
    summary = model.summary
    assert summary["stage1_steps"] > 0 and summary["stage2_steps"] > 0
    assert abs(summary["estimated_axial_sigma_px"] - np.sqrt(8)) < 1.0  # extra axial blur of the phantom


def test_restore_is_deterministic_and_on_input_scale(tiny_phantom, fast_config):
    ph = tiny_phantom
    runs = [selfnet.train(ph.raw, ph.spacing_raw, config=fast_config, device="cpu", progress=False) for _ in range(2)]
    outs = [selfnet.restore(ph.raw, m, ph.spacing_raw, device="cpu", progress=False).data for m in runs]
    np.testing.assert_array_equal(outs[0], outs[1])
    assert outs[0].dtype == np.float32
    assert abs(np.median(outs[0]) - np.median(ph.raw)) < 0.2 * np.median(ph.raw)


@pytest.mark.parametrize("k", [2.5, 3.3])
def test_non_integer_ratios(k, fast_config):
    ph = make_phantom("beads", (40, 48, 48), k=k, seed=0)
    model = selfnet.train(ph.raw, ph.spacing_raw, config=fast_config, device="cpu", progress=False)
    out = selfnet.restore(ph.raw, model, ph.spacing_raw, device="cpu", progress=False).data
    assert out.shape == ph.gt_lateral[ph.iso_slice()].shape
    assert model.ratio == pytest.approx(k)


def test_ratio_mismatch_warns_then_refuses(tiny_phantom, fast_config):
    ph = tiny_phantom
    model = selfnet.train(ph.raw, ph.spacing_raw, config=fast_config, device="cpu", progress=False)
    dz, dy, dx = ph.spacing_raw
    with pytest.warns(UserWarning, match="differs from the model"):
        selfnet.restore(ph.raw, model, (dz * 1.2, dy, dx), device="cpu", progress=False).data
    with pytest.raises(selfnet.SelfnetError, match="trained for z/xy ratio"):
        selfnet.restore(ph.raw, model, (dz * 2, dy, dx), device="cpu", progress=False).data


def test_plain_array_needs_spacing(tiny_phantom):
    with pytest.raises(selfnet.SelfnetError, match="spacing"):
        selfnet.train(tiny_phantom.raw)
