"""``nodetask merge --base --subtract --order``: a delta merge equals the full merge, byte for byte."""

from __future__ import annotations

import json
from pathlib import Path

from nodetask.cli import main
from nodetask.errors import EXIT_BAD_INPUT

OLD = {
    "1": ("a.txt", "the cat sat on the mat naïve café"),
    "2": ("b.txt", "the dog ate the bone"),
    "3": ("c.txt", "only here: ephemeral ünïcödé 猫"),  # its words vanish when it changes
    "4": ("d.txt", "the end"),
}
#: File 3 changed (its old words vanish), file 4 left, file 5 is new.
NEW = {
    "1": OLD["1"],
    "2": OLD["2"],
    "3": ("c.txt", "now: café 猫 猫"),
    "5": ("e.txt", "a new file, the newest"),
}


def _count(root: Path, tid: str, name: str, text: str) -> Path:
    """One file's counts, named as a merge task's resource file (``<id>_counts.json``)."""
    src = root / "src" / tid / name
    src.parent.mkdir(parents=True)
    src.write_text(text, encoding="utf-8")
    out = root / "out" / tid
    assert main(["--filepath", str(src), "--numwords", "3", "--output-dir", str(out)]) == 0
    counts = root / f"{tid}_counts.json"
    (out / f"{Path(name).stem}_counts.json").replace(counts)
    return counts


def _full(root: Path, files: dict[str, tuple[str, str]]) -> Path:
    inputs = root / "in"
    inputs.mkdir(parents=True)
    for tid, (name, text) in files.items():
        _count(root, tid, name, text).replace(inputs / f"{tid}_counts.json")
    assert main(["merge", "--numwords", "3", str(inputs), "--output-dir", str(root / "merged")]) == 0
    return root / "merged"


def test_delta_merge_is_the_full_merge_and_refuses_a_wrong_base(tmp_path: Path) -> None:
    base = _full(tmp_path / "old", OLD) / "corpus_counts.json"
    full = _full(tmp_path / "new", NEW)
    sub, add = tmp_path / "subtract", tmp_path / "add"
    sub.mkdir()
    add.mkdir()
    for tid in ("3", "4"):  # what left or changed: its old counts
        _count(tmp_path / "s", tid, *OLD[tid]).replace(sub / f"{tid}_counts.json")
    for tid in ("3", "5"):  # what is new or changed: its new counts
        _count(tmp_path / "a", tid, *NEW[tid]).replace(add / f"{tid}_counts.json")
    order = json.loads((full / "corpus_counts.json").read_text(encoding="utf-8"))["inputs"]
    (tmp_path / "order.json").write_text(json.dumps(order), encoding="utf-8")
    delta = ["merge", "--numwords", "3", str(add), "--base", str(base), "--subtract", str(sub)]
    delta += ["--order", str(tmp_path / "order.json")]
    assert main([*delta, "--output-dir", str(tmp_path / "delta")]) == 0
    for name in ("corpus_counts.json", "corpus_OUTPUT.txt"):
        assert (tmp_path / "delta" / name).read_bytes() == (full / name).read_bytes()
    words = json.loads((tmp_path / "delta" / "corpus_counts.json").read_text(encoding="utf-8"))["counts"]
    assert "ephemeral" not in words and "ünïcödé" not in words and words["猫"] == 2  # dropped to 0: gone

    # A base that does not hold what is subtracted (here: subtracted twice) would go negative.
    _count(tmp_path / "t", "3", *OLD["3"]).replace(sub / "9_counts.json")
    assert main([*delta, "--output-dir", str(tmp_path / "wrong")]) == EXIT_BAD_INPUT
    assert not (tmp_path / "wrong").exists()
    (sub / "9_counts.json").unlink()
    # An order that is not the inputs the result holds is refused too.
    (tmp_path / "order.json").write_text(json.dumps([*order, "x.txt"]), encoding="utf-8")
    assert main([*delta, "--output-dir", str(tmp_path / "wrong")]) == EXIT_BAD_INPUT
    assert not (tmp_path / "wrong").exists()


def test_a_full_merge_with_order_lists_its_inputs_so_and_refuses_other_inputs(tmp_path: Path) -> None:
    """``--order`` without ``--base`` (the final merge of a job grouped by reads): the same document
    with ``inputs`` as listed; an order that is not the merged inputs is refused, nothing written."""
    plain = _full(tmp_path / "plain", NEW)
    inputs = tmp_path / "plain" / "in"
    order = ["e.txt", "c.txt", "a.txt", "b.txt"]
    (tmp_path / "order.json").write_text(json.dumps(order), encoding="utf-8")
    merge = ["merge", "--numwords", "3", str(inputs), "--order", str(tmp_path / "order.json")]
    assert main([*merge, "--output-dir", str(tmp_path / "ordered")]) == 0
    got = json.loads((tmp_path / "ordered" / "corpus_counts.json").read_text(encoding="utf-8"))
    want = json.loads((plain / "corpus_counts.json").read_text(encoding="utf-8"))
    assert want["inputs"] != order and got == {**want, "inputs": order}
    assert (tmp_path / "ordered" / "corpus_OUTPUT.txt").read_bytes() == (
        plain / "corpus_OUTPUT.txt"
    ).read_bytes()
    for wrong in (order[:3], [*order, "a.txt"], [*order[:3], "x.txt"]):
        (tmp_path / "order.json").write_text(json.dumps(wrong), encoding="utf-8")
        assert main([*merge, "--output-dir", str(tmp_path / "wrong")]) == EXIT_BAD_INPUT
    assert main([*merge, "--allow-missing", "--output-dir", str(tmp_path / "wrong")]) == EXIT_BAD_INPUT
    assert not (tmp_path / "wrong").exists()
