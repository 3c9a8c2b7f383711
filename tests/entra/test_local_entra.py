"""The local target in Entra ID mode, end to end through the real CLI (subprocesses).

One target per module: ``runner local up --auth entra`` under a temporary
RUNNER_HOME, with tokens that live 15 s so that every job here outlives
several of them. The variables that steer identities (``IDENTITY_*``,
``REQUESTS_CA_BUNDLE``, …) are set only on the runner processes started here.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from azure.batch import BatchClient
from azure.core.credentials import AzureNamedKeyCredential
from azure.core.exceptions import HttpResponseError
from azure.storage.blob import BlobServiceClient

from runner import local_procs, services, targets
from runner.errors import AuthModeMismatch
from runner.outputs import Outputs, load_file
from runner.token_endpoint import POOL_IDENTITY_RESOURCE_ID, POOL_OBJECT_ID, make_token
from tests.entra.helpers import StaticToken, batch_token
from tests.entra.recording_proxy import RecordingProxy

PROJECT = Path(__file__).resolve().parents[2]
SAMPLES = PROJECT / "samples"
TOKEN_LIFETIME = 15
#: Variables that would steer azure-identity or TLS trust: never inherited by the runners here.
_STEERING = re.compile(r"^(IDENTITY_|AZURE_|MSI_|IMDS_|REQUESTS_CA_BUNDLE$|SSL_CERT_FILE$|RUNNER_)")


def runner_env(home: Path, **extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not _STEERING.match(k)}
    return {**base, "RUNNER_HOME": str(home), "NO_COLOR": "1", "COLUMNS": "400", **extra}


def run(home: Path, *args: str, timeout: float = 240, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from runner.cli import main; main()", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=runner_env(home, **extra),
        cwd=home.parent,
    )


@dataclass(frozen=True)
class EntraHome:
    home: Path
    outputs: Outputs
    ca_file: Path
    secrets: dict[str, str]

    @property
    def local(self) -> Path:
        return self.home / "local"

    def identity_env(self) -> dict[str, str]:
        state = json.loads((self.local / "state.json").read_text())
        return {
            "IDENTITY_ENDPOINT": state["identity"]["url"],
            "IDENTITY_HEADER": self.secrets["identityHeader"],
        }

    def batch(self) -> BatchClient:
        """A Batch client of the test's own, with a token it made (the local services check claims only)."""
        return BatchClient(self.outputs.batch_account_url, batch_token(), connection_verify=str(self.ca_file))


@pytest.fixture(scope="module")
def entra(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EntraHome]:
    home = tmp_path_factory.mktemp("entra") / "rh"
    up = run(home, "local", "up", "--auth", "entra", RUNNER_LOCAL_TOKEN_LIFETIME=str(TOKEN_LIFETIME))
    try:
        assert up.returncode == 0, up.stderr
        local = home / "local"
        yield EntraHome(
            home,
            load_file(local / "outputs.json"),
            local / "tls" / "ca.pem",
            json.loads((local / "secrets.json").read_text()),
        )
    finally:
        down = run(home, "local", "down")
        assert down.returncode == 0, down.stderr
        for name in ("azurite", "identity", "localbatch"):
            assert local_procs.find(name, home.resolve() / "local" / name) == [], name


def _words(corpus_output: str) -> list[str]:
    return [line for line in corpus_output.splitlines() if re.fullmatch(r"\S+:\t\d+", line)]


def _task_files(client: BatchClient, job_id: str) -> list[tuple[str, str | None]]:
    """(URL, identityReference.resourceId) of every resource file and output destination of a job."""
    files: list[tuple[str, str | None]] = []
    for task in client.list_tasks(job_id):
        for rf in task.resource_files or []:
            ref = rf.identity_reference
            files.append((rf.http_url or rf.storage_container_url or "", ref.resource_id if ref else None))
        for of in task.output_files or []:
            dest = of.destination.container
            ref = dest.identity_reference
            files.append((dest.container_url, ref.resource_id if ref else None))
    return files


def _pool_identity_tokens(entra: EntraHome) -> int:
    return (entra.local / "identity" / "token-endpoint.log").read_text().count("as the pool identity")


