"""Run every benchmark and print one table: case, ours, baseline, ratio, goal, met.

Benchmarks are not tests: nothing here asserts. Each benchmark module exposes
``run(quick: bool) -> list[Row]`` where a row has the attributes ``case``,
``ours``, ``baseline``, ``ratio``, ``goal`` and ``met`` (strings, and a bool or
``None`` for "not applicable / skipped"). This script imports them one by one,
so one failing benchmark is reported as such and does not hide the others.

Usage: ``python bench/run.py [--quick] [--only NAME ...] [--markdown]``
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import platform
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))
sys.path.insert(0, str(BENCH_DIR.parent))

# Order of the table; each entry is a module under bench/.
BENCHMARKS = [
    "bench_nodetask",
    "bench_localbatch",
    "bench_submission",
    "bench_monitoring",
    "bench_e2e",
    "bench_cache",
    "bench_taskpath",
    "bench_latency",
    "bench_scale",
    "bench_report",
    "bench_packing",
]


@dataclass(frozen=True)
class Row:
    case: str
    ours: str
    baseline: str
    ratio: str
    goal: str
    met: bool | None


def _as_row(obj: Any) -> Row:
    return Row(str(obj.case), str(obj.ours), str(obj.baseline), str(obj.ratio), str(obj.goal), obj.met)


def machine_line() -> str:
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores, {mem_gib:.0f} GiB, "
        f"Python {platform.python_version()}"
    )


def render(rows: list[Row], markdown: bool) -> str:
    headers = ["case", "ours", "baseline", "ratio", "goal", "met"]
    cells = [
        [r.case, r.ours, r.baseline, r.ratio, r.goal, {True: "yes", False: "NO", None: "n/a"}[r.met]]
        for r in rows
    ]
    if markdown:
        lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
        lines += ["| " + " | ".join(c) + " |" for c in cells]
        return "\n".join(lines)
    widths = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h) for i, h in enumerate(headers)]
    fmt = "  ".join("{:<" + str(w) + "}" for w in widths)
    out = [fmt.format(*headers), fmt.format(*("-" * w for w in widths))]
    out += [fmt.format(*c) for c in cells]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, under 2 minutes in total")
    parser.add_argument("--only", nargs="*", default=None, help="benchmark modules to run")
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    rows: list[Row] = []
    started = time.monotonic()
    for name in BENCHMARKS:
        if args.only and name not in args.only:
            continue
        t0 = time.monotonic()
        print(f"== {name} ...", file=sys.stderr, flush=True)
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                rows.append(Row(name, "-", "-", "-", "-", None))
                print(f"   {name}: not present", file=sys.stderr)
                continue
            raise
        try:
            rows.extend(_as_row(r) for r in module.run(quick=args.quick))
        except Exception:  # one broken benchmark must not hide the others
            traceback.print_exc()
            rows.append(Row(f"{name} (FAILED, see stderr)", "-", "-", "-", "-", False))
        print(f"   {name}: {time.monotonic() - t0:.1f}s", file=sys.stderr, flush=True)

    print(
        f"Machine: {machine_line()}; mode: {'quick' if args.quick else 'full'}; "
        f"total {time.monotonic() - started:.0f}s"
    )
    print(render(rows, args.markdown))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
