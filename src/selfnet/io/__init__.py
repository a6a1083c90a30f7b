"""Read and write anisotropic z-stacks with their voxel sizes.

Inputs are ImageJ hyperstacks, OME-TIFF, plain TIFF and ``.npy`` (with an optional JSON sidecar);
outputs are ImageJ TIFF, OME-TIFF or ``.npy`` so that Fiji and napari show the right scale.
Every problem a user can cause raises :class:`~selfnet.errors.InputError` or
:class:`~selfnet.errors.OutputError` with a one-line message.

The package is split by responsibility:

- :mod:`selfnet.io.volume`: :class:`Volume`, :func:`read_volume` (format dispatch) and voxel-size resolution
- :mod:`selfnet.io.axes`: axis names and selection of one ZYX stack (``--axes``, ``--timepoint``, ``--channel``)
- :mod:`selfnet.io.tiff`: TIFF / ImageJ / OME-TIFF reading and their voxel sizes
- :mod:`selfnet.io.npy`: ``.npy`` reading and its JSON sidecar
- :mod:`selfnet.io.common`: what the format readers return, and the one-line message helper
- :mod:`selfnet.io.validate`: :func:`validate_volume` and the accepted anisotropy range
- :mod:`selfnet.io.atomic`: :func:`atomic_write`
- :mod:`selfnet.io.write`: output checks, :func:`write_volume` (ImageJ TIFF, OME-TIFF, npy) and :func:`to_dtype`

OME-Zarr reading and writing live in :mod:`selfnet.ngff`, imported lazily by these modules.
"""

from __future__ import annotations

import tifffile  # noqa: F401  (``selfnet.io.tifffile``: the writers call ``tifffile.imwrite`` through the module)

from selfnet.io.atomic import atomic_write
from selfnet.io.validate import FINE_RATIO, MAX_RATIO, MIN_RATIO, SQUARE_TOLERANCE, validate_volume
from selfnet.io.volume import Volume, read_volume
from selfnet.io.write import (
    check_output_dtype,
    check_output_path,
    to_dtype,
    write_volume,
)

__all__ = [
    "FINE_RATIO",
    "MAX_RATIO",
    "MIN_RATIO",
    "SQUARE_TOLERANCE",
    "Volume",
    "atomic_write",
    "check_output_dtype",
    "check_output_path",
    "read_volume",
    "to_dtype",
    "validate_volume",
    "write_volume",
]
