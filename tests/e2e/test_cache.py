"""The result cache across jobs (runner.cache) on real Azurite + localbatch, through the CLI.

The suite runs with ``RUNNER_CACHE=0`` (tests/conftest.py): every command here turns
the cache on with ``--cache``. The tests share one first run (``first``) and go in
order: reuse, recompute, ``--no-cache``, then clean/stats/prune (which deletes entries).
"""

from __future__ import annotations

import hashlib
import json
import secrets
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from runner import cache
from runner import manifest as mf
from runner.batch import Batch
from runner.outputs import Outputs, write_file
from runner.storage import CopyItem, CorruptDownload, DownloadItem, Storage
from tests.e2e.test_submit import invoke, make_text, reference_counts, top
from tests.weather.faultproxy import FaultProxy, via

FILES = {
    "a.txt": 300,
    "b.md": 200,
    "sub/naïve résumé #1.txt": 250,
    "sub/deep/c d.txt": 150,
}


@dataclass(frozen=True)
class FirstRun:
    corpus: Path
    texts: dict[str, str]
    dest: Path
    doc: dict[str, object]
    stderr: str


def _write(corpus: Path, salt: str) -> dict[str, str]:
    texts = {}
    for seed, (rel, n) in enumerate(sorted(FILES.items())):
        text = f"{salt}\n{make_text(seed, n)}"  # content no other test (or earlier session) made
        path = corpus / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        texts[rel] = text
    return texts


def _submit(
    outputs_file: Path, corpus: Path, job: str, dest: Path, *extra: str
) -> tuple[dict[str, object], str]:
    res = invoke(
        outputs_file,
        "--json",
        "submit",
        str(corpus),
        "-n",
        "4",
        "--job-id",
        job,
        "--dest",
        str(dest),
        "--timeout",
        "120",
        *extra,
    )
    assert res.exit_code == 0, res.stderr
    return json.loads(res.stdout), res.stderr


_PROVENANCE = (b"Node: ", b"Task: ", b"Job:  ", b"Pool: ")


def _tree(dest: Path, *, runs: bool = False) -> dict[str, bytes]:
    """Every result file's bytes (per-file results and the corpus), by path under ``dest``.

    A report ends with where it was computed (``Node:``, ``Task:``, ``Job:``, ``Pool:``):
    the corpus report always (the merge runs in each job), a file's when ``runs`` (it ran
    again). Those lines are dropped there; everything else must be the same bytes."""
    paths = [*dest.glob("files/**/*"), dest / "corpus_OUTPUT.txt", dest / "corpus_counts.json"]
    out = {}
    for p in paths:
        if p.is_file():
            data = p.read_bytes()
            if p.name == "corpus_OUTPUT.txt" or (runs and "_OUTPUT" in p.name):
                data = b"".join(x for x in data.splitlines(keepends=True) if not x.startswith(_PROVENANCE))
            out[str(p.relative_to(dest))] = data
    return out


def _files_run(outputs: Outputs, job: str) -> set[str]:
    """The file ids the job's Batch tasks carry (packed or one per task); checks that every
    per-file task the manifest plans exists, and that the cached files have none."""
    man = mf.load(Storage(outputs), outputs.input_container, job)
    assert man is not None
    assert _task_ids(outputs, job) == set(man.file_task_ids) | {"merge"}
    packs = {p.task_id: set(p.file_ids) for p in man.packs}
    carried = set().union(*(packs.get(tid, {tid}) for tid in man.file_task_ids))
    assert not carried & set(man.cached)  # no task reruns a file the cache gave
    return carried


def _task_ids(outputs: Outputs, job: str) -> set[str]:
    return {t.id for t in Batch(outputs).list_tasks(job)}


@pytest.fixture(scope="module")
def first(tmp_path_factory: pytest.TempPathFactory, outputs_file: Path) -> FirstRun:
    root = tmp_path_factory.mktemp("cache")
    corpus = root / "corpus"
    texts = _write(corpus, secrets.token_hex(8))
    doc, stderr = _submit(outputs_file, corpus, "cache-first", root / "first", "--cache")
    return FirstRun(corpus, texts, root / "first", doc, stderr)


