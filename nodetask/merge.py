"""Merge per-file counts into the exact corpus-wide counts (the aggregate task).

With ``allow_missing`` (``nodetask merge --allow-missing``, the runner's
``--allow-failures``) a partial merge is made of what is there: a *placeholder*
(``{"missing": [{"task": ..., "input": ...}]}``, written by the runner in place of
a counts file that a failed task never wrote) or an unreadable counts file is
skipped, and named in the result's ``"missing"`` list, which merges of merges pass
on. Without it, both are an :class:`InputError`, as always.

A packed task's results tar (:mod:`nodetask.bundle`) in an input directory is read too (not
with ``allow_missing``: a job with ``--allow-failures`` has no tar packs): its
``<file id>/<name>_counts.json`` members are merged as if they were files named
``<file id>_counts.json``, parsed from their bytes in memory (nothing is written to disk), in
one order with the plain files: by counts file name. A tar named
``<anything>.<lo>-<hi>.tar`` gives only the members of file ids ``lo..hi`` (a pack whose files
two merge groups share is read by both, each for its own files); any other member is ignored,
and an unsafe or non-file member is left out with a warning.
"""

from __future__ import annotations

import json
import logging
import re
import tarfile
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from nodetask.bundle import member_parts, read_member
from nodetask.counting import FileCounts
from nodetask.errors import InputError
from nodetask.results import COUNTS_SUFFIX, CountsDocument, load_counts, parse_counts

log = logging.getLogger(__name__)

CORPUS_NAME = "corpus"
CORPUS_COUNTS = CORPUS_NAME + COUNTS_SUFFIX


_RANGE = re.compile(r"\.(\d+)-(\d+)\.tar$")


def _wanted(tar_name: str) -> tuple[int, int] | None:
    match = _RANGE.search(tar_name)
    return (int(match[1]), int(match[2])) if match else None


@dataclass(frozen=True)
class CountsSource:
    """One counts document to merge: a counts file (``path``), or a results tar's member, its
    bytes read into memory (``data``; nothing is written to disk). ``name`` is its counts file
    name (``<file id>_counts.json`` for a member), the key of the merge order; ``where`` names
    it in messages."""

    name: str
    where: str
    path: Path | None = None
    data: bytes | None = None

    @classmethod
    def of_file(cls, path: Path) -> CountsSource:
        return cls(path.name, str(path), path=path)

    def read(self) -> bytes:
        """Its bytes (``OSError`` when a file cannot be read)."""
        if self.data is not None:
            return self.data
        assert self.path is not None
        return self.path.read_bytes()

    def load(self) -> CountsDocument:
        """The validated document (:func:`nodetask.results.parse_counts`); :class:`InputError` if unusable."""
        if self.path is not None:
            return load_counts(self.path)
        return parse_counts(self.read(), self.where)


def tar_counts(tar_path: Path) -> list[CountsSource]:
    """The counts members of a results tar (see the module docstring), read into memory.

    :class:`InputError`: an unreadable or truncated tar, or two counts members of one file id."""
    span = _wanted(tar_path.name)
    found: dict[str, CountsSource] = {}
    try:
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
                if parts[0] in found:
                    raise InputError(f"results tar {tar_path} holds two counts files of file {parts[0]}")
                name = f"{parts[0]}{COUNTS_SUFFIX}"
                found[parts[0]] = CountsSource(name, f"{tar_path}:{info.name}", data=read_member(tar, info))
    except (OSError, tarfile.TarError) as exc:
        raise InputError(f"unusable results tar {tar_path}: {exc}") from None
    return list(found.values())


def collect_inputs(args: Iterable[Path], *, tars: bool = False) -> list[CountsSource]:
    """Expand arguments: files as given, directories to ``*_counts.json`` except ``corpus_counts.json``
    and, with ``tars``, the counts members of their ``*.tar`` (:func:`tar_counts`)."""
    found: list[CountsSource] = []
    for arg in args:
        if arg.is_dir():
            here = [
                CountsSource.of_file(p)
                for p in arg.iterdir()
                if p.name.endswith(COUNTS_SUFFIX) and p.name != CORPUS_COUNTS
            ]
            for tar_path in sorted(p for p in arg.iterdir() if p.name.endswith(".tar")) if tars else []:
                here += tar_counts(tar_path)
            # One order by counts file name, whether a file came plain or in a tar: the result's
            # ``inputs`` are the same as an unpacked job's (and a delta merge's --order).
            found += sorted(here, key=lambda s: s.name)
        elif arg.exists():
            found.append(CountsSource.of_file(arg))
        else:
            raise InputError(f"counts file or directory not found: {arg}")
    if not found:
        raise InputError("no *_counts.json files to merge")
    return found


