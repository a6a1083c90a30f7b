"""The facade: sources, option routing, results, progress events, cancelling and config precedence."""

from __future__ import annotations

import numpy as np
import pytest

import selfnet
from selfnet import api
from selfnet.config import TrainConfig
from selfnet.errors import Cancelled, CancelToken, ConfigError, OutputError
from selfnet.io import read_volume
from selfnet.options import OutputSpec, ReadOptions


@pytest.fixture(scope="module")
def model(tiny_phantom, fast_config) -> selfnet.Model:
    return api.train(tiny_phantom.raw, tiny_phantom.spacing_raw, config=fast_config, device="cpu", progress=False)


def test_plain_arrays_need_a_spacing(tiny_phantom, model):
    with pytest.raises(ConfigError, match="spacing"):
        api.restore(tiny_phantom.raw, model, device="cpu", progress=False)
    with pytest.raises(ConfigError, match="3D"):
        api.open_volume(tiny_phantom.raw[0], (1.0, 0.25, 0.25))


def test_unknown_and_misplaced_options_are_refused(tiny_phantom, model):
    with pytest.raises(ConfigError, match="unknown option 'max_minute'"):
        api.train(tiny_phantom.raw, tiny_phantom.spacing_raw, max_minute=1, progress=False)
    with pytest.raises(ConfigError, match="training options"):
        api.restore(tiny_phantom.raw, model, tiny_phantom.spacing_raw, epochs=3, progress=False)
    with pytest.raises(ConfigError, match="--ngff"):
        OutputSpec.make(ngff="0.3")


def test_restore_in_memory_result(tiny_phantom, model):
    res = api.restore(tiny_phantom.raw, model, tiny_phantom.spacing_raw, device="cpu", progress=False)
    dz, dy, dx = tiny_phantom.spacing_raw
    assert res.path is None and res.data is not None and res.data.dtype == np.float32
    assert res.shape == res.data.shape and res.shape[1:] == tiny_phantom.raw.shape[1:]
    assert res.spacing == (dx, dy, dx) and res.mvox_per_s > 0


def test_progress_events_reach_a_callable(tiny_phantom, model):
    events: list[api.ProgressEvent] = []
    api.restore(tiny_phantom.raw, model, tiny_phantom.spacing_raw, device="cpu", progress=events.append)
    assert events and all(e.stage == "restoring" for e in events)
    assert events[-1].done == events[-1].total and all(a.done <= b.done for a, b in zip(events, events[1:]))


def test_cancel_stops_a_restore_and_writes_nothing(tiny_phantom, model, tmp_path):
    token = CancelToken()

    def cancel_at_first(event: api.ProgressEvent) -> None:
        token.cancel()

    out = tmp_path / "iso.tif"
    with pytest.raises(Cancelled):
        api.restore(tiny_phantom.raw, model, tiny_phantom.spacing_raw, output=out, device="cpu",
                    progress=cancel_at_first, cancel=token)
    assert list(tmp_path.iterdir()) == []


def test_cancel_stops_training_with_a_hint(tiny_phantom, fast_config, tmp_path):
    token = CancelToken()

    def cancel_in_stage1(event: api.ProgressEvent) -> None:
        if event.stage.startswith("stage 1") and event.done >= 2:
            token.cancel()

    with pytest.raises(Cancelled) as info:
        api.train(tiny_phantom.raw, tiny_phantom.spacing_raw, output=tmp_path / "m.pt", config=fast_config,
                  device="cpu", progress=cancel_in_stage1, cancel=token)
    assert "--resume" in info.value.hint()
    assert (tmp_path / "m.pt.ckpt.pt").is_file() and not (tmp_path / "m.pt").exists()


def test_run_on_a_path_writes_volume_and_report(tiny_tif, fast_config, tmp_path):
    out = tmp_path / "iso.tif"
    result = api.run(tiny_tif, out, config=fast_config, device="cpu", progress=False)
    written = read_volume(out)
    assert result.restored.path == out and written.data.shape == result.restored.shape
    assert written.spacing == pytest.approx(result.restored.spacing)
    assert result.report is not None and result.report.is_file() and result.qc.comparison is not None
    assert result.trained and result.model.summary["stage2_steps"] > 0
    with pytest.raises(OutputError, match="exists"):
        api.run(tiny_tif, out, config=fast_config, device="cpu", progress=False)


def test_given_options_override_the_config_and_only_those(tiny_phantom, tmp_path):
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text(TrainConfig(seed=7, epochs=3).to_yaml())
    assert api._config(cfg_file, {"seed": None, "epochs": None}).seed == 7
    assert api._config(cfg_file, {"seed": 2, "epochs": None}).seed == 2
    assert api._config(cfg_file, {"seed": None, "epochs": 5}).epochs == 5


def test_read_options_travel_with_flat_keywords():
    merged = api._merge_read(ReadOptions(lateral_um=0.2), {"axial_um": 1.0})
    assert (merged.lateral_um, merged.axial_um) == (0.2, 1.0)
