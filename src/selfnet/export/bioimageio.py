"""Write a selfnet model as a bioimage.io model package (format 0.5) that bioimageio.core and deepImageJ run.

The package holds :class:`~selfnet.export.wrapper.IsotropicRestorer` twice (``pytorch_state_dict``
with this repository's ``wrapper.py`` as architecture source, and TorchScript), test tensors, an XZ
before/after cover, a README and the original selfnet model file. Intensities: the input is scaled
with the training stack's percentile normaliser (``scale_linear``, declared) and the output mapped
back with its inverse, so the result is on the input's intensity scale. Needs ``selfnet[bioimageio]``.
"""

from __future__ import annotations

import datetime
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from selfnet._version import __version__
from selfnet.errors import ConfigError, InputError
from selfnet.export import wrapper as wrapper_module
from selfnet.export.wrapper import IsotropicRestorer
from selfnet.export.zipped import ORIGINAL_NAME
from selfnet.io import atomic_write, check_output_path
from selfnet.model import Model

CITATION_TEXT = ("Ning K, Lu B, Wang X, et al. Deep self-learning enables fast, high-fidelity isotropic resolution "
                 "restoration for volumetric fluorescence microscopy. Light: Science & Applications 12, 204 (2023).")
CITATION_DOI = "10.1038/s41377-023-01230-2"
MIN_SLICE = 16
"""Smallest slice side the net is run on (selfnet's reflect margin of 8 needs it)."""
TEST_SIDE = 64
"""Lateral size of the packaged test tensor (a centre crop of the sample)."""
TEST_PLANES = 16
"""Raw planes of the packaged test tensor (or the minimum, if larger)."""
INSTALL_HINT = 'bioimage.io export needs the optional packages: pip install "selfnet[bioimageio]"'


@dataclass(frozen=True)
class Geometry:
    """Axis sizes, scales and halos of the packaged tensors (all in pixels / µm)."""

    ratio: float
    interpolated_input: bool
    scale_in: tuple[float, float, float]
    scale_out: tuple[float, float, float]
    z_offset: int
    halo_xy: int
    halo_z: int | None
    min_in: tuple[int, int, int]


def _require_bioimageio() -> None:
    """A clear one-line error when the optional packages are missing."""
    import importlib.util

    try:
        found = all(importlib.util.find_spec(m) is not None for m in ("bioimageio.spec", "bioimageio.core"))
    except ImportError:  # no bioimageio namespace at all
        found = False
    if not found:
        raise ConfigError(INSTALL_HINT)


def restorer(model: Model, geometry: Geometry) -> IsotropicRestorer:
    """The portable module for ``model`` with its trained weights, in eval mode."""
    net = IsotropicRestorer(**_restorer_kwargs(model, geometry))
    net.load_state_dict({f"net.{k}": v for k, v in model.deblur_state.items()})
    return net.eval()


def _restorer_kwargs(model: Model, g: Geometry) -> dict[str, Any]:
    """Constructor arguments of :class:`IsotropicRestorer` (the ``architecture.kwargs`` of the package)."""
    d = model.config.deblur
    return {"channels": d.channels, "blocks": d.blocks, "unshuffle": int(d.unshuffle), "head_kernel": d.head_kernel,
            "ratio": float(g.ratio), "interpolate": not g.interpolated_input, "z_scale_in": g.scale_in[0],
            "z_scale_out": g.scale_out[0], "z_offset": g.z_offset}


