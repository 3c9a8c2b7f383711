"""Ctrl-C ends the runner within a second or two, whatever its threads are doing.

Contract of :class:`InterruptGuard` (installed by the CLI around a command, in
the main thread only):

* the first SIGINT raises :class:`KeyboardInterrupt` in the main thread, as
  Python does by default, so the CLI prints how to resume and exits 130;
* if the process is still alive :data:`GRACE` seconds later (worker threads of
  an upload or download being joined at exit, a blocked socket), ``on_force``
  is called (it prints what the normal path would have printed, once) and the
  process ends with exit code 130 without waiting for those threads;
* a second SIGINT ends it the same way at once.

Nothing is lost by not waiting: every blob and result file is written under a
temporary name and renamed when complete, and a resume skips what is there.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType, TracebackType
from typing import Any

GRACE = 1.5
EXIT_INTERRUPTED = 130


class InterruptGuard:
    """Context manager that installs the SIGINT handler described in the module docstring."""

    def __init__(self, on_force: Callable[[], None], *, grace: float = GRACE) -> None:
        self._on_force = on_force
        self._grace = grace
        self._previous: Any = None
        self._installed = False
        self._interrupted = False

    def __enter__(self) -> InterruptGuard:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
            self._installed = True
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._installed and not self._interrupted:  # interrupted: a second Ctrl-C still ends it
            signal.signal(signal.SIGINT, self._previous)
            self._installed = False

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self._interrupted:
            self._force()
        self._interrupted = True
        timer = threading.Timer(self._grace, self._force)
        timer.daemon = True
        timer.start()
        raise KeyboardInterrupt

    def _force(self) -> None:
        try:
            self._on_force()
        finally:
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(OSError, ValueError):
                    stream.flush()
            os._exit(EXIT_INTERRUPTED)


def resume_command(job_id: str, argv: list[str] | None = None) -> str:
    """The command line that resumes ``job_id``: the program as it was invoked (``.venv/bin/runner``,
    since ``runner`` may not be on PATH) and its arguments, with ``--job-id`` added if absent."""
    argv = list(sys.argv if argv is None else argv)
    program = argv[0] if "/" in argv[0] else "runner"
    args = argv[1:]
    if "--job-id" not in args and not any(a.startswith("--job-id=") for a in args):
        args = [*args, "--job-id", job_id]
    return shlex.join([program, *args])
