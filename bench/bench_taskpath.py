"""localbatch's task path, phase by phase, and the 60 x 1 MB end to end ratio (issue 18; not a test).

Phases: N small tasks in the runner's shape (one resource file, a 1 MB blob
through a read-only blob SAS ``httpUrl``; two output files through a
create+write container SAS) on a private local target whose pool is the
default :class:`~runner.pool_spec.PoolSpec` (2 nodes x 1 slot, idle before
the clock starts), then the same N tasks with no files (same command). For
each task, from the service's own records (Batch's task times, and
localbatch's DEBUG line ``<task>: succeeded in X ms (download ..., process
..., upload ...)``):

* queued -> started: ``startTime`` minus the later of ``creationTime`` and
  the moment the task before it on the same node was recorded completed (the
  time a free slot waits for its next task);
* task directory (made, or emptied for a requeued task), resource files,
  process (from opening stdout/stderr to the exit), output files:
  localbatch's phase timings (0 where a version does not time a phase);
* completion recorded: ``stateTransitionTime`` (completed) minus ``endTime``;
* slot time: ``stateTransitionTime`` minus ``startTime`` (what the task costs
  its slot). The file overhead is the median slot time with files minus
  without. Goal: <= 60 ms.

End to end (same run, same machine): ``runner submit`` of 60 files of ~1 MB
on the warm local target (servers up, pool idle, one small submit done
before, so the node code is uploaded; ``--no-cache``, once with ``--pack none``
and once with ``--pack auto``) vs. ``xargs -P 2`` nodetask + merge on
the same files (bench_e2e's floor), alternated, 3 rounds (1 in quick mode):
the median and the range of each time and of the ratio of each round (ours /
that round's floor; the goal is on the median ratio). Goal: <= 1.3x. Quick:
N = 30 tasks, the end to end still at 60 files (it is the goal's own size).
Also reported: CPU per task of localbatch itself and of Azurite.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
for _p in (str(BENCH_DIR.parent), str(BENCH_DIR)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

from azure.batch import BatchClient  # noqa: E402
from azure.batch import models as bm  # noqa: E402
from azure.core.credentials import AzureNamedKeyCredential  # noqa: E402
from azure.storage.blob import (  # noqa: E402
    BlobSasPermissions,
    BlobServiceClient,
    ContainerSasPermissions,
    generate_blob_sas,
    generate_container_sas,
)
from bench_e2e import input_files, run_floor, run_runner  # noqa: E402
from harness import Row, Servers, cpu_seconds, local_servers, wait_nodes_idle  # noqa: E402

from runner.batch import Batch  # noqa: E402
from runner.outputs import write_file  # noqa: E402
from runner.pool_spec import PoolSpec  # noqa: E402

E2E_FILES = 60
E2E_GOAL = 1.3
#: The ``--pack`` modes of the end to end rows (``auto`` is the default; 60 x 1 MB makes 4 packs).
PACKS = ("none", "auto")
OVERHEAD_GOAL_MS = 60.0
PHASES = (
    "queued -> started",
    "task directory",
    "resource files",
    "process",
    "output files",
    "completion recorded",
)
COMMAND = "/bin/sh -c 'echo a > a.txt; echo b > b.json'"
_PHASE_LINE = re.compile(r"localbatch\.node: (?P<task>\S+): \w+ in [\d.]+ ms \((?P<phases>[^)]*)\)")


@contextlib.contextmanager
def _debug_log() -> Iterator[None]:
    """localbatch started inside this block logs at DEBUG (its per-task phase lines)."""
    old = os.environ.get("LOCALBATCH_LOG_LEVEL")
    os.environ["LOCALBATCH_LOG_LEVEL"] = "DEBUG"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("LOCALBATCH_LOG_LEVEL", None)
        else:
            os.environ["LOCALBATCH_LOG_LEVEL"] = old


def _sdk(srv: Servers) -> BatchClient:
    out = srv.outputs
    return BatchClient(
        out.batch_account_url, AzureNamedKeyCredential(out.batch_account_name, out.batch_account_key)
    )


def _sas_urls(srv: Servers, n: int) -> tuple[list[str], str]:
    """n read-only blob SAS URLs of 1 MB inputs, and a create+write SAS URL of an output container."""
    out = srv.outputs
    key, name = out.storage_account_key, out.storage_account_name
    blobs = BlobServiceClient(
        out.storage_blob_endpoint, credential={"account_name": name, "account_key": key}
    )
    expiry = datetime.now(timezone.utc) + timedelta(hours=2)
    data = os.urandom(1_000_000)
    urls = []
    for i in range(n):
        blob = f"phases/in{i:04d}.bin"
        blobs.get_blob_client(out.input_container, blob).upload_blob(data, overwrite=True)
        sas = generate_blob_sas(
            name,
            out.input_container,
            blob,
            account_key=key,
            permission=BlobSasPermissions(read=True),
            expiry=expiry,
        )
        urls.append(f"{out.storage_blob_endpoint}/{out.input_container}/{blob}?{sas}")
    csas = generate_container_sas(
        name,
        out.output_container,
        account_key=key,
        permission=ContainerSasPermissions(create=True, write=True),
        expiry=expiry,
    )
    return urls, f"{out.storage_blob_endpoint}/{out.output_container}?{csas}"


def _task(tid: str, blob_url: str | None, container_url: str | None) -> bm.BatchTaskCreateOptions:
    if blob_url is None or container_url is None:
        return bm.BatchTaskCreateOptions(id=tid, command_line=COMMAND)
    outputs = [
        bm.OutputFile(
            file_pattern=pattern,
            destination=bm.OutputFileDestination(
                container=bm.OutputFileBlobContainerDestination(
                    container_url=container_url, path=f"{tid}/{pattern}"
                )
            ),
            upload_options=bm.OutputFileUploadConfiguration(upload_condition="taskcompletion"),
        )
        for pattern in ("a.txt", "b.json")
    ]
    return bm.BatchTaskCreateOptions(
        id=tid,
        command_line=COMMAND,
        resource_files=[bm.ResourceFile(http_url=blob_url, file_path="in.bin")],
        output_files=outputs,
    )


def _run_job(
    sdk: BatchClient, pool_id: str, job_id: str, tasks: list[bm.BatchTaskCreateOptions]
) -> list[bm.BatchTask]:
    sdk.create_job(bm.BatchJobCreateOptions(id=job_id, pool_info=bm.BatchPoolInfo(pool_id=pool_id)))
    sdk.create_tasks(job_id, tasks)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        counts = sdk.get_job_task_counts(job_id).task_counts
        if counts.completed >= len(tasks):
            break
        time.sleep(0.2)
    done = list(sdk.list_tasks(job_id))
    failed = [t.id for t in done if t.execution_info is None or t.execution_info.result != "success"]
    if failed or len(done) != len(tasks):
        raise RuntimeError(f"job {job_id}: {len(done)} tasks listed, failed: {failed[:5]}")
    return done


def _phase_lines(log_path: Path) -> dict[str, dict[str, float]]:
    phases: dict[str, dict[str, float]] = {}
    for m in _PHASE_LINE.finditer(log_path.read_text(errors="replace")):
        parts = dict(p.rsplit(" ", 2)[:2] for p in m.group("phases").split(", ") if p)
        phases[m.group("task")] = {k: float(v) for k, v in parts.items()}
    return phases


def _per_task(tasks: list[bm.BatchTask], log_phases: dict[str, dict[str, float]]) -> dict[str, list[float]]:
    """Milliseconds per task for each phase (and "slot time")."""
    out: dict[str, list[float]] = {p: [] for p in (*PHASES, "slot time")}
    by_node: dict[str, list[bm.BatchTask]] = {}
    for t in tasks:
        by_node.setdefault(t.node_info.node_id, []).append(t)
    for on_node in by_node.values():
        on_node.sort(key=lambda t: t.execution_info.start_time)
        prev_done: datetime | None = None
        for t in on_node:
            info = t.execution_info
            ready = max(t.creation_time, prev_done) if prev_done else t.creation_time
            out["queued -> started"].append(max(0.0, (info.start_time - ready).total_seconds() * 1000))
            out["completion recorded"].append(
                (t.state_transition_time - info.end_time).total_seconds() * 1000
            )
            out["slot time"].append((t.state_transition_time - info.start_time).total_seconds() * 1000)
            ph = log_phases.get(t.id, {})
            out["task directory"].append(ph.get("prepare", 0.0))
            out["resource files"].append(ph.get("download", 0.0))
            out["process"].append(ph.get("process", 0.0))
            out["output files"].append(ph.get("upload", 0.0))
            prev_done = t.state_transition_time
    return out


def _servers_cpu(srv: Servers) -> tuple[float, float]:
    """CPU seconds of localbatch itself (not its tasks) and of Azurite."""
    return (
        cpu_seconds(srv.localbatch.pid, with_children=False),
        cpu_seconds(srv.azurite.pid, with_children=False),
    )


def _p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1] if len(values) >= 2 else values[0]


def measure_phases(srv: Servers, pool_id: str, n: int) -> list[Row]:
    sdk = _sdk(srv)
    urls, container = _sas_urls(srv, n)
    stamp = time.strftime("%H%M%S")
    cpu0 = _servers_cpu(srv)
    with_files = _run_job(
        sdk, pool_id, f"phases-files-{stamp}", [_task(f"f{i:04d}", urls[i], container) for i in range(n)]
    )
    cpu1 = _servers_cpu(srv)
    without = _run_job(
        sdk, pool_id, f"phases-bare-{stamp}", [_task(f"b{i:04d}", None, None) for i in range(n)]
    )
    cpu2 = _servers_cpu(srv)
    log_phases = _phase_lines(srv.localbatch.log_path)
    files_ms, bare_ms = _per_task(with_files, log_phases), _per_task(without, log_phases)
    rows = []
    for phase in (*PHASES, "slot time"):
        f, b = files_ms[phase], bare_ms[phase]
        rows.append(
            Row(
                f"task path ({n} tasks, 2 nodes x 1 slot): {phase}, median / p95 per task",
                f"{statistics.median(f):.1f} / {_p95(f):.1f} ms (1 resource + 2 output files)",
                f"{statistics.median(b):.1f} / {_p95(b):.1f} ms (no files)",
                "-",
                "(reported)",
                None,
            )
        )
    rows.append(
        Row(
            "task path: server CPU per task, localbatch (without its tasks) / Azurite",
            f"{(cpu1[0] - cpu0[0]) / n * 1000:.1f} / {(cpu1[1] - cpu0[1]) / n * 1000:.1f} ms (files)",
            f"{(cpu2[0] - cpu1[0]) / n * 1000:.1f} / {(cpu2[1] - cpu1[1]) / n * 1000:.1f} ms (no files)",
            "-",
            "(reported)",
            None,
        )
    )
    overhead = statistics.median(files_ms["slot time"]) - statistics.median(bare_ms["slot time"])
    rows.append(
        Row(
            "task path: file overhead per task (median slot time, files minus no files)",
            f"{overhead:.1f} ms",
            "-",
            "-",
            f"<= {OVERHEAD_GOAL_MS:.0f} ms",
            overhead <= OVERHEAD_GOAL_MS,
        )
    )
    return rows


def _spread(values: list[float], fmt: str) -> str:
    """``median (min-max)`` of ``values``, each formatted with ``fmt``."""
    return f"{statistics.median(values):{fmt}} ({min(values):{fmt}}-{max(values):{fmt}})"


def measure_e2e(
    srv: Servers, work: Path, rounds: int, packs: tuple[str, ...] = PACKS, before: Path | None = None
) -> list[Row]:
    """The end to end rows, one per ``--pack`` mode in ``packs``: each round runs the floor, then
    ``runner submit --no-cache --pack MODE`` for each mode, so every ratio is against the floor
    of its own round. With ``before`` (another checkout), each mode also runs that checkout's
    runner right before this one's, against the same servers: a before/after row per mode."""
    inputs = input_files(E2E_FILES)
    files = sorted(inputs.glob("*.txt"))
    outputs_file = work / "outputs.json"
    write_file(outputs_file, srv.outputs)
    warm = work / "warm-inputs"
    warm.mkdir()
    for f in files[:2]:
        (warm / f.name).write_bytes(f.read_bytes()[:10_000])
    (work / "warm").mkdir()
    run_runner(srv, warm, outputs_file, work / "warm", job_id="warm")
    variants = [(p, None) for p in packs]
    if before is not None:
        variants = [v for p in packs for v in ((f"{p} (before)", before), (p, None))]
    ours: dict[str, list[tuple[float, float]]] = {name: [] for name, _ in variants}
    floor: list[tuple[float, float]] = []
    loads: list[float] = []
    for r in range(rounds):  # alternated: the ratio of a round is less sensitive to load than its times
        loads.append(os.getloadavg()[0])
        (work / f"floor{r}").mkdir()
        floor.append(run_floor(files, work / f"floor{r}")[:2])
        for v, (name, tree) in enumerate(variants):
            pack = name.split()[0]
            run_dir = work / f"e2e{r}-{v}"
            run_dir.mkdir()
            job = f"e2e{r}-{v}"
            ours[name].append(
                run_runner(srv, inputs, outputs_file, run_dir, job_id=job, pack=pack, tree=tree)[:2]
            )
    cpu_floor = statistics.median(f[1] for f in floor)
    rows = []
    for pack, _ in variants:
        ratios = [o[0] / f[0] for o, f in zip(ours[pack], floor, strict=True)]
        ratio = statistics.median(ratios)
        cpu_ours = statistics.median(o[1] for o in ours[pack])
        rows.append(
            Row(
                f"end to end: {E2E_FILES} x 1 MB, runner submit --pack {pack} (warm local target, 2 nodes) "
                f"vs xargs -P 2 nodetask + merge ({rounds} rounds alternated, load {_spread(loads, '.1f')}: "
                "median (min-max))",
                f"{_spread([o[0] for o in ours[pack]], '.1f')} s ({cpu_ours:.0f} CPU-s)",
                f"{_spread([f[0] for f in floor], '.1f')} s ({cpu_floor:.0f} CPU-s)",
                f"{_spread(ratios, '.2f')}x",
                f"<= {E2E_GOAL}x",
                ratio <= E2E_GOAL,
            )
        )
    return rows


