"""Synthetic anisotropic fluorescence stacks with known ground truth.

An isotropic object is rendered on a grid with lateral pixel size ``dx``, blurred with an
anisotropic Gaussian PSF, subsampled along z by a (possibly non-integer) factor ``k`` and
turned into camera counts with Poisson shot noise, Gaussian read noise, offset and gain.
The result feeds ``selfnet demo``, the tests and the quality benchmarks, which all need a
volume whose ideal restoration is known exactly.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tifffile
from scipy.ndimage import gaussian_filter, gaussian_filter1d

__all__ = [
    "KINDS",
    "Phantom",
    "acquire",
    "make_object",
    "make_phantom",
    "n_raw_planes",
    "record",
    "save_phantom",
]

KINDS: tuple[str, ...] = ("neurites", "nuclei", "beads", "sparse-beads", "mix")

_EPS = 1e-6
_TRUNCATE = 3.5  # Object rendering only: kernels cut at 3.5 sigma (< 0.1 % mass), ~15 % faster.
_NOISE_STREAM = 0x5E1F  # Separates the acquisition noise stream from the object stream.
_UINT16_MAX = 65535

# Neurites: tube cross-section sigmas (px) and how often each class is drawn (thin ones dominate).
_TUBE_SIGMAS: tuple[float, ...] = (0.5, 0.9, 1.5, 2.5)
_TUBE_PROBS: tuple[float, ...] = (0.35, 0.35, 0.2, 0.1)
_STEP = 0.5  # Spacing of the points deposited along a curve, px.
_FG_THRESHOLD = 0.1  # Object value above which a voxel counts as "clearly foreground".


# --------------------------------------------------------------------------------------------
# Geometry helpers
# --------------------------------------------------------------------------------------------


def _random_unit(rng: np.random.Generator, n: int | None = None) -> np.ndarray:
    """Uniform random direction(s) on the sphere, ZYX order."""
    v = rng.standard_normal((1 if n is None else n, 3))
    v /= np.linalg.norm(v, axis=1, keepdims=True) + 1e-12
    return v[0] if n is None else v


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    """Uniform random 3x3 rotation matrix (QR of a Gaussian matrix, sign fixed)."""
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    q *= np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def _inside(points: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """Mask of points whose trilinear footprint lies fully inside the grid."""
    upper = np.asarray(shape, dtype=np.float64) - 1.0
    return np.all((points >= 0.0) & (points <= upper), axis=1)


def _inside_run(points: np.ndarray, shape: tuple[int, int, int], anchor: int) -> np.ndarray:
    """The contiguous stretch of ``points`` around index ``anchor`` that stays inside the grid.

    Curves are clipped at their first exit so that a curve leaving and re-entering the
    volume does not produce disconnected fragments.
    """
    ok = _inside(points, shape)
    if not ok[anchor]:
        return points[:0]
    outside = np.flatnonzero(~ok)
    before = outside[outside < anchor]
    after = outside[outside > anchor]
    lo = before[-1] + 1 if before.size else 0
    hi = after[0] if after.size else len(points)
    return points[lo:hi]


def _walk(
    rng: np.random.Generator,
    start: np.ndarray,
    direction: np.ndarray,
    n_steps: int,
    wiggle: float,
    corr_steps: float,
) -> np.ndarray:
    """Smooth random walk with momentum: a drift direction plus correlated jitter.

    The heading at each step is ``direction + wiggle * smooth_noise`` (normalised), where the
    noise is white noise smoothed over ``corr_steps`` steps and rescaled to unit std, so the
    curve bends gently but keeps crossing the volume. Returns ``(n_steps + 1, 3)`` points.
    """
    noise = gaussian_filter1d(rng.standard_normal((n_steps, 3)), corr_steps, axis=0, mode="nearest")
    noise *= math.sqrt(2.0 * math.sqrt(math.pi) * corr_steps)  # unit std after smoothing
    heading = direction[None, :] + wiggle * noise
    heading /= np.linalg.norm(heading, axis=1, keepdims=True) + 1e-12
    steps = np.vstack([np.zeros((1, 3)), heading * _STEP])
    return start[None, :] + np.cumsum(steps, axis=0)


def _splat(
    points: np.ndarray, weights: np.ndarray, shape: tuple[int, int, int]
) -> np.ndarray:
    """Deposit weighted points on the grid with trilinear weights (one ``bincount``)."""
    base = np.floor(points).astype(np.int64)
    upper = np.asarray(shape, dtype=np.int64) - 2
    base = np.clip(base, 0, np.maximum(upper, 0))
    frac = np.clip(points - base, 0.0, 1.0)
    flat_parts: list[np.ndarray] = []
    weight_parts: list[np.ndarray] = []
    for corner in np.ndindex(2, 2, 2):
        c = np.asarray(corner)
        w = weights * np.prod(np.where(c == 1, frac, 1.0 - frac), axis=1)
        idx = np.minimum(base + c, np.asarray(shape) - 1)
        flat_parts.append(np.ravel_multi_index(tuple(idx.T), shape))
        weight_parts.append(w)
    size = int(np.prod(shape))
    acc = np.bincount(
        np.concatenate(flat_parts), weights=np.concatenate(weight_parts), minlength=size
    )
    return acc.astype(np.float32).reshape(shape)


def _normalise(vol: np.ndarray) -> np.ndarray:
    """Scale a non-negative volume to max 1 (float32, in place when possible)."""
    vol = np.clip(vol, 0.0, None, out=vol).astype(np.float32, copy=False)
    peak = float(vol.max())
    if peak > 0:
        vol /= peak
    return vol


# --------------------------------------------------------------------------------------------
# Neurites
# --------------------------------------------------------------------------------------------


@dataclass
class _Curve:
    """One rendered curve: centreline points, their intensities and a tube-class index."""

    points: np.ndarray
    intensity: np.ndarray
    tube: int


def _tube_area(sigma: float, intensity: float) -> float:
    """Cross-section (px^2) of a Gaussian tube that lies above the foreground threshold."""
    if intensity <= _FG_THRESHOLD:
        return 0.0
    radius = sigma * math.sqrt(2.0 * math.log(intensity / _FG_THRESHOLD))
    return math.pi * radius**2


def _curve_intensity(rng: np.random.Generator, n: int, base: float) -> np.ndarray:
    """Per-point brightness: ``base`` with a slow +-20 % modulation along the curve."""
    mod = gaussian_filter1d(rng.standard_normal(n), 12.0, mode="nearest") * math.sqrt(
        2.0 * math.sqrt(math.pi) * 12.0
    )
    return (base * (1.0 + 0.2 * mod)).clip(0.2, 1.2)


def _main_curve(rng: np.random.Generator, shape: tuple[int, int, int]) -> _Curve | None:
    """A curve through a random interior point, walked both ways until it leaves the volume."""
    diag = float(np.linalg.norm(shape))
    n_steps = int(math.ceil(1.2 * diag / _STEP))
    start = rng.uniform(0.1, 0.9, 3) * (np.asarray(shape) - 1.0)
    direction = _random_unit(rng)
    wiggle = rng.uniform(0.3, 0.9)
    fwd = _walk(rng, start, direction, n_steps, wiggle, 16.0)
    bwd = _walk(rng, start, -direction, n_steps, wiggle, 16.0)
    points = _inside_run(np.vstack([bwd[::-1], fwd[1:]]), shape, n_steps)
    if len(points) < 4:
        return None
    tube = int(rng.choice(len(_TUBE_SIGMAS), p=_TUBE_PROBS))
    return _Curve(points, _curve_intensity(rng, len(points), rng.uniform(0.45, 1.0)), tube)


def _branch(rng: np.random.Generator, parent: _Curve, shape: tuple[int, int, int]) -> _Curve | None:
    """A thinner side branch leaving ``parent`` at a random point at an oblique angle."""
    n = len(parent.points)
    at = int(rng.integers(1, n - 1))
    tangent = parent.points[at + 1] - parent.points[at - 1]
    tangent /= np.linalg.norm(tangent) + 1e-12
    direction = tangent + 1.2 * _random_unit(rng)
    direction /= np.linalg.norm(direction) + 1e-12
    length = rng.uniform(0.15, 0.6) * float(np.linalg.norm(shape))
    walk = _walk(rng, parent.points[at], direction, int(length / _STEP) + 1, 0.6, 12.0)
    points = _inside_run(walk, shape, 0)
    if len(points) < 4:
        return None
    tube = int(rng.integers(0, parent.tube + 1))
    level = float(parent.intensity[at]) * rng.uniform(0.6, 1.0)
    return _Curve(points, _curve_intensity(rng, len(points), level), tube)


def _curve_coverage(curve: _Curve) -> float:
    """Estimated number of clearly-foreground voxels the curve adds."""
    length = _STEP * (len(curve.points) - 1)
    return length * _tube_area(_TUBE_SIGMAS[curve.tube], float(np.mean(curve.intensity)))


def _neurite_curves(
    rng: np.random.Generator, shape: tuple[int, int, int], fraction: float
) -> list[_Curve]:
    """Draw main curves and their branches until the foreground budget is spent.

    A family that would overshoot the budget by more than 15 % is dropped, which keeps the
    foreground fraction on target in small volumes where one curve is a large share.
    """
    budget = fraction * float(np.prod(shape))
    curves: list[_Curve] = []
    covered = 0.0
    for _ in range(2000):
        if covered >= 0.95 * budget:
            break
        main = _main_curve(rng, shape)
        if main is None:
            continue
        family = [main]
        for _ in range(int(rng.poisson(1.2))):
            child = _branch(rng, main, shape)
            if child is not None:
                family.append(child)
        added = sum(_curve_coverage(c) for c in family)
        if covered + added <= 1.15 * budget or not curves:
            curves.extend(family)
            covered += added
    return curves


def _render_curves(curves: list[_Curve], shape: tuple[int, int, int]) -> np.ndarray:
    """Render curves as Gaussian tubes: splat points per tube class, then blur each class.

    A line of points spaced ``_STEP`` blurred by a 3D Gaussian of variance ``s2`` has a
    centreline value of ``1 / (_STEP * 2 pi s2)``; weights undo this so the centreline equals
    the curve intensity. Trilinear splatting adds ~1/6 px^2 of variance per axis.
    """
    out = np.zeros(shape, dtype=np.float32)
    for tube, sigma in enumerate(_TUBE_SIGMAS):
        members = [c for c in curves if c.tube == tube]
        if not members:
            continue
        points = np.concatenate([c.points for c in members])
        level = np.concatenate([c.intensity for c in members])
        var = sigma**2 + 1.0 / 6.0
        weights = level * _STEP * 2.0 * math.pi * var
        layer = _splat(points, weights, shape)
        out += gaussian_filter(layer, sigma, mode="reflect", truncate=_TRUNCATE)
        del layer
    np.minimum(out, 1.0, out=out)  # crossings saturate instead of spiking
    return out


def _neurites(rng: np.random.Generator, shape: tuple[int, int, int], fraction: float) -> np.ndarray:
    """Thin tubular network: smooth branching curves in all directions, radii 0.5-2.5 px."""
    return _normalise(_render_curves(_neurite_curves(rng, shape, fraction), shape))


# --------------------------------------------------------------------------------------------
# Nuclei
# --------------------------------------------------------------------------------------------


def _place_nuclei(
    rng: np.random.Generator, shape: tuple[int, int, int], fraction: float
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Random non-overlapping ellipsoid centres and semi-axes filling ~``fraction`` of the volume.

    Radii are 8-20 px, scaled down in volumes smaller than ~96 px so that several fit.
    """
    dims = np.asarray(shape, dtype=np.float64)
    scale = float(np.clip(min(shape) / 96.0, 0.2, 1.0))
    budget = fraction * float(np.prod(shape))
    placed: list[tuple[np.ndarray, np.ndarray]] = []
    filled = 0.0
    for _ in range(4000):
        if filled >= budget:
            break
        radius = rng.uniform(8.0, 20.0) * scale
        axes = radius * np.array([1.0, rng.uniform(0.7, 1.0), rng.uniform(0.55, 0.85)])
        centre = rng.uniform(0.0, 1.0, 3) * (dims - 1.0)
        far = all(
            np.linalg.norm(centre - c) > 1.05 * (axes.max() + a.max()) for c, a in placed
        )
        if far:
            placed.append((centre, axes))
            filled += 4.0 / 3.0 * math.pi * float(np.prod(axes))
    return placed


