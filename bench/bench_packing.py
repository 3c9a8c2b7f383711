"""Packing small files into tasks (issue 16): ``--pack auto`` vs ``--pack none`` (not a test).

Both runs are the real CLI in a subprocess (``runner --outputs FILE -q submit DIR --numwords 10
--pack MODE``), side by side against one private Azurite + localbatch whose pool has 2 nodes x
4 slots, waited for until idle before the clock starts. localbatch runs under the ``azure-like``
weather (localbatch/weather.py: per-task latency 0.2-0.5 s, task counts up to 3 s stale, 1%
throttling with Retry-After, 0.2% server errors, preemption, node loss) with node allocation
and boot delays set to 0: the pool exists before the clock starts, and a node that leaves comes
back at once instead of after the preset's 24-66 s, so a run measures the tasks' overhead and
not one unlucky node. The Batch requests are counted by a loopback proxy in front of localbatch.

Cases (full / quick / ``--files N`` / ``--large-files N``, 0 to leave a case out):

* N files of 4 KB (10,000 / 300): goal ``auto`` at least 20x faster than ``none``;
* 200 / 40 files of 1 MB (bench_e2e's corpus): goal ``auto`` not slower than ``none``.

Each row shows, per mode, the wall time of ``runner submit`` (upload to results), the Batch
requests it made in total, per Batch task and per input file, and the tasks. Each case also
checks that both runs give the same corpus-wide top words. ``--pack none`` costs about 0.1 s
per small file here (2 busy cores): size ``--files`` to the time you have. ``--none-files M``
(M < N) measures ``none`` on the first M/2 and the first M files only (``auto`` side by side on
the M files), and shows the N-file ``none`` time as an *estimate*: the straight line through
the two measured points (one task per file, so linear; the fixed costs of a run, start-up,
job and merge, are in the intercept, not scaled), next to ``auto`` measured on all N files.
"""

from __future__ import annotations

import argparse
import json
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

from bench_e2e import input_files  # noqa: E402
from harness import DATA_DIR, Row, Servers, TcpProxy, local_servers, port_of, wait_nodes_idle  # noqa: E402
from harness import with_endpoints as moved  # noqa: E402
from textgen import generate  # noqa: E402

from localbatch.weather import PRESETS  # noqa: E402
from runner.batch import Batch  # noqa: E402
from runner.outputs import write_file  # noqa: E402
from runner.pool_spec import PoolSpec  # noqa: E402

SMALL_BYTES = 4096
NUMWORDS = 10
SPEEDUP_GOAL = 20.0
RUNNER = Path(sys.executable).with_name("runner")
WEATHER = {**PRESETS["azure-like"], "allocation_delay": 0, "boot_delay": 0}


def small_files(n: int) -> Path:
    """A directory of ``n`` files of about 4 KB each, cut at whitespace from generated text (cached)."""
    out = DATA_DIR / f"pack-{n}x4kb"
    if out.is_dir() and len(list(out.glob("*.txt"))) == n:
        return out
    source = DATA_DIR / f"pack-source-{n}.txt"
    if not source.exists():
        generate(source, n * SMALL_BYTES + SMALL_BYTES, seed=3)
    data = source.read_bytes()
    out.mkdir(parents=True, exist_ok=True)
    start = 0
    for i in range(1, n + 1):
        cut = data.rfind(b" ", start, start + SMALL_BYTES) + 1 or start + SMALL_BYTES
        (out / f"s{i:05d}.txt").write_bytes(data[start:cut])
        start = cut
    return out


@dataclass(frozen=True)
class Run:
    seconds: float
    requests: int
    tasks: int
    files: int
    top: list[object]


def submit(srv: Servers, proxy: TcpProxy, inputs: Path, work: Path, mode: str) -> Run:
    """One ``runner submit --pack MODE`` through the counting proxy."""
    outputs_file = work / "outputs.json"
    write_file(outputs_file, moved(srv.outputs, batch_port=proxy.port))
    job = f"pack-{mode}-{inputs.name}"
    dest = work / job
    cmd = [str(RUNNER), "--outputs", str(outputs_file), "-q", "submit", str(inputs), "--numwords",
           str(NUMWORDS), "--dest", str(dest), "--job-id", job, "--pack", mode, "--no-cache"]  # fmt: skip
    before = proxy.snapshot().requests
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=work, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - t0
    requests = proxy.snapshot().requests - before
    if proc.returncode != 0:
        raise RuntimeError(f"runner submit --pack {mode} exited {proc.returncode}: {proc.stderr[-2000:]}")
    tasks = len(Batch(srv.outputs).list_tasks(job))
    top = json.loads((dest / "corpus_counts.json").read_text(encoding="utf-8"))["top"]
    files = len(list(inputs.glob("*.txt")))
    print(f"  --pack {mode}, {files:,} files: {elapsed:.1f} s, {requests:,} Batch requests", file=sys.stderr)
    return Run(elapsed, requests, tasks, files, top)


def first_files(inputs: Path, m: int) -> Path:
    """A directory holding copies of the first ``m`` files of ``inputs`` (cached)."""
    out = inputs.with_name(f"{inputs.name}-first-{m}")
    names = sorted(p.name for p in inputs.glob("*.txt"))[:m]
    if not (out.is_dir() and len(list(out.glob("*.txt"))) == len(names)):
        out.mkdir(parents=True, exist_ok=True)
        for name in names:
            (out / name).write_bytes((inputs / name).read_bytes())
    return out


