"""A node caught by a restart while its start task runs joins again: the start task runs anew."""

from __future__ import annotations

from pathlib import Path

from azure.batch import models as bm

from tests.conftest import Azurite, start_localbatch
from tests.localbatch.conftest import batch_client, wait_for, wait_nodes_idle

# Hangs the first time (long enough to be caught by the restart), succeeds the next time.
ONCE = (
    '/bin/sh -c \'test -f "$AZ_BATCH_NODE_SHARED_DIR/once" && exit 0; '
    'touch "$AZ_BATCH_NODE_SHARED_DIR/once"; sleep 60\''
)


def test_node_waiting_for_its_start_task_rejoins_after_a_restart(tmp_path: Path, azurite: Azurite) -> None:
    data = tmp_path / "lb"
    first = start_localbatch(data, azurite)
    try:
        client = batch_client(first)
        start = bm.BatchStartTask(command_line=ONCE, wait_for_success=True)
        client.create_pool(
            bm.BatchPoolCreateOptions(id="pool", vm_size="x", target_dedicated_nodes=1, start_task=start)
        )
        wait_for(lambda: [n.state for n in client.list_nodes("pool")] == ["waitingforstarttask"])
        wait_for(lambda: list((data / "nodes").glob("*/shared/once")))  # the start task is in its sleep
    finally:
        first.process.stop()
    second = start_localbatch(data, azurite, account_key=first.account_key)
    try:
        client = batch_client(second)
        [node] = wait_nodes_idle(client, "pool", 1)
        assert node.start_task_info is not None and node.start_task_info.result == "success"
    finally:
        second.process.stop()
