"""Two-stage Self-Net training on one volume: CycleGAN degradation learning, then deblurring.

Stage 1 learns G_A: XY_lr -> axial-like (and G_B back) from unpaired XY_lr and real axial patches
with PatchGAN critics (LSGAN) and cycle losses. Stage 2 trains the deblurring net D on
(G_A(XY_lr), XY) pairs and feeds D's error back into G_A. Both stages stop at their share of the
wall-clock budget or their step count, whichever comes first, with a cosine learning rate fitted
to that budget, so a short budget still ends with a converged (annealed) model.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from selfnet.config import TrainConfig
from selfnet.errors import CancelToken, InputError
from selfnet.method.estimate import (
    NoiseModel,
    estimate_axial_blur,
    estimate_noise,
    max_axial_sigma,
)
from selfnet.method.kernel import (
    PSF_MISFIT,
    AxialKernel,
    filter2d,
    fit_axial_kernel,
    kernel_retention,
    kernel_spectrum,
    misfit_scorer,
    profile_sigma,
)
from selfnet.method.losses import charbonnier, lsgan, restoration_loss
from selfnet.method.nets import DegradationGenerator, PatchDiscriminator, ResNet2d
from selfnet.method.normalize import Normalizer, fit_normalizer
from selfnet.method.psf import (
    WIDEFIELD,
    MeasuredKernel,
    forward_kernel,
    kernel_from_psf,
    out_of_focus_spread,
)
from selfnet.method.resample import blur_matrix, degrade_matrix, zinterp
from selfnet.model import Model
from selfnet.training.patches import sample_axial_patches, sample_xy_patches
from selfnet.training.refine import refine_pairs
from selfnet.training.session import DEFAULT_EVERY_S, TrainSession, fingerprint

ProgressFn = Callable[[str, int, int, dict[str, float]], None]
DEFAULT_EPOCHS = 30
BUDGET_ONLY_EPOCHS = 10_000
N_PHASES = 8
STAGE_LABELS = {"stage2": "stage 2 (deblur)", "refine": "stage 3 (refine with the PSF)"}
FIT_SIZE = 128  # patch size (px) the 2D blur fit reads
FIT_POOL = 256  # patches of each kind it reads
FIT_STREAM = 18  # its random stream, apart from the training pools'
REFINE_STREAM = 19  # the refinement's noise and patches
REFINE_POOL = 2  # its pairs per patch of the pools: cheap to cut from a whole restored stack, and D sees more of it
MIN_PATCH = 16  # smallest training patch (px)
_EPS = 1e-6


@dataclass
class TrainingData:
    """Patch pools on the device plus the degradation operators and data-derived estimates."""

    xy: torch.Tensor          # (N, 1, S, S) sharp XY patches with a margin for degradation
    axial: torch.Tensor       # (M, 1, P, P) real axial patches, z along rows
    sampling: torch.Tensor    # (N_PHASES, S, S) z-sampling operators at random phases (for noise)
    degrade: torch.Tensor     # (N_PHASES, S, S) estimated z blur followed by z-sampling (for signal)
    size: int
    margin: int
    noise: NoiseModel
    sigma: float              # estimated extra axial blur (px; the core of ``kernel``)
    pre_blur: float           # a Gaussian ``kernel`` built into ``degrade`` (0 for the unconstrained baseline)
    sigma_source: str         # "spectra" (patch spectra) or "qc" (whole-stack resolution estimate)
    retention: float          # noise variance kept by that blur
    kernel: AxialKernel | MeasuredKernel = field(default_factory=lambda: AxialKernel(0.0))  # 2D (z, x) where needed
    pre_kernel: torch.Tensor | None = None  # a non-Gaussian ``kernel``'s rFFT over a full patch, applied before ``degrade``
    kernel_evidence: float | None = None  # the 2D fit's residual with a tail or cone / without (< 0.75: kept)
    psf_misfit: float | None = None  # a PSF file's kernel residual / the best fitted one's (above PSF_MISFIT: warned)

    @property
    def physics(self) -> bool:
        """Whether the estimated blur is built into the degradation G_A refines."""
        return self.pre_blur > 0 or self.pre_kernel is not None

    def physics_profile(self) -> np.ndarray:
        """The built-in blur's z profile (a delta when none is built in)."""
        if self.pre_kernel is not None:
            return self.kernel.profile()
        return AxialKernel(self.pre_blur).profile()


