"""Azure Batch for the runner: the only module that imports ``azure.batch``.

Contracts:

* :class:`Batch` wraps one ``BatchClient`` (shared key via
  ``AzureNamedKeyCredential``, or a ``TokenCredential`` for Entra ID). The
  SDK's own retry policy is configured (429/5xx and connection errors, with
  backoff); nothing here loops on errors itself.
* Functions return our frozen dataclasses, never SDK models.
* Every SDK error leaves as a :class:`~runner.errors.RunnerError` chosen by
  status code (401/403 wrong key, 404 pool/job/task not found, connection
  errors unreachable). Messages never include a URL, a header or a token.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from enum import Enum
from typing import Any
from urllib.parse import urlparse

from azure.batch import BatchClient
from azure.batch import models as bm
from azure.core.credentials import AzureNamedKeyCredential, TokenCredential
from azure.core.exceptions import (
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)

from runner.batch_types import (
    START_TASK_STDERR,
    STDERR_FILE,
    ImageSupport,
    JobInfo,
    NodeInfo,
    PoolHealth,
    PoolInfo,
    PoolStatus,
    ResizeError,
    TaskCounts,
    TaskFailure,
    TaskInfo,
    TaskState,
)
from runner.errors import AuthError, NotFoundError, RemoteError, RunnerError, UnreachableError
from runner.outputs import Outputs
from runner.pool_spec import PoolSpec
from runner.sdk_errors import translated
from runner.tasks import TaskSpec

log = logging.getLogger(__name__)


#: Tasks handed to the SDK's create_tasks per call (it sends them in requests of <= 100).
ADD_TASKS_SLICE = 2000
#: ... and at most this many resource + output files per call: a merge task carries
#: hundreds, and so many per request would pass Batch's 1 MB limit (the SDK would
#: then halve its requests until they fit, after sending the oversized ones).
ADD_TASKS_FILES_PER_SLICE = 2000

#: azure-core's RetryPolicy for every Batch request: 429 and 503 with ``Retry-After`` (waited
#: as asked), 408/500/502/503/504 (POST and PATCH too on 500/503/504: adding tasks is
#: idempotent, ``TaskExists`` counts as added), and connection errors, backing off
#: 0, 0.8, 1.6, 3.2 s. The only retry loop: nothing in the runner retries on its own.
RETRY: dict[str, Any] = {"retry_total": 4, "retry_connect": 2, "retry_status": 4, "retry_backoff_factor": 0.4}

_TAIL_BYTES = 16 * 1024


_BAD_NODE_STATES = {"starttaskfailed", "unusable"}


@contextmanager
def translate_errors(what: str, endpoint: str) -> Iterator[None]:
    """Turn SDK errors into RunnerErrors (see :mod:`runner.sdk_errors`); ``what`` says what we were doing."""
    with translated("Batch", endpoint, what, from_http):
        yield


def from_http(exc: HttpResponseError, what: str) -> RunnerError:
    status = exc.status_code or 0
    code = getattr(exc.error, "code", None) if exc.error is not None else None
    code = code or getattr(exc, "error_code", None) or ""
    if status in (401, 403):
        return AuthError(
            f"Batch rejected the credentials while {what} ({status} {code or 'AuthenticationFailed'})",
            hint="check batchAccountKey in the outputs, or your role assignments with --auth entra",
        )
    if status == 404:
        if code == "PoolNotFound":
            return NotFoundError(
                f"the pool does not exist ({what})", hint="run `pulumi up` or `runner local up`"
            )
        if code == "JobNotFound":
            return NotFoundError(f"the job does not exist ({what})")
        return NotFoundError(f"not found while {what} ({code or 'NotFound'})")
    if status == 409 and code == "JobCompleted":
        return RemoteError(
            f"the job is completed (it finished or was cancelled) while {what}",
            hint="a completed job takes no new tasks: submit under a new --job-id",
        )
    if status in (429, 500, 503):
        return RemoteError(
            f"Batch error while {what}: {status} {code}".rstrip(),
            hint="the service is busy or throttling and still was after 4 retries: try again later",
        )
    return RemoteError(f"Batch error while {what}: {status} {code}".rstrip())


class Batch:
    """Batch data-plane operations the runner needs."""

    def __init__(
        self,
        outputs: Outputs,
        *,
        credential: TokenCredential | None = None,
        ca_bundle: str | None = None,
    ) -> None:
        """``ca_bundle``: the CA file that verifies this endpoint's TLS (the local target's only)."""
        self.endpoint = outputs.batch_account_url.rstrip("/")
        self._host = urlparse(self.endpoint).netloc
        cred: AzureNamedKeyCredential | TokenCredential
        if credential is not None:
            cred = credential
        elif outputs.batch_account_key:
            cred = AzureNamedKeyCredential(outputs.batch_account_name, outputs.batch_account_key)
        else:
            raise AuthError("no Batch key in the outputs", hint="use --auth entra or add batchAccountKey")
        # read_timeout: a service that stops answering mid-request is retried after 60 s, not 300.
        self._client = BatchClient(
            self.endpoint,
            cred,
            **RETRY,
            connection_timeout=10,
            read_timeout=60,
            **({"connection_verify": ca_bundle} if ca_bundle else {}),
        )

    # -- pools ------------------------------------------------------------------------

    def create_pool(self, spec: PoolSpec) -> bool:
        """Create the pool from the shared definition; ``False`` if it already exists."""
        start = spec.start_task
        pool = bm.BatchPoolCreateOptions(
            id=spec.pool_id,
            vm_size=spec.vm_size,
            virtual_machine_configuration=bm.VirtualMachineConfiguration(
                image_reference=bm.BatchVmImageReference(
                    publisher=spec.image.publisher,
                    offer=spec.image.offer,
                    sku=spec.image.sku,
                    version=spec.image.version,
                ),
                node_agent_sku_id=spec.image.node_agent_sku_id,
            ),
            target_dedicated_nodes=None if spec.autoscale else spec.dedicated_nodes,
            target_low_priority_nodes=None if spec.autoscale else spec.spot_nodes,
            enable_auto_scale=bool(spec.autoscale),
            auto_scale_formula=spec.autoscale.formula(spec.task_slots_per_node) if spec.autoscale else None,
            auto_scale_evaluation_interval=(
                timedelta(minutes=spec.autoscale.evaluation_interval_minutes) if spec.autoscale else None
            ),
            task_slots_per_node=spec.task_slots_per_node,
            start_task=bm.BatchStartTask(
                command_line=start.command_line,
                wait_for_success=start.wait_for_success,
                max_task_retry_count=start.max_task_retry_count,
                user_identity=bm.UserIdentity(
                    auto_user=bm.AutoUserSpecification(
                        scope="pool", elevation_level="admin" if start.run_elevated else "nonadmin"
                    )
                ),
            ),
            metadata=[bm.BatchMetadataItem(name=k, value=v) for k, v in sorted(spec.tags.items())],
        )
        with translate_errors(f"creating pool {spec.pool_id}", self._host):
            try:
                self._client.create_pool(pool)
            except ResourceExistsError:
                return False
        log.info("created pool %s", spec.pool_id)
        return True

    def pool_exists(self, pool_id: str) -> bool:
        with translate_errors(f"checking pool {pool_id}", self._host):
            try:
                return bool(self._client.pool_exists(pool_id))
            except ResourceNotFoundError:  # the SDK's exception policy turns the 404 into this
                return False

    def pool_status(self, pool_id: str) -> PoolStatus:
        """The pool's allocation state, node counts and resize errors (one GET)."""
        with translate_errors(f"getting pool {pool_id}", self._host):
            pool = self._client.get_pool(pool_id)
        return PoolStatus(
            id=pool.id or pool_id,
            allocation_state=_value(pool.allocation_state or "steady").lower(),
            allocation_since=pool.allocation_state_transition_time,
            current_nodes=(pool.current_dedicated_nodes or 0) + (pool.current_low_priority_nodes or 0),
            target_nodes=(pool.target_dedicated_nodes or 0) + (pool.target_low_priority_nodes or 0),
            autoscale=bool(pool.enable_auto_scale),
            autoscale_interval=pool.auto_scale_evaluation_interval,
            resize_errors=tuple(
                ResizeError(e.code or "ResizeError", e.message or "") for e in pool.resize_errors or []
            ),
        )

    def pool_health(self, pool_id: str) -> PoolHealth:
        """Nodes of the pool, and those whose start task failed (or that are unusable)."""
        with translate_errors(f"listing the nodes of pool {pool_id}", self._host):
            nodes = []
            for node in self._client.list_nodes(pool_id):
                info = node.start_task_info
                failure = None
                if info is not None and info.failure_info is not None:
                    failure = f"{info.failure_info.code}: {info.failure_info.message or ''}".strip(": ")
                nodes.append(
                    NodeInfo(
                        id=node.id,
                        state=_value(node.state),
                        start_task_exit_code=info.exit_code if info is not None else None,
                        start_task_failure=failure,
                        allocation_time=node.allocation_time,
                        state_transition_time=node.state_transition_time,
                        running_tasks=node.running_tasks_count,
                        total_tasks_run=node.total_tasks_run,
                    )
                )
        failed = [n for n in nodes if n.state.lower() in _BAD_NODE_STATES]
        return PoolHealth(tuple(nodes), tuple(failed))

    def image_support(self, pool_id: str) -> ImageSupport | None:
        """Whether Batch still supports the pool's image and node agent SKU, and until when
        (``GET /supportedimages`` filtered by the SKU); ``None`` for a pool without a VM image."""
        with translate_errors(f"getting pool {pool_id}", self._host):
            vmc = self._client.get_pool(
                pool_id, select=["virtualMachineConfiguration"]
            ).virtual_machine_configuration
        if vmc is None or vmc.image_reference is None:
            return None
        ref, sku = vmc.image_reference, vmc.node_agent_sku_id
        key = tuple((v or "").lower() for v in (ref.publisher, ref.offer, ref.sku))
        label = ":".join(v or "" for v in (ref.publisher, ref.offer, ref.sku))
        with translate_errors("listing Batch's supported images", self._host):
            for img in self._client.list_supported_images(filter=f"nodeAgentSKUId eq '{sku}'"):
                r = img.image_reference
                if tuple((v or "").lower() for v in (r.publisher, r.offer, r.sku)) == key:
                    return ImageSupport(label, sku, True, img.batch_support_end_of_life)
        return ImageSupport(label, sku, False)

    def pool_identities(self, pool_id: str) -> tuple[str, ...]:
        """The resource ids of the pool's user-assigned identities (``identity``, set on Azure by ARM)."""
        with translate_errors(f"getting pool {pool_id}", self._host):
            pool = self._client.get_pool(pool_id, select=["id", "identity"])
        identities = pool.identity.user_assigned_identities if pool.identity is not None else None
        return tuple(i.resource_id for i in identities or [] if i.resource_id)

    def get_pool(self, pool_id: str) -> PoolInfo:
        """The pool's state, VM size, slots per node and node counts now."""
        with translate_errors(f"getting pool {pool_id}", self._host):
            pool = self._client.get_pool(pool_id)
        return PoolInfo(
            id=pool.id,
            state=_value(pool.state) if pool.state is not None else "unknown",
            allocation_state=_value(pool.allocation_state) if pool.allocation_state is not None else None,
            vm_size=pool.vm_size,
            task_slots_per_node=pool.task_slots_per_node or 1,
            current_dedicated=pool.current_dedicated_nodes or 0,
            current_low_priority=pool.current_low_priority_nodes or 0,
            target_dedicated=pool.target_dedicated_nodes,
            target_low_priority=pool.target_low_priority_nodes,
            auto_scale=bool(pool.enable_auto_scale),
        )

    def node_start_task_stderr(self, pool_id: str, node_id: str, lines: int = 10) -> str:
        """Tail of the node's ``startup/stderr.txt`` ('' when it cannot be read)."""
        with translate_errors(f"reading the start task's stderr on {node_id}", self._host):
            try:
                data = b"".join(self._client.download_node_file(pool_id, node_id, START_TASK_STDERR))
            except (ResourceNotFoundError, ResourceExistsError):  # 409: e.g. NodeStateUnusable
                return ""
        return _tail(data, lines)

    # -- jobs -------------------------------------------------------------------------

    def ensure_job(self, job_id: str, pool_id: str, *, uses_task_dependencies: bool) -> bool:
        """Create the job, with ``onAllTasksComplete: noAction`` (it stays active when its tasks
        are done: :meth:`complete_when_tasks_done`); ``False`` when it already exists (it is
        reused as it is: resume)."""
        job = bm.BatchJobCreateOptions(
            id=job_id,
            pool_info=bm.BatchPoolInfo(pool_id=pool_id),
            uses_task_dependencies=uses_task_dependencies,
            display_name=f"runner {job_id}",
            all_tasks_complete_mode="noaction",
        )
        with translate_errors(f"creating job {job_id}", self._host):
            try:
                self._client.create_job(job)
            except ResourceExistsError:
                log.info("job %s exists: reusing it", job_id)
                return False
        log.info("created job %s on pool %s", job_id, pool_id)
        return True

    def get_job(self, job_id: str) -> JobInfo:
        with translate_errors(f"getting job {job_id}", self._host):
            job = self._client.get_job(job_id)
        return _job_info(job)

    def job_exists(self, job_id: str) -> bool:
        with translate_errors(f"getting job {job_id}", self._host):
            try:
                self._client.get_job(job_id, select=["id"])
            except ResourceNotFoundError:
                return False
        return True

    def list_jobs(self) -> list[JobInfo]:
        with translate_errors("listing jobs", self._host):
            return [_job_info(j) for j in self._client.list_jobs()]

    def terminate_job(self, job_id: str, *, reason: str = "UserTerminate", wait: bool = True) -> None:
        """Terminate the job (``reason``: its terminateReason); ``wait`` until it is completed."""
        # 409 JobCompleted / JobTerminating: already done.
        with (
            translate_errors(f"terminating job {job_id}", self._host),
            contextlib.suppress(ResourceExistsError),
        ):
            # The SDK needs an options body here, or it fails to build the request itself.
            options = bm._models.BatchJobTerminateOptions(termination_reason=reason)
            poller = self._client.begin_terminate_job(job_id, options, polling_interval=1)
            if wait:
                poller.result()

    def delete_job(self, job_id: str) -> bool:
        """Delete the job (waits until gone); ``False`` if it did not exist."""
        with translate_errors(f"deleting job {job_id}", self._host):
            try:
                self._client.begin_delete_job(job_id, polling_interval=1).result()
            except ResourceNotFoundError:
                return False
        return True

    # -- tasks ------------------------------------------------------------------------

    def existing_task_ids(self, job_id: str) -> set[str]:
        with translate_errors(f"listing the tasks of job {job_id}", self._host):
            return {t.id for t in self._client.list_tasks(job_id, select=["id"])}

    def add_tasks(
        self,
        job_id: str,
        specs: list[TaskSpec],
        *,
        max_concurrency: int = 8,
        slice_size: int = ADD_TASKS_SLICE,
    ) -> int:
        """Add the tasks that do not exist yet; returns how many were added.

        The SDK's ``create_tasks`` chunks by 100, splits a chunk on
        ``RequestBodyTooLarge`` and treats ``TaskExists`` as success. We hand it
        ``slice_size`` tasks at a time so that only that many SDK models exist
        at once: memory stays flat however many tasks a job has.
        """
        existing = self.existing_task_ids(job_id)
        missing = [s for s in specs if s.id not in existing]
        for part in _slices(missing, slice_size, ADD_TASKS_FILES_PER_SLICE):
            self._create_tasks(job_id, part, max_concurrency)
        return len(missing)

    def _create_tasks(self, job_id: str, specs: list[TaskSpec], max_concurrency: int) -> None:
        models = [_task_model(s) for s in specs]
        with translate_errors(f"adding tasks to job {job_id}", self._host):
            try:
                self._client.create_tasks(job_id, models, max_concurrency=max_concurrency)
            except bm.CreateTasksError as exc:
                if exc.errors:
                    first = exc.errors[0]
                    if isinstance(first, HttpResponseError):
                        raise from_http(first, f"adding tasks to job {job_id}") from None
                    if isinstance(first, (ServiceRequestError, ServiceResponseError)):
                        raise UnreachableError(
                            f"Batch endpoint {self._host} is unreachable while adding tasks"
                        ) from None
                    raise RemoteError(
                        f"adding tasks to job {job_id} failed: {type(first).__name__}"
                    ) from None
                failed = list(exc.failure_tasks)  # a deque in the SDK: no slicing
                codes = sorted({(r.error.code if r.error else "?") for r in failed})
                ids = ", ".join(r.task_id for r in failed[:5])
                raise RemoteError(
                    f"Batch refused {len(failed)} task(s) ({ids}): {', '.join(codes)}"
                ) from None

    def complete_when_tasks_done(self, job_id: str, *, complete: bool = True, quick: bool = False) -> None:
        """Set ``onAllTasksComplete``: ``terminateJob`` (``complete``), or ``noAction``.

        With ``terminateJob`` the job completes with its last task and leaves the
        account's active-job quota, but a completed job takes no new tasks and none
        of its tasks can be reactivated. ``noAction`` keeps it active (a runner that
        watches it decides at the end: see docs/architecture.md, "Job life cycle").
        Already completed (409 ``JobCompleted``) is fine: a resumed job that had finished.
        ``quick``: one attempt with short timeouts (on the way out, e.g. after Ctrl-C).
        """
        mode = "terminatejob" if complete else "noaction"
        fast: dict[str, Any] = {"retry_total": 0, "connection_timeout": 2, "read_timeout": 3} if quick else {}
        with (
            translate_errors(f"updating job {job_id}", self._host),
            contextlib.suppress(ResourceExistsError),
        ):
            self._client.update_job(job_id, bm.BatchJobUpdateOptions(all_tasks_complete_mode=mode), **fast)

    def delete_task(self, job_id: str, task_id: str) -> None:
        """Batch's delete task (one already gone is fine): its id can be added again."""
        with (
            translate_errors(f"deleting task {task_id} of job {job_id}", self._host),
            contextlib.suppress(ResourceNotFoundError),
        ):
            self._client.delete_task(job_id, task_id)

    def reactivate_task(self, job_id: str, task_id: str) -> None:
        """Batch's reactivate: a failed task runs again (its retry count starts over).

        A job that is not active (409 ``JobCompleted``) is a :class:`RemoteError` with
        what to do; a task that did not fail (409) is left as it is.
        """
        with translate_errors(f"reactivating task {task_id} of job {job_id}", self._host):
            try:
                self._client.reactivate_task(job_id, task_id)
            except ResourceExistsError as exc:
                if getattr(exc.error, "code", None) == "JobCompleted":
                    raise
                log.info("task %s of job %s was not reactivated: %s", task_id, job_id, exc.error)

    def task_counts(self, job_id: str) -> TaskCounts:
        with translate_errors(f"getting the task counts of job {job_id}", self._host):
            result = self._client.get_job_task_counts(job_id)
        c = result.task_counts
        return TaskCounts(c.active, c.running, c.completed, c.succeeded, c.failed)

    def list_tasks(self, job_id: str, *, only_failed: bool = False) -> list[TaskInfo]:
        flt = "executionInfo/result eq 'failure'" if only_failed else None
        with translate_errors(f"listing the tasks of job {job_id}", self._host):
            return [
                _task_info(t)
                for t in self._client.list_tasks(
                    job_id,
                    filter=flt,
                    select=["id", "displayName", "state", "creationTime", "executionInfo", "nodeInfo"],
                )
            ]

    def get_task(self, job_id: str, task_id: str) -> TaskInfo:
        with translate_errors(f"getting task {task_id} of job {job_id}", self._host):
            return _task_info(self._client.get_task(job_id, task_id))

    def failed_tasks(self, job_id: str, *, stderr_lines: int = 10) -> list[TaskFailure]:
        """Every failed task with the tail of its stderr."""
        failures = []
        for info in self.list_tasks(job_id, only_failed=True):
            failures.append(
                TaskFailure(
                    task_id=info.id,
                    display_name=info.display_name,
                    exit_code=info.exit_code,
                    failure_category=info.failure_category,
                    failure_code=info.failure_code,
                    failure_message=info.failure_message,
                    stderr_tail=self.task_file_tail(job_id, info.id, STDERR_FILE, stderr_lines),
                )
            )
        return sorted(failures, key=lambda f: _task_sort_key(f.task_id))

    def task_file(self, job_id: str, task_id: str, name: str) -> bytes:
        """A task's file (``stdout.txt``, ``stderr.txt``, ``wd/...``).

        :class:`NotFoundError` when it is not there (yet), or gone with its node: a 409
        ``TaskFilesUnavailable``/``TaskFilesCleanedup`` (a streamed download carries no
        parsed error body, and a task file has no other conflict).
        """
        with translate_errors(f"reading {name} of task {task_id}", self._host):
            try:
                return b"".join(self._client.download_task_file(job_id, task_id, name))
            except ResourceExistsError:
                raise NotFoundError(
                    f"task {task_id}: its files are gone (its node left the pool, or they were cleaned up)",
                    hint="what the task uploaded is still in Storage: `runner results JOB`",
                ) from None

    def task_file_size(self, job_id: str, task_id: str, name: str) -> int | None:
        """The size of a task file now (one HEAD request); ``None`` when it is not there (yet)."""
        with translate_errors(f"reading the size of {name} of task {task_id}", self._host):
            try:
                props = self._client.get_task_file_properties(job_id, task_id, name)
            except (ResourceNotFoundError, ResourceExistsError):
                return None
        return int(props.content_length or 0)

    def task_file_range(self, job_id: str, task_id: str, name: str, start: int, end: int) -> bytes:
        """Bytes ``start..end`` (inclusive) of a task file, read with Batch's ``ocp-range``."""
        with translate_errors(f"reading {name} of task {task_id}", self._host):
            try:
                chunks = self._client.download_task_file(
                    job_id, task_id, name, ocp_range=f"bytes={start}-{end}"
                )
                return b"".join(chunks)
            except (ResourceNotFoundError, ResourceExistsError):
                return b""

    def task_file_tail(self, job_id: str, task_id: str, name: str, lines: int = 10) -> str:
        """Last ``lines`` lines of a task file, from its last 16 KiB only (a ranged read after
        one HEAD for its size: a task's stderr can be gigabytes); '' when there is none (yet)."""
        what = f"reading {name} of task {task_id}"
        with translate_errors(what, self._host):
            try:
                size = int(self._client.get_task_file_properties(job_id, task_id, name).content_length or 0)
                if size == 0:
                    return ""
                span = f"bytes={max(0, size - _TAIL_BYTES)}-{size - 1}"
                data = b"".join(self._client.download_task_file(job_id, task_id, name, ocp_range=span))
            except (ResourceNotFoundError, ResourceExistsError):  # none yet, or gone with its node
                return ""
        return _tail(data, lines)


