"""Tar mode of ``nodetask pack`` (``--in-tar`` and ``--results-tar`` with ``--numwords``): from
the input tar straight to the results tar, nothing per file on disk.

Contract: ``OUT_DIR/results.tar`` holds, byte for byte, what the disk mode of
:mod:`nodetask.packed` puts there for the same tar and options (that mode fills ``IN_DIR``
from the tar, writes ``OUT_DIR/<file id>/...`` and tars it): per file id, in file-id order,
``<stem>_OUTPUT<ext>`` and ``<stem>_counts.json`` (sorted by name) or ``nodetask_error.txt``
with the same text. Each usable member is counted from its bytes in the tar
(:func:`nodetask.counting.count_stream`, in this process, ``chunk_size`` bytes at a time;
``--workers`` does not apply, a pack's members are small by construction), its results are
kept in memory, and the tar is written atomically once, after the last member. ``IN_DIR`` is
neither read nor written and ``OUT_DIR`` gets nothing but the results tar.

The same rules as the disk mode: a member that is refused (a link, a device, an unsafe
name, a second file for one file id: :func:`nodetask.packed.member_verdict`) or cannot be
read is that file's failure; a member naming no file id is logged and fails the run with
code 2; an unreadable tar is an :class:`InputError` (nothing written). Exit code: 0 when
every file succeeded, else the first failure's code in file-id order; 1 when the results tar
cannot be written. Unlike the disk mode there is no "not finished" error file: a run killed
half-way leaves no results tar at all.
"""

from __future__ import annotations

import logging
import tarfile
from collections.abc import Mapping
from pathlib import Path

from nodetask.bundle import RESULTS_TAR, write_tar_bytes
from nodetask.counting import count_stream
from nodetask.errors import InputError, NodeTaskError, OutputError
from nodetask.packed import ERROR_FILE, CountOptions, file_id_key, log_summary, member_verdict
from nodetask.results import CountsDocument, output_names, render_outputs

log = logging.getLogger("nodetask")

#: One file's results: ``(name under OUT_DIR/<file id>/, content)``, sorted by name.
Results = list[tuple[str, bytes]]


def _results(doc: CountsDocument, opts: CountOptions, env: Mapping[str, str]) -> Results:
    report_name, json_name = output_names(doc.file)
    counts_text, report_text = render_outputs(doc, opts.numwords, env)
    try:
        return sorted([(json_name, counts_text.encode("utf-8")), (report_name, report_text.encode("utf-8"))])
    except UnicodeEncodeError:
        raise OutputError(f"cannot write the results of {doc.file!r}: the name is not UTF-8") from None


def count_member(
    tar: tarfile.TarFile, info: tarfile.TarInfo, name: str, opts: CountOptions, env: Mapping[str, str]
) -> Results:
    """Count one usable member (its input name ``name``); what the disk mode writes for it.

    A member that cannot be read (an archive cut short) is an :class:`InputError`."""
    try:
        handle = tar.extractfile(info)
        if handle is None:
            raise tarfile.TarError(f"member {info.name!r} has no data")
        with handle:
            result = count_stream(handle, info.size, ignore_case=opts.ignore_case, chunk_size=opts.chunk_size)
    except (OSError, tarfile.TarError) as exc:
        raise InputError(f"cannot extract {info.name!r}: {getattr(exc, 'strerror', None) or exc}") from None
    return _results(CountsDocument(name, (name,), opts.ignore_case, result), opts, env)


Outcomes = dict[str, Results | NodeTaskError]


def read_pack(in_tar: Path, opts: CountOptions, env: Mapping[str, str]) -> tuple[Outcomes, str | None]:
    """Every file id of the tar -> its results or its failure; and why the run fails besides
    (the first member naming no file id), if any. An unreadable tar is an InputError."""
    outcomes: Outcomes = {}
    refused: dict[str, str] = {}
    no_id: str | None = None
    seen: set[str] = set()
    try:
        with tarfile.open(in_tar, mode="r:") as tar:
            for info in tar:
                file_id, name, why = member_verdict(info, seen)
                if file_id is None:
                    no_id = no_id or why
                elif why is not None:
                    refused.setdefault(file_id, why)
                else:
                    try:
                        outcomes[file_id] = count_member(tar, info, name, opts, env)
                    except NodeTaskError as exc:
                        outcomes[file_id] = exc
    except (OSError, tarfile.TarError) as exc:
        raise InputError(f"cannot read the pack's input tar {in_tar}: {exc}") from None
    outcomes.update({file_id: InputError(why) for file_id, why in refused.items()})
    return outcomes, no_id


def run_tar_pack(in_tar: Path, out_dir: Path, opts: CountOptions, env: Mapping[str, str]) -> int:
    """Count every member of ``in_tar`` into ``out_dir/results.tar``; the exit code (module docstring)."""
    outcomes, no_id = read_pack(in_tar, opts, env)
    failed: list[str] = []
    code = 0
    if no_id is not None:
        log.error("input tar: %s", no_id)
        failed.append("(input tar)")
        code = InputError.exit_code
    members: list[tuple[str, bytes]] = []
    for file_id in sorted(outcomes, key=file_id_key):
        outcome = outcomes[file_id]
        if isinstance(outcome, NodeTaskError):
            log.error("file %s failed: %s", file_id, outcome)
            failed.append(file_id)
            code = code or outcome.exit_code
            members.append((f"{file_id}/{ERROR_FILE}", f"{outcome}\n".encode()))
        else:
            members += [(f"{file_id}/{name}", data) for name, data in outcome]
    dest = out_dir / RESULTS_TAR
    try:
        write_tar_bytes(dest, members)
    except OSError as exc:
        log.error("cannot write %s: %s", dest, exc.strerror or exc)
        return OutputError.exit_code
    log_summary(failed, len(outcomes))
    return code if failed else 0
