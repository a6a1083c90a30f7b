"""Typed options of a job besides the training config: what to read, what to write, where to compute.

Each is a small pydantic model, checked when built, so the facade (:mod:`selfnet.api`) and every front
end pass one object instead of a chain of keywords. To add an option: add a field here (and its flag
in :mod:`selfnet.cli`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from selfnet.config import _first_error
from selfnet.errors import ConfigError
from selfnet.method.optics import Modality

NGFF_VERSIONS = ("0.4", "0.5")
DTYPES = ("float32", "float16", "uint16", "uint8", "int16")


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @classmethod
    def make(cls, **values: Any) -> Any:
        """Build from keywords (``None`` means "not given"); bad values raise a one-line ConfigError."""
        try:
            return cls(**{k: v for k, v in values.items() if v is not None})
        except ValidationError as exc:
            err = exc.errors()[0]
            if err.get("type") == "value_error":  # our own checks already say which option
                raise ConfigError(str(err["ctx"]["error"])) from None
            raise ConfigError(f"invalid option: {_first_error(exc)}") from None


class ReadOptions(_Options):
    """How to read a stack: voxel-size overrides (µm), axis names, which time point / channel, zarr level.

    Values are checked by :func:`selfnet.io.read_volume` against the file itself (ranges, axis letters).
    """

    lateral_um: float | None = None
    axial_um: float | None = None
    timepoint: int | None = None
    channel: int | None = None
    axes: str | None = None
    level: int = 0


class OutputSpec(_Options):
    """How to write the isotropic volume: type, replacement, block-wise options, OME-Zarr version."""

    dtype: str = "float32"
    overwrite: bool = False
    resume: bool = False
    chunked: bool = False
    block: str | tuple[int, int, int] | None = None
    pyramid: bool = False
    ngff: str = "0.4"

    @field_validator("ngff")
    @classmethod
    def _ngff(cls, value: str) -> str:
        if value not in NGFF_VERSIONS:
            raise ValueError(f"--ngff must be {' or '.join(NGFF_VERSIONS)}, got {value!r}")
        return value

    @field_validator("dtype")
    @classmethod
    def _dtype(cls, value: str) -> str:
        if value not in DTYPES:
            raise ValueError(f"unsupported output data type {value!r}: choose one of {', '.join(DTYPES)}")
        return value

    def wants_blocks(self, output: Path | None, cluster: ClusterSpec | None) -> bool:
        """Whether the user asked for block-wise restoring (an OME-Zarr output always is)."""
        from selfnet.io.zarr import is_zarr_path

        asked = self.chunked or self.block or self.resume or self.pyramid or (cluster and cluster.used)
        return bool(asked) or (output is not None and is_zarr_path(output))


class ClusterSpec(_Options):
    """Where blocks run: in-process (default), a local Dask cluster of ``workers``, or a ``scheduler``.

    A ``tls://`` scheduler is reached with the CA file, certificate and key given here (PEM files),
    or with Dask's own ``distributed.comm.tls`` settings when none is given.
    """

    workers: int | None = Field(None, ge=1)
    scheduler: str | None = None
    tls_ca_file: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None

    @field_validator("tls_ca_file", "tls_cert", "tls_key", mode="before")
    @classmethod
    def _pem_file(cls, value: Any, info: Any) -> str | None:
        if value is None:
            return None
        flag = "--" + str(info.field_name).replace("_", "-")
        path = Path(value).expanduser()
        if not path.is_file():
            raise ValueError(f"{flag} {value}: no such file")
        return str(path.resolve())

    @property
    def used(self) -> bool:
        """Whether any Dask cluster is asked for."""
        return bool(self.workers or self.scheduler)

    @model_validator(mode="after")
    def _one_kind(self) -> ClusterSpec:
        if self.workers and self.scheduler:
            raise ValueError("use either --workers or --scheduler, not both")
        if (self.tls_ca_file or self.tls_cert or self.tls_key) and not self.scheduler:
            raise ValueError("--tls-ca-file/--tls-cert/--tls-key go with --scheduler tls://HOST:PORT")
        return self


class SeriesOptions(_Options):
    """Multi-channel and time-lapse stacks: which stacks to restore, which time points train, shared model."""

    channels: str | None = None
    timepoints: str | None = None
    train_timepoints: str | None = None
    train_count: int = Field(3, ge=1, le=1000)
    shared_model: bool = False


class QCOptions(_Options):
    """What QC may assume: the optics' lateral resolution (FWHM, µm), when known."""

    lateral_fwhm: float | None = None

    @field_validator("lateral_fwhm")
    @classmethod
    def _fwhm(cls, value: float | None) -> float | None:
        if value is not None and not (math.isfinite(value) and value > 0):
            raise ValueError(f"--lateral-fwhm must be a positive number of µm, not {value}")
        return value


class Optics(_Options):
    """The microscope, for a PSF computed from its optics (``selfnet psf --optics``) where no beads were recorded.

    Defaults: an oil objective (immersion index 1.515) into a mounted sample (1.47) at the coverslip;
    a sample of another index imaged ``depth_um`` deep adds spherical aberration.
    """

    modality: Modality
    na: float = Field(gt=0, le=1.7)
    emission_um: float = Field(gt=0.2, lt=2.0)
    excitation_um: float | None = Field(None, gt=0.2, lt=2.0)
    pinhole_au: float = Field(1.0, gt=0, le=20)
    immersion_index: float = Field(1.515, ge=1.0, le=2.0)
    sample_index: float = Field(1.47, ge=1.0, le=2.0)
    depth_um: float = Field(0.0, ge=0, le=500)

    @model_validator(mode="after")
    def _check(self) -> Optics:
        if self.na >= self.immersion_index:
            raise ValueError(f"an NA of {self.na:g} needs an immersion medium of higher index than "
                             f"{self.immersion_index:g} (--immersion-index: oil 1.515, glycerol 1.47, water 1.33)")
        if self.modality == "confocal" and self.excitation_um is None:
            raise ValueError("a confocal PSF needs the excitation wavelength (--excitation-um)")
        return self

    def summary(self) -> str:
        """One line naming the optics, as a PSF's provenance."""
        text = f"{self.modality} NA {self.na:g}, emission {self.emission_um:g} µm"
        if self.modality == "confocal":
            text += f", excitation {self.excitation_um:g} µm, pinhole {self.pinhole_au:g} AU"
        text += f", immersion {self.immersion_index:g}, sample {self.sample_index:g}"
        return text + (f", {self.depth_um:g} µm deep" if self.depth_um else "")