def _value(x: object) -> str:
    """An SDK enum's wire value (``str()`` of a str-Enum is ``Class.MEMBER`` on Python 3.11)."""
    return str(x.value) if isinstance(x, Enum) else str(x)


def _tail(data: bytes, lines: int) -> str:
    text = data[-_TAIL_BYTES:].decode("utf-8", errors="replace")
    return "\n".join(text.rstrip("\n").splitlines()[-lines:])


def _task_sort_key(task_id: str) -> tuple[int, int | str]:
    return (0, int(task_id)) if task_id.isdigit() else (1, task_id)


def _job_info(job: bm.BatchJob) -> JobInfo:
    return JobInfo(
        id=job.id,
        state=_value(job.state),
        pool_id=job.pool_info.pool_id if job.pool_info is not None else None,
        creation_time=job.creation_time,
        display_name=job.display_name,
        terminate_reason=job.execution_info.termination_reason if job.execution_info is not None else None,
        end_time=job.execution_info.end_time if job.execution_info is not None else None,
    )


def _task_info(task: bm.BatchTask) -> TaskInfo:
    ex = task.execution_info
    fi = ex.failure_info if ex is not None else None
    return TaskInfo(
        id=task.id,
        display_name=task.display_name or "",
        state=TaskState(_value(task.state).lower()),
        exit_code=ex.exit_code if ex is not None else None,
        result=_value(ex.result).lower() if ex is not None and ex.result is not None else None,
        failure_category=_value(fi.category) if fi is not None else None,
        failure_code=fi.code if fi is not None else None,
        failure_message=fi.message if fi is not None else None,
        retry_count=ex.retry_count if ex is not None and ex.retry_count is not None else 0,
        node_id=task.node_info.node_id if task.node_info is not None else None,
        creation_time=task.creation_time,
        start_time=ex.start_time if ex is not None else None,
        end_time=ex.end_time if ex is not None else None,
        requeue_count=ex.requeue_count if ex is not None and ex.requeue_count is not None else 0,
    )


