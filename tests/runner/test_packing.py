"""The packing planner and the packed tasks it makes: limits, order, no split, merge dependencies."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta
from urllib.parse import quote

import pytest

from runner import manifest as mf
from runner.batch import _task_model
from runner.errors import UsageError
from runner.packing import (
    AUTO_MAX_FILES,
    LARGE_FILE,
    MAX_PACK_FILES,
    TARGET_BYTES,
    FileToRun,
    PackPolicy,
    PlannedTask,
    group,
    parse_pack,
)
from runner.tasks import MERGE_TASK_ID, PlannedInput, PlanOptions, merge_steps, merge_steps_by_reads, plan

SAS = "sig=SECRET-SIGNATURE"


def _files(sizes: list[int], ids: list[str] | None = None) -> list[FileToRun]:
    ids = ids or [str(i) for i in range(1, len(sizes) + 1)]
    return [FileToRun(fid, f"d/f{fid}.txt", size) for fid, size in zip(ids, sizes, strict=True)]


def test_grouping_caps_targets_keeps_large_files_alone_and_never_splits() -> None:
    # Non-contiguous ids (the cache hands over only its misses): nothing assumes 1..N.
    ids = ["2", "3", "5", "8", "9", "13", "21", "22"]
    assert TARGET_BYTES == 2 * LARGE_FILE
    sizes = [LARGE_FILE - 1, LARGE_FILE, LARGE_FILE - 1, 5, 50, 60, 70, 80]
    tasks = group(_files(sizes, ids), PackPolicy("auto"))
    assert tasks == [
        PlannedTask("2", ("2",)),  # the byte target closed a pack at "8": two, made even in bytes
        PlannedTask("3", ("3",)),  # the large file alone, where it is
        PlannedTask("p1", ("5", "8", "9", "13", "21", "22")),  # a pack of one is that file's task
    ]
    capped = group(_files([1] * 7), PackPolicy("3"))
    assert [t.file_ids for t in capped] == [("1", "2"), ("3", "4", "5"), ("6", "7")]
    assert [t.task_id for t in capped] == ["p1", "p2", "p3"]
    assert [t.task_id for t in group(_files([1] * 3), PackPolicy("none"))] == ["1", "2", "3"]
    many = group(_files([1] * (AUTO_MAX_FILES + 1)), PackPolicy("auto"))
    assert [len(t.file_ids) for t in many] == [AUTO_MAX_FILES // 2, AUTO_MAX_FILES // 2 + 1]
    with pytest.raises(ValueError, match="twice"):
        group(_files([1, 1], ["4", "4"]), PackPolicy("auto"))


def test_packs_are_even_in_files_and_bytes_with_as_many_tasks_and_the_order_kept() -> None:
    """Issue 16: the greedy fill gave 17/17/17/9 for 60 files capped at 17; as many packs, even."""

    def sizes(tasks: list[PlannedTask]) -> list[int]:
        return [len(t.file_ids) for t in tasks]

    def ids(tasks: list[PlannedTask]) -> list[str]:
        return [fid for t in tasks for fid in t.file_ids]

    files = _files([100] * 60)
    assert sizes(group(files, PackPolicy("17"))) == [15, 15, 15, 15]
    assert ids(group(files, PackPolicy("17"))) == [f.file_id for f in files]
    assert sizes(group(_files([100] * 61), PackPolicy("17"))) == [15, 15, 16, 15]
    mib = 2**20  # 40 files of 1 MiB under the 16 MiB target: 16/16/8 before
    assert sizes(group(_files([mib] * 40), PackPolicy("auto"))) == [13, 14, 13]
    # Mixed sizes: as even in bytes as whole files allow (greedy: 18 MiB then 10 MiB), around a
    # large file that stays alone, first, as the greedy planner put it.
    mixed = _files([6 * mib, 6 * mib, LARGE_FILE, 1, 1, 6 * mib, 6 * mib, 1, 1, 4 * mib])
    assert [t.file_ids for t in group(mixed, PackPolicy("auto"))] == [
        ("3",),
        ("1", "2", "4", "5"),
        ("6", "7", "8", "9", "10"),
    ]
    # Even packs that would break a limit leave the greedy ones: 9 long names (8 fill a task's
    # resource-file budget) then 9 short ones would split 9/9; the greedy 8/10 stays.
    names = [("n" * 20_000 if i <= 9 else "s") + str(i) for i in range(1, 19)]
    tasks = group([FileToRun(str(i), n, 1) for i, n in enumerate(names, start=1)], PackPolicy("auto"))
    assert sizes(tasks) == [8, 10]


@pytest.mark.parametrize("text", ["0", "-1", f"{MAX_PACK_FILES + 1}", "some", "", "2.5"])
def test_bad_pack_values_are_usage_errors(text: str) -> None:
    with pytest.raises(UsageError, match="--pack must be auto, none or a number"):
        parse_pack(text)


def test_the_largest_pack_with_worst_case_names_fits_batchs_1_mb_task_limit() -> None:
    """Blob names near Azure's 1,024 characters, all non-ASCII, a user-delegation SAS."""
    job_id = "j" * 64
    delegation_sas = "skoid=" + "0" * 36 + "&sktid=" + "0" * 36 + "&ske=2026-11-23T00%3A00%3A00Z&sr=b&sp=r"
    delegation_sas += "&sig=" + "A" * 44 + "%3D"
    base = "https://" + "a" * 24 + ".blob.core.windows.net/" + "c" * 63
    rel = "/".join(["é" * 120] * 3) + "/" + "x" * 80 + ".txt"
    files = [FileToRun(str(i), f"{rel}{i}", 1) for i in range(1, MAX_PACK_FILES + 1)]
    inputs = [
        PlannedInput(f.file_id, f.input, f"{base}/{quote(f'{job_id}/inputs/{f.input}')}?{delegation_sas}")
        for f in files
    ]
    opts = PlanOptions(job_id, 10, 3, timedelta(hours=1), f"{base}/n.pyz?{delegation_sas}", f"{base}?{SAS}")
    tasks = group(files, PackPolicy(str(MAX_PACK_FILES)))
    assert len(tasks) > 1  # the byte budget closed packs before the file cap
    for spec in plan(inputs, opts, aggregate=False, counts_urls=None, tasks=tasks):
        body = json.dumps(_task_model(spec).as_dict()).encode()
        assert len(body) < 1024 * 1024, (spec.id, len(body))
        assert SAS not in spec.command_line and "sig=" not in spec.command_line


