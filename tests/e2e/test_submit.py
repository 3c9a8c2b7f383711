"""End to end: ``runner submit`` on real Azurite + localbatch through ``--outputs FILE``.

Expected word counts are computed here with an independent reference
implementation of nodetask's documented semantics (``str.split``, strip
``string.punctuation`` from both ends, drop empty tokens, case-sensitive,
ties by word), on generated text.
"""

from __future__ import annotations

import json
import random
import string
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from runner.batch import Batch
from runner.cli import app
from runner.outputs import Outputs
from runner.storage import Storage

VOCAB = [
    "the", "The", "of", "and", "batch", "Azure", "node", "pool", "task", "job", "word", "count",
    "émigré", "naïve", "straße", "日本", "co-op", "it's", "x",
]  # fmt: skip
PUNCT = ["", "", "", ",", ".", "!", "?", ";", ":", '"', "'", "(", ")", "--", "...", "«"]


def make_text(seed: int, n_words: int) -> str:
    rng = random.Random(seed)
    weights = [1 / (i + 1) for i in range(len(VOCAB))]
    rng.shuffle(weights)
    out = []
    for i in range(n_words):
        word = rng.choices(VOCAB, weights)[0]
        token = rng.choice(PUNCT) + word + rng.choice(PUNCT)
        if rng.random() < 0.05:
            token = rng.choice(["--", "...", "!!", '"'])  # punctuation-only tokens are dropped
        out.append(token)
        out.append("\n" if i % 11 == 10 else rng.choice([" ", " ", "\t", "  "]))
    return "".join(out)


def reference_counts(text: str) -> Counter[str]:
    counts: Counter[str] = Counter()
    for token in text.split():
        word = token.strip(string.punctuation)
        if word:
            counts[word] += 1
    return counts


def top(counts: Counter[str], n: int) -> list[dict[str, Any]]:
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:n]
    return [{"word": w, "count": c} for w, c in ranked]


def invoke(outputs_file: Path, *args: str) -> Result:
    return CliRunner().invoke(app, ["--outputs", str(outputs_file), *args], catch_exceptions=False)


def write_corpus(root: Path, files: dict[str, int]) -> dict[str, str]:
    texts = {}
    for seed, (rel, n) in enumerate(sorted(files.items())):
        text = make_text(seed, n)
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        texts[rel] = text
    return texts


def test_submit_results_match_an_independent_count(
    tmp_path: Path, outputs_file: Path, target_outputs: Outputs
) -> None:
    corpus = tmp_path / "corpus"
    texts = write_corpus(
        corpus,
        {
            "a/book.txt": 400,
            "a/book.md": 250,  # same stem: book_counts.json would be claimed twice
            "b/book.txt": 300,  # same basename in another folder
            "names/with space é#?%.txt": 200,
            "corpus.txt": 150,  # the aggregate's own name must not shadow an input
        },
    )
    dest = tmp_path / "results"
    job_id = "e2e-count"
    res = invoke(
        outputs_file,
        "--json",
        "submit",
        str(corpus),
        "--numwords",
        "4",
        "--job-id",
        job_id,
        "--dest",
        str(dest),
    )
    assert res.exit_code == 0, res.stderr
    doc = json.loads(res.stdout)  # stdout is the JSON document and nothing else

    assert doc["jobId"] == job_id and doc["numwords"] == 4
    assert doc["tasks"] == {"total": len(texts) + 1, "succeeded": len(texts) + 1, "failed": 0}
    assert doc["failures"] == []
    by_input = {f["input"]: f for f in doc["files"]}
    assert set(by_input) == set(texts)
    total = Counter[str]()
    for rel, text in texts.items():
        expected = reference_counts(text)
        total.update(expected)
        got = by_input[rel]
        assert got["status"] == "succeeded"
        assert got["top"] == top(expected, 4), rel
        assert got["words"] == sum(expected.values())
        # The tutorial's file names, from the original name, in the input's relative folder.
        stem, ext = Path(rel).stem, Path(rel).suffix
        report = dest / "files" / Path(rel).parent / f"{stem}_OUTPUT{ext}"
        assert Path(got["report"]) == report and report.is_file()
        lines = report.read_text(encoding="utf-8").splitlines()
        assert [f"{t['word']}:\t{t['count']}" for t in top(expected, 4)] == lines[2:6]
        counts_name = f"{Path(rel).name}_counts.json" if rel.startswith("a/book.") else f"{stem}_counts.json"
        assert Path(got["counts"]) == dest / "files" / Path(rel).parent / counts_name, rel
        assert json.loads(Path(got["counts"]).read_text(encoding="utf-8"))["totals"]["words"] == got["words"]
    assert doc["corpus"]["status"] == "succeeded"
    assert doc["corpus"]["top"] == top(total, 4)
    assert doc["corpus"]["words"] == sum(total.values())
    assert (dest / "corpus_OUTPUT.txt").is_file()

    # The summary table for people went to stderr.
    assert "all files" in res.stderr and "target: outputs file" in res.stderr

    # `runner results` from the manifest gives the same data.
    again = invoke(outputs_file, "--json", "results", job_id, "--dest", str(tmp_path / "again"))
    assert again.exit_code == 0, again.stderr
    doc2 = json.loads(again.stdout)
    assert doc2["files"] == [
        {**f, "report": f["report"].replace(str(dest), str(tmp_path / "again")),
         "counts": f["counts"].replace(str(dest), str(tmp_path / "again")),
         "files": [p.replace(str(dest), str(tmp_path / "again")) for p in f["files"]]}
        for f in doc["files"]
    ]  # fmt: skip
    assert doc2["corpus"]["top"] == doc["corpus"]["top"]


