"""localbatch listens on loopback only by default, and its account key leaks nowhere.

Each test starts its own localbatch (so its log, command line and data dir hold
only what this test did), runs real work through the SDK, then looks for the
key in every place it could leak: the debug log, ``/proc/PID/cmdline``, every
file under the data dir, and a task's environment.
"""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from azure.batch import models as bm
from azure.core.exceptions import HttpResponseError

from runner import services
from tests.conftest import Azurite, LocalBatch, new_account_key, start_localbatch
from tests.reliability.conftest import batch_client, build, rfc1123, send, sign, unique, wait_for


def _proc_listeners(port: int) -> list[str]:
    """Local addresses (hex, as in /proc/net/tcp*) of sockets listening on ``port``."""
    found: list[str] = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            fields = line.split()
            address, hex_port = fields[1].rsplit(":", 1)
            if fields[3] == "0A" and int(hex_port, 16) == port:  # 0A = LISTEN
                found.append(address)
    return found


def _is_loopback_hex(address: str) -> bool:
    if len(address) == 8:  # IPv4, little-endian
        return bytes.fromhex(address)[::-1][0] == 127
    # IPv6 ::1 as /proc prints it, or an IPv4-mapped 127.x address.
    return address in ("00000000000000000000000001000000",) or (
        address.startswith("0000000000000000FFFF0000") and bytes.fromhex(address[24:])[::-1][0] == 127
    )


def _non_loopback_ipv4() -> str | None:
    """A local IPv4 address of this machine that is not loopback, from the kernel's routing table."""
    try:
        lines = Path("/proc/net/fib_trie").read_text().splitlines()
    except FileNotFoundError:
        return None
    previous = ""
    for line in lines:
        if "/32 host LOCAL" in line:
            address = previous.strip().lstrip("|-+ ").strip()
            if address and not address.startswith("127."):
                return address
        previous = line
    return None


@pytest.fixture
def default_host_server(tmp_path: Path, azurite: Azurite) -> Iterator[tuple[str, int]]:
    """``python -m localbatch serve`` without ``--host``; yields (advertised url, pid)."""
    data_dir = tmp_path / "lb"
    data_dir.mkdir()
    env = dict(os.environ)
    env[services.LOCALBATCH_KEY_ENV] = new_account_key()
    cmd = [sys.executable, "-m", "localbatch", "serve", "--data-dir", str(data_dir), "--account-name", "acct"]
    with open(tmp_path / "lb.log", "ab") as log_file:
        popen = subprocess.Popen(
            cmd,
            cwd=services.PROJECT_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        endpoint = data_dir / "endpoint"

        def advertised() -> str | None:
            if popen.poll() is not None:
                raise AssertionError((tmp_path / "lb.log").read_text())
            return endpoint.read_text().strip() if endpoint.exists() else None

        url = wait_for(advertised, timeout=30)
        yield url, popen.pid
    finally:
        services.stop_pid(popen.pid, popen=popen)


def test_binds_only_to_loopback_by_default(default_host_server: tuple[str, int]) -> None:
    url, _ = default_host_server
    host, port = url.removeprefix("http://").rsplit(":", 1)
    assert host == "127.0.0.1"
    listeners = _proc_listeners(int(port))
    assert listeners, f"nothing listens on port {port}"
    assert all(_is_loopback_hex(a) for a in listeners), listeners
    # Reachable on loopback ...
    with socket.create_connection(("127.0.0.1", int(port)), timeout=5):
        pass
    # ... and not from another address of this machine.
    other = _non_loopback_ipv4()
    if other is None:
        pytest.skip("this machine has no non-loopback IPv4 address to try")
    with pytest.raises(OSError):
        socket.create_connection((other, int(port)), timeout=5).close()


@pytest.fixture
def debug_server(tmp_path: Path, azurite: Azurite) -> Iterator[LocalBatch]:
    server = start_localbatch(tmp_path / "lb", azurite, extra_args=["--log-level", "DEBUG"])
    yield server
    server.process.stop()


def _needles(key: str) -> list[bytes]:
    """The key as text, and its decoded bytes (a leak may be either)."""
    return [key.encode(), base64.b64decode(key)]


def test_account_key_never_leaks(debug_server: LocalBatch, azurite: Azurite) -> None:
    server = debug_server
    client = batch_client(server)
    pool_id, job_id = unique("pool"), unique("job")
    client.create_pool(
        bm.BatchPoolCreateOptions(
            id=pool_id,
            vm_size="standard_d2s_v5",
            target_dedicated_nodes=1,
            start_task=bm.BatchStartTask(command_line="/usr/bin/env", wait_for_success=True),
        )
    )
    client.create_job(
        bm.BatchJobCreateOptions(
            id=job_id, pool_info=bm.BatchPoolInfo(pool_id=pool_id), all_tasks_complete_mode="terminatejob"
        )
    )
    client.create_tasks(
        job_id,
        [
            bm.BatchTaskCreateOptions(id="env", command_line="/usr/bin/env"),
            bm.BatchTaskCreateOptions(id="fail", command_line="/bin/sh -c 'echo oops >&2; exit 3'"),
        ],
    )
    wait_for(lambda: client.get_job(job_id).state == "completed", timeout=60)
    env_out = b"".join(client.download_task_file(job_id, "env", "stdout.txt"))
    assert b"AZ_BATCH_TASK_ID=env" in env_out  # the task ran and printed its environment
    # Refused and failing requests log too: a wrong key, a stale date, a missing resource.
    with pytest.raises(HttpResponseError):
        batch_client(server, key=new_account_key()).get_job(job_id)
    stale = build(server, "GET", "/pools")
    sign(
        stale,
        server.account_name,
        server.account_key,
        ocp_date=rfc1123(datetime.now(timezone.utc) - timedelta(hours=1)),
    )
    assert send(server, stale).status == 403
    with pytest.raises(HttpResponseError):
        client.get_task(job_id, "missing")
    cmdline = Path(f"/proc/{server.process.pid}/cmdline").read_bytes()
    server.process.stop()
    deadline = time.monotonic() + 5
    while server.process.alive() and time.monotonic() < deadline:
        time.sleep(0.05)

    log_text = server.process.log_path.read_bytes()
    assert b"DEBUG" in log_text, "the server did not log at debug level"
    for secret in (server.account_key, azurite.account_key):
        for needle in _needles(secret):
            assert needle not in cmdline
            assert needle not in log_text
            assert needle not in env_out
            for path in server.data_dir.rglob("*"):
                if path.is_file():
                    assert needle not in path.read_bytes(), (
                        f"key found in {path.relative_to(server.data_dir)}"
                    )
