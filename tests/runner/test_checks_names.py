"""Names the job would derive from an input that a node or a disk refuses: the error names the
input file as the user has it and the length to rename it to (no fragment of a derived name)."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.checks import names
from runner.errors import UsageError
from runner.inputs import InputFile


def test_a_name_too_long_for_its_results_names_the_file_and_the_length_to_rename_it_to() -> None:
    long = "n" * 235 + ".txt"  # 239 bytes; `<name>_counts.json` is 251, 265 with the temporary name
    wide = "é" * 115 + ".md"  # 233 bytes: `<stem>_OUTPUT.md` (240) fits, `<name>_counts.json` (245) not
    files = [
        InputFile(Path("/data/in") / long, long, 10),
        InputFile(Path("/data/in/sub") / wide, f"sub/{wide}", 10),
        InputFile(Path("/data/in/ok.txt"), "ok.txt", 10),
    ]
    with pytest.raises(UsageError) as err:
        names(files, "job-1", command_mode=False)
    text = f"{err.value} {err.value.hint}"
    assert f"/data/in/{long} (239 bytes): rename it to at most 229 bytes" in text
    assert f"/data/in/sub/{wide} (233 bytes): rename it to at most 229 bytes" in text
    assert "<name>_counts.json" in text and "ok.txt" not in text
    with pytest.raises(UsageError) as err:
        names(files[:1], "job-1", command_mode=True)  # `<name>.out` is the longest: 4 bytes more
    assert f"/data/in/{long} (239 bytes): rename it to at most 237 bytes" in str(err.value)
    assert "<name>.out" in str(err.value)
