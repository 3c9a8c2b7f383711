"""``status``, ``report`` and ``--trace`` of bundled packs (issue 16): a pack has one
``results.tar``, not a blob per file, so the files' states and a pack's bytes out come from it.

One real job on a pool that starts with no node, so that the packs' input tars can be made
hostile before they run (as tests/e2e/test_pack_partial.py deletes an input): in ``p1`` file
``link.txt`` becomes a symbolic link member, in ``p2`` file ``z.txt`` a ``..`` name. nodetask
refuses each, writes that file's ``nodetask_error.txt`` into the pack's results tar, and counts
the others.
"""

from __future__ import annotations

import dataclasses
import io
import json
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.batch import models as bm

from runner import execution
from runner import manifest as mf
from runner.batch import Batch
from runner.outputs import Outputs, write_file
from runner.pack_tars import input_tar_blob, results_tar_blob
from runner.pool_spec import PoolSpec
from runner.storage import Storage
from tests.e2e.test_cache import counted_outputs
from tests.e2e.test_failures import _sdk_client
from tests.e2e.test_submit import invoke, write_corpus
from tests.weather.faultproxy import FaultProxy

__all__ = ["counted_outputs"]  # a fixture, shared with tests/e2e/test_cache.py

FILES = {"a.txt": 30, "link.txt": 20, "sub/c.txt": 40, "y.txt": 10, "z.txt": 15}
JOB = "e2e-pack-states"
#: What each hostile file becomes in its pack's input tar.
HOSTILE = {"link.txt": "symlink", "z.txt": "dotdot"}


def _hostile(tar_bytes: bytes, bad: dict[str, str]) -> bytes:
    """The input tar with the member of each file id in ``bad`` made ``symlink`` or ``dotdot``."""
    out = io.BytesIO()
    with (
        tarfile.open(fileobj=io.BytesIO(tar_bytes), mode="r:") as src,
        tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as dst,
    ):
        for info in src:
            data = src.extractfile(info)
            fid, _, name = info.name.partition("/")
            if bad.get(fid) == "symlink":
                link = tarfile.TarInfo(info.name)
                link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
                dst.addfile(link)
            elif bad.get(fid) == "dotdot":
                info.name = f"{fid}/../{name}"
                dst.addfile(info, data)
            else:
                dst.addfile(info, data)
    return out.getvalue()


@dataclasses.dataclass(frozen=True)
class PackJob:
    outputs_file: Path
    target: Outputs
    manifest: mf.Manifest
    originals: dict[str, bytes]  # pack id -> its input tar as the runner made it
    results: dict[str, Any]  # `runner results --json` of the failed run

    def file_id(self, rel: str) -> str:
        return next(t.task_id for t in self.manifest.tasks if t.input == rel)

    def label(self, pack_id: str) -> str:
        """What the pack's record says: its one hostile file, of how many."""
        rels = [t.input for t in self.manifest.tasks if self.manifest.task_of[t.task_id] == pack_id]
        [bad] = [rel for rel in rels if rel in HOSTILE]
        return f"{bad} (1 of {len(rels)} files failed)"


@pytest.fixture(scope="module")
def pack_job(tmp_path_factory: pytest.TempPathFactory, target_outputs: Outputs) -> Iterator[PackJob]:
    """:data:`FILES` in two bundled packs (``--pack 3``), each with one hostile member, run."""
    root = tmp_path_factory.mktemp("pack-states")
    pool = PoolSpec(pool_id="pack-states", dedicated_nodes=0)
    Batch(target_outputs).create_pool(pool)
    path = root / "outputs.json"
    write_file(path, dataclasses.replace(target_outputs, pool_id=pool.pool_id))
    write_corpus(root / "in", FILES)
    sent = invoke(path, "submit", str(root / "in"), "--job-id", JOB, "--no-wait", "-n", "3", "--pack", "3")
    assert sent.exit_code == 0, sent.stderr
    storage, box = Storage(target_outputs), target_outputs.input_container
    manifest = mf.require(storage, box, JOB)
    assert [p.task_id for p in manifest.packs] == ["p1", "p2"]
    by_rel = {t.input: t.task_id for t in manifest.tasks}
    originals = {}
    for pack in manifest.packs:
        blob = input_tar_blob(JOB, pack.task_id)
        originals[pack.task_id] = storage.download_bytes(box, blob)
        bad = {by_rel[rel]: how for rel, how in HOSTILE.items() if by_rel[rel] in pack.file_ids}
        assert len(bad) == 1, (pack, bad)  # one hostile file in each pack
        storage.upload_bytes(box, blob, _hostile(originals[pack.task_id], bad))
    client = _sdk_client(target_outputs)
    resize = bm.BatchPoolResizeOptions(target_dedicated_nodes=1)
    client.begin_resize_pool(pool.pool_id, resize, polling_interval=0.1).result()
    try:
        deadline = time.monotonic() + 60
        while any(client.get_task(JOB, p).state != bm.BatchTaskState.COMPLETED for p in ("p1", "p2")):
            assert time.monotonic() < deadline, "the packs did not run"
            time.sleep(0.1)
        res = invoke(path, "--json", "results", JOB, "--wait", "--dest", str(root / "r"), "--timeout", "60")
        assert res.exit_code == 10, res.stderr  # two files failed
        yield PackJob(path, target_outputs, manifest, originals, json.loads(res.stdout))
    finally:
        client.begin_delete_pool(pool.pool_id, polling_interval=0.1).result()
        invoke(path, "clean", JOB)


