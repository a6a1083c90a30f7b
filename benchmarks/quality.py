"""Quality benchmark: selfnet vs baselines and ablations on phantoms with known ground truth.

    python benchmarks/quality.py [--quick] [--minutes M] [--seeds 0,1,2] [--out bench_out/quality]

Every trained method gets the same wall-clock budget (``--minutes``) on the same volume. The score
is PSNR / 3D SSIM against the ground truth seen through the lateral PSF (the best a self-supervised
method can reach), after the best affine intensity fit. Prints a markdown table and writes one PNG
of XZ views per case.
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import tifffile
import torch
from skimage.restoration import richardson_lucy

import selfnet
from selfnet.config import TrainConfig, make_config
from selfnet.inference.restore import restore_volume
from selfnet.method.normalize import Normalizer
from selfnet.method.resample import zinterp
from selfnet.model import Model
from selfnet.phantoms.metrics import (
    AXIAL_BANDS,
    affine_fit,
    axial_asymmetry,
    axial_transfer,
    banding,
    bead_centers,
    bead_z_shift,
    score,
    z_shift,
)
from selfnet.phantoms.optics import (
    DX_UM,
    axial_profile,
    bead_recording,
    diffraction_psf,
    make_optics_phantom,
)
from selfnet.phantoms.supervised import train_supervised
from selfnet.phantoms.synthetic import Phantom, make_phantom
from selfnet.qc.figures import save_panels
from selfnet.training.loop import train_model

DEVICE = torch.device("cpu")


@dataclass(frozen=True)
class Case:
    """One phantom: structure kind, z step k, axial/lateral blur ratio (Gaussian PSF) or diffraction
    optics, photon level and background (photons)."""

    kind: str
    k: float
    axial_ratio: float
    photons: float
    shape: tuple[int, int, int]
    optics: str = "gaussian"
    background: float = 10.0

    @property
    def name(self) -> str:
        blur = f"ax={self.axial_ratio:g}" if self.optics == "gaussian" else self.optics
        bg = f" bg={self.background:g}" if self.background != 10.0 else ""
        return f"{self.kind} k={self.k:g} {blur} ph={self.photons:g}{bg}"

    def phantom(self, seed: int) -> Phantom:
        """The simulated acquisition of this case."""
        if self.optics != "gaussian":
            return make_optics_phantom(self.optics, self.kind, self.shape, k=self.k, photons=self.photons,
                                       background=self.background, seed=seed)
        return make_phantom(self.kind, self.shape, k=self.k, axial_ratio=self.axial_ratio, photons=self.photons,
                            background=self.background, seed=seed)


QUICK = [
    Case("neurites", 4.0, 3.0, 200, (96, 128, 128)),
    Case("mix", 2.5, 2.5, 100, (80, 128, 128)),
]
FULL = [
    Case("neurites", 4.0, 3.0, 200, (128, 160, 160)),
    Case("nuclei", 3.0, 3.0, 200, (96, 160, 160)),
    Case("mix", 2.5, 2.5, 100, (96, 160, 160)),
    Case("beads", 5.0, 4.0, 1000, (160, 160, 160)),
    Case("neurites", 4.0, 3.0, 1000, (128, 160, 160)),
    Case("mix", 4.0, 3.0, 300, (128, 160, 160)),
]
# Issue 18: where quality was weak. Sparse low-photon beads at a large z step; diffraction-model PSFs
# (psfmodels, extra selfnet[phantoms]); a stack sampled as finely along z as in XY (k = 1).
HARD = [
    Case("sparse-beads", 5.0, 4.0, 300, (160, 160, 160), background=15.0),
    Case("mix", 4.0, 0.0, 300, (128, 160, 160), optics="confocal"),
    Case("mix", 4.0, 0.0, 300, (128, 160, 160), optics="widefield"),
    Case("mix", 4.0, 0.0, 300, (128, 160, 160), optics="aberrated"),
    Case("beads", 1.0, 3.5, 300, (96, 128, 128), background=15.0),
]


@dataclass
class Result:
    """A restored volume with its timings."""

    volume: np.ndarray
    train_s: float = 0.0
    restore_s: float = 0.0
    steps: str = ""
    summary: dict | None = None


def timed(fn: Callable[[], np.ndarray]) -> tuple[np.ndarray, float]:
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def interpolation(ph: Phantom, order: str) -> Result:
    """Linear or cubic z-interpolation."""
    if order == "cubic":
        vol, s = timed(lambda: zinterp(ph.raw, ph.k))
    else:
        z = np.arange(ph.iso_slice().stop) / ph.k
        lo = np.minimum(np.floor(z).astype(int), ph.raw.shape[0] - 1)
        hi = np.minimum(lo + 1, ph.raw.shape[0] - 1)
        w = (z - lo)[:, None, None].astype(np.float32)
        vol, s = timed(lambda: (1 - w) * ph.raw[lo].astype(np.float32) + w * ph.raw[hi].astype(np.float32))
    return Result(vol, restore_s=s)


def richardson_lucy_true_psf(ph: Phantom, iterations: int = 20) -> Result:
    """RL deconvolution of the raw stack with the true extra axial blur, then cubic interpolation."""
    sigma_lat = float(ph.params["sigma_lateral_px"])
    extra = np.sqrt(max(float(ph.params["sigma_axial_px"]) ** 2 - sigma_lat**2, 1e-6)) / ph.k
    t = np.arange(-int(np.ceil(4 * extra)), int(np.ceil(4 * extra)) + 1)
    psf = np.exp(-0.5 * (t / extra) ** 2)[:, None, None]
    psf /= psf.sum()
    offset = float(ph.params["offset"])

    def run() -> np.ndarray:
        raw = np.clip(ph.raw.astype(np.float32) - offset, 0, None)
        return zinterp(richardson_lucy(raw, psf, num_iter=iterations, clip=False).astype(np.float32), ph.k)

    vol, s = timed(run)
    return Result(vol, restore_s=s)


def selfnet_method(ph: Phantom, cfg: TrainConfig, views: tuple[str, ...] = ("xz", "yz")) -> tuple[Result, Model]:
    """Train on the raw stack itself, then restore."""
    t0 = time.perf_counter()
    model = train_model(ph.raw, ph.spacing_raw, cfg, DEVICE)
    result = restore_with(ph, model, views)
    result.train_s = time.perf_counter() - t0 - result.restore_s
    return result, model


def _steps(summary: dict) -> str:
    """Steps each stage (and the refinement) reached within the budget (the load on the machine shows here)."""
    steps = [str(summary.get(f"stage{i}_steps", 0)) for i in (1, 2)]
    return "/".join(steps + ([f"{summary['refine_steps']} refine"] if "refine_steps" in summary else []))


def restore_with(ph: Phantom, model: Model, views: tuple[str, ...]) -> Result:
    """Restore with a trained model (train time as the model recorded it)."""
    (vol, _), s = timed(lambda: restore_volume(ph.raw, ph.spacing_raw, model, DEVICE, views=views))
    return Result(vol, model.summary.get("train_s", 0.0), s, _steps(model.summary), model.summary)


def oracle(ph: Phantom, cfg: TrainConfig, pool: int = 2048) -> Result:
    """Same deblurring net trained on TRUE (interpolated raw, ground truth) axial pairs."""
    norm = Normalizer.fit(ph.raw, cfg.norm_percentiles)
    iso = zinterp(norm(ph.raw), ph.k)
    background = float(ph.params["offset"]) + float(ph.params["background"]) * float(ph.params["gain"])
    truth = norm(ph.gt_lateral[ph.iso_slice()] + background)
    inputs, targets = paired_axial_patches(iso, truth, pool, cfg.patch_size, np.random.default_rng(cfg.seed))
    t0 = time.perf_counter()
    net, info = train_supervised(inputs, targets, cfg, DEVICE)
    train_s = time.perf_counter() - t0
    model = Model(config=cfg, ratio=ph.k, spacing=ph.spacing_raw, normalizer=norm,
                  deblur_state={k: v.detach().cpu() for k, v in net.state_dict().items()})
    (vol, _), s = timed(lambda: restore_volume(ph.raw, ph.spacing_raw, model, DEVICE, normalizer=norm))
    return Result(vol, train_s, s, f"0/{info['steps']}")


def paired_axial_patches(a: np.ndarray, b: np.ndarray, count: int, size: int,
                         rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Aligned XZ/YZ patches (z along rows) from two volumes of the same shape."""
    size = min(size, a.shape[0] // 8 * 8)
    z0 = rng.integers(0, a.shape[0] - size + 1, count)
    c0 = rng.integers(0, a.shape[2] - size + 1, count)
    fixed = rng.integers(0, a.shape[1], count)
    r = np.arange(size)
    zz, cc = (z0[:, None] + r)[:, :, None], (c0[:, None] + r)[:, None, :]
    half = count // 2
    pa = np.concatenate([a[zz[:half], fixed[:half, None, None], cc[:half]],
                         a[zz[half:], cc[half:], fixed[half:, None, None]]])
    pb = np.concatenate([b[zz[:half], fixed[:half, None, None], cc[:half]],
                         b[zz[half:], cc[half:], fixed[half:, None, None]]])
    return pa.astype(np.float32), pb.astype(np.float32)


METHODS = ("linear", "cubic", "rl", "oracle", "published", "default", "no-cyclegan", "feedback", "no-r2r",
           "physics-only", "unconstrained", "psf", "psf-no-refine", "psf-bead", "psf-beads", "psf-optics",
           "psf-optics-fit")
BEAD_PHOTONS = 20000.0  # peak photons of the simulated bead measurement ("psf-bead"): ten 2000-photon beads averaged
BEAD_BACKGROUND = 20.0
SAMPLE_INDEX = {"confocal": 1.47, "widefield": 1.47, "aberrated": 1.33}  # "psf-optics-fit": mounted, or water
NOMINAL = {"na": 1.4, "emission_um": 0.52, "excitation_um": 0.488}  # "psf-optics": oil objective, mounted sample
RECORDING = {"shape": (160, 512, 512), "count": 24, "z_step": 2, "photons": 2000.0, "background": 20.0}  # "psf-beads"


def run_case(case: Case, minutes: float, seed: int, out: Path,
             methods: tuple[str, ...] = METHODS) -> tuple[Phantom, list[tuple[str, Result]]]:
    """The chosen methods (all by default; ``default`` brings its XZ-only ablation) on one phantom."""
    ph = case.phantom(seed)

    def ours(**changes: object) -> TrainConfig:
        return make_config(max_minutes=minutes, seed=seed, **changes)

    def default_and_xz() -> list[tuple[str, Result]]:
        result, model = selfnet_method(ph, ours())
        return [("**selfnet (default)**", result), ("ablation: XZ only", restore_with(ph, model, ("xz",)))]

    runs: dict[str, Callable[[], list[tuple[str, Result]]]] = {
        "linear": lambda: [("linear z-interpolation", interpolation(ph, "linear"))],
        "cubic": lambda: [("cubic z-interpolation", interpolation(ph, "cubic"))],
        "rl": lambda: ([("Richardson-Lucy (true PSF) + cubic", richardson_lucy_true_psf(ph))]
                       if case.optics == "gaussian" else []),
        "oracle": lambda: [("oracle: our D on true pairs", oracle(ph, ours()))],
        "published": lambda: [("published config (64 ch)",
                               selfnet_method(ph, TrainConfig.published(max_minutes=minutes, seed=seed))[0])],
        "default": default_and_xz,
        "no-cyclegan": lambda: [("ablation: no CycleGAN", selfnet_method(ph, ours(use_cyclegan=False))[0])],
        "feedback": lambda: [("ablation: with feedback (0.1)", selfnet_method(ph, ours(feedback_weight=0.1))[0])],
        "no-r2r": lambda: [("ablation: no recorrupted pairs", selfnet_method(ph, ours(recorrupt=0.0))[0])],
        "physics-only": lambda: [("ablation: physics estimate only (no CycleGAN steps)",
                                  selfnet_method(ph, ours(degradation="physics"))[0])],
        "unconstrained": lambda: [("baseline: paper's unconstrained CycleGAN",
                                   selfnet_method(ph, ours(degradation="unconstrained"))[0])],
        "psf": lambda: ([("selfnet --psf (the simulation's own PSF)",
                          selfnet_method(ph, ours(psf=str(psf_file(case, out, seed, bead=False))))[0])]
                        if case.optics != "gaussian" else []),
        "psf-no-refine": lambda: ([("ablation: --psf without the refinement",
                                    selfnet_method(ph, ours(psf=str(psf_file(case, out, seed, bead=False)),
                                                            refine=0.0))[0])]
                                  if case.optics != "gaussian" else []),
        "psf-bead": lambda: ([(f"selfnet --psf (bead image, {BEAD_PHOTONS:g} photons peak)",
                               selfnet_method(ph, ours(psf=str(psf_file(case, out, seed, bead=True))))[0])]
                             if case.optics != "gaussian" else []),
        "psf-beads": lambda: ([(f"selfnet --psf (`selfnet psf` on {RECORDING['count']} beads, "  # noqa: ISC004
                                f"{RECORDING['photons']:g} photons peak)",
                                selfnet_method(ph, ours(psf=str(psf_from_beads(case, out, seed))))[0])]
                              if case.optics != "gaussian" else []),
        "psf-optics": lambda: ([("selfnet --psf (`selfnet psf --optics`, nominal optics)",
                                 selfnet_method(ph, ours(psf=str(psf_from_optics(case, out))))[0])]
                               if case.optics != "gaussian" else []),
        "psf-optics-fit": lambda: ([("selfnet --psf (`selfnet psf --optics --fit-depth`, nominal optics)",
                                     selfnet_method(ph, ours(psf=str(psf_from_optics(case, out, ph))))[0])]
                                   if case.optics != "gaussian" else []),
    }
    results = [row for name in METHODS if name in methods for row in runs[name]()]
    if "default" in methods:
        optics = "" if case.optics == "gaussian" else f"_{case.optics}"
        save_case_figure(out / f"{case.kind}{optics}_k{case.k:g}_ph{case.photons:g}_seed{seed}.png", ph, results)
    return ph, results


def psf_file(case: Case, out: Path, seed: int, *, bead: bool) -> Path:
    """The case's diffraction PSF as a calibrated TIFF; ``bead``: as a recorded bead image (Poisson noise on a background)."""
    psf = diffraction_psf(case.optics).astype(np.float64)
    name = f"psf_{case.optics}.tif"
    if bead:
        rng = np.random.default_rng(1000 + seed)
        psf = rng.poisson(psf / psf.max() * BEAD_PHOTONS + BEAD_BACKGROUND).astype(np.float64)
        name = f"psf_{case.optics}_bead{seed}.tif"
    path = out / name
    tifffile.imwrite(path, psf.astype(np.float32), imagej=True, resolution=(1 / DX_UM, 1 / DX_UM),
                     metadata={"spacing": DX_UM, "unit": "um", "axes": "ZYX"})
    return path


def psf_from_beads(case: Case, out: Path, seed: int) -> Path:
    """A simulated bead recording through the case's PSF (:data:`RECORDING`), distilled by ``selfnet.psf``."""
    opts = dict(RECORDING)
    shape, count, z_step = opts.pop("shape"), opts.pop("count"), opts.pop("z_step")
    stack = bead_recording(diffraction_psf(case.optics), shape, count, z_step=z_step, seed=2000 + seed, **opts)
    beads = out / f"beads_{case.optics}_{seed}.tif"
    tifffile.imwrite(beads, stack, imagej=True, resolution=(1 / DX_UM, 1 / DX_UM),
                     metadata={"spacing": z_step * DX_UM, "unit": "um", "axes": "ZYX"})
    average = selfnet.psf(beads, out / f"psf_{case.optics}_beads{seed}.tif", overwrite=True)
    print(f"<!-- {case.name} seed {seed}: {average.summary()} -->", flush=True)
    return average.path


def psf_from_optics(case: Case, out: Path, ph: Phantom | None = None) -> Path:
    """The PSF ``selfnet psf --optics`` computes from the nominal optics (:data:`NOMINAL`): what a user who
    knows the objective and the dye, not the aberrations, would give. With the phantom ``ph``, the depth is
    fitted to its raw stack (``--fit-depth``), the sample index being the one the user knows (:data:`SAMPLE_INDEX`)."""
    modality = "widefield" if case.optics == "widefield" else "confocal"
    optics = {"modality": modality, **NOMINAL}
    if ph is None:
        computed = selfnet.theoretical_psf(out / f"psf_{case.optics}_optics.tif", optics,
                                           spacing=(DX_UM, DX_UM, DX_UM), overwrite=True)
    else:
        optics["sample_index"] = SAMPLE_INDEX[case.optics]
        computed = selfnet.theoretical_psf(out / f"psf_{case.optics}_optics_fit.tif", optics, overwrite=True,
                                           fit_depth_to=selfnet.Volume(ph.raw, ph.spacing_raw))
    print(f"<!-- {case.name}: {computed.summary()} -->", flush=True)
    return computed.path


def fwhm_1d(profile: np.ndarray) -> float:
    """Full width at half maximum (px) of a peak at the centre of ``profile``, above its minimum."""
    c = len(profile) // 2
    c = c - 2 + int(np.argmax(profile[c - 2 : c + 3]))
    base = float(profile.min())
    half = base + 0.5 * (float(profile[c]) - base)
    left, right = c, c
    while left > 0 and profile[left - 1] > half:
        left -= 1
    while right < len(profile) - 1 and profile[right + 1] > half:
        right += 1
    if left == 0 or right == len(profile) - 1:
        return float("nan")
    lo = left - 1 + (half - profile[left - 1]) / (profile[left] - profile[left - 1])
    hi = right + (profile[right] - half) / (profile[right] - profile[right + 1])
    return float(hi - lo)


def bead_fwhm(volume: np.ndarray, centers: np.ndarray, axis: int, half_width: int = 11) -> float:
    """Median FWHM (px) along ``axis`` (0 = z, 2 = x) through the given bead centres."""
    widths = []
    for z, y, x in centers:
        index: list[int | slice] = [z, y, x]
        index[axis] = slice(int(index[axis]) - half_width, int(index[axis]) + half_width + 1)
        widths.append(fwhm_1d(np.asarray(volume[tuple(index)], dtype=np.float64)))
    return float(np.nanmedian(widths)) if widths else float("nan")


def print_bead_table(ph: Phantom, results: list[tuple[str, Result]]) -> dict[str, tuple[float, ...]]:
    """Per method on isolated beads: FWHM (the resolution figure), z shift and asymmetry of the peak
    (a restoration must not move objects or give them tails) and banding (background noise spread
    over z phases, in % of its mean, and the noise itself in % of the truth's peak)."""
    truth = ph.gt_lateral[ph.iso_slice()]
    centers = bead_centers(ph.gt[ph.iso_slice()])
    print(f"\nBeads: medians over {len(centers)} isolated beads ({ph.params['kind']}, k={ph.k:g}); voxels are the "
          "lateral pixel size; z shift + = deeper; asymmetry (deeper - shallower) / total.\n")
    print("| method | lateral FWHM px | axial FWHM px | axial / lateral | bead z shift vox | axial asymmetry | "
          "banding % | background noise % of peak |\n|---|---|---|---|---|---|---|---|")
    rows: dict[str, tuple[float, ...]] = {}
    for name, vol in [("ground truth (lateral PSF)", truth)] + [(n, r.volume) for n, r in results]:
        lat, ax = bead_fwhm(vol, centers, 2), bead_fwhm(vol, centers, 0)
        shift, asym = bead_z_shift(vol, truth, centers), axial_asymmetry(vol, centers)
        band, noise = (banding(vol, truth, ph.k), background_noise(vol, truth)) if vol is not truth else (0.0, 0.0)
        rows[name] = (ax / lat, shift, asym, band)
        print(f"| {name} | {lat:.2f} | {ax:.2f} | {ax / lat:.2f} | {shift:+.2f} | {asym:+.3f} | {100 * band:.0f} | "
              f"{100 * noise:.2f} |", flush=True)
    return rows


def background_noise(volume: np.ndarray, truth: np.ndarray, background: float = 0.01) -> float:
    """Standard deviation of the restoration (affine-fitted) where the truth is background, / the truth's peak."""
    mask = truth < background * float(truth.max())
    return float((affine_fit(volume, truth) - truth)[mask].std() / truth.max())


def print_learned_profile(ph: Phantom, results: list[tuple[str, Result]]) -> None:
    """G_A's learned axial blur on top of the lateral profile against the true axial profile (diffraction PSFs)."""
    psf = diffraction_psf(str(ph.params["optics"]))
    cz, cy, cx = (n // 2 for n in psf.shape)
    lateral = psf[cz, cy, :].astype(np.float64) / psf[cz, cy, :].sum()
    true_ax = axial_profile(psf)
    print(f"\nAxial profile ({ph.params['optics']} PSF): FWHM px, centroid px and skewness of the true one and of "
          "the lateral profile blurred by each model's learned z kernel; the 2D kernel its spectral fit chose.\n")
    print("| profile | FWHM px | centroid px | skewness | fitted kernel (core, tail share, tail width, cone) | "
          "evidence |\n|---|---|---|---|---|---|")
    print(f"| true axial PSF | {fwhm_1d(true_ax):.2f} | {_moment(true_ax, 1):+.2f} | {_skew(true_ax):+.2f} | | |")
    for name, res in results:
        if res.summary and res.summary.get("learned_axial_kernel"):
            prof = np.convolve(lateral, np.asarray(res.summary["learned_axial_kernel"]), mode="full")
            fitted = ", ".join(f"{v:g}" if isinstance(v, (int, float)) else str(v)
                               for v in res.summary.get("estimated_axial_kernel", {}).values())
            print(f"| {name} | {fwhm_1d(prof):.2f} | {_moment(prof, 1):+.2f} | {_skew(prof):+.2f} | {fitted} | "
                  f"{res.summary.get('axial_kernel_evidence')} |")


def print_axial_transfer(ph: Phantom, results: list[tuple[str, Result]]) -> None:
    """Per band of frequency along z, how much of the truth's detail each method restores (1 = all):
    where a restoration falls short of the oracle, and whether it blurs or over-sharpens."""
    truth = ph.gt_lateral[ph.iso_slice()]
    bands = [f"{lo:g}-{hi:g}" for lo, hi in itertools.pairwise(AXIAL_BANDS)]
    print(f"\nAxial transfer ({ph.params['kind']}, k={ph.k:g}): restored / true detail along z per band of frequency "
          "(cycles per voxel; the raw z sampling keeps up to 0.5/k)\n")
    print("| method | " + " | ".join(bands) + " |\n|---|" + "---|" * len(bands))
    for name, res in results:
        print(f"| {name} | " + " | ".join(f"{g:.2f}" for g in axial_transfer(res.volume, truth)) + " |", flush=True)


def _moment(profile: np.ndarray, order: int) -> float:
    t = np.arange(len(profile)) - len(profile) // 2
    p = profile / profile.sum()
    mean = float((p * t).sum())
    return mean if order == 1 else float((p * (t - mean) ** order).sum())


def _skew(profile: np.ndarray) -> float:
    return _moment(profile, 3) / max(_moment(profile, 2), 1e-12) ** 1.5


def save_case_figure(path: Path, ph: Phantom, results: list[tuple[str, Result]]) -> None:
    """XZ views of the key methods next to the ground truth, after affine fit, same contrast."""
    truth = ph.gt_lateral[ph.iso_slice()]
    y = int(np.argmax(truth.sum(axis=(0, 2))))
    keep = {"cubic z-interpolation", "Richardson-Lucy (true PSF) + cubic", "oracle: our D on true pairs",
            "published config (64 ch)", "**selfnet (default)**"}
    picked = [(n.strip("*"), r) for n, r in results if n in keep]
    images = [affine_fit(r.volume[:, y, :], truth[:, y, :]) for _, r in picked] + [truth[:, y, :]]
    save_panels(path, images, [n for n, _ in picked] + ["ground truth (lateral PSF)"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 small cases, 1-minute budgets (~12 min on 2 cores)")
    parser.add_argument("--hard", action="store_true",
                        help="issue 18's cases: sparse low-photon beads, diffraction PSFs, dz = dx")
    parser.add_argument("--minutes", type=float, default=None, help="training budget per trained method")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--seeds", default=None,
                        help="comma-separated seeds (phantom and training); adds a mean ± sd table per case and method")
    parser.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated subset of {', '.join(METHODS)}")
    parser.add_argument("--cases", default=None, help="comma-separated case numbers (1-based) to run, e.g. 1,2,3")
    parser.add_argument("--out", type=Path, default=Path("bench_out/quality"))
    args = parser.parse_args()
    minutes = args.minutes or (1.0 if args.quick else 3.0)
    cases = QUICK if args.quick else HARD if args.hard else FULL
    if unknown := set(args.methods.split(",")) - set(METHODS):
        parser.error(f"unknown methods: {', '.join(sorted(unknown))}")
    if args.cases:
        cases = [cases[int(i) - 1] for i in args.cases.split(",")]
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"# quality benchmark, {date.today()}, {len(os.sched_getaffinity(0))} of {os.cpu_count()} CPU cores "
          f"({platform.processor() or platform.machine()}), {torch.get_num_threads()} torch threads, device cpu, "
          f"torch {torch.__version__}, budget {minutes:g} min per trained method")
    seeds = [int(v) for v in args.seeds.split(",")] if args.seeds else [args.seed]
    print("\n| case | seed | method | PSNR (dB) | SSIM | z shift vox | train s | steps stage 1/2 (refine) | restore s |\n"
          "|---|---|---|---|---|---|---|---|---|")
    scores: dict[tuple[str, str], list[tuple[float, ...]]] = {}
    for case in cases:
        for seed in seeds:
            ph, results = run_case(case, minutes, seed, args.out, tuple(args.methods.split(",")))
            truth = ph.gt_lateral[ph.iso_slice()]
            for name, res in results:
                sc = score(res.volume, truth)
                shift = z_shift(res.volume, truth)
                scores.setdefault((case.name, name), []).append((sc.psnr, sc.ssim, shift))
                print(f"| {case.name} | {seed} | {name} | {sc.psnr:.2f} | {sc.ssim:.3f} | {shift:+.2f} | "
                      f"{res.train_s:.0f} | {res.steps} | {res.restore_s:.1f} |", flush=True)
            if "beads" in case.kind:
                for name, row in print_bead_table(ph, results).items():
                    scores.setdefault((case.name + " (beads)", name), []).append(row)
            if case.optics != "gaussian":
                print_learned_profile(ph, results)
            print_axial_transfer(ph, results)
    if len(seeds) > 1:
        print_seed_summary(scores, len(seeds))


def print_seed_summary(scores: dict[tuple[str, str], list[tuple[float, ...]]], n: int) -> None:
    """Mean ± standard deviation over seeds, per case and method (bead rows: their own four measures)."""
    print(f"\nOver {n} seeds (mean ± sd); bead rows: axial/lateral FWHM, bead z shift, asymmetry, banding.\n\n"
          "| case | method | PSNR (dB) / axial÷lateral | SSIM / bead z shift | z shift vox / asymmetry | banding |\n"
          "|---|---|---|---|---|---|")
    for (case, method), values in scores.items():
        cols = np.array(values, dtype=np.float64).T
        cells = [f"{c.mean():.3f} ± {c.std(ddof=1):.3f}" for c in cols]
        print(f"| {case} | {method} | {' | '.join(cells + [''] * (4 - len(cells)))} |")


if __name__ == "__main__":
    main()