def _render_nucleus(
    rng: np.random.Generator, out: np.ndarray, centre: np.ndarray, axes: np.ndarray
) -> None:
    """Draw one rotated ellipsoid into ``out`` (max-composited in its bounding box).

    Interior: dim, textured by smoothed noise. Rim: a bright ~1 px membrane at the surface.
    """
    reach = axes.max() + 2.0
    lo = np.maximum(np.floor(centre - reach).astype(int), 0)
    hi = np.minimum(np.ceil(centre + reach).astype(int) + 1, out.shape)
    if np.any(hi <= lo):
        return
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    grid = np.stack(np.meshgrid(*(np.arange(a, b) for a, b in zip(lo, hi)), indexing="ij"), -1)
    local = (grid - centre) @ _random_rotation(rng)  # coordinates in the ellipsoid frame
    rho = np.sqrt(np.sum((local / axes) ** 2, axis=-1))
    depth = (1.0 - rho) * float(axes.mean())  # ~ signed distance to the surface, px
    texture = gaussian_filter(rng.standard_normal(depth.shape), 1.5, mode="reflect")
    texture /= texture.std() + 1e-12
    body = rng.uniform(0.3, 0.5) * (1.0 + 0.35 * texture).clip(0.2, None)
    body /= 1.0 + np.exp(-np.clip(depth / 0.5, -50.0, 50.0))  # soft edge
    rim = rng.uniform(0.8, 1.0) * np.exp(-((depth - 0.7) ** 2) / (2.0 * 0.6**2))
    value = np.minimum(body + rim, 1.0).astype(np.float32)
    np.maximum(out[box], value, out=out[box])


