"""The transfer pool makes a worker thread only when the work in hand needs one (threads cost memory)."""

from __future__ import annotations

import threading
import uuid

import pytest

from localbatch import transfer


def test_threads_only_as_work_needs_them_results_cancels_and_errors_delivered() -> None:
    name = f"tp-{uuid.uuid4().hex[:8]}"
    pool = transfer.DaemonPool(3, name)

    def threads() -> int:
        return sum(1 for t in threading.enumerate() if t.name.startswith(name))

    assert threads() == 0
    assert [pool.submit(lambda i=i: i).result(timeout=5) for i in range(4)] == [0, 1, 2, 3]
    assert threads() == 1  # one job at a time: one thread
    gate = threading.Event()
    held = [pool.submit(gate.wait) for _ in range(5)]  # five at once: three threads, no more
    assert threads() == 3
    assert held[-1].cancel()  # still queued behind the three running
    gate.set()
    assert [f.result(timeout=5) for f in held[:4]] == [True] * 4 and held[-1].cancelled()
    with pytest.raises(ZeroDivisionError):
        pool.submit(lambda: 1 // 0).result(timeout=5)
    assert pool.submit(lambda: "after").result(timeout=5) == "after" and threads() == 3
