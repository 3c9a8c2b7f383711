"""Session fixtures: real Azurite and localbatch servers on free loopback ports.

They are started once per test session through ``runner.services`` (the same
code ``runner local up`` uses) and stopped at the end. Tests that kill or
restart servers start their own with the same helpers instead of using these.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from runner import services
from tests import contract_allowlist


@dataclass(frozen=True)
class LocalBatch:
    """A running localbatch and the credentials to reach it."""

    url: str
    account_name: str
    account_key: str = field(repr=False)  # never printed by pytest/hypothesis reports
    data_dir: Path
    process: services.ServiceProcess


@dataclass(frozen=True)
class Azurite:
    """A running Azurite blob service."""

    blob_endpoint: str
    account_name: str
    account_key: str
    data_dir: Path
    process: services.ServiceProcess

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={self.account_name};"
            f"AccountKey={self.account_key};BlobEndpoint={self.blob_endpoint};"
        )


def new_account_key() -> str:
    """A fresh random Batch account key, as Azure issues them (64 bytes, base64)."""
    return base64.b64encode(os.urandom(64)).decode("ascii")


def start_azurite(data_dir: Path, port: int = 0) -> Azurite:
    proc = services.start_azurite(data_dir, port=port)
    return Azurite(proc.url, services.AZURITE_ACCOUNT_NAME, services.AZURITE_ACCOUNT_KEY, data_dir, proc)


#: Where every localbatch a test starts reports contract violations (set by ``batch_contract``).
_CONTRACT_LOG: list[Path] = []


def start_localbatch(
    data_dir: Path,
    azurite: Azurite,
    *,
    account_name: str = "localbatch",
    account_key: str | None = None,
    port: int = 0,
    extra_args: list[str] | None = None,
) -> LocalBatch:
    """Start localbatch; it checks its responses against the Batch contract (see ``batch_contract``)."""
    key = account_key or new_account_key()
    extra_args = list(extra_args or [])
    if _CONTRACT_LOG and "--check-contract" not in extra_args:
        extra_args += ["--check-contract", str(_CONTRACT_LOG[0])]
    proc = services.start_localbatch(
        data_dir,
        account_name=account_name,
        account_key=key,
        storage_blob_endpoint=azurite.blob_endpoint,
        storage_account_name=azurite.account_name,
        storage_account_key=azurite.account_key,
        port=port,
        extra_args=extra_args,
    )
    return LocalBatch(proc.url, account_name, key, data_dir, proc)


def pytest_configure(config: pytest.Config) -> None:
    """The result cache is off for the suite (``RUNNER_CACHE=0``): tests share one target and
    often the same generated corpora, and a hit would skip the tasks a test is about.
    tests/e2e/test_cache.py turns it on per command (``--cache``)."""
    os.environ.setdefault("RUNNER_CACHE", "0")


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    server = start_azurite(tmp_path_factory.mktemp("azurite"))
    yield server
    server.process.stop()


def contract_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the session localbatch appends its contract violations (JSON lines)."""
    return tmp_path_factory.getbasetemp() / "contract-violations.jsonl"


@pytest.fixture(scope="session")
def localbatch(tmp_path_factory: pytest.TempPathFactory, azurite: Azurite) -> Iterator[LocalBatch]:
    _CONTRACT_LOG[:] = [contract_log(tmp_path_factory)]
    server = start_localbatch(tmp_path_factory.mktemp("localbatch"), azurite)
    yield server
    server.process.stop()


@pytest.fixture(autouse=True)
def batch_contract(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Fail the test whose requests got a response from localbatch outside the Batch contract.

    Every localbatch started through :func:`start_localbatch` (the session one
    and those tests start themselves) appends its violations to one file; the
    lines added while a test ran fail that test. Violations listed in
    tests/contract_allowlist.py are tolerated (each with its reason).
    """
    path = contract_log(tmp_path_factory)
    _CONTRACT_LOG[:] = [path]
    start = path.stat().st_size if path.exists() else 0
    yield
    if not path.exists():
        return
    with path.open("rb") as f:
        f.seek(start)
        lines = f.read().decode("utf-8", "replace").splitlines()
    found = [json.loads(line) for line in lines if line.strip()]
    bad = [v for v in found if not contract_allowlist.allowed(v)]
    if bad:
        listed = "\n".join(
            f"  {v['operation']} {v['method']} {v['path']} -> {v['status']}: {v['problem']}" for v in bad[:50]
        )
        more = f"\n  ... and {len(bad) - 50} more" if len(bad) > 50 else ""
        pytest.fail(f"localbatch answered outside the Batch contract:\n{listed}{more}", pytrace=False)