def test_failing_command_is_reported_with_stderr_and_exit_code(tmp_path: Path, outputs_file: Path) -> None:
    write_corpus(tmp_path / "in", {"good.txt": 20, "bad.txt": 20})
    # The template is a shell command line (run with /bin/sh -c on the node).
    command = (
        'case {input} in *bad*) echo "boom: cannot handle {input}" >&2; exit 3;; esac; '
        "wc -w < {input} > {output_dir}/words.txt"
    )
    res = invoke(
        outputs_file, "--json", "submit", str(tmp_path / "in"), "--command", command,
        "--job-id", "e2e-fail", "--dest", str(tmp_path / "r"),
    )  # fmt: skip
    assert res.exit_code == 10, res.stderr
    doc = json.loads(res.stdout)
    assert [f["input"] for f in doc["failures"]] == ["bad.txt"]
    failure = doc["failures"][0]
    assert failure["exitCode"] == 3
    assert "boom: cannot handle" in failure["stderrTail"]
    assert "exit code 3" in res.stderr and "boom: cannot handle" in res.stderr
    # The task that succeeded still brought its results back.
    good = next(f for f in doc["files"] if f["input"] == "good.txt")
    assert good["status"] == "succeeded"
    words = tmp_path / "r" / "files" / "good.txt.out" / "words.txt"
    assert words.read_text().strip() == str(len((tmp_path / "in" / "good.txt").read_text().split()))


def test_resume_creates_no_duplicate_tasks_or_blobs(
    tmp_path: Path, outputs_file: Path, target_outputs: Outputs
) -> None:
    write_corpus(tmp_path / "in", {f"f{i}.txt": 30 for i in range(5)})
    job_id = "e2e-resume"
    args = ["submit", str(tmp_path / "in"), "--job-id", job_id, "--dest", str(tmp_path / "r")]
    args += ["--pack", "none"]  # task ids 1..5 are the files'
    first = invoke(outputs_file, *args, "--no-wait")
    assert first.exit_code == 0, first.stderr
    assert "5 uploaded, 0 unchanged" in first.stderr
    assert "6 added" in first.stderr

    second = invoke(outputs_file, "--json", *args)
    assert second.exit_code == 0, second.stderr
    assert "0 uploaded, 5 unchanged" in second.stderr
    assert "0 added, 6 already there" in second.stderr
    assert json.loads(second.stdout)["tasks"]["succeeded"] == 6

    # Every task was in, so the job completed with its last task (no active-job quota held).
    batch = Batch(target_outputs)
    assert batch.get_job(job_id).state == "completed"
    # Resuming a completed job adds nothing and gives the same results.
    again = invoke(outputs_file, "--json", *args)
    assert again.exit_code == 0, again.stderr
    assert "0 added, 6 already there" in again.stderr
    assert json.loads(again.stdout)["tasks"]["succeeded"] == 6
    assert sorted(t.id for t in batch.list_tasks(job_id)) == sorted(["1", "2", "3", "4", "5", "merge"])
    storage = Storage(target_outputs)
    names = [b.name for b in storage.list_blobs(target_outputs.input_container, f"{job_id}/")]
    assert sorted(names) == sorted(
        [f"{job_id}/manifest.json"] + [f"{job_id}/inputs/f{i}.txt" for i in range(5)]
    )

    # Resuming with other inputs is refused, and changes nothing.
    (tmp_path / "in" / "f9.txt").write_text("new file")
    third = invoke(outputs_file, *args)
    assert third.exit_code == 2
    assert "other inputs" in third.stderr


