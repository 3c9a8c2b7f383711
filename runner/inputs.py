"""Expand the user's PATHS into input files, validated before anything is created.

Contracts:

* A path is a file, a directory (walked recursively, following symlinked
  directories at most once each, so a symlink loop cannot hang the walk) or a
  glob (``*``, ``?``, ``[``; ``**`` matches across directories).
* Every problem is collected and reported in one :class:`UsageError` (exit 2):
  all missing paths at once, unreadable files, globs matching nothing, and
  nothing to do.
* Each input gets a relative path from the common root of all inputs (POSIX
  separators), so two files with the same basename in different folders keep
  different names, and the names are stable when the same command is run
  again (resume).
* A relative path with a segment ending in ``.`` is refused: Azure Blob
  Storage drops a trailing dot from names, so its blobs would not match.
* Hidden files and directories (names starting with ``.``) found while
  walking a directory are skipped; a hidden file named explicitly is kept.
* A symbolic link found while walking a directory that leads nowhere (its
  target is missing, or a link loop) is skipped with a warning naming it and
  its target (escaped: names come from data), on the log (stderr), without
  failing the run; named explicitly, it is refused with the other problems.
* Each input's ``path`` is its real path (symbolic links resolved). A walk costs
  one ``stat`` and one open per file, and one resolution per directory.
"""

from __future__ import annotations

import errno
import glob
import logging
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from runner.errors import UsageError
from runner.text import safe

log = logging.getLogger(__name__)

_GLOB_CHARS = frozenset("*?[")


@dataclass(frozen=True)
class InputFile:
    """One input: where it is, and the stable relative name used everywhere else."""

    path: Path
    relpath: str
    size: int


def expand(paths: list[str]) -> list[InputFile]:
    """Validate and expand ``paths``; sorted by relative path, duplicates removed."""
    if not paths:
        raise UsageError("no input paths given", hint="pass files, directories or globs")
    missing: list[str] = []
    unmatched: list[str] = []
    unreadable: list[str] = []
    found: dict[Path, int] = {}  # real path -> size
    for raw in paths:
        if any(ch in raw for ch in _GLOB_CHARS) and not os.path.lexists(raw):
            matches = sorted(glob.glob(os.path.expanduser(raw), recursive=True))
            if not matches:
                unmatched.append(raw)
            for match in matches:
                _collect(Path(match), found, unreadable, explicit=False)
            continue
        path = Path(os.path.expanduser(raw))
        if not path.exists():
            missing.append(raw)
            continue
        _collect(path, found, unreadable, explicit=True)
    problems: list[str] = []
    if missing:
        problems.append("not found: " + ", ".join(missing))
    if unmatched:
        problems.append("no match for glob: " + ", ".join(unmatched))
    if unreadable:
        problems.append("cannot read: " + ", ".join(unreadable))
    if problems:
        raise UsageError("; ".join(problems))
    if not found:
        raise UsageError("nothing to do: the given paths contain no files")
    under = _common_root(list(found)).as_posix().rstrip("/") + "/"  # every real path starts so
    inputs = [InputFile(p, p.as_posix()[len(under) :], size) for p, size in found.items()]
    dotted = [i.relpath for i in inputs if any(part.endswith(".") for part in i.relpath.split("/"))]
    if dotted:
        raise UsageError(
            "names ending in '.' cannot be stored as blobs (Azure Storage drops the dot): "
            + ", ".join(dotted[:10])
            + (f" and {len(dotted) - 10} more" if len(dotted) > 10 else ""),
            hint="rename those files or folders",
        )
    unique = {i.relpath: i for i in inputs}
    return sorted(unique.values(), key=lambda i: i.relpath)


def _collect(path: Path, found: dict[Path, int], unreadable: list[str], *, explicit: bool) -> None:
    if path.is_dir():
        _walk(path, found, unreadable)
    elif path.is_file():
        _add_file(path, path.resolve(), path.stat().st_size, found, unreadable)
    elif explicit:
        unreadable.append(f"{path} (not a regular file)")


def _walk(top: Path, found: dict[Path, int], unreadable: list[str]) -> None:
    """Walk ``top`` top-down (directories in name order, each at most once, symlinked ones
    followed), adding its files; what cannot be listed goes to ``unreadable``."""
    seen_dirs: set[tuple[int, int]] = set()
    pending = [str(top)]
    while pending:
        dirpath = pending.pop()
        try:
            st = os.stat(dirpath)
            with os.scandir(dirpath) as listing:
                entries = sorted(listing, key=lambda e: e.name)
        except OSError as err:
            unreadable.append(f"{err.filename} ({err.strerror})")
            continue
        key = (st.st_dev, st.st_ino)
        if key in seen_dirs:  # a symlink loop or a second link to the same directory
            continue
        seen_dirs.add(key)
        real_dir = Path(os.path.realpath(dirpath))
        visible = [e for e in entries if not e.name.startswith(".")]
        subdirs = [e.path for e in visible if _is_dir(e)]
        pending.extend(reversed(subdirs))  # popped in name order, as os.walk(topdown) visits them
        skip = set(subdirs)
        for entry in visible:
            if entry.path not in skip:
                _walked_file(entry, real_dir, found, unreadable)


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir()  # follows a symlink
    except OSError:
        return False


def _walked_file(
    entry: os.DirEntry[str], real_dir: Path, found: dict[Path, int], unreadable: list[str]
) -> None:
    """Add a directory entry that is a file, or a link to one (named by its target's real path);
    a link that leads nowhere is warned about."""
    try:
        st = entry.stat()  # follows a symlink: one stat, cached by the entry
    except OSError:
        if entry.is_symlink():
            _warn_broken_link(Path(entry.path))
        return
    if not stat.S_ISREG(st.st_mode):
        return
    real = Path(entry.path).resolve() if entry.is_symlink() else real_dir / entry.name
    _add_file(entry.path, real, st.st_size, found, unreadable)


def _warn_broken_link(link: Path) -> None:
    """Say that ``link``, a symbolic link that resolves to nothing, is skipped, and why."""
    try:
        target = os.readlink(link)
    except OSError:
        target = "?"
    why = "a link loop" if _loops(link) else "its target does not exist"
    log.warning("skipped %s: a symbolic link to %s (%s)", safe(link), safe(target), why)


def _loops(link: Path) -> bool:
    try:
        link.resolve(strict=True)
    except RuntimeError:  # Python 3.11's pathlib raises this on a loop
        return True
    except OSError as exc:
        return exc.errno == errno.ELOOP
    return False


def _add_file(path: Path | str, real: Path, size: int, found: dict[Path, int], unreadable: list[str]) -> None:
    """Add ``path`` (whose real path is ``real``) if it can be read, else say why not."""
    if not os.access(path, os.R_OK):
        unreadable.append(f"{path} (permission denied)")
        return
    try:
        with open(path, "rb") as handle:
            handle.read(1)
    except OSError as exc:
        unreadable.append(f"{path} ({exc.strerror})")
        return
    found[real] = size


def _common_root(files: list[Path]) -> Path:
    parents = [str(f.parent) for f in files]
    return Path(os.path.commonpath(parents))
