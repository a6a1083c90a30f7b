"""Quality control without beads: per-axis resolution, isotropy and data consistency.

Resolution is read off the volume's own 3D power spectrum. Blur by a Gaussian PSF with
sigmas ``(s_z, s_xy, s_xy)`` multiplies the spectrum of a statistically isotropic object by
``exp(-4 pi^2 (s_xy^2 k_l^2 + s_z^2 k_z^2))``. Averaged over the lateral angle, the spectrum is a
map over ``(k_z, k_l)``; on every shell ``|k| = rho`` the object's share is the same, so

* the slope of ``log S`` against ``k_z^2`` within shells gives ``delta = s_z^2 - s_xy^2``
  whatever the object looks like (fixed-effects regression over shells, on cells at least five
  noise floors up: near the floor, keeping only cells that fluctuated up flattens the slope), and
* the shell profile, once the axial term is removed, is ``c - beta log rho - 4 pi^2 s_xy^2 rho^2``:
  a scale-free (power-law) object seen through the lateral PSF, which gives ``s_xy``.

Both are corrected for the spectral smearing of the Hann window. Resolutions are reported as
FWHM (``2.355 sigma``), never finer than the Nyquist limit (two voxels), and isotropy is
lateral / axial (1.0 = isotropic).

``s_xy`` is only as good as the power-law assumption: structures with their own smooth cross-section
(e.g. tubes about as wide as the PSF) cannot be told apart from blur by any spectrum, so their
lateral width, and isotropy, come out too high; ``delta`` is unaffected.

The data-consistency check blurs a restored volume along z with the axial degradation, samples it
on the raw planes and compares it with the raw stack.

numpy and scipy only.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
from scipy import fft as sfft
from scipy import ndimage
from scipy.optimize import lsq_linear

from selfnet.errors import InputError
from selfnet.method.resample import blur_matrix, taps_matrix

__all__ = [
    "FWHM_PER_SIGMA",
    "Comparison",
    "Consistency",
    "Resolution",
    "SpectrumMap",
    "check_volume",
    "compare",
    "consistency",
    "estimate_resolution",
    "extra_axial_sigma_px",
    "fitted_redegraded",
    "noise_variance",
    "redegrade",
    "score_consistency",
    "spectrum_map",
    "xz_spectrum",
]

FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))
_TILE = 128  # Welch tile edge (voxels); bounds the cost on large volumes
_MAX_TILES = 8
_SNR = 2.0  # spectrum cells used for the lateral profile: signal above this many noise floors
_SNR_AXIAL = 5.0  # ... and for the axial excess, whose k_z slope near-noise cells flatten (selection bias)
_DYNAMIC_RANGE = 1e-7  # ... and above this fraction of the strongest cell (noise-free volumes)
_MIN_SHELL_BINS = 2.5  # ignore the window's main lobe around k = 0
_MAX_SMEAR_GAIN = 2.0  # window correction may at most double a sigma^2
_EPS = 1e-6


# --------------------------------------------------------------------------------------------
# Spectra
# --------------------------------------------------------------------------------------------


@dataclass
class SpectrumMap:
    """Power spectral density averaged over the lateral angle: ``power[kz_index, kl_index]``.

    Frequencies in cycles/µm. ``counts`` is the number of 3D cells averaged in each map cell,
    ``noise`` the noise floor per ``kz`` (read off the highest lateral frequencies), ``tile``
    the Welch tile shape and ``tiles`` how many.
    """

    power: np.ndarray
    counts: np.ndarray
    kz: np.ndarray
    kl: np.ndarray
    noise: np.ndarray
    tile: tuple[int, int, int]
    tiles: int
    spacing: tuple[float, float, float]


def _hann(n: int) -> np.ndarray:
    """Hann window without its zero end points (so short axes keep all samples)."""
    return np.hanning(n + 2)[1:-1].astype(np.float32)


def _tile_starts(n: int, t: int) -> list[int]:
    """Start, middle and end tiles along one axis (one tile if the axis fits)."""
    return sorted({0, (n - t) // 2, n - t})


def _pick_tiles(volume: np.ndarray, shape: tuple[int, int, int], max_tiles: int) -> list[tuple[int, int, int]]:
    """Up to ``max_tiles`` tile origins, the ones with the most intensity variance first."""
    grid = [_tile_starts(n, t) for n, t in zip(volume.shape, shape)]
    origins = [(a, b, c) for a in grid[0] for b in grid[1] for c in grid[2]]
    if len(origins) <= max_tiles:
        return origins
    step = tuple(max(1, t // 16) for t in shape)
    scores = [float(np.var(np.asarray(volume[a:a + shape[0]:step[0], b:b + shape[1]:step[1],
                                              c:c + shape[2]:step[2]], dtype=np.float32)))
              for a, b, c in origins]
    order = np.argsort(scores)[::-1][:max_tiles]
    return [origins[i] for i in sorted(order)]


def _welch_psd(volume: np.ndarray, spacing: tuple[float, float, float], tile: int,
               max_tiles: int) -> tuple[np.ndarray, tuple[int, int, int], int]:
    """Mean Hann-windowed periodogram (PSD units, µm^3) over tiles; half spectrum along x."""
    shape = tuple(min(tile, n) for n in volume.shape)
    window = _hann(shape[0])[:, None, None] * _hann(shape[1])[None, :, None] * _hann(shape[2])[None, None, :]
    scale = float(np.prod(spacing)) / float(np.sum(window.astype(np.float64) ** 2))
    acc = None
    origins = _pick_tiles(volume, shape, max_tiles)  # type: ignore[arg-type]
    for a, b, c in origins:
        sub = np.asarray(volume[a:a + shape[0], b:b + shape[1], c:c + shape[2]], dtype=np.float32)
        sub = (sub - sub.mean()) * window
        power = np.abs(sfft.rfftn(sub, workers=1)) ** 2
        acc = power if acc is None else acc + power
    assert acc is not None
    return acc.astype(np.float64) * (scale / len(origins)), shape, len(origins)  # type: ignore[return-value]


def spectrum_map(volume: np.ndarray, spacing: tuple[float, float, float], *, tile: int = _TILE,
                 max_tiles: int = _MAX_TILES) -> SpectrumMap:
    """Cylindrically averaged 3D power spectrum of a ZYX volume with ``spacing=(dz, dy, dx)`` µm."""
    if len(volume.shape) != 3 or min(volume.shape) < 8:
        raise InputError(f"QC needs a 3D volume of at least 8 voxels per axis, got shape {tuple(volume.shape)}")
    psd, shape, tiles = _welch_psd(volume, spacing, tile, max_tiles)
    dz, dy, dx = spacing
    fz = np.abs(np.fft.fftfreq(shape[0], dz))
    fy = np.fft.fftfreq(shape[1], dy)
    fx = np.fft.rfftfreq(shape[2], dx)
    dkl = max(1.0 / (shape[1] * dy), 1.0 / (shape[2] * dx))
    kl_index = np.rint(np.hypot(fy[:, None], fx[None, :]) / dkl).astype(np.int64).ravel()
    n_kl = int(kl_index.max()) + 1
    kz_values = np.unique(np.round(fz, 12))
    kz_index = np.searchsorted(kz_values, np.round(fz, 12))
    power = np.zeros((len(kz_values), n_kl))
    counts = np.zeros_like(power)
    per_plane = np.bincount(kl_index, minlength=n_kl)
    for j in range(shape[0]):
        power[kz_index[j]] += np.bincount(kl_index, psd[j].ravel(), n_kl)
        counts[kz_index[j]] += per_plane
    power /= np.maximum(counts, 1)
    kl = np.arange(n_kl) * dkl
    nyquist = 0.5 / max(dy, dx)
    tail = (kl > 0.8 * nyquist) & (kl <= nyquist)
    if not tail.any():
        tail = kl >= kl[-1]
    noise = np.median(power[:, tail], axis=1)  # per k_z: z-interpolated noise is coloured along z
    return SpectrumMap(power, counts, kz_values, kl, noise, shape, tiles, (dz, dy, dx))  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# Resolution
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Resolution:
    """Per-axis resolution of a volume, estimated from its own spectrum.

    ``lateral_um``/``axial_um`` are FWHM in µm, not finer than two voxels (Nyquist);
    ``isotropy = lateral_um / axial_um``. ``sigma_*_um`` are the fitted Gaussian blurs,
    ``object_slope`` the fitted power-law exponent of the object spectrum, ``reliable`` is
    False (with ``note``) when the spectrum holds too little signal for a trustworthy fit.
    """

    lateral_um: float
    axial_um: float
    isotropy: float
    lateral_fwhm_um: float
    axial_fwhm_um: float
    sigma_lateral_um: float
    sigma_axial_um: float
    spacing: tuple[float, float, float]
    sampling_limited: tuple[str, ...] = ()
    object_slope: float = float("nan")
    noise_floor: float = float("nan")
    cells: int = 0
    reliable: bool = True
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict with rounded values."""
        out: dict[str, Any] = {}
        for key, value in asdict(self).items():
            if isinstance(value, float):
                out[key] = _round(value)
            elif isinstance(value, tuple):
                out[key] = [_round(v) if isinstance(v, float) else v for v in value]
            else:
                out[key] = value
        return out