def test_packed_tasks_and_the_merge_depend_on_what_carries_each_file() -> None:
    inputs = [PlannedInput(str(i), f"dir {i}/f#{i}?.txt", f"http://h/in/{i}?{SAS}") for i in range(1, 6)]
    opts = PlanOptions("job-1", 5, 0, None, f"http://h/n.pyz?{SAS}", f"http://h/output?{SAS}")
    tasks = [PlannedTask("p1", ("1", "2", "4")), PlannedTask("3", ("3",)), PlannedTask("p2", ("5",))]
    urls = {str(i): f"http://h/output/{i}_counts.json?{SAS}" for i in range(1, 6)}
    specs = {s.id: s for s in plan(inputs, opts, aggregate=True, counts_urls=urls, tasks=tasks)}
    assert list(specs) == ["p1", "3", "p2", MERGE_TASK_ID]
    p1 = specs["p1"]
    assert [r.file_path for r in p1.resource_files] == [
        "nodetask.pyz", "in/1/f_1_.txt", "in/2/f_2_.txt", "in/4/f_4_.txt"
    ]  # fmt: skip
    assert p1.command_line.split()[3:6] == ["pack", "--in-dir", "in"]
    [out] = p1.output_files
    assert (out.pattern, out.path) == ("out/**/*", "job-1")  # out/<file id>/... -> job-1/<file id>/...
    merge = specs[MERGE_TASK_ID]
    assert merge.depends_on_range is None and merge.depends_on_ids == ("p1", "3", "p2")
    assert len(merge.resource_files) == 1 + 5  # still every file's counts