def _slices(specs: list[TaskSpec], max_tasks: int, max_files: int) -> Iterator[list[TaskSpec]]:
    """Consecutive runs of ``specs`` with at most ``max_tasks`` tasks and ``max_files`` resource +
    output files (a task with more files than that goes alone)."""
    part: list[TaskSpec] = []
    files = 0
    for spec in specs:
        weight = len(spec.resource_files) + len(spec.output_files)
        if part and (len(part) >= max_tasks or files + weight > max_files):
            yield part
            part, files = [], 0
        part.append(spec)
        files += weight
    if part:
        yield part


def _identity_reference(identity_id: str | None) -> bm.BatchNodeIdentityReference | None:
    return bm.BatchNodeIdentityReference(resource_id=identity_id) if identity_id else None


def _task_model(spec: TaskSpec) -> bm.BatchTaskCreateOptions:
    resources = [
        bm.ResourceFile(
            file_path=r.file_path,
            http_url=r.http_url,
            storage_container_url=r.container_url,
            blob_prefix=r.blob_prefix,
            identity_reference=_identity_reference(r.identity_id),
        )
        for r in spec.resource_files
    ]
    outputs = [
        bm.OutputFile(
            file_pattern=o.pattern,
            destination=bm.OutputFileDestination(
                container=bm.OutputFileBlobContainerDestination(
                    container_url=o.container_url,
                    path=o.path,
                    identity_reference=_identity_reference(o.identity_id),
                )
            ),
            upload_options=bm.OutputFileUploadConfiguration(upload_condition="taskcompletion"),
        )
        for o in spec.output_files
    ]
    depends = None
    if spec.depends_on_range is not None or spec.depends_on_ids:
        ranges = None
        if spec.depends_on_range is not None:
            start, end = spec.depends_on_range
            ranges = [bm.BatchTaskIdRange(start=start, end=end)]
        depends = bm.BatchTaskDependencies(task_ids=list(spec.depends_on_ids) or None, task_id_ranges=ranges)
    return bm.BatchTaskCreateOptions(
        id=spec.id,
        display_name=spec.display_name,
        command_line=spec.command_line,
        resource_files=resources,
        output_files=outputs,
        constraints=_constraints(spec.max_task_retry_count, spec.max_wall_clock_time),
        depends_on=depends,
        exit_conditions=_exit_conditions(spec),
    )


