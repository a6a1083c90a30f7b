"""selfnet export --bioimageio and selfnet info: a tiny trained model, packaged, tested by bioimageio.core.

The package tests need the ``bioimageio`` extra (``pip install -e ".[test,bioimageio]"``, which
``make setup`` and CI install); without it they are skipped with that reason.
"""

from __future__ import annotations

import importlib.util
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

import selfnet
from selfnet import api
from selfnet.config import TrainConfig
from selfnet.errors import ModelError, OutputError
from selfnet.io import read_volume



def _has_bioimageio() -> bool:
    """Whether bioimageio.spec and bioimageio.core are importable (find_spec raises without the namespace)."""
    try:
        return all(importlib.util.find_spec(m) is not None for m in ("bioimageio.spec", "bioimageio.core"))
    except ImportError:
        return False


HAS_BIOIMAGEIO = _has_bioimageio()
needs_bioimageio = pytest.mark.skipif(not HAS_BIOIMAGEIO, reason='needs the bioimageio extra: '
                                      'pip install -e ".[test,bioimageio]" (installed by make setup / CI)')


def run_cli(*args: str | Path) -> tuple[int, str, str]:
    """``selfnet ARGS`` in this process (a subprocess would re-import torch): exit code, stdout, stderr."""
    import contextlib
    import io
    import sys

    from selfnet import cli

    out, err, argv = io.StringIO(), io.StringIO(), sys.argv
    sys.argv = ["selfnet", *map(str, args)]
    code: int | str | None = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            cli.main()
    except SystemExit as stop:
        code = stop.code
    finally:
        sys.argv = argv
    return int(code or 0), out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def trained(tiny_tif: Path, fast_config: TrainConfig, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A few-step model trained on the tiny phantom TIFF, saved as .pt."""
    cfg = fast_config.model_copy(update={"epochs": 1, "steps_per_epoch": 6})
    out = tmp_path_factory.mktemp("export") / "tiny.pt"
    selfnet.train(tiny_tif, output=out, config=cfg, progress=False)
    return out


@pytest.fixture(scope="module")
def restored(trained: Path, tiny_tif: Path) -> np.ndarray:
    """`selfnet restore` of the training stack with the tiny model: the reference."""
    return selfnet.restore(tiny_tif, trained, progress=False).data


@pytest.fixture(scope="module")
def package(trained: Path, tiny_tif: Path) -> Path:
    """The raw-input bioimage.io package of the tiny model, with the training stack as sample."""
    if not HAS_BIOIMAGEIO:
        pytest.skip('needs the bioimageio extra: pip install -e ".[test,bioimageio]"')
    return api.export(trained, trained.with_name("tiny.zip"), sample=tiny_tif)


@needs_bioimageio
def test_package_passes_bioimageio_core_and_matches_restore(package: Path, restored: np.ndarray,
                                                            tiny_tif: Path) -> None:
    """bioimageio.core's model test passes on the CPU; its prediction equals `selfnet restore` within 1 %."""
    from bioimageio.core import predict, test_model

    summary = test_model(package, devices=["cpu"])
    failed = [f"{d.name}: {[e.msg for e in d.errors]}" for d in summary.details if d.status == "failed"]
    assert summary.status == "passed", failed
    raw = read_volume(tiny_tif).data.astype(np.float32)
    out = predict(model=package, inputs=raw[None, None]).members["isotropic"].data.values[0, 0]
    ref = restored
    assert out.shape[0] <= ref.shape[0] and out.shape[1:] == ref.shape[1:]
    span = float(ref.max() - ref.min())
    assert np.abs(out - ref[: out.shape[0]]).max() <= 0.01 * span


@needs_bioimageio
def test_package_contents_and_restore_from_zip(package: Path, tiny_tif: Path, tmp_path: Path) -> None:
    """Cover, docs with the citation, both weights, test tensors, the original .pt; `restore --model OUT.zip` works."""
    import yaml

    with zipfile.ZipFile(package) as zf:
        names = set(zf.namelist())
        rdf = yaml.safe_load(zf.read("rdf.yaml"))
        readme = zf.read("README.md").decode()
    assert {"cover.png", "README.md", "selfnet_model.pt", "test_input.npy", "test_output.npy"} <= names
    assert rdf["format_version"].startswith("0.5.") and set(rdf["weights"]) == {"pytorch_state_dict", "torchscript"}
    assert rdf["weights"]["pytorch_state_dict"]["architecture"]["callable"] == "IsotropicRestorer"
    z_in, z_out = rdf["inputs"][0]["axes"][2], rdf["outputs"][0]["axes"][2]
    assert z_out["size"]["axis_id"] == "z" and z_in["scale"] / z_out["scale"] == pytest.approx(4.0)
    assert "10.1038/s41377-023-01230-2" in readme and "Light: Science & Applications" in readme
    out = tmp_path / "iso.tif"
    code, _, err = run_cli("restore", tiny_tif, "--model", package, "-o", out, "-q")
    assert code == 0, err
    assert read_volume(out).data.shape[1:] == (64, 64)


@needs_bioimageio
def test_interpolated_input_variant(trained: Path, restored: np.ndarray, tiny_tif: Path, tmp_path: Path) -> None:
    """--interpolated-input: same size in and out, equal to restore when fed selfnet's own z-interpolation."""
    from bioimageio.core import predict

    from selfnet.method.resample import zinterp

    out = api.export(trained, tmp_path / "interp.zip", interpolated_input=True)
    vol = read_volume(tiny_tif)
    iso_in = zinterp(vol.data.astype(np.float32), vol.ratio)
    got = predict(model=out, inputs=iso_in[None, None]).members["isotropic"].data.values[0, 0]
    ref = restored
    assert got.shape == iso_in.shape == ref.shape
    assert np.abs(got - ref).max() <= 0.01 * float(ref.max() - ref.min())


def test_info_prints_provenance(trained: Path, tiny_tif: Path) -> None:
    """`selfnet info` names voxel sizes, ratio, the training stack and its hash, steps, versions and date."""
    record = api.info(trained)
    assert record["training stack"] == tiny_tif.name
    assert len(record["training stack sha256"].split()[0]) == 64
    assert record["z/xy ratio"] == pytest.approx(4.0) and record["channels"] == 1
    assert "stage1" in record["steps"] and record["torch version"] == torch.__version__
    code, stdout, err = run_cli("info", trained)
    assert code == 0, err
    for key in ("voxel size trained for", "training stack sha256", "selfnet version", "trained at", "settings"):
        assert key in stdout


@needs_bioimageio
def test_info_on_package(package: Path, tiny_tif: Path) -> None:
    record = api.info(package)
    assert record["training stack"] == tiny_tif.name and record["package input"] == "raw-input"
    assert record["package weights"] == "pytorch_state_dict, torchscript"


def test_bad_inputs_one_line_exit_2_nothing_written(trained: Path, tiny_tif: Path, tmp_path: Path) -> None:
    """A non-model file, or an existing output without --overwrite: one line, exit 2, nothing written."""
    out = tmp_path / "pkg.zip"
    with pytest.raises(ModelError):
        api.export(tiny_tif, out)
    assert not out.exists()
    out.write_bytes(b"keep")
    with pytest.raises(OutputError):
        api.export(trained, out)
    assert out.read_bytes() == b"keep"
    code, _, err = run_cli("export", trained, "--bioimageio", out)
    assert code == 2 and out.read_bytes() == b"keep"
    assert err.strip().count("\n") == 0 and "exists" in err
    code, _, err = run_cli("export", tiny_tif, "--bioimageio", tmp_path / "other.zip")
    assert code == 2 and err.strip().count("\n") == 0 and "not a readable selfnet model" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pkg.zip"]
    with pytest.raises(ModelError):
        api.info(tiny_tif)
