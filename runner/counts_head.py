"""The small top-level fields of a counts JSON file, without decoding its ``counts``.

nodetask's counts files hold ``totals`` and ``top`` (what the runner's summary
shows) before ``counts``, every word of the input: 270 KB for a 1 MB input,
whose decoding was most of the time between the last download and the summary
of a 60-file job. :func:`load_fields` decodes the top-level object one member at
a time with the standard library's JSON decoder and stops as soon as every
wanted key has been seen, so ``counts`` is never decoded when it comes last.

Contract: for a text whose top level is a JSON object without repeated keys,
the result equals ``{k: v for k, v in json.loads(text).items() if k in keys}``.
Differences, both about files nodetask never writes: a wanted key repeated
after the point where every wanted key was seen is not read (``json.loads``
keeps the last), and a syntax error past that point is not detected; a text
that does not end with ``}`` (a truncated file) is refused all the same.
Raises :class:`ValueError` (``json.JSONDecodeError`` included) for a text that is
not a JSON object.
"""

from __future__ import annotations

import json
import re
from typing import Any

_SPACE = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder()


def _skip(text: str, i: int) -> int:
    match = _SPACE.match(text, i)
    return match.end() if match else i


def _expect(text: str, i: int, chars: str) -> str:
    found = text[i : i + 1]
    if not found or found not in chars:
        raise ValueError(f"expected one of {chars!r} at character {i}")
    return found


def load_fields(text: str, keys: frozenset[str]) -> dict[str, Any]:
    """The members of the top-level object of ``text`` named in ``keys`` (see the module docstring)."""
    if not text.rstrip(" \t\n\r").endswith("}"):
        raise ValueError("not a complete JSON object")
    found: dict[str, Any] = {}
    i = _skip(text, 0)
    _expect(text, i, "{")
    i = _skip(text, i + 1)
    if text[i : i + 1] == "}":
        return found
    while True:
        _expect(text, i, '"')
        key, i = _DECODER.raw_decode(text, i)  # a JSON string, since it starts with a quote
        i = _skip(text, i)
        _expect(text, i, ":")
        value, i = _DECODER.raw_decode(text, _skip(text, i + 1))
        if key in keys:
            found[key] = value
            if len(found) == len(keys):
                return found
        i = _skip(text, i)
        if _expect(text, i, ",}") == "}":
            return found
        i = _skip(text, i + 1)
