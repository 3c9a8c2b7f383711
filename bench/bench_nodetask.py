"""Benchmark of nodetask against the tutorial's algorithm and ``wc -w`` (not a test).

Generates (once, cached in ``bench/.data/``) a Zipf-like text of ``--size-mb``
MB (default 200; ``--quick``: 20) with :mod:`textgen`, then runs, each as a
separate process: nodetask as it runs on a node (the zipapp from
:func:`nodetask.pack.build_pyz`, default ``--workers``); the tutorial's
algorithm (:data:`TUTORIAL`: read the whole file, ``split()``, strip
punctuation, ``Counter.most_common``); and ``wc -w``, the floor of one pass.

Peak RSS is measured for the whole process tree: a sampler thread sums
``VmRSS`` of the process and all its descendants every 10 ms (nodetask's
worker processes are children of the measured process); the figure reported
is the larger of that sampled sum and ``ru_maxrss`` from ``os.wait4`` (the
largest single process of the tree). Summing RSS counts copy-on-write pages
shared by forked workers more than once, so it errs on the high side.
CPU time is user + system from ``os.wait4`` (includes reaped descendants).

Interface for ``bench/run.py``::

    run(quick: bool, size_mb: int | None = None, repeat: int = 1) -> list[Row]

    Row(case: str, ours: str, baseline: str, ratio: str, goal: str, met: bool)

All but ``met`` are display strings: ``ours``/``baseline`` with units,
``ratio`` like ``"2.31x"``, the figure the goal is stated in (higher is
better for the "x faster"/"x less" rows, lower is better for the "within Nx
of wc" row); ``met`` says whether the goal holds.

``python bench/bench_nodetask.py [--quick] [--size-mb N] [--repeat R]``
prints the measurements and the rows as tables. With ``repeat`` > 1 each
command runs R times and its fastest wall time counts (the machine may be
shared); peak RSS and CPU time are the highest seen.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
DATA_DIR = BENCH_DIR / ".data"
for _p in (str(REPO), str(BENCH_DIR)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

from textgen import generate  # noqa: E402

from nodetask.pack import build_pyz  # noqa: E402

SEED = 1
NUMWORDS = 10
SAMPLE_INTERVAL_S = 0.01
GOAL_SPEEDUP = 4.0
GOAL_RSS_MB = 300.0
GOAL_RSS_FRACTION = 10.0
GOAL_WC_FACTOR = 5.0

#: The tutorial's algorithm (python_tutorial_task.py), minus the upload; prints the top N as JSON.
TUTORIAL = """
import collections, json, string, sys
with open(sys.argv[1], encoding="utf-8", errors="replace") as f:
    words = [word.strip(string.punctuation) for word in f.read().split()]
word_counts = collections.Counter(words)
print(json.dumps(word_counts.most_common(int(sys.argv[2]))))
"""


@dataclass(frozen=True)
class Row:
    """One line of the combined benchmark table (see the module docstring)."""

    case: str
    ours: str
    baseline: str
    ratio: str
    goal: str
    met: bool


@dataclass(frozen=True)
class Measurement:
    """Wall time, CPU time and peak RSS of one command's process tree."""

    label: str
    wall_s: float
    cpu_s: float
    peak_rss_mb: float
    stdout: str


def _rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _descendants(pid: int) -> list[int]:
    found: list[int] = []
    stack = [pid]
    while stack:
        p = stack.pop()
        found.append(p)
        try:
            tasks = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for tid in tasks:
            try:
                with open(f"/proc/{p}/task/{tid}/children", encoding="ascii") as f:
                    stack += [int(c) for c in f.read().split()]
            except OSError:
                continue
    return found


def measure(label: str, cmd: list[str]) -> Measurement:
    """Run ``cmd`` to completion; raise if it fails."""
    peak_kb = 0
    stop = threading.Event()

    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def sample() -> None:
        nonlocal peak_kb
        while not stop.is_set():
            peak_kb = max(peak_kb, sum(_rss_kb(p) for p in _descendants(proc.pid)))
            stop.wait(SAMPLE_INTERVAL_S)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    assert proc.stdout is not None and proc.stderr is not None
    out = proc.stdout.read()
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    stop.set()
    sampler.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{label} failed ({proc.returncode}): {err.decode(errors='replace')[-500:]}")
    peak_mb = max(peak_kb / 1024, usage.ru_maxrss / 1024)
    return Measurement(label, wall, usage.ru_utime + usage.ru_stime, peak_mb, out.decode("utf-8", "replace"))


def data_file(size_mb: int) -> Path:
    """The cached input of ``size_mb`` MB (10**6 bytes), generated on first use."""
    path = DATA_DIR / f"zipf-{size_mb}mb-seed{SEED}.txt"
    if not path.exists():
        print(f"generating {path} ...", file=sys.stderr)
        generate(path, size_mb * 1_000_000, SEED)
    return path


def _agree(ours_json: Path, tutorial_stdout: str) -> bool:
    ours = [tuple(x) for x in json.loads(ours_json.read_text(encoding="utf-8"))["top"]]
    theirs = [(w, c) for w, c in json.loads(tutorial_stdout) if w]
    return ours == sorted(theirs, key=lambda kv: (-kv[1], kv[0]))[: len(ours)]


