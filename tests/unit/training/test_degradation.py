"""How training builds the degradation: whole-row phases, structure-first patches, a centred z kernel,
the blur estimate on sparse beads, the three degradation modes and stacks with dz <= dx."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from selfnet.config import TrainConfig
from selfnet.method.kernel import AxialKernel
from selfnet.method.nets import DegradationGenerator
from selfnet.method.normalize import fit_normalizer
from selfnet.phantoms.synthetic import make_phantom
from selfnet.training.loop import (
    learned_axial_kernel,
    prepare_data,
    train_model,
    training_phases,
)
from selfnet.training.patches import foreground_score

CPU = torch.device("cpu")


@pytest.mark.parametrize("ratio", [1.0, 2.5, 5.0, 12.0])
def test_phases_are_whole_rows_and_cover_every_plane_position(ratio: float) -> None:
    phases = training_phases(ratio, np.random.default_rng(0))
    assert np.all(phases == np.round(phases))
    assert set(phases.astype(int)) == set(range(int(np.ceil(ratio))))


def test_foreground_score_prefers_a_lone_bead_over_brighter_background() -> None:
    rng = np.random.default_rng(0)
    flat = rng.normal(0.10, 0.01, (2, 64, 64)).astype(np.float32)
    flat[0] -= 0.02  # a slightly darker patch ...
    flat[0, 30:33, 30:33] += 1.0  # ... holding one bead
    score = foreground_score(flat)
    assert score[0] > score[1]
    assert flat[0].mean() < flat[1].mean() + 0.01


def test_kernel_taps_keep_unit_sum_and_zero_centroid_but_allow_skew() -> None:
    g = DegradationGenerator(4, sigma=1.0, radius=6)
    with torch.no_grad():
        g.kernel[0, 0, 9, 0] += 0.3  # push mass to one side
    taps = g.taps().detach().flatten().double()
    t = torch.arange(-6, 7, dtype=torch.float64)
    assert float(taps.sum()) == pytest.approx(1.0, abs=1e-6)
    assert float((taps * t).sum()) == pytest.approx(0.0, abs=1e-6)
    assert float((taps * t**3).sum()) != pytest.approx(0.0, abs=1e-3)
    profile = learned_axial_kernel(g, AxialKernel(2.0).profile())
    assert profile.sum() == pytest.approx(1.0, abs=1e-5)
    c = np.arange(len(profile)) - len(profile) // 2
    assert float((profile * c).sum()) == pytest.approx(0.0, abs=1e-4)


def test_kernel_taps_stay_a_blur_when_free_taps_cancel_out() -> None:
    """Raw taps whose sum nears zero: with free signs they normalised into large taps of both signs."""
    g = DegradationGenerator(4, sigma=0.0, radius=6)
    with torch.no_grad():
        g.kernel[0, 0, 5, 0] -= 0.45
        g.kernel[0, 0, 7, 0] -= 0.45  # raw sum 0.1: a tenfold blow-up if signs were free
    taps = g.taps().detach().flatten()
    assert float(taps.sum()) == pytest.approx(1.0, abs=1e-6)
    assert float(taps.abs().max()) <= 1.0 + 1e-6
    assert float(taps.min()) >= -1e-6


def _fit_taps(g_a: DegradationGenerator, target_kernel: torch.Tensor, steps: int, *, project: bool) -> None:
    """Adam on G_A's z taps alone so that its blur matches ``target_kernel`` along rows."""
    opt = torch.optim.Adam([g_a.kernel], lr=0.02)
    x = torch.randn(4, 1, 48, 16, generator=torch.Generator().manual_seed(0))
    want = torch.nn.functional.conv2d(torch.nn.functional.pad(x, (0, 0, 2, 2), mode="replicate"), target_kernel)
    for _ in range(steps):
        opt.zero_grad()
        ((g_a.blur(x) - want) ** 2).mean().backward()
        opt.step()
        if project:
            g_a.project_()


def test_kernel_taps_pushed_below_zero_can_grow_again() -> None:
    """A tap that one step pushes below zero must not die there: after being told "sharper" first, the
    kernel still learns a blur it is shown next (projected gradient rather than a clamp alone)."""
    identity = torch.tensor([0.0, 0.0, 1.0, 0.0, 0.0]).view(1, 1, -1, 1)
    blur = torch.tensor([0.1, 0.2, 0.4, 0.2, 0.1]).view(1, 1, -1, 1)
    for project, learns in ((True, True), (False, False)):
        g_a = DegradationGenerator(4, sigma=0.0, radius=2)
        with torch.no_grad():
            g_a.kernel.add_(torch.tensor([-0.01, -0.01, 0.0, -0.01, -0.01]).view(1, 1, -1, 1))  # a first step "sharper"
        _fit_taps(g_a, identity, 5, project=project)
        _fit_taps(g_a, blur, 300, project=project)
        side = g_a.taps().detach().flatten()[[0, 1, 3, 4]]
        assert bool((side > 0.05).all()) is learns, (project, side)


def test_axial_blur_estimate_on_sparse_low_photon_beads() -> None:
    ph = make_phantom("sparse-beads", (160, 160, 160), k=5.0, axial_ratio=4.0, photons=300, background=15, seed=0)
    norm = fit_normalizer(ph.raw, (0.1, 99.99))
    data = prepare_data(norm(ph.raw), 5.0, TrainConfig(), CPU, np.random.default_rng(0))
    true_extra = np.sqrt(4.0**2 - 1.0)  # axial sigma 4 px, lateral 1 px
    assert data.sigma == pytest.approx(true_extra, rel=0.2)
    assert data.margin >= 3 * data.sigma


