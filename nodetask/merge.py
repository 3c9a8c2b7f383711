"""Merge per-file counts into the exact corpus-wide counts (the aggregate task).

With ``allow_missing`` (``nodetask merge --allow-missing``, the runner's
``--allow-failures``) a partial merge is made of what is there: a *placeholder*
(``{"missing": [{"task": ..., "input": ...}]}``, written by the runner in place of
a counts file that a failed task never wrote) or an unreadable counts file is
skipped, and named in the result's ``"missing"`` list, which merges of merges pass
on. Without it, both are an :class:`InputError`, as always.

A packed task's results tar (:mod:`nodetask.bundle`) in an input directory is read too: its
``<file id>/<name>_counts.json`` members are merged as if they were files. A tar named
``<anything>.<lo>-<hi>.tar`` gives only the members of file ids ``lo..hi`` (a pack whose files
two merge groups share is read by both, each for its own files); any other member is ignored,
and an unsafe or non-file member is left out with a warning.
"""

from __future__ import annotations

import json
import logging
import re
import tarfile
import tempfile
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from nodetask.bundle import member_parts, read_member
from nodetask.counting import FileCounts
from nodetask.errors import InputError
from nodetask.results import COUNTS_SUFFIX, CountsDocument, load_counts

log = logging.getLogger(__name__)

CORPUS_NAME = "corpus"
CORPUS_COUNTS = CORPUS_NAME + COUNTS_SUFFIX


_RANGE = re.compile(r"\.(\d+)-(\d+)\.tar$")


def _wanted(tar_name: str) -> tuple[int, int] | None:
    match = _RANGE.search(tar_name)
    return (int(match[1]), int(match[2])) if match else None


def tar_counts(tar_path: Path, scratch: Path) -> list[Path]:
    """Write the counts members of a results tar (see the module docstring) under ``scratch``."""
    span = _wanted(tar_path.name)
    found: list[Path] = []
    try:
        scratch.mkdir(parents=True)
        with tarfile.open(tar_path, mode="r:") as tar:
            for info in tar:
                parts, why = member_parts(info)
                if len(parts) != 2 or not parts[1].endswith(COUNTS_SUFFIX) or not parts[0].isdigit():
                    continue
                if why is not None:
                    log.warning("%s: %s", tar_path.name, why)
                    continue
                if span is not None and not span[0] <= int(parts[0]) <= span[1]:
                    continue
                path = scratch / f"{parts[0]}{COUNTS_SUFFIX}"
                if path.exists():
                    raise InputError(f"results tar {tar_path} holds two counts files of file {parts[0]}")
                path.write_bytes(read_member(tar, info))
                found.append(path)
    except (OSError, tarfile.TarError) as exc:
        raise InputError(f"unusable results tar {tar_path}: {exc}") from None
    return found


def collect_inputs(args: Iterable[Path], scratch: Path | None = None) -> list[Path]:
    """Expand arguments: files as given, directories to ``*_counts.json`` except ``corpus_counts.json``
    and, with ``scratch`` (a directory to write them in), the counts members of ``*.tar``."""
    found: list[Path] = []
    for arg in args:
        if arg.is_dir():
            here = [p for p in arg.iterdir() if p.name.endswith(COUNTS_SUFFIX) and p.name != CORPUS_COUNTS]
            tars = sorted(p for p in arg.iterdir() if p.name.endswith(".tar")) if scratch else []
            for n, tar_path in enumerate(tars):
                here += tar_counts(tar_path, (scratch or arg) / f"tar-{len(found)}-{n}")
            # One order by counts file name, whether a file came plain or in a tar: the result's
            # ``inputs`` are the same as an unpacked job's (and a delta merge's --order).
            found += sorted(here, key=lambda p: p.name)
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
    """Load every counts file named by ``args`` (results tars' members too) and merge them."""
    with tempfile.TemporaryDirectory(prefix="nodetask-merge-") as tmp:
        return merge_documents([load_counts(p) for p in collect_inputs(args, Path(tmp))])


#: One input a partial merge lacks: ``{"task": id, "input": relative path, "why": ...}``.
Missing = dict[str, str]


