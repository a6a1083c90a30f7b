"""Dask clients (a local cluster or an existing scheduler) and ``restore_with_cluster``."""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from selfnet.errors import ConfigError
from selfnet.inference.chunked import ChunkedResult
from selfnet.inference.tofile import restore_to_file
from selfnet.io import Volume
from selfnet.model import Model

TLS_SCHEMES = ("tls", "wss")
"""Dask protocols that encrypt and authenticate; every other one sends pickled tasks in the clear."""


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
def remote_client(address: str, *, tls_ca_file: str | None = None, tls_cert: str | None = None,
                  tls_key: str | None = None) -> Iterator[Any]:
    """A client of an existing Dask scheduler: ``tls://host:port`` (certificates) or ``tcp://`` (warned)."""
    try:
        from distributed import Client
    except ImportError:
        raise ConfigError("--scheduler needs dask.distributed: pip install distributed") from None
    security = client_security(address, tls_ca_file, tls_cert, tls_key)
    try:
        client = Client(address, timeout=30, security=security)
    except (OSError, TimeoutError, ValueError) as exc:
        why = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"cannot reach the Dask scheduler at {address} ({why})") from None
    with client:
        yield client


def scheme(address: str) -> str:
    """The protocol of a Dask address (``tcp`` when none is given, as Dask assumes)."""
    return address.split("://", 1)[0].lower() if "://" in address else "tcp"


def is_loopback(address: str) -> bool:
    """Whether every address the scheduler's host name resolves to is on this machine's loopback."""
    if scheme(address) == "inproc":
        return True
    location = address.split("://", 1)[-1]
    host = location[1:].split("]", 1)[0] if location.startswith("[") else location.rsplit(":", 1)[0]
    try:
        infos = socket.getaddrinfo(host, None)
    except (OSError, UnicodeError):
        return False
    return bool(infos) and all(ipaddress.ip_address(info[4][0].split("%", 1)[0]).is_loopback for info in infos)


def client_security(address: str, ca_file: str | None, cert: str | None, key: str | None) -> Any:
    """Dask ``Security`` for a ``tls://`` scheduler; a warning for plain-text schedulers off the loopback.

    Without the three options a ``tls://`` address uses Dask's own ``distributed.comm.tls`` settings.
    """
    from distributed import Security

    given = [v for v in (ca_file, cert, key) if v is not None]
    if scheme(address) not in TLS_SCHEMES:
        if given:
            raise ConfigError(f"--tls-ca-file/--tls-cert/--tls-key need a tls:// scheduler, not {address}")
        if not is_loopback(address):
            warnings.warn(f"{address} is not on this machine and {scheme(address)}:// is not encrypted: anyone who "
                          "can reach that port can run code on the workers and read the data; use tls:// with "
                          "--tls-ca-file, --tls-cert and --tls-key on a trusted cluster", UserWarning, stacklevel=3)
        return None
    if not given:
        security = Security()  # Dask's config: distributed.comm.tls.{ca-file, client.cert, client.key}
        if not security.tls_ca_file or not security.tls_client_cert:
            raise ConfigError(f"{address} needs TLS certificates: give --tls-ca-file, --tls-cert and --tls-key "
                              "(or set distributed.comm.tls.ca-file / client.cert / client.key in Dask's config)")
        return security
    if ca_file is None or cert is None:
        raise ConfigError("a tls:// scheduler needs both --tls-ca-file and --tls-cert (and --tls-key unless the "
                          "certificate file holds the key)")
    return Security(tls_ca_file=ca_file, tls_client_cert=cert, tls_client_key=key, require_encryption=True)


def cluster_client(*, workers: int | None = None, scheduler: str | None = None, tls_ca_file: str | None = None,
                   tls_cert: str | None = None, tls_key: str | None = None) -> contextlib.AbstractContextManager[Any]:
    """A local cluster (``workers``), a remote one (``scheduler``, TLS optional), or ``None``: in-process."""
    if workers and scheduler:
        raise ConfigError("use either --workers or --scheduler, not both")
    if workers is not None and workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {workers}")
    if scheduler:
        return remote_client(scheduler, tls_ca_file=tls_ca_file, tls_cert=tls_cert, tls_key=tls_key)
    if workers:
        return local_client(workers)
    return contextlib.nullcontext(None)


def restore_with_cluster(vol: Volume, model: Model, output: str | Path, *, workers: int | None = None,
                         scheduler: str | None = None, tls_ca_file: str | None = None, tls_cert: str | None = None,
                         tls_key: str | None = None, **options: Any) -> ChunkedResult:
    """:func:`restore_to_file` in-process, on a local cluster (``workers``) or a remote one (TLS optional)."""
    with cluster_client(workers=workers, scheduler=scheduler, tls_ca_file=tls_ca_file, tls_cert=tls_cert,
                        tls_key=tls_key) as client:
        return restore_to_file(vol, model, output, client=client, **options)
