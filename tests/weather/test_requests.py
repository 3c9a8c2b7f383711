"""What the runner asks of the services, counted by a proxy: the requests a user pays for.

* monitoring: one request per poll (task counts), however many tasks the job has;
  the task list is read once, to confirm the end (a small job: the last poll's list is
  that confirmation), and the results are collected from that list, not another;
* a new job that is watched is created as it stays while watched (``onAllTasksComplete``
  ``noaction``) and updated once, at its end;
* a submit whose every result is in the cache: the job is created and terminated,
  nothing else (no task list, no update of a job already ending, no look at the pool's
  image: no task runs on it);
* a failed task's stderr tail: its last 16 KiB (a ranged read), not the whole file;
* ``clean``: Blob Batch deletes of 256 blobs per request, not one request per blob.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest

from runner import manifest as mf
from runner import submit as submit_module
from runner.batch_types import TaskCounts
from runner.outputs import Outputs, write_file
from runner.progress import NullReporter
from runner.storage import Storage
from runner.submit import SubmitOptions, monitor, watch
from runner.targets import AuthMode, Session, Target, TargetKind
from runner.tasks import TaskSpec
from tests.e2e.test_submit import invoke, make_text
from tests.weather.faultproxy import FaultProxy, Record, via


def _session(tmp_path: Path, outputs: Outputs) -> Session:
    return Session(Target(TargetKind.FILE, outputs_file=tmp_path / "x.json"), outputs, AuthMode.SHAREDKEY)


def _manifest(job_id: str, n: int) -> mf.Manifest:
    tasks = tuple(
        mf.ManifestTask(str(i), f"f{i}", mf.input_blob(job_id, f"f{i}"), f"f{i}", 1) for i in range(1, n + 1)
    )
    return mf.Manifest(job_id, mf.now_iso(), 3, False, "true {input}", 0, tasks)


def _sleeping_job(
    tmp_path: Path, target_outputs: Outputs, proxy: FaultProxy, job_id: str, n: int, sleep: str
) -> Session:
    """A session whose Batch requests go through ``proxy``, and job ``job_id`` with ``n`` tasks
    that each sleep ``sleep`` seconds."""
    outputs = dataclasses.replace(
        target_outputs, batch_account_url=via(target_outputs.batch_account_url, proxy)
    )
    session = _session(tmp_path, outputs)
    session.batch.ensure_job(job_id, outputs.pool_id, uses_task_dependencies=False)
    specs = [TaskSpec(str(i), f"f{i}", f"/bin/sh -c 'sleep {sleep}'", (), ()) for i in range(1, n + 1)]
    session.batch.add_tasks(job_id, specs)
    return session


def _listings(records: list[Record], job_id: str) -> list[Record]:
    return [r for r in records if r.path.split("?")[0] == f"/jobs/{job_id}/tasks" and r.method == "GET"]


@pytest.mark.parametrize("by", ["counts", "list"])
def test_monitoring_is_one_request_per_poll(
    tmp_path: Path, target_outputs: Outputs, monkeypatch: pytest.MonkeyPatch, by: str
) -> None:
    """A job is polled with one request: Batch's task counts, or for a small job (at most
    ``LIST_POLL_MAX_TASKS`` tasks, patched here to 0 for the counts) its one-page task list."""
    if by == "counts":
        monkeypatch.setattr(submit_module, "LIST_POLL_MAX_TASKS", 0)
    job_id, n = f"w-one-request-{by}", 6
    with FaultProxy(target_outputs.batch_account_url) as proxy:
        session = _sleeping_job(tmp_path, target_outputs, proxy, job_id, n, "1")
        before = len(proxy.records)
        monitor(session, _manifest(job_id, n), SubmitOptions(timeout=timedelta(seconds=120)), NullReporter())
        during = proxy.records[before:]
    counts = [r for r in during if r.path.split("?")[0].endswith("/taskcounts")]
    listings = _listings(during, job_id)
    polls = counts if by == "counts" else listings
    others = [r for r in during if r not in counts and r not in listings]
    assert len(polls) >= 4, during  # the tasks take seconds: several polls
    if by == "counts":
        assert len(listings) <= 2, [r.path for r in listings]  # the end confirmed from the list
    else:
        assert not counts, [r.path for r in counts]
    # between tasks nothing may run for a moment: the pool and job are looked at then, never per task
    assert len(others) <= 3 * len(polls), [r.path for r in others]
    assert all("/tasks/" not in r.path for r in during)


class _PollCounter(NullReporter):
    """Counts the polls of a monitor: its progress sees each poll's counts once."""

    def __init__(self) -> None:
        self.polls = 0

    @contextmanager
    def tasks(self, total: int) -> Iterator[Callable[[TaskCounts], None]]:
        def seen(counts: TaskCounts) -> None:
            self.polls += 1

        yield seen


