"""Reading selfnet's own parts back out of a bioimage.io model package, without bioimageio installed.

A package is a zip with a ``rdf.yaml`` (or ``*bioimageio.yaml``) description; selfnet attaches the
original model file as :data:`ORIGINAL_NAME` and notes it under ``config.selfnet``.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import yaml

from selfnet.errors import ModelError

ORIGINAL_NAME = "selfnet_model.pt"
"""The original selfnet model file, attached to every exported package."""


def _description_name(names: list[str]) -> str | None:
    """The package's description file among its members, if any."""
    for name in names:
        if name == "rdf.yaml" or name.endswith("bioimageio.yaml"):
            return name
    return None


def is_package(path: str | Path) -> bool:
    """Whether ``path`` is a bioimage.io package zip (torch's own zip-based ``.pt`` files are not)."""
    p = Path(path)
    if not p.is_file() or not zipfile.is_zipfile(p):
        return False
    try:
        with zipfile.ZipFile(p) as zf:
            return _description_name(zf.namelist()) is not None
    except (OSError, zipfile.BadZipFile):
        return False


def read_description(path: str | Path) -> dict[str, Any]:
    """The package's description as plain YAML data."""
    try:
        with zipfile.ZipFile(path) as zf:
            name = _description_name(zf.namelist())
            if name is None:
                raise ModelError(f"{path} is not a bioimage.io model package (no rdf.yaml)")
            data = yaml.safe_load(zf.read(name))
    except (OSError, zipfile.BadZipFile, yaml.YAMLError) as exc:
        raise ModelError(f"{path} is a damaged bioimage.io package ({type(exc).__name__})") from None
    if not isinstance(data, dict):
        raise ModelError(f"{path}: its rdf.yaml is not a model description")
    return data


def packaged_model_bytes(path: str | Path) -> bytes:
    """The attached original selfnet model file of a package (see :data:`ORIGINAL_NAME`)."""
    note = (read_description(path).get("config") or {}).get("selfnet") or {}
    name = str(note.get("model_file", ORIGINAL_NAME))
    try:
        with zipfile.ZipFile(path) as zf:
            if name not in zf.namelist():
                raise ModelError(f"{path} is a bioimage.io package without an attached selfnet model ({name}); "
                                 "only packages written by `selfnet export` can be used by selfnet")
            return zf.read(name)
    except (OSError, zipfile.BadZipFile) as exc:
        raise ModelError(f"{path} is a damaged bioimage.io package ({type(exc).__name__})") from None


def original_model_bytes(path: str | Path) -> bytes:
    """The selfnet model file's bytes: the file itself, or the one attached to a package."""
    if is_package(path):
        return packaged_model_bytes(path)
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ModelError(f"cannot read {path}: {exc.strerror}") from None


def package_notes(path: str | Path) -> dict[str, Any]:
    """What ``selfnet info`` adds for a package: format, weights, variant and export date."""
    if not is_package(path):
        return {}
    rdf = read_description(path)
    note = (rdf.get("config") or {}).get("selfnet") or {}
    return {
        "package format": f"bioimage.io {rdf.get('type', '?')} {rdf.get('format_version', '?')}",
        "package weights": ", ".join(sorted((rdf.get("weights") or {}).keys())) or "?",
        "package input": note.get("variant", "?"),
        "exported at": note.get("exported_at", "?"),
        "exported with": note.get("exported_with", "?"),
    }
