"""runner.pack_outcomes: which files of a failed bundled pack delivered, from its results tar's
bytes; the tar's names are data (a name that escapes, a link, another pack's file count for none)."""

from __future__ import annotations

import io
import tarfile

from nodetask.packed import ERROR_FILE
from runner.pack_outcomes import ERROR_CHARS, outcomes_in
from tests.runner.test_results import _member


def _tar(*members: tuple[str, bytes, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, data, kind in members:
            _member(tar, name, data, kind)
    return out.getvalue()


REG = tarfile.REGTYPE


def test_a_file_with_results_and_no_error_file_delivered_and_an_error_file_says_why() -> None:
    raw = _tar(
        ("1/x_counts.json", b"{}", REG),
        ("1/x_OUTPUT.txt", b"report", REG),
        (f"2/{ERROR_FILE}", b"member '2/y' is a link\nsecond line\n", REG),
        ("3/z_counts.json", b"{}", REG),
        (f"3/{ERROR_FILE}", b"not finished\n", REG),  # an error file wins over results
    )
    assert outcomes_in(raw, {"1", "2", "3", "4"}) == (
        {"1"},
        {"2": "member '2/y' is a link", "3": "not finished"},  # first line only
    )


def test_members_that_escape_are_links_or_name_another_pack_s_file_count_for_nothing() -> None:
    raw = _tar(
        ("1/../2/x_counts.json", b"{}", REG),
        ("/2/x_counts.json", b"{}", REG),
        ("2/link_counts.json", b"", tarfile.SYMTYPE),
        (f"2/../1/{ERROR_FILE}", b"forged\n", REG),
        ("9/x_counts.json", b"{}", REG),  # file 9 is not in this pack
        ("2", b"{}", REG),  # no name under the file id
    )
    assert outcomes_in(raw, {"1", "2"}) == (set(), {})


def test_a_long_error_is_cut_and_a_tar_that_cannot_be_read_tells_nothing() -> None:
    raw = _tar((f"1/{ERROR_FILE}", b"x" * (ERROR_CHARS * 3), REG))
    assert outcomes_in(raw, {"1"}) == (set(), {"1": "x" * ERROR_CHARS})
    assert outcomes_in(b"not a tar at all" * 64, {"1"}) is None
    assert outcomes_in(raw[:700], {"1"}) is None  # cut short inside the member
