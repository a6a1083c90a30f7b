"""Resumable outputs: per-block progress markers, resuming or creating a store, the saved model.

Every finished block leaves a marker in ``<store>/.selfnet-progress``; ``resume=True`` trusts only
those. TIFF/npy outputs are restored through a hidden partial store next to them.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from selfnet.errors import OutputError
from selfnet.inference.plan import BlockPlan
from selfnet.io import Volume
from selfnet.io.zarr import (
    create_store,
    default_chunks,
    is_zarr_path,
    remove_store,
    selfnet_attrs,
)
from selfnet.method.normalize import Normalizer, fit_normalizer
from selfnet.model import Model

PROGRESS_DIR = ".selfnet-progress"
MODEL_FILE = "model.pt"
"""The model is kept with an unfinished store, so ``selfnet run --resume`` need not retrain."""


def _marker(store: str | Path, index: Sequence[int]) -> Path:
    return Path(store) / PROGRESS_DIR / ("_".join(map(str, index)) + ".json")


def _mark_done(store: str | Path, index: Sequence[int], stats: dict[str, float]) -> None:
    path = _marker(store, index)
    path.parent.mkdir(exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(stats))
    os.replace(tmp, path)


def done_blocks(store: str | Path) -> dict[tuple[int, ...], dict[str, float]]:
    """Blocks already written (index -> stats), read from the progress markers."""
    folder = Path(store) / PROGRESS_DIR
    found: dict[tuple[int, ...], dict[str, float]] = {}
    for path in folder.glob("*.json") if folder.is_dir() else []:
        with contextlib.suppress(ValueError, OSError):
            found[tuple(int(i) for i in path.stem.split("_"))] = json.loads(path.read_text())
    return found


def stack_blocks(store: str | Path, lead: Sequence[int], plan: BlockPlan) -> dict[tuple[int, ...], dict[str, float]]:
    """Finished blocks of the (t, c) stack ``lead`` of a series store, trusted only if cut by the same ``plan``.

    The plan is recorded beside the markers; blocks cut another way are forgotten (the stack starts again).
    """
    lead = tuple(int(i) for i in lead)
    record = Path(store) / PROGRESS_DIR / ("plan_" + "_".join(map(str, lead)) + ".json")
    if record.is_file() and json.loads(record.read_text()) != plan.to_dict():
        forget_blocks(store, lead)
    if not record.is_file():
        record.parent.mkdir(exist_ok=True)
        tmp = record.with_name(f".{record.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(plan.to_dict()))
        os.replace(tmp, record)
    n = len(lead)
    return {k[n:]: v for k, v in done_blocks(store).items() if len(k) == n + 3 and k[:n] == lead}


def forget_blocks(store: str | Path, lead: Sequence[int]) -> None:
    """Remove the block markers (and recorded plan) of the (t, c) stack ``lead`` of a series store."""
    lead = tuple(int(i) for i in lead)
    n = len(lead)
    for index in done_blocks(store):
        if len(index) == n + 3 and index[:n] == lead:
            _marker(store, index).unlink(missing_ok=True)
    (Path(store) / PROGRESS_DIR / ("plan_" + "_".join(map(str, lead)) + ".json")).unlink(missing_ok=True)


def _open_or_create(store: Path, vol: Volume, model: Model, plan: BlockPlan, settings: dict[str, Any],
                    resume: bool, version: str, chunks: tuple[int, int, int] | None,
                    metadata: dict[str, Any] | None) -> tuple[Normalizer, dict[tuple[int, ...], Any] | None]:
    """Resume an unfinished store (same settings) or start a new one; ``None`` blocks = complete."""
    if store.exists() and resume and any(store.iterdir()):
        attrs = _attrs_or_empty(store)
        if attrs.get("status") == "complete" and _same(attrs, settings):
            return Normalizer(**attrs["normalizer"]), None
        if attrs.get("status") != "incomplete":
            raise OutputError(f"{store} is not an unfinished selfnet restore: cannot --resume it")
        if not _same(attrs, settings):
            raise OutputError(f"{store} was started with another model, block size or output type: "
                              "use the same options to --resume, or --overwrite to start again")
        return Normalizer(**attrs["normalizer"]), done_blocks(store)
    if store.exists():
        remove_store(store)
    normalizer = fit_normalizer(vol.data, model.config.norm_percentiles)
    attrs = {**settings, "normalizer": {"low": normalizer.low, "high": normalizer.high},
             "source": str(Path(vol.path).resolve()) if vol.path else None,
             "metadata": json.loads(json.dumps(metadata or {}, default=str))}
    chunks = chunks or default_chunks(plan.out_shape, plan.block)
    create_store(store, plan.out_shape, settings["dtype"], chunks=chunks, version=version, attrs=attrs)
    (store / PROGRESS_DIR).mkdir()
    model.save(store / PROGRESS_DIR / MODEL_FILE)
    return normalizer, {}


def _attrs_or_empty(store: Path) -> dict[str, Any]:
    try:
        return selfnet_attrs(store)
    except (FileNotFoundError, ValueError, KeyError, TypeError, OSError):
        return {}


def _same(attrs: dict[str, Any], settings: dict[str, Any]) -> bool:
    return all(attrs.get(k) == json.loads(json.dumps(v)) for k, v in settings.items() if k != "selfnet_version")


def partial_store(output: str | Path) -> Path:
    """Hidden resumable store next to a TIFF/npy output of a chunked restore."""
    p = Path(output).expanduser().resolve()
    return p.with_name(f".{p.name}.partial.zarr")


def saved_model(output: str | Path) -> Model | None:
    """The model stored with an unfinished chunked restore of ``output``, if there is one."""
    store = Path(output).expanduser() if is_zarr_path(output) else partial_store(output)
    path = store / PROGRESS_DIR / MODEL_FILE
    return Model.load(path) if path.is_file() else None
