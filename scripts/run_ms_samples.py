"""Run Microsoft's published Python Batch samples, unchanged, against Azurite + localbatch.

Usage::

    git clone https://github.com/Azure-Samples/azure-batch-samples /tmp/abs
    python scripts/run_ms_samples.py /tmp/abs [--only NAME ...] [--timeout SECONDS]

The samples come from azure-batch-samples (a clone, or its bare git directory),
each at the commit it was last published at, exported into a temporary
directory (nothing of theirs enters this repository). Each runs with the SDK
versions its own ``requirements.txt`` pins, in a virtualenv made once under
``--venv-dir`` (pip, the ordinary client). Only what the brief allows is
changed in the temporary copy: the ``.cfg`` files (endpoint, account, key:
localbatch's, and Azurite's well-known development storage account) and the
retired images the samples name (Ubuntu 16.04/18.04/20.04 become 22.04).

The table printed at the end has one row per sample: what it does, what Azure
does with it today, and what happened locally. Sample output is kept in
``--logs`` with every key and SAS signature removed; it is never printed whole.
Exit code 0 when every sample ended as Azure would end it today, 1 otherwise.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from runner import services

B12 = ("azure-batch==12.0.0", "azure-storage-blob==12.8.1")
B5_BLOB1 = ("azure-batch==5.0.0", "azure-storage-blob==1.3.1")
B6_BLOB1 = ("azure-batch==6.0.0", "azure-storage-blob==1.3.1")
B3 = ("azure-batch==3.0.0", "azure-storage==0.34.0")
B030 = ("azure-batch==0.30.0rc4", "azure-storage==0.30.0")
#: The storage account's production host name: samples of the azure-storage 0.x/1.x era can only
#: address https://ACCOUNT.blob.core.windows.net, so that name is made to reach Azurite (see README).
#: The storage account Azurite serves for the samples: not Azurite's devstoreaccount1, which the
#: azure-storage 2.x SDK under blobxfer takes for the storage emulator (and then refuses to run).
STORAGE_ACCOUNT = "batchsamples"
STORAGE_HOST = f"{STORAGE_ACCOUNT}.blob.core.windows.net"

#: Retired images the samples name, and their current replacements (applied to the samples' .py files).
IMAGE_EDITS: tuple[tuple[str, str], ...] = (
    ('offer="ubuntuserver"', 'offer="0001-com-ubuntu-server-jammy"'),
    ('sku="18.04-lts"', 'sku="22_04-lts"'),
    ("'canonical', 'ubuntuserver', '18.04'", "'canonical', '0001-com-ubuntu-server-jammy', '22_04'"),
    ("0001-com-ubuntu-server-focal", "0001-com-ubuntu-server-jammy"),
    ("20_04-lts", "22_04-lts"),
    ("batch.node.ubuntu 18.04", "batch.node.ubuntu 22.04"),
    ("batch.node.ubuntu 20.04", "batch.node.ubuntu 22.04"),
    ("_NODE_OS_PUBLISHER = 'OpenLogic'", "_NODE_OS_PUBLISHER = 'microsoft-dsvm'"),
    ("_NODE_OS_OFFER = 'CentOS-HPC'", "_NODE_OS_OFFER = 'ubuntu-hpc'"),
    ("_NODE_OS_SKU = '7.4'", "_NODE_OS_SKU = '2204'"),
    ("_NODE_OS_OFFER = 'UbuntuServer'", "_NODE_OS_OFFER = '0001-com-ubuntu-server-jammy'"),
    ("_NODE_OS_SKU = '16'", "_NODE_OS_SKU = '22'"),
)


@dataclass(frozen=True)
class Sample:
    """One published sample: where it is, what it needs, and what Azure does with it today."""

    name: str
    commit: str
    script: str  # relative to Python/Batch, run from the directory it is in
    requirements: tuple[str, ...]
    does: str
    azure_today: str  # "succeeds" or "fails: <why>"
    expect_error: str = ""  # for a sample Azure refuses: what its last error line names
    not_here: str = ""  # why it cannot run on one Linux machine without Internet (then not judged)
    bound: float | None = None  # its own time bound (seconds), when shorter than --timeout
    config: str = "cfg"  # "cfg": configuration.cfg with URLs; "cfg-legacy": with account names; "constants"
    answers: str = ""  # what is typed at its prompts (stdin)
    cwd: str = ""  # where it is run from, relative to Python/Batch
    after: str = ""  # "multi-instance": then wait for its multi-instance task and report how it ended
    tools: tuple[str, ...] = ()  # command-line tools it runs (pip requirements, on its PATH)


SAMPLES: tuple[Sample, ...] = (
    Sample(
        "sample1_helloworld",
        "HEAD",
        "sample1_helloworld.py",
        B12,
        "pool, job, one task; prints its stdout",
        "succeeds",
    ),
    Sample(
        "sample1_jobprep_and_release",
        "HEAD",
        "sample1_jobprep_and_release.py",
        B12,
        "job preparation and release tasks; prints their output per node",
        "succeeds",
    ),
    Sample(
        "sample2_pools_and_resourcefiles",
        "HEAD",
        "sample2_pools_and_resourcefiles.py",
        B12,
        "image from GET /supportedimages, start task and task with a SAS resource file",
        "succeeds",
    ),
    Sample(
        "sample3_encrypted_resourcefiles",
        "HEAD",
        "sample3_encrypted_resourcefiles.py",
        B12,
        "adds a PFX certificate to the account, pool with certificateReferences, decrypting task",
        "fails: Batch account certificates retired on 29 February 2024 (at its certificate add)",
        expect_error="in add_certificate_to_account",
        tools=("blobxfer==1.11.0",),  # its README: pip install blobxfer (the version of its time)
    ),
    Sample(
        "sample4_job_scheduler",
        "HEAD",
        "sample4_job_scheduler.py",
        B12,
        "job schedule with an auto pool and a job manager; reads the tasks' output",
        "succeeds",
        not_here="Windows pool: its start task fetches Python 3.7.3 from python.org and runs it with cmd.exe",
        bound=30,
    ),
    Sample(
        "sample4_preparationtask",
        "d208210",
        "sample4_preparationtask.py",
        B6_BLOB1,
        "(an unmerged pull request's sample) a pool whose start task prepares the nodes, then tasks",
        "fails: it passes base_url=, which azure-batch 6.0.0 (its pin) renamed batch_url: TypeError",
        expect_error="unexpected keyword argument 'base_url'",
        config="cfg-legacy",
    ),
    Sample(
        "sample5_docker_batch_task",
        "686d734^",
        "sample5_docker_batch_task.py",
        B030,
        "a start task installs Docker with apt; the task runs a container with docker run",
        "fails: api-version 2016-02-01.3.0 removed on 31 October 2020",
        expect_error="query parameters specified in the request URI is invalid",
        config="cfg-legacy",
    ),
    Sample(
        "python_tutorial_client",
        "fc20f02",
        "article_samples/python_tutorial_client.py",
        B3,
        "the Batch Python tutorial: uploads inputs, pool, job, tasks writing outputs to a container",
        "fails: api-version 2017-05-01.5.0 removed on 31 October 2020",
        expect_error="query parameters specified in the request URI is invalid",
        config="constants",
        answers="\n" * 8,
        cwd="article_samples",
    ),
    Sample(
        "linux_mpi_task_demo",
        "651e250",  # the last commit whose SDK pin (5.0.0) takes its base_url=; later ones raise TypeError
        "article_samples/mpi/linux_mpi_task_demo.py",
        B5_BLOB1,
        "an MPI multi-instance task on 3 nodes (coordination command everywhere, pingpong on the primary)",
        "fails: its wait returns at once (it iterates a page iterator twice), so it downloads the"
        " output before the task has run: BlobNotFound",
        expect_error="BlobNotFound",
        config="constants",
        after="multi-instance",
        answers="\n" * 8,
    ),
)


def git_dir(checkout: Path) -> Path:
    """The git directory of a clone (``DIR/.git``) or a bare repository (``DIR``)."""
    return checkout / ".git" if (checkout / ".git").exists() else checkout


def export(repo: Path, commit: str, target: Path) -> Path:
    """Write ``Python/Batch`` of ``commit`` under ``target``; return that directory."""
    data = subprocess.run(
        ["git", "--git-dir", str(git_dir(repo)), "archive", "--format=tar", commit, "Python/Batch"],
        check=True,
        capture_output=True,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(target, filter="data")
    return target / "Python" / "Batch"


def edit_images(batch_dir: Path) -> list[str]:
    """Replace the retired images in the samples' Python files; return what was replaced."""
    done: list[str] = []
    for path in sorted(batch_dir.rglob("*.py")):
        text = path.read_text()
        new = text
        for old, replacement in IMAGE_EDITS:
            if old in new:
                new = new.replace(old, replacement)
                done.append(f"{path.name}: {old} -> {replacement}")
        if new != text:
            path.write_text(new)
    return done