@pytest.fixture
def counted_outputs(tmp_path: Path, target_outputs: Outputs) -> Iterator[tuple[Path, FaultProxy]]:
    """An outputs file whose Storage endpoint is a recording proxy in front of Azurite."""
    with FaultProxy(target_outputs.storage_blob_endpoint) as proxy:
        path = tmp_path / "outputs.json"
        write_file(
            path,
            replace(target_outputs, storage_blob_endpoint=via(target_outputs.storage_blob_endpoint, proxy)),
        )
        yield path, proxy


def test_first_run_computes_and_stores_every_file(first: FirstRun, target_outputs: Outputs) -> None:
    assert f"0 of {len(FILES)} files from cache, {len(FILES)} to run" in first.stderr
    assert f"cache: {len(FILES) + 1} result(s) stored for later jobs" in first.stderr  # and the corpus
    # Every file's results are members of the merged entry's bundle: no entry of their own (four
    # blobs written in all, not two more per file), and the bundle's member list names them.
    storage, container = Storage(target_outputs), target_outputs.output_container
    man = mf.load(storage, target_outputs.input_container, "cache-first")
    assert man is not None and man.merge_key is not None
    listed = {b.name.split("/")[1] for b in storage.list_entries(container, cache.CACHE_PREFIX)}
    assert not listed & set(man.cache_keys.values())
    merged = cache.read_entry(storage, container, man.merge_key)
    assert merged is not None and merged.valid and len(merged.blobs) == 4
    members = cache.bundle_members(storage, container, merged)
    assert members is not None and {m.key for m in members} == set(man.cache_keys.values())
    by_input = {f["input"]: f for f in first.doc["files"]}  # type: ignore[attr-defined]
    for rel, text in first.texts.items():
        assert by_input[rel]["top"] == top(reference_counts(text), 4), rel


def test_full_hit_runs_no_task_and_every_command_tells_the_truth(
    first: FirstRun, tmp_path: Path, counted_outputs: tuple[Path, FaultProxy], target_outputs: Outputs
) -> None:
    """Every file and the corpus from the cache: a Batch job with no task, completed at once;
    nothing copied into the job's prefix; results byte for byte those of the first run; then
    status, results, resume and retry on that job."""
    outputs_file, proxy = counted_outputs
    doc, stderr = _submit(outputs_file, first.corpus, "cache-second", tmp_path / "second", "--cache")

    assert f"{len(FILES)} of {len(FILES)} files from cache (and the corpus result), 0 to run" in stderr
    assert _task_ids(target_outputs, "cache-second") == set()
    assert Batch(target_outputs).get_job("cache-second").state in ("completed", "terminating")
    assert doc["cache"] == {"files": len(FILES), "fromCache": len(FILES)}
    assert [f["status"] for f in doc["files"]] == ["succeeded"] * len(FILES)  # type: ignore[attr-defined]
    assert doc["corpus"]["status"] == "succeeded"  # type: ignore[index]
    assert _raw_tree(tmp_path / "second") == _raw_tree(first.dest)  # the corpus report too
    # No listing of the whole cache: one of the merged entry's prefix; nothing written to the
    # output container; four GETs: the corpus report and counts, the bundle of every file's
    # results and its member list.
    assert _lists_of_cache(proxy) == 0, [r.path for r in proxy.records if "comp=list" in r.path]
    entry_lists = [r for r in proxy.records if "comp=list" in r.path and "prefix=cache%2F" in r.path]
    assert len(entry_lists) == 1
    out = f"/{target_outputs.output_container}/"
    assert not [r for r in proxy.records if r.method == "PUT" and out in r.path]
    reads = [r for r in proxy.records if r.method == "GET" and f"{out}cache/" in r.path]
    assert len(reads) == 4 and f"unpacking {2 * len(FILES)} cached result files" in stderr
    assert proxy.count("PUT", "/cache-second/inputs/") == 0

    status = invoke(outputs_file, "--json", "status", "cache-second")
    assert status.exit_code == 0, status.stderr
    assert status.stdout.count('"cached"') >= len(FILES)
    said = "no Batch task (every result came from the result cache)"
    assert said in status.stderr
    assert f"{len(FILES)} of {len(FILES)} file(s) from the result cache" in status.stderr
    page = tmp_path / "report.html"
    assert invoke(outputs_file, "report", "cache-second", "--output", str(page)).exit_code == 0
    html = page.read_text(encoding="utf-8")
    assert "No Batch task ran" in html and f"All {len(FILES)} files" in html and "Timeline:" not in html
    again = invoke(outputs_file, "--json", "results", "cache-second", "--dest", str(tmp_path / "again"))
    assert again.exit_code == 0, again.stderr
    assert _raw_tree(tmp_path / "again") == _raw_tree(first.dest)
    resumed, res_err = _submit(outputs_file, first.corpus, "cache-second", tmp_path / "resumed", "--cache")
    assert "exists, resuming" in res_err and resumed["corpus"]["top"] == doc["corpus"]["top"]  # type: ignore[index]
    assert _task_ids(target_outputs, "cache-second") == set()
    retry = invoke(outputs_file, "retry", "cache-second")
    assert retry.exit_code == 2 and "nothing is left to run" in retry.stderr
    report = invoke(outputs_file, "report", "cache-second", "-o", str(tmp_path / "report.html"))
    assert report.exit_code == 0, report.stderr
    assert (tmp_path / "report.html").stat().st_size > 0


