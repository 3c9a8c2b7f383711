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
