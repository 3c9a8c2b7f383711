"""How a pack is named in `status` and the report: its files, in words that read right."""

from runner.execution import pack_label


def test_a_pack_is_labelled_by_its_files_in_the_singular_and_the_plural() -> None:
    assert pack_label(["a.txt"], []) == "1 file: a.txt"
    assert pack_label(["a.txt", "b.txt", "c.txt"], []) == "3 files: a.txt … c.txt"
    assert pack_label(["a.txt"], ["a.txt"]) == "a.txt (1 of 1 file failed)"
    many = [f"f{i}" for i in range(7)]
    assert pack_label(many, many[:6]) == "f0, f1, f2, f3, f4 … (6 of 7 files failed)"
    assert pack_label([], []) == ""
