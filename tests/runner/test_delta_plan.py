"""The delta merge's plan (runner.delta_merge) from a listing: pure, no server."""

from __future__ import annotations

from runner import delta_merge
from runner.cache import Entry, EntryBlob
from runner.manifest import Manifest, ManifestTask


def _key(c: str) -> str:
    return c * 64


def test_delta_counts_each_base_key_once_and_needs_the_counts_of_what_goes_out() -> None:
    names = {"a": "a.txt", "b": "b.txt", "c": "c.txt", "d": "d.txt"}
    tasks = tuple(ManifestTask(str(i), n, f"j/inputs/{n}", n, 1) for i, n in enumerate(names.values(), 1))
    # Files 1 and 2 hold the same key (same name, same content in two folders); 4 changed.
    keys = {"1": _key("a"), "2": _key("a"), "3": _key("c"), "4": _key("e")}
    manifest = Manifest("j", "now", 3, True, None, 0, tasks, cache_keys=keys)
    members = [f"{_key(k)}/{k}_counts.json" for k in "acd"] + [f"{_key(k)}/{k}_OUTPUT.txt" for k in "acd"]
    counts = (EntryBlob("d_counts.json", 9, b"x"), EntryBlob("d_OUTPUT.txt", 9, b"y"))
    index = {_key("d"): Entry(_key("d"), counts, None, True)}
    base = Entry(_key("f"), (), None, True)
    delta = delta_merge._delta(manifest, index, base, members)
    assert delta is not None
    assert delta.add == ("2", "4")  # the base holds one file of key a: the second comes in
    assert delta.subtract == (f"cache/{_key('d')}/d_counts.json",)
    # What goes out must have a valid entry with its counts, else no delta (a full merge).
    index[_key("d")] = Entry(_key("d"), counts, None, False)
    assert delta_merge._delta(manifest, index, base, members) is None
    assert delta_merge._delta(manifest, {}, base, members) is None


def test_delta_limit_is_a_tenth_changed_and_one_merge_tasks_sources() -> None:
    assert delta_merge.delta_limit(2000, 500) == 400  # 200 files changed: 200 in, 200 out
    assert delta_merge.delta_limit(10_000, 500) == 500  # Batch's 1 MB task caps the sources
    assert delta_merge.delta_limit(12, 500) == 2  # one file changed, however few files
