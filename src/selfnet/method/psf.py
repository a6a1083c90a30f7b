"""The axial kernel from a PSF the user measured (beads) or computed (PSF Generator, psfmodels).

Where the stack's spectra cannot tell the optics apart (a confocal PSF's tail looks Gaussian at the
frequencies a coarse z step samples), a PSF file says it outright. :func:`kernel_from_psf` turns it
into the same 2D (z, x) kernel :mod:`selfnet.method.kernel` fits: what turns an XY slice (blurred by
the PSF's in-focus plane) into an XZ slice (blurred by its XZ plane), on the stack's pixel grid.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from selfnet.errors import InputError
from selfnet.method.kernel import MAX_RADIUS, AxialKernel, profile_sigma

WIENER = 1e-3  # regularisation of the in-focus deconvolution, relative to its peak power
NOISE_SDS = 3.0  # a measured PSF's voxels below this many noise sds (of its border) are taken as empty
FORWARD_WIENER = 1e-4  # the same for the 3D forward kernel (the in-focus kernel covers the PSF's lateral band)
KEEP = 0.995  # share of the kernel's light its radius keeps
WIDEFIELD = 3.0  # an out-of-focus spread above this marks a wide-field PSF, whose central plane underestimates the haze


@dataclass(frozen=True, eq=False)
class MeasuredKernel:
    """A 2D (z, x) axial kernel taken from a PSF (z along rows, unit sum); not a fitted family member."""

    kernel: np.ndarray = field(repr=False)
    forward: np.ndarray | None = field(default=None, repr=False)  # the 3D blur of :func:`forward_kernel`, for refining

    @property
    def sigma(self) -> float:
        """Standard deviation (px) of the z profile."""
        return profile_sigma(self.profile())

    @property
    def gaussian(self) -> bool:
        """Never the plain Gaussian z blur of the physics prior: a PSF's kernel goes in as taps."""
        return False

    @property
    def radius(self) -> int:
        """Half-size (px) of :meth:`taps`."""
        return self.kernel.shape[0] // 2

    def taps(self, radius: int | None = None) -> np.ndarray:
        """The kernel cropped (or zero-padded) to ``(2 radius + 1)`` square, unit sum."""
        r = self.radius if radius is None else radius
        pad = max(r - self.radius, 0)
        k = np.pad(self.kernel, pad)
        c = k.shape[0] // 2
        k = k[c - r:c + r + 1, c - r:c + r + 1]
        return k / k.sum()

    def profile(self) -> np.ndarray:
        """The z profile (the kernel summed over x)."""
        return self.kernel.sum(axis=1)

    def as_dict(self) -> dict[str, float | str]:
        """What the model summary records: the source, the z profile's sd (px) and the radius."""
        return {"source": "psf", "sigma": round(self.sigma, 3), "radius": self.radius}


def kernel_from_psf(psf: np.ndarray, psf_spacing: tuple[float, float, float], pixel: float) -> MeasuredKernel:
    """The extra blur an XZ slice has over an XY slice, from a (Z, Y, X) PSF with voxel size ``psf_spacing``
    (µm), on a grid of ``pixel`` µm: the PSF's XZ plane through its peak Wiener-deconvolved by its
    in-focus XY plane (rotated so that y becomes z). A Gaussian PSF gives a z blur, a confocal one
    its tails, an aberrated one its skew.
    """
    iso = centred(_isotropic(_around_peak(_checked(psf), psf_spacing, pixel), psf_spacing, pixel))
    cz, cy, cx = peak(iso)
    r = min(cz, iso.shape[0] - 1 - cz, cy, iso.shape[1] - 1 - cy, cx, iso.shape[2] - 1 - cx, 3 * MAX_RADIUS)
    if r < 2:
        raise InputError("the PSF's brightest voxel is at its edge: crop the PSF around the bead")
    crop = iso[cz - r:cz + r + 1, cy - r:cy + r + 1, cx - r:cx + r + 1]
    axial, focus = crop[:, r, :], crop[r, :, :]
    kernel = _trim(np.clip(_deconvolve(axial / axial.sum(), focus / focus.sum()), 0.0, None))
    return MeasuredKernel(kernel / kernel.sum())


def forward_kernel(psf: np.ndarray, psf_spacing: tuple[float, float, float], pixel: float) -> np.ndarray:
    """The 3D blur that takes the isotropic target (the object through :func:`in_focus_kernel`) to what the
    microscope records (the object through the PSF), on cubic voxels of ``pixel`` µm: the PSF Wiener-deconvolved
    by its in-focus kernel, unit sum. Unlike the 2D kernel, it keeps the light from beside an axial slice.
    """
    iso = centred(_isotropic(_around_peak(_checked(psf), psf_spacing, pixel), psf_spacing, pixel))
    at = peak(iso)
    radii = [min(p, n - 1 - p, MAX_RADIUS) for p, n in zip(at, iso.shape)]
    if min(radii) < 2:
        raise InputError("the PSF's brightest voxel is at its edge: crop the PSF around the bead")
    box = iso[tuple(slice(p - r, p + r + 1) for p, r in zip(at, radii))]
    focus = _centred_box(in_focus_kernel(box), box.shape)
    p_hat, f_hat = np.fft.rfftn(np.fft.ifftshift(box)), np.fft.rfftn(np.fft.ifftshift(focus))
    eps = FORWARD_WIENER * float(np.abs(f_hat).max()) ** 2
    kernel = np.fft.fftshift(np.fft.irfftn(p_hat * np.conj(f_hat) / (np.abs(f_hat) ** 2 + eps), s=box.shape,
                                           axes=(0, 1, 2)))
    return (kernel / kernel.sum()).astype(np.float32)  # signed: clipping its ringing would double its light


