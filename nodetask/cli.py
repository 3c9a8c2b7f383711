"""Command line of nodetask (argparse; the node has no third-party packages).

``main(argv)`` returns the exit code; every :class:`NodeTaskError` becomes one
line on stderr. See the package docstring for the commands and formats.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from nodetask.bundle import RESULTS_TAR
from nodetask.counting import DEFAULT_CHUNK_SIZE, DEFAULT_MIN_PARALLEL_BYTES
from nodetask.errors import EXIT_BAD_INPUT, InputError, NodeTaskError
from nodetask.merge import CORPUS_NAME, collect_inputs, in_order, merge_delta, merge_paths, merge_tolerant
from nodetask.packed import CountOptions, Process, command_one, count_one, run_pack
from nodetask.results import COUNTS_SUFFIX, CountsDocument, write_outputs
from nodetask.tarpack import run_tar_pack

log = logging.getLogger("nodetask")


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line and exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see --help)\n")


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None


def _output_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument("--output-dir", type=Path, default=Path("."), help="Where to write results (default: .).")


def _counting_options(p: argparse.ArgumentParser) -> None:
    """What ``nodetask`` and ``nodetask pack`` share: how files are counted (same defaults)."""
    p.add_argument("--ignore-case", action="store_true", help="Count words lower-cased.")
    p.add_argument(
        "--workers", type=_int, default=None, help="Processes for large files (default: all CPUs)."
    )
    p.add_argument("--chunk-size", type=_int, default=DEFAULT_CHUNK_SIZE, help=argparse.SUPPRESS)
    p.add_argument(
        "--min-parallel-bytes", type=_int, default=DEFAULT_MIN_PARALLEL_BYTES, help=argparse.SUPPRESS
    )


def _count_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="nodetask",
        description="Top-N word counts of a text file (the Batch tutorial's task). "
        "Use 'nodetask merge --help' for merging per-file counts.",
    )
    p.add_argument("--filepath", required=True, type=Path, help="The text file to count.")
    p.add_argument("--numwords", required=True, type=_int, help="How many words to report (N >= 1).")
    _output_dir(p)
    _counting_options(p)
    return p


def _merge_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="nodetask merge", description="Merge *_counts.json files into the exact corpus top N.")
    p.add_argument("inputs", nargs="+", type=Path, metavar="FILE_OR_DIR", help="Counts files or directories.")
    p.add_argument("--numwords", required=True, type=_int, help="How many words to report (N >= 1).")
    _output_dir(p)
    p.add_argument(
        "--allow-missing",
        action="store_true",
        help="Merge what is there: skip placeholders and unreadable counts files, list them as missing.",
    )
    _delta_options(p)
    return p


def _delta_options(p: argparse.ArgumentParser) -> None:
    """A delta merge: a merged corpus's counts, minus some files' counts, plus FILE_OR_DIR's."""
    p.add_argument("--base", type=Path, help="Delta merge: the merged counts to start from.")
    p.add_argument("--subtract", type=Path, help="Delta merge: counts file(s) (or directory) to take away.")
    p.add_argument(
        "--order",
        type=Path,
        help="JSON list of the result's inputs, in order (same inputs; delta merge: required).",
    )


def _read_order(path: Path) -> list[str]:
    """The ``--order`` file: a JSON list of file names."""
    try:
        order = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"unusable --order file {path}: {exc}") from None
    if not isinstance(order, list) or not all(isinstance(i, str) for i in order):
        raise InputError(f"--order file {path} must be a JSON list of file names")
    return order


def _run_delta(args: argparse.Namespace) -> CountsDocument:
    """``merge --base B --subtract S --order O FILE_OR_DIR...`` (:func:`nodetask.merge.merge_delta`)."""
    if args.base is None or args.order is None or args.allow_missing:
        raise InputError("a delta merge needs --base and --order, and no --allow-missing")
    order = _read_order(args.order)
    subtract = collect_inputs([args.subtract]) if args.subtract is not None else []
    return merge_delta(args.base, collect_inputs(args.inputs, tars=True), subtract, order)


