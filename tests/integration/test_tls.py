"""Dask clusters that only let the right people in: TLS on the loopback with certificates made here.

A CA, and a certificate + key signed by it, are written as PEM files; a local Dask cluster is started
with ``tls://`` and ``require_encryption``; selfnet restores on it through ``--scheduler tls://...
--tls-ca-file --tls-cert --tls-key`` (API and CLI) and gets the in-process result. Without the
certificates, or with a certificate from another CA, it is refused with one line. A plain ``tcp://``
scheduler off the loopback is warned about.
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
import warnings
from pathlib import Path

import numpy as np
import pytest

from selfnet.errors import ConfigError
from selfnet.inference import chunked as blockwise
from selfnet.inference import cluster as dask_cluster
from selfnet.io import read_volume, write_volume
from selfnet.options import ClusterSpec

from ..conftest import run_cli
from .test_bad_inputs import assert_clean_error, run_main
from .test_faults import _random_model

x509 = pytest.importorskip("cryptography.x509")


def _key() -> object:
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1())


def _name(common: str) -> object:
    from cryptography.x509.oid import NameOID

    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _cert(subject: str, key: object, issuer: str, issuer_key: object, *, ca: bool) -> object:
    from cryptography.hazmat.primitives import hashes

    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(_name(issuer))
               .public_key(key.public_key()).serial_number(x509.random_serial_number())  # type: ignore[attr-defined]
               .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if not ca:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _write_pem(folder: Path, name: str, cert: object, key: object | None = None) -> Path:
    from cryptography.hazmat.primitives import serialization

    (folder / f"{name}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))  # type: ignore[attr-defined]
    if key is not None:
        (folder / f"{name}.key").write_bytes(key.private_bytes(  # type: ignore[attr-defined]
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return folder / f"{name}.pem"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """PEM files: a CA, a node certificate + key it signed, and a certificate from a foreign CA."""
    folder = tmp_path_factory.mktemp("pki")
    ca_key, node_key, other_key = _key(), _key(), _key()
    ca = _cert("selfnet test CA", ca_key, "selfnet test CA", ca_key, ca=True)
    node = _cert("localhost", node_key, "selfnet test CA", ca_key, ca=False)
    other = _cert("localhost", other_key, "someone else", other_key, ca=False)
    _write_pem(folder, "ca", ca)
    _write_pem(folder, "node", node, node_key)
    _write_pem(folder, "other", other, other_key)
    return {name: str(folder / name) for name in ("ca.pem", "node.pem", "node.key", "other.pem", "other.key")}


@pytest.fixture(scope="module")
def tls_cluster(pki: dict[str, str]) -> object:
    """A one-worker Dask cluster on 127.0.0.1 that speaks only TLS with certificates from the CA."""
    from distributed import LocalCluster, Security

    security = Security(tls_ca_file=pki["ca.pem"], tls_scheduler_cert=pki["node.pem"],
                        tls_scheduler_key=pki["node.key"], tls_worker_cert=pki["node.pem"],
                        tls_worker_key=pki["node.key"], tls_client_cert=pki["node.pem"],
                        tls_client_key=pki["node.key"], require_encryption=True)
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, protocol="tls://", host="127.0.0.1",
                      security=security, dashboard_address=None, silence_logs=logging.ERROR) as cluster:
        assert cluster.scheduler_address.startswith("tls://127.0.0.1:")
        yield cluster


@pytest.fixture(scope="module")
def stack(tiny_phantom, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, np.ndarray]:
    folder = tmp_path_factory.mktemp("tls_in")
    src = write_volume(folder / "raw.tif", tiny_phantom.raw.astype(np.uint16), tiny_phantom.spacing_raw,
                       dtype="uint16")
    model = _random_model(tiny_phantom.spacing_raw[0] / tiny_phantom.spacing_raw[2])
    model.save(folder / "model.pt")
    local = blockwise.restore_chunked(read_volume(src), model, folder / "local.zarr", block=(16, 32, 32))
    return src, folder / "model.pt", np.asarray(read_volume(local.path).data)


def test_restore_on_a_tls_cluster_equals_in_process(tls_cluster, pki: dict[str, str], stack, tmp_path: Path) -> None:
    src, model_path, expected = stack
    from selfnet.model import Model

    res = dask_cluster.restore_with_cluster(read_volume(src), Model.load(model_path), tmp_path / "tls.zarr",
                                            scheduler=tls_cluster.scheduler_address, tls_ca_file=pki["ca.pem"],
                                            tls_cert=pki["node.pem"], tls_key=pki["node.key"], block=(16, 32, 32))
    assert res.blocks_run == res.blocks > 1
    # other process kind and thread count than in-process: equal to float rounding, not bit for bit
    np.testing.assert_allclose(np.asarray(read_volume(res.path).data), expected, rtol=1e-5, atol=1e-3)


def test_cli_tls_options_reach_the_cluster(tls_cluster, pki: dict[str, str], stack, tmp_path: Path) -> None:
    src, model_path, expected = stack
    out = tmp_path / "cli.tif"
    proc = run_cli("restore", src, "-m", model_path, "-o", out, "--block", "16,32,32", "-q",
                   "--scheduler", tls_cluster.scheduler_address, "--tls-ca-file", pki["ca.pem"],
                   "--tls-cert", pki["node.pem"], "--tls-key", pki["node.key"])
    assert proc.returncode == 0, proc.stderr
    assert "warning" not in proc.stderr
    np.testing.assert_allclose(read_volume(out).data, expected, rtol=1e-5, atol=1e-3)


def test_tls_cluster_refuses_clients_without_the_right_certificate(tls_cluster, pki: dict[str, str], stack,
                                                                   tmp_path: Path) -> None:
    src, model_path, _ = stack
    address = tls_cluster.scheduler_address
    res = run_main("restore", src, "-m", model_path, "-o", tmp_path / "a.zarr", "-q", "--scheduler", address)
    assert_clean_error(res, "needs TLS certificates", "--tls-ca-file")
    foreign = dask_cluster.remote_client(address, tls_ca_file=pki["ca.pem"], tls_cert=pki["other.pem"],
                                         tls_key=pki["other.key"])
    with pytest.raises(ConfigError, match="cannot reach the Dask scheduler"), foreign:
        pass
    assert not (tmp_path / "a.zarr").exists()


def test_tls_option_errors_are_one_line(pki: dict[str, str], stack, tmp_path: Path) -> None:
    src, model_path, _ = stack
    base = ("restore", src, "-m", model_path, "-o", tmp_path / "x.zarr", "-q")
    assert_clean_error(run_main(*base, "--scheduler", "tls://127.0.0.1:1", "--tls-cert", tmp_path / "none.pem"),
                       "--tls-cert", "no such file")
    assert_clean_error(run_main(*base, "--tls-ca-file", pki["ca.pem"]), "go with --scheduler")
    assert_clean_error(run_main(*base, "--scheduler", "tcp://127.0.0.1:1", "--tls-ca-file", pki["ca.pem"],
                                "--tls-cert", pki["node.pem"]), "need a tls:// scheduler")
    assert_clean_error(run_main(*base, "--scheduler", "tls://127.0.0.1:1", "--tls-cert", pki["node.pem"]),
                       "--tls-ca-file")
    assert ClusterSpec.make(scheduler="tls://h:1", tls_cert=pki["node.pem"]).tls_cert == str(Path(pki["node.pem"]))


@pytest.mark.parametrize("address, warned", [("tcp://127.0.0.1:8786", False), ("tcp://localhost:8786", False),
                                             ("127.0.0.1:8786", False), ("tcp://10.0.0.7:8786", True),
                                             ("tcp://scheduler.example.invalid:8786", True),
                                             ("ws://10.0.0.7:8786", True)])
def test_plain_text_scheduler_off_the_loopback_is_warned(address: str, warned: bool) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert dask_cluster.client_security(address, None, None, None) is None
    messages = [str(w.message) for w in caught if "not encrypted" in str(w.message)]
    assert bool(messages) == warned, messages
    if warned:
        assert "tls://" in messages[0] and "run code on the workers" in messages[0]
