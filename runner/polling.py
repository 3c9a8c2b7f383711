"""How often ``runner submit`` polls task counts: a back-off suited to the target.

Each poll is one request (job task counts), whatever the target; only the
pause between polls differs. After counts change the next poll comes after
``first`` seconds; while they stay the same the pause grows by ``growth`` up to
``maximum``. Azure (any non-loopback Batch endpoint): from the caller's base
interval up to 5 s, as before: Batch's counts move slowly and each request
counts against the account's quota. The local target (a loopback endpoint,
localbatch): 0.2 s up to 0.5 s, so a finished job's results come down within
half a second instead of up to 5 s.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

AZURE_MAX_SECONDS = 5.0
LOCAL_FIRST_SECONDS = 0.2
LOCAL_MAX_SECONDS = 0.5


@dataclass(frozen=True)
class PollPolicy:
    """Pauses between polls (seconds)."""

    first: float
    maximum: float
    growth: float = 1.5

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
        return PollPolicy(first=min(base_interval, LOCAL_FIRST_SECONDS), maximum=LOCAL_MAX_SECONDS)
    return PollPolicy(first=base_interval, maximum=max(base_interval, AZURE_MAX_SECONDS))
