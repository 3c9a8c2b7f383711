"""One way to write a file so that no reader ever sees half of it.

:func:`write_atomic` writes to a temporary file in the same directory,
flushes it to disk, then renames it over the destination (``os.replace`` is
atomic on POSIX). On any error, Ctrl-C included, the temporary file is
removed and the destination is untouched. ``durable=False`` skips the flush to
disk (the rename is still atomic for every reader; only a power loss can lose
the file): for many small files that can be fetched again, e.g. results
unpacked from a tar. ``mode`` sets the permissions
before any byte is written (0600 for files holding keys); without it the file
gets what ``open`` would give it (0666 less the umask), not ``mkstemp``'s 0600.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def _umask() -> int:
    current = os.umask(0o022)
    os.umask(current)
    return current


#: Read once, at import (single-threaded): reading the umask means setting it.
_DEFAULT_MODE = 0o666 & ~_umask()


def write_atomic(path: Path, data: str | bytes, *, mode: int | None = None, durable: bool = True) -> None:
    """Replace ``path`` with ``data`` (text is UTF-8) atomically; parent directories are created."""
    path.parent.mkdir(parents=True, exist_ok=True)
    body = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name[:200]}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, _DEFAULT_MODE if mode is None else mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(body)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
