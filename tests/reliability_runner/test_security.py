"""Security of what the runner hands out and prints (issue 7, "Security").

* SAS scopes are probed for real against Azurite with ``azure-storage-blob``, using
  the exact URLs the runner put in the tasks (read back from Batch with ``get_task``).
* No key and no SAS signature in task command lines and settings, in the runner's
  output at every verbosity (success and error paths), in ``runner outputs`` without
  ``--show-secrets``, nor in files under ``RUNNER_HOME`` (the outputs file aside,
  which is mode 0600).
"""

from __future__ import annotations

import dataclasses
import json
import stat
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

import pytest
from azure.core.exceptions import HttpResponseError
from azure.storage.blob import BlobClient, ContainerClient
from typer.testing import CliRunner

from runner import manifest as mf
from runner.batch import Batch
from runner.cli import app
from runner.outputs import Outputs, load_file
from runner.storage import Storage
from runner.tasks import OutputFileSpec, ResourceFileSpec, TaskSpec
from tests.e2e.test_submit import write_corpus
from tests.reliability_runner.conftest import RUNNER, env, leaks, run, sdk

TIMEOUT = 900  # --timeout of the jobs here: the SAS expiry is derived from it
#: The most a SAS may outlive the job's timeout (runner/submit.py documents a 1 hour margin).
MAX_MARGIN = timedelta(hours=1)


@dataclasses.dataclass(frozen=True)
class Submitted:
    job_id: str
    started: datetime
    finished: datetime
    runs: dict[str, subprocess.CompletedProcess[str]]


@pytest.fixture(scope="module")
def job(tmp_path_factory: pytest.TempPathFactory, fast_pool: Path) -> Submitted:
    """One word-count job (with the merge) submitted at default verbosity, then the other
    commands of its life cycle at every verbosity."""
    root = tmp_path_factory.mktemp("sec")
    write_corpus(root / "in", {"a.txt": 40, "b.txt": 30, "c/d.txt": 20})
    job_id = "rel-sec"
    started = datetime.now(timezone.utc)
    runs = {
        "submit": run(
            fast_pool,
            "submit",
            str(root / "in"),
            "--job-id",
            job_id,
            "--timeout",
            str(TIMEOUT),
            "--dest",
            str(root / "r"),
            "--pack",
            "none",  # the tests read task "1" (file 1's own task)
        ),
    }
    finished = datetime.now(timezone.utc)
    assert runs["submit"].returncode == 0, runs["submit"].stderr
    for flag in ("-q", "-v", "-vv"):
        runs[f"submit {flag}"] = run(
            fast_pool, flag, "submit", str(root / "in"), "--job-id", f"{job_id}{flag}", "--dest",
            str(root / f"r{flag}"), "--timeout", str(TIMEOUT), "--pack", "none",
        )  # fmt: skip
        runs[f"status {flag}"] = run(fast_pool, flag, "--json", "status", job_id)
        runs[f"results {flag}"] = run(
            fast_pool, flag, "--json", "results", job_id, "--dest", str(root / "again")
        )
        runs[f"logs {flag}"] = run(fast_pool, flag, "logs", job_id, "merge", "--stderr")
    for name, res in runs.items():
        assert res.returncode == 0, (name, res.stderr)
    return Submitted(job_id, started, finished, runs)


