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
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from runner import services

B12 = ("azure-batch==12.0.0", "azure-storage-blob==12.8.1")

#: Retired images the samples name, and their current replacements (applied to the samples' .py files).
IMAGE_EDITS: tuple[tuple[str, str], ...] = (
    ('offer="ubuntuserver"', 'offer="0001-com-ubuntu-server-jammy"'),
    ('sku="18.04-lts"', 'sku="22_04-lts"'),
    ("'canonical', 'ubuntuserver', '18.04'", "'canonical', '0001-com-ubuntu-server-jammy', '22_04'"),
    ("0001-com-ubuntu-server-focal", "0001-com-ubuntu-server-jammy"),
    ("20_04-lts", "22_04-lts"),
    ("batch.node.ubuntu 18.04", "batch.node.ubuntu 22.04"),
    ("batch.node.ubuntu 20.04", "batch.node.ubuntu 22.04"),
)


@dataclass(frozen=True)
class Sample:
    """One published sample: where it is, what it needs, and what Azure does with it today."""

    name: str
    commit: str
    script: str  # relative to Python/Batch, run from there
    requirements: tuple[str, ...]
    does: str
    azure_today: str  # "succeeds" or "fails: <why>"
    expect_error: str = ""  # for a sample Azure refuses: what its last error line names
    not_here: str = ""  # why it cannot run on one Linux machine without Internet (then not judged)
    bound: float | None = None  # its own time bound (seconds), when shorter than --timeout


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
        "fails: Batch account certificates retired on 29 February 2024",
        expect_error="certificate",
        not_here="needs the blobxfer CLI, which reaches storage only as https://ACCOUNT.blob.SUFFIX",
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


def write_config(batch_dir: Path, batch_url: str, account: str, key: str, blob_endpoint: str) -> None:
    """Fill ``configuration.cfg`` (Batch account and storage) as a user does for Azure."""
    (batch_dir / "configuration.cfg").write_text(
        "[Batch]\n"
        f"batchaccountname={account}\nbatchaccountkey={key}\nbatchserviceurl={batch_url}\n\n"
        "[Storage]\n"
        f"storageaccounturl={blob_endpoint}\nstorageaccountkey={services.AZURITE_ACCOUNT_KEY}\n"
    )


def venv_python(venv_dir: Path, requirements: tuple[str, ...]) -> Path:
    """A python with exactly ``requirements`` installed (made once, then reused)."""
    tag = hashlib.sha256("\n".join(requirements).encode()).hexdigest()[:12]
    venv = venv_dir / f"venv-{tag}"
    python = venv / "bin" / "python"
    if not (venv / ".complete").exists():
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
        if self.sample.azure_today == "succeeds":
            return self.exit_code == 0
        return self.exit_code not in (0, None) and self.sample.expect_error.lower() in self.last_line.lower()


def run_sample(
    sample: Sample, python: Path, batch_dir: Path, timeout: float, log: Path, secrets: list[str]
) -> Result:
    """Run one sample from its directory, bounded in time; keep its redacted output in ``log``."""
    start = time.monotonic()
    try:
        proc = subprocess.run(
            [str(python), sample.script],
            cwd=batch_dir,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={k: v for k, v in os.environ.items() if not k.startswith("LOCALBATCH_")},
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
    return Result(sample, code, time.monotonic() - start, printable(lines[-1])[:160])


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
        detail = "" if r.exit_code == 0 else f": {r.last_line}"
        rows.append(
            f"| {r.sample.name} | {r.sample.does} | {r.sample.azure_today} "
            f"| {local}{detail} ({r.seconds:.0f} s) | {r.verdict} |"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
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
    args = parser.parse_args(argv)
    chosen = [s for s in SAMPLES if args.only is None or s.name in args.only]
    with tempfile.TemporaryDirectory(prefix="ms-samples-") as tmp:
        work = Path(tmp)
        logs = args.logs or work / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        results = run_all(chosen, args.samples, work, logs, args.venv_dir, args.timeout)
    print(table(results))
    print(f"\nlogs (keys and SAS signatures removed): {logs}" if args.logs else "")
    return 0 if all(r.as_azure for r in results) else 1


def run_all(
    chosen: list[Sample], repo: Path, work: Path, logs: Path, venv_dir: Path, timeout: float
) -> list[Result]:
    """Start Azurite and localbatch, run each sample against them, stop both."""
    key = base64.b64encode(os.urandom(64)).decode("ascii")
    azurite = services.start_azurite(work / "azurite")
    try:
        batch = services.start_localbatch(
            work / "localbatch",
            account_name="localbatch",
            account_key=key,
            storage_blob_endpoint=azurite.url,
            storage_account_name=services.AZURITE_ACCOUNT_NAME,
            storage_account_key=services.AZURITE_ACCOUNT_KEY,
        )
        try:
            results = []
            for sample in chosen:
                batch_dir = export(repo, sample.commit, work / sample.name)
                for edit in edit_images(batch_dir):
                    if edit.startswith(Path(sample.script).name):
                        print(f"{sample.name}: {edit}", file=sys.stderr)
                write_config(batch_dir, batch.url, "localbatch", key, azurite.url)
                python = venv_python(venv_dir, sample.requirements)
                log = logs / f"{sample.name}.log"
                bound = min(timeout, sample.bound or timeout)
                results.append(run_sample(sample, python, batch_dir, bound, log, [key]))
                print(f"{sample.name}: exit {results[-1].exit_code}", file=sys.stderr)
            return results
        finally:
            batch.stop()
    finally:
        azurite.stop()


if __name__ == "__main__":
    raise SystemExit(main())