def test_submit_through_the_pool_identity_has_no_sas_anywhere(
    entra: EntraHome, tmp_path: Path, outputs_file: Path
) -> None:
    """The local Entra ID target has a pool identity: tasks get plain URLs and its identityReference,
    the node fetches and sends their files with its tokens, and no SAS exists in the job or a log."""
    assert entra.outputs.pool_identity_resource_id == POOL_IDENTITY_RESOURCE_ID
    pool = entra.batch().get_pool(entra.outputs.pool_id)
    assert [i.resource_id for i in pool.identity.user_assigned_identities] == [POOL_IDENTITY_RESOURCE_ID]
    tokens_before = _pool_identity_tokens(entra)
    res = run(
        entra.home, "-vv", "--auth", "entra", "--json", "submit", str(SAMPLES), "--dest", str(tmp_path / "r")
    )
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    merged = (tmp_path / "r" / "corpus_OUTPUT.txt").read_text()
    assert "the" in merged and len(list((tmp_path / "r" / "files").rglob("*_OUTPUT.txt"))) == 4
    keys = run(
        entra.home, "--outputs", str(outputs_file), "submit", str(SAMPLES), "--dest", str(tmp_path / "k")
    )
    assert keys.returncode == 0, keys.stderr
    # The same words and counts as with keys (the footer names the node and the job).
    assert _words((tmp_path / "k" / "corpus_OUTPUT.txt").read_text()) == _words(merged)
    assert len(_words(merged)) == 3
    files = _task_files(entra.batch(), doc["jobId"])
    assert len(files) >= 6  # the pack's input tar + node code, the merge's results tar + node code, outputs
    for url, identity in files:
        assert identity == POOL_IDENTITY_RESOURCE_ID and urlsplit(url).query == "", urlsplit(url).path
    assert _pool_identity_tokens(entra) > tokens_before  # the node really used the identity's tokens
    assert "sig=" not in res.stdout + res.stderr and "does not have the identity" not in res.stderr
    for log in entra.local.rglob("*.log"):
        assert "sig=" not in log.read_text(errors="replace"), log


def test_an_identity_the_pool_lacks_fails_the_tasks_with_the_resource_file_failure(
    entra: EntraHome, tmp_path: Path
) -> None:
    """The mutation check: the outputs name an identity the pool does not have (as when it was removed
    from the pool): the task fails before it runs, and the user is told which identity and what to do."""
    gone = POOL_IDENTITY_RESOURCE_ID.replace("/pool-identity", "/pool-identity-removed")
    data = {**json.loads((entra.local / "outputs.json").read_text()), "poolIdentityResourceId": gone}
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps(data))
    res = run(
        entra.home,
        *("--outputs", str(outputs), "--auth", "entra", "submit", str(SAMPLES / "alpha.txt")),
        *("--no-aggregate", "--dest", str(tmp_path / "r")),
        REQUESTS_CA_BUNDLE=str(entra.ca_file),
        **entra.identity_env(),
    )
    assert res.returncode == 10, res.stderr
    said = " ".join((res.stdout + res.stderr).split())
    assert "ResourceContainerAccessDenied" in said and "pool-identity-removed" in said, said
    assert "identity.userAssignedIdentities" in said and "Traceback" not in said, said
    assert f"pool {entra.outputs.pool_id} does not have the identity {gone}" in said, said  # warned first


def test_no_shared_key_reaches_either_service(entra: EntraHome) -> None:
    """Azurite's account key is one no client knows, and localbatch is Entra-only: any SharedKey
    request (or account-key SAS) would fail, so the successful submits here used tokens only."""
    with pytest.raises(HttpResponseError) as batch_refusal:
        client = BatchClient(
            entra.outputs.batch_account_url,
            AzureNamedKeyCredential("localbatch", services.AZURITE_ACCOUNT_KEY),
            connection_verify=str(entra.ca_file),
        )
        list(client.list_pools())
    assert batch_refusal.value.status_code == 401
    blobs = BlobServiceClient(
        entra.outputs.storage_blob_endpoint,
        credential={
            "account_name": services.AZURITE_ACCOUNT_NAME,
            "account_key": services.AZURITE_ACCOUNT_KEY,
        },
        connection_verify=str(entra.ca_file),
    )
    with pytest.raises(HttpResponseError) as storage_refusal:
        list(blobs.list_containers())
    assert storage_refusal.value.status_code in (400, 403)  # InvalidAuthenticationInfo / AuthenticationFailed


