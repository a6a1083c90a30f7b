"""`selfnet qc` and the HTML report as a user meets them: JSON line, report files, errors, a browser."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from selfnet.io import Volume, write_volume
from selfnet.phantoms.synthetic import Phantom, make_phantom, save_phantom
from selfnet.qc.report import default_report_path, run_qc, write_report

from ..conftest import run_cli

SECTIONS = ("Resolution and isotropy", "Orthogonal views", "Zoomed crops", "Maximum intensity projections",
            "Line profile along z", "XZ Fourier spectra", "Settings", "Timings", "Versions")


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Phantom, Path, Path]:
    """A raw mix phantom (k = 4) and its ideal restoration (the truth on the raw intensity scale)."""
    folder = tmp_path_factory.mktemp("qc")
    ph = make_phantom("mix", (48, 64, 64), k=4.0, axial_ratio=3.0, sigma_lateral_px=1.5, photons=300, seed=1)
    raw = save_phantom(ph, folder)["raw"]
    ideal = write_volume(folder / "ideal.tif", ph.gt_lateral[ph.iso_slice()] + 110.0, ph.spacing_iso)
    return ph, raw, ideal


def _last_json(stdout: str) -> dict:
    lines = [line for line in stdout.strip().splitlines() if line.strip()]
    return json.loads(lines[-1])


def _assert_clean_error(proc: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    assert len(lines) >= 1 and lines[-1].startswith("selfnet: error:"), proc.stderr
    assert "Traceback" not in proc.stderr
    for fragment in fragments:
        assert fragment in lines[-1], proc.stderr


def _assert_self_contained(text: str) -> None:
    assert text.lstrip().startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")
    assert "<script" not in text and "<link" not in text and "url(" not in text
    sources = re.findall(r'src="([^"]*)"', text)
    assert sources and all(src.startswith("data:image/png;base64,") for src in sources)
    assert not re.search(r'href="(?!#)', text)


def test_default_report_path():
    assert default_report_path(Path("out/iso.tif")) == Path("out/iso.report.html")
    assert default_report_path(Path("iso.ome.tif")) == Path("iso.report.html")
    assert default_report_path(Path("iso.npy")) == Path("iso.report.html")
    assert default_report_path(Path("iso.ome.zarr")) == Path("iso.report.html")


def test_qc_json_is_the_last_stdout_line(pair):
    ph, raw, _ = pair
    proc = run_cli("qc", raw, "--json")
    assert proc.returncode == 0, proc.stderr
    result = _last_json(proc.stdout)
    lateral = 2.3548 * 1.5 * ph.spacing_iso[2]
    assert result["lateral_um"] == pytest.approx(lateral, rel=0.25)
    assert result["axial_um"] == pytest.approx(3 * lateral, rel=0.25)
    assert result["isotropy"] == pytest.approx(1 / 3, rel=0.25)
    assert "isotropy" in proc.stderr  # the human summary moves to stderr under --json
    given = run_cli("qc", raw, "--json", "--lateral-fwhm", f"{lateral:.4f}")
    assert given.returncode == 0, given.stderr
    assert _last_json(given.stdout)["lateral_um"] == pytest.approx(lateral, rel=1e-3)
    assert _last_json(given.stdout)["isotropy"] == pytest.approx(1 / 3, rel=0.25)
    bad = run_cli("qc", raw, "--lateral-fwhm", "-1")
    assert bad.returncode == 2 and "--lateral-fwhm" in bad.stderr and "Traceback" not in bad.stderr


def test_qc_plain_output_is_human_readable(pair):
    _, raw, _ = pair
    proc = run_cli("qc", raw)
    assert proc.returncode == 0, proc.stderr
    assert "lateral" in proc.stdout and "axial" in proc.stdout and "isotropy" in proc.stdout


def test_qc_compare_writes_a_self_contained_report(pair, tmp_path):
    _, raw, ideal = pair
    folder = tmp_path / "reports"
    proc = run_cli("qc", raw, "--compare", ideal, "--report", folder, "--json")
    assert proc.returncode == 0, proc.stderr
    result = _last_json(proc.stdout)
    assert result["compare"]["isotropy"] > 2 * result["isotropy"]
    assert result["consistency"]["correlation"] > 0.9
    report = folder / "raw.report.html"
    text = report.read_text(encoding="utf-8")
    _assert_self_contained(text)
    for section in (*SECTIONS, "Data consistency"):
        assert f"<h2>{section}</h2>" in text, section
    assert text.count("data:image/png;base64,") >= 6  # views, crops, MIPs, profile, spectra, consistency
    again = run_cli("qc", raw, "--report", folder)
    _assert_clean_error(again, "--overwrite")
    assert run_cli("qc", raw, "--report", folder, "--overwrite").returncode == 0


def _cli_in_process(monkeypatch, capsys, *args: object) -> subprocess.CompletedProcess[str]:
    """Run ``selfnet.cli.main`` in this process (no interpreter start-up) and capture its output."""
    from selfnet.cli import main

    monkeypatch.setattr("sys.argv", ["selfnet", *map(str, args)])
    with pytest.raises(SystemExit) as exit_info:
        main()
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(args, int(exit_info.value.code or 0), out, err)


def test_qc_errors_are_one_line(pair, tmp_path, monkeypatch, capsys):
    _, raw, _ = pair

    def cli(*args: object) -> subprocess.CompletedProcess[str]:
        return _cli_in_process(monkeypatch, capsys, *args)

    _assert_clean_error(cli("qc", tmp_path / "missing.tif"), "does not exist")
    _assert_clean_error(cli("qc", raw, "--model", tmp_path / "m.pt"), "--compare")
    afile = tmp_path / "afile"
    afile.write_text("x")
    _assert_clean_error(cli("qc", raw, "--report", afile), "folder")
    other = tmp_path / "other.npy"
    np.save(other, np.random.default_rng(0).random((40, 32, 32)).astype(np.float32))
    _assert_clean_error(cli("qc", raw, "--compare", other), "does not match")
    small = tmp_path / "small.npy"
    np.save(small, np.ones((4, 4, 4), dtype=np.float32))
    _assert_clean_error(cli("qc", small, "--lateral-um", "0.2", "--axial-um", "0.8"), "at least 8")
    _assert_clean_error(run_cli("qc", tmp_path / "missing.tif"), "does not exist")  # and as a real process


def test_run_writes_report_next_to_output(tiny_tif, fast_config_file, tmp_path):
    out = tmp_path / "iso.tif"
    proc = run_cli("run", tiny_tif, "-o", out, "--config", fast_config_file, "--quiet")
    assert proc.returncode == 0, proc.stderr
    report = tmp_path / "iso.report.html"
    assert out.exists() and report.exists()
    text = report.read_text(encoding="utf-8")
    _assert_self_contained(text)
    for section in (*SECTIONS, "Data consistency", "Training"):
        assert f"<h2>{section}</h2>" in text, section
    assert "stage2" in text or "deblur" in text  # loss curves and config are there
    assert "report" in proc.stderr and "isotropy" in proc.stderr
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_run_passes_a_given_lateral_resolution_to_the_report(tiny_tif, fast_config_file, tmp_path):
    out = tmp_path / "iso.tif"
    bad = run_cli("run", tiny_tif, "-o", out, "--config", fast_config_file, "--quiet", "--lateral-fwhm", "0")
    _assert_clean_error(bad, "--lateral-fwhm")
    assert not out.exists()
    proc = run_cli("run", tiny_tif, "-o", out, "--config", fast_config_file, "--quiet", "--lateral-fwhm", "0.47")
    assert proc.returncode == 0, proc.stderr
    text = (tmp_path / "iso.report.html").read_text(encoding="utf-8")
    assert "lateral FWHM given" in text


def test_run_checks_report_path_before_training_and_no_report_skips_it(tiny_tif, fast_config_file, tmp_path):
    out = tmp_path / "iso.tif"
    report = tmp_path / "iso.report.html"
    report.write_text("precious")
    proc = run_cli("run", tiny_tif, "-o", out, "--config", fast_config_file, "--quiet")
    _assert_clean_error(proc, "iso.report.html", "--overwrite")
    assert not out.exists() and report.read_text() == "precious"
    proc = run_cli("run", tiny_tif, "-o", out, "--config", fast_config_file, "--quiet", "--no-report")
    assert proc.returncode == 0, proc.stderr
    assert out.exists() and report.read_text() == "precious"


def _browser() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if path := shutil.which(name):
            return path
    return None


@pytest.mark.skipif(_browser() is None, reason="no headless Chromium on this machine")
def test_report_renders_in_headless_chromium(pair, tmp_path):
    """Render as a user would and check that the page is not blank and its images are drawn."""
    import matplotlib.image as mpimg

    ph, raw, ideal = pair
    result = run_qc(Volume(ph.raw, ph.spacing_raw, raw), Volume(ph.gt_lateral[ph.iso_slice()] + 110.0,
                                                                ph.spacing_iso, ideal))
    page = write_report(tmp_path / "pair.report.html", result)
    shot = tmp_path / "shot.png"
    proc = subprocess.run([_browser(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           f"--screenshot={shot}", "--window-size=1400,4000", page.as_uri()],
                          capture_output=True, text=True, timeout=180)
    assert shot.exists(), proc.stderr
    image = mpimg.imread(shot)[..., :3]
    assert image.shape[:2] == (4000, 1400)
    grey = image.mean(axis=2)
    inked_rows = (grey < 0.9).any(axis=1)
    assert inked_rows[:300].any()  # title and summary
    assert inked_rows.mean() > 0.5  # figures fill most of the page
    assert grey[400:].std() > 0.1  # real image content, not a blank or error page