def _raw_tree(dest: Path) -> dict[str, bytes]:
    return {str(p.relative_to(dest)): p.read_bytes() for p in sorted(dest.glob("**/*")) if _result(p, dest)}


def _result(path: Path, dest: Path) -> bool:
    return path.is_file() and (path.parts[len(dest.parts)] == "files" or path.name.startswith("corpus_"))


def test_corrupt_bundle_is_never_trusted(
    first: FirstRun, tmp_path: Path, outputs_file: Path, target_outputs: Outputs
) -> None:
    """The merged entry's bundle rewritten (same size, metadata kept): the merged entry is
    corrupt, and the files whose results only its bundle held are misses: every file and the
    merge run again, with the same results, and the merged entry is written again."""
    storage, container = Storage(target_outputs), target_outputs.output_container
    bundle = next(
        b for b in storage.list_entries(container, cache.CACHE_PREFIX) if b.name.endswith("/results.tar")
    )
    _rewrite_keeping_metadata(storage, container, bundle.name)

    _, stderr = _submit(outputs_file, first.corpus, "cache-merge", tmp_path / "merge", "--cache")
    assert f"0 of {len(FILES)} files from cache, {len(FILES)} to run" in stderr
    assert "1 cache entries did not check out" in stderr
    assert f"cache: {len(FILES) + 1} result(s) stored" in stderr
    assert _files_run(target_outputs, "cache-merge") == set(_ids(first).values())
    assert _tree(tmp_path / "merge", runs=True) == _tree(first.dest, runs=True)
    assert cache.stats(storage, container).corrupt == 0


def test_full_merge_reads_counts_held_in_a_bundle(
    first: FirstRun, tmp_path: Path, outputs_file: Path, target_outputs: Outputs
) -> None:
    """Four new files beside the cached four: too many for a delta merge, so the merges read
    every file's counts. The cached files' results are only members of a bundle: each gets its
    own entry first (written from the bundle, MD5 checked), the merges read their counts there
    (nothing copied into the job), and the corpus is that of all eight files."""
    storage, container = Storage(target_outputs), target_outputs.output_container
    before = {b.name.split("/")[1] for b in storage.list_entries(container, cache.CACHE_PREFIX)}
    corpus = tmp_path / "eight"
    shutil.copytree(first.corpus, corpus)
    added = {f"new/n{i}.txt": make_text(60 + i, 90) for i in range(4)}
    for rel, text in added.items():
        (corpus / rel).parent.mkdir(parents=True, exist_ok=True)
        (corpus / rel).write_text(text, encoding="utf-8")
    doc, stderr = _submit(outputs_file, corpus, "cache-eight", tmp_path / "eight-out", "--cache")

    assert f"{len(FILES)} of {len(FILES) + 4} files from cache, 4 to run" in stderr
    assert "delta merge" not in stderr
    man = mf.load(storage, target_outputs.input_container, "cache-eight")
    assert man is not None
    cached_keys = {man.cache_keys[fid] for fid in man.cached}
    own = {b.name.split("/")[1] for b in storage.list_entries(container, cache.CACHE_PREFIX)}
    assert cached_keys <= own - before  # entries of their own, written for this merge
    for fid in man.cached:
        assert not storage.list_blobs(container, f"cache-eight/{fid}/")  # read in place
    everything = "\n".join([*first.texts.values(), *added.values()])
    assert doc["corpus"]["top"] == top(reference_counts(everything), 4)  # type: ignore[index]
    assert cache.stats(storage, container).corrupt == 0


