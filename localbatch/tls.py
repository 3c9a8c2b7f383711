"""TLS for localbatch: the server's certificate, and the CA its own transfers trust.

* :func:`server_context` loads ``--cert``/``--key`` (PEM) into a server-side
  context (TLS 1.2 or newer).
* :func:`trust_ca` makes this process's outgoing HTTPS (resource file
  downloads and output uploads, through urllib3 and azure-core's requests
  transport) trust one more CA, e.g. the local target's: it writes the
  system bundle (certifi's) plus that CA to ``DATA_DIR/ca-bundle.pem`` and
  points ``SSL_CERT_FILE`` and ``REQUESTS_CA_BUNDLE`` at it. Public CAs stay
  trusted, certificate and host name checks stay on. Task processes do not
  inherit these variables (see :func:`localbatch.node.base_environment`).
"""

from __future__ import annotations

import os
import ssl
from pathlib import Path


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    """A server context for ``cert``/``key``; ValueError naming the file if they cannot be loaded."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(str(cert), str(key))
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"cannot load the TLS certificate {cert} / key {key}: {exc}") from None
    return context


def _system_bundle() -> str:
    try:
        import certifi

        return Path(certifi.where()).read_text(encoding="utf-8")
    except (ImportError, OSError):
        paths = ssl.get_default_verify_paths()
        if paths.cafile and Path(paths.cafile).is_file():
            return Path(paths.cafile).read_text(encoding="utf-8")
        return ""


def trust_ca(ca_file: Path, data_dir: Path) -> Path:
    """Trust ``ca_file`` in this process's outgoing HTTPS as well as the public CAs; return the bundle."""
    try:
        extra = ca_file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"cannot read the CA file {ca_file}: {exc.strerror}") from None
    if "BEGIN CERTIFICATE" not in extra:
        raise ValueError(f"the CA file {ca_file} holds no PEM certificate")
    bundle = data_dir / "ca-bundle.pem"
    tmp = data_dir / f".ca-bundle.{os.getpid()}.tmp"
    tmp.write_text(_system_bundle().rstrip("\n") + "\n" + extra, encoding="utf-8")
    os.replace(tmp, bundle)
    os.environ["SSL_CERT_FILE"] = str(bundle)
    os.environ["REQUESTS_CA_BUNDLE"] = str(bundle)
    return bundle