def _sas(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def _with_path(url: str, container: str, blob: str) -> str:
    """The same SAS on another blob of the same account."""
    parts = urlsplit(url)
    account = parts.path.strip("/").split("/")[0]
    return urlunsplit(parts._replace(path=f"/{account}/{container}/{blob}"))


def _status(call: Any) -> int:
    try:
        call()
    except HttpResponseError as exc:
        return int(exc.status_code or 0)
    return 200


def _task(out: Outputs, job_id: str, task_id: str) -> Any:
    return sdk(out).get_task(job_id, task_id)


def test_output_sas_can_write_but_not_read_list_or_delete(job: Submitted, fast_pool: Path) -> None:
    out = load_file(fast_pool)
    task = _task(out, job.job_id, "1")
    urls = {f.destination.container.container_url for f in task.output_files}
    assert len(urls) == 1
    url = urls.pop()
    assert _sas(url)["sp"] in ("cw", "wc")
    container = ContainerClient.from_container_url(url)
    existing = [b.name for b in Storage(out).list_blobs(out.output_container, f"{job.job_id}/1/")]
    assert existing, "the task uploaded its outputs with this SAS"
    assert _status(lambda: list(container.list_blobs())) == 403
    assert _status(lambda: container.get_blob_client(existing[0]).download_blob().readall()) == 403
    assert _status(lambda: container.get_blob_client(existing[0]).get_blob_properties()) == 403
    assert _status(lambda: container.get_blob_client(existing[0]).delete_blob()) == 403
    assert _status(lambda: container.get_container_properties()) == 403
    # The SAS is valid: it may create a blob (what outputFiles needs). Remove it with the key.
    probe = f"{job.job_id}/probe-{time.time_ns()}"
    assert _status(lambda: container.get_blob_client(probe).upload_blob(b"x")) == 200
    Storage(out).delete_prefix(out.output_container, probe)
    assert existing == [b.name for b in Storage(out).list_blobs(out.output_container, f"{job.job_id}/1/")]


def test_input_sas_reads_only_its_own_blob_and_cannot_write(job: Submitted, fast_pool: Path) -> None:
    out = load_file(fast_pool)
    task = _task(out, job.job_id, "1")
    inputs = [r.http_url for r in task.resource_files if r.http_url and "/inputs/" in r.http_url]
    assert len(inputs) == 1
    url = inputs[0]
    assert _sas(url)["sp"] == "r" and _sas(url)["sr"] == "b"
    own = BlobClient.from_blob_url(url)
    assert own.download_blob().readall() == Storage(out).download_bytes(
        out.input_container, f"{job.job_id}/inputs/a.txt"
    )
    assert _status(lambda: own.upload_blob(b"overwritten", overwrite=True)) == 403
    assert _status(lambda: own.delete_blob()) == 403
    for other in (
        f"{job.job_id}/inputs/b.txt",
        f"{job.job_id}/manifest.json",
        f"{job.job_id}-q/inputs/a.txt",
    ):
        client = BlobClient.from_blob_url(_with_path(url, out.input_container, other))
        assert _status(lambda c=client: c.download_blob().readall()) == 403, other
    assert _status(lambda: ContainerClient.from_container_url(
        _with_path(url, out.input_container, "").rstrip("/")).list_blobs().next()) == 403  # fmt: skip
    # The node code's SAS is read-only and scoped the same way.
    code = [r.http_url for r in task.resource_files if r.http_url and "nodetask" in r.http_url]
    assert len(code) == 1 and _sas(code[0])["sp"] == "r" and _sas(code[0])["sr"] == "b"
    assert _status(lambda: BlobClient.from_blob_url(code[0]).upload_blob(b"evil", overwrite=True)) == 403


def test_merge_sas_reaches_only_this_jobs_outputs(job: Submitted, fast_pool: Path) -> None:
    out = load_file(fast_pool)
    merge = _task(out, job.job_id, "merge")
    assert not [r for r in merge.resource_files if r.storage_container_url], "no container SAS for the merge"
    counts = [r.http_url for r in merge.resource_files if r.http_url and "_counts.json" in r.http_url]
    assert counts, "the merge reads the per-file counts files"
    for url in counts:
        sas = _sas(url)
        assert sas["sp"] == "r" and sas["sr"] == "b"
        assert urlsplit(url).path.startswith(
            f"/{out.storage_account_name}/{out.output_container}/{job.job_id}/"
        )
    # The same signature used for another blob (another job's prefix) or for listing is refused.
    parts = urlsplit(counts[0])
    other = urlunsplit(parts._replace(path=parts.path.replace(f"/{job.job_id}/", f"/{job.job_id}-q/", 1)))
    assert _status(lambda: BlobClient.from_blob_url(other).download_blob().readall()) == 403
    container_url = urlunsplit(parts._replace(path=parts.path.rsplit("/", 3)[0]))
    container = ContainerClient.from_container_url(container_url)
    assert _status(lambda: [b.name for b in container.list_blobs()]) == 403


def test_every_sas_expires_after_the_timeout_plus_the_margin_only(job: Submitted, fast_pool: Path) -> None:
    out = load_file(fast_pool)
    urls: list[str | None] = []
    for task in sdk(out).list_tasks(job.job_id):
        urls += [r.http_url or r.storage_container_url for r in task.resource_files or []]
        urls += [
            f.destination.container.container_url for f in task.output_files or [] if f.destination.container
        ]
    assert len(urls) >= 3 * 3
    timeout = timedelta(seconds=TIMEOUT)
    for url in urls:
        assert url is not None
        sas = _sas(url)
        expiry = datetime.fromisoformat(sas["se"].replace("Z", "+00:00"))
        start = datetime.fromisoformat(sas["st"].replace("Z", "+00:00"))
        where = url.split("?")[0]
        # Long enough for the tasks to run within --timeout, and no more than the margin beyond it
        # (second precision in the token).
        assert job.started + timeout - timedelta(seconds=1) <= expiry, where
        assert expiry <= job.finished + timeout + MAX_MARGIN, where
        assert start <= job.started, where


def test_no_secret_in_task_definitions_other_than_sas_urls(job: Submitted, fast_pool: Path) -> None:
    out = load_file(fast_pool)
    tasks = list(sdk(out).list_tasks(job.job_id))
    assert len(tasks) == 4
    for task in tasks:
        assert not leaks(task.command_line, out), task.id
        data = task.as_dict()
        for key in ("resourceFiles", "outputFiles", "resource_files", "output_files"):
            data.pop(key, None)
        assert not leaks(json.dumps(data, default=str), out), task.id


def test_no_secret_in_runner_output_at_any_verbosity(job: Submitted, fast_pool: Path) -> None:
    out = load_file(fast_pool)
    for name, res in job.runs.items():
        assert not leaks(res.stdout + res.stderr, out), name
    # The verbosity really changed what was printed (so every level was exercised).
    sizes = [len(job.runs[f"submit {flag}"].stderr) for flag in ("-q", "-v", "-vv")]
    assert sizes[0] < sizes[1] < sizes[2], sizes


def test_no_secret_in_error_messages_and_tracebacks(tmp_path: Path, fast_pool: Path, job: Submitted) -> None:
    """Error paths: results into a path that is a file (an OSError deep in a download), and
    a task whose input SAS has expired (the node's failure message comes back)."""
    out = load_file(fast_pool)
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where a directory should be")
    for flag in ("-q", "-vv"):
        res = run(fast_pool, flag, "--json", "results", job.job_id, "--dest", str(blocker))
        assert res.returncode != 0
        assert not leaks(res.stdout + res.stderr, out), res.stderr
    # An expired SAS: Azurite refuses it, the task fails, the runner reports it clearly.
    storage = Storage(out)
    job_id = "rel-expired-sas"
    blob = mf.input_blob(job_id, "late.txt")
    storage.upload_bytes(out.input_container, blob, b"too late")
    expired = storage.blob_read_url(
        out.input_container, blob, datetime.now(timezone.utc) - timedelta(minutes=1)
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(expired, timeout=10)
    assert refused.value.code == 403
    manifest = mf.Manifest(job_id, mf.now_iso(), 3, False, "cat {input}", 0,
                           (mf.ManifestTask("1", "late.txt", blob, "late.txt", 8),))  # fmt: skip
    mf.save(storage, out.input_container, manifest)
    sink = storage.container_write_url(out.output_container, datetime.now(timezone.utc) + timedelta(hours=1))
    batch = Batch(out)
    batch.ensure_job(job_id, out.pool_id, uses_task_dependencies=False)
    batch.add_tasks(job_id, [TaskSpec("1", "late.txt", "/bin/cat in/late.txt",
                                      (ResourceFileSpec("in/late.txt", http_url=expired),),
                                      (OutputFileSpec("out/**/*", sink, f"{job_id}/1"),))])  # fmt: skip
    deadline = time.monotonic() + 60
    while batch.get_task(job_id, "1").state.value != "completed":
        assert time.monotonic() < deadline
        time.sleep(0.3)
    for flag in ("-q", "", "-vv"):
        res = run(
            fast_pool, *([flag] if flag else []), "--json", "results", job_id, "--dest", str(tmp_path / "x")
        )
        assert res.returncode == 10, res.stderr
        failure = json.loads(res.stdout)["failures"][0]
        assert failure["category"] == "usererror" or failure["code"] == "ResourceContainerAccessDenied", (
            failure
        )
        assert "ResourceContainerAccessDenied" in res.stderr
        assert not leaks(res.stdout + res.stderr, out), res.stderr


def test_runner_outputs_masks_secrets_unless_asked(fast_pool: Path) -> None:
    out = load_file(fast_pool)
    for args in (["outputs"], ["outputs", "--json"], ["--json", "outputs"], ["-vv", "outputs"]):
        res = CliRunner().invoke(app, ["--outputs", str(fast_pool), *args], catch_exceptions=False)
        assert res.exit_code == 0, res.stderr
        assert not leaks(res.stdout + res.stderr, out), args
        assert "********" in res.stdout
    shown = CliRunner().invoke(app, ["--outputs", str(fast_pool), "outputs", "--json", "--show-secrets"])
    assert shown.exit_code == 0
    assert json.loads(shown.stdout)["batchAccountKey"] == out.batch_account_key
    assert json.loads(shown.stdout)["storageAccountKey"] == out.storage_account_key


@dataclasses.dataclass(frozen=True)
class HomeScan:
    outputs_file: Path
    outputs: Outputs
    output: str
    #: relative path -> what leaked, for every file other than the outputs file
    found: dict[str, list[str]]


@pytest.fixture(scope="module")
def home_scan(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HomeScan]:
    """A submit on the local target under a fresh RUNNER_HOME (which starts the services),
    then every file under RUNNER_HOME read back."""
    tmp = tmp_path_factory.mktemp("home")
    home = tmp / "rh"
    write_corpus(tmp / "in", {"a.txt": 30, "b.txt": 10})
    try:
        res = subprocess.run(
            [str(RUNNER), "-vv", "submit", str(tmp / "in"), "--dest", str(tmp / "r")],
            capture_output=True, text=True, env=env(RUNNER_HOME=str(home)), timeout=240, cwd=tmp,
        )  # fmt: skip
        assert res.returncode == 0, res.stderr
        outputs_file = home / "local" / "outputs.json"
        out = load_file(outputs_file)
        found: dict[str, list[str]] = {}
        for path in home.rglob("*"):
            if path.is_file() and path != outputs_file:
                bad = leaks(path.read_bytes().decode("utf-8", errors="replace"), out)
                if bad:
                    found[path.relative_to(home).as_posix()] = bad[:3]
        yield HomeScan(outputs_file, out, res.stdout + res.stderr, found)
    finally:
        CliRunner().invoke(app, ["local", "down"], env={"RUNNER_HOME": str(home)}, catch_exceptions=False)


#: The Batch service's own store: it holds the tasks as submitted (their resource and output
#: file URLs carry SAS, as on Azure, where `get_task` returns them too). Allowed only there,
#: in a directory no other user can read.
SERVICE_STATE = "local/localbatch/state.db"
AZURITE_LOG = "local/azurite/azurite.log"


def test_outputs_file_is_0600_and_no_secret_under_runner_home(home_scan: HomeScan) -> None:
    assert stat.S_IMODE(home_scan.outputs_file.stat().st_mode) == 0o600
    assert not leaks(home_scan.output, home_scan.outputs)
    state_dir = home_scan.outputs_file.parent / "localbatch"
    assert stat.S_IMODE(state_dir.stat().st_mode) == 0o700
    others = {
        k: v for k, v in home_scan.found.items() if not k.startswith(SERVICE_STATE) and k != AZURITE_LOG
    }
    assert others == {}


def test_azurite_log_under_runner_home_holds_no_sas(home_scan: HomeScan) -> None:
    assert AZURITE_LOG not in home_scan.found
