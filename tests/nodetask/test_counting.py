"""count_file equals the reference count, whatever the chunk size and number of workers."""

from __future__ import annotations

import io
import itertools
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nodetask.counting import ByteRange, aligned_ranges, count_file, count_stream
from nodetask.tokens import ASCII_WHITESPACE
from tests.nodetask.reference import PIECES, generate_text, reference_counts, reference_invalid_bytes


def _write(tmp_path: Path, data: bytes, name: str = "in.txt") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("chunk_size", [1, 2, 3, 5, 8, 13, 64, 1000, 4 * 1024 * 1024])
def test_single_process_matches_reference_for_any_chunk_size(tmp_path: Path, chunk_size: int) -> None:
    data = generate_text(seed=chunk_size, pieces=3000)
    result = count_file(_write(tmp_path, data), workers=1, chunk_size=chunk_size)
    assert result.counts == reference_counts(data)
    assert result.invalid_bytes == reference_invalid_bytes(data)
    assert result.input_bytes == len(data)
    assert result.words == sum(reference_counts(data).values())


@pytest.mark.parametrize(("workers", "chunk_size"), [(2, 7), (3, 64), (5, 3), (8, 4096)])
def test_multi_worker_equals_single_worker_and_reference(
    tmp_path: Path, workers: int, chunk_size: int
) -> None:
    data = generate_text(seed=workers * 1000 + chunk_size, pieces=20000)
    path = _write(tmp_path, data)
    single = count_file(path, workers=1)
    multi = count_file(path, workers=workers, chunk_size=chunk_size, min_parallel_bytes=0)
    assert multi.counts == single.counts == reference_counts(data)
    assert multi.invalid_bytes == single.invalid_bytes == reference_invalid_bytes(data)


@pytest.mark.parametrize("ignore_case", [False, True])
def test_ignore_case(tmp_path: Path, ignore_case: bool) -> None:
    data = generate_text(seed=7, pieces=5000)
    result = count_file(_write(tmp_path, data), ignore_case=ignore_case, workers=2, min_parallel_bytes=0)
    assert result.counts == reference_counts(data, ignore_case=ignore_case)


def test_ignore_case_merges_case_variants(tmp_path: Path) -> None:
    data = b"The the THE tHe"
    result = count_file(_write(tmp_path, data), ignore_case=True)
    assert result.counts == reference_counts(data, ignore_case=True)
    assert len(result.counts) == 1


def test_empty_file_counts_nothing(tmp_path: Path) -> None:
    result = count_file(_write(tmp_path, b""), workers=4, min_parallel_bytes=0)
    assert (result.words, result.unique_words, result.invalid_bytes, result.input_bytes) == (0, 0, 0, 0)


def test_token_longer_than_the_chunk_is_held_whole(tmp_path: Path) -> None:
    data = b"x" * 5000 + b" y\xe2\x82\xac " + "€".encode() * 700
    for workers in (1, 3):
        result = count_file(_write(tmp_path, data), workers=workers, chunk_size=16, min_parallel_bytes=0)
        assert result.counts == reference_counts(data)


def test_aligned_ranges_cover_the_file_and_cut_at_whitespace(tmp_path: Path) -> None:
    data = generate_text(seed=3, pieces=4000)
    path = _write(tmp_path, data)
    for parts in (1, 2, 3, 7, 50):
        ranges = aligned_ranges(path, len(data), parts)
        assert ranges[0].start == 0
        assert ranges[-1].end == len(data)
        assert all(a.end == b.start for a, b in itertools.pairwise(ranges))
        assert all(r.start < r.end for r in ranges)
        assert all(data[r.start] in ASCII_WHITESPACE for r in ranges[1:])
        assert len(ranges) <= parts


def test_aligned_ranges_without_whitespace_is_one_range(tmp_path: Path) -> None:
    path = _write(tmp_path, b"abc" * 100)
    assert aligned_ranges(path, 300, 4) == [ByteRange(0, 300)]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.sampled_from(PIECES), max_size=120),
    st.integers(min_value=1, max_value=16),
    st.booleans(),
)
def test_property_count_file_matches_reference(
    pieces: list[bytes], chunk_size: int, ignore_case: bool
) -> None:
    data = b"".join(pieces)
    with tempfile.TemporaryDirectory() as d:
        path = _write(Path(d), data)
        result = count_file(path, ignore_case=ignore_case, workers=1, chunk_size=chunk_size)
    assert result.counts == reference_counts(data, ignore_case=ignore_case)
    assert result.invalid_bytes == reference_invalid_bytes(data)


@settings(max_examples=15, deadline=None)
@given(st.lists(st.sampled_from(PIECES), min_size=1, max_size=200), st.integers(min_value=2, max_value=4))
def test_property_multi_worker_matches_reference(pieces: list[bytes], workers: int) -> None:
    data = b"".join(pieces)
    with tempfile.TemporaryDirectory() as d:
        path = _write(Path(d), data)
        result = count_file(path, workers=workers, chunk_size=5, min_parallel_bytes=0)
    assert result.counts == reference_counts(data)
    assert result.invalid_bytes == reference_invalid_bytes(data)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.sampled_from(PIECES), max_size=120),
    st.integers(min_value=1, max_value=16),
    st.booleans(),
)
def test_property_count_stream_of_the_first_size_bytes_is_count_file(
    pieces: list[bytes], chunk_size: int, ignore_case: bool
) -> None:
    data = b"".join(pieces)
    stream = io.BytesIO(data + b" beyond the member\xff")  # a tar member's object stops at size
    result = count_stream(stream, len(data), ignore_case=ignore_case, chunk_size=chunk_size)
    with tempfile.TemporaryDirectory() as d:
        assert result == count_file(_write(Path(d), data), ignore_case=ignore_case, workers=1)
    assert result.counts == reference_counts(data, ignore_case=ignore_case)
