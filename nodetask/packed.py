"""Many files in one run: ``nodetask pack`` (a packed Batch task).

Layout (the runner's plan puts the inputs there as resource files)::

    IN_DIR/<file id>/<input file>      exactly one regular file per file id
    OUT_DIR/<file id>/...              that file's results

Each file is processed exactly as an unpacked run processes it: with
``--numwords N`` it is counted and ``<stem>_OUTPUT<ext>`` and
``<stem>_counts.json`` are written with the same bytes as
``nodetask --filepath IN_DIR/<id>/<name> --output-dir OUT_DIR/<id>`` (same
environment); with ``--command TEMPLATE`` the template runs once per file
under ``/bin/sh -c`` in the current directory, ``{input}`` and
``{output_dir}`` replaced by the shlex-quoted paths, its stdout and stderr
going to the task's.

Per-file failure: a file that cannot be processed gets
``OUT_DIR/<file id>/nodetask_error.txt`` (:data:`ERROR_FILE`, one line
saying what went wrong; the name cannot be one of nodetask's result names,
which end in ``_counts.json`` or contain ``_OUTPUT``), a line on stderr, and
the others still deliver. The error file is written *before* a file is
processed and removed once it succeeded, so a run killed half-way leaves it
on the file it was killed in. Files are processed in file-id order (numeric
ids numerically). Exit code: 0 when every file succeeded, else the first
failure's code (2 bad input, 1 output not written; a command's own non-zero
code counts as 2).

Nothing outside ``IN_DIR`` is read: an entry that is a symbolic link (the
file id's directory or its file) is that file's failure, never followed.
"""

from __future__ import annotations

import logging
import os
import shlex
import stat
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from nodetask.counting import FileCounts, count_file
from nodetask.errors import InputError, NodeTaskError, OutputError
from nodetask.results import CountsDocument, output_names, write_atomic, write_outputs

log = logging.getLogger("nodetask")

ERROR_FILE = "nodetask_error.txt"
_NOT_FINISHED = "not finished: the task stopped while processing this file\n"


@dataclass(frozen=True)
class PackEntry:
    """One file id of the pack: its input, or why there is none usable."""

    file_id: str
    path: Path | None
    problem: str | None = None


def _sort_key(name: str) -> tuple[int, int, str]:
    return (0, int(name), name) if name.isdigit() else (1, 0, name)


def _entry(in_dir: Path, name: str) -> PackEntry:
    folder = in_dir / name
    st = os.lstat(folder)
    if not stat.S_ISDIR(st.st_mode):
        return PackEntry(name, None, f"{folder} is not a directory (a symbolic link is never followed)")
    files = sorted(os.listdir(folder))
    if len(files) != 1:
        return PackEntry(name, None, f"{folder} must hold exactly one input file (found {len(files)})")
    path = folder / files[0]
    if stat.S_ISLNK(os.lstat(path).st_mode):
        return PackEntry(name, None, f"{path} is a symbolic link (never followed)")
    return PackEntry(name, path)


def pack_entries(in_dir: Path) -> list[PackEntry]:
    """Every file id under ``in_dir``, in file-id order. An unreadable ``in_dir`` is an InputError."""
    try:
        names = sorted(os.listdir(in_dir), key=_sort_key)
        return [_entry(in_dir, n) for n in names]
    except OSError as exc:
        raise InputError(f"cannot read the pack's input directory {in_dir}: {exc.strerror or exc}") from None


@dataclass(frozen=True)
class CountOptions:
    numwords: int
    ignore_case: bool
    workers: int | None
    chunk_size: int
    min_parallel_bytes: int


def count_one(path: Path, opts: CountOptions, out_dir: Path, env: Mapping[str, str]) -> tuple[Path, Path]:
    """Count ``path`` and write its two results into ``out_dir``: what an unpacked run does."""
    result: FileCounts = count_file(
        path,
        ignore_case=opts.ignore_case,
        workers=opts.workers,
        chunk_size=opts.chunk_size,
        min_parallel_bytes=opts.min_parallel_bytes,
    )
    doc = CountsDocument(path.name, (path.name,), opts.ignore_case, result)
    report_name, json_name = output_names(path.name)
    return write_outputs(doc, opts.numwords, out_dir, env, report_name, json_name)


def command_one(template: str, path: Path, out_dir: Path) -> None:
    """Run the user's template for one file; a non-zero exit is an InputError naming the code."""
    out_dir.mkdir(parents=True, exist_ok=True)
    command = template.format(input=shlex.quote(str(path)), output_dir=shlex.quote(str(out_dir)))
    try:
        code = subprocess.run(["/bin/sh", "-c", command], check=False).returncode
    except OSError as exc:
        raise InputError(f"cannot run the command for {path}: {exc.strerror or exc}") from None
    if code != 0:
        raise InputError(f"the command exited with code {code} for {path}")


Process = Callable[[Path, Path], object]


def _remove(marker: Path) -> None:
    try:
        marker.unlink()
    except OSError as exc:
        raise OutputError(f"cannot remove {marker}: {exc.strerror or exc}") from None


def _record_failure(marker: Path, exc: NodeTaskError) -> None:
    try:
        write_atomic(marker, f"{exc}\n")
    except NodeTaskError as again:  # the output directory itself is unusable: stderr says it all
        log.error("cannot record the failure in %s: %s", marker, again)


def run_pack(in_dir: Path, out_dir: Path, process: Process) -> int:
    """Process every file of ``in_dir`` with ``process(input, its output dir)``; return the exit code."""
    entries = pack_entries(in_dir)
    failed: list[str] = []
    code = 0
    for entry in entries:
        target = out_dir / entry.file_id
        marker = target / ERROR_FILE
        try:
            write_atomic(marker, _NOT_FINISHED)
            if entry.path is None:
                raise InputError(entry.problem or "no input")
            process(entry.path, target)
            _remove(marker)
        except NodeTaskError as exc:
            _record_failure(marker, exc)
            log.error("file %s failed: %s", entry.file_id, exc)
            failed.append(entry.file_id)
            code = code or exc.exit_code
    if failed:
        shown = ", ".join(failed[:20]) + (", ..." if len(failed) > 20 else "")
        log.error("%d of %d file(s) failed: %s", len(failed), len(entries), shown)
    else:
        log.info("%d file(s) processed", len(entries))
    return code if failed else 0
