"""The refinement with a PSF file: D's restoration, turned and re-recorded through the PSF in 3D, gives
exact (input, target) pairs; training spends its share of the budget on them and resumes after them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from selfnet.method.estimate import NoiseModel
from selfnet.method.normalize import Normalizer
from selfnet.method.resample import n_iso, zinterp
from selfnet.training.loop import Batch, paired_batches, train_model
from selfnet.training.refine import blur3d, refine_pairs, rerecord

from ..method.test_psf import gaussian_psf

SILENT = NoiseModel(gain=0.0, read_var=0.0)


class Unchanged(torch.nn.Module):
    """A stand-in for D that returns its input: the restoration is then cubic interpolation."""

    multiple = 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def z_kernel(sigma: float, radius: int = 8) -> np.ndarray:
    """A 3D kernel that blurs along z alone (unit sum)."""
    t = np.arange(-radius, radius + 1)
    k = np.zeros((2 * radius + 1, 3, 3), np.float32)
    k[:, 1, 1] = np.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()


def test_blur3d_keeps_shape_and_a_constant_up_to_the_edges() -> None:
    out = blur3d(np.full((20, 12, 14), 3.0, np.float32), z_kernel(2.0))
    assert out.shape == (20, 12, 14) and out.dtype == np.float32
    assert np.allclose(out, 3.0, atol=1e-4)  # mirrored edges: no dark rim


def test_rerecord_keeps_every_ratio_th_plane_and_interpolates_back() -> None:
    rng = np.random.default_rng(0)
    obj = rng.random((33, 10, 10)).astype(np.float32)
    delta = np.zeros((1, 1, 1), np.float32) + 1
    out = rerecord(obj, delta, 4.0, SILENT, rng)
    assert out.shape == (n_iso(9, 4.0), 10, 10)
    assert np.allclose(out[::4], obj[::4], atol=1e-5)  # the kept planes are exact samples
    noisy = rerecord(np.full((33, 10, 10), 1.0, np.float32), delta, 4.0, NoiseModel(gain=0.0, read_var=0.01), rng)
    assert noisy[::4].std() == pytest.approx(0.1, rel=0.15)  # the stack's noise on the recorded planes


def test_refine_pairs_target_the_restoration_and_blur_the_input_along_z() -> None:
    rng = np.random.default_rng(1)
    volume = (rng.random((12, 48, 48)) * 100 + 10).astype(np.float32)
    norm = Normalizer(10.0, 110.0)
    pairs = refine_pairs(volume, 4.0, Unchanged(), torch.device("cpu"), norm, z_kernel(3.0), SILENT, 32, 24, rng)
    assert pairs is not None
    inputs, targets = pairs
    assert inputs.shape == targets.shape == (32, 24, 24)
    restored = zinterp(norm(volume), 4.0)  # what the stand-in D restores: the targets are its slices
    assert targets.min() >= restored.min() - 1e-4 and targets.max() <= restored.max() + 1e-4
    assert targets.mean() == pytest.approx(restored.mean(), abs=0.05)
    kept = [np.abs(np.diff(inputs, axis=a)).mean() / np.abs(np.diff(targets, axis=a)).mean() for a in (1, 2)]
    assert kept[0] < 0.6 * kept[1]  # the forward kernel blurs along z (rows), not along x


def test_paired_batches_flip_x_but_keep_z_unless_asked() -> None:
    ramp = torch.arange(8.0).repeat(8, 1).T[None, None]  # rows grow along z
    pairs = paired_batches(ramp, ramp + 1, 16, torch.Generator().manual_seed(0))
    batch: Batch = next(pairs)
    assert torch.all(batch.xy_lr[:, 0, -1] > batch.xy_lr[:, 0, 0])  # never flipped along z
    assert torch.equal(batch.xy, batch.xy_lr + 1)
    flipped = next(paired_batches(ramp, ramp + 1, 64, torch.Generator().manual_seed(0), flip_z=True))
    assert torch.any(flipped.xy_lr[:, 0, -1] < flipped.xy_lr[:, 0, 0])


def write_gaussian_psf(tmp_path, ph) -> str:
    import tifffile

    psf = gaussian_psf(float(ph.params["sigma_lateral_px"]), float(ph.params["sigma_axial_px"]), (31, 31, 31))
    dx = ph.spacing_raw[2]
    path = tmp_path / "psf.tif"
    tifffile.imwrite(path, psf.astype(np.float32), imagej=True, resolution=(1 / dx, 1 / dx),
                     metadata={"spacing": dx, "unit": "um", "axes": "ZYX"})
    return str(path)


def test_training_with_a_psf_spends_its_share_on_the_refinement(tiny_phantom, fast_config, tmp_path) -> None:
    ph = tiny_phantom
    cfg = fast_config.model_copy(update={"psf": write_gaussian_psf(tmp_path, ph), "refine": 0.5})
    labels: set[str] = set()
    model = train_model(ph.raw, ph.spacing_raw, cfg, torch.device("cpu"), on_step=lambda stage, *_: labels.add(stage))
    assert model.summary["stage2_steps"] == 10 and model.summary["refine_steps"] == 10
    assert labels == {"stage 2 (deblur)", "stage 3 (refine with the PSF)"}  # what progress bars and napari show
    assert len(model.summary["history"]["refine"]) > 0
    off = train_model(ph.raw, ph.spacing_raw, cfg.model_copy(update={"refine": 0.0}), torch.device("cpu"))
    assert off.summary["stage2_steps"] == 20 and "refine_steps" not in off.summary
    plain = train_model(ph.raw, ph.spacing_raw, fast_config, torch.device("cpu"))  # no PSF: no 3D model to refine with
    assert "refine_steps" not in plain.summary


def test_a_resumed_run_does_not_repeat_stage_2(tiny_phantom, fast_config, tmp_path) -> None:
    ph = tiny_phantom
    cfg = fast_config.model_copy(update={"psf": write_gaussian_psf(tmp_path, ph)})
    ckpt = tmp_path / "run.ckpt"
    first = train_model(ph.raw, ph.spacing_raw, cfg, torch.device("cpu"), checkpoint=ckpt)
    again = train_model(ph.raw, ph.spacing_raw, cfg, torch.device("cpu"), checkpoint=ckpt, resume=True)
    assert again.summary["resumed"] is True
    assert again.summary["stage2_steps"] == first.summary["stage2_steps"]
    assert again.summary["refine_steps"] == first.summary["refine_steps"]


def test_the_pseudo_object_of_a_large_stack_is_a_bounded_full_z_window(monkeypatch) -> None:
    from selfnet.training import refine

    monkeypatch.setattr(refine, "REFINE_MAX_ISO_VOXELS", 100_000)
    volume = np.zeros((6, 200, 200), np.float32)
    window = refine._bounded(volume, 4.0, np.random.default_rng(0))
    assert window.shape[0] == 6 and 80_000 < n_iso(6, 4.0) * window.shape[1] * window.shape[2] <= 100_000
    monkeypatch.setattr(refine, "REFINE_MAX_ISO_VOXELS", 20_000)
    assert refine._bounded(volume, 4.0, np.random.default_rng(0)).shape == (6, 64, 64)  # room for a patch kept
    small = np.zeros((6, 20, 20), np.float32)
    assert refine._bounded(small, 4.0, np.random.default_rng(0)) is small
