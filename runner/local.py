"""The embedded local target: Azurite + localbatch as background services, one pair per user.

State lives under ``$RUNNER_HOME/local/`` (``RUNNER_HOME`` defaults to the
user data directory, see :mod:`runner.home`)::

    azurite/         Azurite's data and log
    localbatch/      localbatch's data (SQLite), node directories and log
    identity/        Entra ID mode: the token endpoint's endpoint file and log
    tls/             Entra ID mode: the local CA and the server certificate (:mod:`runner.local_ca`)
    state.json       mode, pids, ports and URLs of the services
    outputs.json     the outputs contract, mode 0600 (the keys in shared-key mode; none in Entra ID mode)
    secrets.json     Entra ID mode, 0600: Azurite's account key (no client has it) and the identity header
    .lock            held while a runner starts or stops the services

Contracts:

* :func:`ensure_up` is idempotent: services that run are reused; services
  that do not are started, on their previous ports first (so URLs stored in
  tasks stay valid), on free ports otherwise. The containers and the pool
  (from :class:`runner.pool_spec.PoolSpec`, through the Batch data-plane API)
  are created when missing; the outputs file is rewritten atomically.
* One runner at a time starts or stops them (an flock on ``.lock``): two
  `local up` or two first `submit` at once share one pair.
* Services are found by what they are (:mod:`runner.local_procs`: the data
  directory on their command line, their listening port), so a lost or
  corrupt ``state.json`` never starts a second pair on the same data; a
  service interrupted while starting (Ctrl-C) is stopped, not orphaned.
* Shared-key mode: the localbatch account key is generated once, randomly,
  and kept only in ``outputs.json`` (0600); it reaches localbatch through its
  environment. Entra ID mode (``auth=AuthMode.ENTRA``): HTTPS with a local CA,
  Azurite ``--oauth basic`` with an account key no client knows, localbatch
  Entra-only, and the local token endpoint (:mod:`runner.token_endpoint`);
  :func:`entra_trust` tells clients which CA and identity to use.
* :func:`down` stops only this home's services: a recorded pid is signalled
  only if that process is still the service on our data directory.
"""

from __future__ import annotations

import base64
import fcntl
import json
import logging
import os
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from runner import local_ca, local_procs, services
from runner.errors import AuthModeMismatch, ServiceError, TargetError, UsageError
from runner.home import runner_home
from runner.outputs import Outputs, load_file, write_file
from runner.pool_spec import PoolSpec
from runner.targets import AuthMode
from runner.text import safe
from runner.token_endpoint import POOL_IDENTITY_RESOURCE_ID, TOKEN_PATH

log = logging.getLogger(__name__)

LOCAL_BATCH_ACCOUNT = "localbatch"
INPUT_CONTAINER = "input"
OUTPUT_CONTAINER = "output"
APPLICATION_CONTAINER = "application"
#: The services, in start order (``identity``: the token endpoint, Entra ID mode only).
SERVICES = ("azurite", "identity", "localbatch")
#: Lifetime in seconds of the tokens the local identity issues (default 1 h); read by `local up`.
TOKEN_LIFETIME_ENV = "RUNNER_LOCAL_TOKEN_LIFETIME"
LOCK_TIMEOUT_SECONDS = 180.0
#: localbatch's variable for the identity header (localbatch.node_identity.HEADER_ENV; not imported here).
LOCALBATCH_IDENTITY_HEADER_ENV = "LOCALBATCH_IDENTITY_HEADER"


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


def _running(state: dict[str, Any], name: str, repair: bool = False) -> dict[str, Any] | None:
    """The entry of service ``name`` if it runs on our data: the recorded pid if it still is that
    service, else one found by what it is (:mod:`runner.local_procs`), recorded into ``state``.
    ``repair`` (only under :func:`_locked`) also stops extra copies."""
    entry = state.get(name)
    if isinstance(entry, dict) and local_procs.is_service(int(entry.get("pid", 0)), name, _data_dir(name)):
        return entry
    found = _discover(name, repair)
    if found is not None:
        state[name] = found
    return found


def _discover(name: str, repair: bool) -> dict[str, Any] | None:
    """A running ``name`` on our data dir with its port and URL; with ``repair``, extra or deaf
    copies are stopped (without it, one may be another runner's, still starting)."""
    data_dir = _data_dir(name)
    chosen: dict[str, Any] | None = None
    for pid in local_procs.find(name, data_dir):
        args = local_procs.cmdline(pid) or []
        ports = services.listening_ports(pid)
        if chosen is None and ports:
            chosen = _entry_from(name, pid, ports, args)
            log.info("found %s running on %s (pid %d), not in the state file", name, data_dir, pid)
            continue
        if repair:
            log.warning("stopping a second %s on %s (pid %d)", name, data_dir, pid)
            services.stop_pid(pid, timeout=5)
    return chosen


