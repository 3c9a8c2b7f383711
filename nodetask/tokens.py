"""From bytes to words: the hot loop and the per-distinct-token fold.

Counting happens in two steps so that the expensive work is done once per
*distinct* token, not once per occurrence:

1. :func:`count_raw` splits a chunk of bytes on ASCII whitespace
   (``bytes.split()``) and counts the byte tokens with ``Counter.update``
   (both C loops; no decoding, no ``str`` objects per occurrence).
2. :func:`fold` decodes each distinct byte token (UTF-8, invalid bytes
   replaced by U+FFFD and counted once per occurrence), splits it again with
   ``str.split()`` (the other separators of the semantics: U+001C..U+001F,
   U+0085, U+00A0 and the other Unicode spaces), strips
   ``string.punctuation`` from each piece, optionally lower-cases it, drops
   empty words and adds the occurrence count to the result.

This equals decoding the whole text and calling ``str.split()`` on it: ASCII
bytes never occur inside a UTF-8 sequence and always end an invalid one, so
decoding token by token gives the same characters (and the same replaced
bytes) as decoding the whole; and every ASCII whitespace byte is ``str``
whitespace, so splitting on those first and on the rest afterwards yields the
same words.

Chunks start and end at ASCII whitespace bytes (see :func:`last_boundary`),
so no token spans two chunks.

Not thread-safe: the replaced-byte count of a decode is kept in module state
(one counter per process; nodetask uses processes, not threads).
"""

from __future__ import annotations

import codecs
import string
from collections import Counter

PUNCTUATION = string.punctuation

#: The bytes that ``bytes.split()`` splits on. Chunks end right after one of them.
ASCII_WHITESPACE = b" \t\n\r\x0b\x0c"

_HANDLER = "nodetask-count-replace"
_replaced = [0]
_registered = [False]


def _count_and_replace(exc: UnicodeError) -> tuple[str, int]:
    """Decode error handler: what ``errors="replace"`` does, plus counting the bytes replaced."""
    if not isinstance(exc, UnicodeDecodeError):
        raise exc
    _replaced[0] += exc.end - exc.start
    return "\ufffd", exc.end


def decode_counting(data: bytes) -> tuple[str, int]:
    """Decode UTF-8 exactly like ``errors="replace"``; also return the number of bytes replaced."""
    try:
        return data.decode("utf-8"), 0
    except UnicodeDecodeError:
        pass
    if not _registered[0]:
        codecs.register_error(_HANDLER, _count_and_replace)
        _registered[0] = True
    _replaced[0] = 0
    text = data.decode("utf-8", _HANDLER)
    return text, _replaced[0]


def count_raw(chunk: bytes, raw: Counter[bytes]) -> None:
    """Add the ASCII-whitespace-separated byte tokens of ``chunk`` to ``raw``.

    ``chunk`` must not start or end inside a token that continues in a
    neighbouring chunk (see :func:`last_boundary`).
    """
    raw.update(chunk.split())


def fold(raw: Counter[bytes], *, ignore_case: bool) -> tuple[Counter[str], int]:
    """Turn raw byte-token counts into word counts; also return the bytes replaced in decoding.

    Decodes, splits on the remaining whitespace, strips punctuation, drops
    empties and optionally lower-cases (see the module docstring).
    """
    words: Counter[str] = Counter()
    get = words.get
    punct = PUNCTUATION
    replaced = 0
    for token, n in raw.items():
        try:
            text = token.decode("utf-8")
        except UnicodeDecodeError:
            text, bad = decode_counting(token)
            replaced += bad * n
        for piece in text.split():
            word = piece.strip(punct)
            if word:
                if ignore_case:
                    word = word.lower()
                words[word] = get(word, 0) + n
    return words, replaced


def last_boundary(buf: bytes, window: int = 65536) -> int:
    """Index just after the last ASCII whitespace byte of ``buf``, or -1 if there is none.

    ``buf[:i]`` then ends with whitespace and ``buf[i:]`` is the (possibly
    empty) start of a token that may continue in the next read.
    """
    start = max(0, len(buf) - window)
    best = max(buf.rfind(c, start) for c in (b" ", b"\n", b"\t", b"\r", b"\x0b", b"\x0c"))
    if best < 0 and start > 0:
        best = max(buf.rfind(c, 0, start) for c in (b" ", b"\n", b"\t", b"\r", b"\x0b", b"\x0c"))
    return best + 1 if best >= 0 else -1