def geometry(model: Model, interpolated_input: bool) -> Geometry:
    """Scales, size formula and halos: halos from D's measured receptive field (plus z-interpolation support)."""
    from selfnet.inference.plan import receptive_radius

    net = model.deblur_net()
    dz, dy, dx = (float(s) for s in model.spacing)
    ratio = float(model.ratio)
    halo_xy = receptive_radius(net) + int(net.multiple)
    min_xy = max(MIN_SLICE, 2 * halo_xy + 8)
    if interpolated_input:
        return Geometry(ratio, True, (dx, dy, dx), (dx, dy, dx), 0, halo_xy, halo_xy, (min_xy, min_xy, min_xy))
    z_offset = 1 - math.ceil(ratio - 1e-6)  # output = the first isotropic planes inside the raw z extent
    halo_z = _z_halo(halo_xy, dz, dx)
    need = max(MIN_SLICE, 2 * (halo_z or 0) + 1)
    z_min = 2
    while int(z_min * dz / dx + z_offset) < need:
        z_min += 1
    return Geometry(ratio, False, (dz, dy, dx), (dx, dy, dx), z_offset, halo_xy, halo_z, (z_min, min_xy, min_xy))


def _z_halo(halo_iso: int, dz: float, dx: float) -> int | None:
    """Output z halo (iso planes) covering ``halo_iso`` plus the cubic kernel's 2 raw planes, or None.

    bioimage.io needs the matching input halo ``halo * dx / dz`` to be a whole number of raw planes,
    and z tiles only stitch onto one isotropic grid when every raw plane lies on it: with a
    non-integer z/xy ratio z gets no halo (whole stacks in z).
    """
    if abs(dz / dx - round(dz / dx)) > 1e-6:
        return None
    raw = math.ceil(halo_iso * dx / dz) + 2
    for k in range(raw, raw + 4):
        halo = k * dz / dx
        if abs(halo - round(halo)) < 1e-9 and round(halo) * dx / dz == int(round(halo) * dx / dz):
            return round(halo)
    return None


# --- sample, test tensors, cover --------------------------------------------------------------------


def synthetic_sample(model: Model, g: Geometry) -> np.ndarray:
    """A neurite phantom acquired at the model's z/xy ratio, on the training stack's intensity scale."""
    from selfnet.phantoms.synthetic import make_phantom

    planes = max(g.min_in[0], TEST_PLANES) + 2  # raw planes, or isotropic ones for --interpolated-input
    if g.interpolated_input:
        planes = math.ceil(planes / g.ratio) + 2
    side = max(g.min_in[1], TEST_SIDE)
    raw = make_phantom("neurites", (math.ceil(planes * g.ratio) + 1, side, side), k=g.ratio,
                       axial_ratio=max(2.0, g.ratio), photons=300, seed=0).raw.astype(np.float32)
    if g.interpolated_input:
        from selfnet.method.resample import zinterp

        raw = zinterp(raw, g.ratio)
    lo, hi = np.percentile(raw, model.config.norm_percentiles)
    n = model.normalizer
    return (n.low + (raw - lo) / max(hi - lo, 1e-6) * (n.high - n.low)).astype(np.float32)


