"""Unit tests of the byte-level pieces: decoding with a replaced-byte count, folding, boundaries."""

from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from nodetask.tokens import ASCII_WHITESPACE, count_raw, decode_counting, fold, last_boundary
from tests.nodetask.reference import PIECES, reference_counts, reference_invalid_bytes


@settings(deadline=None)
@given(st.binary(max_size=200))
def test_decode_counting_matches_replace_and_counts_bytes(data: bytes) -> None:
    text, replaced = decode_counting(data)
    assert text == data.decode("utf-8", errors="replace")
    assert replaced == reference_invalid_bytes(data)


@settings(deadline=None)
@given(st.lists(st.sampled_from(PIECES), max_size=80), st.booleans())
def test_count_raw_then_fold_equals_reference(pieces: list[bytes], ignore_case: bool) -> None:
    data = b"".join(pieces)
    raw: Counter[bytes] = Counter()
    count_raw(data, raw)
    words, replaced = fold(raw, ignore_case=ignore_case)
    assert words == reference_counts(data, ignore_case=ignore_case)
    assert replaced == reference_invalid_bytes(data)


@settings(deadline=None)
@given(st.binary(max_size=300), st.integers(min_value=1, max_value=64))
def test_last_boundary_is_just_after_the_last_ascii_whitespace(data: bytes, window: int) -> None:
    cut = last_boundary(data, window=window)
    positions = [i for i, b in enumerate(data) if b in ASCII_WHITESPACE]
    assert cut == (positions[-1] + 1 if positions else -1)
