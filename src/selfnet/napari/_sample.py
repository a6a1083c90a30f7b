"""napari sample data: the built-in synthetic neurite stack (anisotropic, calibrated, no download)."""

from __future__ import annotations

from typing import Any

from selfnet.phantoms.synthetic import make_phantom

SAMPLE_SHAPE = (96, 128, 128)


def neurite_sample() -> list[tuple[Any, dict[str, Any], str]]:
    """A simulated neurite z-stack, every 4th plane kept (dz = 4 dx), as one image layer in µm."""
    ph = make_phantom("neurites", SAMPLE_SHAPE, k=4.0, axial_ratio=3.0, photons=300, seed=0)
    meta = {"selfnet": {"spacing": list(ph.spacing_raw), "calibrated": True, "source_format": "phantom"}}
    return [(ph.raw, {"name": "neurites (anisotropic)", "scale": ph.spacing_raw, "metadata": meta,
                      "units": ("micrometer",) * 3}, "image")]
