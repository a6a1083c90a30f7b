"""Recorrupted (R2R) stage-2 pairs: input and target noise must be independent."""

import numpy as np
import torch

from selfnet.config import TrainConfig, make_config
from selfnet.method.normalize import Normalizer
from selfnet.phantoms.synthetic import make_phantom
from selfnet.training.loop import batches, prepare_data, recorrupt_alpha


def test_recorrupt_alpha_bounds():
    assert recorrupt_alpha(0.0, 0.2) == 0.0
    assert recorrupt_alpha(1.0, 0.2) == 1.0
    assert 0.3 <= recorrupt_alpha(1.0, 0.6) < 1.0           # capped so G_A can drop its own noise
    assert recorrupt_alpha(1.0, 0.95) == 0.0                # too little extra blur: off
    assert recorrupt_alpha(1.0, 1.0) == 0.0
    assert TrainConfig.published().recorrupt == 0.0 and make_config().recorrupt > 0


def test_recorrupted_batch_splits_the_noise():
    ph = make_phantom("neurites", (48, 64, 64), k=3.0, seed=0)
    norm = Normalizer.fit(ph.raw, (0.1, 99.99))
    cfg = make_config(patch_size=32, pool_size=64, batch_size=4)
    data = prepare_data(norm(ph.raw), 3.0, cfg, torch.device("cpu"), np.random.default_rng(0))
    gen = torch.Generator().manual_seed(0)
    alpha = 0.5
    b = next(batches(data, 4, gen, alpha))
    assert b.target.shape == b.xy.shape and b.lr_noisy.shape == b.xy_lr.shape and b.alpha == alpha
    z_target = (b.xy - b.target) * alpha                       # = z on the kept window
    var = data.noise.gain * b.xy.clamp(min=0) + data.noise.read_var
    assert abs(float((z_target.square() / var).mean()) - 1.0) < 0.15
    plain = next(batches(data, 4, torch.Generator().manual_seed(0)))
    assert plain.target is None and plain.lr_noisy is None
