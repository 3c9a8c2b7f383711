"""One runner at a time submits (or retries) a job: a lease on a marker blob in Storage.

Contract:

* :func:`hold` takes a lease of :data:`LEASE_SECONDS` on the blob
  ``.runner-locks/<job id, lower case>.json`` of the input container (Batch ids are
  case-insensitive) and writes there who holds it (pid, host, command, since). It
  works across machines: every runner of a target sees the same Storage account.
* Someone else holding it is :class:`~runner.errors.JobBusy` (one line naming the
  holder, nothing created). A holder recorded on *this* host whose process is gone
  (killed outright) has its lease broken at once; elsewhere a dead holder's lease
  expires by itself within :data:`LEASE_SECONDS`, since only a live holder renews it.
* While held, a daemon thread renews the lease every :data:`RENEW_EVERY` seconds.
  :meth:`SubmitLock.release` (also on Ctrl-C and on errors) stops it and deletes the
  blob with one request: nothing is left behind. The marker is outside ``<job-id>/``,
  so ``runner clean``'s deletion of the job's blobs never meets a leased blob.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from types import TracebackType

from runner.errors import JobBusy, RunnerError
from runner.storage import Storage

log = logging.getLogger(__name__)

#: How long a lease lives without renewal (Blob Storage allows 15-60 s).
LEASE_SECONDS = 20
#: How often the holder renews it.
RENEW_EVERY = 5.0
_VERBS = {"submit": "submitted", "retry": "retried"}


def lock_blob(job_id: str) -> str:
    return f".runner-locks/{job_id.lower()}.json"


@dataclass(frozen=True)
class Holder:
    """Who holds a job's lock, as recorded in the marker blob (read back as untrusted data)."""

    pid: int
    host: str
    command: str
    since: str

    @staticmethod
    def me(command: str) -> Holder:
        now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
        return Holder(os.getpid(), socket.gethostname(), command, now)

    def to_bytes(self) -> bytes:
        doc = {"pid": self.pid, "host": self.host, "command": self.command, "since": self.since}
        return json.dumps(doc).encode()

    @staticmethod
    def parse(data: bytes | None) -> Holder | None:
        """The holder in ``data``, or ``None`` if it is missing or not ours (not yet written)."""
        try:
            doc = json.loads(data or b"")
        except ValueError:
            return None
        if not isinstance(doc, dict) or not isinstance(doc.get("pid"), int):
            return None
        text = {k: str(doc.get(k, ""))[:200] for k in ("host", "command", "since")}
        return Holder(doc["pid"], text["host"], text["command"], text["since"])

    def dead_here(self) -> bool:
        """True only when the holder ran on this host and its process no longer exists."""
        if self.host != socket.gethostname() or self.pid <= 0:
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False  # alive, someone else's
        return False

    def describe(self) -> str:
        return f"runner {self.command}, pid {self.pid} on {self.host}, since {self.since}"


class SubmitLock:
    """A held lock; a context manager that releases it."""

    def __init__(self, storage: Storage, container: str, job_id: str, lease_id: str) -> None:
        self._storage, self._container, self._blob = storage, container, lock_blob(job_id)
        self.job_id, self._lease_id = job_id, lease_id
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew, name="submit-lock", daemon=True)
        self._thread.start()

    def _renew(self) -> None:
        while not self._stop.wait(RENEW_EVERY):
            try:
                if not self._storage.renew_lease(self._container, self._blob, self._lease_id):
                    log.warning("job %s: the submit lock was lost (another runner may start)", self.job_id)
                    return
            except RunnerError as err:  # a blip: the lease outlives a few missed renewals
                log.info("job %s: could not renew the submit lock: %s", self.job_id, err)

    def release(self) -> None:
        """Stop renewing and delete the marker; best effort (an unreleased lease expires)."""
        if self._stop.is_set():
            return
        self._stop.set()
        try:
            self._storage.end_lease(self._container, self._blob, self._lease_id)
        except RunnerError as err:
            log.info("job %s: the submit lock expires by itself in %d s: %s", self.job_id, LEASE_SECONDS, err)

    def __enter__(self) -> SubmitLock:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


def hold(storage: Storage, container: str, job_id: str, command: str = "submit") -> SubmitLock:
    """Take the job's lock for ``command`` or raise :class:`JobBusy` naming who has it."""
    blob = lock_blob(job_id)
    me = Holder.me(command)
    lease = storage.try_lease(container, blob, LEASE_SECONDS, me.to_bytes())
    if lease is None:
        holder = Holder.parse(storage.try_download_bytes(container, blob))
        if holder is not None and holder.dead_here():
            log.info("job %s: breaking the lock of %s (that process is gone)", job_id, holder.describe())
            storage.break_lease(container, blob)
            lease = storage.try_lease(container, blob, LEASE_SECONDS, me.to_bytes())
            holder = None if lease else Holder.parse(storage.try_download_bytes(container, blob))
        if lease is None:
            raise _busy(job_id, holder)
    return SubmitLock(storage, container, job_id, lease)


def _busy(job_id: str, holder: Holder | None) -> JobBusy:
    verb = _VERBS.get(holder.command, "submitted") if holder else "submitted"
    who = f" ({holder.describe()})" if holder else " (by another runner)"
    return JobBusy(
        f"job {job_id} is being {verb}{who}",
        hint=f"wait for it to end, or follow it with `runner status {job_id}`; the lock of a runner "
        f"that died frees itself within {LEASE_SECONDS} s",
    )