def _round(value: float, digits: int = 4) -> float | None:
    """Round to ``digits`` significant digits; NaN and inf become None (valid JSON)."""
    if not math.isfinite(value):
        return None
    return float(f"{value:.{digits}g}")


@dataclass
class _Cells:
    """Usable spectrum cells: log signal, weights, k_z^2 and shell index."""

    y: np.ndarray
    w: np.ndarray
    kz2: np.ndarray
    shell: np.ndarray
    dk: float


def _usable_cells(spec: SpectrumMap, kz_max: float | None = None, snr: float = _SNR) -> _Cells:
    """Cells with signal ``snr`` noise floors above it, outside the window's main lobe, below ``kz_max``."""
    signal = spec.power - spec.noise[:, None]
    kl, kz = np.meshgrid(spec.kl, spec.kz)
    rho = np.hypot(kl, kz)
    dz, dy, dx = spec.spacing
    dkl = spec.kl[1] - spec.kl[0] if len(spec.kl) > 1 else 1.0
    dkz = 1.0 / (spec.tile[0] * dz)
    floor = np.maximum(snr * spec.noise[:, None], max(_DYNAMIC_RANGE * float(signal.max()), 1e-30))
    ok = (signal > floor) & (rho >= _MIN_SHELL_BINS * max(dkl, dkz)) & (kl <= 0.5 / max(dy, dx)) & (spec.counts > 0)
    if kz_max is not None:
        ok &= kz <= kz_max
    weights = spec.counts[ok] * (signal[ok] / spec.power[ok]) ** 2
    return _Cells(np.log(signal[ok]), weights, kz[ok] ** 2, np.rint(rho[ok] / dkl).astype(np.int64), dkl)