def _results_tar_sizes(job: PackJob) -> dict[str, int]:
    """Pack id -> the size of its results tar blob, as Storage lists it."""
    blobs = {b.name: b.size for b in Storage(job.target).list_blobs(job.target.output_container, f"{JOB}/")}
    return {p.task_id: blobs[results_tar_blob(JOB, p.task_id)] for p in job.manifest.packs}


def test_status_names_only_the_failed_file_of_a_tar_pack_with_its_own_error(pack_job: PackJob) -> None:
    # `runner results` unpacks the tars: the reference of what status must say.
    summary = {f["input"]: f["status"] for f in pack_job.results["files"]}
    assert summary == {rel: "failed" if rel in HOSTILE else "succeeded" for rel in FILES}
    res = invoke(pack_job.outputs_file, "--json", "status", JOB)
    assert res.exit_code == 0, res.stderr
    doc = json.loads(res.stdout)
    files = {f["input"]: (f["status"], f["taskId"]) for f in doc["files"]}
    pack_of = pack_job.manifest.task_of
    assert files == {
        rel: ("failed" if rel in HOSTILE else "done", pack_of[pack_job.file_id(rel)]) for rel in FILES
    }
    errors = {f["input"]: f["error"] for f in doc["files"]}
    assert "not a regular file" in errors["link.txt"], errors
    assert "unsafe member name" in errors["z.txt"] and "'..'" in errors["z.txt"], errors
    assert {rel: e for rel, e in errors.items() if rel not in HOSTILE} == dict.fromkeys(
        set(FILES) - set(HOSTILE)
    )
    tasks = {t["id"]: t for t in doc["tasks"]}
    assert {p: tasks[p]["input"] for p in ("p1", "p2")} == {p: pack_job.label(p) for p in ("p1", "p2")}
    assert "not a regular file" in res.stderr  # the table says why too
    sizes = _results_tar_sizes(pack_job)
    assert set(sizes) == {"p1", "p2"} and all(sizes.values())
    assert {p: tasks[p]["bytesOut"] for p in sizes} == sizes


def test_report_and_trace_give_the_failed_files_and_bytes_out(pack_job: PackJob, tmp_path: Path) -> None:
    html, tsv = tmp_path / "report.html", tmp_path / "trace.tsv"
    res = invoke(pack_job.outputs_file, "--json", "report", JOB, "--output", str(html), "--trace", str(tsv))
    assert res.exit_code == 0, res.stderr
    doc = json.loads(res.stdout)
    sizes = _results_tar_sizes(pack_job)
    assert doc["summary"]["bytesOut"] >= sum(sizes.values()) > 0
    rows = [line.split("\t") for line in tsv.read_text(encoding="utf-8").splitlines()]
    head, body = rows[0], {r[0]: dict(zip(rows[0], r, strict=True)) for r in rows[1:]}
    assert "bytesOut" in head
    assert {p: body[p]["input"] for p in sizes} == {p: pack_job.label(p) for p in sizes}
    assert {p: int(body[p]["bytesOut"]) for p in sizes} == sizes
    page = html.read_text(encoding="utf-8")
    assert all(pack_job.label(p) in page for p in sizes)


@pytest.mark.parametrize("bound", ["MAX_PACK_TARS", "MAX_PACK_TAR_BYTES"])
def test_over_the_bound_a_failed_pack_s_tar_is_not_read_and_status_says_so(
    pack_job: PackJob,
    monkeypatch: pytest.MonkeyPatch,
    bound: str,
    counted_outputs: tuple[Path, FaultProxy],
) -> None:
    """One tar, or p1's bytes (p1 is read first): p2's results tar is left unread, never requested."""
    value = 1 if bound == "MAX_PACK_TARS" else _results_tar_sizes(pack_job)["p1"]
    monkeypatch.setattr(execution, bound, value)
    outputs_file, proxy = counted_outputs
    res = invoke(outputs_file, "--json", "status", JOB)
    assert res.exit_code == 0, res.stderr
    reads = {p: proxy.count("GET", f"/{results_tar_blob(JOB, p)}") for p in ("p1", "p2")}
    assert reads == {"p1": 1, "p2": 0}
    files = {f["input"]: f["status"] for f in json.loads(res.stdout)["files"]}
    p2 = {t.input for t in pack_job.manifest.tasks if pack_job.manifest.task_of[t.task_id] == "p2"}
    assert files == {rel: "failed" if rel in HOSTILE or rel in p2 else "done" for rel in FILES}
    said = " ".join(res.stderr.split())
    assert "results.tar read for 1 of 2 failed packs" in said and "p2" in said, said


def test_retry_of_the_mended_packs_gives_every_file_done(pack_job: PackJob, tmp_path: Path) -> None:
    """`runner retry` reruns each failed pack whole; its new results.tar replaces the old one,
    and status reads that one. Last in this file: it changes the job the others look at."""
    storage = Storage(pack_job.target)
    for pack, data in pack_job.originals.items():
        storage.upload_bytes(pack_job.target.input_container, input_tar_blob(JOB, pack), data)
    again = invoke(pack_job.outputs_file, "--json", "retry", JOB, "--dest", str(tmp_path), "--timeout", "60")
    assert again.exit_code == 0, again.stderr
    assert {f["status"] for f in json.loads(again.stdout)["files"]} == {"succeeded"}
    res = invoke(pack_job.outputs_file, "--json", "status", JOB)
    doc = json.loads(res.stdout)
    assert {f["input"]: (f["status"], f["error"]) for f in doc["files"]} == {
        rel: ("done", None) for rel in FILES
    }
    sizes = _results_tar_sizes(pack_job)
    assert {t["id"]: t["bytesOut"] for t in doc["tasks"] if t["id"] in sizes} == sizes
