"""Dask clients (a local cluster or an existing scheduler), the block progress bar, and ``restore_with_cluster``."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from selfnet.chunked.export import restore_to_file
from selfnet.chunked.run import ChunkedResult, ProgressFn
from selfnet.errors import ConfigError
from selfnet.io import Volume
from selfnet.model import Model


@contextlib.contextmanager
def block_progress(enabled: bool = True) -> Iterator[ProgressFn]:
    """A rich progress bar over blocks; yields the ``on_block(done, total)`` callback."""
    from rich.console import Console
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)

    progress = Progress(TextColumn("{task.description:<20}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), TimeRemainingColumn(), console=Console(file=sys.stderr),
                        disable=not enabled)
    with progress:
        task = progress.add_task("restoring blocks", total=None)

        def update(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        yield update


@contextlib.contextmanager
def local_client(workers: int) -> Iterator[Any]:
    """A Dask ``LocalCluster`` of ``workers`` single-threaded processes and its client."""
    import logging

    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise ConfigError("--workers and --scheduler need dask.distributed: pip install distributed") from None
    if workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {workers}")
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                      silence_logs=logging.ERROR, memory_limit=0) as cluster, Client(cluster) as client:
        yield client


@contextlib.contextmanager
def remote_client(address: str) -> Iterator[Any]:
    """A client of an existing Dask scheduler (``tcp://host:port``)."""
    try:
        from distributed import Client
    except ImportError:
        raise ConfigError("--scheduler needs dask.distributed: pip install distributed") from None
    try:
        client = Client(address, timeout=30)
    except (OSError, TimeoutError, ValueError) as exc:
        raise ConfigError(f"cannot reach the Dask scheduler at {address} ({type(exc).__name__})") from None
    with client:
        yield client


def restore_with_cluster(vol: Volume, model: Model, output: str | Path, *, workers: int | None = None,
                         scheduler: str | None = None, progress: bool = True, **options: Any) -> ChunkedResult:
    """:func:`restore_to_file` in-process, on a local cluster (``workers``) or a remote one, with a bar."""
    if workers and scheduler:
        raise ConfigError("use either --workers or --scheduler, not both")
    if workers is not None and workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {workers}")
    if scheduler:
        cluster = remote_client(scheduler)
    elif workers:
        cluster = local_client(workers)
    else:
        cluster = contextlib.nullcontext(None)
    with cluster as client, block_progress(progress) as on_block:
        return restore_to_file(vol, model, output, client=client, on_block=on_block, **options)