def _exit_conditions(spec: TaskSpec) -> bm.ExitConditions | None:
    if not spec.satisfies_dependents_on_failure:
        return None
    return _SATISFY_BUT_AT_STAGING if spec.blocks_dependents_at_staging else _SATISFY_ON_FAILURE


_SATISFY = bm.ExitOptions(dependency_action=bm.DependencyAction.SATISFY)
#: ``--allow-failures``: every way a task can fail still satisfies the tasks that depend on it.
_SATISFY_ON_FAILURE = bm.ExitConditions(
    default=_SATISFY, pre_processing_error=_SATISFY, file_upload_error=_SATISFY
)
#: ``--allow-failures``, a pack: the same, but a failure at file staging blocks (runner.merge_replan).
_SATISFY_BUT_AT_STAGING = bm.ExitConditions(
    default=_SATISFY,
    pre_processing_error=bm.ExitOptions(dependency_action=bm.DependencyAction.BLOCK),
    file_upload_error=_SATISFY,
)


@functools.lru_cache(maxsize=64)
def _constraints(max_task_retry_count: int, max_wall_clock_time: timedelta | None) -> bm.BatchTaskConstraints:
    """One shared (never mutated) constraints model per distinct value: building SDK models is
    the runner's main CPU cost when it adds many tasks, and every task of a job has the same."""
    return bm.BatchTaskConstraints(
        max_task_retry_count=max_task_retry_count, max_wall_clock_time=max_wall_clock_time
    )
