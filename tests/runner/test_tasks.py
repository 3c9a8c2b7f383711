from __future__ import annotations

import shlex
from datetime import timedelta

import pytest

from runner.errors import UsageError
from runner.tasks import (
    MERGE_TASK_ID,
    PlannedInput,
    PlanOptions,
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


def test_plan_ids_dependencies_and_no_secret_on_command_lines() -> None:
    specs = plan(_inputs(3), _opts(), aggregate=True, counts_container_url=f"http://h/output?{SAS}")
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
    assert argv[:2] == ["python3", "nodetask.pyz"]
    assert argv[argv.index("--filepath") + 1] == "in/f_1_.txt"
    assert [r.file_path for r in specs[0].resource_files] == ["in/f_1_.txt", "nodetask.pyz"]


def test_no_aggregate_and_command_mode() -> None:
    assert [s.id for s in plan(_inputs(2), _opts(), aggregate=False, counts_container_url=None)] == ["1", "2"]
    specs = plan(
        _inputs(2), _opts("wc -l {input} > {output_dir}/n"), aggregate=True, counts_container_url=None
    )
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


def test_merge_command_is_one_plainly_quoted_shell_script() -> None:
    specs = plan(_inputs(2), _opts(), aggregate=True, counts_container_url=f"http://h/output?{SAS}")
    argv = shlex.split(specs[-1].command_line)
    assert argv[:2] == ["/bin/sh", "-c"] and len(argv) == 3
    assert specs[-1].command_line.count("'") == 2  # no nested quoting for the Batch agent to parse
    assert "merge --numwords 5 $(find counts" in argv[2]


def test_report_names_match_nodetask_for_odd_names() -> None:
    from nodetask.results import output_names

    for name in ["name.", ".hidden", "a.b.c", "noext", "x.tar.gz"]:
        assert report_names(name) == output_names(name)
    assert report_names("name.") == ("name_OUTPUT.", "name_counts.json")
