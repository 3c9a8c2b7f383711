"""The embedded local target: Azurite + localbatch as background services.

State lives under ``$RUNNER_HOME/local/`` (``RUNNER_HOME`` defaults to
``./.runner``)::

    azurite/         Azurite's data and log
    localbatch/      localbatch's data (SQLite), node directories and log
    state.json       pids, ports and data directories of the services we started
    outputs.json     the outputs contract, mode 0600 (holds the keys)

Contracts:

* :func:`ensure_up` is idempotent: services that run are reused; services
  that do not are started, on their previous ports first (so URLs stored in
  tasks stay valid), on free ports otherwise. The containers and the pool
  (from :class:`runner.pool_spec.PoolSpec`, through the Batch data-plane API)
  are created when missing; the outputs file is rewritten atomically.
* The localbatch account key is generated once, randomly, and kept only in
  ``outputs.json`` (0600); it reaches localbatch through its environment.
* :func:`down` stops only processes it started: a recorded pid is signalled
  only if that process's command line still names our data directory.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import secrets
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from runner import local_ca, services
from runner.errors import AuthModeMismatch, ServiceError, TargetError
from runner.outputs import Outputs, load_file, write_file
from runner.pool_spec import PoolSpec
from runner.targets import AuthMode

log = logging.getLogger(__name__)

LOCAL_BATCH_ACCOUNT = "localbatch"
INPUT_CONTAINER = "input"
OUTPUT_CONTAINER = "output"
APPLICATION_CONTAINER = "application"
#: The services, in start order (``identity``: the token endpoint, Entra ID mode only).
SERVICES = ("azurite", "identity", "localbatch")
#: Lifetime in seconds of the tokens the local identity issues (default 1 h); read by `local up`.
TOKEN_LIFETIME_ENV = "RUNNER_LOCAL_TOKEN_LIFETIME"


class ServiceState(str, Enum):
    RUNNING = "running"
    STOPPED = "stopped"


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    state: ServiceState
    pid: int | None
    url: str | None


@dataclass(frozen=True)
class LocalStatus:
    home: Path
    services: tuple[ServiceStatus, ...]
    outputs_file: Path

    @property
    def running(self) -> bool:
        return all(s.state is ServiceState.RUNNING for s in self.services)


@dataclass(frozen=True)
class LocalTarget:
    outputs: Outputs
    started: tuple[str, ...]
    auth: AuthMode = AuthMode.SHAREDKEY


def runner_home() -> Path:
    return Path(os.environ.get("RUNNER_HOME", ".runner")).resolve()


def local_dir() -> Path:
    return runner_home() / "local"


def outputs_path() -> Path:
    return local_dir() / "outputs.json"


def _state_path() -> Path:
    return local_dir() / "state.json"


def _data_dir(name: str) -> Path:
    return local_dir() / name


def _read_state() -> dict[str, Any]:
    try:
        data = json.loads(_state_path().read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError):
        log.warning("ignoring unreadable %s", _state_path())
        return {}
    return data if isinstance(data, dict) else {}


def _write_state(state: dict[str, Any]) -> None:
    path = _state_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    tmp.replace(path)


def _ours(pid: int, data_dir: Path) -> bool:
    """True if ``pid`` is alive and its command line names ``data_dir`` (so it is ours)."""
    if not services.pid_alive(pid):
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    wanted = os.fsencode(str(data_dir))
    return any(arg == wanted for arg in cmdline)


def _running(state: dict[str, Any], name: str) -> dict[str, Any] | None:
    entry = state.get(name)
    if not isinstance(entry, dict):
        return None
    if _ours(int(entry.get("pid", 0)), _data_dir(name)):
        return entry
    return None


def read_outputs() -> Outputs:
    """The outputs file of the local target, without starting anything."""
    path = outputs_path()
    if not path.exists():
        raise TargetError("the local target has never been started", hint="run `runner local up`")
    return load_file(path)


def _new_key() -> str:
    return base64.b64encode(os.urandom(64)).decode("ascii")


def _existing_key() -> str | None:
    path = outputs_path()
    if not path.exists():
        return None
    try:
        return load_file(path).batch_account_key
    except TargetError:
        log.warning("the local outputs file is invalid: a new localbatch key will be generated")
        return None


def _start_with_port_fallback(name: str, previous: int, start: Any) -> services.ServiceProcess:
    if previous:
        try:
            return start(previous)
        except ServiceError:
            log.info("%s could not take its previous port %d; using a free port", name, previous)
    return start(0)


@dataclass(frozen=True)
class LocalTrust:
    """What a client of the local target in Entra ID mode needs: the CA to trust, the identity to use."""

    ca_file: Path
    identity_endpoint: str
    identity_header: str = field(repr=False)


def _secrets_path() -> Path:
    return local_dir() / "secrets.json"


def _secrets() -> dict[str, str]:
    """The local target's private values (0600): Azurite's account key, the identity header."""
    path = _secrets_path()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        data = {}
    if not isinstance(data, dict):
        data = {}
    changed = False
    makers = (("azuriteAccountKey", _new_key), ("identityHeader", lambda: secrets.token_urlsafe(32)))
    for name, make in makers:
        if not isinstance(data.get(name), str) or not data[name]:
            data[name] = make()
            changed = True
    if changed:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".secrets.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle)
        os.replace(tmp, path)
    return {k: str(v) for k, v in data.items()}


def recorded_auth() -> AuthMode | None:
    """The mode the local target was last started in (``None`` if never)."""
    value = _read_state().get("auth")
    try:
        return AuthMode(value) if value else None
    except ValueError:
        return None


def entra_trust() -> LocalTrust | None:
    """The CA and identity of the local target when it is in Entra ID mode; ``None`` otherwise."""
    state = _read_state()
    if state.get("auth") != AuthMode.ENTRA.value:
        return None
    identity = state.get("identity")
    url = identity.get("url") if isinstance(identity, dict) else None
    if not url:
        return None
    return LocalTrust(local_ca.paths(_data_dir("tls")).ca_cert, str(url), _secrets()["identityHeader"])


def _azurite_entry(state: dict[str, Any], entra: bool, started: list[str]) -> dict[str, Any]:
    azurite = _running(state, "azurite")
    if azurite is not None:
        return azurite
    tls = None
    if entra:
        files = local_ca.ensure(_data_dir("tls"))
        tls = services.AzuriteTls(files.server_cert, files.server_key, _secrets()["azuriteAccountKey"])
    proc = _start_with_port_fallback(
        "Azurite",
        _previous_port(state, "azurite"),
        lambda port: services.start_azurite(_data_dir("azurite"), port=port, tls=tls),
    )
    entry = {"pid": proc.pid, "port": proc.port, "url": proc.url}
    state["azurite"] = entry
    _write_state(state)
    started.append("azurite")
    return entry


def _identity_entry(state: dict[str, Any], started: list[str]) -> dict[str, Any]:
    identity = _running(state, "identity")
    if identity is not None:
        return identity
    lifetime = os.environ.get(TOKEN_LIFETIME_ENV)
    proc = _start_with_port_fallback(
        "the token endpoint",
        _previous_port(state, "identity"),
        lambda port: services.start_token_endpoint(
            _data_dir("identity"),
            secret=_secrets()["identityHeader"],
            port=port,
            lifetime=float(lifetime) if lifetime else None,
        ),
    )
    entry = {"pid": proc.pid, "port": proc.port, "url": proc.url}
    state["identity"] = entry
    _write_state(state)
    started.append("identity")
    return entry


def _localbatch_entry(
    state: dict[str, Any], azurite_url: str, key: str | None, started: list[str]
) -> dict[str, Any]:
    localbatch = _running(state, "localbatch")
    if localbatch is not None and localbatch.get("azurite_url") != azurite_url:
        # Azurite moved to another port: localbatch must be told where Storage is now.
        services.stop_pid(int(localbatch["pid"]))
        localbatch = None
    if localbatch is not None:
        return localbatch
    extra: list[str] = []
    if key is None:
        tls = local_ca.paths(_data_dir("tls"))
        extra = ["--cert", str(tls.server_cert), "--key", str(tls.server_key), "--oauth", "basic"]
        extra += ["--auth-modes", "AAD", "--ca-file", str(tls.ca_cert)]

    def start_lb(port: int) -> services.ServiceProcess:
        return services.start_localbatch(
            _data_dir("localbatch"),
            account_name=LOCAL_BATCH_ACCOUNT,
            account_key=key,
            storage_blob_endpoint=azurite_url,
            storage_account_name=services.AZURITE_ACCOUNT_NAME,
            storage_account_key=services.AZURITE_ACCOUNT_KEY if key else None,
            port=port,
            extra_args=extra,
        )

    proc = _start_with_port_fallback("localbatch", _previous_port(state, "localbatch"), start_lb)
    entry = {"pid": proc.pid, "port": proc.port, "url": proc.url, "azurite_url": azurite_url}
    state["localbatch"] = entry
    _write_state(state)
    started.append("localbatch")
    return entry


def _previous_port(state: dict[str, Any], name: str) -> int:
    entry = state.get(name)
    return int(entry.get("port", 0)) if isinstance(entry, dict) else 0


def _check_mode(state: dict[str, Any], auth: AuthMode) -> None:
    """Refuse to switch modes under running services (their data and clients belong to the other mode)."""
    was = state.get("auth", AuthMode.SHAREDKEY.value)
    if was == auth.value or not any(_running(state, name) for name in SERVICES):
        return
    raise AuthModeMismatch(
        f"the local target is running with {'Entra ID' if was == AuthMode.ENTRA.value else 'shared keys'}",
        hint=f"run `runner local down` first, then `runner local up --auth {auth.value}`",
    )


def ensure_up(spec: PoolSpec | None = None, auth: AuthMode | None = None) -> LocalTarget:
    """Start what is not running, create containers and pool, write the outputs; idempotent.

    ``auth`` is the mode to run in (default: the mode it last ran in, else shared keys). Entra ID
    mode: HTTPS with the local CA, Azurite with ``--oauth basic``, localbatch Entra-only, the
    local token endpoint, and an outputs file without keys.
    """
    spec = spec or PoolSpec()
    state = _read_state()
    mode = auth or recorded_auth() or AuthMode.SHAREDKEY
    _check_mode(state, mode)
    if state.get("auth") != mode.value:
        state["auth"] = mode.value
        _write_state(state)
    entra = mode is AuthMode.ENTRA
    started: list[str] = []
    azurite = _azurite_entry(state, entra, started)
    if entra:
        _identity_entry(state, started)
    key = None if entra else (_existing_key() or _new_key())
    localbatch = _localbatch_entry(state, str(azurite["url"]), key, started)
    outputs = Outputs(
        batch_account_name=LOCAL_BATCH_ACCOUNT,
        batch_account_url=str(localbatch["url"]),
        batch_account_key=key,
        storage_account_name=services.AZURITE_ACCOUNT_NAME,
        storage_account_key=None if entra else services.AZURITE_ACCOUNT_KEY,
        storage_blob_endpoint=str(azurite["url"]),
        pool_id=spec.pool_id,
        input_container=INPUT_CONTAINER,
        output_container=OUTPUT_CONTAINER,
        application_container=APPLICATION_CONTAINER,
    )
    write_file(outputs_path(), outputs)
    provision(outputs, spec, entra_trust() if entra else None)
    return LocalTarget(outputs, tuple(started), mode)


def provision(outputs: Outputs, spec: PoolSpec, trust: LocalTrust | None = None) -> None:
    """Create the containers and the pool when missing (idempotent); with ``trust``, as the identity."""
    from runner.batch import Batch
    from runner.storage import Storage
    from runner.targets import local_identity_credential

    credential = local_identity_credential(trust) if trust else None
    ca = str(trust.ca_file) if trust else None
    Storage(outputs, credential=credential, ca_bundle=ca).ensure_containers(
        [outputs.input_container, outputs.output_container, outputs.application_container]
    )
    Batch(outputs, credential=credential, ca_bundle=ca).create_pool(spec)


def status() -> LocalStatus:
    state = _read_state()
    out = []
    for name in SERVICES:
        if name == "identity" and state.get("auth") != AuthMode.ENTRA.value and name not in state:
            continue
        entry = _running(state, name)
        if entry is None:
            out.append(ServiceStatus(name, ServiceState.STOPPED, None, None))
        else:
            out.append(ServiceStatus(name, ServiceState.RUNNING, int(entry["pid"]), str(entry["url"])))
    return LocalStatus(local_dir(), tuple(out), outputs_path())


def down() -> list[str]:
    """Stop the services this target started; returns the names of those stopped."""
    state = _read_state()
    stopped = []
    for name in reversed(SERVICES):
        entry = _running(state, name)
        if entry is not None:
            services.stop_pid(int(entry["pid"]))
            stopped.append(name)
        elif isinstance(state.get(name), dict) and services.pid_alive(int(state[name].get("pid", 0))):
            log.warning("pid %s recorded for %s is not ours any more: left alone", state[name]["pid"], name)
    return stopped
