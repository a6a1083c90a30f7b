"""Training checkpoints, clean Ctrl-C / SIGTERM handling and the divergence guard.

A :class:`TrainSession` watches one :func:`selfnet.train.train_model` call. After every step it

* rolls back to the last good in-memory snapshot, with a lower learning rate, when a loss is
  NaN/Inf (the divergence guard), and tells the user with a warning;
* saves a checkpoint file every ``every_s`` seconds (atomically, next to the output);
* on SIGINT/SIGTERM, saves a checkpoint and raises :class:`TrainingInterrupted`.

A checkpoint holds the networks, the current stage's optimizers, step counters, elapsed seconds
and RNG states, so ``--resume`` continues to the same step and time budget; with a step budget the
resumed result is identical to an uninterrupted run on the same CPU.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import math
import os
import signal
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np
import torch

from selfnet._version import __version__
from selfnet.errors import Cancelled, CancelToken, TrainingError
from selfnet.io import atomic_write

__all__ = [
    "CHECKPOINT_SUFFIX",
    "InterruptFlag",
    "TrainSession",
    "TrainingInterrupted",
    "checkpoint_path",
    "fingerprint",
    "remove_checkpoint",
]

CHECKPOINT_FORMAT = "selfnet-checkpoint"
CHECKPOINT_VERSION = 1
CHECKPOINT_SUFFIX = ".ckpt.pt"
EVERY_S_ENV = "SELFNET_CHECKPOINT_EVERY_S"


def _every_s_from_env(default: float = 60.0) -> float:
    """Seconds between checkpoints: ``default``, or ``$SELFNET_CHECKPOINT_EVERY_S`` (0 = after every step)."""
    raw = os.environ.get(EVERY_S_ENV)
    try:
        value = default if raw is None else float(raw)
    except ValueError:
        value = -1.0
    if not (math.isfinite(value) and value >= 0):
        warnings.warn(f"{EVERY_S_ENV}={raw!r} is not a number of seconds >= 0: using {default:g}", stacklevel=2)
        return default
    return value


DEFAULT_EVERY_S = _every_s_from_env()
"""Seconds between periodic checkpoints (a save takes milliseconds for the default nets); 60 unless
``SELFNET_CHECKPOINT_EVERY_S`` says otherwise (the fault tests checkpoint after every step)."""
SNAPSHOT_EVERY = 25
"""Steps between in-memory snapshots of a good (finite) training state."""
LR_BACKOFF = 0.5
"""Learning-rate factor applied at each divergence roll-back."""
MAX_ROLLBACKS = 5
"""Roll-backs tolerated per training run before giving up with a :class:`TrainingError`."""

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def checkpoint_path(output: str | Path) -> Path:
    """The checkpoint file kept next to an output: ``<output>.ckpt.pt``."""
    p = Path(output).expanduser()
    return p.with_name(p.name + CHECKPOINT_SUFFIX)


def remove_checkpoint(path: str | Path | None) -> None:
    """Delete a checkpoint file after a successful run (no error if it is absent)."""
    if path is not None:
        with contextlib.suppress(FileNotFoundError):
            Path(path).unlink()


def fingerprint(volume: np.ndarray, spacing: tuple[float, float, float], config: dict[str, Any],
                normalizer: tuple[float, float]) -> str:
    """Short hash of what decides a training run: input sample, spacing, settings, normalisation."""
    z, y, x = volume.shape
    sample = np.ascontiguousarray(volume[:: max(1, z // 4), :: max(1, y // 32), :: max(1, x // 32)])
    digest = hashlib.sha256()
    head = {"shape": list(volume.shape), "dtype": str(volume.dtype), "spacing": [float(s) for s in spacing],
            "config": config, "normalizer": [float(v) for v in normalizer]}
    digest.update(json.dumps(head, sort_keys=True, default=str).encode())
    digest.update(sample.tobytes())
    return digest.hexdigest()[:16]


class TrainingInterrupted(Cancelled):
    """Ctrl-C, SIGTERM or a cancel token stopped training after its state was saved to ``path`` (if any)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        super().__init__(self.hint())

    def hint(self) -> str:
        """One line telling the user how to continue."""
        if self.path is None:
            return "training stopped; no checkpoint was kept"
        return f"training state saved to {self.path}: rerun the same command with --resume to continue"


class InterruptFlag:
    """Turn SIGINT/SIGTERM into a flag checked between steps, so a checkpoint is always consistent.

    Handlers are installed only in the main thread and only when no cancel token is given (then the
    caller owns the signals); a second signal interrupts at once.
    """

    def __init__(self, token: CancelToken | None = None) -> None:
        self._requested = False
        self.token = token
        self._previous: dict[int, Any] = {}

    @property
    def requested(self) -> bool:
        """A signal arrived or the caller's cancel token was set."""
        return self._requested or (self.token is not None and self.token.cancelled)

    def __enter__(self) -> InterruptFlag:
        if self.token is None and threading.current_thread() is threading.main_thread():
            for sig in _SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)  # None: set outside Python
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self._requested:
            raise KeyboardInterrupt
        self._requested = True