def test_status_jobs_logs_clean(tmp_path: Path, outputs_file: Path, target_outputs: Outputs) -> None:
    write_corpus(tmp_path / "in", {"one.txt": 10})
    job_id = "e2e-misc"
    res = invoke(
        outputs_file, "submit", str(tmp_path / "in"), "--job-id", job_id, "--dest", str(tmp_path / "r")
    )
    assert res.exit_code == 0, res.stderr

    status = invoke(outputs_file, "--json", "status", job_id)
    assert status.exit_code == 0, status.stderr
    doc = json.loads(status.stdout)
    assert doc["counts"]["succeeded"] == 2
    assert {t["id"]: t["input"] for t in doc["tasks"]}["1"] == "one.txt"

    jobs = invoke(outputs_file, "--json", "jobs")
    assert job_id in [j["jobId"] for j in json.loads(jobs.stdout)]

    logs = invoke(outputs_file, "logs", job_id, "1", "--stderr")
    assert logs.exit_code == 0

    missing = invoke(outputs_file, "status", "no-such-job")
    assert missing.exit_code == 5
    assert "does not exist" in missing.stderr

    # --cleanup deletes the job and its blobs once the results are down.
    other = "e2e-cleanup"
    dest = str(tmp_path / "r2")
    res = invoke(outputs_file, "submit", str(tmp_path / "in"), "--job-id", other, "--dest", dest, "--cleanup")
    assert res.exit_code == 0, res.stderr
    assert (tmp_path / "r2" / "corpus_OUTPUT.txt").is_file()
    assert not Batch(target_outputs).job_exists(other)
    assert Storage(target_outputs).list_blobs(target_outputs.input_container, f"{other}/") == []

    cleaned = invoke(outputs_file, "--json", "clean", job_id)
    assert cleaned.exit_code == 0, cleaned.stderr
    assert json.loads(cleaned.stdout)["jobDeleted"] is True
    storage = Storage(target_outputs)
    assert storage.list_blobs(target_outputs.input_container, f"{job_id}/") == []
    assert storage.list_blobs(target_outputs.output_container, f"{job_id}/") == []


@pytest.mark.parametrize("numwords", [0])
def test_bad_options_exit_2_before_anything(tmp_path: Path, outputs_file: Path, numwords: int) -> None:
    write_corpus(tmp_path / "in", {"a.txt": 5})
    res = invoke(outputs_file, "submit", str(tmp_path / "in"), "--numwords", str(numwords))
    assert res.exit_code == 2


def test_two_level_merge_gives_the_exact_corpus_result(
    tmp_path: Path, outputs_file: Path, target_outputs: Outputs
) -> None:
    """7 files, one a task, in merge groups of 3: merge-1..3 each sum a group, merge sums theirs
    (packed, the merges group by the results tars they read: tests/e2e/test_packing.py)."""
    corpus = tmp_path / "corpus"
    texts = write_corpus(corpus, {f"part{i}.txt": 60 + 10 * i for i in range(7)})
    dest = tmp_path / "results"
    job_id = "e2e-two-level"
    args = ["--json", "submit", str(corpus), "-n", "5", "--job-id", job_id, "--dest", str(dest)]
    res = invoke(outputs_file, *args, "--merge-group-size", "3", "--pack", "none")
    assert res.exit_code == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["tasks"] == {"total": 7 + 4, "succeeded": 11, "failed": 0}
    total = Counter[str]()
    for text in texts.values():
        total.update(reference_counts(text))
    assert doc["corpus"]["status"] == "succeeded"
    assert doc["corpus"]["top"] == top(total, 5)
    assert doc["corpus"]["words"] == sum(total.values())
    # The partial merges' outputs stay in the job's blobs; only the corpus result comes back.
    listed = sorted(p.name for p in dest.iterdir() if p.name not in (".runner-job", "summary.tsv"))
    assert listed == ["corpus_OUTPUT.txt", "corpus_counts.json", "files"]
    tasks = {t.id: t for t in Batch(target_outputs).list_tasks(job_id)}
    assert sorted(t for t in tasks if t.startswith("merge")) == ["merge", "merge-1", "merge-2", "merge-3"]
    assert all(t.result == "success" for t in tasks.values())
    # A resume with another group size would plan other merge tasks: refused, nothing changed.
    again = invoke(outputs_file, *args, "--merge-group-size", "4")
    assert again.exit_code == 2 and "--merge-group-size" in again.stderr