def _ids(run: FirstRun) -> dict[str, str]:
    return {f["input"]: f["taskId"] for f in run.doc["files"]}  # type: ignore[attr-defined]


def _rewrite_keeping_metadata(storage: Storage, container: str, blob: str) -> None:
    """Other bytes of the same size under ``blob``, its metadata kept (only the MD5 can tell)."""
    listed = next(b for b in storage.list_entries(container, blob) if b.name == blob)
    old = storage.download_bytes(container, blob)
    storage.upload_bytes(container, "scratch/corrupt", old[::-1] if old[::-1] != old else b"x" * len(old))
    assert storage.copy_blobs(container, [CopyItem("scratch/corrupt", blob, listed.metadata)]) == {}
    storage.delete_names(container, ["scratch/corrupt"])


def test_download_refuses_bytes_that_do_not_match_their_md5(tmp_path: Path, storage_outputs: Outputs) -> None:
    storage, container = Storage(storage_outputs), storage_outputs.output_container
    storage.upload_bytes(container, "scratch/x.txt", b"what was written")
    good = hashlib.md5(b"what was written", usedforsecurity=False).digest()
    ok, bad = tmp_path / "ok.txt", tmp_path / "bad.txt"
    storage.download_files(container, [DownloadItem("scratch/x.txt", ok, good, 16)])
    with pytest.raises(CorruptDownload):
        storage.download_files(container, [DownloadItem("scratch/x.txt", bad, b"0" * 16, 16)])
    assert ok.read_bytes() == b"what was written" and not bad.exists() and not list(tmp_path.glob("*.part"))


def _lists_of_cache(proxy: FaultProxy) -> int:
    return sum(
        1
        for r in proxy.records
        if r.method == "GET" and "comp=list" in r.path and "prefix=cache%2F&" in r.path
    )


