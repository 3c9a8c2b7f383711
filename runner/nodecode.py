"""Node code: ``nodetask`` shipped as a zipapp named by its content hash.

Contract: :func:`ensure_node_code` builds ``nodetask.pyz`` with
:func:`nodetask.pack.build_pyz` (deterministic bytes), uploads it to the
application container as ``nodetask/<sha256>.pyz`` unless that blob exists,
and returns the blob name. Tasks fetch exactly that blob, so the code a task
runs is the code of the runner that submitted it, whatever ran before on a
long-lived node.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

from nodetask.pack import build_pyz
from runner.storage import Storage

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NodeCode:
    blob_name: str
    sha256: str
    size: int
    uploaded: bool


def ensure_node_code(storage: Storage, container: str) -> NodeCode:
    """Upload ``nodetask/<sha256>.pyz`` if absent; return where it is."""
    with tempfile.TemporaryDirectory(prefix="runner-pyz-") as tmp:
        pyz = build_pyz(Path(tmp) / "nodetask.pyz")
        data = pyz.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    name = f"nodetask/{digest}.pyz"
    uploaded = False
    if not storage.blob_exists(container, name):
        storage.upload_bytes(container, name, data, overwrite=True)
        uploaded = True
        log.info("uploaded node code %s (%d bytes)", name, len(data))
    return NodeCode(name, digest, len(data), uploaded)
