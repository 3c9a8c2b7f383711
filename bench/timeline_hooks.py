"""Run ``runner`` with its steps time-stamped (a measuring aid for bench/timeline_e2e.py; not a test).

``python bench/timeline_hooks.py EVENTS.tsv RUNNER-ARGS...`` runs the runner's
CLI in this process after wrapping a few of its functions so that each call
appends ``<wall time> <event> <detail>`` lines to ``EVENTS.tsv``: the upload,
the job's creation, the tasks added, the end of monitoring, every parallel
storage transfer (one start and one end line per item), every listing, and the
process's exit. Nothing else changes: same code path, same requests.
"""

from __future__ import annotations

import atexit
import functools
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

_lock = threading.Lock()
_lines: list[str] = []


def _note(event: str, detail: str = "") -> None:
    with _lock:
        _lines.append(f"{time.time():.6f}\t{event}\t{detail}")


def _timed(owner: Any, name: str, event: str) -> None:
    inner = getattr(owner, name)

    @functools.wraps(inner)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        _note(f"{event}.start")
        try:
            return inner(*args, **kwargs)
        finally:
            _note(f"{event}.end")

    setattr(owner, name, wrapper)


def _per_item(storage_cls: Any) -> None:
    inner = storage_cls._run_parallel

    def wrapper(self: Any, fn: Callable[[Any], None], items: list[Any]) -> None:
        def one(item: Any) -> None:
            name = getattr(item, "blob_name", "")
            _note("item.start", name)
            try:
                fn(item)
            finally:
                _note("item.end", name)

        inner(self, one, items)

    storage_cls._run_parallel = wrapper


def install(events: Path) -> None:
    from runner import batch, storage, submit

    _timed(storage.Storage, "upload_files", "upload")
    _timed(storage.Storage, "download_files", "download")
    _timed(storage.Storage, "list_blobs", "list_blobs")
    _timed(batch.Batch, "ensure_job", "ensure_job")
    _timed(batch.Batch, "add_tasks", "add_tasks")
    _timed(submit, "monitor", "monitor")
    _timed(submit, "collect", "collect")
    _per_item(storage.Storage)

    def flush() -> None:
        _note("exit")
        events.write_text("\n".join(_lines) + "\n", encoding="utf-8")

    atexit.register(flush)


def main() -> None:
    _note("main")
    events = Path(sys.argv[1])
    install(events)
    from runner.cli import main as runner_main

    sys.argv = ["runner", *sys.argv[2:]]
    _note("imported")
    runner_main()


if __name__ == "__main__":
    main()
