"""Job schedules: jobs ``<schedule-id>:job-N`` made on a schedule's timetable, as Batch makes them.

The contract (Batch's, from ``BatchJobScheduleConfiguration`` in the REST spec):

* the first job is due at ``doNotRunUntil`` (at once without it); a recurring schedule's next
  job is due ``recurrenceInterval`` after the previous due time; nothing is due after
  ``doNotRunAfter``. ``executionInfo.nextRunTime`` is the next due time.
* a schedule has at most one active job: a due time that comes while the previous job is still
  active waits for it to end, for at most ``startWindow`` (default: forever); a due time whose
  start window has passed is lost and the next recurrence is due.
* a schedule with nothing more due completes once its last job has ended; ``terminate``
  terminates the active job and completes when it has ended; ``delete`` deletes the schedule's
  jobs, then the schedule (``deleting`` meanwhile); ``disable`` stops new jobs (the active one
  goes on) and ``enable`` resumes, a due time missed meanwhile still made within its window.
* ``PATCH`` replaces the elements it names (``schedule``, ``jobSpecification``, ``metadata``),
  ``PUT`` replaces all three (``metadata`` left out is removed); a new job specification applies
  to jobs made from then on.

``recurrenceInterval`` and ``startWindow`` under ``ServiceConfig.schedule_min_interval`` seconds
(Batch: 1 minute) are refused with 400 ``InvalidPropertyValue``. Durations and times are parsed
with isodate. Each schedule is one document in the store; keys starting with ``_`` are internal
(``_due``: the next due time, ``_lastDue``, ``_jobCount``). Everything runs on the loop thread.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import math
from datetime import datetime, timedelta, timezone
from enum import Enum
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import isodate

from localbatch import errors, models
from localbatch.errors import BatchError
from localbatch.etags import new_etag
from localbatch.models import JobState, iso, utcnow
from localbatch.node import MAX_TIMER_SECONDS
from localbatch.views import public

if TYPE_CHECKING:
    from localbatch.scheduler import Service

log = logging.getLogger(__name__)

ZERO = timedelta(0)
MAX_WINDOW = timedelta(days=3650)


class ScheduleState(str, Enum):
    ACTIVE = "active"
    COMPLETED = "completed"
    DISABLED = "disabled"
    TERMINATING = "terminating"
    DELETING = "deleting"


# ----------------------------------------------------------------------------- validation


def _duration(value: Any, name: str, minimum: float) -> timedelta:
    if not isinstance(value, str):
        raise errors.invalid_property(name, value, "expected an ISO 8601 duration")
    try:
        parsed = isodate.parse_duration(value)
    except (isodate.ISO8601Error, ValueError, ArithmeticError, TypeError):
        raise errors.invalid_property(name, value, "not an ISO 8601 duration") from None
    if not isinstance(parsed, timedelta):  # years or months: not a fixed length
        raise errors.invalid_property(name, value, "use days, hours, minutes and seconds")
    if parsed.total_seconds() <= 0 or parsed.total_seconds() < minimum:
        raise errors.invalid_property(name, value, f"must be at least {minimum:g} seconds")
    return parsed


def _time(value: Any, name: str) -> datetime:
    if not isinstance(value, str):
        raise errors.invalid_property(name, value, "expected an RFC 3339 date-time")
    try:
        parsed = isodate.parse_datetime(value)
        parsed = parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
        parsed.astimezone(timezone.utc)
    except (isodate.ISO8601Error, ValueError, ArithmeticError, TypeError, AttributeError):
        raise errors.invalid_property(name, value, "expected an RFC 3339 date-time") from None
    return parsed


def validate_configuration(value: Any, minimum: float) -> dict[str, Any]:
    """A ``schedule`` element, normalised (times as Batch writes them); 400 naming what is wrong."""
    if not isinstance(value, dict):
        raise errors.invalid_property("schedule", value, "expected a JSON object")
    out: dict[str, Any] = {}
    for key in ("doNotRunUntil", "doNotRunAfter"):
        if value.get(key) is not None:
            out[key] = iso(_time(value[key], f"schedule.{key}"))
    for key in ("startWindow", "recurrenceInterval"):
        if value.get(key) is not None:
            _duration(value[key], f"schedule.{key}", minimum)
            out[key] = value[key]
    return out


def validate_job_specification(value: Any) -> dict[str, Any]:
    """A ``jobSpecification``, checked as a job is (errors name ``jobSpecification.<property>``)."""
    if not isinstance(value, dict):
        raise errors.invalid_property("jobSpecification", value, "expected a JSON object")
    spec = {k: v for k, v in value.items() if k != "id"}
    try:
        models.validate_job({"id": "schedule", **spec})
    except BatchError as exc:
        exc.values = [(k, f"jobSpecification.{v}" if k == "PropertyName" else v) for k, v in exc.values]
        raise
    return spec


def validate_schedule(body: Any, minimum: float, *, create: bool) -> dict[str, Any]:
    """The body of add (``create``) or replace: ``schedule`` and ``jobSpecification`` required."""
    body = models.require_body_object(body, "job schedule")
    out: dict[str, Any] = {}
    if create:
        out["id"] = models.check_id(body.get("id"))
        if body.get("displayName") is not None:
            if not isinstance(body["displayName"], str) or len(body["displayName"]) > 1024:
                raise errors.invalid_property("displayName", "...", "a string of at most 1024 characters")
            out["displayName"] = body["displayName"]
    for key in ("schedule", "jobSpecification"):
        if body.get(key) is None:
            raise errors.missing_property(key)
    out["schedule"] = validate_configuration(body["schedule"], minimum)
    out["jobSpecification"] = validate_job_specification(body["jobSpecification"])
    if body.get("metadata") is not None:
        if not isinstance(body["metadata"], list):
            raise errors.invalid_property("metadata", "...", "expected a JSON array")
        out["metadata"] = body["metadata"]
    return out


def validate_patch(body: Any, minimum: float) -> dict[str, Any]:
    """The body of update: only the elements given, each validated whole."""
    body = models.require_body_object(body, "job schedule update")
    out: dict[str, Any] = {}
    if body.get("schedule") is not None:
        out["schedule"] = validate_configuration(body["schedule"], minimum)
    if body.get("jobSpecification") is not None:
        out["jobSpecification"] = validate_job_specification(body["jobSpecification"])
    if body.get("metadata") is not None:
        if not isinstance(body["metadata"], list):
            raise errors.invalid_property("metadata", "...", "expected a JSON array")
        out["metadata"] = body["metadata"]
    return out


# ----------------------------------------------------------------------------- rendering


def schedule_view(base: str, doc: dict[str, Any]) -> dict[str, Any]:
    """The schedule as Batch's GET returns it."""
    out = {"odata.metadata": f"{base}/$metadata#jobschedules/@Element", **public(doc)}
    out["url"] = f"{base}/jobschedules/{quote(doc['id'])}"
    info: dict[str, Any] = {}
    if doc.get("_due") and doc["state"] in (ScheduleState.ACTIVE.value, ScheduleState.DISABLED.value):
        info["nextRunTime"] = doc["_due"]
    recent = doc.get("_recentJob")
    if recent:
        info["recentJob"] = {"id": recent, "url": f"{base}/jobs/{quote(recent)}"}
    if doc.get("_endTime"):
        info["endTime"] = doc["_endTime"]
    out["executionInfo"] = info
    return out


