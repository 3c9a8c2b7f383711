"""The words `runner/pool_watch.py` uses for a pool that runs nothing, from Batch's own fields."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from runner.batch_types import NodeInfo, PoolHealth, PoolStatus, ResizeError
from runner.pool_watch import _cannot_grow, describe


def _status(**changes: object) -> PoolStatus:
    base: dict[str, object] = {
        "id": "P",
        "allocation_state": "steady",
        "allocation_since": None,
        "current_nodes": 0,
        "target_nodes": 2,
        "autoscale": False,
        "autoscale_interval": None,
        "resize_errors": (),
    }
    return PoolStatus(**{**base, **changes})  # type: ignore[arg-type]


def _nodes(*states: str) -> PoolHealth:
    nodes = tuple(NodeInfo(f"n{i}", s, None, None) for i, s in enumerate(states))
    return PoolHealth(nodes, tuple(n for n in nodes if n.state in ("unusable", "starttaskfailed")))


def test_resizing_says_since_how_long() -> None:
    since = datetime.now(timezone.utc) - timedelta(minutes=3, seconds=5)
    line = describe(_status(allocation_state="resizing", allocation_since=since), _nodes())
    assert line == "pool P: 0/2 nodes ready, resizing since 3 min"


def test_resize_errors_name_the_code_and_the_doc() -> None:
    err = ResizeError("AccountCoreQuotaReached", "The account has reached its core quota")
    status = _status(resize_errors=(err,))
    assert describe(status, _nodes()) == (
        "pool P: 0/2 nodes ready, resize error AccountCoreQuotaReached: The account has reached its "
        "core quota (see docs/azure.md#prerequisites)"
    )
    assert _cannot_grow(status)
    assert not _cannot_grow(_status(resize_errors=(err,), allocation_state="resizing"))
    assert not _cannot_grow(_status(resize_errors=(err,), autoscale=True))
    assert not _cannot_grow(_status(resize_errors=(err,), current_nodes=1))


def test_nodes_that_cannot_run_and_nodes_booting() -> None:
    assert describe(_status(), _nodes("unusable", "unusable")) == (
        "pool P: 0/2 nodes ready (2 unusable): no task can run until Batch recovers or replaces them"
    )
    assert (
        describe(_status(), _nodes("starting", "waitingforstarttask"))
        == "pool P: 0/2 nodes ready (2 starting)"
    )
    assert describe(_status(), _nodes("idle", "starting")) is None


def test_autoscale_at_zero_and_a_fixed_pool_of_zero() -> None:
    auto = _status(autoscale=True, target_nodes=0, autoscale_interval=timedelta(minutes=5))
    assert (
        describe(auto, _nodes())
        == "pool P: waiting for the pool to scale up (autoscale evaluates every 5 min)"
    )
    assert describe(_status(target_nodes=0), _nodes()).startswith(  # type: ignore[union-attr]
        "pool P has no nodes (target 0): no task can run until it is resized"
    )