def _entry_from(name: str, pid: int, ports: list[int], args: list[bytes]) -> dict[str, Any]:
    scheme = "https" if b"--cert" in args else "http"
    endpoint = _endpoint_file(name)
    if endpoint and services.url_port(endpoint) in ports:
        url = endpoint
    elif name == "azurite":
        url = f"{scheme}://127.0.0.1:{ports[0]}/{services.AZURITE_ACCOUNT_NAME}"
    elif name == "identity":
        url = f"http://127.0.0.1:{ports[0]}{TOKEN_PATH}"
    else:
        url = f"{scheme}://127.0.0.1:{ports[0]}"
    entry: dict[str, Any] = {"pid": pid, "port": services.url_port(url), "url": url}
    if name == "azurite":
        entry["oauth"] = b"--oauth" in args
    if name == "localbatch":
        storage = local_procs.option(args, b"--storage-blob-endpoint")
        entry["azurite_url"] = os.fsdecode(storage) if storage else ""
        identity = local_procs.option(args, b"--identity-endpoint")
        if identity:
            entry["identity_url"] = os.fsdecode(identity)
    return entry


def _endpoint_file(name: str) -> str | None:
    if name == "azurite":
        return None
    try:
        text = (_data_dir(name) / "endpoint").read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return text or None


def _current_state(repair: bool = False) -> dict[str, Any]:
    """The state file, completed with the services found running (and their mode)."""
    state = _read_state()
    running = {name: _running(state, name, repair) for name in SERVICES}
    if "auth" not in state and running["azurite"] is not None:
        entra = bool(running["azurite"].get("oauth")) or running["identity"] is not None
        state["auth"] = (AuthMode.ENTRA if entra else AuthMode.SHAREDKEY).value
    return state


@contextmanager
def _locked(timeout: float = LOCK_TIMEOUT_SECONDS) -> Iterator[None]:
    """One runner at a time starts or stops this home's services (an flock, freed on exit)."""
    local_dir().mkdir(parents=True, exist_ok=True)
    fd = os.open(local_dir() / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + timeout
        waited = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise ServiceError(
                        f"another runner has been starting or stopping the local target for {timeout:.0f}s",
                        hint=f"see `runner local status`; the lock is {local_dir() / '.lock'}",
                    ) from None
                if not waited:
                    log.warning("waiting for another runner that is starting or stopping the local target")
                    waited = True
                time.sleep(0.1)
        yield
    finally:
        os.close(fd)  # releases the lock


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
    value = _current_state().get("auth")
    try:
        return AuthMode(value) if value else None
    except ValueError:
        return None


def entra_trust() -> LocalTrust | None:
    """The CA and identity of the local target when it is in Entra ID mode; ``None`` otherwise."""
    state = _current_state()
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


def _identity_entry(state: dict[str, Any], started: list[str], lifetime: float | None) -> dict[str, Any]:
    identity = _running(state, "identity")
    if identity is not None:
        return identity
    proc = _start_with_port_fallback(
        "the token endpoint",
        _previous_port(state, "identity"),
        lambda port: services.start_token_endpoint(
            _data_dir("identity"),
            secret=_secrets()["identityHeader"],
            port=port,
            lifetime=lifetime,
        ),
    )
    entry = {"pid": proc.pid, "port": proc.port, "url": proc.url}
    state["identity"] = entry
    _write_state(state)
    started.append("identity")
    return entry


def _token_lifetime() -> float | None:
    """``$RUNNER_LOCAL_TOKEN_LIFETIME`` in seconds (1..86400), or None for the endpoint's default."""
    raw = os.environ.get(TOKEN_LIFETIME_ENV, "").strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not 1 <= value <= 86400:
        raise UsageError(f"{TOKEN_LIFETIME_ENV}={raw[:20]!r} is not a number of seconds from 1 to 86400")
    return value


def _localbatch_entry(
    state: dict[str, Any],
    azurite_url: str,
    key: str | None,
    started: list[str],
    weather: list[str] | None = None,
) -> dict[str, Any]:
    """The running localbatch, started (or restarted) if needed; ``weather``: its ``serve`` weather
    arguments, when asked for (None: whatever weather it runs with, calm when it starts)."""
    localbatch = _running(state, "localbatch")
    identity_url = str((state.get("identity") or {}).get("url", "")) if key is None else ""
    moved = localbatch is not None and (
        localbatch.get("azurite_url") != azurite_url or localbatch.get("identity_url", "") != identity_url
    )
    if localbatch is not None and (
        moved or (weather is not None and localbatch.get("weather", []) != weather)
    ):
        # Azurite (or the token endpoint) moved to another port (localbatch must be told where
        # it is now), or other weather.
        services.stop_pid(int(localbatch["pid"]))
        localbatch = None
    if localbatch is not None:
        return localbatch
    extra: list[str] = list(weather or [])
    env: dict[str, str] = {}
    if key is None:
        tls = local_ca.paths(_data_dir("tls"))
        extra += ["--cert", str(tls.server_cert), "--key", str(tls.server_key), "--oauth", "basic"]
        extra += ["--auth-modes", "AAD", "--ca-file", str(tls.ca_cert)]
        # The pool's identity: its nodes fetch the tasks' files with its tokens, not with SAS.
        extra += ["--pool-identity", POOL_IDENTITY_RESOURCE_ID, "--identity-endpoint", identity_url]
        env[LOCALBATCH_IDENTITY_HEADER_ENV] = _secrets()["identityHeader"]

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
            extra_env=env,
        )

    proc = _start_with_port_fallback("localbatch", _previous_port(state, "localbatch"), start_lb)
    entry = {
        "pid": proc.pid,
        "port": proc.port,
        "url": proc.url,
        "azurite_url": azurite_url,
        "weather": weather or [],
    }
    if identity_url:
        entry["identity_url"] = identity_url
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