def _parse(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)


def _interval(doc: dict[str, Any], key: str) -> timedelta | None:
    value = doc["schedule"].get(key)
    return _duration(value, key, 0) if value else None


# ----------------------------------------------------------------------------- the service part


class JobSchedules:
    """The account's job schedules and their timers (see module docstring)."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self.docs: dict[str, dict[str, Any]] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}

    def load(self) -> None:
        """Load the stored schedules and resume each one (a due time passed meanwhile is made up)."""
        for doc in self.service.store.load_docs("jobschedules"):
            self.docs[doc["id"].lower()] = doc
        for key in list(self.docs):
            self._advance(key)

    def stop(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()

    # ------------------------------------------------------------------ operations

    def get(self, schedule_id: str) -> dict[str, Any]:
        doc = self.docs.get(schedule_id.lower())
        if doc is None:
            raise errors.not_found("JobSchedule")
        return doc

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        key = body["id"].lower()
        if key in self.docs:
            if self.docs[key]["state"] == ScheduleState.DELETING.value:
                raise errors.conflict(
                    "JobScheduleBeingDeleted", "The specified job schedule has been marked for deletion."
                )
            raise errors.exists("JobSchedule")
        now = iso(utcnow())
        doc: dict[str, Any] = {
            **body,
            "eTag": new_etag(),
            "lastModified": now,
            "creationTime": now,
            "state": ScheduleState.ACTIVE.value,
            "stateTransitionTime": now,
            "_jobCount": 0,
        }
        doc["_due"] = self._first_due(doc)
        self.docs[key] = doc
        self._save(doc)
        self._advance(key)
        return doc

    def update(self, schedule_id: str, changes: dict[str, Any], *, replace: bool) -> dict[str, Any]:
        """PATCH (``replace=False``) or PUT; the timetable is recomputed from the new schedule."""
        doc = self._writable(schedule_id)
        if replace:
            doc.pop("metadata", None)
        doc.update(changes)
        doc.update(eTag=new_etag(), lastModified=iso(utcnow()))
        if "schedule" in changes:
            last = doc.get("_lastDue")
            doc["_due"] = self._next_due(doc, _parse(last)) if last else self._first_due(doc)
        self._save(doc)
        self._advance(doc["id"].lower())
        return doc

    def disable(self, schedule_id: str) -> dict[str, Any]:
        doc = self._writable(schedule_id)
        if doc["state"] == ScheduleState.ACTIVE.value:
            self._set_state(doc, ScheduleState.DISABLED)
        return doc

    def enable(self, schedule_id: str) -> dict[str, Any]:
        doc = self._writable(schedule_id)
        if doc["state"] == ScheduleState.DISABLED.value:
            self._set_state(doc, ScheduleState.ACTIVE)
            self._advance(doc["id"].lower())
        return doc

    def terminate(self, schedule_id: str) -> dict[str, Any]:
        """Terminate the schedule and its active job; it completes once that job has ended."""
        doc = self._writable(schedule_id)
        self._set_state(doc, ScheduleState.TERMINATING)
        job = self._active_job(doc)
        if job is not None:
            # Batch's reason; a job already terminating is left to end as it does (no 409).
            self.service._terminate(job["id"].lower(), "TerminateJobSchedule")
        self._advance(doc["id"].lower())
        return doc

    def delete(self, schedule_id: str) -> None:
        """Mark the schedule ``deleting``, delete its jobs; it is gone once they are."""
        doc = self.get(schedule_id)
        if doc["state"] == ScheduleState.DELETING.value:
            return
        self._set_state(doc, ScheduleState.DELETING)
        for job in self.jobs_of(doc):
            self.service.delete_job(job["id"])
        self._advance(doc["id"].lower())

    def jobs_of(self, doc: dict[str, Any]) -> list[dict[str, Any]]:
        """The jobs made from this schedule that still exist."""
        key = doc["id"].lower()
        return [j for j in self.service.jobs.values() if str(j.get("_scheduleId", "")).lower() == key]

    def job_ended(self, job: dict[str, Any]) -> None:
        """A job completed or was deleted: its schedule may make the next one, or complete."""
        schedule_id = job.get("_scheduleId")
        if schedule_id:
            self._advance(str(schedule_id).lower())

    # ------------------------------------------------------------------ the timetable

    def _writable(self, schedule_id: str) -> dict[str, Any]:
        doc = self.get(schedule_id)
        refusals = {
            ScheduleState.COMPLETED.value: (
                "JobScheduleCompleted",
                "The specified job schedule is already in a completed state.",
            ),
            ScheduleState.DELETING.value: (
                "JobScheduleBeingDeleted",
                "The specified job schedule has been marked for deletion.",
            ),
            ScheduleState.TERMINATING.value: (
                "JobScheduleBeingTerminated",
                "The specified job schedule is being terminated.",
            ),
        }
        if doc["state"] in refusals:
            raise errors.conflict(*refusals[doc["state"]])
        return doc

    def _first_due(self, doc: dict[str, Any]) -> str | None:
        until = doc["schedule"].get("doNotRunUntil")
        first = _parse(until) if until else _parse(doc["creationTime"])
        return self._within_deadline(doc, first)

    def _next_due(self, doc: dict[str, Any], last: datetime) -> str | None:
        every = _interval(doc, "recurrenceInterval")
        return None if every is None else self._within_deadline(doc, last, every)

    @staticmethod
    def _within_deadline(doc: dict[str, Any], start: datetime, delta: timedelta = ZERO) -> str | None:
        """``start + delta`` if it is not after ``doNotRunAfter`` (None then, or past year 9999)."""
        try:
            due = start + delta
        except OverflowError:
            return None
        after = doc["schedule"].get("doNotRunAfter")
        return None if after and due > _parse(after) else iso(due)

    def _active_job(self, doc: dict[str, Any]) -> dict[str, Any] | None:
        recent = doc.get("_recentJob")
        job = self.service.jobs.get(str(recent).lower()) if recent else None
        ended = (JobState.COMPLETED.value, JobState.DELETING.value)
        return job if job is not None and job["state"] not in ended else None

    def _advance(self, key: str) -> None:
        """Move the schedule on: make a job that is due, skip a lost one, complete, arm the timer."""
        doc = self.docs.get(key)
        if doc is None:
            return
        self._cancel_timer(key)
        state = doc["state"]
        if state == ScheduleState.DELETING.value:
            if not self.jobs_of(doc):
                self.docs.pop(key, None)
                self.service.store.delete_job_schedule(key)
                self.service.autopools.schedule_ended(doc)
            return
        if state == ScheduleState.COMPLETED.value:
            return
        active = self._active_job(doc)
        if state == ScheduleState.TERMINATING.value or doc.get("_due") is None:
            if active is None:
                self._complete(doc)
            return
        if state == ScheduleState.DISABLED.value:
            return
        self._run_due(doc, active)

    def _run_due(self, doc: dict[str, Any], active: dict[str, Any] | None) -> None:
        key = doc["id"].lower()
        now = utcnow()
        due = _parse(doc["_due"])
        if now < due:
            self._arm(key, (due - now).total_seconds())
            return
        window = _interval(doc, "startWindow")
        if window is not None and window > MAX_WINDOW:
            window = None  # longer than any wait: the same as none (and no datetime overflow)
        if window is not None and now > due + window:
            doc["_due"] = self._skip_lost(doc, due, window, now)
            self._save(doc)
            self._advance(key)
            return
        if active is not None:  # wait for it to end (job_ended), or for the window to close
            if window is not None:
                self._arm(key, (due + window - now).total_seconds())
            return
        self._make_job(doc, due)
        doc["_lastDue"] = doc["_due"]
        doc["_due"] = self._next_due(doc, due)
        self._save(doc)
        self._advance(key)

    def _skip_lost(self, doc: dict[str, Any], due: datetime, window: timedelta, now: datetime) -> str | None:
        """The first due time after ``due`` whose window has not closed by ``now`` (or None)."""
        every = _interval(doc, "recurrenceInterval")
        if every is None:
            return None
        lost = math.floor((now - window - due) / every) + 1
        doc["_lastDue"] = iso(due + every * (lost - 1))
        return self._within_deadline(doc, due, every * lost)

    def _make_job(self, doc: dict[str, Any], due: datetime) -> None:
        number = int(doc.get("_jobCount", 0)) + 1
        doc["_jobCount"] = number
        job_id = f"{doc['id']}:job-{number}"
        body = {**copy.deepcopy(doc["jobSpecification"]), "id": job_id, "_scheduleId": doc["id"]}
        try:
            self.service.create_job(body)
        except BatchError as exc:  # e.g. a job of that id still being deleted: this run is lost
            log.warning("job schedule %s could not create job %s: %s", doc["id"], job_id, exc.code)
            return
        doc["_recentJob"] = job_id
        log.info("job schedule %s created job %s (due %s)", doc["id"], job_id, iso(due))

    def _complete(self, doc: dict[str, Any]) -> None:
        doc["_due"] = None
        doc["_endTime"] = iso(utcnow())
        self._set_state(doc, ScheduleState.COMPLETED)
        self.service.autopools.schedule_ended(doc)

    def _set_state(self, doc: dict[str, Any], state: ScheduleState) -> None:
        if doc["state"] == state.value:
            return
        now = iso(utcnow())
        doc["previousState"] = doc["state"]
        doc["previousStateTransitionTime"] = doc["stateTransitionTime"]
        doc.update(state=state.value, stateTransitionTime=now, eTag=new_etag())
        self._save(doc)

    def _save(self, doc: dict[str, Any]) -> None:
        self.service.store.put_job_schedule(doc)

    def _arm(self, key: str, seconds: float) -> None:
        loop = asyncio.get_running_loop()
        delay = max(0.0, min(seconds, MAX_TIMER_SECONDS))
        self._timers[key] = loop.call_later(delay, self._tick, key)

    def _tick(self, key: str) -> None:
        self._timers.pop(key, None)
        try:
            self._advance(key)
        except Exception:  # a timer boundary: a bug must not silently stop the schedule's clock
            log.exception("job schedule %s failed to advance", key)

    def _cancel_timer(self, key: str) -> None:
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()