def test_changed_input_and_corrupt_entries_run_again(
    first: FirstRun,
    tmp_path: Path,
    outputs_file: Path,
    target_outputs: Outputs,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    storage = Storage(target_outputs)
    container = target_outputs.output_container
    ids = {f["input"]: f["taskId"] for f in first.doc["files"]}  # type: ignore[attr-defined]
    entries = _entries_by_counts_md5(storage, container)
    # b.md: one blob rewritten with other bytes of the same size, its metadata kept (only the
    # MD5 can tell); c d.txt: one blob deleted.
    rewritten = entries[_md5(first.dest / "files" / "b_counts.json")]
    _rewrite_keeping_metadata(storage, container, next(n for n in rewritten if n.endswith("_OUTPUT.md")))
    gone = entries[_md5(first.dest / "files" / "sub" / "deep" / "c d_counts.json")]
    storage.delete_names(container, [gone[0]])
    monkeypatch.setattr(cache, "BUNDLE_MIN_HITS", 1)  # the one hit comes from the newest bundle
    # a.txt: same name, new content.
    changed = first.corpus / "a.txt"
    new_text = make_text(99, 120)
    changed.write_text(new_text, encoding="utf-8")
    try:
        doc, stderr = _submit(outputs_file, first.corpus, "cache-third", tmp_path / "third", "--cache")
    finally:
        changed.write_text(first.texts["a.txt"], encoding="utf-8")

    assert f"1 of {len(FILES)} files from cache, 3 to run" in stderr
    assert "2 cache entries did not check out" in stderr
    assert "unpacking 2 cached result files from one bundle" in stderr
    reran = {ids["a.txt"], ids["b.md"], ids["sub/deep/c d.txt"]}
    assert _files_run(target_outputs, "cache-third") == reran  # packed or not, only those run
    by_input = {f["input"]: f for f in doc["files"]}  # type: ignore[attr-defined]
    assert by_input["a.txt"]["top"] == top(reference_counts(new_text), 4)
    # The cached file was not copied into the job: the merge read its counts in its entry.
    naive = ids["sub/naïve résumé #1.txt"]
    assert not storage.list_blobs(container, f"cache-third/{naive}/")
    everything = "\n".join(new_text if rel == "a.txt" else t for rel, t in first.texts.items())
    assert doc["corpus"]["top"] == top(reference_counts(everything), 4)  # type: ignore[index]
    third, before = _tree(tmp_path / "third", runs=True), _tree(first.dest, runs=True)
    for rel in ("files/b_OUTPUT.md", "files/sub/deep/c d_OUTPUT.txt", "files/sub/naïve résumé #1_OUTPUT.txt"):
        assert third[rel] == before[rel], rel  # recomputed (or reused) results are the same bytes
    # The corrupt entries were replaced by the recomputed results: nothing corrupt is left.
    assert cache.stats(storage, container).corrupt == 0


def _md5(path: Path) -> bytes:
    return hashlib.md5(path.read_bytes(), usedforsecurity=False).digest()


def _entries_by_counts_md5(storage: Storage, container: str) -> dict[bytes, list[str]]:
    """Blob names of each cache entry, by the MD5 of its counts blob (found without the key)."""
    grouped: dict[str, list[str]] = {}
    md5_of: dict[str, bytes] = {}
    for b in storage.list_entries(container, cache.CACHE_PREFIX):
        key = b.name.split("/")[1]
        grouped.setdefault(key, []).append(b.name)
        if b.name.endswith("_counts.json") and b.md5:
            md5_of[key] = b.md5
    return {md5: grouped[key] for key, md5 in md5_of.items()}


def test_no_cache_runs_every_file(
    first: FirstRun, tmp_path: Path, outputs_file: Path, target_outputs: Outputs
) -> None:
    _, stderr = _submit(outputs_file, first.corpus, "cache-fourth", tmp_path / "fourth", "--no-cache")
    assert "from cache" not in stderr and "stored for later jobs" not in stderr
    assert len(_files_run(target_outputs, "cache-fourth")) == len(FILES)
    assert _tree(tmp_path / "fourth", runs=True) == _tree(first.dest, runs=True)  # computed again: same


def test_resume_refuses_a_file_changed_since_it_came_from_the_cache(
    first: FirstRun, tmp_path: Path, outputs_file: Path
) -> None:
    _submit(outputs_file, first.corpus, "cache-resume", tmp_path / "r1", "--cache")
    again, stderr = _submit(outputs_file, first.corpus, "cache-resume", tmp_path / "r2", "--cache")
    assert "exists, resuming" in stderr and again["cache"] == {"files": len(FILES), "fromCache": len(FILES)}
    changed = first.corpus / "b.md"
    changed.write_text("other words now", encoding="utf-8")
    try:
        res = invoke(
            outputs_file, "submit", str(first.corpus), "-n", "4", "--job-id", "cache-resume", "--cache"
        )
    finally:
        changed.write_text(first.texts["b.md"], encoding="utf-8")
    assert res.exit_code == 2
    assert "1 input(s) changed since job cache-resume took them from the cache: b.md" in res.stderr


def test_command_results_are_keyed_by_the_template(
    first: FirstRun, tmp_path: Path, outputs_file: Path
) -> None:
    """--command: the template is in the key; a job whose every file is cached has no task at all."""
    corpus = tmp_path / "two"
    for name in ("x.txt", "y.txt"):
        (corpus / name).parent.mkdir(parents=True, exist_ok=True)
        (corpus / name).write_text(f"{first.texts['a.txt']}\n{name}\n", encoding="utf-8")
    words = "wc -w < {input} > {output_dir}/n.txt"
    runs = {}
    for job, template in (
        ("cache-cmd1", words),
        ("cache-cmd2", words),
        ("cache-cmd3", "wc -l < {input} > {output_dir}/n.txt"),
    ):
        res = invoke(
            outputs_file, "submit", str(corpus), "--command", template, "--job-id", job,
            "--dest", str(tmp_path / job), "--timeout", "120", "--cache",
        )  # fmt: skip
        assert res.exit_code == 0, res.stderr
        runs[job] = res.stderr
    assert "0 of 2 files from cache, 2 to run" in runs["cache-cmd1"]
    assert "2 of 2 files from cache, 0 to run" in runs["cache-cmd2"]
    assert "0 of 2 files from cache, 2 to run" in runs["cache-cmd3"]  # another template: another key
    got = {job: (tmp_path / job / "files" / "x.txt.out" / "n.txt").read_text() for job in runs}
    assert got["cache-cmd1"] == got["cache-cmd2"] != got["cache-cmd3"]


def test_no_wait_then_results_stores_the_results(tmp_path: Path, outputs_file: Path) -> None:
    corpus = tmp_path / "nw"
    corpus.mkdir()
    (corpus / "sub").mkdir()
    for i, name in enumerate(("p.txt", "q.txt")):
        (corpus / name).write_text(f"{secrets.token_hex(8)}\n{make_text(40 + i, 80)}", encoding="utf-8")
    (corpus / "sub" / "p.txt").write_bytes((corpus / "p.txt").read_bytes())  # same key as p.txt
    sent = invoke(
        outputs_file, "submit", str(corpus), "-n", "4", "--job-id", "cache-nowait", "--no-wait", "--cache"
    )
    assert sent.exit_code == 0, sent.stderr
    got = invoke(
        outputs_file, "results", "cache-nowait", "--wait", "--dest", str(tmp_path / "r"), "--timeout", "120"
    )
    assert got.exit_code == 0, got.stderr
    assert "cache: 3 result(s) stored for later jobs" in got.stderr  # two keys and the corpus
    _, stderr = _submit(outputs_file, corpus, "cache-nowait2", tmp_path / "r2", "--cache")
    assert "3 of 3 files from cache (and the corpus result), 0 to run" in stderr
    assert _raw_tree(tmp_path / "r2") == _raw_tree(tmp_path / "r")  # both p.txt from one bundle member


def test_results_of_a_no_wait_job_bundle_the_files_it_took_from_a_bundle(
    tmp_path: Path, outputs_file: Path, target_outputs: Outputs
) -> None:
    """Three files cached (only in their job's bundle), then a --no-wait job of them with one
    changed (a delta merge: the two others are read from nowhere else): the `results` that
    collects it finds those two in that bundle, so the merged entry it writes has a bundle of
    all three, and the changed file no entry of its own."""
    corpus = tmp_path / "nb"
    corpus.mkdir()
    for i in range(3):
        (corpus / f"k{i}.txt").write_text(
            f"{secrets.token_hex(8)}\n{make_text(70 + i, 60)}", encoding="utf-8"
        )
    _submit(outputs_file, corpus, "cache-nb1", tmp_path / "r1", "--cache")
    (corpus / "k2.txt").write_text(f"{secrets.token_hex(8)}\n{make_text(74, 60)}", encoding="utf-8")
    args = ["submit", str(corpus), "-n", "4", "--job-id", "cache-nb2", "--no-wait", "--cache"]
    sent = invoke(outputs_file, *args)
    assert sent.exit_code == 0, sent.stderr
    assert "2 of 3 files from cache, 1 to run" in sent.stderr and "delta merge" in sent.stderr
    got = invoke(
        outputs_file, "results", "cache-nb2", "--wait", "--dest", str(tmp_path / "r2"), "--timeout", "120"
    )
    assert got.exit_code == 0, got.stderr
    storage, container = Storage(target_outputs), target_outputs.output_container
    man = mf.load(storage, target_outputs.input_container, "cache-nb2")
    assert man is not None and man.merge_key is not None
    merged = cache.read_entry(storage, container, man.merge_key)
    assert merged is not None and merged.valid and len(merged.blobs) == 4  # corpus x2, bundle, list
    new_key = next(k for fid, k in man.cache_keys.items() if fid not in man.cached)
    assert cache.read_entry(storage, container, new_key) is None


def test_clean_keeps_entries_stats_and_prune(
    first: FirstRun, outputs_file: Path, target_outputs: Outputs
) -> None:
    storage, container = Storage(target_outputs), target_outputs.output_container
    before = cache.stats(storage, container)
    assert before.entries >= len(FILES) and before.bytes > 0 and before.oldest is not None

    assert invoke(outputs_file, "clean", "cache-first").exit_code == 0
    assert invoke(outputs_file, "clean", "cache-second").exit_code == 0  # the job that ran no task
    res = invoke(outputs_file, "--json", "cache", "stats")
    assert res.exit_code == 0, res.stderr
    assert json.loads(res.stdout)["entries"] == before.entries  # clean leaves the cache alone

    bad = invoke(outputs_file, "cache", "prune", "--older-than", "soon")
    assert bad.exit_code == 2 and "--older-than" in bad.stderr
    kept = invoke(outputs_file, "--json", "cache", "prune", "--older-than", "30d")
    assert kept.exit_code == 0 and json.loads(kept.stdout)["entries"] == 0
    assert invoke(outputs_file, "clean", "cache").exit_code == 2  # a job id that would reach cache/

    later = datetime.now(timezone.utc) + timedelta(days=2)  # as if run in two days
    done = cache.prune(storage, container, timedelta(days=1), later)
    assert done.entries == before.entries and done.bytes == before.bytes
    assert cache.stats(storage, container).entries == 0


@pytest.mark.parametrize(
    ("text", "seconds"), [("30d", 30 * 86400), ("1d12h", 129600), ("90m", 5400), (" 2W ", 1209600)]
)
def test_durations(text: str, seconds: int) -> None:
    assert cache.parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "30", "d", "0d", "3x", "1d 2", "-1d", "\uff11d", "99999999999w"])
