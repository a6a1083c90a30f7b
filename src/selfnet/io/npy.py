"""Read ``.npy`` arrays (memory-mapped) with voxel sizes from an optional JSON sidecar."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from selfnet.errors import InputError
from selfnet.io.common import _first_line, _Raw, _Sizes


def _read_npy(p: Path, label: str) -> _Raw:
    """Memory-map a ``.npy`` array; its voxel sizes come from a JSON sidecar if there is one."""
    try:
        data = np.load(p, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        reason = _first_line(exc)
        raise InputError(f"cannot read {label}: not a valid or complete .npy file ({reason})") from exc
    if not isinstance(data, np.ndarray):
        raise InputError(f"cannot read {label}: not a single NumPy array")
    axes = "ZYX"[-data.ndim :] if data.ndim <= 3 else "Q" * (data.ndim - 3) + "ZYX"
    sizes, notes = _npy_sidecar_sizes(p)
    content = _sidecar_content(p)
    named = str(content.get("axes", "")).upper()
    if len(named) == data.ndim and set(named) <= set("TCZYX"):
        axes = named  # written by selfnet: the sidecar names the axes
    display = content.get("display") if isinstance(content.get("display"), dict) else {}
    unit = "µm" if sizes else None
    return _Raw(data=data, axes=axes, sizes=sizes, source_format="npy", unit=unit, notes=notes, display=display)


def _sidecar_content(p: Path) -> dict[str, Any]:
    """The sidecar JSON object (empty when there is none; bad ones are reported by the spacing check)."""
    sidecar = p.with_name(p.name + ".json")
    try:
        content = json.loads(sidecar.read_text(encoding="utf-8")) if sidecar.is_file() else {}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return content if isinstance(content, dict) else {}


def _npy_sidecar_sizes(p: Path) -> tuple[list[_Sizes], list[str]]:
    """Read ``{"spacing": [dz, dy, dx]}`` (µm) from ``<file>.json`` or ``<stem>.json``."""
    for sidecar in (p.with_name(p.name + ".json"), p.with_suffix(".json")):
        if sidecar.is_file():
            dz, dy, dx = _parse_sidecar(sidecar)
            return [_Sizes("sidecar", z=dz, y=dy, x=dx)], [f"voxel size from {sidecar.name}"]
    return [], []


def _parse_sidecar(sidecar: Path) -> tuple[float, float, float]:
    """Parse and check the spacing list of a sidecar JSON file."""
    try:
        content = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot read sidecar {sidecar}: not valid JSON ({_first_line(exc)})") from exc
    spacing = content.get("spacing") if isinstance(content, dict) else None
    try:
        values = tuple(float(v) for v in spacing)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        values = ()
    if len(values) != 3 or not all(math.isfinite(v) and v > 0 for v in values):
        raise InputError(f'sidecar {sidecar} needs "spacing": [dz, dy, dx] with three positive µm values')
    return values[0], values[1], values[2]
