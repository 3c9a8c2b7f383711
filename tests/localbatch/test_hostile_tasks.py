"""A hostile task cannot hurt the service (issue 12 §5), driven through the official SDK.

* Output-file patterns never follow a symlink out of the task directory and
  never loop: symlinked directories are never descended into; a symlink to a
  regular file inside the task directory is uploaded once, under its own name;
  a symlink that leads out of the task directory is skipped.
* Any task can be terminated, even while its output files upload (to a
  server that accepts connections and never answers), and SIGTERM stops the
  server within seconds in the same situation.
* No SAS signature or key reaches localbatch's log, at any level, while
  Azurite is down (every transfer fails and is retried).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from azure.batch import BatchClient
from azure.batch import models as bm
from azure.batch.models._models import BatchJobTerminateOptions
from azure.storage.blob import BlobSasPermissions, BlobServiceClient, generate_blob_sas

from tests.conftest import Azurite, LocalBatch, start_azurite, start_localbatch
from tests.localbatch.conftest import (
    batch_client,
    container_sas_url,
    new_job,
    unique,
    wait_for,
    wait_nodes_idle,
    wait_task_completed,
)


def _output(container_url: str, pattern: str, path: str | None = None) -> bm.OutputFile:
    return bm.OutputFile(
        file_pattern=pattern,
        destination=bm.OutputFileDestination(
            container=bm.OutputFileBlobContainerDestination(container_url=container_url, path=path)
        ),
        upload_options=bm.OutputFileUploadConfiguration(upload_condition="taskCompletion"),
    )


class BlackHole:
    """A TCP server on 127.0.0.1 that accepts connections and never answers (bounded: 64 connections)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self._held: list[socket.socket] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while len(self._held) < 64:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self._held.append(conn)
            self.accepted += 1

    def container_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/devstoreaccount1/hole?sv=2021-08-06&sr=c&sp=cw&sig=bh"

    def close(self) -> None:
        self.sock.close()
        for conn in self._held:
            conn.close()


@pytest.fixture
def black_hole() -> Iterator[BlackHole]:
    hole = BlackHole()
    yield hole
    hole.close()


def _blob_names(blobs: BlobServiceClient, container: str) -> list[str]:
    return sorted(b.name for b in blobs.get_container_client(container).list_blobs())


_HOSTILE_SCRIPT = (
    "ln -s / root; ln -s . self; ln -s /etc/passwd passwd; ln -s .. up; "
    "echo data > copy; ln -s copy alias; mkdir sub; echo s > sub/s.txt; ln -s ../sub sub/loop; "
    "ln -s sub subdir"
)


def test_output_patterns_never_follow_symlinks_out_or_loop(
    client: BatchClient, shared_pool: str, azurite: Azurite, blobs: BlobServiceClient
) -> None:
    container = unique("hostile")
    blobs.create_container(container)
    url = container_sas_url(azurite, container, write=True, create=True)
    job_id = new_job(client, shared_pool)
    client.create_task(
        job_id,
        bm.BatchTaskCreateOptions(
            id="links",
            command_line=f"/bin/sh -c '{_HOSTILE_SCRIPT}'",
            output_files=[
                _output(url, "**/*", "all"),
                _output(url, "root/etc/passwd", "static-escape"),
                _output(url, "passwd", "static-link-out"),
                _output(url, "self/self/copy", "static-loop"),
                _output(url, "up/**/*", "through-up"),
                _output(url, "alias", "static-alias"),
            ],
        ),
    )
    task = wait_task_completed(client, job_id, "links", timeout=60)
    assert task.execution_info.result == "success", task.execution_info.failure_info
    # One copy of each regular file; the in-directory file symlink once under its own name;
    # nothing through `root`, `passwd`, `self`, `up`, `subdir` or `sub/loop`.
    assert _blob_names(blobs, container) == ["all/alias", "all/copy", "all/sub/s.txt", "static-alias"]
    data = blobs.get_blob_client(container, "all/alias").download_blob().readall()
    assert data == b"data\n"


def test_terminate_ends_a_task_while_its_outputs_upload(
    client: BatchClient, shared_pool: str, black_hole: BlackHole
) -> None:
    job_id = new_job(client, shared_pool)
    for tid in ("by-task", "by-job"):
        client.create_task(
            job_id,
            bm.BatchTaskCreateOptions(
                id=tid,
                command_line="/bin/sh -c 'echo x > out.txt'",
                output_files=[_output(black_hole.container_url(), "out.txt")],
            ),
        )
    hole_file = f"http://127.0.0.1:{black_hole.port}/devstoreaccount1/hole/in.txt?sv=x&sig=bh"
    client.create_task(
        job_id,
        bm.BatchTaskCreateOptions(
            id="in-download",
            command_line="/bin/true",
            resource_files=[bm.ResourceFile(http_url=hole_file, file_path="in.txt")],
        ),
    )
    # All three reached the black hole: two tasks past their process, uploading; one downloading.
    wait_for(lambda: black_hole.accepted >= 3, timeout=30)
    client.terminate_task(job_id, "by-task")
    client.terminate_task(job_id, "in-download")
    ended = wait_task_completed(client, job_id, "by-task", timeout=10)
    assert ended.execution_info.failure_info.code == "TaskEnded"
    assert ended.execution_info.exit_code == 0  # the process itself succeeded
    never_ran = wait_task_completed(client, job_id, "in-download", timeout=10)
    assert never_ran.execution_info.failure_info.code == "TaskEnded"
    assert never_ran.execution_info.exit_code is None
    # The job's terminate polls until the job completed, which needs its uploading task ended.
    poller = client.begin_terminate_job(
        job_id, BatchJobTerminateOptions(termination_reason="UserTerminate"), polling_interval=0.1
    )
    poller.result(timeout=10)
    assert client.get_job(job_id).state == "completed"
    assert client.get_task(job_id, "by-job").execution_info.failure_info.code == "TaskEnded"


