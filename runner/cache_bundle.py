"""A merged result's bundle: every per-file result of the job in one blob, so that a first run
publishes three blobs instead of two per file and a fully cached rerun downloads three
(:mod:`runner.cache`).

Contracts:

* The member list (``results.keys``, next to the bundle) has a line per member:
  name, size and base64 MD5, separated by tabs (:func:`member_list`, :func:`parse_members`). For a file
  held only in a bundle it is the entry's listing: what its results are and how to check them.
* The bundle is an uncompressed tar whose members are named ``<file key>/<result name>``,
  regular files only, written with fixed owner, mode and time (the same results give the
  same bytes). :func:`build` takes each member's bytes from a local file and refuses (returns
  ``None``) when one does not hash to the MD5 its blob has, or the whole would be over
  :data:`MAX_BUNDLE` bytes, or a name holds a line break: then the merged entry has no
  bundle and every file gets an entry of its own.
* The bundle blob is verified as any entry blob is: its listed Content-MD5 and size against
  the metadata recorded when it was written (else the merged entry is corrupt and the merge
  runs again), and the downloaded bytes against that MD5. Its members are not checked one by
  one against the files' own entries: a file's entry may have been rewritten since with an
  equivalent result (a corrupt entry recomputed: other provenance lines, other bytes).
* :func:`extract` never takes a path from the tar: it looks up exactly the members it wants,
  each must be a regular file, and is written (atomically) where the caller says. Anything
  else is :class:`~runner.storage.CorruptDownload` and leaves nothing at that member's path.
"""

from __future__ import annotations

import base64
import hashlib
import io
import logging
import tarfile
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from runner.atomic import write_atomic
from runner.storage import CorruptDownload, DownloadItem, Storage

log = logging.getLogger(__name__)

BUNDLE_NAME = "results.tar"
#: Next to the bundle: its members' names (``<file key>/<name>``), one a line; what a later job
#: reads to take results from the bundle.
KEYS_NAME = "results.keys"
#: A bundle larger than this is not written (the rerun downloads per file instead).
MAX_BUNDLE = 64 * 1024 * 1024


@dataclass(frozen=True)
class Bundle:
    """The bundle blob as its entry lists it: name, size and Content-MD5."""

    blob: str
    size: int
    md5: bytes | None


def _md5(data: bytes) -> bytes:
    return hashlib.md5(data, usedforsecurity=False).digest()


def build(members: Iterable[tuple[str, Path, bytes | None]]) -> tuple[bytes, bytes] | None:
    """The bundle of ``(member name, local file, its blob's MD5)`` and its member list
    (:func:`member_list`), or ``None`` (see the module)."""
    out = io.BytesIO()
    total = 0
    listed: list[Member] = []
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, path, md5 in members:
            try:
                data = path.read_bytes()
            except OSError as exc:
                log.info("no bundle: cannot read %s (%s)", path, exc.strerror)
                return None
            total += len(data)
            if md5 is None or _md5(data) != md5 or total > MAX_BUNDLE or "\n" in name or "\r" in name:
                log.info("no bundle: %s is not its blob's bytes, or cannot be a member", path)
                return None
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            try:
                tar.addfile(info, io.BytesIO(data))
            except ValueError:  # a name USTAR cannot hold
                log.info("no bundle: member name %r does not fit a tar header", name)
                return None
            listed.append(Member(name, len(data), md5))
    return out.getvalue(), member_list(listed)


@dataclass(frozen=True)
class Member:
    """One member of a bundle as its member list gives it: ``<file key>/<result name>``, its size
    and MD5 (those of the result blob it holds)."""

    name: str
    size: int
    md5: bytes

    @property
    def key(self) -> str:
        return self.name.split("/", 1)[0]

    @property
    def result(self) -> str:
        return self.name.split("/", 1)[1]


def member_list(members: Iterable[Member]) -> bytes:
    """The member list's bytes: a line per member, ``<name>\\t<size>\\t<base64 MD5>``."""
    lines = (f"{m.name}\t{m.size}\t{base64.b64encode(m.md5).decode('ascii')}\n" for m in members)
    return "".join(lines).encode("utf-8")


def member_line_size(name: str) -> int:
    """About the bytes of ``name``'s line in a member list (its result's size unknown: 4 digits)."""
    return len(name.encode("utf-8")) + 1 + 4 + 1 + 24 + 1


def parse_members(data: bytes) -> list[Member] | None:
    """The members a member list names; ``None`` when a line is not one (not this format)."""
    out = []
    for line in data.decode("utf-8", errors="replace").splitlines():
        name, _, rest = line.partition("\t")
        size, _, md5 = rest.partition("\t")
        try:
            digest = base64.b64decode(md5, validate=True)
        except ValueError:
            return None
        if "/" not in name or not size.isdigit() or len(digest) != 16:
            return None
        out.append(Member(name, int(size), digest))
    return out


def extract(storage: Storage, container: str, bundle: Bundle, wanted: Mapping[str, list[Path]]) -> None:
    """Download ``bundle`` once (its bytes checked against its MD5) and write each wanted member
    (``{member name: local paths}``) to each of its paths."""
    if bundle.md5 is None:
        raise CorruptDownload(bundle.blob)
    with tempfile.TemporaryDirectory(prefix="runner-bundle-") as tmp:
        local = Path(tmp) / BUNDLE_NAME
        storage.download_files(container, [DownloadItem(bundle.blob, local, bundle.md5, bundle.size)])
        try:
            with tarfile.open(local, mode="r:") as tar:
                by_name = {info.name: info for info in tar}  # getmember() scans: quadratic
                for name, paths in wanted.items():
                    _write(tar, by_name.get(name), f"{bundle.blob} (member {name})", paths)
        except tarfile.TarError:
            raise CorruptDownload(bundle.blob) from None


def read_members(storage: Storage, container: str, bundle: Bundle, wanted: Iterable[str]) -> dict[str, bytes]:
    """Download ``bundle`` once (MD5 checked) and return the bytes of each wanted member;
    a member missing or not a file is :class:`~runner.storage.CorruptDownload`."""
    if bundle.md5 is None:
        raise CorruptDownload(bundle.blob)
    data = storage.download_bytes(container, bundle.blob)
    if _md5(data) != bundle.md5:
        raise CorruptDownload(bundle.blob)
    out = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
            by_name = {info.name: info for info in tar}
            for name in wanted:
                out[name] = _read(tar, by_name.get(name), f"{bundle.blob} (member {name})")
    except tarfile.TarError:
        raise CorruptDownload(bundle.blob) from None
    return out


def _read(tar: tarfile.TarFile, info: tarfile.TarInfo | None, what: str) -> bytes:
    handle = tar.extractfile(info) if info is not None and info.isreg() else None
    if handle is None:
        raise CorruptDownload(f"{what}: missing or not a file")
    return handle.read()


def _write(tar: tarfile.TarFile, info: tarfile.TarInfo | None, what: str, paths: list[Path]) -> None:
    data = _read(tar, info, what)
    for path in paths:
        write_atomic(path, data, durable=False)  # the bundle can be fetched again
