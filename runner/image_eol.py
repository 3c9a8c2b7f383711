"""A warning when the pool's image is about to leave Batch's support (or already has).

Batch publishes, per image and node agent SKU, a ``batchSupportEndOfLife`` date
(``GET /supportedimages``); after it, pools with that image can no longer be
created or grown. The runner says so when it starts a job that runs tasks (not one
whose every result came from the cache), within :data:`WARN_WITHIN` of the date, and
points to docs/azure.md (moving the pool).
Checking never fails a submission: a service that cannot answer is only logged.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from runner.batch_types import ImageSupport
from runner.errors import RunnerError

if TYPE_CHECKING:  # the SDK edge; only its type is needed here
    from runner.batch import Batch

log = logging.getLogger(__name__)

WARN_WITHIN = timedelta(days=90)
_HOW = "see docs/azure.md#moving-the-pool-to-a-new-image"


def warning(support: ImageSupport | None, now: datetime) -> str | None:
    """The line to show for ``support`` at ``now``, or ``None`` when nothing needs saying."""
    if support is None:
        return None
    what = f"the pool's image {support.image} (node agent {support.node_agent_sku_id})"
    if not support.listed:
        return f"{what} is not in Batch's supported images: the pool may not grow; {_HOW}"
    eol = support.end_of_life
    if eol is None or eol - now > WARN_WITHIN:
        return None
    if eol <= now:
        return f"{what} left Batch support on {eol:%Y-%m-%d}: move the pool; {_HOW}"
    days = (eol - now).days
    return f"{what} leaves Batch support on {eol:%Y-%m-%d} (in {days} days): move the pool; {_HOW}"


def check(batch: Batch, pool_id: str, now: datetime) -> str | None:
    """:func:`warning` for the pool, read from the service; ``None`` if it could not be read."""
    try:
        return warning(batch.image_support(pool_id), now)
    except RunnerError as err:
        log.info("could not check the pool's image support: %s", err)
        return None
