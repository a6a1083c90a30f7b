"""Errors a user can cause: one family, one clear line each.

The CLI prints ``str(err)`` on stderr and exits with ``err.exit_code``; anything that is not a
:class:`SelfnetError` is a bug and keeps its traceback.
"""

from __future__ import annotations


class SelfnetError(Exception):
    """Base class for every error caused by input, options or environment (not by a bug)."""

    exit_code: int = 2


class InputError(SelfnetError):
    """The input volume is missing, unreadable, of the wrong shape or lacks voxel sizes."""


class OutputError(SelfnetError):
    """The output cannot be written (exists, bad suffix, parent missing or not writable)."""


class ModelError(SelfnetError):
    """A model file is corrupt, foreign or does not fit the volume."""


class ConfigError(SelfnetError):
    """An option value is out of range or inconsistent with the others."""


class DeviceError(SelfnetError):
    """The requested compute device does not exist on this machine."""


class ResourceError(SelfnetError):
    """The planned work needs more memory (or disk) than this machine can give."""


class TrainingError(SelfnetError):
    """Training cannot go on: it diverged repeatedly, or a checkpoint cannot be resumed."""


class Cancelled(KeyboardInterrupt):
    """The user stopped the job (Ctrl-C, SIGTERM or a cancel button); ``hint`` says how to continue."""

    def __init__(self, hint: str = "stopped") -> None:
        self.hint_text = hint
        super().__init__(hint)

    def hint(self) -> str:
        """One line telling the user what was kept and how to continue."""
        return self.hint_text


class CancelToken:
    """Set by a front end (Ctrl-C in the CLI, a button in napari); checked by the job between steps.

    Training saves its checkpoint and stops at the next step, restoring at the next batch or block.
    """

    def __init__(self) -> None:
        self._cancelled = False

    def cancel(self) -> None:
        """Ask the running job to stop at its next safe point."""
        self._cancelled = True

    @property
    def cancelled(self) -> bool:
        """Whether :meth:`cancel` was called."""
        return self._cancelled

    def raise_if_cancelled(self, hint: str = "stopped; nothing was written") -> None:
        """Raise :class:`Cancelled` once :meth:`cancel` was called."""
        if self._cancelled:
            raise Cancelled(hint)
