"""The poll back-off: short on the local target, up to 5 s on Azure, reset when counts move."""

from __future__ import annotations

import pytest

from runner import polling


def _pauses(policy: polling.PollPolicy, changes: list[bool]) -> list[float]:
    interval = policy.first
    out = []
    for changed in changes:
        interval = policy.next(interval, changed)
        out.append(interval)
    return out


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:40123", "http://localhost:1", "http://[::1]:8080", "http://127.1.2.3"]
)
def test_local_target_polls_within_half_a_second(url: str) -> None:
    policy = polling.policy_for(url, 0.5)
    pauses = _pauses(policy, [False] * 20)
    assert max(pauses) == polling.LOCAL_MAX_SECONDS <= 0.5
    assert policy.first == polling.LOCAL_FIRST_SECONDS
    assert _pauses(policy, [False, False, True])[-1] == policy.first


@pytest.mark.parametrize(
    "url", ["https://acct.westeurope.batch.azure.com", "https://10.0.0.4", "https://localhost.example.com"]
)
def test_azure_backs_off_to_five_seconds_and_resets(url: str) -> None:
    policy = polling.policy_for(url, 0.5)
    pauses = _pauses(policy, [False] * 20)
    assert pauses[0] == 0.75 and pauses == sorted(pauses)
    assert max(pauses) == polling.AZURE_MAX_SECONDS == 5.0
    assert _pauses(policy, [False] * 10 + [True])[-1] == 0.5


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _simulate(
    policy: polling.PollPolicy, total: int, per_second: float
) -> tuple[list[tuple[int, float]], float]:
    """Poll a job whose tasks complete at ``per_second`` (simulated clock); returns the
    (tasks left, pause) of every poll and how long after the last completion the end was seen."""
    clock = _Clock()
    t0 = clock.now
    pacer = polling.Pacer(policy, total, clock)
    polls: list[tuple[int, float]] = []
    last = -1
    while True:
        done = min(total, int((clock.now - t0) * per_second))
        if done >= total:
            return polls, clock.now - (t0 + total / per_second)
        pause = pacer.pause(done, changed=done != last)
        last = done
        polls.append((total - done, pause))
        clock.now += pause


def test_local_pacer_polls_rarely_while_much_is_left_and_often_near_the_end() -> None:
    policy = polling.policy_for("http://127.0.0.1:40123", 0.5)
    polls, late = _simulate(policy, total=61, per_second=4.0)
    far = [pause for left, pause in polls if 20 < left < 61]  # once a task completed: a rate is known
    near = [pause for left, pause in polls if left <= 2]
    assert far and all(p == polling.LOCAL_MAX_SECONDS for p in far)
    assert near and max(near) <= 0.15
    assert all(polling.LOCAL_MIN_SECONDS <= p <= polling.LOCAL_MAX_SECONDS for _, p in polls)
    assert late <= polling.LOCAL_MAX_SECONDS
    # The old pacing (0.2 s after every change) polled about 5 times a second: 76 polls here.
    assert len(polls) <= 40


def test_local_pacer_backs_off_before_any_task_completes_and_when_the_rate_falls() -> None:
    policy = polling.policy_for("http://127.0.0.1:40123", 0.5)
    clock = _Clock()
    pacer = polling.Pacer(policy, 10, clock)
    pauses = []
    for _ in range(6):
        pauses.append(pacer.pause(0, changed=False))
        clock.now += pauses[-1]
    assert pauses[0] == pytest.approx(0.3) and pauses[-1] == polling.LOCAL_MAX_SECONDS
    clock.now += 60.0  # slow tasks: 9 done in about a minute, 1 left (expected in ~7 s)
    assert pacer.pause(9, changed=True) == polling.LOCAL_MAX_SECONDS
    fast = polling.Pacer(policy, 100, clock)
    fast.pause(0, changed=True)
    clock.now += 1.0  # 99 of 100 in a second: the last one is expected in 10 ms
    assert fast.pause(99, changed=True) == polling.LOCAL_MIN_SECONDS
    clock.now += 0.1
    assert fast.pause(99, changed=False) == polling.LOCAL_MIN_SECONDS


def test_azure_pacer_is_the_policy_back_off() -> None:
    policy = polling.policy_for("https://acct.westeurope.batch.azure.com", 0.5)
    clock = _Clock()
    pacer = polling.Pacer(policy, 100, clock)
    changes = [False] * 8 + [True] + [False] * 3
    got = []
    for i, changed in enumerate(changes):
        got.append(pacer.pause(i * 5, changed))
        clock.now += got[-1]
    assert got == _pauses(policy, changes)