@dataclass
class _Snapshot:
    """An in-memory copy of a good training state, the divergence guard's roll-back target."""

    step: int
    nets: dict[str, dict[str, torch.Tensor]]
    opts: dict[str, dict[str, Any]]


@dataclass
class TrainSession:
    """Checkpointing, interrupt handling and divergence guard for one training run.

    Parameters
    ----------
    path : checkpoint file, or None for no checkpoints (and no signal handling)
    key : :func:`fingerprint` of the run; a checkpoint with another key is refused on resume
    every_s : seconds between periodic checkpoints
    """

    path: Path | None = None
    key: str = ""
    every_s: float = DEFAULT_EVERY_S
    lr_scale: float = 1.0
    rollbacks: int = 0
    resumed: bool = False
    completed: dict[str, dict[str, Any]] = field(default_factory=dict)
    saved: dict[str, Any] | None = None
    nets: dict[str, torch.nn.Module] = field(default_factory=dict)
    gen: torch.Generator | None = None
    stage: str = ""
    opts: dict[str, torch.optim.Optimizer] = field(default_factory=dict)
    clock_start: float = 0.0
    origin: float = 0.0
    flag: InterruptFlag = field(default_factory=InterruptFlag)
    _good: _Snapshot | None = None
    _last_save: float = field(default_factory=time.perf_counter)

    # --- set-up ------------------------------------------------------------------------------

    @classmethod
    def open(cls, path: str | Path | None, key: str, *, resume: bool = False,
             every_s: float = DEFAULT_EVERY_S, cancel: CancelToken | None = None) -> TrainSession:
        """A session writing to ``path``; with ``resume`` the existing checkpoint there is loaded.

        ``cancel`` replaces the session's own SIGINT/SIGTERM handling by the caller's token.
        """
        p = None if path is None else Path(path).expanduser()
        session = cls(path=p, key=key, every_s=every_s, flag=InterruptFlag(cancel))
        if resume and p is not None and p.is_file():
            session.saved = _load(p, key)
            session.resumed = True
            session.lr_scale = float(session.saved["lr_scale"])
            session.rollbacks = int(session.saved["rollbacks"])
            session.completed = dict(session.saved["completed"])
        return session

    def bind(self, nets: dict[str, torch.nn.Module], gen: torch.Generator, t0: float) -> float:
        """Attach the networks and batch generator (restoring them on resume); return the time origin.

        The origin is ``t0`` for a fresh run and ``now - elapsed`` for a resumed one, so wall-clock
        deadlines computed from it give the resumed run only the budget that is left.
        """
        self.nets, self.gen = nets, gen
        self.origin = t0
        if self.saved is not None:
            try:
                for name, net in nets.items():
                    net.load_state_dict(self.saved["nets"][name])
                gen.set_state(self.saved["gen"])
                torch.set_rng_state(self.saved["torch_rng"])
            except (KeyError, RuntimeError, TypeError, ValueError) as exc:
                raise TrainingError(f"cannot resume from {self.path}: it does not fit this run "
                                    f"({type(exc).__name__}); delete it to start over") from None
            self.origin = time.perf_counter() - float(self.saved["elapsed"])
        return self.origin

    @contextlib.contextmanager
    def signals(self) -> Iterator[None]:
        """Catch SIGINT/SIGTERM between steps while checkpoints can be written."""
        if self.path is None:
            yield
            return
        with self.flag:
            yield

    # --- stages ------------------------------------------------------------------------------

    def enter(self, stage: str, opts: dict[str, torch.optim.Optimizer], clock_start: float
              ) -> tuple[int, list[dict[str, float]], float]:
        """Start (or resume) a stage; returns its first step, its history and the clock's start."""
        self.stage, self.opts, self.clock_start = stage, opts, clock_start
        step, history = 0, []
        if self.saved is not None and self.saved["stage"] == stage:
            try:
                for name, opt in opts.items():
                    opt.load_state_dict(self.saved["opts"][name])
            except (KeyError, RuntimeError, TypeError, ValueError) as exc:
                raise TrainingError(f"cannot resume from {self.path}: damaged optimizer state "
                                    f"({type(exc).__name__}); delete it to start over") from None
            step, history = int(self.saved["step"]), list(self.saved["history"])
            self.clock_start = time.perf_counter() - float(self.saved["stage_elapsed"])
            self.saved = None
        self._good = self._snapshot(step)
        return step, history, self.clock_start

    def complete(self, stage: str, result: dict[str, Any], step: int, *, save: bool = False) -> None:
        """Record a finished stage; with ``save`` (stage 2 and the refinement) a checkpoint is written, so that a
        resumed run starts after it."""
        self.completed[stage] = result
        if save:
            self.save(step, result.get("history", []))

    # --- after every step --------------------------------------------------------------------

    def check(self, step: int, losses: dict[str, float], history: list[dict[str, float]]) -> int | None:
        """Divergence guard: None if every loss is finite, else the step rolled back to."""
        if all(math.isfinite(v) for v in losses.values()):
            return None
        bad = ", ".join(k for k, v in losses.items() if not math.isfinite(v))
        self.rollbacks += 1
        if self.rollbacks > MAX_ROLLBACKS:
            raise TrainingError(
                f"training diverged (NaN/Inf {bad} loss) {self.rollbacks} times even at a lower learning rate: "
                "check the input for extreme outliers or lower lr / lr_gan in --config")
        good = self._good
        assert good is not None, "enter() must be called before check()"
        self._restore(good)
        self.lr_scale *= LR_BACKOFF
        for opt in self.opts.values():
            for group in opt.param_groups:
                group["lr"] *= LR_BACKOFF
        history[:] = [h for h in history if h["step"] <= good.step]
        warnings.warn(f"{self.stage}: {bad} loss became NaN/Inf at step {step}: rolled back to step {good.step} "
                      f"with the learning rate x{self.lr_scale:g}", stacklevel=2)
        return good.step

    def tick(self, step: int, history: list[dict[str, float]]) -> None:
        """Snapshot good states, checkpoint periodically, stop cleanly on a signal."""
        if step % SNAPSHOT_EVERY == 0 and self._finite():
            self._good = self._snapshot(step)
        if self.flag.requested:
            self.save(step, history)
            raise TrainingInterrupted(self.path)
        if self.path is not None and time.perf_counter() - self._last_save >= self.every_s:
            self.save(step, history)

    def save(self, step: int, history: list[dict[str, float]]) -> None:
        """Write the checkpoint atomically (nothing without a path)."""
        if self.path is None:
            return
        now = time.perf_counter()
        state = {
            "format": CHECKPOINT_FORMAT, "format_version": CHECKPOINT_VERSION, "selfnet_version": __version__,
            "key": self.key, "stage": self.stage, "step": int(step), "history": list(history),
            "stage_elapsed": now - self.clock_start, "elapsed": now - self.origin,
            "completed": self.completed, "lr_scale": self.lr_scale, "rollbacks": self.rollbacks,
            "nets": {k: _cpu(net.state_dict()) for k, net in self.nets.items()},
            "opts": {k: opt.state_dict() for k, opt in self.opts.items()},
            "gen": self.gen.get_state() if self.gen is not None else torch.empty(0, dtype=torch.uint8),
            "torch_rng": torch.get_rng_state(),
        }
        with atomic_write(self.path) as tmp:
            torch.save(state, tmp)
        self._last_save = time.perf_counter()

    # --- helpers -----------------------------------------------------------------------------

    def _snapshot(self, step: int) -> _Snapshot:
        return _Snapshot(step=step, nets={k: _clone(n.state_dict()) for k, n in self.nets.items()},
                         opts={k: copy.deepcopy(o.state_dict()) for k, o in self.opts.items()})

    def _restore(self, snap: _Snapshot) -> None:
        for name, net in self.nets.items():
            net.load_state_dict(snap.nets[name])
        for name, opt in self.opts.items():
            opt.load_state_dict(copy.deepcopy(snap.opts[name]))

    def _finite(self) -> bool:
        return all(bool(torch.isfinite(p).all()) for net in self.nets.values() for p in net.parameters())


def _clone(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in state.items()}


def _cpu(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu() for k, v in state.items()}


_REQUIRED = ("stage", "step", "history", "stage_elapsed", "elapsed", "completed", "lr_scale", "rollbacks",
             "nets", "opts", "gen", "torch_rng")


def _load(path: Path, key: str) -> dict[str, Any]:
    """Read and check a checkpoint; damaged, foreign or mismatched files raise TrainingError."""
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure to unpickle the file means it is damaged
        raise TrainingError(f"cannot resume: {path} is damaged or incomplete ({type(exc).__name__}); "
                            "delete it to start over") from None
    if not isinstance(raw, dict) or raw.get("format") != CHECKPOINT_FORMAT:
        raise TrainingError(f"cannot resume: {path} is not a selfnet checkpoint")
    if raw.get("format_version", 0) > CHECKPOINT_VERSION or any(k not in raw for k in _REQUIRED):
        raise TrainingError(f"cannot resume: {path} was written by another selfnet version; delete it to start over")
    if raw.get("key") != key:
        raise TrainingError(f"cannot resume: {path} belongs to another input or other settings "
                            "(run the same command as before, or delete it to start over)")
    return raw
