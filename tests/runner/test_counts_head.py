"""runner.counts_head: a counts file's summary fields, equal to json.loads's, without decoding "counts"."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from runner.counts_head import load_fields
from runner.results import read_counts

REPO = Path(__file__).resolve().parents[2]
KEYS = frozenset({"top", "totals"})


def _subset(text: str, keys: frozenset[str] = KEYS) -> dict[str, object]:
    return {k: v for k, v in json.loads(text).items() if k in keys}


def test_a_real_counts_file_reads_as_json_loads_does(tmp_path: Path) -> None:
    words = 'the "quoted" back\\slash caf\u00e9 \u65e5\u672c tab\there \x1b[31mred the the of "quoted"\n'
    source = tmp_path / 'in "put".txt'
    source.write_text(words * 50, encoding="utf-8")
    argv = [sys.executable, "-m", "nodetask", "--filepath", str(source), "--numwords", "3"]
    subprocess.run(
        [*argv, "--output-dir", str(tmp_path)],
        cwd=REPO,
        check=True,
        capture_output=True,
        timeout=60,
    )
    (counts,) = tmp_path.glob("*_counts.json")
    text = counts.read_text(encoding="utf-8")
    assert load_fields(text, KEYS) == _subset(text)
    assert load_fields(text, frozenset({"file", "counts", "schema"})) == _subset(
        text, frozenset({"file", "counts", "schema"})
    )
    data = json.loads(text)
    words_total, top = read_counts(counts)
    assert words_total == data["totals"]["words"] == 600
    assert [(t.word, t.count) for t in top] == [tuple(pair) for pair in data["top"]]


@pytest.mark.parametrize(
    "text",
    [
        '{"counts": {"a": 1}, "top": [["a", 1]], "totals": {"words": 1}}',  # wanted keys after counts
        ' \n{ "x\\"y" : [1, {"}": "{"}] ,\t"top":[] }\n',  # escapes, braces in strings, spacing
        '{"top": [["\\u00e9", 2]]}',  # a wanted key missing: the whole object is read
        "{}",
    ],
)
def test_other_layouts_read_as_json_loads_does(text: str) -> None:
    assert load_fields(text, KEYS) == _subset(text)


def test_counts_after_the_wanted_keys_is_not_decoded() -> None:
    # What json.loads would refuse past the summary fields is never looked at: "counts" is skipped.
    text = '{"totals": {"words": 3}, "top": [["a", 3]], "counts": {not json at all}}'
    with pytest.raises(ValueError):
        json.loads(text)
    assert load_fields(text, KEYS) == {"totals": {"words": 3}, "top": [["a", 3]]}


@pytest.mark.parametrize(
    "text",
    [
        '{"totals": {"words": 3}, "top": [["a", 3]], "counts": {"a": 3',  # truncated
        "[1, 2]",
        '{"top" 1}',
        "",
        '{"top": [}',
    ],
)
def test_truncated_or_not_an_object_is_refused(text: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        load_fields(text, KEYS)
    path = tmp_path / "x_counts.json"
    path.write_text(text, encoding="utf-8")
    assert read_counts(path) == (None, ())
