"""Merge per-file counts into the exact corpus-wide counts (the aggregate task)."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

from nodetask.counting import FileCounts
from nodetask.errors import InputError
from nodetask.results import COUNTS_SUFFIX, CountsDocument, load_counts

log = logging.getLogger(__name__)

CORPUS_NAME = "corpus"
CORPUS_COUNTS = CORPUS_NAME + COUNTS_SUFFIX


def collect_inputs(args: Iterable[Path]) -> list[Path]:
    """Expand arguments: files as given, directories to ``*_counts.json`` except ``corpus_counts.json``."""
    found: list[Path] = []
    for arg in args:
        if arg.is_dir():
            found += sorted(
                p for p in arg.iterdir() if p.name.endswith(COUNTS_SUFFIX) and p.name != CORPUS_COUNTS
            )
        elif arg.exists():
            found.append(arg)
        else:
            raise InputError(f"counts file or directory not found: {arg}")
    if not found:
        raise InputError("no *_counts.json files to merge")
    return found


def merge_documents(docs: Sequence[CountsDocument]) -> CountsDocument:
    """Sum counts and totals; all documents must agree on ``ignore_case``."""
    if not docs:
        raise InputError("no counts to merge")
    modes = {d.ignore_case for d in docs}
    if len(modes) > 1:
        raise InputError("cannot merge case-sensitive and --ignore-case counts")
    total: Counter[str] = Counter()
    invalid = 0
    size = 0
    inputs: list[str] = []
    for doc in docs:
        total.update(doc.result.counts)
        invalid += doc.result.invalid_bytes
        size += doc.result.input_bytes
        inputs += doc.inputs
    if len(set(inputs)) != len(inputs):
        log.warning("some inputs appear in more than one counts file; they are counted each time")
    return CountsDocument(CORPUS_NAME, tuple(inputs), docs[0].ignore_case, FileCounts(total, invalid, size))


def merge_paths(args: Iterable[Path]) -> CountsDocument:
    """Load every counts file named by ``args`` and merge them."""
    return merge_documents([load_counts(p) for p in collect_inputs(args)])
