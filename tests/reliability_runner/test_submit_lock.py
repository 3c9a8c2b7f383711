"""Two ``runner submit --job-id X`` at once (issue 13): one wins, the other says in one line that
job X is being submitted (by which process, on which host) and exits with its own code; the lock
(a blob lease in Storage, so it holds across machines) never outlives its holder, whether that
one ends with Ctrl-C or is killed outright.

Real processes on the session's target; the pool has no node, so the first submit holds the job
for as long as the test needs, and nothing runs.
"""

from __future__ import annotations

import signal
import socket
from pathlib import Path

import pytest

from runner.errors import JobBusy
from runner.outputs import Outputs, load_file
from runner.storage import Storage
from runner.submit_lock import LEASE_SECONDS, Holder, hold, lock_blob
from tests.reliability_runner.conftest import Lines, cmd, run, task_ids


def _inputs(root: Path) -> Path:
    (root / "in").mkdir()
    for i in range(2):
        (root / "in" / f"f{i}.txt").write_text(f"lock test {i}\n")
    return root / "in"


def _holding(idle_pool: Path, inputs: Path, job_id: str, dest: Path) -> Lines:
    """A submit that holds the job: its tasks are in, and it waits on a pool with no node."""
    argv = cmd(idle_pool, "submit", str(inputs), "--job-id", job_id, "--dest", str(dest), "--pack", "none")
    proc = Lines(argv)
    proc.wait_for(lambda line: line.startswith("tasks:"), timeout=120)
    return proc


def test_a_second_submit_of_a_job_is_refused_and_the_lock_goes_with_its_holder(
    tmp_path: Path, idle_pool: Path
) -> None:
    inputs = _inputs(tmp_path)
    job_id = "rel-lock-two"
    first = _holding(idle_pool, inputs, job_id, tmp_path / "a")

    second = run(
        idle_pool, "submit", str(inputs), "--job-id", job_id, "--dest", str(tmp_path / "b"), timeout=60
    )
    assert second.returncode == JobBusy.exit_code == 17, second.stderr
    errors = [line for line in second.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, second.stderr
    assert f"job {job_id} is being submitted" in errors[0], errors[0]
    assert f"pid {first.proc.pid}" in errors[0] and socket.gethostname() in errors[0], errors[0]
    assert "tasks:" not in second.stderr and "uploading" not in second.stderr, second.stderr
    assert not (tmp_path / "b").exists()  # nothing half-written
    out = load_file(idle_pool)
    assert task_ids(out, job_id) == ["1", "2", "merge"]  # added once

    # Killed outright: on this host a dead holder's lease is broken at once (elsewhere it expires).
    first.proc.send_signal(signal.SIGKILL)
    first.finish(timeout=30)
    after_kill = _holding(idle_pool, inputs, job_id, tmp_path / "a")
    assert any(line.startswith("tasks: 0 added") for line in after_kill.seen), after_kill.seen

    # Ctrl-C releases the lock: the next submit of the job goes through.
    after_kill.interrupt()
    code, stderr, _ = after_kill.finish(timeout=30)
    assert code == 130, stderr
    assert not Storage(out).blob_exists(out.input_container, lock_blob(job_id))  # nothing left behind
    again = run(
        idle_pool, "submit", str(inputs), "--job-id", job_id, "--no-wait", "--dest", str(tmp_path / "a")
    )
    assert again.returncode == 0, again.stderr
    assert run(idle_pool, "clean", job_id).returncode == 0


def test_a_lock_held_from_another_host_is_not_broken_and_names_that_host(storage_outputs: Outputs) -> None:
    """Only a holder on this host can be seen dead; elsewhere its lease must expire by itself."""
    storage, container = Storage(storage_outputs), storage_outputs.input_container
    job_id = "rel-lock-elsewhere"
    other = Holder(pid=2**22 + 7, host="build-agent-7", command="retry", since="2026-12-01 09:00:00 UTC")
    lease = storage.try_lease(container, lock_blob(job_id), LEASE_SECONDS, other.to_bytes())
    assert lease is not None
    try:
        with pytest.raises(JobBusy) as busy:
            hold(storage, container, job_id.upper())  # Batch ids are case-insensitive
        assert f"job {job_id.upper()} is being retried" in str(busy.value)
        assert "pid 4194311 on build-agent-7" in str(busy.value)
    finally:
        storage.end_lease(container, lock_blob(job_id), lease)
    with hold(storage, container, job_id):  # released: free again
        assert storage.blob_exists(container, lock_blob(job_id))
    assert not storage.blob_exists(container, lock_blob(job_id))


def test_taking_a_free_lock_costs_three_requests_and_a_held_one_is_refused(storage_outputs: Outputs) -> None:
    """A new job's lock: the marker made, leased, written (who holds it): three requests, in a
    proxy's count. Held, another taker is refused and the holder's marker is left as it was."""
    from dataclasses import replace

    from tests.weather.faultproxy import FaultProxy, via

    job_id, container = "rel-lock-cost", storage_outputs.input_container
    with FaultProxy(storage_outputs.storage_blob_endpoint) as proxy:
        endpoint = via(storage_outputs.storage_blob_endpoint, proxy)
        storage = Storage(replace(storage_outputs, storage_blob_endpoint=endpoint))
        before = len(proxy.records)
        with hold(storage, container, job_id) as lock:
            taking = [r for r in proxy.records[before:] if lock_blob(job_id) in r.path]
            theirs = Holder.parse(storage.try_download_bytes(container, lock_blob(job_id)))
            assert storage.try_lease(container, lock_blob(job_id), LEASE_SECONDS, b"{}") is None
            assert Holder.parse(storage.try_download_bytes(container, lock_blob(job_id))) == theirs
        assert lock.job_id == job_id and theirs is not None and theirs.command == "submit"
    assert [r.method for r in taking] == ["PUT"] * 3, [(r.method, r.path, r.status) for r in taking]
    assert not Storage(storage_outputs).blob_exists(container, lock_blob(job_id))  # released
