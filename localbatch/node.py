"""One execution of a task (or start task) on a simulated node, as a real process.

Directory layout under ``DATA_DIR/nodes/<node-id>/`` follows Batch on Linux::

    startup/            start task: stdout.txt, stderr.txt, wd/
    shared/             AZ_BATCH_NODE_SHARED_DIR
    workitems/<job>/job-1/<task>/   stdout.txt, stderr.txt, wd/

The command line is split with :func:`shlex.split` and executed without a
shell, in its own process group (so ending it ends its children), with the
``AZ_BATCH_*`` variables, the task's environment settings and only
PATH/HOME/LANG-like variables of the server (never ``LOCALBATCH_*``).

An execution can be ended at any point (:meth:`Execution.end`): its process
group is killed, and file staging in progress is abandoned at once (files not
started are never transferred, a walk of the task directory stops, a transfer
already on the wire finishes in its daemon worker thread, bounded by the
storage timeouts, without holding the task or the service).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import shlex
import shutil
import signal
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

from localbatch import storage, transfer
from localbatch.models import TaskSpec, utcnow
from localbatch.transfer import TransferCancelled, TransferError

log = logging.getLogger(__name__)
T = TypeVar("T")

MAX_TIMER_SECONDS = 10 * 365 * 24 * 3600.0
_INHERITED_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "USER", "LOGNAME", "SHELL")


def node_root(data_dir: Path, node_id: str) -> Path:
    return data_dir / "nodes" / node_id


def task_dir(root: Path, job_id: str, task_id: str) -> Path:
    return root / "workitems" / job_id / "job-1" / task_id


def base_environment() -> dict[str, str]:
    """The server environment a task may see (no LOCALBATCH_* keys, nothing secret)."""
    return {k: v for k, v in os.environ.items() if k in _INHERITED_ENV}


def failure_info(code: str, message: str, category: str = "usererror") -> dict[str, Any]:
    return {
        "category": category,
        "code": code,
        "message": message,
        "details": [{"name": "Message", "value": message}],
    }


class _Ended(Exception):
    """The execution was ended while it staged files."""


def _consume(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled():
        fut.exception()


@dataclass
class Outcome:
    """How an execution ended."""

    start_time: datetime
    end_time: datetime
    exit_code: int | None
    failure: dict[str, Any] | None
    ended_by: str | None = None  # set when the execution was ended from outside
    retryable: bool = False  # a failure of the process itself (non-zero exit)

    @property
    def succeeded(self) -> bool:
        return self.failure is None and self.exit_code == 0


@dataclass
class Execution:
    """A task process that can be ended from outside (terminate, job terminate, shutdown)."""

    spec: TaskSpec
    directory: Path  # holds stdout.txt, stderr.txt and wd/
    env: dict[str, str]
    auto_storage: storage.AutoStorage | None
    ended_by: str | None = None
    fresh: bool = False  # start from an empty task directory (a requeued task: its old node is "gone")
    on_spawn: Callable[[int], None] | None = None
    # Containers (localbatch.containers): the failure info of a task that needs a container engine;
    # set, the execution runs no process and fails with it, as Batch fails a container it cannot start.
    refusal: dict[str, Any] | None = None
    _proc: asyncio.subprocess.Process | None = field(default=None, repr=False)
    _phases: dict[str, float] = field(default_factory=dict, repr=False)
    _end_event: asyncio.Event = field(default_factory=asyncio.Event, repr=False)
    _cancel: threading.Event = field(default_factory=threading.Event, repr=False)

    def end(self, reason: str) -> None:
        """End the execution (idempotent); ``reason`` is recorded in the outcome. Loop thread only."""
        if self.ended_by is None:
            self.ended_by = reason
        self._cancel.set()
        self._end_event.set()
        proc = self._proc
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)

    async def run(self) -> Outcome:
        """Stage files in, run the process, stage files out; never raises for task failures."""
        t0 = time.perf_counter()
        outcome = await self._run()
        log.debug(
            "%s: %s in %.1f ms (%s)",
            self.directory.name,
            "succeeded" if outcome.succeeded else "failed",
            (time.perf_counter() - t0) * 1000,
            ", ".join(f"{k} {v:.1f} ms" for k, v in self._phases.items()),
        )
        return outcome

    async def _run(self) -> Outcome:
        start = utcnow()
        wd = self.directory / "wd"
        try:
            # File system calls cost milliseconds on a busy disk: off the loop, which serves every node.
            with self._phase("prepare"):
                await self._in_pool(functools.partial(_prepare_directory, self.directory, wd, self.fresh))
        except _Ended:
            return self._ended(start, None)
        if self.refusal is not None:
            return Outcome(start, utcnow(), None, self.refusal)
        env = {**self.env, "AZ_BATCH_TASK_WORKING_DIR": str(wd), "AZ_BATCH_TASK_DIR": str(self.directory)}
        for name, value in self.spec.environment:
            env[name] = value
        if self.spec.resource_files:
            try:
                with self._phase("download"):
                    await self._download(wd)
            except TransferError as exc:
                return Outcome(start, utcnow(), None, failure_info(exc.code, exc.message))
            except _Ended:
                return self._ended(start, None)
        if self.ended_by:
            return self._ended(start, None)
        try:
            argv = shlex.split(self.spec.command_line)
        except ValueError as exc:
            return Outcome(start, utcnow(), None, failure_info("InvalidCommandLine", str(exc)))
        if not argv:
            return Outcome(start, utcnow(), None, failure_info("InvalidCommandLine", "empty command line"))
        with self._phase("process"):
            exit_code = await self._spawn_and_wait(argv, wd, env)
        if isinstance(exit_code, Outcome):
            return exit_code
        end_reason = self.ended_by
        if end_reason == "MaxWallClockTimeExpiry":
            # Ended by its own constraint, not by a request: its outputs still go up (Batch
            # uploads taskFailure/taskCompletion files); a terminate from now on ends that too.
            self.ended_by = None
            self._cancel.clear()
            self._end_event.clear()
            outcome = Outcome(
                start,
                utcnow(),
                exit_code,
                failure_info(
                    "MaxWallClockTimeExpiry",
                    "The task ran longer than the maximum time allowed by its constraints",
                ),
            )
        elif end_reason:
            return self._ended(start, exit_code)
        elif exit_code != 0:
            outcome = Outcome(
                start,
                utcnow(),
                exit_code,
                failure_info("FailureExitCode", "The task exited with an exit code representing a failure"),
                retryable=True,
            )
        else:
            outcome = Outcome(start, utcnow(), exit_code, None)
        if self.spec.output_files:
            try:
                with self._phase("upload"):
                    await self._upload(outcome.succeeded, wd)
            except TransferError as exc:
                outcome = Outcome(start, utcnow(), exit_code, failure_info(exc.code, exc.message))
            except _Ended:
                return self._ended(start, exit_code)
        outcome.end_time = utcnow()
        return outcome

    async def _download(self, wd: Path) -> None:
        files = self.spec.resource_files
        plan = functools.partial(transfer.plan_downloads, files, wd, self.auto_storage)
        # Planning lists containers (network): on a worker then; for httpUrl files only a few
        # path checks, done here to save two thread hops per task.
        jobs, modes = await self._in_pool(plan) if transfer.lists_containers(files) else plan()
        await self._run_jobs(jobs)
        if any(mode is not None for _, mode in modes):
            await self._in_pool(functools.partial(transfer.apply_modes, modes))

    async def _upload(self, succeeded: bool, wd: Path) -> None:
        outputs = self.spec.output_files
        plan = functools.partial(transfer.plan_uploads, outputs, succeeded, wd, self.directory, self._cancel)
        # Wildcards walk the task directory (unbounded): on a worker; static paths are a few lstat calls.
        await self._run_jobs(await self._in_pool(plan) if transfer.walks(outputs) else plan())

    async def _run_jobs(self, jobs: list[transfer.Job]) -> None:
        """Run transfer jobs concurrently on the shared pool; raise the first failure (or :class:`_Ended`)."""
        if not jobs:
            return
        futures = [transfer.POOL.submit(job) for job in jobs]
        try:
            await self._unless_ended(asyncio.gather(*(asyncio.wrap_future(f) for f in futures)))
        finally:
            for fut in futures:
                fut.cancel()  # those not started yet never run

    async def _in_pool(self, fn: Callable[[], T]) -> T:
        try:
            return await self._unless_ended(asyncio.wrap_future(transfer.POOL.submit(fn)))
        except TransferCancelled:
            raise _Ended() from None

    async def _unless_ended(self, work: Awaitable[T]) -> T:
        """Await ``work``; raise :class:`_Ended` as soon as the execution is ended (``work`` is abandoned)."""
        fut = asyncio.ensure_future(work)
        ended = asyncio.ensure_future(self._end_event.wait())
        try:
            await asyncio.wait({fut, ended}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            ended.cancel()
            if not fut.done():
                fut.cancel()
                self._cancel.set()
                # An abandoned gather would log its children's late errors: consume them.
                fut.add_done_callback(_consume)
        if not fut.done() or fut.cancelled():
            raise _Ended()
        return fut.result()

    @contextlib.contextmanager
    def _phase(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self._phases[name] = (time.perf_counter() - t0) * 1000

    def _ended(self, start: datetime, exit_code: int | None) -> Outcome:
        reason = self.ended_by or "TaskEnded"
        return Outcome(
            start,
            utcnow(),
            exit_code,
            failure_info("TaskEnded", "The task was ended: " + reason),
            ended_by=reason,
        )

    async def _spawn_and_wait(self, argv: list[str], wd: Path, env: dict[str, str]) -> int | Outcome:
        start = utcnow()
        try:
            out, err = await self._in_pool(functools.partial(_open_logs, self.directory))
        except _Ended:
            return self._ended(start, None)
        with out, err:
            try:
                self._proc = await asyncio.create_subprocess_exec(
                    *argv,
                    cwd=str(wd),
                    env=env,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=out,
                    stderr=err,
                    start_new_session=True,
                )
            except OSError as exc:
                err.write(f"localbatch: cannot start {argv[0]!r}: {exc.strerror}\n".encode())
                return Outcome(
                    start,
                    utcnow(),
                    127,
                    failure_info("FailureExitCode", f"The program {argv[0]!r} could not be started"),
                    retryable=True,
                )
        proc = self._proc
        if self.on_spawn is not None:
            self.on_spawn(proc.pid)
        if self.ended_by:
            self.end(self.ended_by)
        timeout = None
        if self.spec.max_wall_clock is not None:
            timeout = min(self.spec.max_wall_clock.total_seconds(), MAX_TIMER_SECONDS)
        try:
            await asyncio.wait_for(proc.wait(), timeout=timeout)
        except asyncio.TimeoutError:
            self.end("MaxWallClockTimeExpiry")
            await proc.wait()
        except asyncio.CancelledError:
            self.end("ServiceShutdown")
            raise
        code = proc.returncode if proc.returncode is not None else -1
        # A process killed by a signal reports 128 + signal, as a shell would.
        return 128 - code if code < 0 else code


def _prepare_directory(directory: Path, wd: Path, fresh: bool) -> None:
    if fresh:
        shutil.rmtree(directory, ignore_errors=True)
    wd.mkdir(parents=True, exist_ok=True)


def _open_logs(directory: Path) -> tuple[BinaryIO, BinaryIO]:
    out = open(directory / "stdout.txt", "wb")  # noqa: SIM115 - closed by the caller
    try:
        return out, open(directory / "stderr.txt", "wb")
    except OSError:
        out.close()
        raise


def kill_orphaned_group(pgid: int, task_env_marker: str) -> bool:
    """After a crash: end the process group a previous run started for a task, if it still runs.

    A group is ended only when one of its processes carries ``task_env_marker``
    (e.g. ``AZ_BATCH_TASK_DIR=/...``) in its environment, so a reused pid never
    takes an unrelated process down.
    """
    marker = task_env_marker.encode()
    proc_root = Path("/proc")
    for entry in proc_root.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[2]) != pgid:
                continue
            environ = (entry / "environ").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        if marker in environ.split(b"\0"):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)
                log.info("ended process group %d left running by a previous run", pgid)
            return True
    return False
