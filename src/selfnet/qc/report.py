"""Self-contained HTML QC report: before/after views, spectra, isotropy, data consistency, training.

Everything is in one file (PNG figures embedded as base64, inline CSS, no scripts), so it can be
mailed, archived or opened offline. Built by ``selfnet run`` next to its output and by
``selfnet qc --report DIR``.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import platform
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from scipy import ndimage  # noqa: E402

from selfnet._version import __version__  # noqa: E402
from selfnet.io import Volume, atomic_write, check_output_path  # noqa: E402
from selfnet.method.kernel import PSF_MISFIT, AxialKernel  # noqa: E402
from selfnet.method.resample import n_iso, upsample_matrix  # noqa: E402
from selfnet.model import Model  # noqa: E402
from selfnet.qc.figures import display_range  # noqa: E402
from selfnet.qc.measure import (  # noqa: E402
    Comparison,
    Resolution,
    compare,
    estimate_resolution,
    xz_spectrum,
)

__all__ = ["QCResult", "build_report", "default_report_path", "model_sigma_px", "run_qc", "write_report"]

REPORT_SUFFIX = ".report.html"
_VOLUME_SUFFIXES = (".ome.tiff", ".ome.tif", ".tiff", ".tif", ".ome.zarr", ".zarr", ".npy")
_MAX_QC_VOXELS = 64_000_000  # larger volumes are measured on a central lateral crop
_DPI = 100
_BEFORE, _AFTER = "#1f77b4", "#d62728"


def default_report_path(output: str | Path) -> Path:
    """``iso.tif`` -> ``iso.report.html`` (also for ``.ome.tif``, ``.tiff``, ``.npy``, ``.zarr``)."""
    out = Path(output)
    name = out.name.rstrip("/") or out.name
    for suffix in _VOLUME_SUFFIXES:
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    return out.with_name(name + REPORT_SUFFIX)


# --------------------------------------------------------------------------------------------
# Analysis
# --------------------------------------------------------------------------------------------


@dataclass
class QCResult:
    """What ``selfnet qc`` measured: one volume, or a raw stack and its restoration."""

    volume: Volume
    resolution: Resolution
    restored: Volume | None = None
    comparison: Comparison | None = None
    model: Model | None = None
    seconds: float = 0.0
    region: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary; top-level ``lateral_um``/``axial_um``/``isotropy`` describe VOLUME."""
        res = self.resolution.to_dict()
        out: dict[str, Any] = {"volume": str(self.volume.path) if self.volume.path else None,
                               "lateral_um": res["lateral_um"], "axial_um": res["axial_um"],
                               "isotropy": res["isotropy"], "resolution": res}
        if self.comparison is not None and self.restored is not None:
            comp = self.comparison.to_dict()
            out["compare"] = {"volume": str(self.restored.path) if self.restored.path else None,
                              **{k: comp["after"][k] for k in ("lateral_um", "axial_um", "isotropy")},
                              "resolution": comp["after"], "isotropy_gain": comp["isotropy_gain"]}
            out["consistency"] = comp["consistency"]
        if self.region:
            out["region"] = self.region
        out["seconds"] = round(self.seconds, 2)
        return out


def model_sigma_px(model: Model | None) -> tuple[float | None, str | None]:
    """The model's axial degradation (iso px): learned G_A blur if known, else its initial estimate."""
    if model is None:
        return None, None
    for key, source in (("learned_axial_sigma_px", "learned degradation (model)"),
                        ("estimated_axial_sigma_px", "estimated axial blur (model)")):
        value = model.summary.get(key)
        if isinstance(value, (int, float)) and math.isfinite(value):
            return float(value), source
    return None, None


def model_axial_profile(model: Model | None) -> np.ndarray | None:
    """The model's learned z blur as taps, when it is not Gaussian (a fitted tail or cone, or a PSF's).

    QC re-degrades the restoration with it: a Gaussian of the same width would be far wider in the
    core and miss the tails, and score a faithful restoration as inconsistent.
    """
    kernel = None if model is None else model.summary.get("estimated_axial_kernel")
    if not isinstance(kernel, dict) or (kernel.get("source") != "psf" and AxialKernel(**kernel).gaussian):
        return None
    taps = model.summary.get("learned_axial_kernel")
    return np.asarray(taps, dtype=np.float64) if isinstance(taps, list) and len(taps) % 2 == 1 else None


