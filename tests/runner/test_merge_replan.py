"""``--allow-failures`` and a pack failed at staging (no server): the pack blocks the merges at
staging only, the merges that wait for it are found from Batch's times, and a re-added merge
depends on the tasks that carry its files but the failed pack (runner.merge_replan)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from runner import manifest as mf
from runner.batch import _task_model
from runner.batch_types import TaskInfo, TaskState
from runner.merge_replan import without
from runner.packing import PlannedTask
from runner.partial_merge import blocking_failures, staging_blockers
from runner.tasks import MERGE_TASK_ID, PlannedInput, PlanOptions, plan

T0 = datetime(2026, 12, 1, tzinfo=timezone.utc)


def _info(
    tid: str, state: TaskState, *, created: int, ended: int | None = None, staging: bool = False
) -> TaskInfo:
    return TaskInfo(
        tid, tid, state, None if staging else (0 if ended is not None else None),
        "failure" if staging else None, "usererror" if staging else None,
        "BlobDownloadMiscError" if staging else None, None, 0,
        creation_time=T0 + timedelta(seconds=created),
        end_time=None if ended is None else T0 + timedelta(seconds=ended),
    )  # fmt: skip


def test_a_pack_blocks_the_merges_at_staging_only_until_they_are_re_added_without_it() -> None:
    opts = PlanOptions("j", 3, 0, None, "http://h/code", "http://h/out", allow_failures=True)
    inputs = [PlannedInput(str(i), f"f{i}.txt", f"http://h/in/{i}") for i in range(1, 5)]
    tasks = [PlannedTask("p1", ("1", "2", "3")), PlannedTask("4", ("4",))]
    counts = {str(i): f"http://h/c/{i}" for i in range(1, 5)}
    specs = {
        s.id: _task_model(s).as_dict()
        for s in plan(inputs, opts, aggregate=True, counts_urls=counts, tasks=tasks)
    }
    ec = specs["p1"]["exitConditions"]
    assert ec["preProcessingError"]["dependencyAction"] == "block"  # waits for the runner
    assert ec["default"]["dependencyAction"] == ec["fileUploadError"]["dependencyAction"] == "satisfy"
    assert specs["4"]["exitConditions"]["preProcessingError"]["dependencyAction"] == "satisfy"  # a file alone

    files = tuple(
        mf.ManifestTask(str(i), f"f{i}.txt", f"j/inputs/f{i}.txt", f"f{i}.txt", 9) for i in range(1, 5)
    )
    man = mf.Manifest("j", "now", 3, True, None, 0, files, allow_failures=True, pack="3",
                      packs=(mf.ManifestPack("p1", ("2",)), mf.ManifestPack("p1-2", ("1", "3"))))  # fmt: skip
    pack = _info("p1", TaskState.COMPLETED, created=0, ended=5, staging=True)
    waiting = {"p1": pack, MERGE_TASK_ID: _info(MERGE_TASK_ID, TaskState.ACTIVE, created=0)}
    assert staging_blockers(man, waiting) == blocking_failures(man, waiting) == {"p1"}
    readded = {"p1": pack, MERGE_TASK_ID: _info(MERGE_TASK_ID, TaskState.ACTIVE, created=6)}
    assert blocking_failures(man, readded) == set()  # the re-added merge does not wait for it
    assert staging_blockers(man, {"p1": pack}) == {"p1"}  # deleted, not yet added again: it waits
    ran = {**waiting, "p1": _info("p1", TaskState.COMPLETED, created=0, ended=5)}
    assert blocking_failures(man, ran) == set()  # a pack that ran (whatever its exit) satisfies

    [step] = man.merge_steps
    assert step.dependencies == ("p1-2", "p1", "4")
    assert (
        without(step, {"p1"}).dependencies == ("p1-2", "4") and without(step, {"p1"}).sources == step.sources
    )
