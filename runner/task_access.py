"""How a job's tasks reach their blobs: SAS URLs, or plain URLs and the pool's identity.

Contracts:

* With ``--auth entra`` and an outputs ``poolIdentityResourceId`` (the pool's
  user-assigned identity, ``poolIdentity: true``), :class:`TaskAccess` hands out
  plain URLs and names the identity (``identity_id``) that the tasks' resource
  files and output destinations use (Batch's ``identityReference``): no SAS is
  made, so none exists in the job.
* Otherwise (shared keys, or no pool identity) URLs carry SAS scoped to what a
  task needs: read-only per blob, create+write only on the output container.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from runner.targets import AuthMode

if TYPE_CHECKING:
    from runner.storage import Storage
    from runner.targets import Session


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
    return TaskAccess(session.storage, identity)
