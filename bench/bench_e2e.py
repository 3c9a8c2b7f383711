"""End to end: ``runner submit`` on the local target vs. the floor on the same machine (not a test).

Inputs: N files of about 1 MB, cut at paragraph boundaries from the text
that :mod:`textgen` generates (cached under ``bench/.data/``; the 200 MB file
of the nodetask benchmark is reused when it is there, since the generator
gives the same bytes for the same arguments).

Ours: the real CLI in a subprocess, ``runner --outputs FILE -q submit DIR
--numwords 10 --dest DEST``, against a private Azurite + localbatch whose
pool is the default :class:`~runner.pool_spec.PoolSpec` (2 nodes, waited for
until idle before the clock starts, as a long-lived pool would be). The time
runs from the command's start to its exit, when every per-file report and
the corpus-wide merge are on disk.

Floor: the same work with no service at all: ``xargs -P 2`` runs ``python3
-m nodetask`` once per file (2 at a time, like the 2 nodes), then ``python3
-m nodetask merge``. The corpus-wide top words of both must be equal.

Full: N = 200. Quick: N = 40. Goal (issue 6): ours <= 1.5x the floor.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
for _p in (str(BENCH_DIR.parent), str(BENCH_DIR)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

from harness import (  # noqa: E402
    DATA_DIR,
    REPO,
    Row,
    Servers,
    cpu_seconds,
    local_servers,
    ratio_str,
    wait_nodes_idle,
)
from textgen import generate  # noqa: E402

from runner.batch import Batch  # noqa: E402
from runner.outputs import write_file  # noqa: E402
from runner.pool_spec import PoolSpec  # noqa: E402

GOAL = 1.5
FILE_BYTES = 1_000_000
NUMWORDS = 10
BIG_TEXT = DATA_DIR / "zipf-200mb-seed1.txt"  # bench_nodetask's cache: generate(path, 200 MB, seed=1)
RUNNER = Path(sys.executable).with_name("runner")


def input_files(n: int) -> Path:
    """A directory of ``n`` files of about 1 MB each (cached)."""
    out = DATA_DIR / f"e2e-{n}x1mb"
    if out.is_dir() and len(list(out.glob("*.txt"))) == n:
        return out
    source = BIG_TEXT
    if not source.exists() or source.stat().st_size < n * FILE_BYTES:
        source = DATA_DIR / f"zipf-{n}mb-seed1.txt"
        if not source.exists():
            generate(source, n * FILE_BYTES + FILE_BYTES, seed=1)
    tmp = out.with_name(out.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    with source.open("rb") as handle:
        rest = b""
        for i in range(1, n + 1):
            block = rest + handle.read(FILE_BYTES - len(rest))
            cut = block.rfind(b"\n\n") + 2
            if cut < 2:
                raise RuntimeError(f"no paragraph break in {source} near file {i}")
            (tmp / f"part{i:04d}.txt").write_bytes(block[:cut])
            rest = block[cut:]
    if out.exists():  # an incomplete earlier cut
        shutil.rmtree(out)
    tmp.replace(out)
    return out


def corpus_top(path: Path) -> list[list[object]]:
    return list(json.loads(path.read_text(encoding="utf-8"))["top"])


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_floor(files: list[Path], work: Path) -> tuple[float, float, Path]:
    """``xargs -P 2`` nodetask per file, then merge; returns (seconds, CPU seconds, corpus counts JSON)."""
    per_file, merged = work / "floor", work / "floor-merged"
    per_file.mkdir()
    merged.mkdir()
    env = dict(os.environ, PYTHONPATH=str(REPO))
    nodetask = ["python3", "-m", "nodetask", "--numwords", str(NUMWORDS), "--output-dir", str(per_file)]
    cpu0 = children_cpu()
    t0 = time.perf_counter()
    subprocess.run(
        ["xargs", "-0", "-P", "2", "-n", "1", *nodetask, "--filepath"],
        input=b"\0".join(os.fsencode(f) for f in files),
        env=env,
        capture_output=True,
        check=True,
    )
    subprocess.run(
        [
            "python3",
            "-m",
            "nodetask",
            "merge",
            "--numwords",
            str(NUMWORDS),
            str(per_file),
            "--output-dir",
            str(merged),
        ],
        env=env,
        capture_output=True,
        check=True,
    )
    return time.perf_counter() - t0, children_cpu() - cpu0, merged / "corpus_counts.json"


def submit_args(outputs_file: Path, inputs: Path, dest: Path, job_id: str, pack: str | None) -> list[str]:
    """The benchmarked ``runner`` arguments: quiet, ``--no-cache`` (a second run of the same
    inputs would take every result from the cache), ``--pack pack`` when given."""
    pack_args = ["--pack", pack] if pack else []
    return ["--outputs", str(outputs_file), "-q", "submit", str(inputs), "--numwords", str(NUMWORDS),
            "--dest", str(dest), "--job-id", job_id, "--no-cache", *pack_args]  # fmt: skip


def run_runner(
    srv: Servers,
    inputs: Path,
    outputs_file: Path,
    work: Path,
    *,
    job_id: str = "e2e",
    pack: str | None = None,
    tree: Path | None = None,
) -> tuple[float, float, Path]:
    """``runner submit --no-cache`` in a subprocess (``--pack pack`` when given); returns (seconds,
    CPU seconds, corpus counts JSON). Without ``--no-cache`` a second run of the same inputs on
    the same target would take every result from the result cache and run no task.

    The CPU time is the runner's, its servers' and the tasks' (localbatch's waited-for children).
    ``tree``: run the runner of that checkout instead (first on ``PYTHONPATH``; the servers stay).
    """
    dest = work / "results"
    cmd = [str(RUNNER), *submit_args(outputs_file, inputs, dest, job_id, pack)]
    servers_cpu = cpu_seconds(srv.localbatch.pid) + cpu_seconds(srv.azurite.pid)
    cpu0 = children_cpu()
    t0 = time.perf_counter()
    env = None if tree is None else dict(os.environ, PYTHONPATH=str(tree))
    proc = subprocess.run(cmd, cwd=work, capture_output=True, text=True, check=False, env=env)
    elapsed = time.perf_counter() - t0
    cpu = children_cpu() - cpu0
    cpu += cpu_seconds(srv.localbatch.pid) + cpu_seconds(srv.azurite.pid) - servers_cpu
    if proc.returncode != 0:
        raise RuntimeError(f"runner submit exited {proc.returncode}: {proc.stderr[-2000:]}")
    return elapsed, cpu, dest / "corpus_counts.json"


def run(quick: bool) -> list[Row]:
    n = 40 if quick else 200
    inputs = input_files(n)
    files = sorted(inputs.glob("*.txt"))
    size_mb = sum(f.stat().st_size for f in files) / 2**20
    pool = PoolSpec()
    with tempfile.TemporaryDirectory(prefix="bench-e2e-work-") as tmp:
        work = Path(tmp)
        t_floor, cpu_floor, floor_counts = run_floor(files, work)
        with local_servers(pool, prefix="bench-e2e-") as srv:
            wait_nodes_idle(Batch(srv.outputs), pool.pool_id, pool.dedicated_nodes)
            outputs_file = work / "outputs.json"
            write_file(outputs_file, srv.outputs)
            t_ours, cpu_ours, ours_counts = run_runner(srv, inputs, outputs_file, work)
        reports = list((work / "results" / "files").rglob("*_OUTPUT.txt"))
        if len(reports) != n:
            raise RuntimeError(f"runner wrote {len(reports)} per-file reports, expected {n}")
        if corpus_top(ours_counts) != corpus_top(floor_counts):
            raise RuntimeError("runner's corpus-wide top words differ from the floor's")
    ratio = t_ours / t_floor
    return [
        Row(
            f"end to end: {n} files ({size_mb:.0f} MB), runner submit (local, 2 nodes) "
            "vs xargs -P 2 nodetask + merge",
            f"{t_ours:.1f} s ({cpu_ours:.0f} CPU-s)",
            f"{t_floor:.1f} s ({cpu_floor:.0f} CPU-s)",
            ratio_str(ratio),
            f"<= {GOAL}x the floor",
            ratio <= GOAL,
        )
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    for row in run(args.quick):
        print(row)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
