"""One typed configuration for training and restoring, shared by CLI, API and the model file.

The config is a pydantic model with a ``version`` field; it round-trips to YAML/JSON and is saved
inside every model file and report, so a result can always be traced back to its settings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from selfnet.errors import ConfigError

CONFIG_VERSION = 4  # 2: ``psf``; 3: ``psf_channel``; 4: ``refine``


class NetConfig(BaseModel):
    """Size of one image-to-image ResNet: width, depth and pixel-unshuffle factor."""

    model_config = ConfigDict(extra="forbid")

    channels: int = Field(32, ge=4, le=256)
    blocks: int = Field(4, ge=0, le=32)
    unshuffle: Literal[1, 2, 4] = 2
    head_kernel: Literal[3, 5, 7] = 3


class DiscConfig(BaseModel):
    """PatchGAN discriminator: base width and number of stride-2 layers."""

    model_config = ConfigDict(extra="forbid")

    channels: int = Field(16, ge=4, le=256)
    layers: int = Field(3, ge=1, le=5)


class TrainConfig(BaseModel):
    """Everything that decides how a model is trained (not where data or outputs live)."""

    model_config = ConfigDict(extra="forbid")

    version: int = CONFIG_VERSION
    # budget
    epochs: int | None = Field(None, ge=1, le=10_000, description="None: 30, or until the budget")
    max_minutes: float | None = Field(None, gt=0, allow_inf_nan=False)
    steps_per_epoch: int = Field(100, ge=1)
    stage1_fraction: float = Field(0.3, gt=0.0, lt=1.0)
    # data
    patch_size: int = Field(64, ge=16, le=512, description=(
        "training patch (px); a 2D axial kernel (wide-field or aberrated optics, most PSFs) raises it to the "
        "kernel's reach on both sides plus 32 px, so that D sees where out-of-focus light comes from"))
    batch_size: int = Field(8, ge=1, le=512)
    pool_size: int = Field(1024, ge=16)
    foreground_percentile: float = Field(50.0, ge=0.0, lt=100.0)
    norm_percentiles: tuple[float, float] = (0.1, 99.99)
    # networks
    deblur: NetConfig = NetConfig()
    generator_b: NetConfig = NetConfig(channels=16, blocks=2, unshuffle=2)
    generator_a_channels: int = Field(16, ge=4, le=128)
    disc: DiscConfig = DiscConfig()
    # optimisation
    lr: float = Field(5e-4, gt=0)
    lr_gan: float = Field(2e-4, gt=0)
    betas: tuple[float, float] = (0.5, 0.999)
    cycle_weight: float = Field(10.0, ge=0)
    residual_weight: float = Field(100.0, ge=0, description="L1 penalty on G_A's CNN correction")
    gan_weight_stage2: float = Field(0.1, ge=0)
    feedback_weight: float = Field(0.0, ge=0, description=(
        "stage 2: weight of D's error fed back into G_A (with G_A's GAN and cycle terms); 0 = G_A stays "
        "fixed in stage 2. Off by default: it showed no gain in the ablations (docs/BENCHMARKS.md), 0.1 "
        "is the paper's design"))
    feedback_start: float = Field(0.2, ge=0, le=1, description="fraction of stage 2 before feedback")
    ssim_weight: float = Field(0.1, ge=0)
    gan_update_every: int = Field(2, ge=1, description="stage 2: update G_A every n steps")
    recorrupt: float = Field(1.0, ge=0, le=2, description=(
        "stage 2: split the XY noise between input and target (Recorrupted-to-Recorrupted, alpha; "
        "0 = off) so that D also learns to denoise"))
    use_cyclegan: bool = True
    degradation: Literal["learned", "physics", "unconstrained"] = Field("learned", description=(
        "how G_A is made: 'learned' = CycleGAN steps starting from the stack's own blur and noise "
        "estimates (default); 'physics' = those estimates alone, no CycleGAN steps; 'unconstrained' = "
        "the paper's CycleGAN with no physics pre-blur and no penalty on G_A's CNN (a baseline)"))
    psf: str | None = Field(None, description=(
        "a measured (beads) or computed PSF file (TIFF, OME-TIFF or .npy, Z Y X, with its voxel size) that "
        "gives the axial blur G_A starts from, instead of fitting it to the stack's spectra"))
    psf_channel: int | None = Field(None, ge=0, description=(
        "which channel of a multi-channel PSF file this model's channel takes (set per channel when a "
        "multi-channel stack trains, or from --channel); a single-channel PSF serves every channel"))
    refine: float = Field(0.5, ge=0, lt=1, description=(
        "with a PSF file: share of the deblurring budget (time or steps) spent refining D on its own restoration "
        "re-recorded through the PSF in 3D (0 = off)"))
    seed: int = Field(0, ge=0, le=2**32 - 1)

    @field_validator("version")
    @classmethod
    def _known_version(cls, value: int) -> int:
        if value > CONFIG_VERSION:
            raise ValueError(f"config version {value} was written by a newer selfnet (this one reads up to "
                             f"{CONFIG_VERSION}): upgrade selfnet")
        if value < 1:
            raise ValueError(f"config version must be at least 1, got {value}")
        return value

    @model_validator(mode="before")
    @classmethod
    def _older_versions_refine_nothing(cls, data: object) -> object:
        """A config written before ``refine`` (version < 4) trains as it did then: no refinement."""
        if isinstance(data, dict) and "refine" not in data and int(data.get("version", CONFIG_VERSION)) < 4:
            return {**data, "refine": 0.0}
        return data

    @field_validator("psf")
    @classmethod
    def _absolute_psf(cls, value: str | None) -> str | None:
        """An absolute path, so that a saved model says which file it was wherever it is read."""
        text = (value or "").strip()
        return str(Path(text).expanduser().absolute()) if text else None

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        lo, hi = self.norm_percentiles
        if not 0 <= lo < hi <= 100:
            raise ValueError("norm_percentiles must satisfy 0 <= low < high <= 100")
        if self.patch_size % 8:
            raise ValueError("patch_size must be a multiple of 8")
        if self.psf and self.degradation == "unconstrained":
            raise ValueError("a PSF sets the blur that degradation 'unconstrained' learns freely: "
                             "use degradation 'learned' or 'physics' with it")
        return self

    @property
    def refines(self) -> bool:
        """Whether training ends with the refinement (training/refine.py): a PSF file, a share of the budget for
        it, and the degradation model it refines after."""
        return self.psf is not None and self.refine > 0 and self.use_cyclegan

    def for_channel(self, channel: int | None) -> TrainConfig:
        """This config for training channel ``channel`` of a file: with a PSF, that channel of it, unless
        ``psf_channel`` already names one (a single-channel PSF ignores it)."""
        if self.psf is None or self.psf_channel is not None or channel is None:
            return self
        return self.model_copy(update={"psf_channel": channel})

    @classmethod
    def published(cls, **overrides: object) -> TrainConfig:
        """The network sizes and schedule of the Self-Net paper (64 channels, 6 blocks, 7x7 head)."""
        base = dict(
            deblur=NetConfig(channels=64, blocks=6, unshuffle=1, head_kernel=7),
            generator_b=NetConfig(channels=64, blocks=6, unshuffle=1, head_kernel=7),
            generator_a_channels=64,
            disc=DiscConfig(channels=64, layers=3),
            lr=1e-4,
            lr_gan=1e-4,
            recorrupt=0.0,
            feedback_weight=0.1,
        )
        base.update(overrides)
        return cls(**base)

    def to_yaml(self) -> str:
        """Serialise to YAML (tuples become lists)."""
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)

    @classmethod
    def from_yaml(cls, text: str) -> TrainConfig:
        """Parse YAML text written by :meth:`to_yaml`; bad values raise :class:`ConfigError`."""
        try:
            return cls.model_validate(yaml.safe_load(text) or {})
        except (ValidationError, yaml.YAMLError) as exc:
            raise ConfigError(f"invalid training config: {_first_error(exc)}") from None

    @classmethod
    def from_file(cls, path: str | Path) -> TrainConfig:
        """Read a YAML config file."""
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise ConfigError(f"cannot read config {path}: {exc.strerror}") from None
        return cls.from_yaml(text)


def make_config(**options: object) -> TrainConfig:
    """Build a config from keyword options, turning validation errors into one-line ConfigErrors."""
    try:
        return TrainConfig(**{k: v for k, v in options.items() if v is not None})
    except ValidationError as exc:
        raise ConfigError(f"invalid option: {_first_error(exc)}") from None


def _first_error(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err.get("loc", ()))
        return f"{loc}: {err.get('msg')}" if loc else str(err.get("msg"))
    return str(exc).splitlines()[0]
