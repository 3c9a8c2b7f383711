"""Checks of user input that Batch, Storage or a node would otherwise refuse too late.

Each check raises :class:`~runner.errors.UsageError` (exit 2) naming the
option or file, the limit and what to do; the CLI runs them all before
anything is uploaded or created.

Limits (and where they come from):

* ``--timeout`` and ``--max-wall-clock``: finite, positive seconds, at most
  :data:`MAX_TIMEOUT` (30 days). The SAS URLs the tasks use expire
  ``--timeout`` + 1 h after submission, so the timeout bounds how long a key
  stands behind URLs on the nodes; and an expiry must be a real date.
* ``--retries``: 0 to :data:`MAX_RETRIES`. Batch documents
  ``maxTaskRetryCount`` as a 32-bit count where 0 means no retry and -1
  retries without limit (which its documentation advises against); it names no
  other bound, so the runner sets one: every retry reruns the task on a node
  that is paid for.
* ``--command``: must split as shell words (``shlex``): an unbalanced quote
  would only fail on the node, under ``/bin/sh -c``.
* Names: a blob name is at most :data:`MAX_BLOB_NAME` characters and
  :data:`MAX_BLOB_SEGMENTS` path segments (Azure Storage's limits; Azurite
  accepts longer ones), and every file name the job creates on a node or
  locally (``<stem>_counts.json`` …), with the temporary name it is written
  under, fits :data:`MAX_FILE_NAME_BYTES`.
"""

from __future__ import annotations

import math
import shlex
from datetime import timedelta
from pathlib import PurePosixPath

from nodetask.results import COUNTS_SUFFIX
from runner.errors import UsageError
from runner.inputs import InputFile
from runner.tasks import report_names, safe_node_name

MAX_TIMEOUT = timedelta(days=30)
MAX_RETRIES = 100
#: Azure Storage: "A blob name … cannot be more than 1,024 characters long".
MAX_BLOB_NAME = 1024
#: Azure Storage: "The number of path segments comprising the blob name cannot exceed 254".
MAX_BLOB_SEGMENTS = 254
#: NAME_MAX on Linux nodes and local disks.
MAX_FILE_NAME_BYTES = 255
#: What writing a file atomically adds to its name: ``.<name>.XXXXXXXX.tmp`` (nodetask), ``.part``.
TEMP_NAME_BYTES = 14
#: How many offending names an error lists.
_LISTED = 10


def seconds(option: str, value: float | None) -> timedelta | None:
    """``value`` seconds as a timedelta, or a :class:`UsageError` for NaN, infinity, <= 0 or too long."""
    if value is None:
        return None
    limit = int(MAX_TIMEOUT.total_seconds())
    if not math.isfinite(value) or value <= 0 or value > limit:
        raise UsageError(
            f"{option} {value:g} is out of range: give seconds between 1 and {limit:,} (30 days)",
            hint="a job that runs longer can be followed with --no-wait and `runner results JOB`",
        )
    return timedelta(seconds=value)


def retries(value: int) -> int:
    """``value`` when it is 0..:data:`MAX_RETRIES`."""
    if not 0 <= value <= MAX_RETRIES:
        raise UsageError(
            f"--retries {value} is out of range: 0 to {MAX_RETRIES}",
            hint="Batch's maxTaskRetryCount is a 32-bit count (-1 retries without limit, which Batch "
            "advises against); each retry reruns the task on a node you pay for",
        )
    return value


def command_words(command: str) -> None:
    """Refuse a ``--command`` that does not split as shell words (an unbalanced quote)."""
    try:
        shlex.split(command)
    except ValueError as exc:
        raise UsageError(
            f"--command {command!r} is not valid shell: {exc}",
            hint="it runs under /bin/sh -c on the node: balance its quotes",
        ) from None


def names(files: list[InputFile], job_id: str, *, command_mode: bool) -> None:
    """Refuse inputs whose blob name or derived file names Azure or a node would refuse."""
    too_long: list[str] = []
    too_deep: list[str] = []
    long_names: list[str] = []
    for f in files:
        blob = f"{job_id}/inputs/{f.relpath}"
        if len(blob) > MAX_BLOB_NAME:
            too_long.append(f"{f.relpath} ({len(blob):,} characters)")
        if len(PurePosixPath(blob).parts) > MAX_BLOB_SEGMENTS:
            too_deep.append(f.relpath)
        if (too_much := _name_excess(f, command_mode)) is not None:
            long_names.append(too_much)
    problems = []
    if too_long:
        problems.append(
            f"blob names over Azure Storage's {MAX_BLOB_NAME:,} characters (job id and "
            f"'/inputs/' included): {_listed(too_long)}"
        )
    if too_deep:
        problems.append(f"blob names of more than {MAX_BLOB_SEGMENTS} path segments: {_listed(too_deep)}")
    if long_names:
        problems.append(
            f"file names the job would create over {MAX_FILE_NAME_BYTES - TEMP_NAME_BYTES} bytes "
            f"({MAX_FILE_NAME_BYTES} bytes with the temporary name used to write them): {_listed(long_names)}"
        )
    if problems:
        hint = "shorten those file or folder names, or move them up"
        if long_names and not (too_long or too_deep):
            hint = "shorten those file names to the lengths given (their folders may stay as they are)"
        raise UsageError("; ".join(problems), hint=hint)


def _name_excess(f: InputFile, command_mode: bool) -> str | None:
    """``"<path> (239 bytes): rename it to at most 229 bytes (`<name>_counts.json` ...)"`` when a
    name the job derives from ``f`` would be too long, else ``None``. Derived names grow with
    the input's name byte for byte, so the excess is what the name must lose."""
    name = PurePosixPath(f.relpath).name
    longest = max(_derived_names(f.relpath, command_mode), key=lambda n: len(n.encode()))
    excess = len(longest.encode()) + TEMP_NAME_BYTES - MAX_FILE_NAME_BYTES
    if excess <= 0:
        return None
    size = len(name.encode())
    return (
        f"{f.path} ({size} bytes): rename it to at most {size - excess} bytes "
        f"({_pattern(longest, name)} would be {len(longest.encode())} bytes)"
    )


def _pattern(derived: str, name: str) -> str:
    """A derived name as the rule that makes it: ``<name>_counts.json``, ``<stem>_OUTPUT.txt``."""
    stem = PurePosixPath(name).stem
    for whole, shown in ((name, "<name>"), (stem, "<stem>")):
        if whole and derived.startswith(whole):
            return f"`{shown}{derived[len(whole) :]}`"
    return "its name on the node"


def _derived_names(relpath: str, command_mode: bool) -> list[str]:
    """Every file name the job creates for an input: on the node, then locally (results.py)."""
    name = PurePosixPath(relpath).name
    if command_mode:
        return [f"{name}.out", safe_node_name(relpath)]
    node = safe_node_name(relpath)
    return [*report_names(name), *report_names(node), f"{name}{COUNTS_SUFFIX}", node]


def _listed(items: list[str]) -> str:
    shown = ", ".join(items[:_LISTED])
    return shown + (f" and {len(items) - _LISTED} more" if len(items) > _LISTED else "")
