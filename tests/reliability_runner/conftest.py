"""Fixtures and helpers for the runner's reliability and security tests (issue 7).

Everything goes through the real CLI (``.venv/bin/runner`` as a subprocess, or
typer's ``CliRunner`` where no process boundary is needed) against real Azurite
and localbatch. Tests that kill servers start their own (:func:`own_target`);
the others use the session's servers through ``tests/runner``'s outputs file.
"""

from __future__ import annotations

import dataclasses
import os
import queue
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from azure.batch import BatchClient
from azure.core.credentials import AzureNamedKeyCredential

from runner.batch import Batch
from runner.outputs import Outputs, write_file
from runner.pool_spec import PoolSpec
from runner.storage import Storage
from tests.conftest import Azurite, LocalBatch, start_azurite, start_localbatch
from tests.runner.conftest import outputs_file, storage_outputs, target_outputs

__all__ = ["outputs_file", "storage_outputs", "target_outputs"]

RUNNER = Path(sys.executable).with_name("runner")
#: Any SAS signature as it appears in a URL or a log line.
SIG = re.compile(r"sig=([A-Za-z0-9%+/=]{20,})")


def env(**extra: str) -> dict[str, str]:
    """The environment of a runner subprocess: unbuffered, no colours, no terminal, and a
    console wide enough that rich never wraps a line (see BUG R1 in test_faults.py)."""
    # RUNNER_CACHE stays: the suite runs with the result cache off (tests/conftest.py).
    base = {k: v for k, v in os.environ.items() if not k.startswith("RUNNER_") or k == "RUNNER_CACHE"}
    return {**base, "PYTHONUNBUFFERED": "1", "NO_COLOR": "1", "COLUMNS": "100000", **extra}


def cmd(outputs: Path, *args: str) -> list[str]:
    return [str(RUNNER), "--outputs", str(outputs), *args]


def run(
    outputs: Path, *args: str, timeout: float = 240, **kwargs: object
) -> subprocess.CompletedProcess[str]:
    """Run the runner CLI to completion (bounded); stdout and stderr captured as text."""
    return subprocess.run(  # type: ignore[call-overload]
        cmd(outputs, *args), capture_output=True, text=True, env=env(), timeout=timeout, **kwargs
    )


