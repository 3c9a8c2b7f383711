"""One place for what every kind of task does the same way: a state change in the store, and
the process of a task on a node.

* :func:`move`: a task's move to a new state, as Batch records it (the previous state and its
  time kept, the transition time, a new ETag, ``lastModified``), with any other columns changed
  in the same write.
* :func:`execution`: a task process on a node: the node's ``AZ_BATCH_*`` environment with the
  job's and task's ids, in the task's directory of that node (``workitems/<job>/job-1/<task>``).

Used by the scheduler (start, finish, requeue, retry, terminate, reactivate) and by the job's
own tasks (:mod:`localbatch.jobtasks`): each transition has this one implementation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from localbatch.etags import new_etag
from localbatch.models import TaskSpec, iso, utcnow
from localbatch.node import Execution, node_root, task_dir

if TYPE_CHECKING:
    from localbatch.pools import NodeRuntime
    from localbatch.scheduler import Service
    from localbatch.store import Store, TaskRow


def move(store: Store, row: TaskRow, state: str, at: str | None = None, **changes: Any) -> str:
    """Store ``row``'s move to ``state`` and ``changes`` in one write; return the transition time.

    ``at`` is the transition time (Batch's ISO 8601 text; default: now), for a caller whose
    ``changes`` record the same instant (``endTime``, ``lastRetryTime``).
    """
    now = at or iso(utcnow())
    store.update_task(
        row.seq,
        prev_state=row.state,
        prev_state_time=row.state_time,
        state=state,
        state_time=now,
        last_modified=now,
        etag=new_etag(),
        **changes,
    )
    return now


def execution(
    service: Service, job: dict[str, Any], node: NodeRuntime, task_id: str, spec: TaskSpec
) -> Execution:
    """The process of task ``task_id`` of ``job`` on ``node`` (not started)."""
    env = service._node_env(node)
    env.update(AZ_BATCH_JOB_ID=job["id"], AZ_BATCH_TASK_ID=task_id)
    directory = task_dir(node_root(service.config.data_dir, node.id), job["id"], task_id)
    return Execution(spec, directory, env, service.config.auto_storage)
