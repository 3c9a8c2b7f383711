"""Where a 60 x 1 MB ``runner submit`` on the warm local target spends its time (issue 18; not a test).

One private local target (2 nodes x 1 slot, idle before the clock starts, one
small submit before so the node code is there). Each run is the real CLI in a
subprocess (:mod:`timeline_hooks` time-stamps its steps), ``--no-cache`` and
the ``--pack`` given. While it runs, a thread samples every 50 ms the CPU of
the runner, of localbatch itself, of its tasks (localbatch's reaped children)
and of Azurite, and the machine's busy CPU (``/proc/stat``: the other users of
this shared machine are the rest). Printed per run: the timeline (seconds from
the command's start) and the CPU of each process in each window:

* ``start``: command start -> first per-file task starts;
* ``tasks``: first per-file task starts -> last per-file task ends;
* ``gap``: last per-file task ends -> merge starts;
* ``merge``: merge starts -> merge ends;
* ``end``: merge ends -> the runner exits.

``python bench/timeline_e2e.py [--pack auto|none] [--runs N]``.
"""

from __future__ import annotations

import argparse
import bisect
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
for _p in (str(BENCH_DIR.parent), str(BENCH_DIR)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

from bench_e2e import input_files, run_runner, submit_args  # noqa: E402
from harness import Servers, local_servers, wait_nodes_idle  # noqa: E402

from runner.batch import Batch  # noqa: E402
from runner.batch_types import TaskInfo  # noqa: E402
from runner.outputs import write_file  # noqa: E402
from runner.pool_spec import PoolSpec  # noqa: E402
from runner.tasks import MERGE_TASK_ID  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")
HOOKS = BENCH_DIR / "timeline_hooks.py"


def _stat(pid: int) -> tuple[float, float]:
    """(own CPU s, reaped children's CPU s) of ``pid``; zeros once it is gone."""
    try:
        f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0, 0.0
    return (int(f[11]) + int(f[12])) / TICK, (int(f[13]) + int(f[14])) / TICK


def _machine_busy() -> float:
    """Busy CPU seconds of the whole machine since boot."""
    f = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = f[3] + f[4]
    return (sum(f[:8]) - idle) / TICK


@dataclass
class Sample:
    t: float
    runner: float
    localbatch: float
    tasks: float
    azurite: float
    machine: float


class Sampler(threading.Thread):
    def __init__(self, srv: Servers) -> None:
        super().__init__(daemon=True)
        self.srv = srv
        self.runner_pid = 0
        self.runner_cpu = 0.0
        self.samples: list[Sample] = []
        self.stop = threading.Event()

    def sample(self) -> None:
        lb, kids = _stat(self.srv.localbatch.pid)
        if self.runner_pid:
            own = _stat(self.runner_pid)[0]
            self.runner_cpu = max(self.runner_cpu, own)
        az = _stat(self.srv.azurite.pid)[0]
        self.samples.append(Sample(time.time(), self.runner_cpu, lb, kids, az, _machine_busy()))

    def run(self) -> None:
        while not self.stop.is_set():
            self.sample()
            time.sleep(0.05)

    def at(self, t: float) -> Sample:
        i = bisect.bisect_left([s.t for s in self.samples], t)
        return self.samples[min(i, len(self.samples) - 1)]


def _events(path: Path) -> list[tuple[float, str, str]]:
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        t, event, detail = line.split("\t", 2)
        out.append((float(t), event, detail))
    return out


def one_run(srv: Servers, inputs: Path, outputs_file: Path, work: Path, pack: str, job_id: str) -> None:
    events_file = work / "events.tsv"
    dest = work / "results"
    args = submit_args(outputs_file, inputs, dest, job_id, pack)
    cmd = [sys.executable, str(HOOKS), str(events_file), *args]
    sampler = Sampler(srv)
    sampler.sample()
    sampler.start()
    t0 = time.time()
    proc = subprocess.Popen(cmd, cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    sampler.runner_pid = proc.pid
    _, err = proc.communicate()
    t_exit = time.time()
    sampler.sample()
    sampler.stop.set()
    sampler.join()
    if proc.returncode != 0:
        raise RuntimeError(f"runner exited {proc.returncode}: {err[-2000:]!r}")
    tasks = Batch(srv.outputs).list_tasks(job_id)
    report(t0, t_exit, _events(events_file), tasks, sampler)


def _span(events: list[tuple[float, str, str]], name: str) -> tuple[float, float] | None:
    starts = [t for t, e, _ in events if e == f"{name}.start"]
    ends = [t for t, e, _ in events if e == f"{name}.end"]
    return (min(starts), max(ends)) if starts and ends else None


def report(
    t0: float, t_exit: float, events: list[tuple[float, str, str]], tasks: list[TaskInfo], s: Sampler
) -> None:
    def rel(t: float) -> str:
        return f"{t - t0:6.2f}"

    files = [t for t in tasks if not t.id.startswith(MERGE_TASK_ID)]
    merge = next(t for t in tasks if t.id == MERGE_TASK_ID)
    f_start = min(t.start_time.timestamp() for t in files if t.start_time)
    f_end = max(t.end_time.timestamp() for t in files if t.end_time)
    assert merge.start_time and merge.end_time
    m_start, m_end = merge.start_time.timestamp(), merge.end_time.timestamp()
    print(f"--- {len(files)} per-file tasks; total {t_exit - t0:.2f} s")
    marks = [(t, e) for t, e, _ in events if e in ("main", "imported", "exit")]
    for name in ("upload", "ensure_job", "add_tasks", "monitor", "collect", "download"):
        span = _span(events, name)
        if span:
            marks += [(span[0], f"{name} start"), (span[1], f"{name} end")]
    items = [(t, d) for t, e, d in events if e == "item.end" and "/" in d]
    marks += [
        (f_start, "first file task starts"),
        (f_end, "last file task ends"),
        (m_start, "merge starts"),
        (m_end, "merge ends"),
        (t_exit, "runner exited"),
    ]
    for t, what in sorted(marks):
        print(f"  {rel(t)}  {what}")
    print(f"  downloads: {len(items)} items")
    windows = [
        ("start", t0, f_start),
        ("tasks", f_start, f_end),
        ("gap", f_end, m_start),
        ("merge", m_start, m_end),
        ("end", m_end, t_exit),
    ]
    print("  window     secs  runner  localbatch  tasks  azurite  others (machine busy - ours)")
    for name, a, b in windows:
        sa, sb = s.at(a), s.at(b)
        d = [
            sb.runner - sa.runner,
            sb.localbatch - sa.localbatch,
            sb.tasks - sa.tasks,
            sb.azurite - sa.azurite,
        ]
        others = (sb.machine - sa.machine) - sum(d)
        print(f"  {name:8s} {b - a:6.2f}  {d[0]:6.2f}  {d[1]:10.2f}  {d[2]:5.2f}  {d[3]:7.2f}  {others:6.2f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pack", default="auto")
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    inputs = input_files(60)
    pool = PoolSpec()
    with local_servers(pool, prefix="bench-timeline-") as srv, tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        wait_nodes_idle(Batch(srv.outputs), pool.pool_id, pool.dedicated_nodes)
        outputs_file = work / "outputs.json"
        write_file(outputs_file, srv.outputs)
        warm = work / "warm-inputs"
        warm.mkdir()
        for f in sorted(inputs.glob("*.txt"))[:2]:
            (warm / f.name).write_bytes(f.read_bytes()[:10_000])
        (work / "warm").mkdir()
        run_runner(srv, warm, outputs_file, work / "warm", job_id="warm")
        for r in range(args.runs):
            for pack in args.pack.split(","):
                run_dir = work / f"run{r}-{pack}"
                run_dir.mkdir()
                print(f"=== pack {pack}, run {r}, load {os.getloadavg()[0]:.1f}")
                one_run(srv, inputs, outputs_file, run_dir, pack, f"tl{r}{pack}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
