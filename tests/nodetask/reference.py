"""An independent, obviously-correct implementation of nodetask's documented semantics.

Whole input in memory, ``str.split()``, ``strip(string.punctuation)``, drop
empties, optional ``lower()``, sort by (-count, word). Tests compare nodetask
against this, on generated texts.
"""

from __future__ import annotations

import codecs
import random
import string
from collections import Counter

_replaced: list[int] = [0]


def _count_and_replace(exc: UnicodeError) -> tuple[str, int]:
    assert isinstance(exc, UnicodeDecodeError)
    _replaced[0] += exc.end - exc.start
    return "\ufffd", exc.end


codecs.register_error("nodetask-test-count", _count_and_replace)


def reference_invalid_bytes(data: bytes) -> int:
    """Bytes the UTF-8 decoder replaces (a codec error handler counts them)."""
    _replaced[0] = 0
    data.decode("utf-8", errors="nodetask-test-count")
    return _replaced[0]


def reference_counts(data: bytes, *, ignore_case: bool = False) -> Counter[str]:
    text = data.decode("utf-8", errors="replace")
    counts: Counter[str] = Counter()
    for token in text.split():
        word = token.strip(string.punctuation)
        if word:
            counts[word.lower() if ignore_case else word] += 1
    return counts


def reference_top(counts: Counter[str], n: int) -> list[tuple[str, int]]:
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:n]


#: Pieces that stress the semantics: punctuation, Unicode words and whitespace,
#: CRLF, ASCII separators that only str.split() knows, multi-byte characters,
#: invalid UTF-8 (truncated sequences, stray continuation bytes, surrogates).
PIECES: tuple[bytes, ...] = tuple(
    p if isinstance(p, bytes) else p.encode("utf-8")
    for p in (
        "the", "The", "THE", "a", "b", "word", "naïve", "Straße", "東京",
        "\U0001d518\U0001d52b\U0001d526", "e\u0301", "é",
        "\u0130", "\u212a", "\u00df",
        "--", "...", "(x)", "'quoted'", "\"q\"", "¡hola!", "«guillemets»", "x—y",
        "can't", "end.", ",lead", "@#$", " ", " ", " ", "\t", "\r\n", "\n", "\x0b", "\x0c",
        "\u00a0", "\u2028", "\u3000", "\u1680", "\u2009", "\x1c", "\x1f", "\x85", "\ufffd",
        b"\xff", b"\xe2\x82", b"\xc3", b"\x80", b"\xed\xa0\x80", b"\xf0\x9f", b"\xf0\x9f\x98\x80",
    )
)  # fmt: skip


def generate_text(seed: int, pieces: int) -> bytes:
    """Random bytes made of :data:`PIECES`, mostly separated by whitespace, with ties likely."""
    rng = random.Random(seed)
    out: list[bytes] = []
    for _ in range(pieces):
        out.append(rng.choice(PIECES))
        if rng.random() < 0.7:
            out.append(rng.choice((b" ", b"\n", b"\r\n", b"\t")))
    return b"".join(out)
