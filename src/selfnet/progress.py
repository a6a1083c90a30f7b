"""Progress bars (rich) for training, slices and blocks: what ``progress=True`` shows in the API and CLI."""

from __future__ import annotations

import sys
from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)


def _console() -> Console:
    return Console(file=sys.stderr)


class Bars:
    """One rich progress display with a task per stage; callable as a train or restore callback."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._progress = Progress(
            TextColumn("{task.description:<20}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), TextColumn("{task.fields[info]}"),
            console=_console(), disable=not enabled, transient=False,
        )
        self._tasks: dict[str, int] = {}

    def __enter__(self) -> Bars:
        self._progress.__enter__()
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self._progress.__exit__(et, ev, tb)

    def train_step(self, stage: str, step: int, total: int, losses: dict[str, float]) -> None:
        """Training callback: advance the bar of ``stage`` (its total is a step cap, time may end it)."""
        if step % 5 and step != 1:
            return
        info = " ".join(f"{k} {v:.4f}" for k, v in losses.items())
        self._update(stage, step, total, info)

    def restore_step(self, done: int, total: int) -> None:
        """Restore callback: slices done out of total."""
        self._update("restoring slices", done, total, "")

    def block_step(self, done: int, total: int) -> None:
        """Block-wise restore callback: blocks done out of total."""
        self._update("restoring blocks", done, total, "")

    def _update(self, name: str, done: int, total: int, info: str) -> None:
        if name not in self._tasks:
            for other in self._tasks.values():
                task = self._progress.tasks[other]
                self._progress.update(other, total=task.completed)
            self._tasks[name] = self._progress.add_task(name, total=total, info=info)
        self._progress.update(self._tasks[name], completed=done, info=info)
