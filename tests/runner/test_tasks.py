from __future__ import annotations

import json
import shlex
from datetime import timedelta

import pytest

from runner.batch import _slices, _task_model
from runner.errors import UsageError
from runner.tasks import (
    MAX_MERGE_GROUP_SIZE,
    MERGE_GROUP_SIZE,
    MERGE_TASK_ID,
    PlannedInput,
    PlanOptions,
    TaskSpec,
    counts_blob,
    merge_steps,
    merge_task,
    plan,
    report_names,
    safe_node_name,
    validate_command_template,
)

SAS = "sig=SECRET-SIGNATURE"


def _opts(command: str | None = None) -> PlanOptions:
    return PlanOptions(
        job_id="job-1",
        numwords=5,
        retries=2,
        max_wall_clock=timedelta(minutes=3),
        code_url=f"http://h/app/nodetask/abc.pyz?{SAS}",
        output_container_url=f"http://h/output?{SAS}",
        command_template=command,
    )


def _inputs(n: int) -> list[PlannedInput]:
    return [PlannedInput(str(i), f"dir {i}/f#{i}?.txt", f"http://h/in/{i}?{SAS}") for i in range(1, n + 1)]


def _counts_urls(n: int, group_size: int = MERGE_GROUP_SIZE) -> dict[str, str]:
    return {
        tid: f"http://h/output/{tid}_counts.json?{SAS}"
        for step in merge_steps(n, group_size)
        for tid in step.sources
    }


def _merges(specs: list[TaskSpec]) -> list[TaskSpec]:
    return [s for s in specs if s.id.startswith(MERGE_TASK_ID)]


def test_plan_ids_dependencies_and_no_secret_on_command_lines() -> None:
    specs = plan(_inputs(3), _opts(), aggregate=True, counts_urls=_counts_urls(3))
    assert [s.id for s in specs] == ["1", "2", "3", MERGE_TASK_ID]
    merge = specs[-1]
    assert merge.depends_on_range == (1, 3)
    assert all(s.depends_on_range is None for s in specs[:-1])
    assert specs[0].display_name == "dir 1/f#1?.txt"
    for s in specs:
        assert "sig=" not in s.command_line
        assert s.max_task_retry_count == 2 and s.max_wall_clock_time == timedelta(minutes=3)
        assert [o.path for o in s.output_files] == [f"job-1/{s.id}"]
    argv = shlex.split(specs[0].command_line)
    assert argv[:3] == ["python3", "-S", "nodetask.pyz"]
    assert argv[argv.index("--filepath") + 1] == "in/f_1_.txt"
    assert [r.file_path for r in specs[0].resource_files] == ["in/f_1_.txt", "nodetask.pyz"]


def test_no_aggregate_and_command_mode() -> None:
    assert [s.id for s in plan(_inputs(2), _opts(), aggregate=False, counts_urls=None)] == ["1", "2"]
    specs = plan(_inputs(2), _opts("wc -l {input} > {output_dir}/n"), aggregate=True, counts_urls=None)
    assert [s.id for s in specs] == ["1", "2"]
    argv = shlex.split(specs[0].command_line)
    assert argv[:2] == ["/bin/sh", "-c"]
    assert "wc -l in/f_1_.txt > out/n" in argv[2]
    assert all(r.file_path != "nodetask.pyz" for r in specs[0].resource_files)


@pytest.mark.parametrize(
    ("relpath", "expected"),
    [
        ("a b.txt", "a_b.txt"),
        ("x/y/é.txt", "_.txt"),
        ("-rf.txt", "_-rf.txt"),
        (".env", "_.env"),
        ("%?#", "___"),
    ],
)
def test_safe_node_name(relpath: str, expected: str) -> None:
    assert safe_node_name(relpath) == expected


def test_report_names_follow_the_tutorial() -> None:
    assert report_names("book.txt") == ("book_OUTPUT.txt", "book_counts.json")


@pytest.mark.parametrize("template", ["echo {inpt}", "echo hi", "echo {input", "echo {0}"])
def test_bad_command_templates(template: str) -> None:
    with pytest.raises(UsageError):
        validate_command_template(template)


def test_merge_reads_exactly_the_jobs_counts_files_with_no_shell() -> None:
    specs = plan(_inputs(2), _opts(), aggregate=True, counts_urls=_counts_urls(2))
    merge = specs[-1]
    assert shlex.split(merge.command_line) == [
        "python3", "-S", "nodetask.pyz", "merge", "--numwords", "5", "counts", "--output-dir", "out",
    ]  # fmt: skip
    assert [(r.file_path, r.http_url) for r in merge.resource_files[1:]] == [
        ("counts/1_counts.json", f"http://h/output/1_counts.json?{SAS}"),
        ("counts/2_counts.json", f"http://h/output/2_counts.json?{SAS}"),
    ]
    assert all(r.container_url is None for s in specs for r in s.resource_files)  # no container SAS


