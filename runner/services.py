"""Start and stop the local services: Azurite (Storage) and localbatch (Batch).

Used by ``runner local up`` (long-lived background services) and by the test
fixtures (services per test session), so both exercise one code path.

Contracts:

* Services bind to 127.0.0.1. ``port=0`` picks a free port; a previous port
  can be asked for again so that URLs stored in tasks stay valid after a
  restart.
* Their output goes to a log file next to their data; readiness is detected
  from that log (Azurite) or from ``DATA_DIR/endpoint`` (localbatch).
* Keys never appear on a command line: localbatch receives its own key and
  the Storage key through environment variables.
* Processes start in their own session, so a Ctrl-C in the terminal that ran
  ``runner`` does not kill them.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from runner.errors import ServiceError

log = logging.getLogger(__name__)

AZURITE_ACCOUNT_NAME = "devstoreaccount1"
# Azurite's well-known development key, published in Azurite's documentation.
# It is the only key in this repository; it protects nothing but local emulator data.
AZURITE_ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)

LOCALBATCH_KEY_ENV = "LOCALBATCH_ACCOUNT_KEY"
LOCALBATCH_STORAGE_KEY_ENV = "LOCALBATCH_STORAGE_ACCOUNT_KEY"

PROJECT_ROOT = Path(__file__).resolve().parents[1]
_AZURITE_READY = re.compile(r"successfully listens on (https?://[0-9.]+:(\d+))")
#: Azurite's accounts (name:key), from its environment, never its command line.
AZURITE_ACCOUNTS_ENV = "AZURITE_ACCOUNTS"


@dataclass(frozen=True)
class AzuriteTls:
    """Azurite over HTTPS with ``--oauth basic`` (bearer tokens: claims checked, signature not).

    ``account_key`` replaces the well-known development key, so that only
    tokens and user delegation SAS can reach the data (no client knows it).
    """

    cert: Path
    key: Path
    account_key: str


@dataclass
class ServiceProcess:
    """A started service: its pid, base URL and log file.

    ``popen`` is set when this process started the service (it can ``wait``
    on it); it is ``None`` for a service found running from an earlier call.
    """

    name: str
    pid: int
    url: str
    port: int
    log_path: Path
    popen: subprocess.Popen[bytes] | None = None

    def alive(self) -> bool:
        return pid_alive(self.pid)

    def stop(self, timeout: float = 10.0) -> None:
        stop_pid(self.pid, timeout=timeout, popen=self.popen)

    def kill(self) -> None:
        """SIGKILL, for fault tests: no clean shutdown."""
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        if self.popen is not None:
            self.popen.wait(timeout=10)


#: The Azurite version the runner installs when it finds none (package.json pins the same).
AZURITE_VERSION = "3.37.0"
AZURITE_BIN_ENV = "RUNNER_AZURITE_BIN"
_AZURITE_BIN = Path("node_modules") / ".bin" / "azurite-blob"


def user_azurite_dir() -> Path:
    """Where the runner installs its pinned Azurite for this user: ``RUNNER_HOME/azurite-<version>``."""
    from runner.home import runner_home

    return runner_home() / f"azurite-{AZURITE_VERSION}"


def azurite_executable(*, install: bool = True) -> Path:
    """Azurite's ``azurite-blob``: ``RUNNER_AZURITE_BIN``, the clone's ``node_modules`` (``npm ci``),
    the one installed in the user data dir, or one on PATH, in that order. Installed outside a
    clone (``pipx install``) with none of those, the pinned version is installed with npm into
    :func:`user_azurite_dir` (said in one log line); without npm, a :class:`ServiceError` says
    what to install."""
    override = os.environ.get(AZURITE_BIN_ENV)
    candidates = [Path(override)] if override else []
    candidates += [PROJECT_ROOT / _AZURITE_BIN, user_azurite_dir() / _AZURITE_BIN]
    found = shutil.which("azurite-blob")
    if found:
        candidates.append(Path(found))
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    if override:
        raise ServiceError(f"{AZURITE_BIN_ENV}={override} is not an executable file")
    if not install:
        raise ServiceError("Azurite is not installed")
    return _npm_install_azurite(user_azurite_dir())


def _npm_install_azurite(target: Path) -> Path:
    """``npm install azurite@AZURITE_VERSION`` into a temporary directory, moved to ``target``
    once complete: an interrupted or failed install leaves nothing half-written."""
    npm = shutil.which("npm")
    if npm is None:
        raise ServiceError(
            "Azurite (the local Storage) is not installed, and npm is not on PATH to install it",
            hint=f"install Node.js 18+ with npm (e.g. `sudo apt install npm`) and run again; or install "
            f"azurite@{AZURITE_VERSION} yourself and set {AZURITE_BIN_ENV} to its azurite-blob",
        )
    log.warning("installing Azurite %s with npm into %s (once)", AZURITE_VERSION, target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        proc = subprocess.run(
            [
                npm,
                "install",
                "--prefix",
                str(staging),
                "--no-audit",
                "--no-fund",
                "--no-save",
                f"azurite@{AZURITE_VERSION}",
            ],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        binary = staging / _AZURITE_BIN
        if proc.returncode != 0 or not binary.is_file():
            last = (proc.stderr.strip().splitlines() or ["no output"])[-1][:200]
            raise ServiceError(
                f"`npm install azurite@{AZURITE_VERSION}` failed (exit {proc.returncode}): {last}",
                hint=f"check npm's network access and registry, or set {AZURITE_BIN_ENV}",
            )
        staging.replace(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target / _AZURITE_BIN


def start_azurite(
    data_dir: Path, *, port: int = 0, timeout: float = 60.0, tls: AzuriteTls | None = None
) -> ServiceProcess:
    """Start Azurite's blob service with data under ``data_dir``; return when it listens.

    With ``tls``: HTTPS and ``--oauth basic``, its account key from the environment.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = data_dir / "azurite.log"
    cmd = [
        str(azurite_executable()),
        "--blobHost",
        "127.0.0.1",
        "--blobPort",
        str(port),
        "--location",
        str(data_dir),
        "--skipApiVersionCheck",
        "--disableTelemetry",
        # No access log: it would record every request URL, SAS signatures included.
        "--silent",
    ]
    env = None
    if tls is not None:
        cmd += ["--oauth", "basic", "--cert", str(tls.cert), "--key", str(tls.key)]
        env = dict(os.environ)
        env[AZURITE_ACCOUNTS_ENV] = f"{AZURITE_ACCOUNT_NAME}:{tls.account_key}"
    offset = log_path.stat().st_size if log_path.exists() else 0
    popen = _spawn(cmd, log_path, env=env)
    with _stopped_unless_ready(popen):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = _AZURITE_READY.search(_read_text(log_path)[offset:])
            if match:
                base, real_port = match.group(1), int(match.group(2))
                url = f"{base}/{AZURITE_ACCOUNT_NAME}"
                log.info("Azurite listening on %s (pid %d)", url, popen.pid)
                return ServiceProcess("azurite", popen.pid, url, real_port, log_path, popen)
            if popen.poll() is not None:
                raise ServiceError(f"Azurite exited with code {popen.returncode}; see {log_path}")
            time.sleep(0.05)
        raise ServiceError(f"Azurite did not start within {timeout:.0f}s; see {log_path}")


