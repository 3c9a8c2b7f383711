"""merge equals the count of the concatenated corpus; it refuses what it cannot merge exactly."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

from nodetask.bundle import write_tar_bytes
from nodetask.cli import main
from tests.nodetask.process import run_nodetask
from tests.nodetask.reference import generate_text, reference_counts, reference_invalid_bytes, reference_top


def _count_files(tmp_path: Path, datas: list[bytes], out: Path, *extra: str) -> None:
    for i, data in enumerate(datas):
        path = tmp_path / f"part{i}.txt"
        path.write_bytes(data)
        code = main(["--filepath", str(path), "--numwords", "5", "--output-dir", str(out), *extra])
        assert code == 0


def test_merge_of_a_directory_equals_the_concatenated_corpus(tmp_path: Path) -> None:
    # Files end mid-token and mid-UTF-8 sequence; separate them with "\n" when concatenating,
    # as counting them separately does.
    datas = [generate_text(seed=s, pieces=2000 + 500 * s) + b"\xe2\x82" for s in range(4)]
    out = tmp_path / "results"
    _count_files(tmp_path, datas, out)
    corpus = b"\n".join(datas)

    proc = run_nodetask(["merge", "--numwords", "12", str(out), "--output-dir", str(out)], tmp_path)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((out / "corpus_counts.json").read_text(encoding="utf-8"))
    ref = reference_counts(corpus)
    assert doc["file"] == "corpus"
    assert doc["inputs"] == [f"part{i}.txt" for i in range(4)]
    assert doc["counts"] == dict(ref)
    assert doc["top"] == [list(kv) for kv in reference_top(ref, 12)]
    assert doc["totals"] == {
        "words": sum(ref.values()),
        "unique_words": len(ref),
        "invalid_bytes": reference_invalid_bytes(corpus),
        "bytes": sum(len(d) for d in datas),
    }
    report = (out / "corpus_OUTPUT.txt").read_text(encoding="utf-8").splitlines()
    assert report[2:14] == [f"{w}:\t{c}" for w, c in reference_top(ref, 12)]

    # Running the merge again over the same directory must not count corpus_counts.json.
    proc = run_nodetask(["merge", "--numwords", "12", str(out), "--output-dir", str(out)], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((out / "corpus_counts.json").read_text(encoding="utf-8"))["counts"] == dict(ref)


def test_merge_is_hierarchical(tmp_path: Path) -> None:
    datas = [generate_text(seed=100 + s, pieces=1500) for s in range(3)]
    parts = tmp_path / "parts"
    _count_files(tmp_path, datas, parts)
    first = tmp_path / "first"
    pair = [str(parts / "part0_counts.json"), str(parts / "part1_counts.json")]
    assert main(["merge", "--numwords", "3", *pair, "--output-dir", str(first)]) == 0
    final = tmp_path / "final"
    pair = [str(first / "corpus_counts.json"), str(parts / "part2_counts.json")]
    code = main(["merge", "--numwords", "3", *pair, "--output-dir", str(final)])
    assert code == 0
    doc = json.loads((final / "corpus_counts.json").read_text(encoding="utf-8"))
    assert doc["counts"] == dict(reference_counts(b"\n".join(datas)))


def _assert_merge_refused(tmp_path: Path, args: list[str], needle: str) -> None:
    out = tmp_path / "merged"
    proc = run_nodetask(["merge", "--numwords", "3", *args, "--output-dir", str(out)], tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert needle in lines[0]
    assert not out.exists()


def test_merge_refuses_mixed_case_modes(tmp_path: Path) -> None:
    _count_files(tmp_path, [b"a b c"], tmp_path / "cs")
    (tmp_path / "ci").mkdir()
    (tmp_path / "x.txt").write_bytes(b"A a")
    assert main(["--filepath", str(tmp_path / "x.txt"), "--numwords", "1", "--ignore-case",
                 "--output-dir", str(tmp_path / "ci")]) == 0  # fmt: skip
    _assert_merge_refused(tmp_path, [str(tmp_path / "cs"), str(tmp_path / "ci")], "ignore-case")


def test_merge_refuses_bad_inputs(tmp_path: Path) -> None:
    (tmp_path / "empty_dir").mkdir()
    _assert_merge_refused(tmp_path, [str(tmp_path / "empty_dir")], "no *_counts.json")
    _assert_merge_refused(tmp_path, [str(tmp_path / "nope")], "not found")
    (tmp_path / "bad_counts.json").write_text("{not json")
    _assert_merge_refused(tmp_path, [str(tmp_path / "bad_counts.json")], "not JSON")
    (tmp_path / "old_counts.json").write_text(json.dumps({"schema": 99}))
    _assert_merge_refused(tmp_path, [str(tmp_path / "old_counts.json")], "schema")
    good = {
        "schema": 1, "file": "f", "inputs": ["f"], "ignore_case": False, "numwords": 1,
        "totals": {"words": 5, "unique_words": 1, "invalid_bytes": 0, "bytes": 9},
        "top": [["a", 4]], "counts": {"a": 4},
    }  # fmt: skip
    (tmp_path / "sum_counts.json").write_text(json.dumps(good))
    _assert_merge_refused(tmp_path, [str(tmp_path / "sum_counts.json")], "add up")
    good["counts"] = {"a": -1}
    (tmp_path / "neg_counts.json").write_text(json.dumps(good))
    _assert_merge_refused(tmp_path, [str(tmp_path / "neg_counts.json")], "non-negative")
    for n, (count, words) in enumerate([(True, 1), (1.0, 1), ("1", 1), (None, 0)]):  # integers only
        good["counts"], good["totals"]["words"] = {"a": 4, "b": count}, 4 + words  # type: ignore[index]
        (tmp_path / f"t{n}_counts.json").write_text(json.dumps(good))
        _assert_merge_refused(tmp_path, [str(tmp_path / f"t{n}_counts.json")], "non-negative")
    _assert_merge_refused(tmp_path, [str(tmp_path / "empty_dir"), "--numwords", "0"], "at least 1")


def test_allow_missing_merges_what_is_there_and_names_what_is_not(tmp_path: Path) -> None:
    """--allow-missing (the runner's --allow-failures): placeholders and unreadable counts files are
    left out and listed; a merge of merges passes the list on; without the flag both are refused."""
    out = tmp_path / "level1"
    _count_files(tmp_path, [b"a b b", b"b c"], out)
    (out / "9_counts.json").write_text(json.dumps({"missing": [{"task": "9", "input": "bad.txt"}]}))
    (out / "8_counts.json").write_text("not json")
    assert (
        run_nodetask(
            ["merge", "--numwords", "2", str(out), "--output-dir", str(tmp_path / "x")], tmp_path
        ).returncode
        != 0
    )

    level2 = tmp_path / "level2"
    level2.mkdir()
    args = ["merge", "--numwords", "2", "--allow-missing", str(out), "--output-dir", str(tmp_path / "m1")]
    proc = run_nodetask(args, tmp_path)
    assert proc.returncode == 0, proc.stderr
    first = json.loads((tmp_path / "m1" / "corpus_counts.json").read_text(encoding="utf-8"))
    assert first["counts"] == {"a": 1, "b": 3, "c": 1}
    assert first["missing"] == [{"task": "8", "why": "unreadable counts"}, {"task": "9", "input": "bad.txt"}]
    (level2 / "m1_counts.json").write_text(
        (tmp_path / "m1" / "corpus_counts.json").read_text(encoding="utf-8")
    )
    (level2 / "m2_counts.json").write_text(json.dumps({"missing": [{"task": "3", "input": "c.txt"}]}))
    proc = run_nodetask(
        ["merge", "--numwords", "2", "--allow-missing", str(level2), "--output-dir", str(tmp_path / "m")],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    final = json.loads((tmp_path / "m" / "corpus_counts.json").read_text(encoding="utf-8"))
    assert final["top"] == [["b", 3], ["a", 1]]
    assert [m["task"] for m in final["missing"]] == ["8", "9", "3"]

    only_missing = tmp_path / "none"
    only_missing.mkdir()
    (only_missing / "1_counts.json").write_text(json.dumps({"missing": [{"task": "1", "input": "a"}]}))
    proc = run_nodetask(["merge", "--numwords", "2", "--allow-missing", str(only_missing)], tmp_path)
    assert proc.returncode != 0 and "nothing to merge" in proc.stderr


#: File ids of the tar-and-plain test, and where each one's counts are: a tar's name gives the
#: file ids it stands for (``p1.1-2.tar`` also holds file 3, which that merge does not read).
_SPREAD = {
    "1": "p1.1-2.tar",
    "2": "p1.1-2.tar",
    "3": "plain",
    "10": "plain",
    "4": "p2.4-11.tar",
    "11": "p2.4-11.tar",
}


def _counts_of(tmp_path: Path, fids: list[str]) -> dict[str, bytes]:
    """Each file id's counts JSON (``part<i>_counts.json`` of a real count of its own text)."""
    res = tmp_path / "res"
    _count_files(tmp_path, [generate_text(seed=200 + i, pieces=400) for i in range(len(fids))], res)
    return {fid: (res / f"part{i}_counts.json").read_bytes() for i, fid in enumerate(fids)}


def test_counts_in_tars_merge_in_one_order_with_plain_files_byte_for_byte(tmp_path: Path) -> None:
    """A merge's inputs are ordered by counts file name whether they come plain or in a results
    tar (read in memory), so it writes what the merge of the same files all plain writes."""
    counts = _counts_of(tmp_path, list(_SPREAD))
    plain, mixed = tmp_path / "plain", tmp_path / "mixed"
    plain.mkdir()
    mixed.mkdir()
    tars: dict[str, list[tuple[str, bytes]]] = {}
    for fid, where in _SPREAD.items():
        (plain / f"{fid}_counts.json").write_bytes(counts[fid])
        if where == "plain":
            (mixed / f"{fid}_counts.json").write_bytes(counts[fid])
        else:
            tars.setdefault(where, []).append((f"{fid}/part_{fid}_counts.json", counts[fid]))
            tars[where].append((f"{fid}/part_{fid}_OUTPUT.txt", b"a report, not counts\n"))
    tars["p1.1-2.tar"].append(("3/part_3_counts.json", counts["1"]))  # outside 1-2: not read
    for name, members in tars.items():
        write_tar_bytes(mixed / name, members)
    for src in (plain, mixed):
        proc = run_nodetask(
            ["merge", "--numwords", "7", src.name, "--output-dir", f"out-{src.name}"], tmp_path
        )
        assert proc.returncode == 0, proc.stderr
    merged = json.loads((tmp_path / "out-mixed" / "corpus_counts.json").read_text(encoding="utf-8"))
    assert merged["inputs"] == [f"part{i}.txt" for i in (3, 5, 0, 1, 2, 4)]  # 10, 11, 1, 2, 3, 4
    for name in ("corpus_counts.json", "corpus_OUTPUT.txt"):
        assert (tmp_path / "out-mixed" / name).read_bytes() == (tmp_path / "out-plain" / name).read_bytes()


def test_unusable_results_tars_are_refused_and_unsafe_members_left_out(tmp_path: Path) -> None:
    counts = _counts_of(tmp_path, ["1", "2"])
    one = [("1/a_counts.json", counts["1"])]
    cases = {
        "two": ([*one, ("1/b_counts.json", counts["2"])], "holds two counts files of file 1"),
        "notjson": ([*one, ("2/b_counts.json", b"{not json")], "two.1-2.tar:2/b_counts.json: not JSON"),
    }
    for name, (members, needle) in cases.items():
        (tmp_path / name).mkdir()
        write_tar_bytes(tmp_path / name / "two.1-2.tar", members)
        _assert_merge_refused(tmp_path, [name], needle)
    (tmp_path / "cut").mkdir()
    whole = (tmp_path / "two" / "two.1-2.tar").read_bytes()
    (tmp_path / "cut" / "p.1-2.tar").write_bytes(whole[:1000])  # inside the first member
    _assert_merge_refused(tmp_path, ["cut"], "unusable results tar")

    (tmp_path / "hostile").mkdir()
    write_tar_bytes(tmp_path / "hostile" / "h.tar", one)
    with tarfile.open(tmp_path / "hostile" / "h.tar", "a") as tar:
        link = tarfile.TarInfo("2/b_counts.json")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
    proc = run_nodetask(["merge", "--numwords", "3", "hostile", "--output-dir", "h"], tmp_path)
    assert proc.returncode == 0 and "not a regular file" in proc.stderr, proc.stderr
    assert json.loads((tmp_path / "h" / "corpus_counts.json").read_bytes())["inputs"] == ["part0.txt"]
