"""The result cache across jobs: a corpus submitted again, unchanged and with 1% changed (not a test).

Three ``runner submit --cache`` runs (the real CLI in a subprocess, wall time measured from
outside, start-up included), side by side in one run on one private local target started by
:func:`harness.local_servers`. localbatch runs under the ``azure-like`` weather
(localbatch/weather.py: per-task latency 0.2-0.5 s, task counts up to 3 s stale, 1% throttling
with Retry-After, 0.2% server errors, preemption, node loss), seeded, with node allocation and
boot delays set to 0 as in bench_packing (the pool exists, idle, before the clock starts):

* the first run computes every file and the corpus and fills the cache;
* the second, under a new job id, unchanged: goal at most 5% of the first run's wall time,
  0 Batch tasks (every file and the corpus from the cache);
* the third with 1% of the files changed: goal at most 10%; only those files (and the
  one delta merge, runner.delta_merge) run.

Each run downloads all results. Files of 4 KB, packed (``--pack auto``, the default), on
2 nodes x 4 slots; ``N`` = 1,000 (quick: 200; ``--files N``). Each run also prints, as it goes,
where its time went (the CLI's progress lines, timestamped from the start of the process).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
for _p in (str(BENCH_DIR.parent), str(BENCH_DIR)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

from harness import Row, local_servers, wait_nodes_idle  # noqa: E402

from localbatch.weather import PRESETS  # noqa: E402
from runner.batch import Batch  # noqa: E402
from runner.outputs import Outputs, write_file  # noqa: E402
from runner.pool_spec import PoolSpec  # noqa: E402

RUNNER = Path(sys.executable).with_name("runner")
FILE_BYTES = 4096
NODES, SLOTS = 2, 4
SEED = 7
WEATHER = {**PRESETS["azure-like"], "allocation_delay": 0, "boot_delay": 0}
WORDS = ["the", "of", "and", "batch", "azure", "node", "pool", "task", "job", "word", "count", "cache"]


def write_corpus(root: Path, n: int) -> list[Path]:
    rng = random.Random(SEED)
    paths = []
    for i in range(n):
        path = root / f"d{i % 10}" / f"f{i:05d}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        words: list[str] = []
        length = 0
        while length < FILE_BYTES:  # a running length: summing the list each time is quadratic
            words.append(rng.choice(WORDS))
            length += len(words[-1]) + 1
        path.write_text(" ".join(words)[:FILE_BYTES], encoding="utf-8")
        paths.append(path)
    return paths


@dataclass(frozen=True)
class Run:
    seconds: float
    tasks: int
    phases: list[str]
    corpus: bytes


def submit(outputs: Outputs, outputs_file: Path, corpus: Path, job: str, work: Path, extra: list[str]) -> Run:
    """One ``runner submit --cache``; its progress lines are timestamped as they arrive."""
    cmd = [str(RUNNER), "--outputs", str(outputs_file), "submit", str(corpus), "--cache", *extra]
    cmd += ["--job-id", job, "--dest", str(work / job), "--timeout", "900"]
    env = {**os.environ, "COLUMNS": "150"}
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd, cwd=work, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env
    )
    assert proc.stderr is not None
    phases = []
    for line in proc.stderr:
        if _phase(line):
            phases.append(f"{time.perf_counter() - t0:6.1f} s  {line.rstrip()}")
            print(f"   [{job}] {phases[-1][:140]}", file=sys.stderr, flush=True)
    code = proc.wait()
    elapsed = time.perf_counter() - t0
    if code != 0:
        raise RuntimeError(f"runner submit exited {code}: {phases[-5:]}")
    tasks = len(Batch(outputs).list_tasks(job))
    return Run(elapsed, tasks, phases, (work / job / "corpus_counts.json").read_bytes())


def _phase(line: str) -> bool:
    """The progress lines that mark a phase (not the results table)."""
    starts = ("job ", "inputs:", "tasks", "downloading", "cache:", "node code", "uploading", "corpus:")
    return line.startswith(starts) or "from cache" in line


def run(quick: bool, n_files: int | None = None, group: int | None = None) -> list[Row]:
    n = n_files or (200 if quick else 1000)
    extra = [] if group is None else ["--merge-group-size", str(group)]
    pool = PoolSpec(dedicated_nodes=NODES, task_slots_per_node=SLOTS)
    with tempfile.TemporaryDirectory(prefix="bench-cache-work-") as tmp:
        work = Path(tmp)
        files = write_corpus(work / "corpus", n)
        (work / "weather.json").write_text(json.dumps(WEATHER), encoding="utf-8")
        args = ["--weather", str(work / "weather.json"), "--weather-seed", str(SEED)]
        with local_servers(pool, prefix="bench-cache-", localbatch_args=args) as srv:
            wait_nodes_idle(Batch(srv.outputs), pool.pool_id, NODES, timeout=300)
            outputs_file = work / "outputs.json"
            write_file(outputs_file, srv.outputs)
            first = submit(srv.outputs, outputs_file, work / "corpus", "first", work, extra)
            same = submit(srv.outputs, outputs_file, work / "corpus", "same", work, extra)
            changed = files[::100]  # 1%
            for path in changed:
                path.write_text(path.read_text(encoding="utf-8") + " changed", encoding="utf-8")
            part = submit(srv.outputs, outputs_file, work / "corpus", "changed", work, extra)
    if same.corpus != first.corpus:
        raise RuntimeError("the unchanged rerun's corpus counts differ from the first run's")
    for name, r in (("first run", first), ("unchanged rerun", same), ("1% changed", part)):
        print(f"-- {name}: {r.seconds:.1f} s, {r.tasks} Batch task(s)", file=sys.stderr)
    setting = f"{n:,} files of 4 KB, packed, 2 nodes x 4 slots, azure-like weather (no allocation delay)"
    setting += "" if group is None else f", --merge-group-size {group}"
    return [
        Row(
            f"cache: same corpus again under a new job id ({setting})",
            f"{same.seconds:.1f} s, {same.tasks} Batch tasks",
            f"first run {first.seconds:.1f} s, {first.tasks} Batch tasks",
            f"{same.seconds / first.seconds:.1%}",
            "<= 5% of the first run, 0 tasks",
            same.seconds <= 0.05 * first.seconds and same.tasks == 0,
        ),
        Row(
            f"cache: 1% of the files changed ({len(changed)} of {n:,})",
            f"{part.seconds:.1f} s, {part.tasks} Batch tasks",
            f"first run {first.seconds:.1f} s",
            f"{part.seconds / first.seconds:.1%}",
            "<= 10% of the first run",
            part.seconds <= 0.10 * first.seconds,
        ),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--files", type=int, help="number of 4 KB files (default: 1,000; quick: 200)")
    parser.add_argument(
        "--merge-group-size",
        type=int,
        help="passed to every run: e.g. 100 with --files 400 gives the merge levels of 2,000 files",
    )
    args = parser.parse_args()
    for row in run(args.quick, args.files, args.merge_group_size):
        print(f"{row.case}\n  {row.ours} | {row.baseline} | {row.ratio} | {row.goal} | met: {row.met}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
