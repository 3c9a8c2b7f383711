"""Storage's retry policy waits at least what ``Retry-After`` asks (seconds or an HTTP date)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

from runner.storage import _retry_after


def test_retry_after_in_seconds_or_as_a_date() -> None:
    assert _retry_after("2") == 2.0
    assert _retry_after(None) is None and _retry_after("") is None and _retry_after("soon") is None
    assert _retry_after("-3") == 0.0
    when = format_datetime(datetime.now(timezone.utc) + timedelta(seconds=30), usegmt=True)
    wait = _retry_after(when)
    assert wait is not None and 25 <= wait <= 31
