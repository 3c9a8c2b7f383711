"""Progress for people, on stderr: bars on a terminal, one line per change otherwise.

The library reports through a :class:`Reporter`; the CLI builds one on its
single ``Console(stderr=True)``. Nothing here writes to stdout.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Protocol

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)

from runner.batch_types import TaskCounts
from runner.text import safe

#: A plain (non-terminal) progress line at least this often, in seconds.
PLAIN_EVERY = 30.0


class Reporter(Protocol):
    def info(self, message: str) -> None: ...

    def transfer(self, label: str, total_bytes: int) -> AbstractContextManager[Callable[[int], None]]: ...

    def tasks(self, total: int) -> AbstractContextManager[Callable[[TaskCounts], None]]: ...


def _human(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def describe_counts(c: TaskCounts, total: int) -> str:
    waiting = max(0, total - c.completed - c.running)
    return (
        f"{c.completed}/{total} done: {c.succeeded} succeeded, {c.failed} failed, "
        f"{c.running} running, {waiting} waiting"
    )


class ConsoleReporter:
    """Rich bars when the console is a terminal; plain lines per change otherwise."""

    def __init__(self, console: Console, *, quiet: bool = False) -> None:
        self.console = console
        self.quiet = quiet
        self.live = console.is_terminal and not quiet

    def info(self, message: str) -> None:
        """One line for people (escaped: messages name files and jobs); nothing when quiet."""
        if not self.quiet:
            self.console.print(safe(message), highlight=False, markup=False, soft_wrap=True)

    @contextmanager
    def transfer(self, label: str, total_bytes: int) -> Iterator[Callable[[int], None]]:
        if self.live:
            with Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeElapsedColumn(),
                console=self.console,
                transient=False,
            ) as bar:
                task = bar.add_task(label, total=total_bytes)
                lock = threading.Lock()

                def advance(n: int) -> None:
                    with lock:
                        bar.advance(task, n)

                yield advance
            return
        done = [0]
        lock = threading.Lock()
        self.info(f"{label} ({_human(total_bytes)})")

        def count(n: int) -> None:
            with lock:
                done[0] += n

        yield count
        self.info(f"{label}: {_human(done[0])} of {_human(total_bytes)}")

    @contextmanager
    def tasks(self, total: int) -> Iterator[Callable[[TaskCounts], None]]:
        if self.live:
            with self._live_tasks(total) as update:
                yield update
            return
        yield PlainTaskLog(total, self.info).update

    @contextmanager
    def _live_tasks(self, total: int) -> Iterator[Callable[[TaskCounts], None]]:
        """A bar with counts (failures in red), elapsed time, throughput and an ETA."""
        narrow = self.console.width < 100  # 80 columns: a short bar and short words, nothing cut
        with Progress(
            TextColumn("tasks"),
            BarColumn(bar_width=6 if narrow else 40),
            MofNCompleteColumn(),
            TextColumn("{task.fields[detail]}"),
            TimeElapsedColumn(),
            TextColumn("{task.fields[pace]}"),
            console=self.console,
        ) as bar:
            task = bar.add_task("tasks", total=total, detail="", pace="")
            pace = Pace(total)

            def update(c: TaskCounts) -> None:
                waiting = max(0, total - c.completed - c.running)
                if narrow:
                    failed = f"[bold red]fail {c.failed}[/]" if c.failed else "fail 0"
                    detail = f"ok {c.succeeded} {failed} run {c.running} wait {waiting}"
                    now = pace.describe(c).replace(" tasks/min,", "/min")
                else:
                    failed = f"[bold red]failed {c.failed}[/]" if c.failed else "failed 0"
                    detail = f"ok {c.succeeded}  {failed}  running {c.running}  waiting {waiting}"
                    now = pace.describe(c)
                bar.update(task, completed=c.completed, detail=detail, pace=now)

            yield update


def _duration(seconds: float) -> str:
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


class Pace:
    """Throughput and ETA of the tasks completed since monitoring began (a resume's earlier
    tasks do not count)."""

    def __init__(self, total: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.total = total
        self.clock = clock
        self.start = clock()
        self.first: int | None = None

    def elapsed(self) -> float:
        return self.clock() - self.start

    def describe(self, c: TaskCounts) -> str:
        """``12.0 tasks/min, ETA 3m20s`` (``ETA ?`` until a task completed)."""
        if self.first is None:
            self.first = c.completed
        elapsed = self.elapsed()
        done = c.completed - self.first
        if done <= 0 or elapsed <= 0:
            return "ETA ?"
        rate = done / elapsed
        left = max(0, self.total - c.completed)
        per_min = rate * 60
        shown = f"{per_min:,.0f}" if per_min >= 10 else f"{per_min:.1f}"
        return f"{shown} tasks/min, ETA {_duration(left / rate)}"


class PlainTaskLog:
    """Task progress for a log or a pipe: a line at the start, at every 10 % and at least
    every :data:`PLAIN_EVERY` seconds, plus one line whenever more tasks have failed."""

    def __init__(
        self, total: int, emit: Callable[[str], None], clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.total = total
        self.emit = emit
        self.clock = clock
        self.pace = Pace(total, clock)
        self.last_line: float | None = None
        self.last_decile = -1
        self.failed = 0

    def update(self, c: TaskCounts) -> None:
        if c.failed > self.failed:
            self.failed = c.failed
            self.emit(f"tasks: {c.failed} failed so far ({c.completed}/{self.total} done)")
        decile = c.completed * 10 // self.total if self.total else 10
        now = self.clock()
        pace = self.pace.describe(c)
        due = self.last_line is None or now - self.last_line >= PLAIN_EVERY
        if decile > self.last_decile or due:
            self.last_decile = max(decile, self.last_decile)
            self.last_line = now
            elapsed = _duration(self.pace.elapsed())
            done = f"{c.completed}/{self.total} done ({c.succeeded} ok, {c.failed} failed)"
            self.emit(f"tasks {done}, {c.running} running; {elapsed}, {pace}")


class NullReporter:
    """Reports nothing (library use, tests)."""

    def info(self, message: str) -> None:
        return None

    @contextmanager
    def transfer(self, label: str, total_bytes: int) -> Iterator[Callable[[int], None]]:
        yield lambda n: None

    @contextmanager
    def tasks(self, total: int) -> Iterator[Callable[[TaskCounts], None]]:
        yield lambda c: None