def estimated(half: Run, sample: Run, files: int) -> Run:
    """``--pack none`` at ``files`` files, extrapolated on the line through two smaller runs."""

    def line(a: float, b: float) -> float:
        return b + (b - a) / (sample.files - half.files) * (files - sample.files)

    return Run(line(half.seconds, sample.seconds), round(line(half.requests, sample.requests)),
               round(line(half.tasks, sample.tasks)), files, sample.top)  # fmt: skip


def _case(srv: Servers, proxy: TcpProxy, inputs: Path, work: Path) -> tuple[Run, Run]:
    none = submit(srv, proxy, inputs, work, "none")
    auto = submit(srv, proxy, inputs, work, "auto")
    if none.top != auto.top:
        raise RuntimeError(f"--pack auto and --pack none disagree on the corpus top words of {inputs.name}")
    return auto, none


def _row(what: str, auto: Run, none: Run, goal: str, met: bool | None) -> Row:
    def shown(r: Run) -> str:
        per_task = r.requests / max(r.tasks, 1)
        per_file = r.requests / max(r.files, 1)
        return (
            f"{r.seconds:.1f} s, {r.requests:,} Batch requests ({per_task:.1f} per task, "
            f"{per_file:.2f} per file), {r.tasks:,} tasks"
        )

    return Row(what, "auto: " + shown(auto), "none: " + shown(none), f"{none.seconds / auto.seconds:.1f}x",
               goal, met)  # fmt: skip


def run(
    quick: bool, n_small: int | None = None, n_large: int | None = None, none_files: int | None = None
) -> list[Row]:
    """The rows of both cases; ``n_small``/``n_large`` override the sizes (0: leave the case out);
    ``none_files`` measures ``--pack none`` on that many of the small files only (an estimate row)."""
    n = (300 if quick else 10_000) if n_small is None else n_small
    n_large = (40 if quick else 200) if n_large is None else n_large
    pool = PoolSpec(dedicated_nodes=2, task_slots_per_node=4)
    with tempfile.TemporaryDirectory(prefix="bench-pack-work-") as tmp:
        work = Path(tmp)
        (work / "weather.json").write_text(json.dumps(WEATHER), encoding="utf-8")
        args = ["--weather", str(work / "weather.json")]
        with local_servers(pool, prefix="bench-pack-", localbatch_args=args) as srv:
            wait_nodes_idle(Batch(srv.outputs), pool.pool_id, pool.dedicated_nodes, timeout=300)
            with TcpProxy(port_of(srv.outputs.batch_account_url), count=True) as proxy:
                corpus = small_files(n) if n else None
                sampled = none_files is not None and corpus is not None and none_files < n
                if sampled and corpus is not None and none_files is not None:
                    half = submit(srv, proxy, first_files(corpus, none_files // 2), work, "none")
                    sample = _case(srv, proxy, first_files(corpus, none_files), work)
                    whole = submit(srv, proxy, corpus, work, "auto")
                small = None if corpus is None or sampled else _case(srv, proxy, corpus, work)
                large = _case(srv, proxy, input_files(n_large), work) if n_large else None
    where = "azure-like weather, 2 nodes x 4 slots"
    rows = []
    if sampled:
        rows += _sampled_rows(n, none_files or 0, (half, *sample), whole, where)
    if small is not None:
        s_auto, s_none = small
        rows.append(
            _row(
                f"packing: {n:,} files of 4 KB, --pack auto vs none ({where})",
                s_auto,
                s_none,
                f">= {SPEEDUP_GOAL:g}x faster",
                s_none.seconds / s_auto.seconds >= SPEEDUP_GOAL,
            )
        )
    if large is not None:
        l_auto, l_none = large
        rows.append(
            _row(
                f"packing: {n_large} files of 1 MB, --pack auto vs none ({where})",
                l_auto,
                l_none,
                "auto not slower",
                l_auto.seconds <= l_none.seconds,
            )
        )
    return rows


def _sampled_rows(n: int, m: int, runs: tuple[Run, Run, Run], whole: Run, where: str) -> list[Row]:
    half, s_auto, s_none = runs
    guess = estimated(half, s_none, n)
    return [
        _row(f"packing: {m:,} files of 4 KB, --pack auto vs none ({where})", s_auto, s_none,
             "(measured side by side)", None),
        _row(f"packing: {n:,} files of 4 KB, --pack auto measured vs none ESTIMATED on the line through "
             f"{half.files:,} and {m:,} files ({where})", whole, guess, f">= {SPEEDUP_GOAL:g}x faster",
             guess.seconds / whole.seconds >= SPEEDUP_GOAL),
    ]  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--files", type=int, help="number of 4 KB files (default: 10,000; quick: 300; 0: none)"
    )
    parser.add_argument(
        "--large-files", type=int, help="number of 1 MB files (default: 200; quick: 40; 0: none)"
    )
    parser.add_argument(
        "--none-files", type=int, help="measure --pack none on the first M small files, scaled (estimate)"
    )
    args = parser.parse_args()
    for row in run(args.quick, args.files, args.large_files, args.none_files):
        print(row)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
