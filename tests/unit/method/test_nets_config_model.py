"""Networks, the typed config and the model file."""

from pathlib import Path

import pytest
import torch

from selfnet.config import CONFIG_VERSION, NetConfig, TrainConfig, make_config
from selfnet.devices import resolve_device
from selfnet.errors import ConfigError, DeviceError, ModelError, OutputError
from selfnet.method.nets import DegradationGenerator, PatchDiscriminator, ResNet2d
from selfnet.method.normalize import Normalizer
from selfnet.model import Model


@pytest.mark.parametrize("unshuffle", [1, 2, 4])
def test_resnet_is_identity_at_init_and_keeps_shape(unshuffle):
    net = ResNet2d(NetConfig(channels=8, blocks=1, unshuffle=unshuffle))
    x = torch.randn(2, 1, 32, 24)
    y = net(x)
    assert y.shape == x.shape
    torch.testing.assert_close(y, x)  # zero-initialised tail: starts as the identity


def test_degradation_generator_blurs_rows_only_and_adds_noise():
    g = DegradationGenerator(4, sigma=2.0, radius=8, gain=0.0, read_var=0.01)
    x = torch.zeros(1, 1, 33, 33)
    x[..., 16, 16] = 1.0
    mean = g.mean(x)
    assert mean[0, 0, :, 16].count_nonzero() > 9  # spread along rows (z)
    assert mean[0, 0, 16].count_nonzero() == 1  # not along columns
    eps = torch.randn_like(x)
    assert (g(x, eps) - mean).std() > 0.05


def test_patch_discriminator_output_is_a_map():
    d = PatchDiscriminator(TrainConfig().disc)
    assert d(torch.randn(3, 1, 64, 64)).shape == (3, 1, 8, 8)


def test_config_yaml_roundtrip_and_validation():
    cfg = make_config(max_minutes=2.5, epochs=4, seed=7)
    again = TrainConfig.from_yaml(cfg.to_yaml())
    assert again == cfg and again.version == CONFIG_VERSION == 4
    old = TrainConfig.from_yaml("version: 1\nseed: 3\n")  # a version-1 file (before ``psf``) still reads
    assert old.seed == 3 and old.psf is None
    assert TrainConfig.from_yaml("version: 2\npsf: /data/psf.tif\n").psf_channel is None  # before ``psf_channel``
    assert TrainConfig.from_yaml("version: 3\npsf: /data/psf.tif\n").refine == 0.0  # trains as it did before ``refine``
    assert TrainConfig().refine == 0.5 and TrainConfig.from_yaml("version: 3\nrefine: 0.3\n").refine == 0.3
    with pytest.raises(ConfigError, match="max_minutes"):
        make_config(max_minutes=-1)
    with pytest.raises(ConfigError, match="epochs"):
        make_config(epochs=0)
    with pytest.raises(ConfigError):
        TrainConfig.from_yaml("patch_size: 30\n")
    assert TrainConfig.published().deblur.channels == 64


def test_config_stores_the_psf_as_an_absolute_path_and_refuses_it_unconstrained():
    assert make_config(psf="psf.tif").psf == str(Path("psf.tif").absolute())
    assert make_config(psf="/data/psf.tif").psf == "/data/psf.tif" and make_config(psf=" ").psf is None
    with pytest.raises(ConfigError, match="unconstrained"):
        make_config(psf="psf.tif", degradation="unconstrained")


def test_devices():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in {"cpu", "cuda", "mps"}
    with pytest.raises(DeviceError, match="unknown device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="CUDA is not available"):
            resolve_device("cuda:0")


def _tiny_model() -> Model:
    cfg = make_config(deblur=NetConfig(channels=4, blocks=1))
    net = ResNet2d(cfg.deblur)
    return Model(cfg, 3.0, (0.6, 0.2, 0.2), Normalizer(1.0, 9.0), net.state_dict(), summary={"a": 1})


def test_model_save_load_roundtrip_and_refusals(tmp_path):
    model = _tiny_model()
    path = model.save(tmp_path / "m.pt")
    loaded = Model.load(path)
    assert loaded.ratio == 3.0 and loaded.spacing == (0.6, 0.2, 0.2)
    assert loaded.normalizer == Normalizer(1.0, 9.0) and loaded.config == model.config
    assert loaded.summary == {"a": 1}
    with pytest.raises(OutputError, match="exists"):
        model.save(path)
    (tmp_path / "junk.pt").write_bytes(b"not a model at all")
    with pytest.raises(ModelError):
        Model.load(tmp_path / "junk.pt")
    truncated = tmp_path / "cut.pt"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ModelError):
        Model.load(truncated)
    torch.save({"weights": torch.zeros(3)}, tmp_path / "foreign.pt")
    with pytest.raises(ModelError, match="not a selfnet model"):
        Model.load(tmp_path / "foreign.pt")
    with pytest.raises(ModelError, match="not found"):
        Model.load(tmp_path / "missing.pt")