def _central(n: int, size: int) -> slice:
    """Centred window of ``size`` along an axis of length ``n``."""
    size = min(n, size)
    return slice((n - size) // 2, (n - size) // 2 + size)


def _crop(vol: Volume, sy: slice, sx: slice) -> Volume:
    """Lateral crop of a volume, read into memory."""
    return Volume(np.asarray(vol.data[:, sy, sx]), vol.spacing, vol.path, vol.metadata)


def _limit(volume: Volume, restored: Volume | None, max_voxels: int) -> tuple[Volume, Volume | None, str | None]:
    """Central lateral crop so that the isotropic volume has at most ``max_voxels`` voxels."""
    z_iso = restored.data.shape[0] if restored is not None else n_iso(volume.data.shape[0], volume.ratio)
    y, x = volume.data.shape[1:]
    side = max(128, int(math.sqrt(max_voxels / max(z_iso, 1))))
    if y <= side and x <= side:
        return volume, restored, None
    sy, sx = _central(y, side), _central(x, side)
    region = (f"central {sy.stop - sy.start} x {sx.stop - sx.start} px (y {sy.start}-{sy.stop - 1}, "
              f"x {sx.start}-{sx.stop - 1}) of {y} x {x}")
    return _crop(volume, sy, sx), (_crop(restored, sy, sx) if restored is not None else None), region


def run_qc(volume: Volume, restored: Volume | None = None, model: Model | None = None, *,
           max_voxels: int = _MAX_QC_VOXELS, lateral_fwhm_um: float | None = None) -> QCResult:
    """Resolution of ``volume``; with ``restored``, before/after and data consistency too.

    Volumes whose isotropic version exceeds ``max_voxels`` are measured on a central lateral crop
    (``QCResult.region`` says which). ``lateral_fwhm_um``: the optics' lateral resolution, if known.
    """
    t0 = time.perf_counter()
    volume, restored, region = _limit(volume, restored, max_voxels)
    if restored is None:
        res = estimate_resolution(volume.data, volume.spacing, lateral_fwhm_um=lateral_fwhm_um)
        return QCResult(volume, res, model=model, seconds=time.perf_counter() - t0, region=region)
    sigma, source = model_sigma_px(model)
    if (profile := model_axial_profile(model)) is not None:
        source = f"{source}, its z profile with tails (σ is that profile's sd)"
    comp = compare(volume.data, volume.spacing, restored.data, restored.spacing, sigma_px=sigma,
                   sigma_source=source, keep_fitted=True, lateral_fwhm_um=lateral_fwhm_um, profile=profile)
    return QCResult(volume, comp.before, restored, comp, model, time.perf_counter() - t0, region)


# --------------------------------------------------------------------------------------------
# Isotropic views of anisotropic stacks, computed lazily (never the whole interpolated volume)
# --------------------------------------------------------------------------------------------


class IsoView:
    """A ZYX stack seen on the isotropic grid (cubic z-interpolation), slice by slice."""

    def __init__(self, data: np.ndarray, ratio: float) -> None:
        self.data = data
        self.ratio = float(ratio)
        self.weights = None if abs(self.ratio - 1.0) < 1e-6 else upsample_matrix(data.shape[0], self.ratio)

    @property
    def shape(self) -> tuple[int, int, int]:
        """Shape on the isotropic grid."""
        z = self.data.shape[0] if self.weights is None else self.weights.shape[0]
        return z, self.data.shape[1], self.data.shape[2]

    def _up(self, raw: np.ndarray) -> np.ndarray:
        """Interpolate along the first axis."""
        raw = np.asarray(raw, dtype=np.float32)
        return raw if self.weights is None else np.tensordot(self.weights, raw, axes=(1, 0))

    def block(self, y0: int, y1: int) -> np.ndarray:
        """Iso sub-volume of rows ``y0:y1``."""
        return self._up(self.data[:, y0:y1])

    def xz(self, y: int) -> np.ndarray:
        """XZ slice at row ``y`` (z along rows)."""
        return self._up(self.data[:, y, :])

    def yz(self, x: int) -> np.ndarray:
        """YZ slice at column ``x`` (z along rows)."""
        return self._up(self.data[:, :, x])

    def xy(self, z: int) -> np.ndarray:
        """XY plane at iso plane ``z``."""
        if self.weights is None:
            return np.asarray(self.data[z], dtype=np.float32)
        taps = np.flatnonzero(self.weights[z])
        planes = np.asarray(self.data[taps[0]:taps[-1] + 1], dtype=np.float32)
        return np.tensordot(self.weights[z, taps[0]:taps[-1] + 1], planes, axes=(0, 0))

    def column(self, y: int, x: int) -> np.ndarray:
        """Intensity along z at (y, x)."""
        return self._up(self.data[:, y, x])

    def blocks(self, size: int = 32) -> Iterator[tuple[int, np.ndarray]]:
        """Consecutive iso blocks of rows."""
        for y0 in range(0, self.data.shape[1], size):
            yield y0, self.block(y0, min(y0 + size, self.data.shape[1]))

    def mips(self) -> tuple[np.ndarray, np.ndarray]:
        """Maximum projections along z (an XY image) and along y (an XZ image)."""
        z, y, x = self.shape
        mip_z = np.empty((y, x), dtype=np.float32)
        mip_y = np.full((z, x), -np.inf, dtype=np.float32)
        for y0, blk in self.blocks():
            mip_z[y0:y0 + blk.shape[1]] = blk.max(axis=0)
            np.maximum(mip_y, blk.max(axis=1), out=mip_y)
        return mip_z, mip_y


@dataclass
class _Focus:
    """Where the views are cut: the brightest place of the (restored) volume."""

    z: int
    y: int
    x: int


def _inner(n: int) -> slice:
    """The middle 80 % of an axis (views cut through the border say little)."""
    margin = n // 10
    return slice(margin, n - margin) if n - 2 * margin > 0 else slice(0, n)


def _focus(view: IsoView, mip_z: np.ndarray) -> _Focus:
    """Brightest smoothed spot of the XY projection away from the borders, then its brightest z."""
    smooth = ndimage.gaussian_filter(mip_z.astype(np.float32), 2.0)
    sy, sx = _inner(smooth.shape[0]), _inner(smooth.shape[1])
    y, x = np.unravel_index(int(np.argmax(smooth[sy, sx])), smooth[sy, sx].shape)
    y, x = int(y) + sy.start, int(x) + sx.start
    col = ndimage.gaussian_filter1d(view.column(y, x), 1.0)
    sz = _inner(len(col))
    return _Focus(int(np.argmax(col[sz])) + sz.start, y, x)


# --------------------------------------------------------------------------------------------
# Figures (PNG, base64)
# --------------------------------------------------------------------------------------------


def _png(fig: plt.Figure) -> str:
    """Render and close a figure; return base64 PNG."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=_DPI)
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _shared_range(images: Sequence[np.ndarray]) -> tuple[float, float]:
    """One display range for all images (percentiles of their pooled pixels)."""
    pooled = np.concatenate([np.asarray(im, dtype=np.float32).ravel()[:: max(1, im.size // 200_000)] for im in images])
    return display_range(pooled)


def _grid(rows: Sequence[Sequence[np.ndarray]], row_titles: Sequence[str], col_titles: Sequence[str],
          dx: float, *, width_in: float = 13.0) -> str:
    """Grey image grid at one contrast; columns keep their pixel aspect (1 px = dx on every axis)."""
    lo, hi = _shared_range([im for row in rows for im in row])
    widths = [max(row[c].shape[1] for row in rows) for c in range(len(rows[0]))]
    heights = [max(im.shape[0] for im in row) for row in rows]
    fig_h = width_in * sum(heights) / sum(widths) + 0.45 * len(rows) + 0.3
    fig, axes = plt.subplots(len(rows), len(widths), figsize=(width_in, min(fig_h, 18.0)), squeeze=False,
                             gridspec_kw={"width_ratios": widths, "height_ratios": heights})
    for r, row in enumerate(rows):
        for c, im in enumerate(row):
            ax = axes[r][c]
            ax.imshow(im, cmap="gray", vmin=lo, vmax=hi, interpolation="antialiased")
            ax.set_title(f"{row_titles[r]}: {col_titles[c]}", fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
    fig.text(0.005, 0.003, f"1 px = {dx:.3g} µm on every axis; same contrast in all panels", fontsize=8)
    fig.tight_layout(rect=(0, 0.02, 1, 1))
    return _png(fig)


def _window(image: np.ndarray, centre: tuple[int, int], size: tuple[int, int]) -> np.ndarray:
    """``size`` window of ``image`` around ``centre``, shifted to stay inside."""
    out = []
    for c, s, n in zip(centre, size, image.shape):
        s = min(s, n)
        lo = int(np.clip(c - s // 2, 0, n - s))
        out.append(slice(lo, lo + s))
    return image[out[0], out[1]]


def _views_figures(views: dict[str, IsoView], focus: _Focus, mips: dict[str, tuple[np.ndarray, np.ndarray]],
                   dx: float) -> dict[str, str]:
    """Orthogonal views, zoomed crops and MIPs, one row per volume."""
    names = list(views)
    ortho = [[views[n].xy(focus.z), views[n].xz(focus.y), views[n].yz(focus.x)] for n in names]
    z, y, x = views[names[-1]].shape
    ortho_titles = [f"XY (z = {focus.z * dx:.2f} µm)", f"XZ (y = {focus.y * dx:.2f} µm)",
                    f"YZ (x = {focus.x * dx:.2f} µm)"]
    side = max(24, min(64, y // 2, x // 2))
    depth = max(16, min(64, z // 2))
    crops = [[_window(o[0], (focus.y, focus.x), (side, side)), _window(o[1], (focus.z, focus.x), (depth, side))]
             for o in ortho]
    mip_rows = [[mips[n][0], mips[n][1]] for n in names]
    return {
        "views": _grid(ortho, names, ortho_titles, dx),
        "crops": _grid(crops, names, [f"XY zoom ({side} px)", f"XZ zoom ({side} x {depth} px)"], dx, width_in=9.0),
        "mips": _grid(mip_rows, names, ["max projection along z (XY)", "max projection along y (XZ)"], dx),
    }


def _profile_figure(views: dict[str, IsoView], focus: _Focus, raw: Volume, dx: float) -> str:
    """Intensity along z through the focus point; raw samples marked at their true positions."""
    fig, ax = plt.subplots(figsize=(10, 3.6))
    colours = {0: _BEFORE, 1: _AFTER}
    for i, (name, view) in enumerate(views.items()):
        prof = view.column(focus.y, focus.x)
        ax.plot(np.arange(len(prof)) * dx, prof, color=colours.get(i, "k"), lw=1.6, label=name)
    if raw.ratio > 1.05:
        samples = np.asarray(raw.data[:, focus.y, focus.x], dtype=np.float64)
        ax.plot(np.arange(len(samples)) * raw.spacing[0], samples, "o", ms=4, color="k", mfc="none",
                label=f"raw planes (every {raw.spacing[0]:.3g} µm)")
    ax.set_xlabel("z (µm)")
    ax.set_ylabel("intensity")
    ax.set_title(f"line profile along z at x = {focus.x * dx:.2f} µm, y = {focus.y * dx:.2f} µm", fontsize=10)
    ax.legend(fontsize=8, loc="upper right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _png(fig)


def _spectra_figure(views: dict[str, IsoView], dx: float, raw_dz: float | None) -> str:
    """Mean XZ power spectra (log10) at one colour scale, axes in cycles/µm."""
    spectra = {}
    for name, view in views.items():
        rows = np.unique(np.linspace(0, view.shape[1] - 1, min(view.shape[1], 48)).round().astype(int))
        spectra[name] = xz_spectrum((view.xz(int(j)) for j in rows), dx)
    pooled = np.concatenate([s[0].ravel() for s in spectra.values()])
    lo, hi = np.percentile(pooled, (5, 99.9))
    fig, axes = plt.subplots(1, len(spectra), figsize=(5.2 * len(spectra) + 0.8, 4.6), squeeze=False)
    for ax, (name, (power, kz, kx)) in zip(axes[0], spectra.items()):
        im = ax.imshow(power, cmap="magma", vmin=lo, vmax=hi, origin="lower", aspect="auto",
                       extent=(kx[0], kx[-1], kz[0], kz[-1]))
        if raw_dz:
            for sign in (-1, 1):
                ax.axhline(sign * 0.5 / raw_dz, color="w", ls="--", lw=1.2)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("kx (cycles/µm)")
        ax.set_ylabel("kz (cycles/µm)")
    fig.colorbar(im, ax=axes[0].tolist(), label="log10 power", shrink=0.9)
    return _png(fig)


def _consistency_figure(raw: Volume, comp: Comparison, focus: _Focus, dx: float) -> str:
    """Raw plane vs re-degraded restoration vs difference, and correlation per raw plane."""
    assert comp.fitted is not None
    i = int(np.clip(round(focus.z * dx / raw.spacing[0]), 0, comp.fitted.shape[0] - 1))
    plane = np.asarray(raw.data[i], dtype=np.float32)
    back = comp.fitted[i]
    diff = back - plane
    lo, hi = _shared_range([plane, back])
    lim = float(np.percentile(np.abs(diff), 99.5)) or 1.0
    fig = plt.figure(figsize=(13, 7.4))
    grid = fig.add_gridspec(2, 3, height_ratios=(3, 1.6))
    panels = ((plane, f"raw plane {i} (z = {i * raw.spacing[0]:.2f} µm)", "gray", lo, hi),
              (back, "restored, re-degraded along z", "gray", lo, hi),
              (diff, "re-degraded − raw", "RdBu_r", -lim, lim))
    for c, (im, title, cmap, vmin, vmax) in enumerate(panels):
        ax = fig.add_subplot(grid[0, c])
        shown = ax.imshow(im, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
        ax.set_title(title, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        if c == 2:
            fig.colorbar(shown, ax=ax, shrink=0.8)
    ax = fig.add_subplot(grid[1, :])
    planes = np.arange(len(comp.consistency.plane_correlation)) * raw.spacing[0]
    ax.plot(planes, comp.consistency.plane_correlation, "o-", ms=3, color=_AFTER, label="correlation per raw plane")
    ax.axhline(comp.consistency.ceiling_correlation, color="k", ls="--", lw=0.8, label="noise limit (whole stack)")
    ax.set_xlabel("z (µm)")
    ax.set_ylabel("correlation")
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _png(fig)


def _loss_figure(history: dict[str, list[dict[str, float]]]) -> str | None:
    """Training losses per stage, one panel per stage."""
    stages = [(name, rows) for name, rows in history.items() if rows]
    if not stages:
        return None
    fig, axes = plt.subplots(1, len(stages), figsize=(6.2 * len(stages), 3.6), squeeze=False)
    for ax, (name, rows) in zip(axes[0], stages):
        keys = sorted({k for row in rows for k in row if k != "step"})
        steps = [row.get("step", i) for i, row in enumerate(rows)]
        positive = True
        for key in keys:
            values = np.array([row.get(key, np.nan) for row in rows], dtype=float)
            positive &= bool(np.nanmin(values) > 0) if np.isfinite(values).any() else True
            ax.plot(steps, values, "o-", ms=2.5, lw=1.3, label=key)
        if positive:
            ax.set_yscale("log")
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return _png(fig)


# --------------------------------------------------------------------------------------------
# HTML
# --------------------------------------------------------------------------------------------

_CSS = """
body{font-family:-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;margin:24px auto;max-width:1320px;
color:#222;line-height:1.45;padding:0 16px}
h1{font-size:24px;margin-bottom:4px}h2{font-size:19px;border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:30px}
.sub{color:#666;font-size:13px}
table{border-collapse:collapse;margin:8px 0;font-size:14px}td,th{border:1px solid #ccc;padding:4px 10px;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}table.kv td{text-align:left}
img{max-width:100%;height:auto;display:block;margin:8px 0;border:1px solid #eee}
.box{background:#f6f8fa;border:1px solid #d0d7de;border-radius:6px;padding:10px 16px;font-size:15px}
.warn{color:#9a6700}pre{background:#f6f8fa;padding:10px;font-size:12px;overflow-x:auto;border:1px solid #eee}
p.note{font-size:13px;color:#555;max-width:1100px}
"""


def _psf_misfit_html(model: Model) -> str:
    """A warning where the model was trained with a PSF file that does not fit the stack (empty otherwise)."""
    misfit = model.summary.get("psf_misfit")
    if not isinstance(misfit, (int, float)) or misfit <= PSF_MISFIT:
        return ""
    return (f'<p class="warn">Warning: the PSF file explains this stack\'s axial blur {misfit:.1f}x worse than '
            "selfnet's own estimate: it describes other optics (voxel size, depth, refractive indices). "
            "Compare with a run without the PSF.</p>")


def _e(value: object) -> str:
    return html.escape(str(value))


def _fmt(value: float | None, digits: int = 3) -> str:
    if value is None or not math.isfinite(value):
        return "–"
    return f"{value:.{digits}g}"


def _img(data: str | None, alt: str) -> str:
    return "" if data is None else f'<img alt="{_e(alt)}" src="data:image/png;base64,{data}">'


def _table(header: Sequence[str], rows: Sequence[Sequence[object]], *, css: str = "") -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>" for row in rows)
    cls = f' class="{css}"' if css else ""
    return f"<table{cls}><tr>{head}</tr>{body}</table>"


def _resolution_rows(items: Sequence[tuple[str, Resolution]]) -> list[list[object]]:
    rows = []
    for name, res in items:
        limited = ", ".join(res.sampling_limited) or "no"
        rows.append([name, _fmt(res.lateral_um), _fmt(res.axial_um), f"{res.isotropy:.2f}",
                     f"{_fmt(res.lateral_fwhm_um)} / {_fmt(res.axial_fwhm_um)}",
                     "x".join(f"{s:.3g}" for s in res.spacing), limited,
                     "yes" if res.reliable else f"no: {res.note}"])
    return rows


def _versions(model: Model | None) -> list[list[object]]:
    rows: list[list[object]] = [["selfnet", __version__], ["python", platform.python_version()]]
    for pkg in ("numpy", "scipy", "matplotlib", "tifffile", "torch"):
        try:
            rows.append([pkg, metadata.version(pkg)])
        except metadata.PackageNotFoundError:
            continue
    if model is not None:
        rows.append(["model written by selfnet", model.version])
        if model.summary.get("torch"):
            rows.append(["torch used for training", model.summary["torch"]])
    rows.append(["platform", platform.platform()])
    return rows


def _timing_rows(timings: dict[str, float], model: Model | None) -> list[list[object]]:
    rows = [[k, f"{v:.1f} s"] for k, v in timings.items()]
    if model is not None:
        for key in ("prepare_s", "stage1_seconds", "stage2_seconds", "refine_seconds", "train_s"):
            if isinstance(model.summary.get(key), (int, float)):
                rows.append([f"model: {key}", f"{model.summary[key]:.1f} s"])
        for key in ("stage1_steps", "stage2_steps", "refine_steps", "stage1_patches_per_s", "stage2_patches_per_s",
                    "refine_patches_per_s", "device"):
            if key in model.summary:
                rows.append([f"model: {key}", model.summary[key]])
    return rows


@dataclass
class _Page:
    """HTML sections collected in order."""

    parts: list[str] = field(default_factory=list)

    def section(self, title: str, *body: str) -> None:
        self.parts.append(f"<h2>{_e(title)}</h2>" + "".join(body))

    def render(self, title: str, subtitle: str) -> str:
        return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
                f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>"
                f"<h1>{_e(title)}</h1><div class=\"sub\">{subtitle}</div>" + "".join(self.parts) + "</body></html>")


def _summary_box(result: QCResult) -> str:
    res = result.resolution
    if result.comparison is None:
        text = (f"Lateral resolution <b>{_fmt(res.lateral_um)} µm</b>, axial <b>{_fmt(res.axial_um)} µm</b> "
                f"(FWHM): isotropy <b>{res.isotropy:.2f}</b> (1.0 = isotropic).")
    else:
        comp = result.comparison
        c = comp.consistency
        text = (f"Isotropy <b>{comp.before.isotropy:.2f}</b> (raw) → <b>{comp.after.isotropy:.2f}</b> "
                f"(restored); axial resolution {_fmt(comp.before.axial_um)} → {_fmt(comp.after.axial_um)} µm, "
                f"lateral {_fmt(comp.before.lateral_um)} → {_fmt(comp.after.lateral_um)} µm.<br>"
                f"Data consistency: re-degraded restoration vs raw planes <b>{_fmt(c.psnr_db, 4)} dB</b> PSNR, "
                f"correlation <b>{_fmt(c.correlation, 4)}</b> (noise limit {_fmt(c.ceiling_psnr_db, 4)} dB, "
                f"{_fmt(c.ceiling_correlation, 4)}).")
    warn = "" if res.reliable else f'<br><span class="warn">Warning: {_e(res.note)}</span>'
    return f'<div class="box">{text}{warn}</div>'


_RESOLUTION_NOTE = (
    "Resolutions are estimated from the volume itself, without beads: the 3D power spectrum is averaged over the "
    "lateral angle; within every frequency shell the decay of power towards k<sub>z</sub> gives the extra axial "
    "blur (σ<sub>z</sub>² − σ<sub>xy</sub>², independent of what the sample looks like, provided its structures "
    "have no preferred direction), and the shell profile fitted as a power-law object seen through a Gaussian "
    "PSF gives σ<sub>xy</sub>. Values are FWHM = 2.355 σ, never finer than two voxels (Nyquist).")
_RESTORED_NOTE = " The restoration is analysed below the raw z Nyquist frequency only (what the raw planes support)."

_CONSISTENCY_NOTE = (
    "The restored volume is blurred along z with the axial degradation ({source}, σ = {sigma} px on the "
    "isotropic grid), sampled at the raw plane positions and fitted to the raw planes by one gain and offset. "
    "Structure that the raw data support reappears; detail that was invented, or raw structure that was lost, "
    "shows up in the difference image and lowers the scores. The noise limit is what a perfect, noise-free "
    "restoration would score against the noisy raw planes; scores above it mean that the restoration keeps the "
    "raw noise (it passes through the raw planes), well below it that it disagrees with the raw data.")


def build_report(result: QCResult, *, title: str | None = None, settings: dict[str, Any] | None = None,
                 timings: dict[str, float] | None = None) -> str:
    """The report's HTML text for a :class:`QCResult` (one volume, or raw vs restored)."""
    page = _Page()
    _fill(page, result, settings, timings)
    raw = result.volume
    subtitle = _e(" · ".join(str(v.path) for v in (raw, result.restored) if v is not None and v.path)) + \
        f" · {_e(time.strftime('%Y-%m-%d %H:%M'))}"
    return page.render(title or "selfnet QC report", subtitle)


def _fill(page: _Page, result: QCResult, settings: dict[str, Any] | None, timings: dict[str, float] | None) -> None:
    """Append every section of one volume's (or one raw/restored pair's) report to ``page``."""
    t0 = time.perf_counter()
    raw = result.volume
    dx = raw.spacing[2]
    views = {("raw, cubic z-interpolation" if result.restored is not None else
              ("z-interpolated for display" if raw.ratio > 1.05 else "volume")): IsoView(raw.data, raw.ratio)}
    if result.restored is not None:
        views["selfnet" if result.model is not None else "restored"] = IsoView(result.restored.data, 1.0)
    mips = {name: view.mips() for name, view in views.items()}
    last = list(views)[-1]
    focus = _focus(views[last], mips[last][0])
    figs = _views_figures(views, focus, mips, dx)
    page.parts.append(_summary_box(result))
    items = [("raw" if result.restored is not None else "volume", result.resolution)]
    if result.comparison is not None:
        items.append(("restored", result.comparison.after))
    page.section("Resolution and isotropy",
                 _table(["volume", "lateral µm", "axial µm", "isotropy", "FWHM lateral / axial µm",
                         "voxel µm (z×y×x)", "sampling-limited", "reliable"], _resolution_rows(items)),
                 f'<p class="note">{_RESOLUTION_NOTE}{_RESTORED_NOTE if result.comparison else ""}</p>')
    page.section("Orthogonal views", _img(figs["views"], "XY, XZ and YZ views"))
    page.section("Zoomed crops", _img(figs["crops"], "zoomed crops"))
    page.section("Maximum intensity projections", _img(figs["mips"], "maximum intensity projections"))
    page.section("Line profile along z", _img(_profile_figure(views, focus, raw, dx), "intensity profile along z"))
    page.section("XZ Fourier spectra",
                 _img(_spectra_figure(views, dx, raw.spacing[0] if raw.ratio > 1.05 else None), "XZ power spectra"),
                 '<p class="note">Mean power spectrum of XZ slices, same colour scale. An isotropic volume has '
                 "round contours; a z-blurred one is squeezed along k<sub>z</sub>. Dashed lines: z Nyquist frequency "
                 "of the raw planes (beyond it, z-interpolation only repeats the raw spectrum).</p>")
    if result.comparison is not None:
        c = result.comparison.consistency
        page.section("Data consistency",
                     _table(["measure", "restored vs raw", "noise limit"],
                            [["PSNR (dB)", _fmt(c.psnr_db, 4), _fmt(c.ceiling_psnr_db, 4)],
                             ["correlation", _fmt(c.correlation, 4), _fmt(c.ceiling_correlation, 4)]]),
                     _img(_consistency_figure(raw, result.comparison, focus, dx), "data consistency"),
                     f'<p class="note">{_CONSISTENCY_NOTE.format(source=_e(c.sigma_source), sigma=_fmt(c.sigma_px))}</p>')
    model = result.model
    if model is not None:
        losses = _loss_figure(model.summary.get("history", {}) or {})
        page.section("Training", _psf_misfit_html(model),
                     _img(losses, "training losses") if losses else "<p>No loss history in the model.</p>")
    page.section("Settings", *_settings_html(result, settings))
    all_timings = dict(timings or {})
    all_timings["QC analysis"] = result.seconds
    all_timings["report figures"] = time.perf_counter() - t0
    page.section("Timings", _table(["step", "time"], _timing_rows(all_timings, model)))
    page.section("Versions", _table(["software", "version"], _versions(model), css="kv"))


def _settings_html(result: QCResult, settings: dict[str, Any] | None) -> list[str]:
    rows: list[list[object]] = []
    for label, vol in (("input", result.volume), ("restored", result.restored)):
        if vol is None:
            continue
        dz, dy, dx = vol.spacing
        rows.append([f"{label} file", vol.path or "(array)"])
        rows.append([f"{label} shape (ZYX)", "x".join(map(str, vol.data.shape)) + f" {vol.data.dtype}"])
        rows.append([f"{label} voxel (µm)", f"{dz:.4g} x {dy:.4g} x {dx:.4g}"])
    if result.region:
        rows.append(["analysed region", result.region])
    for key, value in (settings or {}).items():
        rows.append([key, value])
    parts = [_table(["setting", "value"], rows, css="kv")]
    if result.model is not None:
        parts.append("<p>Training configuration:</p><pre>" + _e(result.model.config.to_yaml()) + "</pre>")
        extra = {k: v for k, v in result.model.summary.items() if k != "history"}
        parts.append("<p>Training summary:</p><pre>" + _e(json.dumps(extra, indent=1, default=str)) + "</pre>")
    return parts


def write_report(path: str | Path, result: QCResult, *, overwrite: bool = False, **options: Any) -> Path:
    """Build the HTML report and write it atomically to ``path`` (``.html``)."""
    target = check_output_path(path, overwrite=overwrite, suffixes=(".html",))
    text = build_report(result, **options)
    with atomic_write(target) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return target


# --- multi-channel and time-lapse series -------------------------------------------------------------

_SERIES_POINTS = 12
"""Time points measured for the isotropy-over-time plot (spread over the series)."""


def write_series_report(path: str | Path, plan: Any, models: Any, output: str | Path, *, overwrite: bool = False,
                        lateral_fwhm: float | None = None, timings: dict[str, float] | None = None) -> list[QCResult]:
    """One HTML report for a restored series: isotropy over time, then one full section per channel."""
    from selfnet.io import read_volume
    from selfnet.io.series import series_volume, spread

    t0 = time.perf_counter()
    page = _Page()
    mid = plan.train_times[len(plan.train_times) // 2]
    ti_mid = plan.times.index(mid) if mid in plan.times else len(plan.times) // 2
    names = (plan.layout.display.get("names") or [f"channel {c}" for c in range(plan.layout.n_c)])
    results, curves = [], {}
    for ci, c in enumerate(plan.channels):
        raw = _loaded(series_volume(plan.layout, plan.times[ti_mid], c))
        restored = _loaded(read_volume(output, timepoint=ti_mid if "T" in plan.axes else None,
                                       channel=ci if "C" in plan.axes else None))
        results.append(run_qc(raw, restored, models.for_channel(ci), lateral_fwhm_um=lateral_fwhm))
        points = spread(list(range(len(plan.times))), _SERIES_POINTS) if "T" in plan.axes else []
        curves[names[c]] = [(plan.times[ti], _isotropy(series_volume(plan.layout, plan.times[ti], c), lateral_fwhm),
                             _isotropy(read_volume(output, timepoint=ti, channel=ci if "C" in plan.axes else None),
                                       lateral_fwhm)) for ti in points]
    page.parts.append(f'<p class="note">{_e(len(plan.times))} time point(s) x {_e(len(plan.channels))} '
                      f"channel(s) restored; each channel's sections below are measured at time point "
                      f"{_e(plan.times[ti_mid])}.</p>")
    if any(curves.values()):
        page.section("Isotropy over time", _img(_series_figure(curves), "isotropy over time"),
                     '<p class="note">Isotropy (lateral / axial FWHM, 1 = isotropic) of the raw and restored '
                     "stacks at time points spread over the series: a flat restored curve means no flicker.</p>")
    for ci, (c, result) in enumerate(zip(plan.channels, results)):
        page.parts.append(f"<h1>{_e(names[c])}</h1>")
        _fill(page, result, {"channel": c, "time point shown": plan.times[ti_mid]},
              {**(timings or {}), "series report": time.perf_counter() - t0} if ci == 0 else None)
    text = page.render(f"selfnet report: {Path(str(plan.layout.path)).name}",
                       _e(f"{plan.layout.path} · {time.strftime('%Y-%m-%d %H:%M')}"))
    target = check_output_path(path, overwrite=overwrite, suffixes=(".html",))
    with atomic_write(target) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return results


def _loaded(vol: Volume) -> Volume:
    """``vol`` with its pixels in memory (QC reads them many times)."""
    return Volume(np.asarray(vol.data), vol.spacing, vol.path, vol.metadata)


def _isotropy(vol: Volume, lateral_fwhm: float | None) -> float:
    res = estimate_resolution(np.asarray(vol.data), vol.spacing, lateral_fwhm_um=lateral_fwhm)
    return float(res.isotropy)


def _series_figure(curves: dict[str, list[tuple[int, float, float]]]) -> str:
    fig, ax = plt.subplots(figsize=(6.4, 3.2), dpi=_DPI)
    for i, (name, points) in enumerate(curves.items()):
        if not points:
            continue
        t, before, after = zip(*points)
        ax.plot(t, before, "--", color=f"C{i}", label=f"{name}: raw")
        ax.plot(t, after, "-o", color=f"C{i}", label=f"{name}: selfnet")
    ax.axhline(1.0, color="0.6", lw=0.8)
    ax.set_xlabel("time point")
    ax.set_ylabel("isotropy (lateral / axial FWHM)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _png(fig)
