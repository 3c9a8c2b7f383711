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