def choose_patch_size(requested: int, n_z_iso: int, ny: int, nx: int, margin: int) -> int:
    """Largest multiple of 8 <= requested that fits the axial extent and XY planes with margin."""
    fit = min(requested, n_z_iso, ny - 2 * margin, nx - 2 * margin)
    size = (fit // 8) * 8
    if size < MIN_PATCH:
        raise InputError(
            f"stack too small to train on: {n_z_iso} isotropic planes and {ny}x{nx} pixels "
            f"(need at least {MIN_PATCH} isotropic planes and {MIN_PATCH + 2 * margin} pixels in x and y)")
    return size


def training_phases(ratio: float, rng: np.random.Generator) -> np.ndarray:
    """Offsets (rows) of the kept rows when XY patches are z-sampled: whole rows, as in the real stack.

    A real stack's planes are exact samples, so their noise is full and white; a fractional offset
    would keep cubic-interpolated rows instead, whose noise is smoothed. Integer offsets put the kept
    rows where the raw planes fall on the output grid (all phases of an integer ratio).
    """
    n = max(1, math.ceil(ratio - _EPS))
    return rng.permutation(np.arange(max(N_PHASES, n)) % n).astype(np.float64)


def prepare_data(norm_volume: np.ndarray, ratio: float, cfg: TrainConfig, device: torch.device,
                 rng: np.random.Generator, measured: MeasuredKernel | None = None) -> TrainingData:
    """Sample patch pools, estimate noise and axial blur, and build the degradation operators.

    A stack sampled at least as finely along z as in XY (ratio <= 1) needs no z-sampling step:
    XY_lr is then XY blurred along one axis, not resampled, and stage 1 learns the axial blur alone.
    A ``measured`` kernel (from the user's PSF, :func:`psf_kernel`) replaces the estimate.
    """
    step = max(ratio, 1.0)
    z = norm_volume.shape[0]
    iso = zinterp(norm_volume, ratio)
    noise = estimate_noise(norm_volume[:: max(1, z // 16)])
    margin = _margin(step, None)
    size, xy, axial = _pools(norm_volume, iso, cfg, margin, step, rng, cfg.patch_size)
    sampling = _sampling(size + 2 * margin, step, rng)
    xy_lr = (sampling[0] @ xy[:, :, margin:-margin])[:, margin:-margin]
    kernel: AxialKernel | MeasuredKernel | None
    misfit = None
    if measured is not None:
        kernel, source, evidence = measured, "psf", None
        misfit = _check_measured(norm_volume, iso, step, float(noise.variance(xy.mean())), cfg, measured)
    else:
        kernel, source, evidence = _estimate_kernel(norm_volume, iso, xy_lr, axial, step,
                                                    float(noise.variance(xy.mean())), cfg)
    if kernel is None:  # too little signal in the patches: fall back on QC's estimate from the whole stack
        kernel, source = AxialKernel(resolution_axial_sigma(norm_volume, ratio)), "qc"
    if _margin(step, kernel) > margin:  # a wide axial blur needs a wider frame around each XY patch
        margin = _margin(step, kernel)
        size, xy, axial = _pools(norm_volume, iso, cfg, margin, step, rng, _reach_size(kernel, cfg.patch_size))
        sampling = _sampling(size + 2 * margin, step, rng)
    del iso
    full = size + 2 * margin
    built_in = cfg.use_cyclegan and cfg.degradation != "unconstrained"
    pre_blur = kernel.sigma if built_in and kernel.gaussian else 0.0
    pre_kernel = kernel_spectrum(kernel.taps(), full, full, device) if built_in and not kernel.gaussian else None
    kept = kernel if cfg.use_cyclegan else AxialKernel(0.0)
    return TrainingData(
        xy=torch.from_numpy(xy).unsqueeze(1).to(device),
        axial=torch.from_numpy(axial).unsqueeze(1).to(device),
        sampling=torch.from_numpy(sampling).to(device),
        degrade=torch.from_numpy(sampling @ blur_matrix(full, pre_blur)).to(device),
        size=size, margin=margin, noise=noise, sigma=kernel.sigma, sigma_source=source, pre_blur=pre_blur,
        retention=kernel_retention(full, step, kept), kernel=kernel, pre_kernel=pre_kernel, kernel_evidence=evidence,
        psf_misfit=misfit,
    )


def _estimate_kernel(norm_volume: np.ndarray, iso: np.ndarray, xy_lr: np.ndarray, axial: np.ndarray, step: float,
                     noise_var: float, cfg: TrainConfig) -> tuple[AxialKernel | None, str, float | None]:
    """The extra axial blur from the patch spectra: a Gaussian of the 1D estimate's width, or the
    2D fit's tail and cone where those explain clearly more (non-Gaussian optics) and the XY
    planes leave room for the wider frame such a kernel needs. Also returns the fit's evidence for
    a tail or cone (residual ratio, see :func:`~selfnet.method.kernel.fit_axial_kernel`).

    The 2D fit reads larger patches than training uses (up to :data:`FIT_SIZE` px): the
    frequencies it can trust lie below the raw z Nyquist frequency, and a 64-px patch holds only
    two or three of them there. It draws them from its own random stream, so the training pools
    do not depend on it.
    """
    sigma = estimate_axial_blur(xy_lr, axial, step, noise_var)
    if sigma is None:
        return None, "spectra", None
    fit = fit_axial_kernel(*_fit_patches(norm_volume, iso, step, cfg), step, noise_var, max_axial_sigma(step))
    if fit is None:
        return AxialKernel(sigma), "spectra", None
    fitted, evidence = fit
    if fitted.gaussian or _margin(step, fitted) > (min(norm_volume.shape[1:]) - MIN_PATCH) // 2:
        fitted = AxialKernel(sigma)
    return fitted, "spectra", evidence


def _fit_patches(norm_volume: np.ndarray, iso: np.ndarray, step: float, cfg: TrainConfig) -> tuple[np.ndarray, np.ndarray]:
    """XY_lr and axial patches for the 2D blur fit: larger than training's, from their own random stream."""
    size = min(FIT_SIZE, iso.shape[0], *norm_volume.shape[1:]) // 8 * 8
    rng = np.random.default_rng([cfg.seed, FIT_STREAM])
    big_xy = sample_xy_patches(norm_volume, FIT_POOL, size, rng=rng, foreground_percentile=cfg.foreground_percentile)
    big_axial = sample_axial_patches(iso, FIT_POOL, size, rng=rng, foreground_percentile=cfg.foreground_percentile)
    return degrade_matrix(size, step) @ big_xy, big_axial


def _check_measured(norm_volume: np.ndarray, iso: np.ndarray, step: float, noise_var: float, cfg: TrainConfig,
                    measured: MeasuredKernel) -> float | None:
    """The PSF file's misfit to the stack (:func:`~selfnet.method.kernel.misfit_scorer`); warns above
    :data:`PSF_MISFIT`, where the PSF describes other optics than the stack's and costs quality."""
    score = misfit_scorer(*_fit_patches(norm_volume, iso, step, cfg), step, noise_var, max_axial_sigma(step))
    misfit = None if score is None else score(measured)
    if misfit is not None and misfit > PSF_MISFIT:
        warnings.warn(f"PSF {Path(str(cfg.psf)).name} does not fit this stack: its axial blur explains the stack's "
                      f"axial vs lateral detail {misfit:.1f}x worse than the stack's own estimate. Check its voxel "
                      "size, depth and refractive indices (`selfnet psf --optics ... --fit-depth STACK` fits the "
                      "depth), or compare with a run without --psf", stacklevel=2)
    return misfit


def stack_misfit_scorer(volume: np.ndarray, spacing: tuple[float, float, float],
                        cfg: TrainConfig) -> Callable[[np.ndarray, tuple[float, float, float]], float] | None:
    """Scores PSFs (array, voxel size) against a stack with training's check (:func:`_check_measured`: the same
    fit patches and cost; the noise level read at the stack's mean rather than the training pool's): how much
    worse each explains the stack's axial blur than the best fitted kernel. None when the stack holds too
    little signal to tell."""
    ratio = spacing[0] / spacing[2]
    step = max(ratio, 1.0)
    norm = fit_normalizer(volume, cfg.norm_percentiles)(volume)
    noise = estimate_noise(norm[:: max(1, norm.shape[0] // 16)])
    xy_lr, axial = _fit_patches(norm, zinterp(norm, ratio), step, cfg)
    score = misfit_scorer(xy_lr, axial, step, float(noise.variance(norm.mean())), max_axial_sigma(step))
    if score is None:
        return None
    return lambda psf, psf_spacing: score(kernel_from_psf(psf, psf_spacing, spacing[2]))


def _read_psf(path: str, channel: int | None) -> Any:
    """The PSF file as a Volume; of a multi-channel PSF, channel ``channel`` (the channel being trained)."""
    from selfnet.io.series import probe_series
    from selfnet.io.volume import read_volume

    try:
        channels = probe_series(path).n_c
        if channels == 1:
            return read_volume(path)
        if channel is None or channel >= channels:
            which = "no channel was chosen" if channel is None else f"none for channel {channel}"
            raise InputError(f"{path} has {channels} channels and {which}: a multi-channel PSF goes with a "
                             "multi-channel stack trained per channel, or with --channel N")
        return read_volume(path, channel=channel)
    except InputError as err:
        no_size = str(err).startswith("no ")
        text = f"{path} has no voxel size: save it with its calibration (ImageJ or OME-TIFF)" if no_size else err
        raise InputError(f"PSF: {text}") from None


def check_psf(cfg: TrainConfig, channels: list[int | None]) -> None:
    """Refuse, in one line, a PSF file that cannot be read, or that has no channel for one of ``channels``."""
    for channel in dict.fromkeys(cfg.for_channel(c).psf_channel for c in channels):  # each PSF channel once
        _read_psf(cfg.psf, channel)


def psf_kernel(cfg: TrainConfig, pixel_um: float) -> MeasuredKernel | None:
    """The axial kernel from ``cfg.psf`` (a PSF file; its channel ``cfg.psf_channel`` if it has several) on the
    stack's ``pixel_um`` grid, with its 3D forward kernel for the refinement; None without one."""
    if cfg.psf is None:
        return None
    psf = _read_psf(cfg.psf, cfg.psf_channel)
    data = np.asarray(psf.data)
    if not cfg.refines and (spread := out_of_focus_spread(data)) > WIDEFIELD:  # refined, its 3D blur models the haze
        warnings.warn(f"PSF {Path(cfg.psf).name} looks wide-field (its light per plane spreads {spread:.1f}x wider "
                      "along z than its centre): without the refinement, the blur estimated from wide-field stacks "
                      "did better (docs/BENCHMARKS.md); compare with a run without the PSF", stacklevel=2)
    return replace(kernel_from_psf(data, psf.spacing, pixel_um), forward=forward_kernel(data, psf.spacing, pixel_um))


def resolution_axial_sigma(norm_volume: np.ndarray, ratio: float) -> float:
    """Extra axial blur (px) from QC's resolution estimate of the whole stack (0 when QC cannot tell).

    The fallback for stacks whose patches hold too little signal above the noise for the spectral
    estimate (dim, noisy live-cell stacks): with no blur at all, G_A would leave XY_lr sharp, the
    recorrupted pairs would switch off, and D would learn to pass the raw planes' noise through.
    """
    from selfnet.qc.measure import estimate_resolution

    res = estimate_resolution(norm_volume, (max(ratio, 1e-3), 1.0, 1.0))
    if not res.reliable:
        return 0.0
    extra = math.sqrt(max(res.sigma_axial_um**2 - res.sigma_lateral_um**2, 0.0))
    return float(min(extra, max_axial_sigma(ratio)))


def _margin(step: float, kernel: AxialKernel | None) -> int:
    """Rows kept around each XY patch so that z-sampling and the ``kernel`` see no edge."""
    if kernel is None or kernel.gaussian:
        return int(math.ceil(max(2 * step, 3 * (kernel.sigma if kernel else 0.0)))) + 2
    return kernel.radius + math.ceil(2 * step) + 2


def _reach_size(kernel: AxialKernel | MeasuredKernel, requested: int) -> int:
    """Training patch size for a 2D kernel: at least its reach on both sides plus 32 px, so that D sees
    where most of a pixel's out-of-focus light comes from (a Gaussian keeps ``requested``)."""
    if kernel.gaussian:
        return requested
    return max(requested, math.ceil((2 * kernel.radius + 32) / 8) * 8)


def _pools(norm_volume: np.ndarray, iso: np.ndarray, cfg: TrainConfig, margin: int, step: float,
           rng: np.random.Generator, requested: int) -> tuple[int, np.ndarray, np.ndarray]:
    """Patch size (at most ``requested``), sharp XY patches (with ``margin``) and real axial patches.

    The part of ``margin`` beyond what z-sampling needs only feeds the blur kernel's reach, so it may
    lie beyond the plane's edges (mirrored there): otherwise a wide kernel's frame on a small stack
    would confine every patch to the middle of the planes (measured: docs/BENCHMARKS.md).
    """
    _, y, x = norm_volume.shape
    pad = max(0, min(margin - _margin(step, None), min(y, x) - 1))
    size = choose_patch_size(requested, iso.shape[0], y + 2 * pad, x + 2 * pad, margin)
    xy = sample_xy_patches(norm_volume, cfg.pool_size, size + 2 * margin, rng=rng,
                           foreground_percentile=cfg.foreground_percentile, pad=pad)
    axial = sample_axial_patches(iso, cfg.pool_size, size, rng=rng,
                                 foreground_percentile=cfg.foreground_percentile)
    return size, xy, axial


def _sampling(full: int, step: float, rng: np.random.Generator) -> np.ndarray:
    """z-sampling operators at the training phases (identity for a step of one row)."""
    return np.stack([degrade_matrix(full, step, p) for p in training_phases(step, rng)])


@dataclass
class Batch:
    """One training batch: sharp XY, its z-degraded XY_lr, structured noise, real axial patches."""

    xy: torch.Tensor
    xy_lr: torch.Tensor
    eps: torch.Tensor
    axial: torch.Tensor
    target: torch.Tensor | None = None   # stage-2 target with the noise share ``-z/alpha``
    lr_noisy: torch.Tensor | None = None  # XY_lr made from ``xy + alpha z``
    alpha: float = 0.0


def _dihedral(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Per-sample random transpose and flips (the 8 symmetries of the square)."""
    b = x.shape[0]
    masks = torch.rand(3, b, 1, 1, 1, generator=gen, device=x.device) < 0.5
    x = torch.where(masks[0], x.transpose(-1, -2), x)
    x = torch.where(masks[1], x.flip(-1), x)
    return torch.where(masks[2], x.flip(-2), x)


def _flips(x: torch.Tensor, gen: torch.Generator, along_z: bool = True) -> torch.Tensor:
    """Per-sample random flips that keep z along rows (axial patches); along x only unless ``along_z``."""
    masks = torch.rand(2, x.shape[0], 1, 1, 1, generator=gen, device=x.device) < 0.5
    x = torch.where(masks[0], x.flip(-1), x)
    return torch.where(masks[1], x.flip(-2), x) if along_z else x


def recorrupt_alpha(requested: float, retention: float) -> float:
    """Largest alpha <= ``requested`` whose extra input noise G_A can still take out of its own share.

    G_A adds noise of variance (1 - retention) (relative to real axial noise); recorruption adds
    alpha^2 * retention to XY_lr, so alpha^2 must stay below (1 - retention) / retention. Off (0)
    when that leaves less than alpha 0.3 (little extra z blur: the target would get too noisy).
    """
    if requested <= 0 or retention >= 1:
        return 0.0
    alpha = min(requested, math.sqrt(0.8 * (1 - retention) / max(retention, 1e-6)))
    return alpha if alpha >= 0.3 else 0.0


def batches(data: TrainingData, batch_size: int, gen: torch.Generator, alpha: float = 0.0) -> Iterator[Batch]:
    """Endless stream of augmented batches, degraded on the fly with a random sampling phase.

    With ``alpha > 0`` each batch also carries a recorrupted pair (Pang et al., CVPR 2021): Gaussian
    noise z with the stack's Poisson-Gaussian variance goes into the input as ``+alpha z`` and into
    the target as ``-z/alpha``, which makes input and target noise independent.
    """
    dev = data.xy.device
    m, p = data.margin, data.size
    full = p + 2 * m
    while True:
        i = torch.randint(0, data.xy.shape[0], (batch_size,), generator=gen, device=dev)
        j = torch.randint(0, data.axial.shape[0], (batch_size,), generator=gen, device=dev)
        phase = torch.randint(0, data.sampling.shape[0], (batch_size,), generator=gen, device=dev)
        xy_full = _dihedral(data.xy[i], gen)
        white = torch.randn(batch_size, 1, full, p, generator=gen, device=dev)
        degrade = data.degrade[phase].unsqueeze(1)
        b = Batch(
            xy=xy_full[..., m:-m, m:-m],
            xy_lr=(degrade @ _physics(data, xy_full)[..., m:-m])[..., m:-m, :],
            eps=(data.sampling[phase].unsqueeze(1) @ white)[..., m:-m, :],
            axial=_flips(data.axial[j], gen),
        )
        if alpha > 0:
            var = data.noise.gain * xy_full.clamp(min=0) + data.noise.read_var
            z = torch.randn(xy_full.shape, generator=gen, device=dev) * var.sqrt()
            b.target = (xy_full - z / alpha)[..., m:-m, m:-m]
            b.lr_noisy = (degrade @ _physics(data, xy_full + alpha * z)[..., m:-m])[..., m:-m, :]
            b.alpha = alpha
        yield b


def paired_batches(inputs: torch.Tensor, targets: torch.Tensor, batch_size: int, gen: torch.Generator,
                   flip_z: bool = False) -> Iterator[Batch]:
    """Batches of known (degraded, sharp) pairs, z along rows, flipped along x (and z when ``flip_z``:
    only for a symmetric axial blur). For the refinement and the supervised baselines."""
    while True:
        i = torch.randint(0, inputs.shape[0], (batch_size,), generator=gen, device=inputs.device)
        both = _flips(torch.cat([inputs[i], targets[i]], dim=1), gen, along_z=flip_z)
        yield Batch(xy=both[:, 1:], xy_lr=both[:, :1], eps=torch.zeros_like(both[:, :1]), axial=both[:, :1])


def _physics(data: TrainingData, xy_full: torch.Tensor) -> torch.Tensor:
    """XY patches through the estimated non-Gaussian blur (a Gaussian one is part of ``degrade``)."""
    return xy_full if data.pre_kernel is None else filter2d(xy_full, data.pre_kernel)


@dataclass
class StageClock:
    """Stops a stage at its step count or wall-clock deadline and reports progress in [0, 1]."""

    steps: int
    deadline: float | None
    start: float = field(default_factory=time.perf_counter)

    def progress(self, step: int) -> float:
        frac = step / self.steps
        if self.deadline is not None:
            frac = max(frac, (time.perf_counter() - self.start) / max(self.deadline - self.start, 1e-9))
        return min(frac, 1.0)

    def done(self, step: int) -> bool:
        return step >= self.steps or (self.deadline is not None and time.perf_counter() >= self.deadline)


def cosine_lr(base: float, progress: float, floor: float = 0.05) -> float:
    """Cosine decay from ``base`` to ``floor * base`` over progress 0..1."""
    return base * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))


def _set_lr(opts: list[torch.optim.Optimizer], lr: float) -> None:
    for opt in opts:
        for group in opt.param_groups:
            group["lr"] = lr


@dataclass
class Nets:
    """The four CycleGAN networks and the deblurring net."""

    g_a: DegradationGenerator
    g_b: ResNet2d
    d_a: PatchDiscriminator
    d_b: PatchDiscriminator
    deblur: ResNet2d


def build_nets(cfg: TrainConfig, data: TrainingData, ratio: float, device: torch.device) -> tuple[Nets, dict[str, float]]:
    """Networks with G_A initialised from the stack's own blur and noise estimates."""
    init = dict(
        sigma=0.0,
        radius=int(math.ceil(max(1.5 * max(ratio, 2.0), (1.5 if data.physics else 3.0) * data.sigma))),
        gain=data.noise.gain,
        read_var=data.noise.read_var,
        noise_scale=math.sqrt(max(1.0 - data.retention, 1e-3)),
    )
    nets = Nets(
        g_a=DegradationGenerator(cfg.generator_a_channels, **init),
        g_b=ResNet2d(cfg.generator_b),
        d_a=PatchDiscriminator(cfg.disc),
        d_b=PatchDiscriminator(cfg.disc),
        deblur=ResNet2d(cfg.deblur),
    )
    for net in vars(nets).values():
        net.to(device)
    nets.deblur.to(memory_format=torch.channels_last)  # ~10-20 % faster on CPU; no gain for the small nets
    return nets, init


def _adam(params: Any, lr: float, cfg: TrainConfig) -> torch.optim.Adam:
    return torch.optim.Adam(params, lr=lr, betas=cfg.betas)


def run_stage1(nets: Nets, stream: Iterator[Batch], cfg: TrainConfig, clock: StageClock,
               on_step: ProgressFn | None, session: TrainSession | None = None) -> dict[str, Any]:
    """CycleGAN degradation learning: G_A XY_lr -> axial, G_B axial -> XY_lr.

    ``session`` (optional) resumes, checkpoints and guards the loop against NaN/Inf losses.
    """
    g_opt = _adam(list(nets.g_a.parameters()) + list(nets.g_b.parameters()), cfg.lr_gan, cfg)
    d_opt = _adam(list(nets.d_a.parameters()) + list(nets.d_b.parameters()), cfg.lr_gan, cfg)
    history: list[dict[str, float]] = []
    step = 0
    if session is not None:
        step, history, clock.start = session.enter("stage1", {"g": g_opt, "d": d_opt}, clock.start)
    while not clock.done(step):
        _set_lr([g_opt, d_opt], cosine_lr(cfg.lr_gan, clock.progress(step)) * _lr_scale(session))
        b = next(stream)
        mean_a, residual = nets.g_a.mean_and_residual(b.xy_lr)
        fake_axial = mean_a + nets.g_a.noise_std(mean_a.detach()) * b.eps
        fake_xy = nets.g_b(b.axial)
        cycle = charbonnier(nets.g_b(mean_a), b.xy_lr) + charbonnier(nets.g_a.mean(fake_xy), b.axial)
        adv = lsgan(nets.d_a(fake_axial), True) + lsgan(nets.d_b(fake_xy), True)
        g_loss = adv + cfg.cycle_weight * cycle + residual_weight(cfg) * residual.abs().mean()
        g_opt.zero_grad(set_to_none=True)
        g_loss.backward()
        g_opt.step()
        nets.g_a.project_()
        d_loss = 0.5 * (lsgan(nets.d_a(b.axial), True) + lsgan(nets.d_a(fake_axial.detach()), False)
                        + lsgan(nets.d_b(b.xy_lr), True) + lsgan(nets.d_b(fake_xy.detach()), False))
        d_opt.zero_grad(set_to_none=True)
        d_loss.backward()
        d_opt.step()
        losses = {"adv": adv.item(), "cycle": cycle.item(), "disc": d_loss.item()}
        step = _bookkeep(step + 1, losses, history, session, on_step, "stage 1 (CycleGAN)", clock.steps)
    return {"steps": step, "history": history}


def run_stage2(nets: Nets, stream: Iterator[Batch], cfg: TrainConfig, clock: StageClock,
               on_step: ProgressFn | None, use_cyclegan: bool = True,
               session: TrainSession | None = None, retention: float = 1.0, stage: str = "stage2") -> dict[str, Any]:
    """Deblurring on (G_A(XY_lr), XY) with the feedback loss into G_A after ``feedback_start``; without
    the CycleGAN on the stream's pairs as they are (the refinement runs so as ``stage`` "refine")."""
    opt = _adam(nets.deblur.parameters(), cfg.lr, cfg)
    ga_opt = _adam(nets.g_a.parameters(), cfg.lr_gan * 0.5, cfg)
    da_opt = _adam(nets.d_a.parameters(), cfg.lr_gan * 0.5, cfg)
    history: list[dict[str, float]] = []
    step = 0
    if session is not None:
        step, history, clock.start = session.enter(stage, {"d": opt, "ga": ga_opt, "da": da_opt}, clock.start)
    while not clock.done(step):
        progress = clock.progress(step)
        _set_lr([opt], cosine_lr(cfg.lr, progress) * _lr_scale(session))
        b = next(stream)
        with torch.no_grad():
            degraded, target = _stage2_pair(nets.g_a, b, retention) if use_cyclegan else (b.xy_lr, b.xy)
        loss = restoration_loss(nets.deblur(degraded), target, cfg.ssim_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses = {"deblur": loss.item()}
        if use_cyclegan and feedback_on(cfg) and step % cfg.gan_update_every == 0 and progress >= cfg.feedback_start:
            losses.update(_feedback_step(nets, b, cfg, ga_opt, da_opt))
        step = _bookkeep(step + 1, losses, history, session, on_step, STAGE_LABELS[stage], clock.steps)
    return {"steps": step, "history": history}


def _stage2_pair(g_a: DegradationGenerator, b: Batch, retention: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(G_A output, target) for D; with a recorrupted batch G_A's noise shrinks by what XY_lr gained."""
    if b.lr_noisy is None or b.target is None:
        return g_a(b.xy_lr, b.eps), b.xy
    scale2 = float(g_a.log_scale.exp()) ** 2
    keep = math.sqrt(max(0.0, 1.0 - b.alpha**2 * retention / max(scale2, 1e-12)))
    return g_a(b.lr_noisy, b.eps * keep), b.target


def _bookkeep(step: int, losses: dict[str, float], history: list[dict[str, float]], session: TrainSession | None,
              on_step: ProgressFn | None, label: str, total: int) -> int:
    """Record a finished step; returns the step to go on from (an earlier one after a NaN roll-back)."""
    if session is not None and (back := session.check(step, losses, history)) is not None:
        return back
    _record(history, step, losses)
    if on_step:
        on_step(label, step, total, losses)
    if session is not None:
        session.tick(step, history)
    return step


def _lr_scale(session: TrainSession | None) -> float:
    """Learning-rate factor left by divergence roll-backs (1 when training never diverged)."""
    return 1.0 if session is None else session.lr_scale


def _feedback_step(nets: Nets, b: Batch, cfg: TrainConfig, ga_opt: torch.optim.Optimizer,
                   da_opt: torch.optim.Optimizer) -> dict[str, float]:
    """Update G_A with GAN + cycle (weighted) + feedback from D; D's weights stay fixed here."""
    mean_a, residual = nets.g_a.mean_and_residual(b.xy_lr)
    fake = mean_a + nets.g_a.noise_std(mean_a.detach()) * b.eps
    feedback = charbonnier(nets.deblur(fake), b.xy)
    adv = lsgan(nets.d_a(fake), True)
    cycle = charbonnier(nets.g_b(mean_a), b.xy_lr)
    penalty = residual_weight(cfg) * residual.abs().mean()
    loss = cfg.gan_weight_stage2 * (adv + cfg.cycle_weight * cycle + penalty) + cfg.feedback_weight * feedback
    ga_opt.zero_grad(set_to_none=True)
    loss.backward()
    ga_opt.step()
    nets.g_a.project_()
    d_loss = 0.5 * (lsgan(nets.d_a(b.axial), True) + lsgan(nets.d_a(fake.detach()), False))
    da_opt.zero_grad(set_to_none=True)
    d_loss.backward()
    da_opt.step()
    for p in nets.deblur.parameters():
        p.grad = None
    return {"feedback": feedback.item()}


def _record(history: list[dict[str, float]], step: int, losses: dict[str, float], every: int = 10) -> None:
    if step % every == 0 or step == 1:
        history.append({"step": float(step), **losses})


def learns_degradation(cfg: TrainConfig) -> bool:
    """Whether stage 1 (CycleGAN steps) runs: not without a CycleGAN, not for the physics-only G_A,
    and not from a PSF file, which says what the CycleGAN would only drift away from (measured:
    docs/BENCHMARKS.md)."""
    return cfg.use_cyclegan and cfg.degradation != "physics" and cfg.psf is None


def feedback_on(cfg: TrainConfig) -> bool:
    """Whether stage 2 also updates G_A (feedback from D plus its GAN and cycle terms)."""
    return learns_degradation(cfg) and cfg.feedback_weight > 0


def residual_weight(cfg: TrainConfig) -> float:
    """L1 weight on G_A's CNN share: none for the paper's unconstrained generator."""
    return 0.0 if cfg.degradation == "unconstrained" else cfg.residual_weight


def learned_axial_kernel(g_a: DegradationGenerator, physics: np.ndarray) -> np.ndarray:
    """G_A's whole z blur (the built-in ``physics`` z profile, then the learned taps) as 1D taps."""
    taps = g_a.taps().detach().flatten().cpu().double().numpy()
    return np.convolve(physics, taps[::-1], mode="full")  # conv2d correlates: the PSF is the flipped taps


def learned_sigma(g_a: DegradationGenerator) -> float:
    """Standard deviation (px) of G_A's learned z taps (0 when they sharpen: negative variance)."""
    return profile_sigma(g_a.taps().detach().flatten().cpu().double().numpy())


def _physics_sigma(data: TrainingData) -> float:
    """Width (px) of the built-in blur: the Gaussian's sigma, or a 2D kernel's z-profile sd."""
    return data.pre_blur if data.pre_kernel is None else profile_sigma(data.physics_profile())


def train_model(volume: np.ndarray, spacing: tuple[float, float, float], cfg: TrainConfig,
                device: torch.device, on_step: ProgressFn | None = None, *,
                checkpoint: str | Path | None = None, resume: bool = False,
                checkpoint_every_s: float = DEFAULT_EVERY_S, normalizer: Normalizer | None = None,
                cancel: CancelToken | None = None) -> Model:
    """Train both stages on a ZYX volume with ``spacing=(dz, dy, dx)`` µm; returns a :class:`Model`.

    With ``checkpoint``, the training state is saved there every ``checkpoint_every_s`` seconds,
    at the end, and on SIGINT/SIGTERM (then :class:`~selfnet.checkpoint.TrainingInterrupted` is
    raised); ``resume=True`` continues from that file to the same step and time budget. NaN/Inf
    losses always roll training back to the last good state with a lower learning rate.
    ``normalizer`` is the stack's (fitted here by the one policy when omitted); ``cancel`` stops
    training at the next step like a signal does.
    """
    t0 = time.perf_counter()
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    gen = torch.Generator(device=device).manual_seed(cfg.seed)
    ratio = spacing[0] / spacing[2]
    normalizer = normalizer or fit_normalizer(volume, cfg.norm_percentiles)
    measured = psf_kernel(cfg, spacing[2])
    settings = cfg.model_dump(mode="json") | ({} if measured is None else {"psf_kernel": measured.kernel.tolist()})
    key = fingerprint(volume, spacing, settings, (normalizer.low, normalizer.high))
    session = TrainSession.open(checkpoint, key, resume=resume, every_s=checkpoint_every_s, cancel=cancel)
    data = prepare_data(normalizer(volume), ratio, cfg, device, rng, measured)
    nets, init = build_nets(cfg, data, ratio, device)
    alpha = recorrupt_alpha(cfg.recorrupt, data.retention) if cfg.use_cyclegan else 0.0
    stream = batches(data, cfg.batch_size, gen, alpha)
    epochs = cfg.epochs or (BUDGET_ONLY_EPOCHS if cfg.max_minutes else DEFAULT_EPOCHS)
    total = epochs * cfg.steps_per_epoch
    s1_steps = max(1, round(total * cfg.stage1_fraction)) if learns_degradation(cfg) else 0
    forward = measured.forward if measured is not None and cfg.refines else None  # the refinement's 3D blur
    s3_steps = round((total - s1_steps) * cfg.refine) if forward is not None else 0
    budget = None if cfg.max_minutes is None else cfg.max_minutes * 60.0
    prep_s = time.perf_counter() - t0
    origin = session.bind(vars(nets), gen, t0)
    stages = _run_stages(nets, stream, cfg, session, origin, budget, (s1_steps, total - s1_steps - s3_steps, s3_steps),
                         on_step, data.retention,
                         lambda: _refine_stream(volume, ratio, nets, data, normalizer, cfg, gen, forward))
    learned = learned_axial_kernel(nets.g_a, data.physics_profile())
    summary = {
        "ratio": ratio,
        "patch_size": data.size,
        "prepare_s": round(prep_s, 2),
        "train_s": round(time.perf_counter() - origin, 2),
        "device": str(device),
        "torch": str(torch.__version__),
        "estimated_axial_sigma_px": round(data.sigma, 3),
        "estimated_axial_sigma_from": data.sigma_source,
        "estimated_axial_kernel": data.kernel.as_dict(),
        "axial_kernel_evidence": None if data.kernel_evidence is None else round(data.kernel_evidence, 3),
        **({} if data.psf_misfit is None else {"psf_misfit": round(data.psf_misfit, 3)}),
        "learned_axial_sigma_px": round(math.hypot(_physics_sigma(data), learned_sigma(nets.g_a)), 3),
        "degradation": ("psf" if cfg.psf else cfg.degradation) if cfg.use_cyclegan else "none",
        "learned_axial_kernel": learned.round(4).tolist(),
        "noise_gain": data.noise.gain,
        "noise_read_var": data.noise.read_var,
        "recorrupt_alpha": round(alpha, 3),
        **{f"{name}_{k}": v for name, st in stages.items() for k, v in st.items() if k != "history"},
        "history": {name: st["history"] for name, st in stages.items()},
        **_session_notes(session),
    }
    return Model(
        config=cfg, ratio=ratio, spacing=spacing, normalizer=normalizer,
        deblur_state={k: v.detach().cpu() for k, v in nets.deblur.state_dict().items()},
        generator_a_state={k: v.detach().cpu() for k, v in nets.g_a.state_dict().items()} if cfg.use_cyclegan else None,
        generator_a_init=init, summary=summary,
    )


def _run_stages(nets: Nets, stream: Iterator[Batch], cfg: TrainConfig, session: TrainSession, origin: float,
                budget: float | None, steps: tuple[int, int, int], on_step: ProgressFn | None,
                retention: float = 1.0, refine: Callable[[], Iterator[Batch] | None] | None = None) -> dict[str, Any]:
    """Stage 1 (unless finished in a resumed run or disabled), stage 2 (likewise), then the refinement when
    ``refine`` makes its pairs (``steps[2]`` > 0), each to its share of the budget, under ``session``."""
    s1_steps, s2_steps, s3_steps = steps
    stages: dict[str, Any] = {}
    with session.signals():
        if s1_steps and "stage1" in session.completed:
            stages["stage1"] = session.completed["stage1"]
        elif s1_steps:
            deadline = None if budget is None else origin + budget * cfg.stage1_fraction
            stages["stage1"] = _timed(run_stage1, nets, stream, cfg, StageClock(s1_steps, deadline), on_step,
                                      session=session)
            session.complete("stage1", stages["stage1"], stages["stage1"]["steps"])
        if s3_steps and "stage2" in session.completed:
            stages["stage2"] = session.completed["stage2"]
        else:
            deadline = None if budget is None else origin + budget * (1 - (cfg.refine if s3_steps else 0.0))
            stages["stage2"] = _timed(run_stage2, nets, stream, cfg, StageClock(s2_steps, deadline), on_step,
                                      use_cyclegan=cfg.use_cyclegan, session=session, retention=retention)
            session.complete("stage2", stages["stage2"], stages["stage2"]["steps"], save=True)
        pairs = refine() if s3_steps and refine is not None else None
        if pairs is not None:
            deadline = None if budget is None else origin + budget
            stages["refine"] = _timed(run_stage2, nets, pairs, cfg, StageClock(s3_steps, deadline), on_step,
                                      use_cyclegan=False, session=session, stage="refine")
            session.complete("refine", stages["refine"], stages["refine"]["steps"], save=True)
    return stages


def _refine_stream(volume: np.ndarray, ratio: float, nets: Nets, data: TrainingData, normalizer: Normalizer,
                   cfg: TrainConfig, gen: torch.Generator, kernel: np.ndarray | None) -> Iterator[Batch] | None:
    """Batches of the refinement's pairs (made from D as stage 2 left it, re-recorded through the PSF's 3D
    ``kernel``), or None without one or when the stack is too small."""
    if kernel is None:
        return None
    device = data.xy.device
    pairs = refine_pairs(volume, ratio, nets.deblur, device, normalizer, kernel, data.noise, REFINE_POOL * cfg.pool_size,
                         cfg.patch_size, np.random.default_rng([cfg.seed, REFINE_STREAM]))
    if pairs is None:
        return None
    inputs, targets = (torch.from_numpy(np.ascontiguousarray(a)).unsqueeze(1).to(device) for a in pairs)
    return paired_batches(inputs, targets, cfg.batch_size, gen)


def _session_notes(session: TrainSession) -> dict[str, Any]:
    """Summary entries for a resumed or rolled-back run (none for a plain one)."""
    notes: dict[str, Any] = {}
    if session.resumed:
        notes["resumed"] = True
    if session.rollbacks:
        notes["divergence_rollbacks"] = session.rollbacks
        notes["final_lr_scale"] = session.lr_scale
    return notes




def _timed(fn: Callable[..., dict[str, Any]], nets: Nets, stream: Iterator[Batch], cfg: TrainConfig,
           clock: StageClock, on_step: ProgressFn | None, **kwargs: Any) -> dict[str, Any]:
    for net in vars(nets).values():
        net.train()
    result = fn(nets, stream, cfg, clock, on_step, **kwargs)
    seconds = time.perf_counter() - clock.start  # a resumed stage's clock starts in the past
    result["seconds"] = round(seconds, 2)
    result["patches_per_s"] = round(result["steps"] * cfg.batch_size / max(seconds, 1e-9), 1)
    return result