def best_of(label: str, cmd: list[str], repeat: int) -> Measurement:
    """The fastest of ``repeat`` runs, with the highest peak RSS and CPU time seen in any of them."""
    runs = [measure(label, cmd) for _ in range(max(1, repeat))]
    fastest = min(runs, key=lambda m: m.wall_s)
    return Measurement(
        label, fastest.wall_s, max(m.cpu_s for m in runs), max(m.peak_rss_mb for m in runs), fastest.stdout
    )


def measure_all(size_mb: int, repeat: int = 1) -> tuple[list[Measurement], bool]:
    """Run the three commands on the ``size_mb`` input; also say whether the top words agree."""
    path = data_file(size_mb)
    with tempfile.TemporaryDirectory() as tmp:
        pyz = build_pyz(Path(tmp) / "nodetask.pyz")
        out = Path(tmp) / "out"
        ours = best_of(
            "nodetask (zipapp)",
            [sys.executable, str(pyz), "--filepath", str(path), "--numwords", str(NUMWORDS),
             "--output-dir", str(out)],
            repeat,
        )  # fmt: skip
        tutorial = best_of(
            "tutorial algorithm", [sys.executable, "-c", TUTORIAL, str(path), str(NUMWORDS + 1)], repeat
        )
        wc = best_of("wc -w", ["wc", "-w", str(path)], repeat)
        agree = _agree(out / f"{path.stem}_counts.json", tutorial.stdout)
    return [ours, tutorial, wc], agree


def rows_from(ours: Measurement, tutorial: Measurement, wc: Measurement, size_mb: int) -> list[Row]:
    speedup = tutorial.wall_s / ours.wall_s
    rss_fraction = tutorial.peak_rss_mb / ours.peak_rss_mb
    wc_factor = ours.wall_s / wc.wall_s
    return [
        Row(
            f"nodetask vs tutorial, wall time ({size_mb} MB)",
            f"{ours.wall_s:.2f} s",
            f"{tutorial.wall_s:.2f} s",
            f"{speedup:.2f}x",
            f">= {GOAL_SPEEDUP:g}x faster",
            speedup >= GOAL_SPEEDUP,
        ),
        Row(
            f"nodetask vs tutorial, peak RSS ({size_mb} MB)",
            f"{ours.peak_rss_mb:.0f} MB",
            f"{tutorial.peak_rss_mb:.0f} MB",
            f"{rss_fraction:.1f}x",
            f"<= {GOAL_RSS_MB:g} MB and >= {GOAL_RSS_FRACTION:g}x less",
            ours.peak_rss_mb <= GOAL_RSS_MB and rss_fraction >= GOAL_RSS_FRACTION,
        ),
        Row(
            f"nodetask vs wc -w, wall time ({size_mb} MB)",
            f"{ours.wall_s:.2f} s",
            f"{wc.wall_s:.2f} s",
            f"{wc_factor:.2f}x",
            f"<= {GOAL_WC_FACTOR:g}x wc -w",
            wc_factor <= GOAL_WC_FACTOR,
        ),
    ]


def run(quick: bool, size_mb: int | None = None, repeat: int = 1) -> list[Row]:
    """Measure and return the goal rows (20 MB when ``quick``, else 200 MB, unless ``size_mb``)."""
    size = size_mb or (20 if quick else 200)
    (ours, tutorial, wc), _ = measure_all(size, repeat)
    return rows_from(ours, tutorial, wc, size)


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    fmt = " | ".join(f"{{:{'<' if i == 0 else '>'}{w}}}" for i, w in enumerate(widths))
    lines = [fmt.format(*header), "-+-".join("-" * w for w in widths)]
    return "\n".join([*lines, *(fmt.format(*r) for r in rows)])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="nodetask vs the tutorial's algorithm vs wc -w.")
    p.add_argument("--quick", action="store_true", help="20 MB instead of 200 MB.")
    p.add_argument("--size-mb", type=int, default=None, help="Input size in MB (overrides --quick).")
    p.add_argument("--repeat", type=int, default=1, help="Runs per command; the fastest counts (default 1).")
    args = p.parse_args(argv)
    size = args.size_mb or (20 if args.quick else 200)
    measurements, agree = measure_all(size, args.repeat)
    print(f"input: {data_file(size)} ({size} MB), {os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
    print(
        _table(
            ["command", "wall", "CPU", "peak RSS (tree)"],
            [
                [m.label, f"{m.wall_s:.2f} s", f"{m.cpu_s:.2f} s", f"{m.peak_rss_mb:.0f} MB"]
                for m in measurements
            ],
        )
    )
    print(f"top {NUMWORDS} words agree with the tutorial's: {'yes' if agree else 'NO'}\n")
    ours, tutorial, wc = measurements
    rows = rows_from(ours, tutorial, wc, size)
    print(
        _table(
            ["case", "ours", "baseline", "ratio", "goal", "met"],
            [[r.case, r.ours, r.baseline, r.ratio, r.goal, "yes" if r.met else "NO"] for r in rows],
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