@contextmanager
def _stopped_unless_ready(popen: subprocess.Popen[bytes]) -> Iterator[None]:
    """Stop a service that was spawned but is not ready when anything (Ctrl-C included) interrupts."""
    try:
        yield
    except BaseException:
        stop_pid(popen.pid, popen=popen, timeout=5)
        raise


def start_localbatch(
    data_dir: Path,
    *,
    account_name: str,
    account_key: str | None,
    storage_blob_endpoint: str,
    storage_account_name: str,
    storage_account_key: str | None,
    port: int = 0,
    timeout: float = 60.0,
    extra_args: list[str] | None = None,
    extra_env: dict[str, str] | None = None,
) -> ServiceProcess:
    """Start ``python -m localbatch serve``; return when it has written ``data_dir/endpoint``.

    ``extra_env`` carries secrets it needs besides the keys (never on its command line)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    endpoint_file = data_dir / "endpoint"
    endpoint_file.unlink(missing_ok=True)
    log_path = data_dir / "localbatch.log"
    cmd = [
        sys.executable,
        "-m",
        "localbatch",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--data-dir",
        str(data_dir),
        "--account-name",
        account_name,
        "--storage-blob-endpoint",
        storage_blob_endpoint,
        "--storage-account-name",
        storage_account_name,
        *(extra_args or []),
    ]
    env = dict(os.environ)
    env.pop(LOCALBATCH_KEY_ENV, None)
    env.pop(LOCALBATCH_STORAGE_KEY_ENV, None)
    if account_key:
        env[LOCALBATCH_KEY_ENV] = account_key
    if storage_account_key:
        env[LOCALBATCH_STORAGE_KEY_ENV] = storage_account_key
    env.update(extra_env or {})
    popen = _spawn(cmd, log_path, env=env)
    return _wait_for_endpoint_file("localbatch", popen, endpoint_file, log_path, timeout)


def start_token_endpoint(
    data_dir: Path, *, secret: str, port: int = 0, lifetime: float | None = None, timeout: float = 30.0
) -> ServiceProcess:
    """Start the local identity's token endpoint (:mod:`runner.token_endpoint`); return when it listens.

    ``url`` is the full ``IDENTITY_ENDPOINT``; the secret reaches it through its environment.
    """
    from runner.token_endpoint import HEADER_ENV

    data_dir.mkdir(parents=True, exist_ok=True)
    endpoint_file = data_dir / "endpoint"
    endpoint_file.unlink(missing_ok=True)
    log_path = data_dir / "token-endpoint.log"
    cmd = [sys.executable, "-m", "runner.token_endpoint", "--data-dir", str(data_dir), "--port", str(port)]
    if lifetime is not None:
        cmd += ["--lifetime", str(lifetime)]
    env = dict(os.environ)
    env[HEADER_ENV] = secret
    popen = _spawn(cmd, log_path, env=env)
    return _wait_for_endpoint_file("token endpoint", popen, endpoint_file, log_path, timeout)


def _wait_for_endpoint_file(
    name: str, popen: subprocess.Popen[bytes], endpoint_file: Path, log_path: Path, timeout: float
) -> ServiceProcess:
    with _stopped_unless_ready(popen):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            url = _read_text(endpoint_file).strip()
            if url:
                port = url_port(url)
                log.info("%s listening on %s (pid %d)", name, url, popen.pid)
                return ServiceProcess(name, popen.pid, url, port, log_path, popen)
            if popen.poll() is not None:
                raise ServiceError(f"{name} exited with code {popen.returncode}; see {log_path}")
            time.sleep(0.05)
        raise ServiceError(f"{name} did not start within {timeout:.0f}s; see {log_path}")


def url_port(url: str) -> int:
    """The port of ``scheme://host:port[/path]``."""
    return int(url.split("://", 1)[1].split("/", 1)[0].rsplit(":", 1)[1])


def listening_ports(pid: int) -> list[int]:
    """TCP ports process ``pid`` listens on (Linux /proc; empty elsewhere or when unreadable)."""
    inodes: set[str] = set()
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return []
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue  # closed meanwhile
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports: list[int] = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 9 and fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                ports.append(int(fields[1].rsplit(":", 1)[1], 16))
    return sorted(set(ports))


def pid_alive(pid: int) -> bool:
    """True if a process with this pid exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def stop_pid(pid: int, *, timeout: float = 10.0, popen: subprocess.Popen[bytes] | None = None) -> None:
    """SIGTERM, wait up to ``timeout``, then SIGKILL. Safe on a pid that is gone."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if popen is not None and popen.poll() is not None:
            return
        if popen is None and not pid_alive(pid):
            return
        time.sleep(0.05)
    log.warning("pid %d did not stop after SIGTERM; sending SIGKILL", pid)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    if popen is not None:
        popen.wait(timeout=10)


def _spawn(cmd: list[str], log_path: Path, env: dict[str, str] | None) -> subprocess.Popen[bytes]:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    # Service logs stay private to the user: they may name jobs, blobs and paths.
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.chmod(log_path, 0o600)
    with os.fdopen(fd, "ab") as log_file:
        return subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return ""
