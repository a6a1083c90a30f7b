"""Reading selfnet's model back out of bioimage.io zips (no bioimageio packages needed)."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest
import torch

from selfnet.errors import ModelError
from selfnet.export.zipped import ORIGINAL_NAME, is_package, original_model_bytes
from selfnet.model import Model
from tests.unit.export.test_wrapper import _model


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def test_model_load_reads_the_attached_model(tmp_path: Path) -> None:
    model = _model((1.0, 0.25, 0.25))
    pt = model.save(tmp_path / "m.pt")
    assert not is_package(pt)  # torch's zip-based files are not packages
    buf = io.BytesIO()
    torch.save(model.to_dict(), buf)
    pkg = _zip(tmp_path / "m.zip", {"rdf.yaml": b"type: model\nconfig: {selfnet: {model_file: selfnet_model.pt}}\n",
                                    ORIGINAL_NAME: buf.getvalue()})
    assert is_package(pkg) and original_model_bytes(pkg) == buf.getvalue()
    back = Model.load(pkg)
    assert back.ratio == model.ratio and back.spacing == model.spacing


def test_foreign_package_is_a_one_line_model_error(tmp_path: Path) -> None:
    pkg = _zip(tmp_path / "other.zip", {"rdf.yaml": b"type: model\nformat_version: 0.5.4\n"})
    with pytest.raises(ModelError, match="without an attached selfnet model"):
        Model.load(pkg)
    junk = _zip(tmp_path / "junk.zip", {"a.txt": b"x"})
    with pytest.raises(ModelError):
        Model.load(junk)