def test_bad_durations_name_the_option(text: str) -> None:
    from runner.errors import UsageError

    with pytest.raises(UsageError, match="--older-than") as err:
        cache.parse_duration(text)
    assert err.value.exit_code == 2


def test_plan_of_the_misses_reads_every_file_and_depends_only_on_tasks() -> None:
    """Two merge levels (group size 3, 7 files), files 1-3 and 5 cached: the group of 1-3 has no
    dependency at all, the others depend on their tasks only, every merge reads every source."""
    from runner.tasks import PlannedInput, PlanOptions, plan

    opts = PlanOptions("j", 3, 0, None, "https://code", "https://out")
    ran = [PlannedInput(str(i), f"f{i}.txt", f"https://in/{i}") for i in (4, 6, 7)]
    urls = {tid: f"https://counts/{tid}" for tid in [*map(str, range(1, 8)), "merge-1", "merge-2", "merge-3"]}
    specs = {
        s.id: s for s in plan(ran, opts, aggregate=True, counts_urls=urls, merge_group_size=3, n_files=7)
    }

    assert set(specs) == {"4", "6", "7", "merge-1", "merge-2", "merge-3", "merge"}
    deps = {tid: (specs[tid].depends_on_range, specs[tid].depends_on_ids) for tid in specs if "merge" in tid}
    assert deps == {
        "merge-1": (None, ()),
        "merge-2": (None, ("4", "6")),
        "merge-3": ((7, 7), ()),
        "merge": (None, ("merge-1", "merge-2", "merge-3")),
    }
    reads = {tid: len(specs[tid].resource_files) - 1 for tid in deps}  # minus the node code
    assert reads == {"merge-1": 3, "merge-2": 3, "merge-3": 1, "merge": 3}
