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

With an input tar (``--in-tar``, :mod:`nodetask.bundle`) ``IN_DIR`` is first filled from
it (:func:`extract_inputs`): a member ``<file id>/<name>`` (file id: ASCII digits) becomes
``IN_DIR/<file id>/<name>``; a member that breaks the rules (a link, a device, an unsafe name,
a second file for one id) is written nowhere and is that file's failure (a member whose
file id itself is unusable is logged and fails the run with code 2). With a results tar
(``--results-tar``) every file's results, exactly the names and bytes under
``OUT_DIR/<file id>/``, also go into ``OUT_DIR/results.tar`` (members ``<file id>/<path>``,
regular files only, in file-id order), written atomically once every file was processed,
failed ones included; a tar that cannot be written is exit code 1.

With both tars and ``--numwords`` (the runner's bundled packs) nothing of this goes through
the disk: :mod:`nodetask.tarpack` counts each member from the input tar and writes the same
results tar, byte for byte, and nothing else.
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import stat
import subprocess
import tarfile
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from nodetask.bundle import RESULTS_TAR, member_parts, read_member, write_tar
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


def file_id_key(name: str) -> tuple[int, int, str]:
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
        names = sorted(os.listdir(in_dir), key=file_id_key)
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


#: Problems of an input tar: file id -> why its member is refused; ``None``: members of no
#: usable file id (logged, they fail the run).
Problems = dict[str | None, str]


def _place(in_dir: Path, file_id: str, name: str, data: bytes) -> None:
    """Write one input member to ``in_dir/<file id>/<name>``, never through a symbolic link."""
    folder = in_dir / file_id
    folder.mkdir(parents=True, exist_ok=True)
    if not stat.S_ISDIR(os.lstat(folder).st_mode):
        raise OSError(f"{folder} is not a directory")
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".member.", suffix=".tmp")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, folder / name)


def member_verdict(info: tarfile.TarInfo, seen: set[str]) -> tuple[str | None, str, str | None]:
    """``(file id, name, why it is refused)`` of an input tar's member (``why`` ``None``: usable;
    file id ``None``: the member names no usable file id). Adds the file id to ``seen``, so a
    second member for it is refused."""
    parts, why = member_parts(info)
    file_id = parts[0]
    if not (file_id.isascii() and file_id.isdigit()):
        return None, "", f"member {info.name!r} names no file id"
    if why is None and len(parts) != 2:
        why = f"member {info.name!r} is not <file id>/<name>"
    if why is None and file_id in seen:
        why = f"the input tar holds more than one file for file id {file_id}"
    seen.add(file_id)
    return file_id, parts[-1], why


def _extract_one(tar: tarfile.TarFile, info: tarfile.TarInfo, in_dir: Path, seen: set[str]) -> Problems:
    file_id, name, why = member_verdict(info, seen)
    if why is not None:
        return {file_id: why}
    assert file_id is not None  # a usable member names its file id
    try:
        _place(in_dir, file_id, name, read_member(tar, info))
    except (OSError, tarfile.TarError) as exc:
        return {file_id: f"cannot extract {info.name!r}: {getattr(exc, 'strerror', None) or exc}"}
    return {}


def extract_inputs(tar_path: Path, in_dir: Path) -> Problems:
    """Fill ``in_dir`` from the input tar (see the module docstring); the refused members.

    An unreadable tar is an InputError (every file of the pack fails with it)."""
    problems: Problems = {}
    seen: set[str] = set()
    try:
        in_dir.mkdir(parents=True, exist_ok=True)
        with tarfile.open(tar_path, mode="r:") as tar:
            for info in tar:
                for key, why in _extract_one(tar, info, in_dir, seen).items():
                    problems.setdefault(key, why)
        for key in problems:  # a refused file id keeps none of its members
            folder = in_dir / key if key is not None else None
            if folder is not None and folder.is_dir() and not folder.is_symlink():
                shutil.rmtree(folder)
    except (OSError, tarfile.TarError) as exc:
        raise InputError(f"cannot read the pack's input tar {tar_path}: {exc}") from None
    return problems


def _result_files(folder: Path) -> Iterator[tuple[str, Path]]:
    """``(path relative to folder, file)`` of every regular file under ``folder``, sorted, links
    never followed."""
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            path = Path(root) / name
            if stat.S_ISREG(os.lstat(path).st_mode):
                yield path.relative_to(folder).as_posix(), path


def write_results_tar(out_dir: Path, file_ids: list[str]) -> Path:
    """``OUT_DIR/results.tar`` of every file's results (see the module docstring)."""
    dest = out_dir / RESULTS_TAR
    members = [
        (f"{fid}/{rel}", path)
        for fid in file_ids
        if (out_dir / fid).is_dir() and not (out_dir / fid).is_symlink()
        for rel, path in _result_files(out_dir / fid)
    ]
    try:
        write_tar(dest, members)
    except OSError as exc:
        raise OutputError(f"cannot write {dest}: {exc.strerror or exc}") from None
    return dest


def _with_problems(entries: list[PackEntry], problems: Problems) -> list[PackEntry]:
    by_id = {e.file_id: e for e in entries}
    for key, why in problems.items():
        if key is not None:
            by_id[key] = PackEntry(key, None, why)
    return [by_id[k] for k in sorted(by_id, key=file_id_key)]


def run_pack(
    in_dir: Path, out_dir: Path, process: Process, *, in_tar: Path | None = None, results_tar: bool = False
) -> int:
    """Process every file of ``in_dir`` (filled from ``in_tar`` first, when given) with
    ``process(input, its output dir)``, then write the results tar (``results_tar``); return the
    exit code."""
    problems = extract_inputs(in_tar, in_dir) if in_tar is not None else {}
    entries = _with_problems(pack_entries(in_dir), problems)
    failed: list[str] = []
    code = 0
    if None in problems:
        log.error("input tar: %s", problems[None])
        failed.append("(input tar)")
        code = InputError.exit_code
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
    if results_tar:
        try:
            write_results_tar(out_dir, [e.file_id for e in entries])
        except OutputError as exc:
            log.error("%s", exc)
            return exc.exit_code
    log_summary(failed, len(entries))
    return code if failed else 0


def log_summary(failed: list[str], total: int) -> None:
    """The run's last line on stderr: which files failed (the first 20), or how many were processed."""
    if failed:
        shown = ", ".join(failed[:20]) + (", ..." if len(failed) > 20 else "")
        log.error("%d of %d file(s) failed: %s", len(failed), total, shown)
    else:
        log.info("%d file(s) processed", total)
