"""A flag overrides its ``--config`` field only when it is given, for every flag that has one.

``run`` and ``train`` are stopped right where training would start, and the training config they
would use is inspected: the YAML's ``seed``, ``epochs`` and ``max_minutes`` survive when the flags
are absent, and each given flag wins over its own field and leaves the others alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from selfnet import api
from selfnet.config import TrainConfig
from selfnet.errors import SelfnetError

from .test_bad_inputs import run_main

FILE_VALUES = {"seed": 11, "epochs": 3, "max_minutes": 0.25}
FLAGS = {"seed": ("--seed", "5", 5), "epochs": ("--epochs", "7", 7), "max_minutes": ("--max-minutes", "0.5", 0.5)}


class _Stop(SelfnetError):
    """Raised instead of training: the config was captured."""


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> list[TrainConfig]:
    seen: list[TrainConfig] = []

    def fake_train(vol: Any, cfg: TrainConfig, *args: Any, **kwargs: Any) -> Any:
        seen.append(cfg)
        raise _Stop("stopped before training")

    monkeypatch.setattr(api, "_train", fake_train)
    return seen


@pytest.fixture
def config_file(fast_config: TrainConfig, tmp_path: Path) -> Path:
    path = tmp_path / "cfg.yaml"
    path.write_text(fast_config.model_copy(update=FILE_VALUES).to_yaml())
    return path


def _config_for(command: str, tiny_tif: Path, config_file: Path, tmp_path: Path, captured: list[TrainConfig],
                *flags: str) -> TrainConfig:
    out = tmp_path / ("model.pt" if command == "train" else "iso.tif")
    res = run_main(command, tiny_tif, "-o", out, "--config", config_file, "--device", "cpu", "-q", *flags)
    assert res.code == 2 and "stopped before training" in res.stderr, res.stderr
    return captured[-1]


@pytest.mark.parametrize("command", ["run", "train"])
def test_config_values_hold_when_no_flag_is_given(command: str, tiny_tif: Path, config_file: Path, tmp_path: Path,
                                                  captured: list[TrainConfig]) -> None:
    cfg = _config_for(command, tiny_tif, config_file, tmp_path, captured)
    assert {k: getattr(cfg, k) for k in FILE_VALUES} == FILE_VALUES


@pytest.mark.parametrize("field", list(FLAGS))
@pytest.mark.parametrize("command", ["run", "train"])
def test_a_given_flag_overrides_only_its_own_field(command: str, field: str, tiny_tif: Path, config_file: Path,
                                                   tmp_path: Path, captured: list[TrainConfig]) -> None:
    flag, text, value = FLAGS[field]
    cfg = _config_for(command, tiny_tif, config_file, tmp_path, captured, flag, text)
    assert getattr(cfg, field) == value
    assert {k: getattr(cfg, k) for k in FILE_VALUES if k != field} == {k: v for k, v in FILE_VALUES.items()
                                                                       if k != field}


def test_flag_equal_to_the_default_still_overrides(tiny_tif: Path, config_file: Path, tmp_path: Path,
                                                   captured: list[TrainConfig]) -> None:
    """``--seed 0`` (the default value) is a given flag, not "no flag": it beats the file's seed 11."""
    cfg = _config_for("run", tiny_tif, config_file, tmp_path, captured, "--seed", "0")
    assert cfg.seed == 0 and cfg.epochs == FILE_VALUES["epochs"]


def test_api_keywords_follow_the_same_rule(tiny_tif: Path, config_file: Path, captured: list[TrainConfig]) -> None:
    with pytest.raises(_Stop):
        api.train(tiny_tif, config=config_file, device="cpu", progress=False, seed=None, epochs=None)
    assert captured[-1].seed == FILE_VALUES["seed"] and captured[-1].epochs == FILE_VALUES["epochs"]
    with pytest.raises(_Stop):
        api.train(tiny_tif, config=config_file, device="cpu", progress=False, seed=2)
    assert captured[-1].seed == 2 and captured[-1].max_minutes == FILE_VALUES["max_minutes"]
