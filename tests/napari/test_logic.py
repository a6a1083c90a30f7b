"""Restore/QC widget logic without napari or Qt: requests, the background job, texts."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from selfnet import api
from selfnet.errors import CancelToken, ConfigError, InputError
from selfnet.napari import _logic as logic


def test_spacing_comes_from_the_last_three_scale_entries():
    assert logic.spacing_from_scale((1.0, 2.0, 0.3, 0.25)) == (2.0, 0.3, 0.25)
    with pytest.raises(ConfigError, match="3 spatial axes"):
        logic.spacing_from_scale((1.0, 1.0))


@pytest.mark.parametrize("changes, message", [
    ({"spacing": (0.0, 0.2, 0.2)}, "positive"),
    ({"mode": "apply"}, "choose a saved model"),
    ({"mode": "apply", "model": Path("/nowhere/m.pt")}, "does not exist"),
    ({"minutes": 0.0}, "budget"),
    ({"device": "tpu"}, "unknown device"),
])
def test_bad_requests_are_refused_in_one_line(changes, message):
    req = logic.RestoreRequest(**{"spacing": (1.0, 0.2, 0.2), **changes})
    with pytest.raises(ConfigError, match=message):
        logic.check_request(req)


def test_current_stack_picks_the_time_point_and_clips():
    movie = np.arange(3 * 2 * 4 * 4).reshape(3, 2, 4, 4)
    np.testing.assert_array_equal(logic.current_stack(movie, [1]), movie[1])
    np.testing.assert_array_equal(logic.current_stack(movie, [7]), movie[2])
    with pytest.raises(ConfigError, match="3D"):
        logic.current_stack(np.zeros((4, 4)))


def test_large_results_go_to_a_temporary_ome_zarr(tmp_path):
    req = logic.RestoreRequest(spacing=(4.0, 1.0, 1.0))
    assert logic.output_voxels((11, 8, 8), req.spacing) == 41 * 64
    assert logic.result_path(req, (11, 8, 8), "x") is None
    big = logic.result_path(req, (200, 2048, 2048), "my stack [c0]")
    assert big is not None and big.name == "my_stack__c0_iso.ome.zarr"
    asked = logic.RestoreRequest(spacing=(4.0, 1.0, 1.0), output=tmp_path / "o.tif")
    assert logic.result_path(asked, (11, 8, 8), "x") == tmp_path / "o.tif"


def test_optional_path_and_progress_text():
    assert logic.optional_path("") is None and logic.optional_path(Path(".")) is None
    assert logic.optional_path("m.pt") == Path("m.pt")
    assert logic.psf_option("") == {} and logic.psf_option("psf.tif") == {"psf": "psf.tif"}
    assert logic.progress_text(api.ProgressEvent("stage 1 (CycleGAN)", 3, 50)) == "training stage 1 (CycleGAN): 3 / 50"
    assert logic.progress_text(api.ProgressEvent("qc", 0, 0)) == "measuring isotropy"


def _drain(gen):
    events = []
    while True:
        try:
            events.append(next(gen))
        except StopIteration as stop:
            return events, stop.value


def test_iter_job_yields_throttled_progress_then_returns():
    def job(progress):
        for i in range(1, 101):
            progress(api.ProgressEvent("restoring", i, 100))
        return "done"

    events, value = _drain(logic.iter_job(job, interval=10.0))
    assert value == "done"
    assert [e.done for e in events] == [1, 100]  # the stage's first, then only its last within the interval


def test_iter_job_raises_the_job_error_and_closing_cancels():
    def failing(progress):
        raise InputError("bad stack")

    with pytest.raises(InputError, match="bad stack"):
        _drain(logic.iter_job(failing))
    token, started = CancelToken(), threading.Event()

    def waits_for_cancel(progress):
        progress(api.ProgressEvent("stage1", 1, 10))
        started.set()
        while not token.cancelled:
            progress(api.ProgressEvent("stage1", 1, 10))
        return "stopped"

    gen = logic.iter_job(waits_for_cancel, token, interval=0.0)
    next(gen)
    gen.close()  # what napari's worker.quit() does
    assert token.cancelled


def test_job_trains_restores_and_measures(tiny_phantom, fast_options, tmp_path):
    req = logic.RestoreRequest(spacing=tiny_phantom.spacing_raw, minutes=1.0, device="cpu",
                               save_model=tmp_path / "m.pt", options=fast_options)
    events, result = _drain(logic.job_generator(tiny_phantom.raw, req, "raw", CancelToken()))
    assert not (result.cancelled or result.failed), result.message
    z, y, x = tiny_phantom.raw.shape
    assert result.data.shape == (logic.output_voxels((z, y, x), req.spacing) // (y * x), y, x)
    assert result.spacing == pytest.approx((tiny_phantom.spacing_raw[2],) * 3)
    assert result.name == "raw isotropic" and "isotropy" in result.qc and "→" in result.qc
    assert {e.stage for e in events} >= {"stage 1 (CycleGAN)", "stage 2 (deblur)", "restoring", "qc"}
    assert (tmp_path / "m.pt").is_file() and not list(tmp_path.glob("*.ckpt.pt"))
    applied = logic.RestoreRequest(spacing=tiny_phantom.spacing_raw, mode="apply", model=tmp_path / "m.pt",
                                   device="cpu", output=tmp_path / "iso.ome.zarr")
    _, lazy = _drain(logic.job_generator(tiny_phantom.raw, applied, "raw", CancelToken()))
    assert lazy.path == tmp_path / "iso.ome.zarr" and not isinstance(lazy.data, np.ndarray)  # dask, on disk
    assert lazy.data.shape == result.data.shape


def test_cancel_keeps_the_checkpoint_and_returns_no_data(tiny_phantom, fast_options, tmp_path):
    token = CancelToken()
    req = logic.RestoreRequest(spacing=tiny_phantom.spacing_raw, device="cpu", save_model=tmp_path / "m.pt",
                               options={**fast_options, "epochs": 50})
    gen = logic.job_generator(tiny_phantom.raw, req, "raw", token)
    next(gen)
    token.cancel()
    _, result = _drain(gen)
    assert result.cancelled and result.data is None and "continue an interrupted training" in result.message
    assert not (tmp_path / "m.pt").exists() and list(tmp_path.glob("*.ckpt.pt"))


def test_user_errors_come_back_as_a_failed_result(tiny_phantom, tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a model")
    req = logic.RestoreRequest(spacing=tiny_phantom.spacing_raw, mode="apply", model=bad, device="cpu")
    _, result = _drain(logic.job_generator(tiny_phantom.raw, req, "raw", CancelToken()))
    assert result.failed and result.data is None and "bad.pt" in result.message


def test_measure_one_layer_and_refuses_a_foreign_restoration(tiny_phantom):
    text = logic.measure(tiny_phantom.raw, tiny_phantom.spacing_raw)
    assert text.startswith("isotropy") and "axial FWHM" in text
    ok, message = logic.measure_or_error(tiny_phantom.raw, tiny_phantom.spacing_raw, tiny_phantom.gt_lateral,
                                         (0.5, 0.5, 0.5))
    assert not ok and "not the raw lateral pixel" in message


def test_compute_psf_needs_a_file_and_drops_confocal_fields_for_widefield(tmp_path):
    pytest.importorskip("psfmodels", reason="computed PSFs need the extra: pip install 'selfnet[psf]'")
    optics = {"modality": "widefield", "na": 1.2, "emission_um": 0.6, "excitation_um": 0.5, "pinhole_au": 1.0,
              "immersion_index": 1.33, "sample_index": 1.33, "depth_um": 0.0}
    assert logic.compute_psf(optics, (0.2, 0.1, 0.1), None) == (None, "choose where to save the PSF (.tif or .npy)")
    written, message = logic.compute_psf(optics, (0.2, 0.1, 0.1), tmp_path / "psf.tif")
    assert written is not None and written.path == tmp_path / "psf.tif" and message.startswith("widefield NA 1.2")
    assert "excitation" not in message and written.spacing == (0.2, 0.1, 0.1)
    again, reason = logic.compute_psf(optics, (0.2, 0.1, 0.1), tmp_path / "psf.tif")
    assert again is None and "--overwrite" in reason
