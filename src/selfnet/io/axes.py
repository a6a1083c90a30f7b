"""Axis names of an input and selection of one ZYX stack (``--axes``, ``--timepoint``, ``--channel``)."""

from __future__ import annotations

import numpy as np

from selfnet.errors import InputError

_UNKNOWN_AXES = "QI"


def _parse_axes(text: str, shape: tuple[int, ...], label: str) -> str:
    """Check an ``--axes`` value: one distinct letter of TCZYX per dimension, Z, Y and X included."""
    axes = str(text).strip().upper()
    if not axes or any(a not in "TCZYX" for a in axes) or len(set(axes)) != len(axes):
        raise InputError(f"--axes {text!r}: use distinct letters from T, C, Z, Y, X, e.g. --axes CZYX")
    if len(axes) != len(shape):
        raise InputError(f"--axes {axes} names {len(axes)} axes but {label} has {len(shape)} dimensions {tuple(shape)}")
    if not set("ZYX") <= set(axes):
        raise InputError(f"--axes {axes} must include Z, Y and X")
    return axes


def _select_zyx(
    data: np.ndarray, axes: str, timepoint: int | None, channel: int | None, label: str
) -> tuple[np.ndarray, dict[str, int]]:
    """Pick one time point / channel and return a ZYX view plus the selection made."""
    if "S" in axes:
        raise InputError(
            f"{label} is an RGB/multi-sample image (axes {axes}): selfnet needs a grey-level z-stack"
        )
    if len(axes) == 3 and axes[1:] == "YX" and axes[0] in "TC" and data.shape[0] > 1:
        noun = "time point" if axes[0] == "T" else "channel"
        raise InputError(f"{label} has {data.shape[0]} {noun}s and no z axis (axes {axes}): "
                         "if they are z planes, pass --axes ZYX")
    selected: dict[str, int] = {}
    choices = (("T", timepoint, "--timepoint", "time point"), ("C", channel, "--channel", "channel"))
    for axis, index, flag, noun in choices:
        data, axes, chosen = _pick_axis(data, axes, axis, index, flag, noun, label)
        if chosen is not None:
            selected[axis] = chosen
    data, axes = _squeeze_singletons(data, axes)
    return _as_zyx(data, axes, label), selected


def _pick_axis(
    data: np.ndarray, axes: str, axis: str, index: int | None, flag: str, noun: str, label: str
) -> tuple[np.ndarray, str, int | None]:
    """Index one T or C position (or squeeze a size-1 axis); index must be in range."""
    size = data.shape[axes.index(axis)] if axis in axes else 1
    if index is None:
        if size > 1:
            raise InputError(f"{label} has {size} {noun}s (axes {axes}): choose one with {flag} N")
        index = 0
    elif not isinstance(index, (int, np.integer)) or not 0 <= int(index) < size:
        held = f"{size} {noun}s (0 to {size - 1})" if size > 1 else f"a single {noun} (0)"
        raise InputError(f"{flag} {index} is out of range: {label} has {held}")
    if axis not in axes:
        return data, axes, None
    position = axes.index(axis)
    view = data[(slice(None),) * position + (int(index),)]
    return view, axes.replace(axis, ""), int(index)


def _squeeze_singletons(data: np.ndarray, axes: str) -> tuple[np.ndarray, str]:
    """Drop remaining size-1 axes other than Z, Y and X."""
    keep = [i for i, a in enumerate(axes) if data.shape[i] > 1 or a in "ZYX"]
    if len(keep) == len(axes):
        return data, axes
    drop = tuple(i for i in range(len(axes)) if i not in keep)
    return data.squeeze(axis=drop), "".join(axes[i] for i in keep)


def _as_zyx(data: np.ndarray, axes: str, label: str) -> np.ndarray:
    """Check that what is left is a ZYX stack with at least two planes."""
    if len(axes) == 3 and axes[1:] == "YX" and axes[0] in _UNKNOWN_AXES:
        axes = "ZYX"
    if len(axes) == 2 and axes == "YX":
        raise InputError(f"{label} is 2D (YX); selfnet needs a z-stack")
    if any(a in _UNKNOWN_AXES for a in axes):
        example = "TCZYX"[-len(axes):] if len(axes) <= 5 else "CZYX"
        raise InputError(
            f"{label} has {len(axes)} dimensions {tuple(data.shape)} without axis names: name them with "
            f"--axes (e.g. --axes {example}), then pick one stack with --channel N / --timepoint N"
        )
    if sorted(axes) == sorted("ZYX") and axes != "ZYX":
        data = data.transpose([axes.index(a) for a in "ZYX"])
        axes = "ZYX"
    if axes != "ZYX":
        raise InputError(
            f"{label} has axes {axes} {tuple(data.shape)}: selfnet needs a ZYX z-stack "
            "(with optional T and C axes)"
        )
    if data.shape[0] < 2:
        raise InputError(f"{label} has only {data.shape[0]} z plane(s); selfnet needs at least 2")
    return data
