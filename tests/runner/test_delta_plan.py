"""The delta merge's plan (runner.delta_merge) from a listing: pure, no server."""

from __future__ import annotations

from datetime import datetime, timezone

from runner import delta_merge
from runner.cache import Entry, EntryBlob
from runner.cache_bundle import Member
from runner.manifest import Manifest, ManifestTask


def _key(c: str) -> str:
    return c * 64


def test_delta_counts_each_base_key_once_and_needs_the_counts_of_what_goes_out() -> None:
    names = {"a": "a.txt", "b": "b.txt", "c": "c.txt", "d": "d.txt"}
    tasks = tuple(ManifestTask(str(i), n, f"j/inputs/{n}", n, 1) for i, n in enumerate(names.values(), 1))
    # Files 1 and 2 hold the same key (same name, same content in two folders); 4 changed.
    keys = {"1": _key("a"), "2": _key("a"), "3": _key("c"), "4": _key("e")}
    manifest = Manifest("j", "now", 3, True, None, 0, tasks, cache_keys=keys)
    names_ = [f"{_key(k)}/{k}_counts.json" for k in "acd"] + [f"{_key(k)}/{k}_OUTPUT.txt" for k in "acd"]
    members = [Member(n, 9, bytes(16)) for n in names_]
    counts = (EntryBlob("d_counts.json", 9, b"x"), EntryBlob("d_OUTPUT.txt", 9, b"y"))
    index = {_key("d"): Entry(_key("d"), counts, None, True)}
    base = Entry(_key("f"), (), None, True)
    delta = delta_merge._delta(manifest, index, base, members)
    assert delta is not None
    assert delta.add == ("2", "4")  # the base holds one file of key a: the second comes in
    assert delta.subtract == (f"cache/{_key('d')}/d_counts.json",)
    assert delta.held == ()  # d has an entry of its own: read in place
    # What goes out must have a valid entry with its counts, or be in the base's bundle (then it
    # gets an entry of its own from the bundle), else no delta (a full merge).
    index[_key("d")] = Entry(_key("d"), counts, None, False)
    assert delta_merge._delta(manifest, index, base, members) is None
    assert delta_merge._delta(manifest, {}, base, members) is None
    bundled = Entry(_key("f"), (EntryBlob("results.tar", 5, b"t" * 16),), None, True)
    delta = delta_merge._delta(manifest, {}, bundled, members)
    assert delta is not None and delta.subtract == (f"cache/{_key('d')}/d_counts.json",)
    assert [(e.key, e.bundle is not None, len(e.blobs)) for e in delta.held] == [(_key("d"), True, 2)]


def test_delta_limit_is_a_tenth_changed_and_one_merge_tasks_sources() -> None:
    assert delta_merge.delta_limit(2000, 500) == 400  # 200 files changed: 200 in, 200 out
    assert delta_merge.delta_limit(10_000, 500) == 500  # Batch's 1 MB task caps the sources
    assert delta_merge.delta_limit(12, 500) == 2  # one file changed, however few files


def test_candidates_are_merged_entries_closest_in_size_then_newest() -> None:
    tasks = tuple(
        ManifestTask(str(i), f"f{i}.txt", f"j/inputs/f{i}.txt", f"f{i}.txt", 1) for i in range(1, 11)
    )
    keys = {t.task_id: _key(str(i % 10)) for i, t in enumerate(tasks)}
    manifest = Manifest("j", "now", 3, True, None, 0, tasks, cache_keys=keys)
    want = delta_merge._members_size(manifest)

    def merged(c: str, size: int, day: int, valid: bool = True) -> Entry:
        blobs = (EntryBlob("corpus_counts.json", 1, b"m"), EntryBlob("results.tar", 1, b"t"))
        when = datetime(2026, 12, day, tzinfo=timezone.utc)
        return Entry(_key(c), (*blobs, EntryBlob("results.keys", size, b"k")), when, valid)

    index = {
        e.key: e
        for e in (
            merged("a", want, 1),  # exact size, oldest: first
            merged("b", want + 40, 3),  # near, newest
            merged("c", want + 40, 2),
            merged("d", want - 40, 4),
            merged("e", want, 5, valid=False),  # corrupt: never
            merged("f", want * 2, 6),  # another corpus: out of the band
            Entry(_key("g"), (EntryBlob("x_counts.json", want, b"x"),), None, True),  # a file's entry
        )
    }
    assert [e.key[0] for e in delta_merge._candidates(manifest, index)] == ["a", "d", "b"]
