"""A results directory belongs to one job.

``runner submit`` and ``runner results`` *claim* their destination before
anything is created: :func:`claim` records the job id in ``<dest>/.runner-job``
and refuses (:class:`UsageError`, exit 2) a directory that records another job
(compared as Batch compares ids: case-insensitively), or that holds results
with no record (``files/``, ``corpus_OUTPUT.txt``), since downloading there
would silently mix two jobs. The same job may come back to its directory
(resume, ``runner results`` again).

When the command fails before any result arrived, :meth:`Claim.release`
removes the record (and the directory if the claim created it), so nothing
half-written is left behind.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from runner.atomic import write_atomic
from runner.errors import UsageError

log = logging.getLogger(__name__)

MARKER = ".runner-job"
_RESULT_NAMES = ("files", "corpus_OUTPUT.txt", "corpus_counts.json")


@dataclass(frozen=True)
class Claim:
    dest: Path
    job_id: str
    created_dir: bool
    wrote_marker: bool

    def release(self) -> None:
        """Undo the claim if nothing but the record is in the directory (no result arrived)."""
        marker = self.dest / MARKER
        try:
            if not self.wrote_marker or any(p.name != MARKER for p in self.dest.iterdir()):
                return
            marker.unlink(missing_ok=True)
            if self.created_dir:
                self.dest.rmdir()
        except OSError as exc:  # best effort: the claim itself is harmless
            log.debug("could not release %s: %s", self.dest, exc)


def recorded_job(dest: Path) -> str | None:
    """The job id recorded in ``dest``, if any."""
    try:
        data = json.loads((dest / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    job = data.get("jobId") if isinstance(data, dict) else None
    return job if isinstance(job, str) else None


def claim(dest: Path, job_id: str) -> Claim:
    """Record ``job_id`` as the owner of ``dest``, or refuse a directory of another job."""
    other = recorded_job(dest)
    if other is not None and other.lower() != job_id.lower():
        raise UsageError(
            f"--dest {dest} holds the results of job {other}; downloading job {job_id} there "
            "would mix the two",
            hint="choose another --dest (default: results/<job-id>/), or remove that directory",
        )
    if other is None and dest.is_dir() and any((dest / n).exists() for n in _RESULT_NAMES):
        raise UsageError(
            f"--dest {dest} already holds results of another run (no job recorded in it)",
            hint="choose another --dest (default: results/<job-id>/), or remove that directory",
        )
    if other is not None:
        return Claim(dest, job_id, created_dir=False, wrote_marker=False)
    created = not dest.exists()
    write_atomic(dest / MARKER, json.dumps({"jobId": job_id}) + "\n")
    return Claim(dest, job_id, created_dir=created, wrote_marker=True)
