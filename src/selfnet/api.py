"""Python API mirroring the CLI: numpy arrays (or :class:`~selfnet.io.Volume`) in and out.

>>> import selfnet
>>> model = selfnet.train(stack, spacing=(1.0, 0.25, 0.25), max_minutes=5)   # doctest: +SKIP
>>> iso = selfnet.restore(stack, model, spacing=(1.0, 0.25, 0.25))           # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

import numpy as np

from selfnet.config import TrainConfig, make_config
from selfnet.devices import resolve_device
from selfnet.errors import ConfigError
from selfnet.io import Volume, validate_volume
from selfnet.model import Model
from selfnet.progress import Bars
from selfnet.restore import VIEWS, restore_volume
from selfnet.train import train_model

Spacing = tuple[float, float, float]


def as_volume(volume: np.ndarray | Volume, spacing: Spacing | None) -> Volume:
    """Wrap an array with its ``spacing=(dz, dy, dx)`` (µm) and validate it."""
    if isinstance(volume, Volume):
        vol = volume if spacing is None else Volume(volume.data, tuple(spacing), volume.path, volume.metadata)
    else:
        if spacing is None:
            raise ConfigError("spacing=(dz, dy, dx) in µm is required for a plain array")
        arr = np.asarray(volume)
        if arr.ndim != 3:
            raise ConfigError(f"expected a 3D ZYX array, got shape {arr.shape}")
        vol = Volume(arr, tuple(float(s) for s in spacing))  # type: ignore[arg-type]
    validate_volume(vol)
    return vol


def train(volume: np.ndarray | Volume, spacing: Spacing | None = None, *, config: TrainConfig | None = None,
          device: str = "auto", progress: bool = True, **options: Any) -> Model:
    """Learn a Self-Net model from the stack itself.

    Parameters
    ----------
    volume : ZYX array or Volume
    spacing : (dz, dy, dx) voxel size in µm (taken from ``volume`` if it is a Volume)
    config : full training config; ``options`` (e.g. ``max_minutes=5, epochs=10, seed=1``) override it
    device : ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``
    """
    vol = as_volume(volume, spacing)
    cfg = make_config(**{**(config.model_dump() if config else {}), **options})
    with Bars(progress) as bars:
        return train_model(vol.data, vol.spacing, cfg, resolve_device(device), on_step=bars.train_step)


def restore(volume: np.ndarray | Volume, model: Model, spacing: Spacing | None = None, *, device: str = "auto",
            progress: bool = True, views: tuple[str, ...] = VIEWS, force: bool = False) -> np.ndarray:
    """Restore a stack to isotropic resolution: float32 ZYX on the input's intensity scale.

    The output's voxel size is the input's lateral pixel size on all three axes.
    """
    vol = as_volume(volume, spacing if spacing is not None or isinstance(volume, Volume) else model.spacing)
    with Bars(progress) as bars:
        out, _ = restore_volume(vol.data, vol.spacing, model, resolve_device(device), views=views,
                                force=force, on_progress=bars.restore_step)
    return out
