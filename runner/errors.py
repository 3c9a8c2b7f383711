"""The runner's one error hierarchy.

Every error the user can cause or meet is a :class:`RunnerError` subclass that
carries the process exit code. The CLI turns any of them into one clear line on
stderr and ``sys.exit(exit_code)``; nothing else in the runner decides exit
codes. Messages must never contain a key or a SAS token.
"""

from __future__ import annotations


class RunnerError(Exception):
    """Base class: ``str(err)`` is the one line shown to the user."""

    exit_code: int = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} ({self.hint})"


class UsageError(RunnerError):
    """Bad input from the user (paths, options, outputs file): nothing was created."""

    exit_code = 2


class ServiceError(RunnerError):
    """A local service (Azurite, localbatch) could not be started or reached."""

    exit_code = 3


class TargetError(RunnerError):
    """The target's outputs could not be resolved (missing Pulumi CLI, stack, keys)."""

    exit_code = 2


class AuthError(RunnerError):
    """A service rejected our credentials (wrong key, expired token, missing role)."""

    exit_code = 4


class NoIdentityError(AuthError):
    """No Entra ID token could be had (no ``az login``, no managed identity, …): nothing was sent."""

    exit_code = 15


class AuthModeMismatch(RunnerError):
    """``--auth`` does not fit the target: entra against a keys-only one, or shared keys without keys."""

    exit_code = 16


class NotFoundError(RunnerError):
    """A pool, job, task or blob the command needs does not exist."""

    exit_code = 5


class UnreachableError(RunnerError):
    """An endpoint could not be reached (connection refused, DNS, TLS)."""

    exit_code = 6


class TlsError(UnreachableError):
    """The endpoint answered, but its TLS certificate could not be verified (nothing was sent)."""

    exit_code = 14


class RemoteError(RunnerError):
    """Any other error answered by Batch or Storage, classified by status code."""

    exit_code = 7


class WaitTimeout(RunnerError):
    """``--timeout`` elapsed before the job's tasks completed; the job is left running."""

    exit_code = 8


class StartTaskFailed(RunnerError):
    """The pool's start task failed on every node: no task can run."""

    exit_code = 9

    def __init__(self, message: str, *, node_errors: list[tuple[str, str]], hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        #: ``(node id, tail of startup/stderr.txt)`` for each failed node.
        self.node_errors = node_errors


class PoolCannotGrow(RunnerError):
    """A fixed-size pool has no node and Batch stopped resizing it with errors (e.g. quota):
    no task can run until someone acts."""

    exit_code = 13


class JobEnded(RunnerError):
    """The job was terminated (``runner cancel``) while tasks were still waiting: they never run."""

    exit_code = 11


class JobStillRunning(RunnerError):
    """``runner results`` of a job whose tasks have not all completed (without ``--wait``)."""

    exit_code = 12


class JobBusy(RunnerError):
    """Another runner is submitting (or retrying) this job right now (its lock in Storage is held)."""

    exit_code = 17


class TaskFailures(RunnerError):
    """One or more tasks failed. Carries the data; the CLI prints one line per task."""

    exit_code = 10

    def __init__(
        self, message: str, *, failures: list[object], result: object | None = None, hint: str | None = None
    ) -> None:
        super().__init__(message, hint=hint)
        #: :class:`runner.batch.TaskFailure` values.
        self.failures = failures
        #: the :class:`runner.results.JobResults` of the tasks that did succeed, if any.
        self.result = result
