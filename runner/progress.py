"""Progress for people, on stderr: bars on a terminal, one line per change otherwise.

The library reports through a :class:`Reporter`; the CLI builds one on its
single ``Console(stderr=True)``. Nothing here writes to stdout.
"""

from __future__ import annotations

import threading
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

from runner.batch import TaskCounts
from runner.text import safe


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
            with Progress(
                TextColumn("tasks"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[detail]}"),
                TimeElapsedColumn(),
                console=self.console,
            ) as bar:
                task = bar.add_task("tasks", total=total, detail="")

                def update(c: TaskCounts) -> None:
                    waiting = max(0, total - c.completed - c.running)
                    bar.update(
                        task,
                        completed=c.completed,
                        detail=f"ok {c.succeeded}  failed {c.failed}  running {c.running}  waiting {waiting}",
                    )

                yield update
            return
        last: list[TaskCounts | None] = [None]

        def log_change(c: TaskCounts) -> None:
            if c != last[0]:
                last[0] = c
                self.info("tasks " + describe_counts(c, total))

        yield log_change


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
