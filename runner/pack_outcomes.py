"""Which files of a failed bundled pack delivered, from its one ``results.tar`` (issue 16).

A bundled pack (:mod:`runner.pack_tars`) has no blob per file: its files' results and
``nodetask_error.txt`` files are members ``<file id>/<name>`` of ``<job-id>/<pack>/results.tar``.
``status``, ``report`` and ``--trace`` (:mod:`runner.execution`) read that tar for the packs
that failed, to tell the files that failed from those that delivered.

Contracts:

* :func:`read_outcomes` downloads at most ``limit`` results tars, one request each, in the
  order given, and no more than ``max_bytes`` in all (their sizes as listed: a tar that would
  go past it is not read); the packs beyond either bound are returned as
  :attr:`PackOutcomes.unread` (never a request).
* A member counts only when :func:`nodetask.bundle.member_parts` accepts it (a relative name
  of plain parts, a regular file) and its file id is one of the pack's: a tar's names are
  never trusted. A file *delivered* when it has a member other than ``nodetask_error.txt``
  and no ``nodetask_error.txt``; a file with one failed, with that file's first line (at most
  :data:`ERROR_CHARS` characters, as written: the caller escapes it before printing) as its
  error. A file with no member at all is neither (it failed, with no error of its own).
* A tar gone since it was listed, or that cannot be read, tells nothing of its files (they
  stay failed); it is named in :attr:`PackOutcomes.unreadable`, logged, and nothing is raised.
"""

from __future__ import annotations

import io
import logging
import tarfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from nodetask.bundle import member_parts, read_member
from nodetask.packed import ERROR_FILE
from runner.pack_tars import results_tar_blob
from runner.storage import Storage

log = logging.getLogger(__name__)

#: The most of a file's error that is kept (its first line).
ERROR_CHARS = 500


@dataclass(frozen=True)
class PackOutcomes:
    """What the results tars read say: file ids delivered, errors by file id, packs not read."""

    delivered: frozenset[str] = frozenset()
    errors: Mapping[str, str] = field(default_factory=dict)
    #: Failed packs whose tar was not read: over the limit.
    unread: tuple[str, ...] = ()
    #: Failed packs whose tar was gone or could not be read.
    unreadable: tuple[str, ...] = ()


@dataclass(frozen=True)
class FailedPack:
    """A failed bundled pack: its id, its file ids, its results tar's size as listed."""

    pack_id: str
    file_ids: tuple[str, ...]
    tar_size: int


def read_outcomes(
    storage: Storage, container: str, job_id: str, packs: Iterable[FailedPack], limit: int, max_bytes: int
) -> PackOutcomes:
    """The outcomes in the results tars of ``packs``, as many read as ``limit`` and
    ``max_bytes`` allow (module docstring)."""
    todo, unread = _within(list(packs), limit, max_bytes)
    delivered: set[str] = set()
    errors: dict[str, str] = {}
    unreadable: list[str] = []
    for pack_id, file_ids in ((p.pack_id, p.file_ids) for p in todo):
        raw = storage.try_download_bytes(container, results_tar_blob(job_id, pack_id))
        found = None if raw is None else outcomes_in(raw, set(file_ids))
        if found is None:
            log.warning("the results tar of pack %s is gone or unreadable", pack_id)
            unreadable.append(pack_id)
            continue
        delivered |= found[0]
        errors.update(found[1])
    return PackOutcomes(frozenset(delivered), errors, unread, tuple(unreadable))


def _within(packs: list[FailedPack], limit: int, max_bytes: int) -> tuple[list[FailedPack], tuple[str, ...]]:
    """The packs to read (in order, within both bounds) and the ids of the others."""
    read: list[FailedPack] = []
    unread: list[str] = []
    spent = 0
    for p in packs:
        if len(read) < limit and spent + p.tar_size <= max_bytes:
            read.append(p)
            spent += p.tar_size
        else:
            unread.append(p.pack_id)
    return read, tuple(unread)


def outcomes_in(tar_bytes: bytes, file_ids: set[str]) -> tuple[set[str], dict[str, str]] | None:
    """``(file ids delivered, {file id: its error})`` of one results tar (its bytes); ``None``
    when it cannot be read."""
    results: set[str] = set()
    errors: dict[str, str] = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(tar_bytes), mode="r:") as tar:
            for info in tar:
                parts, why = member_parts(info)
                if why is not None or len(parts) < 2 or parts[0] not in file_ids:
                    continue
                if parts[1:] == [ERROR_FILE]:
                    errors[parts[0]] = _first_line(read_member(tar, info))
                else:
                    results.add(parts[0])
    except tarfile.TarError:
        return None
    return results - set(errors), errors


def _first_line(data: bytes) -> str:
    text = data.decode("utf-8", errors="replace").strip()
    return (text.splitlines() or [""])[0][:ERROR_CHARS]
