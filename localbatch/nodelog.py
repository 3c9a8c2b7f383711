"""Each node's service log: what the service did to the node, one timestamped line per event.

On Azure the Batch agent keeps its own logs on every node, and "upload Batch
service logs" copies them to a container. localbatch's equivalent is one file
per node, ``DATA_DIR/nodelogs/NODE_ID.log``, outside the node's directory (tasks
never see it), with a line per state change: ``2026-01-01T00:00:00.000000Z node
NODE state creating -> starting``. Lines hold no secrets (ids and states only).
A log stops growing at :data:`MAX_BYTES`. Writing never fails the caller: a full
disk costs a log line, not a node.
"""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path

from localbatch.models import iso, utcnow

log = logging.getLogger(__name__)

MAX_BYTES = 1024 * 1024
FILE_NAME = "localbatch-node-agent.log"


def path_of(data_dir: Path, node_id: str) -> Path:
    """The service log of node ``node_id`` (node ids are service-made: safe as a file name)."""
    return data_dir / "nodelogs" / f"{node_id}.log"


def record(data_dir: Path, node_id: str, event: str) -> None:
    """Append ``event`` (one line, no newline) to the node's log, time-stamped now."""
    path = path_of(data_dir, node_id)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists() and path.stat().st_size >= MAX_BYTES:
            return
        with path.open("a", encoding="utf-8") as f:
            f.write(f"{iso(utcnow())} node {node_id} {event}\n")
    except OSError as exc:
        log.warning("cannot write the service log of node %s: %s", node_id, exc.strerror)


def lines_between(data_dir: Path, node_id: str, start: datetime, end: datetime | None) -> list[str]:
    """The node's log lines time-stamped in ``[start, end]`` (``end`` None: up to now)."""
    path = path_of(data_dir, node_id)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    low, high = iso(start), iso(end) if end is not None else None
    # ISO times of one format and zone compare as strings.
    return [
        line
        for line in text.splitlines(keepends=True)
        if line[:27] >= low and (high is None or line[:27] <= high)
    ]