def test_a_packed_job_in_two_merge_levels_is_accepted_by_batch() -> None:
    """Above one merge group, the partial merges of packed files name their span as a range and
    stay within Batch's limits (a display name of 500 joined ids was refused at 2,000 files)."""
    from localbatch import models as lb_models

    n = 1200
    inputs = [PlannedInput(str(i), f"f{i}.txt", f"http://h/in/{i}?{SAS}") for i in range(1, n + 1)]
    opts = PlanOptions("job-1", 5, 0, None, f"http://h/n.pyz?{SAS}", f"http://h/output?{SAS}")
    tasks = group([FileToRun(str(i), f"f{i}.txt", 4096) for i in range(1, n + 1)], parse_pack("auto"))
    urls = {str(i): f"http://h/output/{i}_counts.json?{SAS}" for i in range(1, n + 1)}
    urls.update({f"merge-{k}": f"http://h/output/merge-{k}_counts.json?{SAS}" for k in range(1, 4)})
    specs = plan(inputs, opts, aggregate=True, counts_urls=urls, merge_group_size=500, tasks=tasks)
    partial = [s for s in specs if s.id.startswith("merge-")]
    spans = [s.display_name.removeprefix("partial merge of tasks ") for s in partial]
    assert spans == ["1..500", "501..1000", "1001..1200"]
    for spec in specs:  # the service's own checks, as localbatch makes them
        lb_models.validate_task(_task_model(spec).as_dict())


def test_a_pack_split_for_a_missing_input_keeps_the_culprit_and_names_the_rest_anew() -> None:
    """runner.pack_recovery: the files whose input is missing stay with the failed pack; the others
    get a new task (``p1-2``, then ``p1-3`` for a second split; a lone file: its own id)."""
    from runner.pack_recovery import _new_task_id, _split

    tasks = tuple(
        mf.ManifestTask(str(i), f"f{i}.txt", f"j/inputs/f{i}.txt", f"f{i}.txt", 1) for i in range(1, 6)
    )
    packs = (mf.ManifestPack("p1", ("1", "2", "3")), mf.ManifestPack("p2", ("4", "5")))
    man = mf.Manifest("j", "now", 3, True, None, 0, tasks, pack="auto", packs=packs)
    split, task = _split(man, man.packs[0], {"2"})
    assert (task.task_id, task.file_ids) == ("p1-2", ("1", "3"))
    assert split.task_of == {"1": "p1-2", "2": "p1", "3": "p1-2", "4": "p2", "5": "p2"}
    again, task = _split(split, split.packs[-1], {"3"})  # the new task failed the same way
    assert (task.task_id, task.file_ids) == ("1", ("1",)) and again.task_of["1"] == "1"
    assert again.file_task_ids == ["1", "p1", "p1-2", "p2"]
    _, task = _split(split, split.packs[1], {"5"})
    assert (task.task_id, task.file_ids) == ("4", ("4",))
    assert _new_task_id("p1-2", {"p1", "p1-2", "p2"}) == "p1-3"


