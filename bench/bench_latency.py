"""Latency: the runner's upload and task submission vs. a sequential client, 20 ms away (not a test).

Azure is tens of milliseconds away; loopback is not. Every request/response
exchange here is given 20 ms more round trip, one of two ways:

* ``tc netem`` (if this kernel has it): the script makes a throwaway network
  namespace, adds ``netem delay 10ms`` to its loopback (10 ms each way), and
  runs the measurement (servers included) inside it; the namespace is
  deleted afterwards.
* otherwise a userspace delay proxy (:class:`harness.TcpProxy`, 10 ms per
  forwarded chunk each way, order kept) in front of Azurite and localbatch.
  The rows say which one was used. The added delay is measured (median of a
  small request through the delay minus the same request without it).

Compared over the same delay:

* upload: :meth:`runner.storage.Storage.upload_files` (parallel; one listing
  of the prefix for its MD5 check, then the uploads) vs. a sequential client
  (one ``upload_blob`` after the other);
* task submission: :meth:`runner.batch.Batch.add_tasks` (``create_tasks``:
  chunks of 100 in parallel) vs. one ``create_task`` request per task.

Full: 50 blobs of 16 KB (small, like the tutorial's inputs: latency-bound,
not throughput-bound), 1,000 tasks. Quick: 20 blobs, 200 tasks.
Goal (issue 6): >= 8x for each.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
for _p in (str(BENCH_DIR.parent), str(BENCH_DIR)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

from azure.batch import BatchClient  # noqa: E402
from azure.core.credentials import AzureNamedKeyCredential  # noqa: E402
from azure.storage.blob import BlobServiceClient  # noqa: E402
from bench_submission import naive_add, noop_specs  # noqa: E402
from harness import Row, TcpProxy, local_servers, port_of, ratio_str, timed, with_endpoints  # noqa: E402

from runner.batch import Batch  # noqa: E402
from runner.outputs import Outputs  # noqa: E402
from runner.pool_spec import PoolSpec  # noqa: E402
from runner.storage import Storage, UploadItem  # noqa: E402

GOAL = 8.0
ONE_WAY_S = 0.010
BLOB_BYTES = 16 * 1024
POOL = PoolSpec(pool_id="bench-idle", dedicated_nodes=0)


@dataclass(frozen=True)
class Measured:
    mode: str
    added_rtt_ms: float
    blobs: int
    upload_ours_s: float
    upload_seq_s: float
    upload_ours_undelayed_s: float
    tasks: int
    tasks_ours_s: float
    tasks_seq_s: float


def _added_delay_s(direct: Batch, delayed: Batch, job_id: str, n: int = 15) -> float:
    """Median time of a small request through the delay minus without it (samples interleaved)."""
    direct.task_counts(job_id)  # both connections open before sampling
    delayed.task_counts(job_id)
    with_delay, without = [], []
    for _ in range(n):
        with_delay.append(timed(lambda: delayed.task_counts(job_id)))
        without.append(timed(lambda: direct.task_counts(job_id)))
    return statistics.median(with_delay) - statistics.median(without)


def measure(outputs: Outputs, delayed: Outputs, mode: str, n_blobs: int, n_tasks: int) -> Measured:
    """Both comparisons against ``delayed`` (the delayed endpoints); ``outputs`` is the direct one."""
    direct, batch = Batch(outputs), Batch(delayed)
    batch.ensure_job("ours", POOL.pool_id, uses_task_dependencies=False)
    batch.ensure_job("naive", POOL.pool_id, uses_task_dependencies=False)
    added_rtt = _added_delay_s(direct, batch, "ours")

    with tempfile.TemporaryDirectory(prefix="bench-latency-blobs-") as tmp:
        files = []
        for i in range(n_blobs):
            path = Path(tmp) / f"blob{i:03d}.bin"
            path.write_bytes(os.urandom(BLOB_BYTES))
            files.append(path)
        storage = Storage(delayed)
        container = delayed.input_container
        items = [UploadItem(f, f"ours/{f.name}") for f in files]
        t_up_ours = timed(lambda: storage.upload_files(container, items))
        plain = BlobServiceClient(
            delayed.storage_blob_endpoint,
            credential={
                "account_name": delayed.storage_account_name,
                "account_key": delayed.storage_account_key or "",
            },
        ).get_container_client(container)

        def sequential_upload() -> None:
            for f in files:
                with f.open("rb") as handle:
                    plain.upload_blob(f"seq/{f.name}", handle, overwrite=True)

        t_up_seq = timed(sequential_upload)
        # The same upload with no added delay: what the servers and this machine allow.
        undelayed = [UploadItem(f, f"undelayed/{f.name}") for f in files]
        t_up_undelayed = timed(lambda: Storage(outputs).upload_files(container, undelayed))
        names = {b.name for b in Storage(outputs).list_blobs(container, "")}
        if len(names) != 3 * n_blobs:
            raise RuntimeError(f"expected {3 * n_blobs} blobs, found {len(names)}")

    specs = noop_specs(n_tasks)
    t_tasks_ours = timed(lambda: batch.add_tasks("ours", specs))
    client = BatchClient(
        delayed.batch_account_url,
        AzureNamedKeyCredential(delayed.batch_account_name, delayed.batch_account_key or ""),
    )
    t_tasks_seq = timed(lambda: naive_add(client, "naive", specs))
    got = (direct.task_counts("ours").total, direct.task_counts("naive").total)
    if got != (n_tasks, n_tasks):
        raise RuntimeError(f"expected {n_tasks} tasks in each job, found {got}")
    return Measured(
        mode,
        added_rtt * 1000,
        n_blobs,
        t_up_ours,
        t_up_seq,
        t_up_undelayed,
        n_tasks,
        t_tasks_ours,
        t_tasks_seq,
    )


# -- the two ways of adding delay ------------------------------------------------------


def netem_unavailable() -> str | None:
    """``None`` if ``tc netem`` works in a throwaway network namespace, else why not."""
    if shutil.which("ip") is None or shutil.which("tc") is None:
        return "no ip/tc commands"
    ns = f"benchprobe{os.getpid()}"
    add = subprocess.run(["ip", "netns", "add", ns], capture_output=True, text=True, check=False)
    if add.returncode != 0:
        return f"cannot create a network namespace ({_last_line(add.stderr)})"
    try:
        tc = subprocess.run(
            ["ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "10ms"],
            capture_output=True,
            text=True,
            check=False,
        )
        return None if tc.returncode == 0 else f"tc says: {_last_line(tc.stderr)}"
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)


def _last_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[-1] if lines else "no message"


@contextmanager
def netem_namespace() -> Iterator[str]:
    """A network namespace whose loopback delays every packet by 10 ms; deleted afterwards."""
    ns = f"benchlat{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        subprocess.run(["ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up"], check=True)
        subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                ns,
                "tc",
                "qdisc",
                "add",
                "dev",
                "lo",
                "root",
                "netem",
                "delay",
                f"{ONE_WAY_S * 1000:.0f}ms",
            ],
            check=True,
        )
        yield ns
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)


def measure_with_proxy(n_blobs: int, n_tasks: int) -> Measured:
    with local_servers(POOL, prefix="bench-latency-") as srv, ExitStack() as stack:
        out = srv.outputs
        blob_proxy = stack.enter_context(TcpProxy(port_of(out.storage_blob_endpoint), delay_s=ONE_WAY_S))
        batch_proxy = stack.enter_context(TcpProxy(port_of(out.batch_account_url), delay_s=ONE_WAY_S))
        delayed = with_endpoints(out, batch_port=batch_proxy.port, blob_port=blob_proxy.port)
        return measure(out, delayed, "userspace proxy, 10 ms each way", n_blobs, n_tasks)


def measure_with_netem(n_blobs: int, n_tasks: int) -> Measured:
    """Run :func:`inner` in the delayed namespace; the direct baseline is not available there."""
    with netem_namespace() as ns:
        proc = subprocess.run(
            ["ip", "netns", "exec", ns, sys.executable, __file__, "--inner", str(n_blobs), str(n_tasks)],
            capture_output=True,
            text=True,
            check=False,
        )
    if proc.returncode != 0:
        raise RuntimeError(f"the measurement in the netem namespace failed: {proc.stderr[-2000:]}")
    return Measured(**json.loads(proc.stdout.strip().splitlines()[-1]))


def inner(n_blobs: int, n_tasks: int) -> Measured:
    """Inside the netem namespace every connection is delayed, the 'direct' one too."""
    with local_servers(POOL, prefix="bench-latency-") as srv:
        return measure(srv.outputs, srv.outputs, "tc netem, 10 ms each way", n_blobs, n_tasks)


def run(quick: bool) -> list[Row]:
    n_blobs, n_tasks = (20, 200) if quick else (50, 1_000)
    why_not = netem_unavailable()
    m = measure_with_proxy(n_blobs, n_tasks) if why_not else measure_with_netem(n_blobs, n_tasks)
    how = m.mode + (f", measured +{m.added_rtt_ms:.0f} ms/request; no netem, {why_not}" if why_not else "")
    up, tasks = m.upload_seq_s / m.upload_ours_s, m.tasks_seq_s / m.tasks_ours_s
    return [
        Row(
            f"latency ({how}): upload {m.blobs} x {BLOB_BYTES // 1024} KB, "
            "runner upload_files vs sequential upload_blob",
            f"{m.upload_ours_s:.2f} s"
            + (f" ({m.upload_ours_undelayed_s:.2f} s without the delay)" if why_not else ""),
            f"{m.upload_seq_s:.2f} s",
            ratio_str(up),
            f">= {GOAL:.0f}x",
            up >= GOAL,
        ),
        Row(
            f"latency (same delay): add {m.tasks:,} tasks, runner add_tasks vs one create_task per task",
            f"{m.tasks_ours_s:.2f} s",
            f"{m.tasks_seq_s:.2f} s",
            ratio_str(tasks),
            f">= {GOAL:.0f}x",
            tasks >= GOAL,
        ),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--inner", nargs=2, type=int, metavar=("BLOBS", "TASKS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inner:
        print(json.dumps(asdict(inner(*args.inner))))
        return 0
    for row in run(args.quick):
        print(row)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