@dataclass(frozen=True)
class PartialMerge:
    """What a tolerant merge made: the sum of what was there, and what was not."""

    doc: CountsDocument
    missing: tuple[Missing, ...]


def _missing_list(path: Path) -> tuple[bool, list[Missing]]:
    """``(is a placeholder, its missing entries)``: a placeholder has a ``missing`` list and no
    ``counts``; a partial merge's counts file may carry a ``missing`` list too."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return False, []
    items = data.get("missing") if isinstance(data, dict) else None
    if not isinstance(items, list):
        return False, []
    entries = [{str(k): str(v)[:1024] for k, v in i.items()} for i in items if isinstance(i, dict)]
    return "counts" not in data, entries


def merge_tolerant(args: Iterable[Path]) -> PartialMerge:
    """Merge what can be merged; placeholders and unreadable files become ``missing`` entries.

    Fails (:class:`InputError`) only when nothing at all is left to merge.
    """
    docs: list[CountsDocument] = []
    missing: list[Missing] = []
    for path in collect_inputs(args):
        placeholder, carried = _missing_list(path)
        missing += carried
        if placeholder:
            continue
        try:
            docs.append(load_counts(path))
        except InputError as exc:
            log.warning("leaving out %s: %s", path.name, exc)
            missing.append({"task": path.name.removesuffix(COUNTS_SUFFIX), "why": "unreadable counts"})
    if not docs:
        raise InputError(f"nothing to merge: all {len(missing)} input(s) are missing")
    return PartialMerge(merge_documents(docs), tuple(missing))


def _take(total: Counter[str], doc: CountsDocument, path: Path) -> None:
    """``total -= doc``'s counts; a word that drops to 0 is deleted, one that would go below 0 is
    an :class:`InputError` (the base does not hold what is subtracted)."""
    for word, count in doc.result.counts.items():
        left = total.get(word, 0) - count
        if left < 0:
            raise InputError(f"subtracting {path.name} takes a count below 0: the base does not hold it")
        if left:
            total[word] = left
        else:
            del total[word]


def merge_delta(
    base: Path, add: Sequence[Path], subtract: Sequence[Path], order: Sequence[str]
) -> CountsDocument:
    """``base`` (a merged corpus's counts) minus the ``subtract`` counts files plus the ``add`` ones,
    its inputs listed as ``order``: exactly what a full merge of the resulting files writes.

    Counts are additive, so this is the full merge's document whenever the base holds every
    subtracted file. Refused (:class:`InputError`): a base that is a partial merge (a non-empty
    ``missing`` list), any count, total or input that would go below 0 (a wrong base), an
    ``order`` that is not the resulting inputs (as a multiset), mixed case modes.
    """
    if _missing_list(base)[1]:
        raise InputError(f"{base.name} is a partial merge: it cannot be a delta merge's base")
    start = load_counts(base)
    added = [load_counts(p) for p in add]
    taken = [(load_counts(p), p) for p in subtract]
    if len({start.ignore_case, *(d.ignore_case for d in added), *(d.ignore_case for d, _ in taken)}) > 1:
        raise InputError("cannot merge case-sensitive and --ignore-case counts")
    total = Counter(start.result.counts)
    inputs = Counter(start.inputs)
    invalid, size = start.result.invalid_bytes, start.result.input_bytes
    for doc, path in taken:
        _take(total, doc, path)
        invalid -= doc.result.invalid_bytes
        size -= doc.result.input_bytes
        inputs.subtract(doc.inputs)
        if invalid < 0 or size < 0 or min(inputs.values(), default=0) < 0:
            raise InputError(f"subtracting {path.name} takes a total below 0: the base does not hold it")
    for doc in added:
        total.update(doc.result.counts)
        invalid += doc.result.invalid_bytes
        size += doc.result.input_bytes
        inputs.update(doc.inputs)
    if +inputs != Counter(order):
        raise InputError("the inputs of the delta merge are not those --order lists: wrong base or sources")
    return CountsDocument(CORPUS_NAME, tuple(order), start.ignore_case, FileCounts(total, invalid, size))