def test_bundled_packs_read_one_tar_and_each_merge_reads_a_pack_once_for_its_own_files() -> None:
    """runner.pack_tars: a pack's one input tar and one results tar; a merge takes a pack's tar
    once, named with the range of its own file ids there (a pack two merge groups share)."""
    inputs = [PlannedInput(str(i), f"f{i}.txt", f"http://h/in/{i}?{SAS}") for i in range(1, 8)]
    opts = PlanOptions("job-1", 5, 0, None, f"http://h/n.pyz?{SAS}", f"http://h/output?{SAS}")
    tasks = [PlannedTask("p1", ("1", "2")), PlannedTask("p2", ("3", "4", "5")), PlannedTask("6", ("6",))]
    tasks.append(PlannedTask("7", ("7",)))
    bundles = {
        p: (f"http://h/in/{p}.tar?{SAS}", f"http://h/output/{p}/results.tar?{SAS}") for p in ("p1", "p2")
    }
    urls = {
        fid: f"http://h/output/{fid}_counts.json?{SAS}" for fid in ("6", "7", "merge-1", "merge-2", "merge-3")
    }
    specs = {
        s.id: s
        for s in plan(
            inputs, opts, aggregate=True, counts_urls=urls, tasks=tasks, merge_group_size=3, bundles=bundles
        )
    }
    p2 = specs["p2"]
    assert [(r.file_path, r.http_url) for r in p2.resource_files] == [
        ("nodetask.pyz", opts.code_url), ("in.tar", bundles["p2"][0])
    ]  # fmt: skip
    assert "--in-tar in.tar --results-tar" in p2.command_line
    [out] = p2.output_files
    assert (out.pattern, out.path) == ("out/results.tar", "job-1/p2/results.tar")
    assert [r.file_path for r in specs["6"].resource_files] == ["in/f6.txt", "nodetask.pyz"]  # as today

    def reads(merge_id: str) -> list[tuple[str, str | None]]:
        return [(r.file_path, r.http_url) for r in specs[merge_id].resource_files[1:]]

    assert reads("merge-1") == [
        ("counts/p1.1-2.tar", bundles["p1"][1]),
        ("counts/p2.3-3.tar", bundles["p2"][1]),
    ]
    assert reads("merge-2") == [("counts/6_counts.json", urls["6"]), ("counts/p2.4-5.tar", bundles["p2"][1])]
    assert reads("merge-3") == [("counts/7_counts.json", urls["7"])]
    assert specs["merge-1"].depends_on_ids == ("p1", "p2")
    for spec in specs.values():  # Batch takes them, and no SAS is on a command line
        assert SAS not in spec.command_line
        _task_model(spec)


def _bundled_manifest(n: int, per_pack: int, group_size: int, **extra: object) -> mf.Manifest:
    """A job of ``n`` files in bundled packs of ``per_pack``, as ``submit`` records it now."""
    tasks = tuple(
        mf.ManifestTask(str(i), f"f{i}.txt", f"j/inputs/f{i}.txt", f"f{i}.txt", 1) for i in range(1, n + 1)
    )
    packs = tuple(
        mf.ManifestPack(f"p{k}", tuple(str(i) for i in range(lo, min(lo + per_pack, n + 1))))
        for k, lo in enumerate(range(1, n + 1, per_pack), start=1)
    )
    man = mf.Manifest(
        "j", "now", 3, True, None, 0, tasks, merge_group_size=group_size, pack="auto", packs=packs
    )
    return replace(man, merge_groups="reads", **extra)  # type: ignore[arg-type]


def test_bundled_merges_group_by_resource_files_and_list_inputs_as_the_file_grouping() -> None:
    """10,000 files in 200 bundled packs: one merge reading 200 results tars (not 20 partial merges
    of 500 files each and the final), its inputs ordered as the file grouping's final merge (the
    order blob); Batch takes it. A manifest without ``mergeGroups`` (written before) keeps the
    grouping by files, and so does a job without bundled packs."""
    from localbatch import models as lb_models

    man = _bundled_manifest(10_000, 50, 500)
    [step] = man.merge_steps
    assert (step.task_id, step.order, step.source_range) == (MERGE_TASK_ID, "j/merge-order.json", None)
    assert step.depends_on == tuple(f"p{k}" for k in range(1, 201))
    opts = PlanOptions("j", 5, 0, None, f"http://h/n.pyz?{SAS}", f"http://h/output?{SAS}")
    inputs = [PlannedInput(t.task_id, t.input, f"http://h/in/{t.task_id}?{SAS}") for t in man.tasks]
    bundles = {
        p.task_id: (f"http://h/{p.task_id}.tar?{SAS}", f"http://h/o/{p.task_id}/results.tar?{SAS}")
        for p in man.packs
    }
    tasks = [PlannedTask(p.task_id, p.file_ids) for p in man.packs]
    urls = {"j/merge-order.json": f"http://h/in/j/merge-order.json?{SAS}"}
    specs = plan(
        inputs, opts, aggregate=True, counts_urls=urls, tasks=tasks, bundles=bundles, steps=man.merge_plan()
    )
    merge = specs[-1]
    assert [s.id for s in specs if s.id.startswith("merge")] == [MERGE_TASK_ID]
    assert len(merge.resource_files) == 1 + 200 + 1  # the node code, each pack's tar, the order
    assert merge.resource_files[-1].file_path == "order.json" and "--order order.json" in merge.command_line
    lb_models.validate_task(_task_model(merge).as_dict())  # within Batch's limits

    old = mf.Manifest.from_json({**man.to_json(), "options": {**man.to_json()["options"]}})
    assert old.merge_groups == "reads" and old.merge_steps == man.merge_steps  # recorded, read back
    del (data := man.to_json())["options"]["mergeGroups"]
    before = mf.Manifest.from_json(data)  # a manifest from before: 20 groups of 500 files
    assert [s.task_id for s in before.merge_steps] == [*(f"merge-{k}" for k in range(1, 21)), MERGE_TASK_ID]
    assert all(s.order is None for s in before.merge_steps)
    assert len(replace(man, allow_failures=True).merge_steps) == 21  # no bundles: per-file counts
    with pytest.raises(ValueError, match="mergeGroups"):
        mf.Manifest.from_json({**data, "options": {**data["options"], "mergeGroups": "packs"}})


