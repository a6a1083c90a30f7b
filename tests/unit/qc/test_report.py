"""The HTML report built from QC results: sections, embedded figures, atomic and never replaced silently."""

from __future__ import annotations

import re

import numpy as np
import pytest

from selfnet.errors import OutputError
from selfnet.inference.restore import interpolate_volume
from selfnet.io import Volume
from selfnet.phantoms.synthetic import make_phantom
from selfnet.qc.report import build_report, default_report_path, run_qc, write_report


@pytest.fixture(scope="module")
def result():
    ph = make_phantom("mix", (48, 64, 64), k=4.0, axial_ratio=3.0, photons=300, seed=2)
    raw = Volume(ph.raw, ph.spacing_raw)
    restored = Volume(interpolate_volume(ph.raw, ph.spacing_raw), ph.spacing_iso)
    return run_qc(raw, restored)


def test_report_has_every_section_and_inline_figures(result):
    html = build_report(result, title="t", settings={"output": "x.tif"}, timings={"training": 1.0})
    for section in ("Resolution and isotropy", "Orthogonal views", "XZ Fourier spectra", "Data consistency",
                    "Settings", "Timings", "Versions"):
        assert f"<h2>{section}</h2>" in html
    assert len(re.findall(r'src="data:image/png;base64,', html)) >= 5 and "http" not in html.split("<body>")[1][:200]
    assert result.comparison is not None and np.isfinite(result.comparison.after.isotropy)


def test_write_report_is_atomic_and_refuses_to_replace(result, tmp_path):
    path = write_report(tmp_path / "r.html", result)
    assert path.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    with pytest.raises(OutputError, match="exists"):
        write_report(tmp_path / "r.html", result)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.html"]
    assert default_report_path(tmp_path / "iso.ome.tif").name == "iso.report.html"


def test_qc_re_degrades_with_the_model_profile_only_when_it_has_tails() -> None:
    from types import SimpleNamespace

    from selfnet.qc.report import model_axial_profile

    taps = [0.1, 0.2, 0.4, 0.2, 0.1]
    gaussian = SimpleNamespace(summary={"estimated_axial_kernel": {"sigma": 2.0, "tail": 0.0, "cone": 0.0},
                                        "learned_axial_kernel": taps})
    tailed = SimpleNamespace(summary={"estimated_axial_kernel": {"sigma": 2.0, "tail": 0.5, "cone": 0.8},
                                      "learned_axial_kernel": taps})
    assert model_axial_profile(gaussian) is None  # a Gaussian model keeps QC's Gaussian re-degradation
    assert model_axial_profile(SimpleNamespace(summary={})) is None  # models from before the 2D kernel
    np.testing.assert_allclose(model_axial_profile(tailed), taps)


def test_the_training_section_warns_of_a_psf_that_does_not_fit(result):
    from dataclasses import replace

    from selfnet.method.kernel import PSF_MISFIT
    from ...conftest import random_model

    for misfit, shown in ((None, False), (1.2, False), (PSF_MISFIT * 3, True)):
        model = random_model(4.0)
        model.summary = {} if misfit is None else {"psf_misfit": misfit}
        html = build_report(replace(result, model=model), title="t")
        assert "<h2>Training</h2>" in html
        assert ("explains this stack's axial blur" in html) is shown, misfit
