"""How a job's tasks reach their blobs: SAS URLs, or plain URLs and the pool's identity.

Contracts:

* With ``--auth entra`` and an outputs ``poolIdentityResourceId`` (the pool's
  user-assigned identity, ``poolIdentity: true``), :class:`TaskAccess` hands out
  plain URLs and names the identity (``identity_id``) that the tasks' resource
  files and output destinations use (Batch's ``identityReference``): no SAS is
  made, so none exists in the job.
* Otherwise (shared keys, or no pool identity) URLs carry SAS scoped to what a
  task needs: read-only per blob, create+write only on the output container.
* :func:`task_access` looks at the pool once: an identity the pool does not have
  is warned about (its tasks will fail to reach their files, as Batch fails them).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from runner.targets import AuthMode

if TYPE_CHECKING:
    from runner.storage import Storage
    from runner.targets import Session

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TaskAccess:
    """The URLs tasks are given, and the pool identity they use (``None``: SAS URLs)."""

    storage: Storage
    identity_id: str | None

    def read_url(self, container: str, name: str, expiry: datetime) -> str:
        """URL a task reads one blob through (a read-only SAS until ``expiry``, or plain)."""
        if self.identity_id is not None:
            return self.storage.blob_url(container, name)
        return self.storage.blob_read_url(container, name, expiry)

    def write_url(self, container: str, expiry: datetime) -> str:
        """URL a task's output files go to (a create+write SAS until ``expiry``, or plain)."""
        if self.identity_id is not None:
            return self.storage.container_url(container)
        return self.storage.container_write_url(container, expiry)


def task_access(session: Session) -> TaskAccess:
    """The access of ``session``'s tasks: through the pool identity when Entra ID mode has one."""
    identity = session.outputs.pool_identity_resource_id if session.auth is AuthMode.ENTRA else None
    if identity is not None:
        pool_id = session.outputs.pool_id
        if identity.lower() not in {i.lower() for i in session.batch.pool_identities(pool_id)}:
            log.warning(
                "pool %s does not have the identity %s (poolIdentityResourceId in the outputs): its tasks "
                "will fail to read their files; give the pool that identity (poolIdentity: true, then "
                "`pulumi up`) or fix the outputs",
                pool_id,
                identity,
            )
    return TaskAccess(session.storage, identity)