def test_sigterm_stops_the_server_while_a_task_uploads(
    tmp_path: Path, azurite: Azurite, black_hole: BlackHole
) -> None:
    server = start_localbatch(tmp_path / "lb", azurite)
    try:
        sdk = batch_client(server)
        pool_id = unique("sigterm")
        sdk.create_pool(bm.BatchPoolCreateOptions(id=pool_id, vm_size="x", target_dedicated_nodes=1))
        wait_nodes_idle(sdk, pool_id, 1)
        job_id = new_job(sdk, pool_id)
        sdk.create_task(
            job_id,
            bm.BatchTaskCreateOptions(
                id="t",
                command_line="/bin/sh -c 'echo x > out.txt'",
                output_files=[_output(black_hole.container_url(), "out.txt")],
            ),
        )
        wait_for(lambda: black_hole.accepted >= 1, timeout=30)
        os.kill(server.process.pid, signal.SIGTERM)
        popen = server.process.popen
        assert popen is not None
        try:
            code = popen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pytest.fail("localbatch did not stop within 10 s of SIGTERM")
        assert code == 0
    finally:
        server.process.kill()


def _signatures(*urls: str) -> list[str]:
    return [parse_qs(urlsplit(u).query)["sig"][0] for u in urls]


def test_no_secret_in_the_log_while_azurite_is_down(tmp_path: Path) -> None:
    storage = start_azurite(tmp_path / "azurite")
    server: LocalBatch | None = None
    try:
        server = start_localbatch(tmp_path / "lb", storage, extra_args=["--log-level", "DEBUG"])
        sdk = batch_client(server)
        blobs = BlobServiceClient.from_connection_string(storage.connection_string)
        blobs.create_container("inputs")
        blobs.get_blob_client("inputs", "in.txt").upload_blob(b"hello\n")
        blob_sas = generate_blob_sas(
            storage.account_name,
            "inputs",
            "in.txt",
            account_key=storage.account_key,
            permission=BlobSasPermissions(read=True),
            expiry=datetime.now(timezone.utc) + timedelta(hours=1),
        )
        blob_url = f"{storage.blob_endpoint}/inputs/in.txt?{blob_sas}"
        out_url = container_sas_url(storage, "inputs", write=True, create=True)
        list_url = container_sas_url(storage, "inputs", read=True, list=True)
        pool_id = unique("redact")
        sdk.create_pool(
            bm.BatchPoolCreateOptions(
                id=pool_id, vm_size="x", target_dedicated_nodes=1, task_slots_per_node=4
            )
        )
        wait_nodes_idle(sdk, pool_id, 1)
        storage.process.stop()
        job_id = new_job(sdk, pool_id)
        tasks = {
            "http": [bm.ResourceFile(http_url=blob_url, file_path="in.txt")],
            "container": [bm.ResourceFile(storage_container_url=list_url)],
            "auto": [bm.ResourceFile(auto_storage_container_name="inputs")],
        }
        for tid, files in tasks.items():
            sdk.create_task(
                job_id, bm.BatchTaskCreateOptions(id=tid, command_line="/bin/true", resource_files=files)
            )
        sdk.create_task(
            job_id,
            bm.BatchTaskCreateOptions(
                id="upload",
                command_line="/bin/sh -c 'echo x > o.txt'",
                output_files=[_output(out_url, "o.txt")],
            ),
        )
        for tid in (*tasks, "upload"):
            task = wait_task_completed(sdk, job_id, tid, timeout=90)
            assert task.execution_info.result == "failure", tid
    finally:
        if server is not None:
            server.process.stop()
        storage.process.stop()
    log_text = server.process.log_path.read_text(errors="replace")
    assert "in.txt" in log_text  # the failing transfers were logged (the path that used to leak)
    for secret in (*_signatures(blob_url, out_url, list_url), storage.account_key, server.account_key):
        assert secret not in log_text
        assert secret.replace("/", "%2F").replace("+", "%2B").replace("=", "%3D") not in log_text
    assert "sig=" not in log_text.replace("sig=REDACTED", "")
    assert "AccountKey=" not in log_text.replace("AccountKey=REDACTED", "")


def test_outputs_small_and_above_the_single_put_limit(
    client: BatchClient, shared_pool: str, azurite: Azurite, blobs: BlobServiceClient
) -> None:
    """Small files go as one Put Blob, a file above 64 MiB through the SDK's block upload: same result."""
    from localbatch.storage import SINGLE_PUT_BYTES

    container = unique("sizes")
    blobs.create_container(container)
    url = container_sas_url(azurite, container, write=True, create=True)
    job_id = new_job(client, shared_pool)
    big = SINGLE_PUT_BYTES + 1
    client.create_task(
        job_id,
        bm.BatchTaskCreateOptions(
            id="sizes",
            command_line=f"/bin/sh -c 'head -c {big} /dev/zero > big.bin; printf small > \"a b+c.txt\"'",
            output_files=[_output(url, "*.bin", "x"), _output(url, "a b+c.txt")],
        ),
    )
    task = wait_task_completed(client, job_id, "sizes", timeout=120)
    assert task.execution_info.result == "success", task.execution_info.failure_info
    props = {b.name: b.size for b in blobs.get_container_client(container).list_blobs()}
    assert props == {"x/big.bin": big, "a b+c.txt": 5}
