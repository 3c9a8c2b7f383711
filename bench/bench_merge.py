"""Timing of ``nodetask merge`` over packed results (not a test; not in ``bench/run.py``).

Builds (in a temporary directory) ``--packs`` results tars of ``--files`` files each, the way a
packed job's nodes make them (``nodetask pack`` tar mode over generated text), names them as a
merge task's resource files (``counts/p<k>.<lo>-<hi>.tar``), then runs the merge as a node does
(``python3 -S nodetask.pyz merge counts``) ``--repeat`` times and prints the fastest CPU time
(user + system of the process) and wall time.

``python bench/bench_merge.py [--packs 200] [--files 50] [--repeat 3]``
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
for _p in (str(REPO), str(BENCH_DIR)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

from textgen import generate  # noqa: E402

from nodetask.bundle import RESULTS_TAR, write_tar_bytes  # noqa: E402
from nodetask.pack import build_pyz  # noqa: E402
from nodetask.packed import CountOptions  # noqa: E402
from nodetask.tarpack import run_tar_pack  # noqa: E402


def build_counts(root: Path, packs: int, files: int) -> Path:
    """``root/counts`` holding ``packs`` results tars of ``files`` counted files each."""
    counts = root / "counts"
    counts.mkdir(parents=True)
    opts = CountOptions(10, False, 1, 1 << 20, 1 << 30)
    text = generate(root / "text", files * 4096, seed=1).read_bytes()  # ~4 KB of Zipf-like text per file
    for k in range(packs):
        lo = k * files + 1
        members = [
            (f"{fid}/f{fid}.txt", text[(fid % files) * 4096 : (fid % files + 1) * 4096])
            for fid in range(lo, lo + files)
        ]
        write_tar_bytes(root / "in.tar", members)
        run_tar_pack(root / "in.tar", root / "out", opts, {})
        (root / "out" / RESULTS_TAR).rename(counts / f"p{k + 1}.{lo}-{lo + files - 1}.tar")
    return counts


def time_merge(pyz: Path, work: Path) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of one ``nodetask merge counts`` process."""
    argv = ["python3", "-S", str(pyz), "merge", "counts", "--numwords", "10", "--output-dir", "out-m"]
    start = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"merge failed: {proc.stderr.read().decode() if proc.stderr else ''}")
    return usage.ru_utime + usage.ru_stime, wall


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--packs", type=int, default=200)
    p.add_argument("--files", type=int, default=50)
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-merge-") as tmp:
        work = Path(tmp)
        build_counts(work, args.packs, args.files)
        pyz = build_pyz(work / "nodetask.pyz")
        runs = [time_merge(pyz, work) for _ in range(args.repeat)]
    cpu, wall = min(r[0] for r in runs), min(r[1] for r in runs)
    n = args.packs * args.files
    what = f"merge of {n:,} counts members in {args.packs} tars"
    print(f"{what}: CPU {cpu:.2f} s, wall {wall:.2f} s (best of {len(runs)})")


if __name__ == "__main__":
    main()
