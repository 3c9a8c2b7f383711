"""How often ``runner submit`` polls task counts: a back-off suited to the target.

Each poll is one request (job task counts), whatever the target; only the
pause between polls differs. After counts change the next poll comes after
``first`` seconds; while they stay the same the pause grows by ``growth`` up to
``maximum``. Azure (any non-loopback Batch endpoint): from the caller's base
interval up to 5 s, as before: Batch's counts move slowly and each request
counts against the account's quota.

The local target (a loopback endpoint, localbatch) is paced by the job's
expected end instead (:class:`Pacer`): a poll there costs CPU on the machine
that runs the tasks (the runner's SDK call, localbatch answering it), so
polling every 0.2 s while tasks complete several times a second takes CPU
from them for nothing. The pause is a quarter of the time the tasks left
should take at the rate seen so far, between 0.1 s and 0.5 s: 0.5 s while
much is left, 0.1 s as the end nears, so a finished job's results still come
down within half a second (usually within a tenth). Before the first task
completes (no rate yet) it backs off from 0.2 s to 0.5 s, as before.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

AZURE_MAX_SECONDS = 5.0
LOCAL_FIRST_SECONDS = 0.2
LOCAL_MAX_SECONDS = 0.5
LOCAL_MIN_SECONDS = 0.1
LOCAL_ETA_SHARE = 0.25


@dataclass(frozen=True)
class PollPolicy:
    """Pauses between polls (seconds)."""

    first: float
    maximum: float
    growth: float = 1.5
    #: When set, :class:`Pacer` pauses this share of the job's expected remaining time
    #: (within ``minimum`` .. ``maximum``) once a completion rate is known.
    eta_share: float | None = None
    minimum: float = 0.0

    def next(self, interval: float, changed: bool) -> float:
        """The pause after a poll that took ``interval`` to come; ``changed``: counts moved."""
        if changed:
            return self.first
        return min(self.maximum, max(interval, self.first) * self.growth)


def is_loopback(url: str) -> bool:
    """Whether ``url`` names this machine (127.0.0.0/8, ::1 or localhost)."""
    host = (urlsplit(url).hostname or "").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def policy_for(batch_url: str, base_interval: float) -> PollPolicy:
    """The policy for the Batch endpoint ``batch_url``; ``base_interval`` is Azure's first pause."""
    if is_loopback(batch_url):
        return PollPolicy(
            first=min(base_interval, LOCAL_FIRST_SECONDS),
            maximum=LOCAL_MAX_SECONDS,
            eta_share=LOCAL_ETA_SHARE,
            minimum=LOCAL_MIN_SECONDS,
        )
    return PollPolicy(first=base_interval, maximum=max(base_interval, AZURE_MAX_SECONDS))


class Pacer:
    """The pauses between the polls of one job of ``total`` tasks.

    Without ``policy.eta_share`` (Azure) it is exactly ``policy.next``'s back-off.
    With it, once some task completed since the first poll, the pause is
    ``eta_share`` times the expected remaining time (tasks left / completions per
    second since the first poll), within ``policy.minimum`` .. ``policy.maximum``;
    until then, ``policy.next``'s back-off. ``clock`` is monotonic seconds.
    """

    def __init__(self, policy: PollPolicy, total: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.policy = policy
        self.total = total
        self._clock = clock
        self._interval = policy.first
        self._start: tuple[float, int] | None = None

    def pause(self, completed: int, changed: bool) -> float:
        """The pause after a poll that saw ``completed`` tasks completed (``changed``: counts moved)."""
        now = self._clock()
        if self._start is None:
            self._start = (now, completed)
        t0, done0 = self._start
        share = self.policy.eta_share
        if share is None or completed <= done0 or now <= t0:
            self._interval = self.policy.next(self._interval, changed)
            return self._interval
        rate = (completed - done0) / (now - t0)
        eta = max(0, self.total - completed) / rate
        self._interval = min(self.policy.maximum, max(self.policy.minimum, eta * share))
        return self._interval
