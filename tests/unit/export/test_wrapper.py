"""The portable restorer (selfnet.export.wrapper) against selfnet's own restore, without bioimageio."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from selfnet.config import NetConfig, make_config
from selfnet.export.bioimageio import geometry, predict, restorer
from selfnet.export.wrapper import z_matrix
from selfnet.inference.restore import restore_volume
from selfnet.method.nets import ResNet2d
from selfnet.method.normalize import Normalizer
from selfnet.method.resample import n_iso, resample_matrix
from selfnet.model import Model


def _model(spacing: tuple[float, float, float], unshuffle: int = 2) -> Model:
    """An untrained model whose tail is not zero (so D is not the identity)."""
    cfg = make_config(deblur=NetConfig(channels=8, blocks=1, unshuffle=unshuffle))
    torch.manual_seed(0)
    net = ResNet2d(cfg.deblur)
    for p in net.tail.parameters():
        torch.nn.init.normal_(p, std=0.1)
    return Model(cfg, spacing[0] / spacing[2], spacing, Normalizer(10.0, 900.0), net.state_dict())


@pytest.mark.parametrize(("spacing", "unshuffle"), [((1.0, 0.25, 0.25), 2), ((0.5, 0.2, 0.2), 1)])
def test_restorer_matches_restore_volume(spacing: tuple[float, float, float], unshuffle: int) -> None:
    """Integer (4) and non-integer (2.5) ratios: the first planes equal restore's; at most one plane fewer."""
    model = _model(spacing, unshuffle)
    vol = (np.random.default_rng(0).random((13, 33, 36)) * 1000).astype(np.float32)
    ref, _ = restore_volume(vol, spacing, model, torch.device("cpu"), normalizer=model.normalizer)
    g = geometry(model, interpolated_input=False)
    got = predict(model, g, vol[None, None])[0, 0]
    assert ref.shape[0] - 1 <= got.shape[0] <= ref.shape[0] == n_iso(13, model.ratio)
    assert np.abs(got - ref[: got.shape[0]]).max() < 1e-4 * float(ref.max() - ref.min())
    assert (g.halo_z is None) == (model.ratio != int(model.ratio))
    scripted = torch.jit.script(restorer(model, g))
    x = torch.from_numpy(model.normalizer(vol))[None, None]
    with torch.no_grad():
        assert torch.allclose(scripted(x), restorer(model, g)(x), atol=1e-6)


def test_z_matrix_equals_selfnet_interpolation() -> None:
    """The torch z-interpolation matrix is selfnet's Keys cubic matrix (edges replicated, exact rows one-hot)."""
    for n, ratio in ((7, 3.0), (9, 2.5), (5, 1.7)):
        m = n_iso(n, ratio)
        expected = resample_matrix(n, np.arange(m) / ratio)
        assert np.allclose(z_matrix(n, m, ratio).numpy(), expected, atol=1e-7)


def test_interpolated_variant_keeps_the_size() -> None:
    model = _model((1.0, 0.25, 0.25))
    g = geometry(model, interpolated_input=True)
    vol = (np.random.default_rng(1).random((40, 32, 32)) * 900).astype(np.float32)
    assert predict(model, g, vol[None, None]).shape == (1, 1, 40, 32, 32)
    assert g.scale_in == g.scale_out == (0.25, 0.25, 0.25) and g.z_offset == 0