def test_grouping_by_reads_counts_each_pack_once_and_shares_a_straddling_pack() -> None:
    """Groups of consecutive file ids with at most ``group_size`` distinct units; a pack whose files
    two groups take (not contiguous: a large file in between) is read by both, each for its own."""
    units = ["p1", "p1", "3", "p1", "p2", "p2", "7", "p2", "9"]
    steps = merge_steps_by_reads(units, 3)
    assert [(s.task_id, s.source_range) for s in steps] == [
        ("merge-1", (1, 6)), ("merge-2", (7, 9)), (MERGE_TASK_ID, None)
    ]  # fmt: skip
    opts = PlanOptions("j", 5, 0, None, "http://h/n.pyz", "http://h/output")
    inputs = [PlannedInput(str(i), f"f{i}.txt", f"http://h/in/{i}") for i in range(1, 10)]
    tasks = [PlannedTask("p1", ("1", "2", "4")), PlannedTask("3", ("3",)), PlannedTask("p2", ("5", "6", "8"))]
    tasks += [PlannedTask("7", ("7",)), PlannedTask("9", ("9",))]
    bundles = {p: (f"http://h/{p}.tar", f"http://h/o/{p}/results.tar") for p in ("p1", "p2")}
    urls = {k: f"http://h/o/{k}_counts.json" for k in ("3", "7", "9", "merge-1", "merge-2")}
    specs = {
        s.id: s
        for s in plan(
            inputs, opts, aggregate=True, counts_urls=urls, tasks=tasks, bundles=bundles, steps=steps
        )
    }
    assert [r.file_path for r in specs["merge-1"].resource_files[1:]] == [
        "counts/3_counts.json", "counts/p1.1-4.tar", "counts/p2.5-6.tar"
    ]  # fmt: skip
    assert [r.file_path for r in specs["merge-2"].resource_files[1:]] == [
        "counts/7_counts.json",
        "counts/9_counts.json",
        "counts/p2.8-8.tar",
    ]
    assert merge_steps_by_reads(["p1"] * 7, 2) == merge_steps(7, 7)  # one tar: one merge of 1..7
    assert merge_steps_by_reads([str(i) for i in range(1, 10)], 3) == merge_steps(9, 3)  # unpacked: as before
    with pytest.raises(ValueError, match="two merge levels"):  # 3 groups of 2 reads: a third level
        merge_steps_by_reads([str(i) for i in range(1, 6)], 2)
    man = _bundled_manifest(9, 3, 2)  # 3 packs, groups of 2 tars: merge-1 (1..6), merge-2 (7..9)
    assert [s.source_range for s in man.merge_plan()] == [(1, 6), (7, 9), None]
    assert man.merge_plan()[-1].order == "j/merge-order.json"