def _pack_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="nodetask pack",
        description="Process every IN_DIR/<file id>/<file> as an unpacked run would, "
        "results in OUTPUT_DIR/<file id>/ (see nodetask.packed).",
    )
    p.add_argument("--in-dir", required=True, type=Path, help="One directory per file id, one file in each.")
    p.add_argument(
        "--in-tar",
        type=Path,
        default=None,
        help="Fill IN_DIR from this tar of <file id>/<file> first "
        "(with --results-tar and --numwords: count straight from the tar, IN_DIR unused).",
    )
    p.add_argument(
        "--results-tar",
        action="store_true",
        help=f"Also write every file's results into OUTPUT_DIR/{RESULTS_TAR} (members <file id>/...).",
    )
    _output_dir(p)
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--numwords", type=_int, help="Count words: how many to report (N >= 1).")
    what.add_argument("--command", help="Run this template per file ({input}, {output_dir}).")
    _counting_options(p)
    return p


def _count_options(args: argparse.Namespace) -> CountOptions:
    _check_numwords(args.numwords)
    if args.chunk_size < 1:
        raise InputError(f"--chunk-size must be at least 1 (got {args.chunk_size})")
    return CountOptions(
        args.numwords, args.ignore_case, args.workers, args.chunk_size, args.min_parallel_bytes
    )


def run_packed(args: argparse.Namespace) -> int:
    """``nodetask pack``: every file of the pack; the exit code of :func:`nodetask.packed.run_pack`."""
    process: Process
    if args.command is not None:
        template: str = args.command
        process = lambda path, out: command_one(template, path, out)  # noqa: E731
    else:
        opts = _count_options(args)
        if args.in_tar is not None and args.results_tar:  # tar mode: nothing per file on disk
            return run_tar_pack(args.in_tar, args.output_dir, opts, os.environ)
        process = lambda path, out: count_one(path, opts, out, os.environ)  # noqa: E731
    return run_pack(args.in_dir, args.output_dir, process, in_tar=args.in_tar, results_tar=args.results_tar)


def _check_numwords(n: int) -> None:
    if n < 1:
        raise InputError(f"--numwords must be at least 1 (got {n})")


def run_count(args: argparse.Namespace) -> tuple[Path, Path]:
    return count_one(args.filepath, _count_options(args), args.output_dir, os.environ)


def run_merge(args: argparse.Namespace) -> tuple[Path, Path]:
    _check_numwords(args.numwords)
    extra = None
    if args.base is not None or args.subtract is not None:
        doc = _run_delta(args)
    elif args.allow_missing and args.order is not None:
        raise InputError("--order and --allow-missing do not go together (a partial merge lacks inputs)")
    elif args.allow_missing:
        partial = merge_tolerant(args.inputs)
        doc, extra = partial.doc, {"missing": list(partial.missing)}
    else:
        doc = merge_paths(args.inputs)
        doc = doc if args.order is None else in_order(doc, _read_order(args.order))
    report_name = f"{CORPUS_NAME}_OUTPUT.txt"
    json_name = CORPUS_NAME + COUNTS_SUFFIX
    return write_outputs(doc, args.numwords, args.output_dir, os.environ, report_name, json_name, extra=extra)


def main(argv: Sequence[str] | None = None) -> int:
    """Run nodetask with ``argv`` (default ``sys.argv[1:]``); return the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="nodetask: %(message)s", stream=sys.stderr)
    try:
        if argv[:1] == ["pack"]:
            return run_packed(_pack_parser().parse_args(argv[1:]))
        if argv[:1] == ["merge"]:
            report, counts = run_merge(_merge_parser().parse_args(argv[1:]))
        else:
            report, counts = run_count(_count_parser().parse_args(argv))
    except NodeTaskError as exc:
        print(f"nodetask: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("nodetask: interrupted", file=sys.stderr)
        return 130
    log.info("wrote %s and %s", report, counts)
    return 0
