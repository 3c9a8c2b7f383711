"""The plan of an ``--allow-failures`` job (no server): every task a merge reads satisfies its
dependents however it fails (exit code, download, upload), the final merge does not need to, and
every merge tolerates missing counts; without the option nothing of that is in the tasks."""

from __future__ import annotations

import json

from runner.batch import _task_model
from runner.tasks import MERGE_TASK_ID, PlannedInput, PlanOptions, placeholder, plan


def _plan(allow: bool) -> list:  # type: ignore[type-arg]
    opts = PlanOptions("job-1", 3, 0, None, "http://h/code", "http://h/out", allow_failures=allow)
    inputs = [PlannedInput(str(i), f"f{i}.txt", f"http://h/in/{i}") for i in range(1, 5)]
    counts = {tid: f"http://h/c/{tid}" for tid in [*map(str, range(1, 5)), "merge-1", "merge-2"]}
    return plan(inputs, opts, aggregate=True, counts_urls=counts, merge_group_size=2)


def test_allow_failures_satisfies_dependents_of_every_task_but_the_final_merge() -> None:
    specs = _plan(True)
    assert [s.id for s in specs][-3:] == ["merge-1", "merge-2", MERGE_TASK_ID]
    for spec in specs:
        final = spec.id == MERGE_TASK_ID
        assert spec.satisfies_dependents_on_failure is not final, spec.id
        model = _task_model(spec).as_dict()
        if final:
            assert model.get("exitConditions") is None
            continue
        ec = model["exitConditions"]
        for way in ("default", "preProcessingError", "fileUploadError"):
            assert ec[way]["dependencyAction"] == "satisfy", (spec.id, way)
        assert "jobAction" not in ec["default"]  # the job's own onTaskFailure still applies
    assert all("--allow-missing" in s.command_line for s in specs if s.id.startswith("merge"))

    without = _plan(False)
    assert not any(s.satisfies_dependents_on_failure for s in without)
    assert all(_task_model(s).as_dict().get("exitConditions") is None for s in without)
    assert not any("--allow-missing" in s.command_line for s in without)


def test_a_placeholder_names_the_inputs_it_stands_for() -> None:
    doc = json.loads(placeholder([("3", "sub/bad.txt"), ("4", "z.txt")]))
    assert doc == {"missing": [{"task": "3", "input": "sub/bad.txt"}, {"task": "4", "input": "z.txt"}]}
    assert "counts" not in doc  # what nodetask merge --allow-missing tells a placeholder by