def in_focus_kernel(psf: np.ndarray) -> np.ndarray:
    """Isotropic 3D kernel whose every axis has the PSF's lateral profile in its brightest plane (unit sum):
    what an ideal isotropic microscope with the same lateral resolution records, selfnet's target."""
    cz, cy, cx = peak(psf)
    plane = np.asarray(psf[cz], dtype=np.float64)
    yy, xx = np.indices(plane.shape)
    r_plane = np.hypot(yy - cy, xx - cx)
    half = min(cy, cx, plane.shape[0] - 1 - cy, plane.shape[1] - 1 - cx)
    radii = np.arange(0, half + 1)
    profile = np.array([plane[np.abs(r_plane - r) < 0.5].mean() for r in radii])
    zz, yy3, xx3 = np.indices((2 * half + 1,) * 3) - half
    kernel = np.interp(np.sqrt(zz**2 + yy3**2 + xx3**2), radii, np.clip(profile, 0.0, None), right=0.0)
    return (kernel / kernel.sum()).astype(np.float32)


def _centred_box(kernel: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """An odd centred ``kernel`` cropped or zero-padded to the odd ``shape``, centre kept."""
    out = np.zeros(shape, dtype=np.float64)
    src, dst = [], []
    for n_k, n_o in zip(kernel.shape, shape):
        h = min(n_k, n_o) // 2
        src.append(slice(n_k // 2 - h, n_k // 2 + h + 1))
        dst.append(slice(n_o // 2 - h, n_o // 2 + h + 1))
    out[tuple(dst)] = kernel[tuple(src)]
    return out


def out_of_focus_spread(psf: np.ndarray) -> float:
    """How many times wider along z the PSF's light per plane is than its profile through the peak.

    About 1.3 for confocal PSFs (aberrated too), 1 for a Gaussian; a wide-field PSF holds the same
    light in every plane, so its spread is limited only by the file's depth (5.4 for our 5 µm phantom PSF).
    """
    p = _checked(psf)
    _, cy, cx = peak(p)
    return fwhm_samples(p.sum(axis=(1, 2))) / max(fwhm_samples(p[:, cy, cx]), 1e-6)


def _checked(psf: np.ndarray) -> np.ndarray:
    """A finite 3D PSF with its background (the median of its border) and its noise floor taken off."""
    psf = np.asarray(psf, dtype=np.float64)
    if psf.ndim != 3 or min(psf.shape) < 3:
        raise InputError(f"a PSF must be a 3D (Z, Y, X) stack of at least 3 voxels each way, got shape {psf.shape}")
    if not np.isfinite(psf).all():
        raise InputError("the PSF contains NaN or Inf values")
    border = border_voxels(psf)
    level = np.median(border)
    noise = 1.4826 * np.median(np.abs(border - level))
    psf = psf - level
    if not (psf > NOISE_SDS * noise).any():
        raise InputError("the PSF holds no light above its border: is it a PSF stack?")
    return np.where(_bead_light(psf, NOISE_SDS * noise), psf, 0.0)


def _bead_light(psf: np.ndarray, floor: float) -> np.ndarray:
    """Voxels above ``floor`` joined to the peak: a recorded bead's noise elsewhere would add a haze to the kernel."""
    labels, _ = ndimage.label(psf > floor, structure=np.ones((3, 3, 3)))
    bead = labels[peak(np.where(labels > 0, psf, 0.0))]
    return labels == bead


def peak(psf: np.ndarray) -> tuple[int, ...]:
    """Index of the PSF's brightest 3x3x3 neighbourhood (one hot voxel of noise does not move it)."""
    return tuple(int(i) for i in np.unravel_index(np.argmax(ndimage.uniform_filter(psf, 3)), psf.shape))


def border_voxels(box: np.ndarray) -> np.ndarray:
    """The voxels on the six faces of a 3D array (edges counted more than once), flat: where its background is read."""
    return np.concatenate([box[[0, -1]].ravel(), box[:, [0, -1]].ravel(), box[:, :, [0, -1]].ravel()])


def subvoxel_peak(psf: np.ndarray) -> np.ndarray:
    """The PSF's peak to a fraction of a voxel: a parabola through the brightest voxel and its two neighbours, per axis."""
    at = peak(psf)
    return np.asarray(at, dtype=np.float64) + _subvoxel_offset(psf, at)


def _subvoxel_offset(psf: np.ndarray, at: tuple[int, ...]) -> np.ndarray:
    """Where the parabola through voxel ``at`` and its two neighbours peaks, per axis, relative to ``at``."""
    offsets = []
    for axis, p in enumerate(at):
        if not 0 < p < psf.shape[axis] - 1:
            offsets.append(0.0)
            continue
        left, right = list(at), list(at)
        left[axis], right[axis] = p - 1, p + 1
        lo, mid, hi = psf[tuple(left)], psf[at], psf[tuple(right)]
        curve = lo - 2 * mid + hi
        offsets.append(float(np.clip(0.5 * (lo - hi) / curve, -0.5, 0.5)) if curve < 0 else 0.0)
    return np.asarray(offsets)


def centred(psf: np.ndarray) -> np.ndarray:
    """The PSF shifted (cubic spline) so that its peak falls on a voxel centre.

    A bead between two planes would otherwise give a kernel off centre by up to half a voxel, and
    the restoration would move objects by as much.
    """
    offset = _subvoxel_offset(psf, peak(psf))
    if np.abs(offset).max() < 0.01:
        return psf
    return ndimage.shift(psf, -offset, order=3, mode="constant")


def _around_peak(psf: np.ndarray, spacing: tuple[float, float, float], pixel: float) -> np.ndarray:
    """The part of the PSF within reach of the largest kernel (bounds the resampling's cost)."""
    at = peak(psf)
    half = [math.ceil((3 * MAX_RADIUS + 4) * pixel / s) for s in spacing]
    return psf[tuple(slice(max(p - h, 0), p + h + 1) for p, h in zip(at, half))]


def _isotropic(psf: np.ndarray, spacing: tuple[float, float, float], pixel: float) -> np.ndarray:
    """The PSF resampled to cubic voxels of ``pixel`` µm (cubic spline)."""
    factors = [s / pixel for s in spacing]
    if any(f * n < 3 for f, n in zip(factors, psf.shape)):
        raise InputError(f"the PSF ({psf.shape} voxels of {spacing} µm) spans less than 3 pixels of "
                         f"{pixel:g} µm along some axis")
    if np.allclose(factors, 1.0):
        return psf
    return ndimage.zoom(psf, factors, order=3, grid_mode=True, mode="nearest")


def _deconvolve(axial: np.ndarray, focus: np.ndarray) -> np.ndarray:
    """``axial`` Wiener-deconvolved by ``focus`` (both centred, same odd size, unit sum), centred.

    Where ``focus`` carries no power (beyond the optical cutoff) the answer tends to a plain
    Gaussian z blur of the width the two profiles differ by, instead of to zero, which would ring.
    """
    n = axial.shape[0]
    extra = math.sqrt(max(profile_sigma(axial.sum(axis=1)) ** 2 - profile_sigma(focus.sum(axis=1)) ** 2, 0.0))
    prior = np.fft.fft2(np.fft.ifftshift(AxialKernel(extra).taps(n // 2)))
    a = np.fft.fft2(np.fft.ifftshift(axial))
    f = np.fft.fft2(np.fft.ifftshift(focus))
    power, eps = np.abs(f) ** 2, WIENER * float(np.abs(f).max()) ** 2
    k = np.fft.ifft2((a * np.conj(f) + eps * prior) / (power + eps)).real
    return np.fft.fftshift(k)


def _trim(kernel: np.ndarray) -> np.ndarray:
    """The smallest centred square (radius <= MAX_RADIUS) that keeps :data:`KEEP` of the light."""
    c = kernel.shape[0] // 2
    total = kernel.sum()
    for r in range(1, min(c, MAX_RADIUS) + 1):
        if kernel[c - r:c + r + 1, c - r:c + r + 1].sum() >= KEEP * total:
            break
    return kernel[c - r:c + r + 1, c - r:c + r + 1]


def fwhm_samples(profile: np.ndarray) -> float:
    """Width (samples) of a profile at half its maximum, by linear interpolation of both flanks."""
    p = np.asarray(profile, dtype=np.float64)
    i = int(np.argmax(p))
    half = p[i] / 2
    left = i
    while left > 0 and p[left - 1] > half:
        left -= 1
    right = i
    while right < len(p) - 1 and p[right + 1] > half:
        right += 1
    lo = left - (p[left] - half) / (p[left] - p[left - 1]) if left > 0 else float(left)
    hi = right + (p[right] - half) / (p[right] - p[right + 1]) if right < len(p) - 1 else float(right)
    return float(hi - lo)


def fwhm_um(psf: np.ndarray, spacing: tuple[float, float, float]) -> tuple[float, float, float]:
    """Full width at half maximum (µm) of the profiles through the PSF's peak along z, y and x."""
    widths = []
    for axis, step in enumerate(spacing):
        index: list = list(peak(psf))
        index[axis] = slice(None)
        widths.append(fwhm_samples(psf[tuple(index)]) * step)
    return widths[0], widths[1], widths[2]
