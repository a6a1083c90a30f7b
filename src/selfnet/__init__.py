"""selfnet: isotropic restoration of anisotropic 3D fluorescence stacks by deep self-learning.

>>> import selfnet
>>> result = selfnet.run("stack.tif", "stack_iso.tif", max_minutes=5)     # doctest: +SKIP
>>> vol = selfnet.read_volume("stack.tif")                                 # doctest: +SKIP
>>> model = selfnet.train(vol, max_minutes=5)                              # doctest: +SKIP
>>> iso = selfnet.restore(vol, model).data                                 # doctest: +SKIP
"""

from selfnet._version import __version__
from selfnet.api import (
    CancelToken,
    ProgressEvent,
    Restored,
    RunResult,
    psf,
    qc,
    restore,
    run,
    theoretical_psf,
    train,
)
from selfnet.config import NetConfig, TrainConfig
from selfnet.errors import SelfnetError
from selfnet.io import Volume, read_volume, write_volume
from selfnet.model import Model
from selfnet.options import ClusterSpec, Optics, OutputSpec, ReadOptions

__all__ = [
    "CancelToken", "ClusterSpec", "Model", "NetConfig", "Optics", "OutputSpec", "ProgressEvent", "ReadOptions", "Restored",
    "RunResult", "SelfnetError", "TrainConfig", "Volume", "__version__", "psf", "qc", "read_volume", "restore", "run",
    "theoretical_psf", "train", "write_volume",
]
