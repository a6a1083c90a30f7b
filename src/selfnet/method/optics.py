"""A PSF computed from the microscope's optics (psfmodels, Aguet et al. 2009), for users without beads.

``--psf`` needs a PSF; a bead recording (:mod:`selfnet.method.beads`) is best, and the objective's
numbers are the fallback that deconvolution software (Huygens, PSF Generator) also offers. This is
the one place that calls psfmodels: the diffraction-model phantoms (:mod:`selfnet.phantoms.optics`)
use it too. psfmodels is an optional extra (``selfnet[psf]``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import numpy as np

from selfnet.errors import ConfigError

Modality = Literal["widefield", "confocal"]
BOX_UM = (6.0, 3.0)  # default (z, lateral) extent, as for a PSF from beads
DEPTHS_UM = (0.0, 2.5, 5.0, 10.0, 20.0, 40.0)  # coarse grid of the depth fit, then refined around its best
REFINE = 3  # halvings of the step around the best depth


def vectorial_psf(modality: Modality, *, na: float, emission_um: float, voxel_um: tuple[float, float],
                  excitation_um: float | None = None, pinhole_au: float = 1.0, immersion_index: float = 1.515,
                  sample_index: float = 1.47, depth_um: float = 0.0,
                  box_um: tuple[float, float] = BOX_UM) -> np.ndarray:
    """(Z, Y, X) vectorial PSF on a ``voxel_um = (dz, dxy)`` grid, odd sizes, unit sum, peak on the central voxel.

    ``depth_um`` is how far into the sample (``sample_index``) the point lies; with a sample index
    other than the immersion's that brings spherical aberration (a long, skewed axial profile, whose
    peak moves off the nominal focus: the PSF is centred on its peak, where objects appear).
    """
    psfmodels = _psfmodels()
    dz, dxy = voxel_um
    half_z, half_xy = (max(2, round(extent / 2 / step)) for extent, step in zip(box_um, voxel_um))
    common: dict[str, Any] = {"dxy": dxy, "dz": dz, "NA": na, "ni": immersion_index, "ni0": immersion_index,
                              "ns": sample_index, "pz": depth_um}
    nz, nxy = 4 * half_z + 1, 2 * half_xy + 1  # twice as deep as kept, so that centring on the peak keeps the tails
    if modality == "confocal":
        if excitation_um is None:
            raise ConfigError("a confocal PSF needs the excitation wavelength (--excitation-um)")
        psf = psfmodels.confocal_psf(nz, nxy, pinhole_au=pinhole_au, ex_wvl=excitation_um, em_wvl=emission_um,
                                     **common)
    else:
        psf = psfmodels.make_psf(nz, nxy, wvl=emission_um, **common)
    peak = int(np.unravel_index(np.argmax(psf), psf.shape)[0])
    psf = np.asarray(psf[peak - half_z:peak + half_z + 1], dtype=np.float64)
    return (psf / psf.sum()).astype(np.float32)


def _psfmodels() -> Any:
    """The psfmodels module, or a one-line error naming the extra to install."""
    try:
        import psfmodels
    except ImportError:
        raise ConfigError("a PSF computed from the optics needs psfmodels: pip install 'selfnet[psf]'") from None
    return psfmodels


def fit_depth(misfit_at: Callable[[float], float], depths: tuple[float, ...] = DEPTHS_UM,
              rounds: int = REFINE) -> tuple[float, dict[float, float]]:
    """The depth (µm) whose PSF fits the stack best, and every depth tried with its misfit.

    A coarse grid, then ``rounds`` times the midpoints between the best depth and its neighbours: the misfit
    falls towards the sample's true aberration and rises past it (docs/BENCHMARKS.md), so this closes in on it.
    """
    tried = {d: misfit_at(d) for d in depths}
    for _ in range(rounds):
        grid = sorted(tried)
        i = grid.index(min(tried, key=tried.__getitem__))
        for j in (i - 1, i + 1):
            if 0 <= j < len(grid):
                middle = round((grid[i] + grid[j]) / 2, 3)
                if middle not in tried:
                    tried[middle] = misfit_at(middle)
    best = min(tried, key=tried.__getitem__)
    return best, dict(sorted(tried.items()))
