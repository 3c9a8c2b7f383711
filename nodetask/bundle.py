"""The tar format of a packed task's input and results (shared by the runner and the node).

A packed task (``nodetask pack``) reads one *input tar* and writes one *results tar*, so that
a pack of many small files costs one blob request each way instead of one per file.

Contracts:

* :func:`write_tar` is deterministic: uncompressed PAX tar, members in the order given (the
  caller passes file-id order), regular files only, owner 0/0 with empty names, mode 0644,
  mtime 0. The same members give the same bytes, so the runner can skip uploading a tar that
  is already there with the same size and Content-MD5. Written atomically (temporary file in
  the same directory, then ``os.replace``).
* Member names are ``<file id>/<rest>``: for an input tar ``rest`` is the file's node name
  (``in/<file id>/<safe name>`` once extracted), for a results tar it is the path of a result
  under ``OUT_DIR/<file id>/`` (what an unpacked run writes, and ``nodetask_error.txt``).
* Reading never takes a path from the tar as it is: :func:`member_parts` accepts only a
  relative name of plain parts (no empty part, no ``.``, no ``..``, no backslash or control
  character) of a *regular file* (no link, device, FIFO or directory entry); anything else is
  refused with the reason, and the caller makes it that file's failure (or leaves it out).
"""

from __future__ import annotations

import io
import os
import tarfile
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

#: The results tar in a pack's output directory; uploaded as ``<job-id>/<pack id>/results.tar``.
RESULTS_TAR = "results.tar"


def _info(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = size, 0o644, 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def write_tar(dest: Path, members: Iterable[tuple[str, Path]]) -> None:
    """Write the tar of ``(member name, local regular file)`` to ``dest``, atomically.

    Raises ``OSError`` when a file cannot be read or ``dest`` written (nothing is left at
    ``dest`` then)."""

    def add(tar: tarfile.TarFile) -> None:
        for name, path in members:
            with open(path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                tar.addfile(_info(name, size), f)

    _write_atomic(dest, add)


def write_tar_bytes(dest: Path, members: Iterable[tuple[str, bytes]]) -> None:
    """:func:`write_tar` of ``(member name, content)``: the same bytes as a tar of files holding
    those contents. Raises ``OSError`` when ``dest`` cannot be written (nothing is left then)."""

    def add(tar: tarfile.TarFile) -> None:
        for name, data in members:
            tar.addfile(_info(name, len(data)), io.BytesIO(data))

    _write_atomic(dest, add)


def _write_atomic(dest: Path, add: Callable[[tarfile.TarFile], None]) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
    try:
        with (
            os.fdopen(fd, "wb") as raw,
            tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar,
        ):
            add(tar)
        os.replace(tmp, dest)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _bad_part(part: str) -> bool:
    return part in ("", ".", "..") or "\\" in part or any(ord(c) < 32 or ord(c) == 127 for c in part)


def member_parts(info: tarfile.TarInfo) -> tuple[list[str], str | None]:
    """``(name parts, None)`` for a usable member, else ``(parts, why it is refused)``."""
    parts = info.name.split("/")
    if info.name.startswith("/") or any(_bad_part(p) for p in parts):
        return parts, f"unsafe member name {info.name!r} (absolute, empty, '.' or '..' part)"
    if not info.isreg():
        return parts, f"member {info.name!r} is not a regular file (links and devices are refused)"
    return parts, None


def read_member(tar: tarfile.TarFile, info: tarfile.TarInfo) -> bytes:
    """The bytes of a regular member (``tarfile.TarError`` when the archive is cut short)."""
    handle = tar.extractfile(info)
    if handle is None:
        raise tarfile.TarError(f"member {info.name!r} has no data")
    with handle:
        return handle.read()
