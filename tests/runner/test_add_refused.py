"""Tasks Batch refuses one by one inside an add-collection: one line naming them and the code."""

from __future__ import annotations

import secrets

import pytest

from runner.batch import Batch
from runner.errors import RemoteError
from runner.outputs import Outputs
from runner.tasks import TaskSpec


def test_refused_tasks_are_named_with_their_error_code(target_outputs: Outputs) -> None:
    batch = Batch(target_outputs)
    job_id = f"refused-{secrets.token_hex(3)}"
    batch.ensure_job(job_id, target_outputs.pool_id, uses_task_dependencies=False)
    try:
        ok = TaskSpec("ok", "ok", "/bin/true", (), ())
        # Both depend on a task that does not exist in a job without task dependencies.
        bad = [TaskSpec(f"bad{i}", "bad", "/bin/true", (), (), depends_on_ids=("x",)) for i in range(7)]
        with pytest.raises(RemoteError) as caught:
            batch.add_tasks(job_id, [ok, *bad])
        message = str(caught.value)
        assert message.startswith("Batch refused 7 task(s) (bad"), message
        assert message.count("bad") == 5  # the first five named
    finally:
        batch.delete_job(job_id)
