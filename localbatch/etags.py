"""ETags as the Batch service writes them (``0x8D`` and 13 hex digits, increasing)."""

from __future__ import annotations

import itertools
import time

_etag_counter = itertools.count()


def new_etag() -> str:
    value = (time.time_ns() // 100 + next(_etag_counter)) & 0xFFFFFFFFFFFFF
    return f"0x8D{value:013X}"