def _stack(k: float, axial_ratio: float) -> tuple[np.ndarray, tuple[float, float, float]]:
    ph = make_phantom("mix", (48, 64, 64), k=k, axial_ratio=axial_ratio, photons=300, seed=2)
    return ph.raw, ph.spacing_raw


@pytest.mark.parametrize(("mode", "stage1", "pre_blur"), [("learned", True, True), ("physics", False, True),
                                                          ("unconstrained", True, False)])
def test_degradation_modes(fast_config: TrainConfig, mode: str, stage1: bool, pre_blur: bool) -> None:
    raw, spacing = _stack(4.0, 3.0)
    model = train_model(raw, spacing, fast_config.model_copy(update={"degradation": mode}), CPU)
    s = model.summary
    assert (s.get("stage1_steps", 0) > 0) is stage1
    assert s["degradation"] == mode
    built_in = s["learned_axial_sigma_px"] >= 0.9 * s["estimated_axial_sigma_px"]
    assert built_in is pre_blur  # the unconstrained G_A starts from no blur and a few steps do not reach it
    assert sum(s["learned_axial_kernel"]) == pytest.approx(1.0, abs=1e-3)


def test_fine_z_step_trains_without_z_sampling(fast_config: TrainConfig) -> None:
    raw, spacing = _stack(1.0, 3.5)
    norm = fit_normalizer(raw, fast_config.norm_percentiles)
    data = prepare_data(norm(raw), 1.0, fast_config, CPU, np.random.default_rng(0))
    eye = torch.eye(data.sampling.shape[-1])
    assert all(torch.allclose(s, eye, atol=1e-6) for s in data.sampling)
    assert data.sigma > 1.5  # the axial blur alone: sqrt(3.5^2 - 1) = 3.4 px
    model = train_model(raw, spacing, fast_config, CPU)
    assert model.ratio == 1.0


def test_qc_fallback_for_the_axial_blur() -> None:
    """When patch spectra are too noisy, the extra axial blur comes from QC's estimate of the whole stack."""
    from selfnet.training.loop import resolution_axial_sigma

    raw, _ = _stack(4.0, 3.0)
    norm = fit_normalizer(raw, (0.1, 99.99))
    assert resolution_axial_sigma(norm(raw), 4.0) == pytest.approx(np.sqrt(3.0**2 - 1.0), rel=0.35)


def test_spectral_estimate_says_when_it_cannot_tell() -> None:
    from selfnet.method.estimate import estimate_axial_blur

    noise = np.random.default_rng(0).normal(0, 1, (64, 32, 32)).astype(np.float32)
    assert estimate_axial_blur(noise, noise.copy(), 4.0, 1.0) is None


def test_wide_field_optics_get_a_cone_of_out_of_focus_light() -> None:
    """A diffraction-model wide-field PSF spreads out-of-focus light into a cone: the fitted kernel
    has one (and a broad z tail carrying most of the light), and the training frame and patches are wide
    enough for it."""
    pytest.importorskip("psfmodels", reason="diffraction PSFs need the phantoms extra: pip install 'selfnet[phantoms]'")
    from selfnet.phantoms.optics import make_optics_phantom

    ph = make_optics_phantom("widefield", "mix", (128, 160, 160), k=4.0, seed=0)
    norm = fit_normalizer(ph.raw, (0.1, 99.99))
    data = prepare_data(norm(ph.raw), 4.0, TrainConfig(), CPU, np.random.default_rng(0))
    assert not data.kernel.gaussian and data.pre_kernel is not None
    assert data.kernel.cone > 0 and data.kernel.tail > 0.5  # most of a wide-field PSF's light is out of focus
    assert data.margin >= data.kernel.radius + 8  # the kernel and the z-sampling see no wrap-around
    assert data.size >= 2 * data.kernel.radius + 32  # D's patches show where the out-of-focus light comes from
    assert data.physics_profile().sum() == pytest.approx(1.0)


def test_gaussian_psf_keeps_a_gaussian_kernel() -> None:
    ph = make_phantom("neurites", (96, 128, 128), k=4.0, axial_ratio=3.0, photons=200, seed=1)
    norm = fit_normalizer(ph.raw, (0.1, 99.99))
    data = prepare_data(norm(ph.raw), 4.0, TrainConfig(), CPU, np.random.default_rng(0))
    assert data.kernel.gaussian and data.pre_kernel is None and data.pre_blur == data.sigma > 1.5
    assert data.size == TrainConfig().patch_size


def test_a_kernel_too_wide_for_the_planes_falls_back_to_the_gaussian(monkeypatch: pytest.MonkeyPatch,
                                                                     fast_config: TrainConfig) -> None:
    from selfnet.training import loop

    wide = AxialKernel(2.0, tail=0.5, tail_sigma=10.0, cone=1.0)
    monkeypatch.setattr(loop, "fit_axial_kernel", lambda *a, **k: (wide, 0.5))
    raw, _ = _stack(4.0, 3.0)
    norm = fit_normalizer(raw, fast_config.norm_percentiles)
    data = prepare_data(norm(raw), 4.0, fast_config, CPU, np.random.default_rng(0))
    assert data.kernel.gaussian and data.pre_kernel is None