@dataclass(frozen=True)
class Target:
    """What a user fills in: the Batch account (localbatch) and the storage account (Azurite)."""

    batch_url: str
    account: str
    key: str = field(repr=False)
    blob_endpoint: str
    storage_key: str = field(repr=False)


def write_config(sample: Sample, batch_dir: Path, t: Target) -> None:
    """Fill in the accounts as a user does for Azure: the .cfg files, or the script's constants."""
    storage = STORAGE_ACCOUNT
    if sample.config == "constants":
        script = batch_dir / sample.script
        text = script.read_text()
        for name, value in (
            ("_BATCH_ACCOUNT_NAME", t.account),
            ("_BATCH_ACCOUNT_KEY", t.key),
            ("_BATCH_ACCOUNT_URL", t.batch_url),
            ("_STORAGE_ACCOUNT_NAME", storage),
            ("_STORAGE_ACCOUNT_KEY", t.storage_key),
        ):
            text = re.sub(rf"^{name} = ''$", f"{name} = {value!r}", text, count=1, flags=re.M)
        script.write_text(text)
        return
    if sample.config == "cfg-legacy":
        section = (
            f"storageaccountname={storage}\nstorageaccountkey={t.storage_key}\n"
            "storageaccountsuffix=core.windows.net\n"
        )
    else:
        section = f"storageaccounturl={t.blob_endpoint}\nstorageaccountkey={t.storage_key}\n"
    (batch_dir / "configuration.cfg").write_text(
        "[Batch]\n"
        f"batchaccountname={t.account}\nbatchaccountkey={t.key}\nbatchserviceurl={t.batch_url}\n\n"
        f"[Storage]\n{section}"
    )