@pytest.mark.parametrize("by", ["counts", "list"])
def test_the_end_is_confirmed_and_collected_from_one_task_list(
    tmp_path: Path, target_outputs: Outputs, monkeypatch: pytest.MonkeyPatch, by: str
) -> None:
    """Watching a job to its end and collecting it reads its task list once past the polls:
    a job polled by its counts lists its tasks once, to confirm the end, and that list is
    what the results are made of; a small job polled by its list lists nothing more (the
    last poll's list confirms the end and is collected)."""
    if by == "counts":
        monkeypatch.setattr(submit_module, "LIST_POLL_MAX_TASKS", 0)
    job_id, n = f"w-end-once-{by}", 3
    with FaultProxy(target_outputs.batch_account_url) as proxy:
        session = _sleeping_job(tmp_path, target_outputs, proxy, job_id, n, "0.5")
        reporter = _PollCounter()
        before = len(proxy.records)
        opts = SubmitOptions(timeout=timedelta(seconds=120), dest=tmp_path / "r")
        done = watch(session, _manifest(job_id, n), opts, reporter)
        listings = _listings(proxy.records[before:], job_id)
    assert [f.outcome.value for f in done.files] == ["succeeded"] * n  # made of the list read
    assert reporter.polls >= 2
    assert len(listings) == (1 if by == "counts" else reporter.polls), [r.path for r in listings]


def test_a_submit_all_from_the_cache_creates_and_ends_the_job_and_no_more(
    tmp_path: Path, target_outputs: Outputs
) -> None:
    """Every result from the cache: Batch sees the job created and terminated; nothing lists
    its tasks (it has none) or updates it after it was told to end."""
    corpus = tmp_path / "in"
    corpus.mkdir()
    (corpus / "a.txt").write_text(f"{tmp_path.name}\n{make_text(3, 80)}", encoding="utf-8")
    with FaultProxy(target_outputs.batch_account_url) as proxy:
        outputs_file = tmp_path / "outputs.json"
        write_file(
            outputs_file,
            dataclasses.replace(
                target_outputs, batch_account_url=via(target_outputs.batch_account_url, proxy)
            ),
        )
        common = ["submit", str(corpus), "--cache", "--dest"]
        first = invoke(outputs_file, *common, str(tmp_path / "one"), "--job-id", "w-all-cached-1")
        assert first.exit_code == 0, first.stderr
        before = len(proxy.records)
        # a job that runs tasks: the pool's image is checked (runner.image_eol), once
        assert sum("/supportedimages" in r.path for r in proxy.records) == 1
        # created watched (onAllTasksComplete noaction), it is updated once: to complete at the end
        updates = [r for r in proxy.records if r.method == "PATCH" and "/jobs/w-all-cached-1?" in r.path]
        assert len(updates) == 1, updates
        again = invoke(outputs_file, *common, str(tmp_path / "two"), "--job-id", "w-all-cached-2")
        during = proxy.records[before:]
    assert again.exit_code == 0, again.stderr
    assert "no task to run, every result from the cache" in again.stderr
    on_job = [(r.method, r.path.split("?")[0]) for r in during if "/jobs" in r.path]
    assert ("POST", "/jobs") in on_job and ("POST", "/jobs/w-all-cached-2/terminate") in on_job
    assert not _listings(during, "w-all-cached-2"), on_job
    assert not [r for r in during if r.method in ("PATCH", "PUT")], on_job
    # no task runs on the pool: its image does not matter to this job
    pool = f"/pools/{target_outputs.pool_id}"
    assert [r.method for r in during if r.path.startswith((pool, "/supportedimages"))] == ["HEAD"]


def test_a_failure_tail_reads_only_the_last_16_kib(tmp_path: Path, target_outputs: Outputs) -> None:
    job_id = "w-ranged-tail"
    script = 'head -c 1000000 /dev/zero | tr "\\\\000" x >&2; echo >&2; echo the last line >&2; exit 2'
    with FaultProxy(target_outputs.batch_account_url) as proxy:
        outputs = dataclasses.replace(
            target_outputs, batch_account_url=via(target_outputs.batch_account_url, proxy)
        )
        session = _session(tmp_path, outputs)
        session.batch.ensure_job(job_id, outputs.pool_id, uses_task_dependencies=False)
        session.batch.add_tasks(job_id, [TaskSpec("1", "big", f"/bin/sh -c '{script}'", (), ())])
        monitor(session, _manifest(job_id, 1), SubmitOptions(timeout=timedelta(seconds=120)), NullReporter())
        before = len(proxy.records)
        [failure] = session.batch.failed_tasks(job_id)
        reads = [r for r in proxy.records[before:] if r.path.split("?")[0].endswith("/files/stderr.txt")]
    assert failure.exit_code == 2 and failure.stderr_tail.endswith("the last line")
    assert reads and sum(r.size for r in reads) <= 16 * 1024, [(r.method, r.size) for r in reads]


def test_clean_deletes_blobs_256_per_request(tmp_path: Path, storage_outputs: Outputs) -> None:
    prefix = "w-batch-delete/"
    names = [f"{prefix}inputs/f{i:03}.txt" for i in range(300)]
    with FaultProxy(storage_outputs.storage_blob_endpoint) as proxy:
        storage = Storage(
            dataclasses.replace(
                storage_outputs, storage_blob_endpoint=via(storage_outputs.storage_blob_endpoint, proxy)
            )
        )
        for name in names[:5]:
            storage.upload_bytes(storage_outputs.input_container, name, b"x")
        direct = Storage(storage_outputs)
        for name in names[5:]:
            direct.upload_bytes(storage_outputs.input_container, name, b"x")
        before = len(proxy.records)
        assert storage.delete_prefix(storage_outputs.input_container, prefix) == 300
        during = proxy.records[before:]
    batches = [r for r in during if r.method == "POST" and "comp=batch" in r.path]
    assert len(batches) == 2 and not [r for r in during if r.method == "DELETE"]
    assert direct.list_blobs(storage_outputs.input_container, prefix) == []
