"""Count the words of one file: streaming, and in parallel over byte ranges.

Contract: :func:`count_file` returns exactly the counts of the semantics in
the package docstring, whatever ``workers`` and ``chunk_size`` are; memory is
bounded by the vocabulary (plus ``chunk_size`` per process), not by the file.
"""

from __future__ import annotations

import itertools
import logging
import multiprocessing
import os
import stat
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from nodetask.errors import InputError
from nodetask.tokens import ASCII_WHITESPACE, count_raw, fold, last_boundary

log = logging.getLogger(__name__)

#: Bytes read per step by each process.
DEFAULT_CHUNK_SIZE = 1024 * 1024
#: Below this size one process is faster than starting several.
DEFAULT_MIN_PARALLEL_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True)
class FileCounts:
    """The word counts of one input (a file, or a merged corpus)."""

    counts: Counter[str]
    invalid_bytes: int
    input_bytes: int

    @property
    def words(self) -> int:
        return sum(self.counts.values())

    @property
    def unique_words(self) -> int:
        return len(self.counts)


@dataclass(frozen=True)
class ByteRange:
    """``[start, end)`` of a file; both ends sit at a token boundary."""

    start: int
    end: int


def default_workers() -> int:
    """The number of CPUs this process may run on (affinity-aware where the OS says)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def iter_chunks(f: IO[bytes], rng: ByteRange, chunk_size: int) -> Iterator[bytes]:
    """Yield the bytes of ``rng`` in pieces of about ``chunk_size`` that never split a token."""
    f.seek(rng.start)
    remaining = rng.end - rng.start
    carry = b""
    while remaining > 0:
        data = f.read(min(chunk_size, remaining))
        if not data:  # the file shrank while we read it
            break
        remaining -= len(data)
        buf = carry + data if carry else data
        if remaining <= 0:
            carry = buf
            break
        cut = last_boundary(buf)
        if cut < 0:
            carry = buf  # one token longer than a chunk: keep reading
            continue
        carry = buf[cut:]
        yield buf[:cut]
    if carry:
        yield carry


def _count_open(f: IO[bytes], rng: ByteRange, chunk_size: int, ignore_case: bool) -> tuple[Counter[str], int]:
    raw: Counter[bytes] = Counter()
    for chunk in iter_chunks(f, rng, chunk_size):
        count_raw(chunk, raw)
    return fold(raw, ignore_case=ignore_case)


def count_range(path: Path, rng: ByteRange, chunk_size: int, ignore_case: bool) -> tuple[Counter[str], int]:
    """Word counts and replaced-byte count of one byte range (runs in a worker)."""
    with path.open("rb") as f:
        return _count_open(f, rng, chunk_size, ignore_case)


def count_stream(
    f: IO[bytes], size: int, *, ignore_case: bool = False, chunk_size: int = DEFAULT_CHUNK_SIZE
) -> FileCounts:
    """Count the first ``size`` bytes of the seekable binary object ``f`` (e.g. a tar member):
    the same counts as :func:`count_file` of a file holding those bytes, in this process,
    reading ``chunk_size`` bytes at a time (memory: the vocabulary plus a chunk).

    Read errors propagate unchanged (the caller knows what ``f`` is)."""
    if chunk_size < 1:
        raise ValueError("chunk_size must be >= 1")
    counts, invalid = _count_open(f, ByteRange(0, size), chunk_size, ignore_case)
    return FileCounts(counts, invalid, size)


def _count_range_star(args: tuple[Path, ByteRange, int, bool]) -> tuple[Counter[str], int]:
    return count_range(*args)


def aligned_ranges(path: Path, size: int, parts: int) -> list[ByteRange]:
    """Split ``[0, size)`` into at most ``parts`` ranges whose inner ends are ASCII whitespace bytes."""
    cuts = [0]
    with path.open("rb") as f:
        for i in range(1, parts):
            pos = max(size * i // parts, cuts[-1])
            f.seek(pos)
            while True:
                block = f.read(65536)
                if not block:
                    pos = size
                    break
                hits = [j for j in (block.find(bytes([c])) for c in ASCII_WHITESPACE) if j >= 0]
                if hits:
                    pos += min(hits)
                    break
                pos += len(block)
            cuts.append(min(pos, size))
    cuts.append(size)
    return [ByteRange(a, b) for a, b in itertools.pairwise(cuts) if b > a]


def _mp_context() -> multiprocessing.context.BaseContext:
    # fork starts fastest and needs no importable __main__ (we may run from a zipapp).
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else "spawn")


def check_readable(path: Path) -> int:
    """Raise :class:`InputError` unless ``path`` is a readable regular file; return its size.

    The type is checked before opening, so a FIFO or device is refused rather than waited on.
    """
    try:
        st = path.stat()
    except FileNotFoundError:
        raise InputError(f"input file not found: {path}") from None
    except OSError as exc:
        raise InputError(f"cannot read input file {path}: {exc.strerror or exc}") from None
    if stat.S_ISDIR(st.st_mode):
        raise InputError(f"input is a directory, not a file: {path}")
    if not stat.S_ISREG(st.st_mode):
        raise InputError(f"input is not a regular file: {path}")
    try:
        with path.open("rb") as f:
            f.read(1)
    except OSError as exc:
        raise InputError(f"cannot read input file {path}: {exc.strerror or exc}") from None
    return st.st_size


def count_file(
    path: Path,
    *,
    ignore_case: bool = False,
    workers: int | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    min_parallel_bytes: int = DEFAULT_MIN_PARALLEL_BYTES,
) -> FileCounts:
    """Count the words of ``path``.

    Uses ``workers`` processes (default :func:`default_workers`) when the file
    has at least ``min_parallel_bytes`` bytes, one process otherwise.
    """
    if chunk_size < 1:
        raise ValueError("chunk_size must be >= 1")
    size = check_readable(path)
    nworkers = workers if workers is not None else default_workers()
    if nworkers < 1:
        raise InputError(f"--workers must be at least 1 (got {nworkers})")
    ranges = aligned_ranges(path, size, nworkers) if nworkers > 1 and size >= min_parallel_bytes else []
    try:
        if len(ranges) > 1:
            log.debug("counting %s in %d ranges with %d workers", path, len(ranges), nworkers)
            jobs = [(path, r, chunk_size, ignore_case) for r in ranges]
            total: Counter[str] = Counter()
            invalid = 0
            with _mp_context().Pool(min(nworkers, len(ranges))) as pool:
                for counts, bad in pool.imap_unordered(_count_range_star, jobs):
                    if total:
                        total.update(counts)
                    else:
                        total = counts
                    invalid += bad
            return FileCounts(total, invalid, size)
        counts, invalid = count_range(path, ByteRange(0, size), chunk_size, ignore_case)
        return FileCounts(counts, invalid, size)
    except OSError as exc:
        raise InputError(f"cannot read input file {path}: {exc.strerror or exc}") from None