def _nuclei(rng: np.random.Generator, shape: tuple[int, int, int], fraction: float) -> np.ndarray:
    """Ellipsoidal nuclei with textured interior and bright thin rim."""
    out = np.zeros(shape, dtype=np.float32)
    for centre, axes in _place_nuclei(rng, shape, fraction):
        _render_nucleus(rng, out, centre, axes)
    return _normalise(out)


# --------------------------------------------------------------------------------------------
# Beads
# --------------------------------------------------------------------------------------------


def _beads(rng: np.random.Generator, shape: tuple[int, int, int], per_voxel: float) -> np.ndarray:
    """Sparse single-voxel point sources of varying brightness, kept away from the borders.

    Single voxels are the ideal sub-resolution emitter: once blurred they show the PSF itself.
    """
    out = np.zeros(shape, dtype=np.float32)
    margin = np.array([max(1, min(8, s // 8)) for s in shape])
    span = np.asarray(shape) - 2 * margin
    if np.any(span <= 0):
        return out
    n = max(3, int(round(per_voxel * float(np.prod(shape)))))
    pos = margin + (rng.random((n, 3)) * span).astype(np.int64)
    brightness = rng.uniform(0.2, 1.0, n).astype(np.float32)
    brightness[0] = 1.0  # the brightest bead defines the scale
    np.maximum.at(out, tuple(pos.T), brightness)
    return out


# --------------------------------------------------------------------------------------------
# Public: objects
# --------------------------------------------------------------------------------------------


def _check_shape(shape: tuple[int, int, int]) -> tuple[int, int, int]:
    """Validate a ZYX shape and return it as a tuple of ints."""
    if len(shape) != 3 or any(int(s) < 4 for s in shape):
        raise ValueError(f"shape must be three sizes >= 4 (ZYX), got {tuple(shape)}")
    z, y, x = (int(s) for s in shape)
    return z, y, x


def make_object(kind: str, shape: tuple[int, int, int], *, seed: int = 0) -> np.ndarray:
    """Render an isotropic synthetic fluorescent object.

    Parameters
    ----------
    kind
        One of :data:`KINDS`: ``"neurites"`` (branching tubes, ~5 % foreground),
        ``"nuclei"`` (textured ellipsoids with bright rims), ``"beads"`` (sparse point
        sources), ``"sparse-beads"`` (four times sparser: most patches hold no bead) or ``"mix"``
        (neurites, nuclei and beads).
    shape
        ZYX grid size; voxels are cubic.
    seed
        Seed of the random generator; the same seed gives the same object.

    Returns
    -------
    numpy.ndarray
        float32 ZYX volume in [0, 1] with maximum 1.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown phantom kind {kind!r}; choose one of {', '.join(KINDS)}")
    shape = _check_shape(shape)
    rng = np.random.default_rng(seed)
    if kind == "neurites":
        return _neurites(rng, shape, 0.05)
    if kind == "nuclei":
        return _nuclei(rng, shape, 0.2)
    if kind == "beads":
        return _beads(rng, shape, 1.0 / 15000.0)
    if kind == "sparse-beads":
        return _beads(rng, shape, 1.0 / 60000.0)
    r_neu, r_nuc, r_bead = rng.spawn(3)
    out = _nuclei(r_nuc, shape, 0.12)
    out *= 0.6  # nuclei dimmer than neurites so that thin tubes stay visible on top
    np.maximum(out, _neurites(r_neu, shape, 0.04), out=out)
    np.maximum(out, _beads(r_bead, shape, 0.5 / 15000.0), out=out)
    return _normalise(out)


# --------------------------------------------------------------------------------------------
# Public: acquisition
# --------------------------------------------------------------------------------------------


def n_raw_planes(z_iso: int, k: float) -> int:
    """Number of raw planes kept when every ``k``-th of ``z_iso`` iso planes is recorded."""
    return int(math.floor((z_iso - 1) / k + _EPS)) + 1


@dataclass
class Phantom:
    """A simulated acquisition together with its ground truth.

    Attributes
    ----------
    raw
        uint16 (Z_raw, Y, X) camera counts, raw plane ``i`` at iso position ``i * k``.
    gt
        float32 (Z_iso, Y, X) object in signal units (``photons * gain`` per unit of the
        peak-normalised blurred object), i.e. on the same scale as ``gt_lateral``.
    gt_lateral
        float32 (Z_iso, Y, X) ``gt`` blurred with the lateral PSF sigma on all three axes:
        the best a self-supervised restoration of ``raw - offset - background * gain`` can
        reach.
    spacing_raw, spacing_iso
        Voxel sizes (dz, dy, dx) in micrometres.
    k
        Axial subsampling factor (``dz / dx``), possibly non-integer.
    params
        Everything needed to reproduce the phantom.
    """

    raw: np.ndarray
    gt: np.ndarray
    gt_lateral: np.ndarray
    spacing_raw: tuple[float, float, float]
    spacing_iso: tuple[float, float, float]
    k: float
    params: dict[str, float | str | int] = field(default_factory=dict)

    def iso_slice(self) -> slice:
        """Iso planes covered by a restoration of ``raw`` (from plane 0 to ``(Z_raw-1)*k``)."""
        n_out = int(math.floor((self.raw.shape[0] - 1) * self.k + _EPS)) + 1
        return slice(0, n_out)


def _check_acquire(
    obj: np.ndarray,
    k: float,
    sigma_lateral_px: float,
    axial_ratio: float,
    photons: float,
    background: float,
    read_noise: float,
    gain: float,
) -> None:
    """Reject inputs that make the simulation meaningless."""
    if obj.ndim != 3:
        raise ValueError(f"object must be 3D (ZYX), got shape {obj.shape}")
    checks = {
        "k must be >= 1": k >= 1.0,
        "sigma_lateral_px must be >= 0": sigma_lateral_px >= 0.0,
        "axial_ratio must be >= 1": axial_ratio >= 1.0,
        "photons must be > 0": photons > 0.0,
        "background must be >= 0": background >= 0.0,
        "read_noise must be >= 0": read_noise >= 0.0,
        "gain must be > 0": gain > 0.0,
    }
    for message, ok in checks.items():
        if not ok:
            raise ValueError(message)


def _sample_z(vol: np.ndarray, k: float) -> np.ndarray:
    """Planes at iso positions ``i * k`` by linear interpolation between neighbouring planes."""
    n = n_raw_planes(vol.shape[0], k)
    z = np.arange(n, dtype=np.float64) * k
    z0 = np.minimum(np.floor(z + _EPS).astype(np.int64), vol.shape[0] - 1)
    frac = np.clip(z - z0, 0.0, 1.0).astype(np.float32)[:, None, None]
    z1 = np.minimum(z0 + 1, vol.shape[0] - 1)
    return (1.0 - frac) * vol[z0] + frac * vol[z1]


def _camera(
    expected: np.ndarray, rng: np.random.Generator, read_noise: float, gain: float, offset: float
) -> np.ndarray:
    """Photon counts -> Poisson -> + read noise (e-) -> x gain + offset -> rounded uint16."""
    electrons = rng.poisson(expected).astype(np.float32)
    if read_noise > 0:
        electrons += rng.normal(0.0, read_noise, expected.shape).astype(np.float32)
    adu = np.rint(electrons * gain + offset)
    return np.clip(adu, 0, _UINT16_MAX).astype(np.uint16)


def acquire(
    obj: np.ndarray,
    *,
    k: float = 4.0,
    sigma_lateral_px: float = 1.0,
    axial_ratio: float = 3.0,
    photons: float = 200.0,
    background: float = 10.0,
    read_noise: float = 2.0,
    offset: float = 100.0,
    gain: float = 1.0,
    dx_um: float = 0.2,
    seed: int = 0,
) -> Phantom:
    """Simulate a widefield/light-sheet acquisition of an isotropic object.

    The object is blurred with a Gaussian PSF (sigma ``sigma_lateral_px`` in y/x and
    ``axial_ratio * sigma_lateral_px`` in z), scaled so that the blurred peak equals
    ``photons`` expected photons, and sampled at iso z positions ``i * k`` (linear
    interpolation for non-integer ``k``). ``background`` photons are added everywhere, then
    Poisson shot noise, Gaussian read noise (std ``read_noise`` electrons), ``gain``
    (ADU per electron) and ``offset`` (ADU); values are rounded and clipped to uint16.

    Parameters
    ----------
    obj
        Isotropic ZYX object, any non-negative scale (it is peak-normalised after blurring).
    k, sigma_lateral_px, axial_ratio, photons, background, read_noise, offset, gain
        Acquisition model, see above.
    dx_um
        Lateral pixel size in micrometres; the raw z step is ``k * dx_um``.
    seed
        Seed of the noise generator.

    Returns
    -------
    Phantom
        Raw counts, ground truths and metadata.
    """
    _check_acquire(obj, k, sigma_lateral_px, axial_ratio, photons, background, read_noise, gain)
    obj = np.asarray(obj, dtype=np.float32)
    sigma_axial = axial_ratio * sigma_lateral_px
    blurred = gaussian_filter(
        obj, (sigma_axial, sigma_lateral_px, sigma_lateral_px), mode="reflect"
    )
    ph = record(blurred, obj, lambda gt: gaussian_filter(gt, sigma_lateral_px, mode="reflect"), k=k,
                photons=photons, background=background, read_noise=read_noise, offset=offset, gain=gain,
                dx_um=dx_um, seed=seed)
    ph.params.update(sigma_lateral_px=float(sigma_lateral_px), axial_ratio=float(axial_ratio),
                     sigma_axial_px=float(sigma_axial))
    return ph


def record(
    blurred: np.ndarray,
    obj: np.ndarray,
    lateral: Callable[[np.ndarray], np.ndarray],
    *,
    k: float,
    photons: float,
    background: float,
    read_noise: float,
    offset: float,
    gain: float,
    dx_um: float,
    seed: int,
) -> Phantom:
    """Camera side of an acquisition: scale the optically blurred object to ``photons`` at its peak,
    keep every ``k``-th plane, add background, shot and read noise; ``lateral`` makes the truth.

    Shared by the Gaussian model (:func:`acquire`) and the diffraction-model PSFs
    (:mod:`selfnet.phantoms.optics`), so both are sampled and recorded the same way.
    """
    peak = float(blurred.max())
    if peak <= 0:
        raise ValueError("object is empty: nothing to image")
    photon_scale = photons / peak
    planes = _sample_z(blurred, k)
    del blurred
    expected = planes * np.float32(photon_scale) + np.float32(background)
    rng = np.random.default_rng([seed, _NOISE_STREAM])
    raw = _camera(expected, rng, read_noise, gain, offset)
    gt = obj * np.float32(photon_scale * gain)
    gt_lateral = lateral(gt)
    params: dict[str, float | str | int] = {
        "kind": "custom",
        "seed": int(seed),
        "dx_um": float(dx_um),
        "k": float(k),
        "photons": float(photons),
        "background": float(background),
        "read_noise": float(read_noise),
        "offset": float(offset),
        "gain": float(gain),
        "signal_scale": float(photon_scale * gain),
    }
    return Phantom(
        raw=raw,
        gt=gt,
        gt_lateral=np.asarray(gt_lateral, dtype=np.float32),
        spacing_raw=(float(k * dx_um), float(dx_um), float(dx_um)),
        spacing_iso=(float(dx_um), float(dx_um), float(dx_um)),
        k=float(k),
        params=params,
    )


def make_phantom(
    kind: str = "neurites",
    shape: tuple[int, int, int] = (192, 256, 256),
    *,
    k: float = 4.0,
    axial_ratio: float = 3.0,
    sigma_lateral_px: float = 1.0,
    photons: float = 200.0,
    seed: int = 0,
    **acquire_kwargs: float,
) -> Phantom:
    """Render an object of ``kind`` and acquire it (see :func:`make_object`, :func:`acquire`).

    ``seed`` drives both the object and the (independent) noise stream; further keyword
    arguments (``background``, ``read_noise``, ``offset``, ``gain``, ``dx_um``) go to
    :func:`acquire`.
    """
    obj = make_object(kind, shape, seed=seed)
    ph = acquire(
        obj,
        k=k,
        axial_ratio=axial_ratio,
        sigma_lateral_px=sigma_lateral_px,
        photons=photons,
        seed=seed,
        **acquire_kwargs,
    )
    ph.params["kind"] = kind
    return ph


def _imagej_write(path: Path, data: np.ndarray, spacing: tuple[float, float, float]) -> None:
    """Write a ZYX ImageJ hyperstack with calibrated voxel size in micrometres."""
    dz, dy, dx = spacing
    tifffile.imwrite(
        path,
        data,
        imagej=True,
        resolution=(1.0 / dx, 1.0 / dy),
        metadata={"spacing": dz, "unit": "um", "axes": "ZYX"},
    )


def save_phantom(ph: Phantom, directory: Path) -> dict[str, Path]:
    """Write ``raw.tif``, ``gt_lateral.tif`` (ImageJ, calibrated) and ``params.json``.

    Returns
    -------
    dict
        Paths under the keys ``"raw"``, ``"gt_lateral"`` and ``"params"``.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = {
        "raw": directory / "raw.tif",
        "gt_lateral": directory / "gt_lateral.tif",
        "params": directory / "params.json",
    }
    _imagej_write(paths["raw"], ph.raw, ph.spacing_raw)
    _imagej_write(paths["gt_lateral"], ph.gt_lateral.astype(np.float32), ph.spacing_iso)
    meta = dict(ph.params)
    meta.update(
        spacing_raw=list(ph.spacing_raw),
        spacing_iso=list(ph.spacing_iso),
        shape_raw=list(ph.raw.shape),
        shape_iso=list(ph.gt_lateral.shape),
    )
    paths["params"].write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return paths
