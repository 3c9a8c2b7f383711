"""nodetask: the program every Batch task runs on a compute node.

Standard library only (a node has ``python3`` and nothing else); it also runs
as a single zipapp built by :func:`nodetask.pack.build_pyz`.

Commands
========

``python -m nodetask --filepath FILE --numwords N [--output-dir DIR] [--ignore-case] [--workers K]``
    Counts the words of FILE and writes ``<stem>_OUTPUT<ext>`` (the tutorial's
    text report) and ``<stem>_counts.json`` (see "JSON schema") into DIR
    (default: the current directory).

``python -m nodetask merge --numwords N FILE_OR_DIR... [--output-dir DIR]``
    Merges ``*_counts.json`` files (a directory argument means every
    ``*_counts.json`` in it, except ``corpus_counts.json`` so that a re-run
    never counts a previous merge twice) into the exact corpus-wide top N,
    written as ``corpus_OUTPUT.txt`` and ``corpus_counts.json``. Merged results
    can be merged again (hierarchical aggregation). ``--order LIST.json`` (a
    JSON list of the same inputs) lists the result's ``inputs`` in that order;
    with ``--base`` and ``--subtract`` it is a delta merge (:mod:`nodetask.merge`).

``python -m nodetask pack --in-dir IN (--numwords N | --command TEMPLATE) [--output-dir DIR] ...``
    Many files in one run (a packed Batch task): every ``IN/<file id>/<file>``
    is processed as an unpacked run would, its results in ``DIR/<file id>/``
    with the same names and bytes; a file that fails gets its own
    ``nodetask_error.txt`` there and the others still deliver (see
    :mod:`nodetask.packed`).

Exit codes: 0 success; 2 bad input (missing file, a directory, an unreadable
file, N < 1, unusable counts file), with one line on stderr and nothing
written; 1 an output could not be written. Outputs are written atomically
(temporary file + ``os.replace``), so a reader never sees half a file.

Semantics
=========

The tutorial's (``python_tutorial_task.py`` of the Azure Batch Python
tutorial), with its bugs fixed:

* The file is decoded as UTF-8 with ``errors="replace"``; the number of
  invalid *bytes* that were replaced is counted and reported (the tutorial
  used the locale's encoding and crashed on invalid input).
* Words are what ``str.split()`` yields on the decoded text, i.e. split on
  every Unicode whitespace character (including U+00A0, U+0085, U+2028,
  U+3000 and the ASCII separators U+001C..U+001F), then ``strip`` of
  ``string.punctuation`` from both ends. Non-ASCII punctuation (``«``, ``—``)
  is part of a word, as in the tutorial.
* Tokens that are empty after stripping (``"--"``, ``"..."``) are dropped;
  the tutorial counted them as the word ``""``.
* Case-sensitive; ``--ignore-case`` applies ``str.lower()`` to each word
  (after stripping).
* Order: count descending, ties broken by the word in ascending code-point
  order, so the output is deterministic (the tutorial used first-seen order).
* Memory is bounded by the vocabulary, not the file size (the tutorial read
  the whole file and built a list of every word). The file is read in chunks
  that end at an ASCII whitespace byte, so no chunk splits a word or a UTF-8
  sequence (ASCII bytes never occur inside a multi-byte sequence, so decoding
  chunk by chunk equals decoding the whole file, invalid bytes included). The
  only unbounded piece is a single token longer than a chunk, which is held
  whole.
* Large files (>= 8 MiB by default) are split into byte ranges aligned on
  ASCII whitespace and counted by ``--workers`` processes (default: the CPUs
  this process may run on).
* ``N < 1`` is an error (the tutorial silently printed nothing for 0 and all
  but the last word for negative N); the report and counts go to
  ``--output-dir`` (the tutorial wrote next to the input); ``Node:``/``Task:``/
  ``Job:``/``Pool:`` lines are written only for the ``AZ_BATCH_*`` variables
  that are set (the tutorial raised ``KeyError`` outside Batch).

Text report (the tutorial's format)::

    Word\\tCount
    ------------------------------
    word:\\tcount          (N lines, most frequent first)
    ------------------------------
    Node: <AZ_BATCH_NODE_ID>
    Task: <AZ_BATCH_TASK_ID>
    Job:  <AZ_BATCH_JOB_ID>
    Pool: <AZ_BATCH_POOL_ID>

JSON schema (version 1)
=======================

``<stem>_counts.json`` and ``corpus_counts.json`` are one UTF-8 JSON object::

    {
      "schema": 1,                     # bumped on any incompatible change
      "file": "book.txt",              # input file name; "corpus" for a merge
      "inputs": ["book.txt"],          # every input file name that contributed
      "ignore_case": false,            # merge refuses to mix true and false
      "numwords": 10,                  # the N of the report
      "totals": {
        "words": 1234,                 # words counted (after dropping empties)
        "unique_words": 321,           # == len(counts)
        "invalid_bytes": 0,            # bytes replaced by U+FFFD while decoding
        "bytes": 5678                  # size of the input(s) in bytes
      },
      "top": [["the", 80], ["and", 42]],   # the top N, as in the report
      "counts": {"the": 80, "and": 42}     # EVERY word, same order as "top"
    }

Why every count: an exact corpus-wide top N cannot be computed from
per-file top-K lists, whatever K is (a word ranked K+1 in every file can be
first overall), and exact bounded schemes (threshold algorithms) need several
rounds of questions to the workers, which a Batch aggregate task cannot ask.
The full counts are bounded by the vocabulary (typically a small fraction of
the input), so exactness is kept and size is traded for it.
"""

from __future__ import annotations

__version__ = "1.0.0"
