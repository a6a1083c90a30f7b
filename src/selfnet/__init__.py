"""selfnet: isotropic restoration of anisotropic 3D fluorescence stacks by deep self-learning.

>>> import selfnet
>>> vol = selfnet.read_volume("stack.tif")                  # doctest: +SKIP
>>> model = selfnet.train(vol, max_minutes=5)               # doctest: +SKIP
>>> iso = selfnet.restore(vol, model)                       # doctest: +SKIP
>>> selfnet.write_volume("iso.tif", iso, (vol.spacing[2],) * 3)  # doctest: +SKIP
"""

__version__ = "0.1.0"

from selfnet.api import restore, train  # noqa: E402
from selfnet.config import NetConfig, TrainConfig  # noqa: E402
from selfnet.errors import SelfnetError  # noqa: E402
from selfnet.io import Volume, read_volume, write_volume  # noqa: E402
from selfnet.model import Model  # noqa: E402

__all__ = [
    "Model", "NetConfig", "SelfnetError", "TrainConfig", "Volume",
    "read_volume", "restore", "train", "write_volume", "__version__",
]