class Lines:
    """A running runner process whose stderr is read line by line in a thread."""

    def __init__(self, argv: list[str], **kwargs: object) -> None:
        kwargs.setdefault("env", env())
        self.proc = subprocess.Popen(  # type: ignore[call-overload]
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs
        )
        self.seen: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()
        self._stdout: list[str] = []
        threading.Thread(target=self._pump_stdout, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self._queue.put(line)
        self._queue.put(None)

    def _pump_stdout(self) -> None:
        assert self.proc.stdout is not None
        self._stdout.append(self.proc.stdout.read())

    def wait_for(self, predicate: Callable[[str], bool], timeout: float = 120) -> str:
        """Block until a stderr line matches (returns it); fail if the process ends first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._queue.get(timeout=0.5)
            except queue.Empty:
                continue
            if line is None:
                pytest.fail("runner exited before the expected line:\n" + "".join(self.seen))
            self.seen.append(line)
            if predicate(line):
                return line
        self.proc.kill()
        pytest.fail("timed out waiting for a line:\n" + "".join(self.seen))

    def interrupt(self) -> None:
        self.proc.send_signal(signal.SIGINT)

    def finish(self, timeout: float = 120) -> tuple[int, str, str]:
        """Wait for the exit; returns (exit code, all stderr, stdout)."""
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise
        while True:
            line = self._queue.get(timeout=10)
            if line is None:
                break
            self.seen.append(line)
        time.sleep(0.05)
        return self.proc.returncode, "".join(self.seen), "".join(self._stdout)


@dataclass(frozen=True)
class OwnTarget:
    """Azurite + localbatch started for one test (so it may kill them), with containers and pool."""

    outputs: Outputs
    outputs_file: Path
    azurite: Azurite
    localbatch: LocalBatch


def make_outputs(azurite: Azurite, localbatch: LocalBatch, pool_id: str) -> Outputs:
    suffix = secrets.token_hex(3)
    return Outputs(
        batch_account_name=localbatch.account_name,
        batch_account_url=localbatch.url,
        batch_account_key=localbatch.account_key,
        storage_account_name=azurite.account_name,
        storage_account_key=azurite.account_key,
        storage_blob_endpoint=azurite.blob_endpoint,
        pool_id=pool_id,
        input_container=f"in{suffix}",
        output_container=f"out{suffix}",
        application_container=f"app{suffix}",
    )


def provision(out: Outputs, spec: PoolSpec) -> None:
    Storage(out).ensure_containers([out.input_container, out.output_container, out.application_container])
    Batch(out).create_pool(spec)


@pytest.fixture
def own_target(tmp_path: Path) -> Iterator[OwnTarget]:
    az = start_azurite(tmp_path / "azurite")
    lb: LocalBatch | None = None
    try:
        lb = start_localbatch(tmp_path / "localbatch", az)
        out = make_outputs(az, lb, PoolSpec().pool_id)
        provision(out, PoolSpec())
        path = tmp_path / "outputs.json"
        write_file(path, out)
        yield OwnTarget(out, path, az, lb)
    finally:
        if lb is not None:
            lb.process.stop()
        az.process.stop()


@pytest.fixture(scope="session")
def fast_pool(tmp_path_factory: pytest.TempPathFactory, target_outputs: Outputs) -> Path:
    """An outputs file for the session target with its own pool: 2 nodes, 4 task slots each."""
    spec = PoolSpec(pool_id="rel-fast", dedicated_nodes=2, task_slots_per_node=4)
    Batch(target_outputs).create_pool(spec)
    path = tmp_path_factory.mktemp("fast") / "outputs.json"
    write_file(path, dataclasses.replace(target_outputs, pool_id=spec.pool_id))
    return path


def sdk(out: Outputs) -> BatchClient:
    """The plain Batch SDK client (what a second Batch user would see)."""
    assert out.batch_account_key is not None
    return BatchClient(
        out.batch_account_url, AzureNamedKeyCredential(out.batch_account_name, out.batch_account_key)
    )


def blob_names(out: Outputs, container: str, prefix: str) -> list[str]:
    return sorted(b.name for b in Storage(out).list_blobs(container, prefix))


def task_ids(out: Outputs, job_id: str) -> list[str]:
    return sorted(t.id for t in Batch(out).list_tasks(job_id))


#: What the runner itself writes at the top of a results directory (runner/dest.py, runner/report.py).
RUNNER_RECORDS = frozenset({".runner-job", "summary.tsv"})


def files_under(root: Path) -> list[str]:
    """The result files under ``root``, without the runner's own records."""
    found = (p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    return sorted(p for p in found if p not in RUNNER_RECORDS)


def secrets_of(out: Outputs) -> list[str]:
    return [k for k in (out.batch_account_key, out.storage_account_key) if k]


def leaks(text: str, out: Outputs) -> list[str]:
    """What in ``text`` is a key of ``out`` or a SAS signature (empty when clean)."""
    found = ["an account key" for k in secrets_of(out) if k in text]
    found += [f"sig={m[:6]}…" for m in SIG.findall(text)]
    return found


@pytest.fixture(scope="session")
def idle_pool(tmp_path_factory: pytest.TempPathFactory, target_outputs: Outputs) -> Path:
    """An outputs file for the session target with a pool of no nodes: tasks stay queued."""
    spec = PoolSpec(pool_id="rel-idle", dedicated_nodes=0)
    Batch(target_outputs).create_pool(spec)
    path = tmp_path_factory.mktemp("idle") / "outputs.json"
    write_file(path, dataclasses.replace(target_outputs, pool_id=spec.pool_id))
    return path


@dataclass(frozen=True)
class Measured:
    """A finished runner process and its peak resident memory."""

    returncode: int
    stdout: str
    stderr: str
    max_rss_mb: float


def _vm_hwm_kb(pid: int) -> int | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return None


def run_measured(outputs: Path, *args: str, timeout: float = 280) -> Measured:
    """Run the runner and measure its peak RSS.

    The peak is the kernel's high-water mark of the runner's own address space (``VmHWM``,
    which only grows), read every 20 ms until the process exits. Not ``wait4``'s
    ``ru_maxrss``: Linux carries the parent's high-water mark into a child across
    ``vfork``/``exec``, so it would report pytest's memory, not the runner's.
    """
    proc = subprocess.Popen(
        cmd(outputs, *args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env()
    )
    out: dict[str, str] = {}

    def drain(name: str) -> None:
        out[name] = getattr(proc, name).read()

    readers = [threading.Thread(target=drain, args=(n,), daemon=True) for n in ("stdout", "stderr")]
    for reader in readers:
        reader.start()
    peak_kb = 0
    deadline = time.monotonic() + timeout  # bounded: a hang fails the test, not the suite
    while proc.poll() is None:
        if time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            pytest.fail(f"runner did not finish within {timeout:.0f}s")
        peak_kb = max(peak_kb, _vm_hwm_kb(proc.pid) or 0)
        time.sleep(0.02)
    for reader in readers:
        reader.join(timeout=10)
    assert peak_kb > 0, "the runner's memory could not be read"
    return Measured(proc.returncode, out.get("stdout", ""), out.get("stderr", ""), peak_kb / 1024)