def run(
    quick: bool,
    e2e: bool = True,
    phases: bool = True,
    rounds: int | None = None,
    before: Path | None = None,
    packs: tuple[str, ...] = PACKS,
) -> list[Row]:
    n = 30 if quick else 60
    pool = PoolSpec()
    rows: list[Row] = []
    with _debug_log(), local_servers(pool, prefix="bench-taskpath-") as srv:
        wait_nodes_idle(Batch(srv.outputs), pool.pool_id, pool.dedicated_nodes)
        if phases:
            rows += measure_phases(srv, pool.pool_id, n)
        if not e2e:
            return rows
        with tempfile.TemporaryDirectory(prefix="bench-taskpath-work-") as tmp:
            rows += measure_e2e(
                srv, Path(tmp), rounds=rounds or (1 if quick else 3), before=before, packs=packs
            )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--phases-only", action="store_true", help="skip the end to end ratio")
    parser.add_argument("--e2e-only", action="store_true", help="skip the phases")
    parser.add_argument("--rounds", type=int, default=None, help="end to end rounds (default 3, quick 1)")
    parser.add_argument(
        "--before", type=Path, default=None, help="another checkout: its runner runs beside this one's"
    )
    parser.add_argument(
        "--packs", default=",".join(PACKS), help="--pack modes of the end to end, comma-separated"
    )
    args = parser.parse_args()
    from run import render  # bench/run.py's table

    rows = run(
        args.quick,
        e2e=not args.phases_only,
        phases=not args.e2e_only,
        rounds=args.rounds,
        before=args.before,
        packs=tuple(args.packs.split(",")),
    )
    print(render(rows, markdown=True))  # type: ignore[arg-type]
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
