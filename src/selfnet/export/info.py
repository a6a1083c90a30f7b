"""Provenance of a model: what it was trained on, with which settings and software, and when.

:func:`stack_provenance` is recorded into the model's summary at training time;
:func:`provenance` reads it back (from a ``.pt`` or a bioimage.io package) for ``selfnet info``.
"""

from __future__ import annotations

import datetime
import hashlib
import platform
from pathlib import Path
from typing import Any

import numpy as np

from selfnet.export.zipped import package_notes
from selfnet.model import Model

HASH_FULL_BYTES = 2 << 30
"""In-RAM stacks up to this size are hashed in full; larger or lazy ones on a strided plane sample."""


def stack_hash(data: Any) -> tuple[str, str]:
    """(sha256 hex, ``"full"`` or ``"sampled"``) of a ZYX stack's voxels, shape and dtype."""
    digest = hashlib.sha256(f"{tuple(int(n) for n in data.shape)}|{np.dtype(data.dtype).str}".encode())
    if isinstance(data, np.ndarray) and data.nbytes <= HASH_FULL_BYTES:
        for plane in data:
            digest.update(np.ascontiguousarray(plane).tobytes())
        return digest.hexdigest(), "full"
    from selfnet.io.source import read_region

    step = max(1, int(data.shape[0]) // 16)
    for z in range(0, int(data.shape[0]), step):
        digest.update(np.ascontiguousarray(read_region(data, (slice(z, z + 1), slice(None), slice(None)))).tobytes())
    return digest.hexdigest(), "sampled"


def stack_provenance(data: Any, path: str | Path | None, spacing: tuple[float, float, float]) -> dict[str, Any]:
    """Summary entries naming the training stack (name, shape, voxel size, hash) and the date."""
    digest, kind = stack_hash(data)
    return {
        "stack_name": Path(str(path)).name if path is not None else "in-memory array",
        "stack_shape": [int(n) for n in data.shape],
        "stack_spacing_um": [float(s) for s in spacing],
        "stack_sha256": digest,
        "stack_hash": kind,
        "trained_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "numpy": np.__version__,
    }


def _steps(summary: dict[str, Any]) -> str:
    """``stage1 N, stage2 M`` from the summary's step counters."""
    parts = [f"{k[: -len('_steps')]} {v}" for k, v in summary.items() if k.endswith("_steps")]
    return ", ".join(parts) or "?"


def provenance(model: Model, source: str | Path | None = None) -> dict[str, Any]:
    """Plain provenance record of ``model`` (and of its bioimage.io package when ``source`` is one)."""
    s = model.summary
    dz, dy, dx = model.spacing
    record: dict[str, Any] = {
        "voxel size trained for (z, y, x µm)": f"{dz:.4g} x {dy:.4g} x {dx:.4g}",
        "z/xy ratio": round(float(model.ratio), 4),
        "channels": 1,
        "training stack": s.get("stack_name", "not recorded (model trained before selfnet recorded it)"),
        "training stack sha256": (f"{s['stack_sha256']} ({s.get('stack_hash', 'full')})"
                                  if "stack_sha256" in s else "not recorded"),
        "training stack shape (z, y, x)": "x".join(map(str, s["stack_shape"])) if "stack_shape" in s else "?",
        "steps": _steps(s),
        "training seconds": s.get("train_s", "?"),
        "device": s.get("device", "?"),
        "normalisation": f"percentiles {tuple(model.config.norm_percentiles)} -> "
                         f"[{model.normalizer.low:.6g}, {model.normalizer.high:.6g}]",
        "selfnet version": model.version,
        "torch version": s.get("torch", "?"),
        "trained at": s.get("trained_at", "not recorded"),
        "settings": model.config.model_dump(mode="json"),
    }
    if source is not None:
        record.update(package_notes(source))
    return record