def weather_args(weather: str | None, seed: int | None) -> list[str] | None:
    """localbatch's ``--weather``/``--weather-seed`` for ``runner local up --weather`` (None: not asked).

    ``weather`` is a preset name (``azure-like``) or a profile file, passed as an absolute path;
    a file that does not exist is a UsageError naming it. localbatch validates the profile.
    """
    if weather is None:
        if seed is not None:
            raise UsageError(
                "--weather-seed needs --weather", hint="e.g. --weather azure-like --weather-seed 7"
            )
        return None
    spec = weather
    if weather.endswith((".json", ".toml")) or os.sep in weather:
        path = Path(weather).expanduser().resolve()
        if not path.is_file():
            raise UsageError(
                f"weather profile {safe(weather)}: no such file", hint="give a .json/.toml file or azure-like"
            )
        spec = str(path)
    return ["--weather", spec] + ([] if seed is None else ["--weather-seed", str(seed)])


def ensure_up(
    spec: PoolSpec | None = None,
    auth: AuthMode | None = None,
    first_auth: AuthMode | None = None,
    weather: list[str] | None = None,
) -> LocalTarget:
    """Start what is not running, create containers and pool, write the outputs; idempotent.

    ``auth`` is the mode to run in (default: the mode it last ran in, else ``first_auth``, else
    shared keys: a first ``runner --auth entra submit`` starts it in Entra ID mode). Entra ID
    mode: HTTPS with the local CA, Azurite with ``--oauth basic``, localbatch Entra-only, the
    local token endpoint, and an outputs file without keys.
    """
    with _locked():
        try:
            return _ensure_up(spec or PoolSpec(), auth, first_auth, weather)
        except BaseException:  # Ctrl-C included: what this call started and did not record, goes
            _stop_unrecorded()
            raise


def _stop_unrecorded() -> None:
    """Stop this home's services that are not in the state file (started, then interrupted)."""
    state = _read_state()
    for name in SERVICES:
        entry = state.get(name)
        recorded = int(entry.get("pid", 0)) if isinstance(entry, dict) else 0
        for pid in local_procs.find(name, _data_dir(name)):
            if pid != recorded:
                log.warning("stopping %s (pid %d): it was started but never recorded", name, pid)
                services.stop_pid(pid, timeout=5)


def _ensure_up(
    spec: PoolSpec, auth: AuthMode | None, first_auth: AuthMode | None, weather: list[str] | None = None
) -> LocalTarget:
    state = _current_state(repair=True)
    _write_state(state)  # services found running are recorded before anything can fail
    recorded = state.get("auth")
    known = AuthMode(recorded) if recorded in {m.value for m in AuthMode} else None
    mode = auth or known or first_auth or AuthMode.SHAREDKEY
    _check_mode(state, mode)
    lifetime = _token_lifetime() if mode is AuthMode.ENTRA else None  # refused before anything starts
    state["auth"] = mode.value
    _write_state(state)
    entra = mode is AuthMode.ENTRA
    started: list[str] = []
    azurite = _azurite_entry(state, entra, started)
    if entra:
        _identity_entry(state, started, lifetime)
    key = None if entra else (_existing_key() or _new_key())
    localbatch = _localbatch_entry(state, str(azurite["url"]), key, started, weather)
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
        pool_identity_resource_id=POOL_IDENTITY_RESOURCE_ID if entra else None,
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
    """The services of this home, found by the state file or by what they are (nothing is changed)."""
    state = _current_state()
    out = []
    for name in SERVICES:
        entry = _running(state, name)
        if name == "identity" and entry is None and state.get("auth") != AuthMode.ENTRA.value:
            continue
        if entry is None:
            out.append(ServiceStatus(name, ServiceState.STOPPED, None, None))
        else:
            out.append(ServiceStatus(name, ServiceState.RUNNING, int(entry["pid"]), str(entry["url"])))
    return LocalStatus(local_dir(), tuple(out), outputs_path())


def down() -> list[str]:
    """Stop this home's services (recorded or found by what they are); returns the names stopped.

    A recorded pid that is not one of them any more (reused by another process) is left alone.
    """
    if not local_dir().exists():
        return []
    with _locked():
        return _down()


def _down() -> list[str]:
    state = _current_state(repair=True)
    stopped = []
    for name in reversed(SERVICES):
        entry = _running(state, name)
        if entry is not None:
            services.stop_pid(int(entry["pid"]))
            stopped.append(name)
        elif isinstance(state.get(name), dict) and services.pid_alive(int(state[name].get("pid", 0))):
            log.warning("pid %s recorded for %s is not ours any more: left alone", state[name]["pid"], name)
    return stopped
