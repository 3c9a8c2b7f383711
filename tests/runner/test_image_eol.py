"""The image end-of-life warning, read from localbatch's ``GET /supportedimages`` (issue 17).

localbatch lists Ubuntu 22.04 until 2027-04-30 and 24.04 until 2029-04-30; the clock is
given to the check, so the 90-day window is tested at dates on either side of it.
"""

from __future__ import annotations

from datetime import datetime, timezone

from runner import image_eol
from runner.batch import Batch
from runner.outputs import Outputs
from runner.pool_spec import ImageSpec, PoolSpec

JAMMY = ImageSpec(
    "canonical", "0001-com-ubuntu-server-jammy", "22_04-lts", "latest", "batch.node.ubuntu 22.04"
)
XENIAL = ImageSpec("canonical", "UbuntuServer", "16.04-LTS", "latest", "batch.node.ubuntu 16.04")


def _at(day: str) -> datetime:
    return datetime.fromisoformat(day).replace(tzinfo=timezone.utc)


def test_the_pools_image_end_of_life_is_said_within_90_days(target_outputs: Outputs) -> None:
    batch = Batch(target_outputs)
    batch.create_pool(PoolSpec(pool_id="eol-jammy", dedicated_nodes=0, image=JAMMY))
    support = batch.image_support("eol-jammy")
    assert support is not None and support.listed
    assert support.end_of_life == _at("2027-04-30")
    assert image_eol.check(batch, "eol-jammy", _at("2026-12-01")) is None  # 150 days: nothing to say
    soon = image_eol.check(batch, "eol-jammy", _at("2027-03-01"))
    assert soon is not None and "leaves Batch support on 2027-04-30 (in 60 days)" in soon
    assert "docs/azure.md#moving-the-pool-to-a-new-image" in soon
    gone = image_eol.check(batch, "eol-jammy", _at("2027-05-02"))
    assert gone is not None and "left Batch support on 2027-04-30" in gone
    # The project's default image (24.04) is fine today.
    assert image_eol.check(batch, target_outputs.pool_id, datetime.now(timezone.utc)) is None


def test_an_image_batch_does_not_list_is_said(target_outputs: Outputs) -> None:
    batch = Batch(target_outputs)
    batch.create_pool(PoolSpec(pool_id="eol-xenial", dedicated_nodes=0, image=XENIAL))
    said = image_eol.check(batch, "eol-xenial", _at("2026-12-01"))
    assert said is not None and "is not in Batch's supported images" in said
    assert "canonical:UbuntuServer:16.04-LTS" in said
