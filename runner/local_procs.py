"""Finding the local target's services by what they are, not by what a state file says.

A process is one of this home's services when its command line names the
service's data directory right after the option that takes it
(``--location DIR`` for Azurite, ``--data-dir DIR`` for localbatch and the
token endpoint) and, for the Python ones, names its module. That survives a
lost or corrupt ``state.json`` and a runner interrupted between starting a
service and recording it. Linux ``/proc`` only: elsewhere nothing is found
and the state file is all there is. Zombies are not services.
"""

from __future__ import annotations

import os
from pathlib import Path

from runner import services

#: service name -> (option naming its data dir, an argument it must also have, or None)
_SIGNATURES: dict[str, tuple[bytes, bytes | None]] = {
    "azurite": (b"--location", None),
    "localbatch": (b"--data-dir", b"localbatch"),
    "identity": (b"--data-dir", b"runner.token_endpoint"),
}


def cmdline(pid: int) -> list[bytes] | None:
    """The arguments of a live, non-zombie process; ``None`` if there is none."""
    if pid <= 0 or not services.pid_alive(pid):
        return None
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return raw.split(b"\0")[:-1] if raw.endswith(b"\0") else raw.split(b"\0")


def option(args: list[bytes], name: bytes) -> bytes | None:
    """The value after ``name`` in ``args``."""
    for i, arg in enumerate(args[:-1]):
        if arg == name:
            return args[i + 1]
    return None


def matches(args: list[bytes] | None, service: str, data_dir: Path) -> bool:
    if not args:
        return False
    flag, marker = _SIGNATURES[service]
    if option(args, flag) != os.fsencode(str(data_dir)):
        return False
    return marker is None or marker in args


def is_service(pid: int, service: str, data_dir: Path) -> bool:
    """True if ``pid`` is ``service`` running on ``data_dir``."""
    return matches(cmdline(pid), service, data_dir)


def find(service: str, data_dir: Path) -> list[int]:
    """pids of every process that is ``service`` on ``data_dir``, oldest first."""
    found: list[int] = []
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for entry in entries:
        if entry.isdigit() and matches(cmdline(int(entry)), service, data_dir):
            found.append(int(entry))
    return sorted(found, key=_start_time)


def _start_time(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return 0