def _axial_excess(cells: _Cells) -> tuple[float, bool]:
    """``s_z^2 - s_xy^2`` (µm^2) from the within-shell slope of log power against k_z^2."""
    num = den = 0.0
    for g in np.unique(cells.shell):
        sel = cells.shell == g
        if sel.sum() < 2:
            continue
        w, x, y = cells.w[sel], cells.kz2[sel], cells.y[sel]
        xc = x - np.average(x, weights=w)
        num += float(np.sum(w * xc * (y - np.average(y, weights=w))))
        den += float(np.sum(w * xc**2))
    if den <= 0:
        return 0.0, False
    return -num / den / (4.0 * math.pi**2), True


def _shell_profile(cells: _Cells, delta: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Axially corrected mean log power per shell (contiguous run from the lowest shell)."""
    y = cells.y + 4.0 * math.pi**2 * delta * cells.kz2
    shells = np.unique(cells.shell)
    gaps = np.flatnonzero(np.diff(shells) > 1)
    if gaps.size:
        shells = shells[: gaps[0] + 1]
    rho, prof, weight = [], [], []
    for g in shells:
        sel = cells.shell == g
        rho.append(g * cells.dk)
        prof.append(np.average(y[sel], weights=cells.w[sel]))
        weight.append(cells.w[sel].sum())
    return np.array(rho), np.array(prof), np.array(weight)


def _lateral_sigma2(rho: np.ndarray, prof: np.ndarray, weight: np.ndarray) -> tuple[float, float]:
    """Fit ``c - beta log rho - 4 pi^2 s^2 rho^2`` (0 <= beta <= 5); returns (s^2, beta)."""
    sw = np.sqrt(weight / weight.max())
    design = np.stack([np.ones_like(rho), -np.log(rho), -4.0 * math.pi**2 * rho**2], axis=1) * sw[:, None]
    fit = lsq_linear(design, prof * sw, bounds=([-np.inf, 0.0, 0.0], [np.inf, 5.0, np.inf]))
    return float(fit.x[2]), float(fit.x[1])


def _unsmear(sigma2: float, length_um: float) -> tuple[float, bool]:
    """Undo the Hann window's spectral smearing of a Gaussian of variance ``sigma2`` (µm^2).

    The window widens the spectrum's variance by ``1 / (3 L^2)``; returns the corrected
    ``sigma2`` and whether the correction stayed within bounds.
    """
    if sigma2 <= 0:
        return sigma2, True
    tau2 = 1.0 / (8.0 * math.pi**2 * sigma2) - 1.0 / (3.0 * length_um**2)
    if tau2 <= 0 or 1.0 / (8.0 * math.pi**2 * tau2) > _MAX_SMEAR_GAIN * sigma2:
        return _MAX_SMEAR_GAIN * sigma2, False
    return 1.0 / (8.0 * math.pi**2 * tau2), True


def _report(sigma_l: float, sigma_a: float, spacing: tuple[float, float, float], **extra: Any) -> Resolution:
    """Turn sigmas (µm) into FWHM resolutions with the Nyquist limit and isotropy."""
    dz, dy, dx = spacing
    fwhm_l, fwhm_a = FWHM_PER_SIGMA * sigma_l, FWHM_PER_SIGMA * sigma_a
    limit_l, limit_a = 2.0 * max(dy, dx), 2.0 * dz
    limited = tuple(name for name, f, lim in (("lateral", fwhm_l, limit_l), ("axial", fwhm_a, limit_a)) if f < lim)
    lateral, axial = max(fwhm_l, limit_l), max(fwhm_a, limit_a)
    return Resolution(lateral, axial, lateral / axial, fwhm_l, fwhm_a, sigma_l, sigma_a, spacing,
                      sampling_limited=limited, **extra)


def _smear(sigma2: float, length_um: float) -> float:
    """The Hann window's widening of a Gaussian of variance ``sigma2`` (inverse of :func:`_unsmear`)."""
    if sigma2 <= 0:
        return sigma2
    return 1.0 / (8.0 * math.pi**2 * (1.0 / (8.0 * math.pi**2 * sigma2) + 1.0 / (3.0 * length_um**2)))


def estimate_resolution(volume: np.ndarray, spacing: tuple[float, float, float], *,
                        spectrum: SpectrumMap | None = None, kz_max: float | None = None,
                        lateral_fwhm_um: float | None = None) -> Resolution:
    """Lateral and axial resolution (FWHM, µm) and isotropy of a ZYX volume, from its spectrum.

    Parameters
    ----------
    volume : ZYX array (raw anisotropic or isotropic/restored)
    spacing : voxel size ``(dz, dy, dx)`` in µm
    spectrum : a precomputed :func:`spectrum_map` of the same volume (optional)
    kz_max : use axial frequencies up to this (cycles/µm) only, e.g. the raw stack's z Nyquist
        ``1 / (2 dz_raw)`` for a restoration of it: beyond it an interpolated volume holds only
        interpolation images, which would pass for detail
    lateral_fwhm_um : the lateral resolution when it is known from the optics (e.g. 0.51 λ / NA);
        then only the axial excess is measured, which does not depend on the sample. Use it for
        filament-like samples whose finest structures are as wide as the PSF: from the image alone
        their width reads as lateral blur and the isotropy comes out too high

    Returns
    -------
    Resolution
        Assumes the imaged structures have no preferred direction (as in most tissue); flat,
        layered specimens bias ``delta`` and therefore the axial estimate.
    """
    spacing = tuple(float(s) for s in spacing)  # type: ignore[assignment]
    spec = spectrum if spectrum is not None else spectrum_map(volume, spacing)
    cells = _usable_cells(spec, kz_max)
    notes = []
    delta, ok_delta = _axial_excess(_usable_cells(spec, kz_max, _SNR_AXIAL))
    if not ok_delta:
        notes.append("too little signal along z for an axial estimate")
    dz, dy, dx = spacing
    if lateral_fwhm_um is not None:
        sigma_l2 = (lateral_fwhm_um / FWHM_PER_SIGMA) ** 2
        sigma_a2, ok_a = _unsmear(max(_smear(sigma_l2, spec.tile[2] * dx) + delta, 0.25 * sigma_l2),
                                  spec.tile[0] * dz)
        if not ok_a:
            notes.append("blur too wide for the volume: the estimate is a lower bound")
        return _report(math.sqrt(sigma_l2), math.sqrt(max(sigma_a2, 0.0)), spacing,  # type: ignore[arg-type]
                       noise_floor=float(np.median(spec.noise)), cells=int(cells.y.size),
                       reliable=ok_delta and ok_a, note="; ".join(notes + ["lateral FWHM given, not measured"]))
    rho, prof, weight = _shell_profile(cells, delta)
    if len(rho) < 4:
        notes.append("too little signal above the noise for a lateral estimate")
        sigma_l2, beta = 0.0, float("nan")
    else:
        sigma_l2, beta = _lateral_sigma2(rho, prof, weight)
    sigma_a2 = max(sigma_l2 + delta, 0.25 * sigma_l2)
    sigma_l2, ok_l = _unsmear(sigma_l2, spec.tile[2] * dx)
    sigma_a2, ok_a = _unsmear(sigma_a2, spec.tile[0] * dz)
    if not (ok_l and ok_a):
        notes.append("blur too wide for the volume: the estimate is a lower bound")
    return _report(math.sqrt(max(sigma_l2, 0.0)), math.sqrt(max(sigma_a2, 0.0)), spacing,  # type: ignore[arg-type]
                   object_slope=beta, noise_floor=float(np.median(spec.noise)), cells=int(cells.y.size),
                   reliable=not notes, note="; ".join(notes))


def xz_spectrum(slices: Iterable[np.ndarray], spacing_um: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean log10 power of Hann-windowed XZ slices (z along rows) of an isotropic volume, DC centred.

    Returns ``(log_power[kz, kx], kz, kx)`` with frequencies in cycles/µm.
    """
    acc, count, shape = None, 0, (0, 0)
    for sl in slices:
        sl = np.asarray(sl, dtype=np.float32)
        if acc is None:
            shape = sl.shape
            window = _hann(shape[0])[:, None] * _hann(shape[1])[None, :]
            acc = np.zeros(shape)
        acc += np.abs(np.fft.fft2((sl - sl.mean()) * window)) ** 2
        count += 1
    if acc is None:
        raise ValueError("xz_spectrum needs at least one slice")
    acc = np.fft.fftshift(acc / count)
    kz = np.fft.fftshift(np.fft.fftfreq(shape[0], spacing_um))
    kx = np.fft.fftshift(np.fft.fftfreq(shape[1], spacing_um))
    return np.log10(acc + 1e-12 * acc.max() + 1e-30), kz, kx


# --------------------------------------------------------------------------------------------
# Data consistency
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Consistency:
    """Agreement of a restored volume, re-degraded along z and sampled on the raw planes, with the raw stack.

    ``psnr_db`` and ``correlation`` are measured after a least-squares gain/offset fit;
    ``ceiling_*`` (the noise limit) are what a perfect, noise-free restoration would score against the
    noisy raw planes. Scores above them mean the restoration keeps the raw noise.
    """

    psnr_db: float
    correlation: float
    ceiling_psnr_db: float
    ceiling_correlation: float
    sigma_px: float
    sigma_source: str
    planes: int
    plane_correlation: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (per-plane correlations left out)."""
        return {k: (_round(v) if isinstance(v, float) else v) for k, v in asdict(self).items()
                if k != "plane_correlation"}


def _sample_matrix(n_iso: int, ratio: float, n_raw: int) -> np.ndarray:
    """(n_raw, n_iso) linear interpolation at iso positions ``i * ratio``."""
    pos = np.arange(n_raw) * ratio
    lo = np.minimum(np.floor(pos + _EPS).astype(np.int64), n_iso - 1)
    hi = np.minimum(lo + 1, n_iso - 1)
    frac = np.clip(pos - lo, 0.0, 1.0)
    w = np.zeros((n_raw, n_iso))
    rows = np.arange(n_raw)
    np.add.at(w, (rows, lo), 1.0 - frac)
    np.add.at(w, (rows, hi), frac)
    return w


def redegrade(restored: np.ndarray, ratio: float, sigma_px: float, n_raw: int | None = None, *,
              block: int = 64, profile: np.ndarray | None = None) -> np.ndarray:
    """Blur an isotropic ZYX volume along z (Gaussian ``sigma_px``, iso px) and sample raw planes.

    Raw plane ``i`` lies at iso position ``i * ratio``; returns float32 ``(n_raw, Y, X)``. A
    ``profile`` (centred z taps, e.g. a model's learned axial kernel) replaces the Gaussian.
    """
    z, y, x = restored.shape
    n_fit = int(math.floor((z - 1) / ratio + _EPS)) + 1
    n_raw = n_fit if n_raw is None else min(n_raw, n_fit)
    blur = blur_matrix(z, max(sigma_px, 0.0)) if profile is None else taps_matrix(z, profile)
    weights = (_sample_matrix(z, ratio, n_raw) @ blur.astype(np.float64)).astype(np.float32)
    out = np.empty((n_raw, y, x), dtype=np.float32)
    for y0 in range(0, y, block):
        chunk = np.asarray(restored[:, y0:y0 + block], dtype=np.float32)
        out[:, y0:y0 + block] = np.tensordot(weights, chunk, axes=(1, 0))
    return out


def noise_variance(raw: np.ndarray, *, bins: int = 16, max_planes: int = 32) -> float:
    """Mean noise variance of a raw stack (its own units), robust to structure.

    Per XY plane, a 4-neighbour Laplacian residual isolates pixel-scale noise; its median
    absolute deviation in bins of local brightness gives the variance there, averaged over
    the voxels.
    """
    step = max(1, raw.shape[0] // max_planes)
    planes = np.asarray(raw[::step], dtype=np.float32)
    kernel = np.array([[0, -0.25, 0], [-0.25, 1, -0.25], [0, -0.25, 0]], dtype=np.float32)
    resid = ndimage.convolve(planes, kernel[None], mode="reflect")[:, 1:-1, 1:-1].ravel()
    local = ndimage.uniform_filter(planes, (1, 5, 5))[:, 1:-1, 1:-1].ravel()
    edges = np.unique(np.percentile(local, np.linspace(0, 100, bins + 1)))
    which = np.clip(np.digitize(local, edges[1:-1]), 0, max(len(edges) - 2, 0))
    total = count = 0.0
    for b in np.unique(which):
        sel = resid[which == b]
        mad = float(np.median(np.abs(sel - np.median(sel))))
        total += (1.4826 * mad) ** 2 / 1.25 * sel.size
        count += sel.size
    return total / max(count, 1.0)


def _subsample(data: np.ndarray, max_values: int = 2_000_000) -> np.ndarray:
    """A strided float64 sample of a (possibly memory-mapped or lazy) array, read plane-wise."""
    per_plane = max(1, int(np.prod(data.shape[1:])))
    z_step = max(1, int(data.shape[0] * per_plane // (max_values * 4)))
    planes = np.asarray(data[::z_step], dtype=np.float64).ravel()
    return planes[:: max(1, planes.size // max_values)]


def fitted_redegraded(raw: np.ndarray, restored: np.ndarray, ratio: float, sigma_px: float,
                      profile: np.ndarray | None = None) -> np.ndarray:
    """``restored`` re-degraded onto the raw planes, then gain/offset-fitted to ``raw`` (float32).

    The least-squares fit ``a * back + b ~ raw`` absorbs intensity scale and background.
    """
    if raw.shape[1:] != restored.shape[1:]:
        raise InputError(f"restored volume's YX size {restored.shape[1:]} does not match the raw stack's "
                         f"{raw.shape[1:]}")
    back = redegrade(restored, ratio, sigma_px, raw.shape[0], profile=profile)
    sums = np.zeros(5)  # n, sum p, sum t, sum p^2, sum p t
    for i in range(back.shape[0]):
        p = back[i].astype(np.float64)
        t = np.asarray(raw[i], dtype=np.float64)
        sums += (p.size, p.sum(), t.sum(), np.dot(p.ravel(), p.ravel()), np.dot(p.ravel(), t.ravel()))
    n, sp, st, spp, spt = sums
    var_p = spp - sp * sp / n
    a = (spt - sp * st / n) / var_p if var_p > 0 else 0.0
    b = (st - a * sp) / n
    back *= np.float32(a)
    back += np.float32(b)
    return back


def _plane_stats(raw: np.ndarray, fitted: np.ndarray) -> tuple[float, float, list[float]]:
    """Mean squared error, global and per-plane Pearson correlation, plane by plane."""
    sq = n = 0.0
    sums = np.zeros(5)  # sum t, sum f, sum t^2, sum f^2, sum t f
    per_plane = []
    for i in range(fitted.shape[0]):
        t = np.asarray(raw[i], dtype=np.float64).ravel()
        f = fitted[i].astype(np.float64).ravel()
        sq += float(np.sum((f - t) ** 2))
        n += t.size
        sums += (t.sum(), f.sum(), np.dot(t, t), np.dot(f, f), np.dot(t, f))
        per_plane.append(_corr(t, f))
    st, sf, stt, sff, stf = sums
    cov = stf - st * sf / n
    den = math.sqrt(max(stt - st * st / n, 0.0) * max(sff - sf * sf / n, 0.0))
    return sq / n, (cov / den if den > 0 else 0.0), per_plane


def score_consistency(raw: np.ndarray, fitted: np.ndarray, sigma_px: float, sigma_source: str) -> Consistency:
    """PSNR / correlation of raw planes vs :func:`fitted_redegraded`, with the noise ceiling."""
    target = raw[: fitted.shape[0]]
    sample = _subsample(target)
    lo, hi = np.percentile(sample, (0.1, 99.9))
    peak = float(hi - lo) if hi > lo else float(sample.max() - sample.min()) or 1.0
    mse, corr, planes = _plane_stats(target, fitted)
    noise = noise_variance(raw)
    var = float(sample.var())
    return Consistency(
        psnr_db=10.0 * math.log10(peak**2 / mse) if mse > 0 else float("inf"),
        correlation=corr,
        ceiling_psnr_db=10.0 * math.log10(peak**2 / noise) if noise > 0 else float("inf"),
        ceiling_correlation=math.sqrt(max(var - noise, 0.0) / var) if var > 0 else 0.0,
        sigma_px=float(sigma_px), sigma_source=sigma_source, planes=int(fitted.shape[0]),
        plane_correlation=planes,
    )


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation (0 for constant inputs)."""
    a = a.astype(np.float64).ravel()
    b = b.astype(np.float64).ravel()
    a = a - a.mean()
    b = b - b.mean()
    den = math.sqrt(float(np.dot(a, a)) * float(np.dot(b, b)))
    return float(np.dot(a, b)) / den if den > 0 else 0.0


def consistency(raw: np.ndarray, restored: np.ndarray, ratio: float, sigma_px: float, *,
                sigma_source: str = "given", profile: np.ndarray | None = None) -> Consistency:
    """Compare ``raw`` with ``restored`` re-degraded (z blur ``sigma_px`` iso px) on the raw planes.

    Parameters
    ----------
    raw : raw ZYX stack, plane ``i`` at iso position ``i * ratio``
    restored : isotropic ZYX restoration of it (lateral pixel size on every axis)
    ratio : dz / dx of the raw stack
    sigma_px : extra axial blur of the raw data relative to the restoration, in iso pixels
    sigma_source : where ``sigma_px`` came from (reported)
    profile : the z blur's taps when it is not Gaussian (``sigma_px`` is then its width, reported)
    """
    fitted = fitted_redegraded(raw, restored, ratio, sigma_px, profile)
    return score_consistency(raw, fitted, sigma_px, sigma_source)


def extra_axial_sigma_px(raw_res: Resolution, restored_res: Resolution, dx_um: float) -> float:
    """Axial blur (iso px) that turns the restoration's z resolution into the raw stack's.

    ``sqrt(s_z,raw^2 - s_z,restored^2) / dx``, 0 when the restoration is not sharper.
    """
    diff = raw_res.sigma_axial_um**2 - restored_res.sigma_axial_um**2
    return math.sqrt(max(diff, 0.0)) / dx_um


# --------------------------------------------------------------------------------------------
# Whole checks
# --------------------------------------------------------------------------------------------


def check_volume(data: np.ndarray, spacing: tuple[float, float, float], label: str = "volume") -> None:
    """Refuse what QC cannot measure: not 3D, fewer than 8 voxels on an axis, NaN/Inf, constant."""
    if data.ndim != 3:
        raise InputError(f"{label} has {data.ndim} dimensions {tuple(data.shape)}: QC needs a ZYX volume")
    if min(data.shape) < 8:
        raise InputError(f"{label} has shape {tuple(data.shape)}: QC needs at least 8 voxels along each axis")
    if not all(math.isfinite(float(s)) and float(s) > 0 for s in spacing):
        raise InputError(f"{label}: voxel size {tuple(spacing)} µm must be positive")
    sample = _subsample(data)
    if not np.isfinite(sample).all():
        raise InputError(f"{label} contains NaN or Inf values")
    if sample.min() == sample.max() and float(np.min(data)) == float(np.max(data)):
        raise InputError(f"{label} is constant: there is nothing to measure")


@dataclass
class Comparison:
    """Raw stack vs its isotropic restoration: resolutions before/after and data consistency."""

    before: Resolution
    after: Resolution
    consistency: Consistency
    fitted: np.ndarray | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (the fitted array is left out)."""
        return {"before": self.before.to_dict(), "after": self.after.to_dict(),
                "consistency": self.consistency.to_dict(),
                "isotropy_gain": _round(self.after.isotropy / self.before.isotropy)}


def _lateral_unusable(before: Resolution, after: Resolution, given: float | None) -> bool:
    """The restoration's lateral estimate hit the sampling limit while the raw one did not.

    A restoration cannot be sharper in XY than the planes it was learnt from; a sampling-limited
    lateral figure there means a denoised spectrum fooled the fit, and isotropy would read too low.
    """
    return (given is None and "lateral" in after.sampling_limited and "lateral" not in before.sampling_limited
            and before.reliable)


def _against_raw_lateral(restored: np.ndarray, spacing: tuple[float, float, float],
                         raw_spacing: tuple[float, float, float], before: Resolution,
                         spec: SpectrumMap) -> Resolution:
    """The restoration's axial resolution as its axial excess over the raw stack's lateral resolution."""
    res = estimate_resolution(restored, spacing, spectrum=spec, kz_max=0.5 / raw_spacing[0],
                              lateral_fwhm_um=before.lateral_um)
    note = ("lateral estimate of the restoration at the sampling limit: axial measured as its excess over "
            "the raw lateral resolution")
    kept = [part for part in res.note.split("; ") if part and not part.startswith("lateral FWHM given")]
    return replace(res, note="; ".join(kept + [note]))


def compare(raw: np.ndarray, raw_spacing: tuple[float, float, float], restored: np.ndarray,
            restored_spacing: tuple[float, float, float], *, sigma_px: float | None = None,
            sigma_source: str | None = None, keep_fitted: bool = False,
            lateral_fwhm_um: float | None = None, profile: np.ndarray | None = None) -> Comparison:
    """Resolution of ``raw`` and of its restoration, and the restoration's consistency with ``raw``.

    The restoration is analysed below the raw z Nyquist frequency only (what the raw planes can
    support). Without ``sigma_px`` (iso px), the re-degradation blur is
    :func:`extra_axial_sigma_px` of the two resolution estimates; a ``profile`` (z taps, with
    ``sigma_px`` its width) re-degrades with a model's own non-Gaussian axial blur.
    """
    ratio = raw_spacing[0] / restored_spacing[0]
    if abs(restored_spacing[0] - restored_spacing[2]) > 0.05 * restored_spacing[2]:
        raise InputError(f"the restored volume is not isotropic (voxel {tuple(restored_spacing)} µm)")
    if raw.shape[1:] != restored.shape[1:]:
        raise InputError(f"restored volume's YX size {tuple(restored.shape[1:])} does not match the raw "
                         f"stack's {tuple(raw.shape[1:])}")
    before = estimate_resolution(raw, raw_spacing, lateral_fwhm_um=lateral_fwhm_um)
    spec = spectrum_map(restored, restored_spacing)  # measured once, read again by the fallback below
    after = estimate_resolution(restored, restored_spacing, spectrum=spec, kz_max=0.5 / raw_spacing[0],
                                lateral_fwhm_um=lateral_fwhm_um)
    if _lateral_unusable(before, after, lateral_fwhm_um):
        after = _against_raw_lateral(restored, restored_spacing, raw_spacing, before, spec)
    if sigma_px is None:
        sigma_px, profile = extra_axial_sigma_px(before, after, restored_spacing[2]), None
        sigma_source = sigma_source or "estimated from the raw and restored spectra"
    fitted = fitted_redegraded(raw, restored, ratio, sigma_px, profile)
    score = score_consistency(raw, fitted, sigma_px, sigma_source or "given")
    return Comparison(before, after, score, fitted if keep_fitted else None)