def test_large_jobs_merge_in_two_levels() -> None:
    specs = plan(_inputs(7), _opts(), aggregate=True, counts_urls=_counts_urls(7, 3), merge_group_size=3)
    merges = _merges(specs)
    assert [s.id for s in specs[:7]] == [str(i) for i in range(1, 8)]
    assert [(m.id, m.depends_on_range, m.depends_on_ids) for m in merges] == [
        ("merge-1", (1, 3), ()),
        ("merge-2", (4, 6), ()),
        ("merge-3", (7, 7), ()),
        (MERGE_TASK_ID, None, ("merge-1", "merge-2", "merge-3")),
    ]
    assert [r.file_path for r in merges[1].resource_files[1:]] == [
        f"counts/{i}_counts.json" for i in (4, 5, 6)
    ]
    assert [r.file_path for r in merges[-1].resource_files[1:]] == [
        f"counts/merge-{k}_counts.json" for k in (1, 2, 3)
    ]
    assert [o.path for m in merges for o in m.output_files] == [f"job-1/{m.id}" for m in merges]


@pytest.mark.parametrize(
    ("n", "size", "expected"), [(1, 3, 1), (3, 3, 1), (4, 3, 3), (9, 3, 4), (1000, 500, 3)]
)
def test_merge_steps_count(n: int, size: int, expected: int) -> None:
    steps = merge_steps(n, size)
    assert len(steps) == expected and steps[-1].task_id == MERGE_TASK_ID
    read = [tid for s in steps[:-1] for tid in s.sources] if expected > 1 else list(steps[0].sources)
    assert read == [str(i) for i in range(1, n + 1)]  # every file read exactly once


def test_merge_steps_refuse_what_two_levels_cannot_hold() -> None:
    assert len(merge_steps(9, 3)) == 4
    with pytest.raises(ValueError):
        merge_steps(10, 3)
    with pytest.raises(ValueError):
        merge_steps(5, 1)


def test_the_largest_merge_group_with_worst_case_names_fits_batchs_1_mb_task_limit() -> None:
    """Longest names the runner allows, a user-delegation SAS: serialized as the SDK sends it."""
    job_id = "j" * 64
    delegation_sas = (
        "skoid=00000000-0000-0000-0000-000000000000&sktid=00000000-0000-0000-0000-000000000000"
        "&skt=2026-11-22T00%3A00%3A00Z&ske=2026-11-23T00%3A00%3A00Z&sks=b&skv=2025-01-05"
        "&sv=2025-01-05&st=2026-11-22T00%3A00%3A00Z&se=2026-11-22T03%3A00%3A00Z&sr=b&sp=r"
        "&sig=" + "A" * 44 + "%3D"
    )
    base = "https://" + "a" * 24 + ".blob.core.windows.net/" + "c" * 63
    urls = {
        tid: f"{base}/{counts_blob(job_id, tid, 'x' * 251 + '.txt')}?{delegation_sas}"
        for tid in (str(i) for i in range(1, MAX_MERGE_GROUP_SIZE + 1))
    }
    opts = PlanOptions(job_id, 10, 3, timedelta(hours=1), f"{base}/n.pyz?{delegation_sas}", f"{base}?{SAS}")
    step = merge_steps(MAX_MERGE_GROUP_SIZE, MAX_MERGE_GROUP_SIZE)[0]
    assert len(step.sources) == MAX_MERGE_GROUP_SIZE
    body = json.dumps(_task_model(merge_task(step, opts, urls)).as_dict()).encode()
    assert len(urls["1"]) > 700  # really the worst case
    assert len(body) < 1024 * 1024, len(body)


def test_report_names_match_nodetask_for_odd_names() -> None:
    from nodetask.results import output_names

    for name in ["name.", ".hidden", "a.b.c", "noext", "x.tar.gz"]:
        assert report_names(name) == output_names(name)
    assert report_names("name.") == ("name_OUTPUT.", "name_counts.json")


def test_tasks_are_added_in_slices_bounded_by_count_and_by_files() -> None:
    specs = plan(_inputs(12), _opts(), aggregate=True, counts_urls=_counts_urls(12, 4), merge_group_size=4)
    weights = [len(s.resource_files) + len(s.output_files) for s in specs]
    assert weights == [3] * 12 + [6, 6, 6, 5]  # 4 counts files + node code + output; final reads 3
    parts = list(_slices(specs, 5, 12))
    assert [[s.id for s in p] for p in parts] == [
        ["1", "2", "3", "4"], ["5", "6", "7", "8"], ["9", "10", "11", "12"],
        ["merge-1", "merge-2"], ["merge-3", "merge"],
    ]  # fmt: skip
    assert [len(p) for p in _slices(specs, 3, 10_000)] == [3, 3, 3, 3, 3, 1]
    assert [len(p) for p in _slices(specs[-1:], 5, 2)] == [1]  # heavier than the budget: alone
