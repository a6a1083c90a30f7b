"""Phantoms seen through diffraction-model PSFs (psfmodels): confocal, wide-field, spherical aberration.

Every other phantom uses a Gaussian PSF, the very family the physics prior of G_A assumes. These
use vectorial PSFs (Aguet et al. 2009, via the ``psfmodels`` package, extra ``selfnet[phantoms]``):
a confocal PSF with a 1 Airy-unit pinhole, a wide-field PSF with its out-of-focus haze, and a
confocal PSF imaging 10 µm deep into water with an oil objective, whose spherical aberration makes
the axial profile long and asymmetric. The isotropic target is the object blurred by the in-focus
lateral profile rotated into 3D: what an ideal isotropic microscope with the same lateral
resolution would record.
"""

from __future__ import annotations

import numpy as np
from scipy.signal import fftconvolve

from selfnet.method.optics import vectorial_psf
from selfnet.method.psf import in_focus_kernel
from selfnet.phantoms.synthetic import Phantom, make_object, record

OPTICS: tuple[str, ...] = ("confocal", "widefield", "aberrated")
NA = 1.4
EMISSION_UM = 0.52
EXCITATION_UM = 0.488
DX_UM = 0.08


def diffraction_psf(optics: str, *, dx_um: float = DX_UM, half_z: int = 32, half_xy: int = 24) -> np.ndarray:
    """(2 half_z + 1, 2 half_xy + 1, 2 half_xy + 1) PSF on a cubic grid of ``dx_um``, unit sum, peak centred.

    Centring on the brightest voxel defines the in-focus plane (spherical aberration moves the
    peak away from the nominal focus); a restoration should keep objects where that peak puts them.
    """
    if optics not in OPTICS:
        raise ValueError(f"unknown optics {optics!r}; choose one of {', '.join(OPTICS)}")
    try:
        import psfmodels  # noqa: F401
    except ImportError:
        raise ImportError("diffraction-model phantoms need psfmodels: pip install 'selfnet[phantoms]'") from None
    aberrated = {"sample_index": 1.33, "depth_um": 10.0} if optics == "aberrated" else {}
    return vectorial_psf("widefield" if optics == "widefield" else "confocal", na=NA, emission_um=EMISSION_UM,
                         excitation_um=EXCITATION_UM, voxel_um=(dx_um, dx_um),
                         box_um=(2 * half_z * dx_um, 2 * half_xy * dx_um), **aberrated)


def axial_profile(psf: np.ndarray) -> np.ndarray:
    """The PSF's axial profile through its peak, unit sum: what G_A's learned z blur is compared with."""
    cy, cx = psf.shape[1] // 2, psf.shape[2] // 2
    prof = psf[:, cy, cx].astype(np.float64)
    return prof / prof.sum()


def make_optics_phantom(optics: str, kind: str = "mix", shape: tuple[int, int, int] = (128, 160, 160), *,
                        k: float = 4.0, photons: float = 300.0, background: float = 10.0, read_noise: float = 2.0,
                        offset: float = 100.0, gain: float = 1.0, seed: int = 0) -> Phantom:
    """An object of ``kind`` imaged through the ``optics`` PSF, every ``k``-th plane recorded."""
    obj = make_object(kind, shape, seed=seed)
    psf = diffraction_psf(optics)
    blurred = np.clip(fftconvolve(obj, psf, mode="same"), 0, None).astype(np.float32)
    kernel = in_focus_kernel(psf)
    ph = record(blurred, obj, lambda gt: np.clip(fftconvolve(gt, kernel, mode="same"), 0, None), k=k,
                photons=photons, background=background, read_noise=read_noise, offset=offset, gain=gain,
                dx_um=DX_UM, seed=seed)
    ph.params.update(kind=kind, optics=optics, NA=NA, emission_um=EMISSION_UM)
    return ph


def bead_recording(psf: np.ndarray, shape: tuple[int, int, int], count: int, *, z_step: int = 2,
                   photons: float = 2000.0, background: float = 20.0, seed: int = 0) -> np.ndarray:
    """A recorded bead stack (uint16): ``count`` beads at random sub-voxel positions imaged through
    ``psf`` (on the cubic grid of ``shape``), every ``z_step``-th plane kept, ``photons`` at a bead's
    peak over ``background``, Poisson noise, saturating at 65535. Beads lie a PSF's width apart and a half PSF from the edges.
    """
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    half = np.array(psf.shape) // 2
    image = np.zeros(shape, dtype=np.float64)
    centres: list[np.ndarray] = []
    for _ in range(200 * count):
        if len(centres) == count:
            break
        centre = rng.uniform(half, np.array(shape) - half - 1)
        if any((np.abs(centre - c) < half[None, :] * 2).all() for c in centres):
            continue
        centres.append(centre)
        base = np.floor(centre).astype(int)
        bead = ndimage.shift(psf.astype(np.float64), centre - base, order=3, mode="constant")
        image[tuple(slice(b - h, b + h + 1) for b, h in zip(base, half))] += bead
    if len(centres) < count:
        raise ValueError(f"only {len(centres)} of {count} beads fit in {shape} a PSF's width apart")
    counts = rng.poisson(np.clip(image, 0, None)[::z_step] / psf.max() * photons + background)
    return np.clip(counts, 0, np.iinfo(np.uint16).max).astype(np.uint16)  # a camera saturates
