"""A certificate authority of this machine's own, for the local target over HTTPS.

:func:`ensure` keeps, under one directory (mode 0700)::

    ca.pem            the CA certificate (what clients of the local target trust)
    ca-key.pem        its private key (0600)
    server.pem        a server certificate for 127.0.0.1 and localhost, signed by the CA
    server-key.pem    its private key (0600)

They are made once (EC P-256, with the ``cryptography`` package) and kept, so
a restart does not change what clients trust; they are made again when a file
is missing or unreadable, or a certificate expires within 30 days. The CA is
constrained to this one purpose: ``pathlen=0`` and a name that says so. Only
the local target's clients are given ``ca.pem`` (see :mod:`runner.targets`):
it is never added to a system or user trust store.
"""

from __future__ import annotations

import ipaddress
import logging
import os
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

log = logging.getLogger(__name__)

CA_LIFETIME = timedelta(days=3650)
SERVER_LIFETIME = timedelta(days=825)
RENEW_BEFORE = timedelta(days=30)


@dataclass(frozen=True)
class LocalTls:
    """The files of the local CA and the server certificate."""

    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path


def paths(directory: Path) -> LocalTls:
    return LocalTls(
        directory / "ca.pem", directory / "ca-key.pem", directory / "server.pem", directory / "server-key.pem"
    )


def _write(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(tmp, path)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _usable(cert_path: Path, key_path: Path, now: datetime) -> x509.Certificate | None:
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (OSError, ValueError):
        return None
    if cert.not_valid_after_utc - now < RENEW_BEFORE:
        return None
    return cert


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "azbatch runner local target"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _make_ca(tls: LocalTls, now: datetime) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name("azbatch local CA (this machine only)")
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + CA_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write(tls.ca_key, _key_pem(key), 0o600)
    _write(tls.ca_cert, cert.public_bytes(serialization.Encoding.PEM), 0o644)


def _make_server(tls: LocalTls, now: datetime) -> None:
    ca_key = serialization.load_pem_private_key(tls.ca_key.read_bytes(), password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    ca_cert = x509.load_pem_x509_certificate(tls.ca_cert.read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("127.0.0.1"))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + SERVER_LIFETIME)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    _write(tls.server_key, _key_pem(key), 0o600)
    _write(tls.server_cert, cert.public_bytes(serialization.Encoding.PEM), 0o644)


def ensure(directory: Path) -> LocalTls:
    """The CA and server certificate under ``directory``, made when missing or near expiry."""
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    tls = paths(directory)
    now = datetime.now(timezone.utc)
    fresh_ca = _usable(tls.ca_cert, tls.ca_key, now) is None
    if fresh_ca:
        log.info("creating the local CA in %s", directory)
        _make_ca(tls, now)
    if fresh_ca or _usable(tls.server_cert, tls.server_key, now) is None:
        _make_server(tls, now)
    return tls