def venv_python(venv_dir: Path, requirements: tuple[str, ...]) -> Path:
    """A python with exactly ``requirements`` installed (made once, then reused; not inside the
    private network, which cannot reach the package index)."""
    tag = hashlib.sha256("\n".join(requirements).encode()).hexdigest()[:12]
    venv = venv_dir / f"venv-{tag}"
    python = venv / "bin" / "python"
    if not (venv / ".complete").exists():
        if os.environ.get(_INSIDE) == "1":
            raise subprocess.CalledProcessError(1, "pip")
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *requirements], check=True)
        (venv / ".complete").write_text("\n".join(requirements) + "\n")
    return python


_SIG = re.compile(r"(?i)(sig=)[^&\s'\"]+")


def redact(text: str, secrets: list[str]) -> str:
    """``text`` without the given secrets and without any SAS signature."""
    for secret in secrets:
        text = text.replace(secret, "<redacted>")
    return _SIG.sub(r"\1<redacted>", text)


def printable(text: str) -> str:
    """One line, control characters escaped (sample output is untrusted)."""
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


@dataclass(frozen=True)
class Result:
    sample: Sample
    exit_code: int | None  # None: timed out
    seconds: float
    last_line: str
    error_text: str = ""  # its stderr, redacted
    after: str = ""  # what the service did after the sample ended (``Sample.after``)

    @property
    def verdict(self) -> str:
        """``yes`` when it ended as it ends on Azure today, ``NO`` when not, or why it was not judged."""
        if self.sample.not_here:
            return f"not judged: {self.sample.not_here}"
        return "yes" if self.as_azure else "NO"

    @property
    def as_azure(self) -> bool:
        """Whether it ended as it ends on Azure today (or could not be judged here)."""
        if self.sample.not_here:
            return True
        if self.sample.azure_today.startswith("succeeds"):
            return self.exit_code == 0
        expected = self.sample.expect_error.lower()
        return self.exit_code not in (0, None) and bool(expected) and expected in self.error_text.lower()


def run_sample(
    sample: Sample,
    python: Path,
    batch_dir: Path,
    timeout: float,
    log: Path,
    secrets: list[str],
    env: dict[str, str],
) -> Result:
    """Run one sample from its directory, bounded in time; keep its redacted output in ``log``."""
    start = time.monotonic()
    try:
        proc = subprocess.run(
            [str(python), str(batch_dir / sample.script)],
            cwd=batch_dir / sample.cwd,
            input=sample.answers,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
        )
        code: int | None = proc.returncode
        out, err = proc.stdout, proc.stderr
    except subprocess.TimeoutExpired as exc:
        code = None
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        err = f"timed out after {timeout:.0f} s"
    text = redact(out + "\n--- stderr ---\n" + err, secrets)
    log.write_text(text)
    lines = [line for line in redact(err, secrets).splitlines() if line.strip()] or ["(no error output)"]
    return Result(sample, code, time.monotonic() - start, printable(lines[-1])[:160], redact(err, secrets))


