"""Fixtures for runner tests: an outputs file for the session's real Azurite (+ localbatch).

``storage_outputs`` needs only Azurite (Batch fields point nowhere useful);
``target_outputs`` is the full local target built from the session fixtures:
containers created, pool created from ``PoolSpec`` through ``runner.batch``.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from runner.batch import Batch
from runner.outputs import Outputs, write_file
from runner.pool_spec import PoolSpec
from runner.storage import Storage
from tests.conftest import Azurite, LocalBatch


def _outputs(azurite: Azurite, batch_url: str, batch_key: str, batch_name: str, suffix: str) -> Outputs:
    return Outputs(
        batch_account_name=batch_name,
        batch_account_url=batch_url,
        batch_account_key=batch_key,
        storage_account_name=azurite.account_name,
        storage_account_key=azurite.account_key,
        storage_blob_endpoint=azurite.blob_endpoint,
        pool_id=PoolSpec().pool_id,
        input_container=f"input{suffix}",
        output_container=f"output{suffix}",
        application_container=f"application{suffix}",
    )


@pytest.fixture(scope="session")
def storage_outputs(azurite: Azurite) -> Outputs:
    """Outputs whose Storage part is the session's Azurite, with fresh containers."""
    suffix = secrets.token_hex(3)
    out = _outputs(azurite, "http://127.0.0.1:9", "a2V5", "nobatch", suffix)
    Storage(out).ensure_containers([out.input_container, out.output_container, out.application_container])
    return out


@pytest.fixture(scope="session")
def target_outputs(azurite: Azurite, localbatch: LocalBatch) -> Outputs:
    """The full local target from the session fixtures: containers and pool created."""
    out = _outputs(azurite, localbatch.url, localbatch.account_key, localbatch.account_name, "")
    Storage(out).ensure_containers([out.input_container, out.output_container, out.application_container])
    Batch(out).create_pool(PoolSpec())
    return out


@pytest.fixture(scope="session")
def outputs_file(tmp_path_factory: pytest.TempPathFactory, target_outputs: Outputs) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("target") / "outputs.json"
    write_file(path, target_outputs)
    yield path
