"""Help text shared by the commands: examples, exit codes, the --table modes.

Kept out of ``runner/cli.py`` so the commands stay thin; every command's help
ends with :data:`EXAMPLES` (``submit``'s also lists the exit codes, which the
README repeats).
"""

from __future__ import annotations

from enum import Enum


class TableMode(str, Enum):
    """How many rows the end-of-run summary prints."""

    AUTO = "auto"
    FULL = "full"


#: What `runner submit` exits with (also in the README).
EXIT_CODES = (
    "0 success, 2 bad input or configuration, 3 local service failure, 4 wrong key or credential, "
    "5 pool/job/task not found, 6 endpoint unreachable, 7 other service error, 8 --timeout reached, "
    "9 start task failed on the pool, 10 tasks failed, 11 job cancelled before all its tasks ran, "
    "12 results of a job still running, 13 the pool cannot grow, 14 TLS verification failed, "
    "15 no Entra ID identity, 16 --auth does not fit the target, 17 the job is being submitted by "
    "another runner, 130 interrupted."
)


def _examples(*lines: str, codes: bool = False) -> str:
    """A command's help epilog: its examples, one per line (and the exit codes)."""
    text = "Examples:\n" + "\n".join(f"  {line}" for line in lines)
    return text + (f"\n\nExit codes: {EXIT_CODES}" if codes else "")


#: The examples that end each command's help (submit's with the exit codes).
EXAMPLES = {
    "submit": _examples(
        "runner submit texts/ more/*.txt -n 10",
        "runner submit texts/ --json > result.json   (global options go anywhere)",
        "runner submit texts/ --command 'wc -l {input} > {output_dir}/lines.txt'",
        codes=True,
    ),
    "status": _examples(
        "runner status            (every job of the target)",
        "runner status JOB --json",
    ),
    "jobs": _examples(
        "runner jobs",
        "runner jobs --json -q",
    ),
    "logs": _examples(
        "runner logs JOB 3              (stdout of task 3)",
        "runner logs JOB merge --stderr",
    ),
    "results": _examples(
        "runner results JOB",
        "runner results JOB --dest elsewhere/ --table full",
    ),
    "retry": _examples(
        "runner retry JOB              (rerun its failed tasks, then download)",
        "runner retry JOB --dest elsewhere/ --timeout 600",
    ),
    "report": _examples(
        "runner report JOB             (results/JOB/report.html)",
        "runner report JOB --trace trace.tsv --price 0.096",
    ),
    "cancel": _examples(
        "runner cancel JOB",
        "runner cancel JOB --target dev",
    ),
    "clean": _examples(
        "runner clean JOB",
        "runner clean JOB --target dev --json",
    ),
    "outputs": _examples(
        "runner outputs",
        "runner outputs --target dev --json",
    ),
}