def table(results: list[Result]) -> str:
    """The results as a Markdown table."""
    rows = [
        "| sample | what it does | Azure today | local result | as Azure |",
        "| --- | --- | --- | --- | --- |",
    ]
    for r in results:
        local = (
            "succeeded"
            if r.exit_code == 0
            else ("timed out" if r.exit_code is None else f"exit {r.exit_code}")
        )
        detail = ("" if r.exit_code == 0 else f": {r.last_line}") + (f"; then {r.after}" if r.after else "")
        rows.append(
            f"| {r.sample.name} | {r.sample.does} | {r.sample.azure_today} "
            f"| {local}{detail} ({r.seconds:.0f} s) | {r.verdict} |"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "samples", type=Path, help="a clone of Azure-Samples/azure-batch-samples (or its git dir)"
    )
    parser.add_argument("--only", nargs="*", default=None, help="sample names to run (default: all)")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per sample")
    parser.add_argument("--venv-dir", type=Path, default=Path.home() / ".cache" / "localbatch-ms-samples")
    parser.add_argument(
        "--logs", type=Path, default=None, help="where to keep each sample's (redacted) output"
    )
    parser.add_argument("--work", type=Path, default=None, help="keep the servers' data here (to look into)")
    args = parser.parse_args(argv)
    chosen = [s for s in SAMPLES if args.only is None or s.name in args.only]
    if os.environ.get(_INSIDE) != "1":
        if os.geteuid() != 0 or shutil.which("unshare") is None:
            print("needs root and unshare: samples reach storage as https://" + STORAGE_HOST, file=sys.stderr)
            return 2
        for requirements in dict.fromkeys(
            [s.requirements for s in chosen] + [s.tools for s in chosen if s.tools]
        ):
            try:  # before the private network, which has no index to install from
                venv_python(args.venv_dir, requirements)
            except subprocess.CalledProcessError:
                print(f"{' '.join(requirements)}: pip failed", file=sys.stderr)
        return in_private_network(argv) or 0
    in_private_network(argv)
    with tempfile.TemporaryDirectory(prefix="ms-samples-") as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        logs = args.logs or work / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        results = run_all(chosen, args.samples, work, logs, args.venv_dir, args.timeout)
    print(table(results))
    print(f"\nlogs (keys and SAS signatures removed): {logs}" if args.logs else "")
    return 0 if all(r.as_azure for r in results) else 1


def run_all(
    chosen: list[Sample], repo: Path, work: Path, logs: Path, venv_dir: Path, timeout: float
) -> list[Result]:
    """Start Azurite (HTTPS, as STORAGE_HOST on port 443) and localbatch, run each sample, stop both."""
    key = base64.b64encode(os.urandom(64)).decode("ascii")
    storage_key = base64.b64encode(os.urandom(64)).decode("ascii")
    ca, cert, cert_key = make_tls(work / "tls")
    tls = services.AzuriteTls(cert, cert_key, storage_key)
    services.AZURITE_ACCOUNT_NAME = (
        STORAGE_ACCOUNT  # the account start_azurite gives Azurite (this process only)
    )
    azurite = services.start_azurite(work / "azurite", port=443, tls=tls)
    blob_endpoint = f"https://{STORAGE_HOST}"
    try:
        batch = services.start_localbatch(
            work / "localbatch",
            account_name="localbatch",
            account_key=key,
            storage_blob_endpoint=blob_endpoint,
            storage_account_name=STORAGE_ACCOUNT,
            storage_account_key=storage_key,
            extra_args=["--ca-file", str(ca)],
        )
        target = Target(batch.url, "localbatch", key, blob_endpoint, storage_key)
        env = {k: v for k, v in os.environ.items() if not k.startswith("LOCALBATCH_")}
        env.update({"REQUESTS_CA_BUNDLE": str(ca), "SSL_CERT_FILE": str(ca), "HOME": str(work / "home")})
        (work / "home").mkdir()
        try:
            results = []
            for sample in chosen:
                results.append(run_one(sample, repo, work, logs, venv_dir, timeout, target, env))
                print(f"{sample.name}: exit {results[-1].exit_code}", file=sys.stderr)
            return results
        finally:
            batch.stop()
    finally:
        azurite.stop()


