"""Dask clients (a local cluster or an existing scheduler) and ``restore_with_cluster``."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from selfnet.errors import ConfigError
from selfnet.inference.chunked import ChunkedResult
from selfnet.inference.tofile import restore_to_file
from selfnet.io import Volume
from selfnet.model import Model


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
                         scheduler: str | None = None, **options: Any) -> ChunkedResult:
    """:func:`restore_to_file` in-process, on a local cluster (``workers``) or a remote one."""
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
    with cluster as client:
        return restore_to_file(vol, model, output, client=client, **options)