def test_input(sample: np.ndarray, g: Geometry) -> np.ndarray:
    """A centre crop of ``sample`` as the (1, 1, Z, Y, X) float32 test input, checked against the minimum sizes."""
    if sample.ndim != 3:
        raise InputError(f"the sample stack must be 3D (ZYX), got shape {sample.shape}")
    want = (max(g.min_in[0], TEST_PLANES), max(g.min_in[1], TEST_SIDE), max(g.min_in[2], TEST_SIDE))
    for n, low, name in zip(sample.shape, g.min_in, "zyx"):
        if n < low:
            raise InputError(f"the sample stack is too small: {name} has {n} pixels, the package needs {low}")
    want = (_exact_planes(g, want[0], int(sample.shape[0])), want[1], want[2])
    starts = [(n - min(n, w)) // 2 for n, w in zip(sample.shape, want)]
    crop = sample[tuple(slice(s, s + min(n, w)) for s, n, w in zip(starts, sample.shape, want))]
    return np.ascontiguousarray(crop, dtype=np.float32)[None, None]


def _exact_planes(g: Geometry, want: int, available: int) -> int:
    """Raw test planes near ``want`` whose isotropic plane count is a whole number in floating point.

    bioimage.io checks ``Z * dz / dx + offset`` against the test output without rounding.
    """
    if g.interpolated_input:
        return want
    candidates = sorted(range(g.min_in[0], available + 1), key=lambda z: (abs(z - want), z))
    for z in candidates:
        planes = z * g.scale_in[0] / g.scale_out[0] + g.z_offset
        if planes == int(planes):
            return z
    raise ConfigError(f"z/xy ratio {g.ratio:.6g}: no test stack size gives a whole number of isotropic planes "
                      "in floating point; export with --interpolated-input")


@torch.no_grad()
def predict(model: Model, g: Geometry, x: np.ndarray) -> np.ndarray:
    """What the package computes on (B, C, Z, Y, X) ``x``: scale_linear, the restorer, the inverse scaling."""
    gain, offset = _scaling(model)
    inp = torch.from_numpy(np.asarray(x, dtype=np.float32) * np.float32(gain) + np.float32(offset))
    out = restorer(model, g)(inp).numpy()
    return out * np.float32(model.normalizer.high - model.normalizer.low) + np.float32(model.normalizer.low)


def _scaling(model: Model) -> tuple[float, float]:
    """(gain, offset) of the declared input scaling: the training percentiles map to 0 and 1."""
    lo, hi = model.normalizer.low, model.normalizer.high
    return 1.0 / (hi - lo), -lo / (hi - lo)


def write_cover(path: Path, before: np.ndarray, after: np.ndarray, g: Geometry) -> Path:
    """A 2:1 PNG: XZ maximum projections (over y) of the z-interpolated input (left) and the restoration (right)."""
    from matplotlib.image import imsave
    from skimage.transform import resize

    if not g.interpolated_input:
        from selfnet.method.resample import zinterp

        before = zinterp(before, g.ratio)[: after.shape[0]]
    panels = [before.max(axis=1), after.max(axis=1)]
    lo, hi = np.percentile(panels[0], (0.5, 99.8))
    side = 256
    tiles = [resize(np.clip((p - lo) / max(hi - lo, 1e-6), 0, 1), (side, side), order=0) for p in panels]
    imsave(path, np.concatenate(tiles, axis=1), cmap="gray", vmin=0.0, vmax=1.0)
    return path


# --- documentation -----------------------------------------------------------------------------------


def documentation(model: Model, g: Geometry) -> str:
    """The package README: what the model does, the voxel sizes it was trained for, how to cite."""
    dz, dy, dx = model.spacing
    s = model.summary
    variant = ("an already z-interpolated stack (isotropic voxels, same size in and out)" if g.interpolated_input
               else "the raw anisotropic stack; it interpolates z itself and returns more planes")
    return f"""# Self-Net isotropic restoration (selfnet {model.version})

Restores an anisotropic 3D fluorescence stack (coarse z steps, blurred along z) to isotropic
resolution with Self-Net: a 2D deblurring network, learned from the lateral (XY) planes of one
stack, is run on every XZ and every YZ slice of the z-interpolated stack and the two are averaged.

This package takes {variant}.

## Voxel sizes it was trained for

- z step {dz:.4g} µm, pixel {dy:.4g} x {dx:.4g} µm (y x x), z/xy ratio {model.ratio:.3g}
- output voxel: {dx:.4g} µm on every axis
- training stack: {s.get("stack_name", "not recorded")} (sha256 {s.get("stack_sha256", "not recorded")})

Use it on stacks from the same microscope and settings. A stack whose z/xy ratio differs by more
than ~10 % from {model.ratio:.3g} should get its own model (`selfnet train`).

## Intensities

The input is scaled with the training stack's percentiles ({model.config.norm_percentiles[0]} % ->
{model.normalizer.low:.6g}, {model.config.norm_percentiles[1]} % -> {model.normalizer.high:.6g};
declared `scale_linear` preprocessing) and the output mapped back with the inverse (`scale_linear`
postprocessing), so results are on the input's intensity scale. `selfnet restore` instead fits
these percentiles on each stack: on the training stack both agree; on much brighter or dimmer
stacks prefer `selfnet restore` (the attached `{ORIGINAL_NAME}` works with `selfnet restore --model`).

## Tiling

Halos (from the measured receptive field): {g.halo_xy} px in y and x, {g.halo_z if g.halo_z else "none"} in z
{"(the z/xy ratio is not an integer: restore whole stacks in z, tile only in y and x)" if g.halo_z is None else ""}.

## Validation

The test input/output pair in this package was produced by selfnet {__version__}; the model
reproduces `selfnet restore` on its training stack (checked by selfnet's test suite). Quality
measures (FWHM, isotropy, data consistency) for your own stacks: `selfnet qc STACK --compare RESTORED`.

## Cite

{CITATION_TEXT} https://doi.org/{CITATION_DOI}
"""


# --- package -----------------------------------------------------------------------------------------


def export_package(model: Model, model_bytes: bytes, output: str | Path, *, interpolated_input: bool = False,
                   sample: np.ndarray | None = None, overwrite: bool = False) -> Path:
    """Write the bioimage.io package for ``model`` to ``output`` (``.zip``) atomically; return its path."""
    _require_bioimageio()
    target = check_output_path(output, overwrite=overwrite, suffixes=(".zip",))
    g = geometry(model, interpolated_input)
    x = test_input(sample if sample is not None else synthetic_sample(model, g), g)
    y = predict(model, g, x)
    with tempfile.TemporaryDirectory(prefix="selfnet-export-") as tmp:
        descr = _describe(model, model_bytes, g, x, y, Path(tmp))
        _save(descr, target)
    return target


def _describe(model: Model, model_bytes: bytes, g: Geometry, x: np.ndarray, y: np.ndarray, folder: Path) -> Any:
    """The bioimageio ModelDescr with all its files written into ``folder``."""
    from bioimageio.spec.model import v0_5 as b

    np.save(folder / "test_input.npy", x)
    np.save(folder / "test_output.npy", y)
    (folder / ORIGINAL_NAME).write_bytes(model_bytes)
    (folder / "README.md").write_text(documentation(model, g), encoding="utf-8")
    write_cover(folder / "cover.png", x[0, 0], y[0, 0], g)
    net = restorer(model, g)
    torch.save(net.state_dict(), folder / "weights.pt")
    torch.jit.script(net).save(str(folder / "weights_torchscript.pt"))
    arch = folder / "selfnet_restorer.py"
    arch.write_text(Path(wrapper_module.__file__).read_text(encoding="utf-8"), encoding="utf-8")
    torch_version = b.Version(torch.__version__.split("+")[0])
    low, high = model.normalizer.low, model.normalizer.high
    return b.ModelDescr(
        name=f"selfnet isotropic restoration {_variant(g)}".strip(),
        description=(f"Self-Net: isotropic restoration of anisotropic 3D fluorescence stacks (z/xy ratio "
                     f"{model.ratio:.3g}, trained on {model.summary.get('stack_name', 'one stack')})")[:1000],
        authors=[b.Author(name="selfnet user (trained with selfnet)")],
        cite=[b.CiteEntry(text=CITATION_TEXT, doi=b.Doi(CITATION_DOI))],
        license=b.LicenseId("CC-BY-4.0"),
        documentation=b.FileDescr(source=folder / "README.md"),
        covers=[b.FileDescr(source=folder / "cover.png")],
        attachments=[b.FileDescr(source=folder / ORIGINAL_NAME)],
        tags=["fluorescence-light-microscopy", "3d", "isotropic-reconstruction", "deblurring", "self-supervised",
              "pytorch", "selfnet"],
        inputs=[_input(b, g, folder / "test_input.npy", low, high)],
        outputs=[_output(b, g, folder / "test_output.npy", low, high)],
        weights=b.WeightsDescr(
            pytorch_state_dict=b.PytorchStateDictWeightsDescr(
                source=folder / "weights.pt", pytorch_version=torch_version,
                architecture=b.ArchitectureFromFileDescr(source=arch, callable="IsotropicRestorer",
                                                         kwargs=_restorer_kwargs(model, g))),
            torchscript=b.TorchscriptWeightsDescr(source=folder / "weights_torchscript.pt",
                                                  pytorch_version=torch_version, parent="pytorch_state_dict"),
        ),
        config=b.Config(
            bioimageio=b.BioimageioConfig(reproducibility_tolerance=[b.ReproducibilityTolerance(
                relative_tolerance=1e-3, absolute_tolerance=1e-4 * (high - low))]),
            selfnet={"model_file": ORIGINAL_NAME, "variant": _variant(g), "ratio": float(model.ratio),
                     "spacing_um": [float(s) for s in model.spacing], "normalizer": [low, high],
                     "norm_percentiles": list(model.config.norm_percentiles),
                     "exported_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                     "exported_with": f"selfnet {__version__}, torch {torch.__version__}"},
        ),
    )


def _variant(g: Geometry) -> str:
    return "interpolated-input" if g.interpolated_input else "raw-input"


def _space_in(b: Any, axis: str, scale: float, minimum: int) -> Any:
    return b.SpaceInputAxis(id=b.AxisId(axis), size=b.ParameterizedSize(min=minimum, step=1), scale=scale,
                            unit="micrometer")


def _input(b: Any, g: Geometry, test: Path, low: float, high: float) -> Any:
    """The raw stack: batch, one channel, z, y, x with the voxel sizes as scales; declared scaling."""
    gain, offset = 1.0 / (high - low), -low / (high - low)  # as _scaling: the training percentiles -> 0 and 1
    return b.InputTensorDescr(
        id=b.TensorId("raw"),
        description="z-interpolated stack (isotropic voxels)" if g.interpolated_input else "raw anisotropic stack",
        axes=[b.BatchAxis(), b.ChannelAxis(channel_names=[b.Identifier("intensity")]),
              *(_space_in(b, a, s, m) for a, s, m in zip("zyx", g.scale_in, g.min_in))],
        test_tensor=b.FileDescr(source=test),
        preprocessing=[b.EnsureDtypeDescr(kwargs=b.EnsureDtypeKwargs(dtype="float32")),
                       b.ScaleLinearDescr(kwargs=b.ScaleLinearKwargs(gain=gain, offset=offset))],
    )


def _space_out(b: Any, axis: str, scale: float, offset: int, halo: int | None) -> Any:
    size = b.SizeReference(tensor_id=b.TensorId("raw"), axis_id=b.AxisId(axis), offset=offset)
    if halo:
        return b.SpaceOutputAxisWithHalo(id=b.AxisId(axis), size=size, scale=scale, unit="micrometer", halo=halo)
    return b.SpaceOutputAxis(id=b.AxisId(axis), size=size, scale=scale, unit="micrometer")


def _output(b: Any, g: Geometry, test: Path, low: float, high: float) -> Any:
    """The isotropic stack: z sized by reference to the input z, every axis at the lateral pixel size; inverse scaling."""
    return b.OutputTensorDescr(
        id=b.TensorId("isotropic"),
        description="isotropic restoration, on the input's intensity scale",
        axes=[b.BatchAxis(), b.ChannelAxis(channel_names=[b.Identifier("intensity")]),
              _space_out(b, "z", g.scale_out[0], g.z_offset, g.halo_z),
              _space_out(b, "y", g.scale_out[1], 0, g.halo_xy),
              _space_out(b, "x", g.scale_out[2], 0, g.halo_xy)],
        test_tensor=b.FileDescr(source=test),
        postprocessing=[b.ScaleLinearDescr(kwargs=b.ScaleLinearKwargs(gain=high - low, offset=low))],
    )


def _save(descr: Any, target: Path) -> None:
    """Save the package zip atomically (a failed save leaves no file behind)."""
    from bioimageio.spec import save_bioimageio_package

    with atomic_write(target) as tmp:
        save_bioimageio_package(descr, output_path=tmp)
