"""The trained model: weights plus everything restoring needs, in one self-contained file.

A model file is a ``torch.save`` dict of tensors and plain values (loaded with
``weights_only=True``): the deblurring net D, the degradation generator G_A (kept for QC), the
training config, the z/xy ratio, voxel sizes, normalisation, package version and a summary.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError

from selfnet._version import __version__
from selfnet.config import TrainConfig, _first_error
from selfnet.errors import ModelError
from selfnet.io import atomic_write, check_output_path
from selfnet.method.nets import DegradationGenerator, ResNet2d
from selfnet.method.normalize import Normalizer

MODEL_FORMAT = "selfnet-model"
MODEL_FORMAT_VERSION = 1
MODEL_SUFFIXES = (".pt", ".pth", ".selfnet")


def _plain(value: Any) -> Any:
    """JSON-safe copy (numpy scalars, versions etc. become plain values) so weights_only loading works."""
    return json.loads(json.dumps(value, default=lambda v: v.item() if hasattr(v, "item") else str(v)))


@dataclass
class Model:
    """A trained Self-Net model; build one with :func:`selfnet.train`, apply with :func:`selfnet.restore`."""

    config: TrainConfig
    ratio: float
    spacing: tuple[float, float, float]
    normalizer: Normalizer
    deblur_state: dict[str, torch.Tensor]
    generator_a_state: dict[str, torch.Tensor] | None = None
    generator_a_init: dict[str, float] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    version: str = __version__

    def deblur_net(self, device: torch.device | str = "cpu") -> ResNet2d:
        """The deblurring network D with its trained weights, in eval mode and channels_last layout.

        channels_last is the fast path of oneDNN and cuDNN convolutions (~2x on CPU for these nets).
        """
        net = ResNet2d(self.config.deblur)
        net.load_state_dict(self.deblur_state)
        return net.to(device=device, memory_format=torch.channels_last).eval()

    def degradation_net(self, device: torch.device | str = "cpu") -> DegradationGenerator | None:
        """The learned degradation G_A (for data-consistency checks), or None if not trained."""
        if self.generator_a_state is None:
            return None
        net = DegradationGenerator(self.config.generator_a_channels, **self.generator_a_init)
        net.load_state_dict(self.generator_a_state)
        return net.to(device).eval()

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form written to disk."""
        return {
            "format": MODEL_FORMAT,
            "format_version": MODEL_FORMAT_VERSION,
            "selfnet_version": self.version,
            "config": self.config.model_dump(mode="json"),
            "ratio": float(self.ratio),
            "spacing": [float(s) for s in self.spacing],
            "normalizer": {"low": self.normalizer.low, "high": self.normalizer.high},
            "deblur": {k: v.detach().cpu() for k, v in self.deblur_state.items()},
            "generator_a": None if self.generator_a_state is None
            else {k: v.detach().cpu() for k, v in self.generator_a_state.items()},
            "generator_a_init": dict(self.generator_a_init),
            "summary": _plain(self.summary),
        }

    def save(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Write the model atomically; refuses to replace an existing file unless ``overwrite``."""
        return _save_raw(self.to_dict(), path, overwrite)

    @classmethod
    def load(cls, path: str | Path) -> Model:
        """Read a model file (or the one attached to a ``selfnet export`` bioimage.io zip); bad files raise :class:`ModelError`."""
        return cls.from_dict(_load_raw(path), source=str(path))

    @classmethod
    def from_dict(cls, raw: Any, source: str = "model") -> Model:
        """Rebuild from :meth:`to_dict` output, validating format and version."""
        if isinstance(raw, dict) and raw.get("format") == SET_FORMAT:
            models = ModelSet.from_dict(raw, source).models
            if len(models) > 1:
                raise ModelError(f"{source} holds {len(models)} channel models: restore the whole multi-channel "
                                 "stack with it, or pick one with --channel")
            return models[0]
        if not isinstance(raw, dict) or raw.get("format") != MODEL_FORMAT:
            raise ModelError(f"{source} is not a selfnet model file")
        if raw.get("format_version", 0) > MODEL_FORMAT_VERSION:
            raise ModelError(f"{source} was written by a newer selfnet ({raw.get('selfnet_version')}); upgrade selfnet")
        try:
            model = cls(
                config=_config_of(raw["config"], source),
                ratio=float(raw["ratio"]),
                spacing=tuple(float(s) for s in raw["spacing"]),  # type: ignore[arg-type]
                normalizer=Normalizer(**raw["normalizer"]),
                deblur_state=raw["deblur"],
                generator_a_state=raw.get("generator_a"),
                generator_a_init=raw.get("generator_a_init", {}),
                summary=raw.get("summary", {}),
                version=raw.get("selfnet_version", "?"),
            )
            model.deblur_net()
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise ModelError(f"{source} is damaged or incomplete ({type(exc).__name__})") from None
        return model


def _config_of(raw: Any, source: str) -> TrainConfig:
    """The stored training config, checked (a newer config version is a clear error, not a crash)."""
    try:
        return TrainConfig.model_validate(raw)
    except ValidationError as exc:
        raise ModelError(f"{source}: {_first_error(exc)}") from None


def _save_raw(raw: dict[str, Any], path: str | Path, overwrite: bool) -> Path:
    """Write a model file's plain-data content atomically (never replacing a file unless ``overwrite``)."""
    target = check_output_path(path, overwrite=overwrite, suffixes=MODEL_SUFFIXES)
    with atomic_write(target) as tmp:
        torch.save(raw, tmp)
    return target


def _load_raw(path: str | Path) -> Any:
    """The plain-data content of a model file (or of the model attached to a bioimage.io zip)."""
    from selfnet.export.zipped import is_package, packaged_model_bytes

    path = Path(path)
    if not path.is_file():
        raise ModelError(f"model file not found: {path}")
    source: Any = io.BytesIO(packaged_model_bytes(path)) if is_package(path) else path
    try:
        return torch.load(source, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure to unpickle a foreign file is a bad model file
        raise ModelError(f"{path} is not a readable selfnet model ({type(exc).__name__})") from None


SET_FORMAT = "selfnet-model-set"


@dataclass
class ModelSet:
    """The models of a multi-channel stack: one per channel, or one ``shared`` by all channels."""

    models: list[Model]
    shared: bool = False
    channel_names: list[str] | None = None

    def for_channel(self, c: int) -> Model:
        """The model that restores channel ``c`` (its position among the channels trained)."""
        return self.models[0] if self.shared else self.models[c]

    @property
    def channels(self) -> int | None:
        """How many channels the set restores (None: shared, any number)."""
        return None if self.shared else len(self.models)

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form written to disk."""
        return {"format": SET_FORMAT, "format_version": MODEL_FORMAT_VERSION, "selfnet_version": __version__,
                "shared": self.shared, "channel_names": self.channel_names,
                "models": [m.to_dict() for m in self.models]}

    def save(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Write one file holding every channel's model (a single model is written as a plain model file)."""
        if len(self.models) == 1 and self.channel_names is None:
            return self.models[0].save(path, overwrite=overwrite)
        return _save_raw(self.to_dict(), path, overwrite)

    @classmethod
    def load(cls, path: str | Path) -> ModelSet:
        """Read a model-set file; a plain model file gives a shared set of one."""
        return cls.from_dict(_load_raw(path), str(path))

    @classmethod
    def from_dict(cls, raw: Any, source: str = "model") -> ModelSet:
        """Rebuild from :meth:`to_dict` output (or a plain model's)."""
        if isinstance(raw, dict) and raw.get("format") == MODEL_FORMAT:
            return cls([Model.from_dict(raw, source)], shared=True)
        if not isinstance(raw, dict) or raw.get("format") != SET_FORMAT or not raw.get("models"):
            raise ModelError(f"{source} is not a selfnet model file")
        if raw.get("format_version", 0) > MODEL_FORMAT_VERSION:
            raise ModelError(f"{source} was written by a newer selfnet ({raw.get('selfnet_version')}); upgrade selfnet")
        models = [Model.from_dict(m, f"{source} (channel model {i})") for i, m in enumerate(raw["models"])]
        names = raw.get("channel_names")
        return cls(models, bool(raw.get("shared")), [str(n) for n in names] if names else None)