def test_the_outputs_file_holds_no_key_and_nothing_leaks(entra: EntraHome) -> None:
    data = json.loads((entra.local / "outputs.json").read_text())
    assert "batchAccountKey" not in data and "storageAccountKey" not in data
    assert data["batchAccountUrl"].startswith("https://") and data["storageBlobEndpoint"].startswith(
        "https://"
    )
    secrets = [*entra.secrets.values(), services.AZURITE_ACCOUNT_KEY]
    text = (entra.local / "outputs.json").read_text()
    assert not any(s in text for s in secrets)
    for log in entra.local.rglob("*.log"):
        content = log.read_text(errors="replace")
        assert not any(s in content for s in secrets), log
        assert "sig=" not in content and "eyJ" not in content, log  # no SAS, no token
    state = json.loads((entra.local / "state.json").read_text())
    for name in ("azurite", "identity", "localbatch"):
        cmdline = Path(f"/proc/{state[name]['pid']}/cmdline").read_bytes().decode(errors="replace")
        assert not any(s in cmdline for s in secrets), name


def test_tokens_that_expire_during_a_job_are_refreshed(entra: EntraHome, tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.txt").write_text("one two two\n")
    issued_before = _tokens_issued(entra)
    started = time.monotonic()
    res = run(
        entra.home,
        "--auth",
        "entra",
        "submit",
        str(tmp_path / "in"),
        "--no-aggregate",
        "--dest",
        str(tmp_path / "r"),
        "--command",
        f"/bin/sh -c 'sleep {TOKEN_LIFETIME + 5}; cp {{input}} {{output_dir}}/copy.txt'",
    )
    assert res.returncode == 0, res.stderr
    assert time.monotonic() - started > TOKEN_LIFETIME + 5  # the job outlived the first tokens
    assert list((tmp_path / "r").rglob("copy.txt"))
    assert _tokens_issued(entra) - issued_before >= 3


def _tokens_issued(entra: EntraHome) -> int:
    log = entra.local / "identity" / "token-endpoint.log"
    return log.read_text().count("issued a token")


def test_commands_that_follow_a_job(entra: EntraHome, tmp_path: Path) -> None:
    sub = run(entra.home, "--auth", "entra", "--json", "submit", str(SAMPLES / "alpha.txt"), "--no-wait")
    assert sub.returncode == 0, sub.stderr
    job = json.loads(sub.stdout)["jobId"]
    deadline = time.monotonic() + 120
    while True:
        st = run(entra.home, "--auth", "entra", "--json", "status", job)
        assert st.returncode == 0, st.stderr
        if all(t["state"] == "completed" for t in json.loads(st.stdout)["tasks"]):
            break
        assert time.monotonic() < deadline, st.stdout
        time.sleep(1)
    results = run(entra.home, "--auth", "entra", "results", job, "--dest", str(tmp_path / "r"))
    assert results.returncode == 0, results.stderr
    assert (tmp_path / "r" / "corpus_OUTPUT.txt").exists()
    logs = run(entra.home, "--auth", "entra", "logs", job, "1")
    assert logs.returncode == 0, logs.stderr
    clean = run(entra.home, "--auth", "entra", "--json", "clean", job)
    assert clean.returncode == 0 and json.loads(clean.stdout)["jobDeleted"] is True, clean.stderr


# -- errors a user meets: one line each, with its own exit code ----------------------------------------


def _one_error_line(res: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    return lines[0]


def test_no_identity_says_what_was_tried(entra: EntraHome) -> None:
    res = run(
        entra.home,
        "--outputs",
        str(entra.local / "outputs.json"),
        "--auth",
        "entra",
        "jobs",
        PATH="/usr/bin:/bin",
    )
    assert res.returncode == 15, res.stderr
    line = _one_error_line(res)
    assert (
        "could not get an Entra ID token" in line
        and "tried: " in line
        and "ManagedIdentityCredential" in line
    )


def test_untrusted_certificate_is_reported_as_tls(entra: EntraHome) -> None:
    """The local CA is trusted for the local target only: through an outputs file it is not."""
    res = run(
        entra.home,
        "--outputs",
        str(entra.local / "outputs.json"),
        "--auth",
        "entra",
        "jobs",
        **entra.identity_env(),
    )
    assert res.returncode == 14, res.stderr
    line = _one_error_line(res)
    assert "TLS verification" in line and "unreachable" not in line


class _BadTokens(ThreadingHTTPServer):
    """A managed-identity endpoint that hands out tokens the services must refuse."""

    def __init__(self, kind: str) -> None:
        super().__init__(("127.0.0.1", 0), _BadTokenHandler)
        self.kind = kind


class _BadTokenHandler(BaseHTTPRequestHandler):
    server: _BadTokens

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        resource = parse_qs(urlsplit(self.path).query)["resource"][0]
        if self.server.kind == "expired":
            token, _ = make_token(resource, 60, now=time.time() - 3600)
        else:
            token, _ = make_token("https://vault.azure.net", 3600)
        # expires_on in the future, so that the client sends it rather than asking again
        body = json.dumps(
            {"access_token": token, "expires_on": str(int(time.time()) + 3600), "resource": resource}
        )
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body.encode())


@pytest.mark.parametrize(("kind", "words"), [("expired", "expired"), ("audience", "audience")])
def test_refused_tokens_are_one_line_exit_4(entra: EntraHome, kind: str, words: str) -> None:
    server = _BadTokens(kind)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        res = run(
            entra.home,
            "--outputs",
            str(entra.local / "outputs.json"),
            "--auth",
            "entra",
            "jobs",
            IDENTITY_ENDPOINT=f"http://127.0.0.1:{server.server_address[1]}/msi/token",
            IDENTITY_HEADER="x",
            REQUESTS_CA_BUNDLE=str(entra.ca_file),  # how a user trusts a private CA for a target
        )
    finally:
        server.shutdown()
        server.server_close()
    assert res.returncode == 4, res.stderr
    line = _one_error_line(res)
    assert "refused the Entra ID token" in line and words in line, line


def test_a_bad_token_lifetime_is_one_line_exit_2_and_starts_nothing(tmp_path: Path) -> None:
    home = tmp_path / "rh"
    try:
        res = run(home, "local", "up", "--auth", "entra", RUNNER_LOCAL_TOKEN_LIFETIME="soon")
        assert res.returncode == 2 and "RUNNER_LOCAL_TOKEN_LIFETIME" in _one_error_line(res)
        for name in ("azurite", "identity", "localbatch"):
            assert local_procs.find(name, home.resolve() / "local" / name) == [], name
    finally:
        run(home, "local", "down")


def test_auth_mode_mismatches(entra: EntraHome) -> None:
    keys = run(entra.home, "jobs")
    assert keys.returncode == 16 and "add --auth entra" in _one_error_line(keys)
    switch = run(entra.home, "local", "up", "--auth", "sharedkey")
    assert switch.returncode == 16 and "runner local down" in _one_error_line(switch)
    plain = Outputs(
        "b", "http://127.0.0.1:1", "s", "http://127.0.0.1:2/s", "p", "i", "o", "a", "a2V5", "a2V5"
    )
    with pytest.raises(AuthModeMismatch, match="shared keys"):
        targets._check_auth(targets.AuthMode.ENTRA, plain, local_entra=False)
    with pytest.raises(AuthModeMismatch, match="https"):
        targets._check_auth(targets.AuthMode.ENTRA, plain, local_entra=None)


def test_without_a_pool_identity_every_request_used_a_token_or_a_user_delegation_sas(
    entra: EntraHome, tmp_path: Path
) -> None:
    """A recording proxy in front of each service: the runner, and localbatch fetching the tasks'
    files, reach them only through it (the SAS URLs name the proxy's address). The outputs have no
    pool identity, as a stack without ``poolIdentity: true``: the tasks get user delegation SAS."""
    tls = entra.local / "tls"
    proxies = {
        name: RecordingProxy(upstream, tls / "server.pem", tls / "server-key.pem", entra.ca_file)
        for name, upstream in (
            ("batch", entra.outputs.batch_account_url),
            ("storage", entra.outputs.storage_blob_endpoint.rsplit("/", 1)[0]),
        )
    }
    try:
        data = json.loads((entra.local / "outputs.json").read_text())
        del data["poolIdentityResourceId"]  # no pool identity: the tasks get user delegation SAS
        data["batchAccountUrl"] = proxies["batch"].url
        data["storageBlobEndpoint"] = f"{proxies['storage'].url}/{services.AZURITE_ACCOUNT_NAME}"
        proxied = tmp_path / "outputs.json"
        proxied.write_text(json.dumps(data))
        res = run(
            entra.home,
            "--outputs",
            str(proxied),
            "--auth",
            "entra",
            "submit",
            str(SAMPLES),
            "--dest",
            str(tmp_path / "r"),
            REQUESTS_CA_BUNDLE=str(entra.ca_file),
            **entra.identity_env(),
        )
        assert res.returncode == 0, res.stderr
    finally:
        for proxy in proxies.values():
            proxy.close()
    batch, storage = proxies["batch"].seen, proxies["storage"].seen
    assert batch and all(s.scheme == "Bearer" for s in batch), {s.scheme for s in batch}
    sas = [s for s in storage if "sig" in s.query]
    bearer = [s for s in storage if s.scheme == "Bearer"]
    assert len(sas) >= 7 and bearer  # the pack's and merge's tars, node code and outputs; the runner's calls
    assert all("skoid" in s.query and s.scheme == "" for s in sas), [
        s.path for s in sas if "skoid" not in s.query
    ]
    assert len(sas) + len(bearer) == len(storage), {s.scheme for s in storage}


def test_a_first_entra_submit_starts_the_target_in_entra_mode_and_logs_no_secret(tmp_path: Path) -> None:
    home = tmp_path / "rh"
    try:
        res = run(
            home,
            "-vv",
            "--auth",
            "entra",
            "submit",
            str(SAMPLES / "alpha.txt"),
            "--dest",
            str(tmp_path / "r"),
        )
        assert res.returncode == 0, res.stderr
        data = json.loads((home / "local" / "outputs.json").read_text())
        assert "batchAccountKey" not in data and data["batchAccountUrl"].startswith("https://")
        header = json.loads((home / "local" / "secrets.json").read_text())["identityHeader"]
        printed = res.stdout + res.stderr
        assert header not in printed and "sig=" not in printed and "eyJ" not in printed
    finally:
        assert run(home, "local", "down").returncode == 0


def test_the_token_endpoint_wants_its_header_and_serves_two_audiences_only(entra: EntraHome) -> None:
    import urllib.error
    import urllib.request

    url = entra.identity_env()["IDENTITY_ENDPOINT"]
    header = entra.identity_env()["IDENTITY_HEADER"]

    def get(resource: str, secret: str | None) -> tuple[int, dict[str, object]]:
        req = urllib.request.Request(
            f"{url}?api-version=2019-08-01&resource={resource}",
            headers={"X-IDENTITY-HEADER": secret} if secret is not None else {},
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read())

    assert get("https://storage.azure.com", None)[0] == 401
    assert get("https://storage.azure.com", header + "x")[0] == 401
    assert get("https://vault.azure.net", header)[0] == 400
    status, body = get("https://batch.core.windows.net/", header)
    assert status == 200 and body["token_type"] == "Bearer" and int(str(body["expires_on"])) > time.time()
    pool = f"https://storage.azure.com/&mi_res_id={POOL_IDENTITY_RESOURCE_ID}"
    status, body = get(pool, header)
    assert status == 200 and _claims(str(body["access_token"]))["oid"] == POOL_OBJECT_ID
    assert _claims(str(body["access_token"]))["aud"] == "https://storage.azure.com"
    assert _claims(str(get("https://storage.azure.com", header)[1]["access_token"]))["oid"] != POOL_OBJECT_ID
    status, body = get(pool.replace("/pool-identity", "/other"), header)
    assert status == 400 and POOL_IDENTITY_RESOURCE_ID in str(body["message"])


def _claims(token: str) -> dict[str, object]:
    import base64

    payload = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


def test_localbatch_refuses_an_identity_reference_without_a_resource_id(entra: EntraHome) -> None:
    from azure.batch import models as bm

    client = entra.batch()
    job_id = f"idref-{os.getpid()}"
    pool = bm.BatchPoolInfo(pool_id=entra.outputs.pool_id)
    client.create_job(bm.BatchJobCreateOptions(id=job_id, pool_info=pool))
    try:
        no_id = bm.BatchNodeIdentityReference()
        bad = bm.ResourceFile(http_url="https://127.0.0.1:1/x/y", file_path="y", identity_reference=no_id)
        task = bm.BatchTaskCreateOptions(id="t", command_line="true", resource_files=[bad])
        with pytest.raises(HttpResponseError) as info:
            client.create_task(job_id, task)
        assert info.value.status_code == 400 and "identityReference.resourceId" in info.value.response.text()
    finally:
        client.begin_delete_job(job_id)  # not waited for: nothing here depends on it


def test_a_corrupt_state_file_finds_the_entra_services_again(entra: EntraHome) -> None:
    def pids() -> dict[str, list[int]]:
        return {
            n: local_procs.find(n, entra.local.resolve() / n) for n in ("azurite", "identity", "localbatch")
        }

    before = pids()
    assert all(len(p) == 1 for p in before.values()), before
    (entra.local / "state.json").write_text("\x00garbage")
    switch = run(entra.home, "local", "up", "--auth", "sharedkey")  # refused, and stops nothing
    assert switch.returncode == 16 and pids() == before, switch.stderr
    (entra.local / "state.json").write_text("\x00garbage")
    res = run(entra.home, "--auth", "entra", "jobs")  # its mode too is found again (Azurite's --oauth)
    assert res.returncode == 0, res.stderr
    assert pids() == before
    state = json.loads((entra.local / "state.json").read_text())
    assert state["auth"] == "entra" and state["identity"]["pid"] == before["identity"][0]


def test_a_container_resource_file_and_an_output_through_the_pool_identity(entra: EntraHome) -> None:
    """The other resource file form, ``storageContainerUrl`` + ``blobPrefix``, with identityReference:
    localbatch lists and downloads as the pool identity, and uploads the output the same way."""
    from azure.batch import models as bm

    storage_token = StaticToken(*make_token("https://storage.azure.com", 600))
    blobs = BlobServiceClient(
        entra.outputs.storage_blob_endpoint, credential=storage_token, connection_verify=str(entra.ca_file)
    )
    prefix = f"identity-{os.getpid()}"
    inputs, outputs = blobs.get_container_client("input"), blobs.get_container_client("output")
    for name, text in (("a.txt", b"alpha "), ("b.txt", b"bravo")):
        inputs.upload_blob(f"{prefix}/{name}", text, overwrite=True)
    ref = bm.BatchNodeIdentityReference(resource_id=POOL_IDENTITY_RESOURCE_ID)
    task = bm.BatchTaskCreateOptions(
        id="t",
        command_line=f"/bin/sh -c 'cat {prefix}/a.txt {prefix}/b.txt > both.txt'",
        resource_files=[
            bm.ResourceFile(
                storage_container_url=inputs.url, blob_prefix=f"{prefix}/", identity_reference=ref
            )
        ],
        output_files=[
            bm.OutputFile(
                file_pattern="both.txt",
                destination=bm.OutputFileDestination(
                    container=bm.OutputFileBlobContainerDestination(
                        container_url=outputs.url, path=f"{prefix}/both.txt", identity_reference=ref
                    )
                ),
                upload_options=bm.OutputFileUploadConfiguration(upload_condition="taskcompletion"),
            )
        ],
    )
    client = entra.batch()
    job_id = f"{prefix}-job"
    pool = bm.BatchPoolInfo(pool_id=entra.outputs.pool_id)
    client.create_job(bm.BatchJobCreateOptions(id=job_id, pool_info=pool))
    try:
        client.create_task(job_id, task)
        deadline = time.monotonic() + 60
        while (got := client.get_task(job_id, "t")).state != "completed":
            assert time.monotonic() < deadline, got.state
            time.sleep(0.2)
        assert got.execution_info.failure_info is None and got.execution_info.exit_code == 0
        assert outputs.download_blob(f"{prefix}/both.txt").readall() == b"alpha bravo"
    finally:
        client.begin_delete_job(job_id)