def merge_documents(docs: Iterable[CountsDocument]) -> CountsDocument:
    """Sum counts and totals; all documents must agree on ``ignore_case``. ``docs`` is consumed
    one at a time (a generator keeps one parsed document in memory besides the sum)."""
    total: Counter[str] = Counter()
    invalid = 0
    size = 0
    inputs: list[str] = []
    mode: bool | None = None
    for doc in docs:
        if mode is not None and doc.ignore_case != mode:
            raise InputError("cannot merge case-sensitive and --ignore-case counts")
        mode = doc.ignore_case
        total.update(doc.result.counts)
        invalid += doc.result.invalid_bytes
        size += doc.result.input_bytes
        inputs += doc.inputs
    if mode is None:
        raise InputError("no counts to merge")
    if len(set(inputs)) != len(inputs):
        log.warning("some inputs appear in more than one counts file; they are counted each time")
    return CountsDocument(CORPUS_NAME, tuple(inputs), mode, FileCounts(total, invalid, size))


def merge_paths(args: Iterable[Path]) -> CountsDocument:
    """Load every counts file named by ``args`` (results tars' members too) and merge them."""
    return merge_documents(source.load() for source in collect_inputs(args, tars=True))


def in_order(doc: CountsDocument, order: Sequence[str]) -> CountsDocument:
    """``doc`` with its inputs listed as ``order`` (``nodetask merge --order`` without ``--base``: the
    runner's merge of a job grouped by what each task reads lists them as a grouping by files
    would). :class:`InputError` unless ``order`` holds the same inputs (as a multiset)."""
    if Counter(doc.inputs) != Counter(order):
        raise InputError("the inputs of the merge are not those --order lists")
    return replace(doc, inputs=tuple(order))


#: One input a partial merge lacks: ``{"task": id, "input": relative path, "why": ...}``.
Missing = dict[str, str]


@dataclass(frozen=True)
class PartialMerge:
    """What a tolerant merge made: the sum of what was there, and what was not."""

    doc: CountsDocument
    missing: tuple[Missing, ...]


def _missing_list(source: CountsSource) -> tuple[bool, list[Missing]]:
    """``(is a placeholder, its missing entries)``: a placeholder has a ``missing`` list and no
    ``counts``; a partial merge's counts file may carry a ``missing`` list too."""
    try:
        data = json.loads(source.read().decode("utf-8"))
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
    for source in collect_inputs(args):
        placeholder, carried = _missing_list(source)
        missing += carried
        if placeholder:
            continue
        try:
            docs.append(source.load())
        except InputError as exc:
            log.warning("leaving out %s: %s", source.name, exc)
            missing.append({"task": source.name.removesuffix(COUNTS_SUFFIX), "why": "unreadable counts"})
    if not docs:
        raise InputError(f"nothing to merge: all {len(missing)} input(s) are missing")
    return PartialMerge(merge_documents(docs), tuple(missing))


def _take(total: Counter[str], doc: CountsDocument, name: str) -> None:
    """``total -= doc``'s counts; a word that drops to 0 is deleted, one that would go below 0 is
    an :class:`InputError` (the base does not hold what is subtracted)."""
    for word, count in doc.result.counts.items():
        left = total.get(word, 0) - count
        if left < 0:
            raise InputError(f"subtracting {name} takes a count below 0: the base does not hold it")
        if left:
            total[word] = left
        else:
            del total[word]


def merge_delta(
    base: Path, add: Sequence[CountsSource], subtract: Sequence[CountsSource], order: Sequence[str]
) -> CountsDocument:
    """``base`` (a merged corpus's counts) minus the ``subtract`` counts files plus the ``add`` ones,
    its inputs listed as ``order``: exactly what a full merge of the resulting files writes.

    Counts are additive, so this is the full merge's document whenever the base holds every
    subtracted file. Refused (:class:`InputError`): a base that is a partial merge (a non-empty
    ``missing`` list), any count, total or input that would go below 0 (a wrong base), an
    ``order`` that is not the resulting inputs (as a multiset), mixed case modes.
    """
    if _missing_list(CountsSource.of_file(base))[1]:
        raise InputError(f"{base.name} is a partial merge: it cannot be a delta merge's base")
    start = load_counts(base)
    added = [s.load() for s in add]
    taken = [(s.load(), s.name) for s in subtract]
    if len({start.ignore_case, *(d.ignore_case for d in added), *(d.ignore_case for d, _ in taken)}) > 1:
        raise InputError("cannot merge case-sensitive and --ignore-case counts")
    total = Counter(start.result.counts)
    inputs = Counter(start.inputs)
    invalid, size = start.result.invalid_bytes, start.result.input_bytes
    for doc, name in taken:
        _take(total, doc, name)
        invalid -= doc.result.invalid_bytes
        size -= doc.result.input_bytes
        inputs.subtract(doc.inputs)
        if invalid < 0 or size < 0 or min(inputs.values(), default=0) < 0:
            raise InputError(f"subtracting {name} takes a total below 0: the base does not hold it")
    for doc in added:
        total.update(doc.result.counts)
        invalid += doc.result.invalid_bytes
        size += doc.result.input_bytes
        inputs.update(doc.inputs)
    if +inputs != Counter(order):
        raise InputError("the inputs of the delta merge are not those --order lists: wrong base or sources")
    return CountsDocument(CORPUS_NAME, tuple(order), start.ignore_case, FileCounts(total, invalid, size))
