"""Deterministic generator of Zipf-like English-looking text, for samples and benchmarks.

``generate(path, size_bytes, seed)`` writes UTF-8 text of at most
``size_bytes`` bytes (within one paragraph of it), the same bytes for the
same ``(size_bytes, seed)``: sentences of words drawn from a Zipf-like
vocabulary (common English words first, then invented words, with some
non-ASCII words such as ``café``, ``Straße``, ``東京``), capitalised, with
commas, quotes, parentheses, dashes, numbers, an occasional no-break space
(U+00A0, a ``str.split()`` separator that ``bytes.split()`` ignores),
wrapped at 72 columns, paragraphs separated by blank lines.

CLI: ``python bench/textgen.py OUT_FILE --size-bytes N [--seed S]``.
"""

from __future__ import annotations

import argparse
import itertools
import random
from collections.abc import Iterator
from pathlib import Path


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


COMMON = _words(
    "the of and to a in is that it was for on are as with his they at be this from have or by "
    "one had not but what all were when we there can an your which their said if do will each "
    "about how up out them then she many some so these would other into has more her two like "
    "him see time could no make than first been its who now people my made over did down only "
    "way find use may water long little very after words called just where most know"
)
NON_ASCII = _words(
    "café naïve façade Straße Zürich señor coöperate résumé Ærø smörgåsbord Ελλάδα λόγος "
    "Москва слово 東京 日本語 文字 안녕 Łódź İstanbul ǅemal ﬁnance"
)
SYLLABLES = _words(
    "ka lo mi ne ra su ti ver lan dor bel fin gar hol jus kel mon par quin ros sal tor ul "
    "vin wes yor zan ber cal den el fo gri ith om pre sta tri un"
)
WORD_RANKS = 30000
ZIPF_S = 1.07
LINE_WIDTH = 72


def _vocabulary(rng: random.Random) -> list[str]:
    words = list(COMMON)
    seen = set(words) | set(NON_ASCII)
    while len(words) < WORD_RANKS - len(NON_ASCII):
        w = "".join(rng.choice(SYLLABLES) for _ in range(rng.choice((1, 2, 2, 3, 3, 4))))
        if w not in seen:
            seen.add(w)
            words.append(w)
    # Non-ASCII words spread through the ranks, from frequent to rare.
    for i, w in enumerate(NON_ASCII):
        words.insert(60 + i * 37 * (i + 1), w)
    return words


def _decorate(rng: random.Random, word: str) -> str:
    r = rng.random()
    if r < 0.06:
        return word + ","
    if r < 0.07:
        return f'"{word}"'
    if r < 0.075:
        return f"({word})"
    if r < 0.078:
        return word + ";"
    if r < 0.080:
        return word + " —"
    if r < 0.082:
        return f"{rng.randint(2, 999)}\u00a0{word}"
    if r < 0.084:
        return word + "'s"
    return word


def _word_stream(rng: random.Random, vocab: list[str]) -> Iterator[str]:
    cum = list(itertools.accumulate(1.0 / (r**ZIPF_S) for r in range(1, len(vocab) + 1)))
    while True:
        yield from rng.choices(vocab, cum_weights=cum, k=100_000)


def _paragraph(rng: random.Random, stream: Iterator[str]) -> str:
    lines: list[str] = []
    line: list[str] = []
    width = 0
    for _ in range(rng.randint(3, 8)):
        words = [_decorate(rng, w) for w in itertools.islice(stream, rng.randint(4, 24))]
        words[0] = words[0][:1].upper() + words[0][1:]
        words[-1] = words[-1].rstrip(",;") + rng.choice(".....?!")
        for w in words:
            if width + len(w) + 1 > LINE_WIDTH and line:
                lines.append(" ".join(line))
                line, width = [], 0
            line.append(w)
            width += len(w) + 1
    if line:
        lines.append(" ".join(line))
    return "\n".join(lines) + "\n\n"


def generate(path: Path, size_bytes: int, seed: int = 1) -> Path:
    """Write at most ``size_bytes`` of text to ``path``; the same bytes for the same arguments."""
    rng = random.Random(seed)
    vocab = _vocabulary(rng)
    stream = _word_stream(rng, vocab)
    written = 0
    tmp = path.with_name(path.name + ".tmp")
    path.parent.mkdir(parents=True, exist_ok=True)
    with tmp.open("wb") as out:
        while True:
            para = _paragraph(rng, stream).encode("utf-8")
            if written + len(para) > size_bytes:
                break
            out.write(para)
            written += len(para)
    tmp.replace(path)
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Generate deterministic Zipf-like text.")
    p.add_argument("out", type=Path, help="Output file.")
    p.add_argument("--size-bytes", type=int, required=True, help="Upper bound of the size in bytes.")
    p.add_argument("--seed", type=int, default=1, help="Random seed (default 1).")
    args = p.parse_args(argv)
    generate(args.out, args.size_bytes, args.seed)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
