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
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from runner import services
from runner.errors import ServiceError, TargetError
from runner.outputs import Outputs, load_file, write_file
from runner.pool_spec import PoolSpec

log = logging.getLogger(__name__)

LOCAL_BATCH_ACCOUNT = "localbatch"
INPUT_CONTAINER = "input"
OUTPUT_CONTAINER = "output"
APPLICATION_CONTAINER = "application"


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


def ensure_up(spec: PoolSpec | None = None) -> LocalTarget:
    """Start what is not running, create containers and pool, write the outputs; idempotent."""
    spec = spec or PoolSpec()
    state = _read_state()
    started: list[str] = []

    azurite = _running(state, "azurite")
    if azurite is None:
        prev = int(state.get("azurite", {}).get("port", 0)) if isinstance(state.get("azurite"), dict) else 0
        proc = _start_with_port_fallback(
            "Azurite", prev, lambda port: services.start_azurite(_data_dir("azurite"), port=port)
        )
        azurite = {"pid": proc.pid, "port": proc.port, "url": proc.url}
        state["azurite"] = azurite
        _write_state(state)
        started.append("azurite")

    key = _existing_key() or _new_key()
    localbatch = _running(state, "localbatch")
    if localbatch is not None and localbatch.get("azurite_url") != azurite["url"]:
        # Azurite moved to another port: localbatch must be told where Storage is now.
        services.stop_pid(int(localbatch["pid"]))
        localbatch = None
    if localbatch is None:
        prev_entry = state.get("localbatch")
        prev = int(prev_entry.get("port", 0)) if isinstance(prev_entry, dict) else 0
        azurite_url = str(azurite["url"])

        def start_lb(port: int) -> services.ServiceProcess:
            return services.start_localbatch(
                _data_dir("localbatch"),
                account_name=LOCAL_BATCH_ACCOUNT,
                account_key=key,
                storage_blob_endpoint=azurite_url,
                storage_account_name=services.AZURITE_ACCOUNT_NAME,
                storage_account_key=services.AZURITE_ACCOUNT_KEY,
                port=port,
            )

        proc = _start_with_port_fallback("localbatch", prev, start_lb)
        localbatch = {"pid": proc.pid, "port": proc.port, "url": proc.url, "azurite_url": azurite_url}
        state["localbatch"] = localbatch
        _write_state(state)
        started.append("localbatch")

    outputs = Outputs(
        batch_account_name=LOCAL_BATCH_ACCOUNT,
        batch_account_url=str(localbatch["url"]),
        batch_account_key=key,
        storage_account_name=services.AZURITE_ACCOUNT_NAME,
        storage_account_key=services.AZURITE_ACCOUNT_KEY,
        storage_blob_endpoint=str(azurite["url"]),
        pool_id=spec.pool_id,
        input_container=INPUT_CONTAINER,
        output_container=OUTPUT_CONTAINER,
        application_container=APPLICATION_CONTAINER,
    )
    write_file(outputs_path(), outputs)
    provision(outputs, spec)
    return LocalTarget(outputs, tuple(started))


def provision(outputs: Outputs, spec: PoolSpec) -> None:
    """Create the containers and the pool when missing (idempotent)."""
    from runner.batch import Batch
    from runner.storage import Storage

    Storage(outputs).ensure_containers(
        [outputs.input_container, outputs.output_container, outputs.application_container]
    )
    Batch(outputs).create_pool(spec)


def status() -> LocalStatus:
    state = _read_state()
    out = []
    for name in ("azurite", "localbatch"):
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
    for name in ("localbatch", "azurite"):
        entry = _running(state, name)
        if entry is not None:
            services.stop_pid(int(entry["pid"]))
            stopped.append(name)
        elif isinstance(state.get(name), dict) and services.pid_alive(int(state[name].get("pid", 0))):
            log.warning("pid %s recorded for %s is not ours any more: left alone", state[name]["pid"], name)
    return stopped