def run_one(
    sample: Sample,
    repo: Path,
    work: Path,
    logs: Path,
    venv_dir: Path,
    timeout: float,
    target: Target,
    env: dict[str, str],
) -> Result:
    batch_dir = export(repo, sample.commit, work / sample.name)
    for edit in edit_images(batch_dir):
        if edit.startswith(Path(sample.script).name):
            print(f"{sample.name}: {edit}", file=sys.stderr)
    write_config(sample, batch_dir, target)
    try:
        python = venv_python(venv_dir, sample.requirements)
    except subprocess.CalledProcessError:
        sample = replace(sample, not_here=f"{' '.join(sample.requirements)} do not install on this Python")
        return Result(sample, -1, 0.0, "pip failed")
    if sample.tools:
        try:
            tools = venv_python(venv_dir, sample.tools).parent
        except subprocess.CalledProcessError:
            return Result(replace(sample, not_here=f"{' '.join(sample.tools)} do not install"), -1, 0.0, "")
        env = {**env, "PATH": f"{tools}{os.pathsep}{env.get('PATH', '')}"}
    bound = min(timeout, sample.bound or timeout)
    log = logs / f"{sample.name}.log"
    result = run_sample(sample, python, batch_dir, bound, log, [target.key, target.storage_key], env)
    if sample.after == "multi-instance":
        result = replace(result, after=multi_instance_outcome(target, timeout))
    return result


def multi_instance_outcome(t: Target, timeout: float) -> str:
    """How the sample's multi-instance task ended (the sample does not wait for it): through SDK 15."""
    from azure.batch import BatchClient
    from azure.core.credentials import AzureNamedKeyCredential

    client = BatchClient(t.batch_url, AzureNamedKeyCredential(t.account, t.key))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        tasks = [(j.id, task) for j in client.list_jobs() for task in client.list_tasks(j.id)]
        multi = [(j, task) for j, task in tasks if task.multi_instance_settings is not None]
        if multi and all(task.state == "completed" for _, task in multi):
            job_id, task = multi[0]
            subtasks = list(client.list_subtasks(job_id, task.id))
            info = task.execution_info
            if info is None or task.node_info is None:
                return "its multi-instance task completed without execution information"
            nodes = {s.node_info.node_id for s in subtasks if s.node_info} | {task.node_info.node_id}
            states = ",".join(sorted({str(getattr(s.state, "value", s.state)) for s in subtasks}))
            result = getattr(info.result, "value", info.result)
            return (
                f"its task completed on {len(nodes)} nodes ({len(subtasks)} subtasks {states}), result "
                f"{result}, exit code {info.exit_code} (the pingpong command needs Intel MPI)"
            )
        time.sleep(0.5)
    return "its multi-instance task did not complete in time"


def make_tls(directory: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a certificate for STORAGE_HOST it signs: (ca.pem, cert.pem, key.pem)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    directory.mkdir(mode=0o700)
    now = datetime.now(timezone.utc)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "run_ms_samples throwaway CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, STORAGE_HOST)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(STORAGE_HOST)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    paths = directory / "ca.pem", directory / "cert.pem", directory / "key.pem"
    paths[0].write_bytes(ca.public_bytes(pem))
    paths[1].write_bytes(cert.public_bytes(pem))
    paths[2].write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return paths


_INSIDE = "RUN_MS_SAMPLES_NETNS"


def in_private_network(argv: list[str]) -> int | None:
    """Re-run this script in private mount and network namespaces (root only), where STORAGE_HOST
    is 127.0.0.1 and nothing reaches or leaves the machine; ``None`` once inside."""
    if os.environ.get(_INSIDE) == "1":
        subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
        hosts = Path(tempfile.mkdtemp(prefix="ms-samples-hosts-")) / "hosts"
        hosts.write_text(Path("/etc/hosts").read_text() + f"\n127.0.0.1 {STORAGE_HOST}\n")
        subprocess.run(["mount", "--bind", str(hosts), "/etc/hosts"], check=True)
        return None
    cmd = ["unshare", "--mount", "--net", "--", sys.executable, str(Path(__file__).resolve()), *argv]
    return subprocess.run(cmd, env={**os.environ, _INSIDE: "1"}).returncode


if __name__ == "__main__":
    raise SystemExit(main())
