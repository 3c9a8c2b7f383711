"""A merged result's bundle: every per-file result of the job in one blob, so that a fully cached
rerun downloads three blobs instead of two per file (:mod:`runner.cache`).

Contracts:

* The bundle is an uncompressed tar whose members are named ``<file key>/<result name>``,
  regular files only, written with fixed owner, mode and time (the same results give the
  same bytes). :func:`build` takes each member's bytes from a local file and refuses (returns
  ``None``) when one does not hash to the MD5 its blob has, or the whole would be over
  :data:`MAX_BUNDLE` bytes: then the merged entry has no bundle and hits download per file.
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

import hashlib
import io
import logging
import tarfile
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

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


def build(members: Iterable[tuple[str, Path, bytes | None]]) -> bytes | None:
    """The bundle of ``(member name, local file, its blob's MD5)``, or ``None`` (see the module)."""
    out = io.BytesIO()
    total = 0
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, path, md5 in members:
            try:
                data = path.read_bytes()
            except OSError as exc:
                log.info("no bundle: cannot read %s (%s)", path, exc.strerror)
                return None
            total += len(data)
            if md5 is None or _md5(data) != md5 or total > MAX_BUNDLE:
                log.info("no bundle: %s is not its blob's bytes, or the bundle would be too large", path)
                return None
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            try:
                tar.addfile(info, io.BytesIO(data))
            except ValueError:  # a name USTAR cannot hold
                log.info("no bundle: member name %r does not fit a tar header", name)
                return None
    return out.getvalue()


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
                for name, paths in wanted.items():
                    _write(tar, bundle.blob, name, paths)
        except tarfile.TarError:
            raise CorruptDownload(bundle.blob) from None


def _write(tar: tarfile.TarFile, blob: str, name: str, paths: list[Path]) -> None:
    try:
        info = tar.getmember(name)
    except KeyError:
        raise CorruptDownload(f"{blob} (no member {name})") from None
    handle = tar.extractfile(info) if info.isreg() else None
    if handle is None:
        raise CorruptDownload(f"{blob} (member {name} is not a file)")
    data = handle.read()
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        part = path.with_name(path.name + ".part")
        part.write_bytes(data)
        part.replace(path)
