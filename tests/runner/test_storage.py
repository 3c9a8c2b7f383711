"""runner.storage against the session's real Azurite."""

from __future__ import annotations

import dataclasses
import secrets
import urllib.error
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from runner.errors import AuthError, UnreachableError
from runner.outputs import Outputs
from runner.storage import DownloadItem, Storage, UploadItem

WEIRD = ["a b.txt", "é☃ü.txt", "h#a?s%h.txt", "100%.txt", "q?x=1&y=2.txt"]


def _files(tmp_path: Path, names: list[str]) -> list[Path]:
    paths = []
    for i, name in enumerate(names):
        p = tmp_path / name
        p.write_bytes(f"content {i} {name}\n".encode() * (i + 1))
        paths.append(p)
    return paths


def test_upload_skips_unchanged_and_names_with_special_characters_work(
    tmp_path: Path, storage_outputs: Outputs
) -> None:
    st = Storage(storage_outputs)
    prefix = f"t-{secrets.token_hex(3)}/"
    paths = _files(tmp_path, WEIRD)
    items = [UploadItem(p, prefix + p.name) for p in paths]
    seen: list[int] = []
    first = st.upload_files(storage_outputs.input_container, items, seen.append)
    assert (first.uploaded, first.skipped) == (len(WEIRD), 0)
    assert sum(seen) == sum(p.stat().st_size for p in paths)

    listed = {b.name for b in st.list_blobs(storage_outputs.input_container, prefix)}
    assert listed == {prefix + n for n in WEIRD}

    paths[0].write_bytes(b"changed\n")
    second = st.upload_files(storage_outputs.input_container, items)
    assert (second.uploaded, second.skipped) == (1, len(WEIRD) - 1)

    dest = tmp_path / "down"
    st.download_files(
        storage_outputs.input_container, [DownloadItem(prefix + p.name, dest / p.name) for p in paths]
    )
    for p in paths:
        assert (dest / p.name).read_bytes() == p.read_bytes()

    assert st.delete_prefix(storage_outputs.input_container, prefix) == len(WEIRD)
    assert st.list_blobs(storage_outputs.input_container, prefix) == []


def test_sas_urls_are_scoped(tmp_path: Path, storage_outputs: Outputs) -> None:
    st = Storage(storage_outputs)
    name = f"sas-{secrets.token_hex(3)}/h#a?s% é.txt"
    st.upload_bytes(storage_outputs.input_container, name, b"hello")
    expiry = datetime.now(timezone.utc) + timedelta(minutes=10)

    url = st.blob_read_url(storage_outputs.input_container, name, expiry)
    assert urllib.request.urlopen(url).read() == b"hello"

    # The read SAS is scoped to that blob: another blob's URL with the same token is refused.
    other = url.replace("s%25%20%C3%A9.txt", "other.txt")
    assert other != url
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(other)
    assert err.value.code == 403

    # The output SAS can create/write but not read.
    write_url = st.container_write_url(storage_outputs.output_container, expiry)
    base, token = write_url.split("?", 1)
    blob_url = f"{base}/w-{secrets.token_hex(3)}.txt?{token}"
    put = urllib.request.Request(blob_url, data=b"out", method="PUT", headers={"x-ms-blob-type": "BlockBlob"})
    assert urllib.request.urlopen(put).status == 201
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(blob_url)
    assert err.value.code == 403


def test_wrong_key_is_one_clear_error_without_the_key(storage_outputs: Outputs) -> None:
    bad_key = "d3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXk="
    st = Storage(dataclasses.replace(storage_outputs, storage_account_key=bad_key))
    with pytest.raises(AuthError) as info:
        st.list_blobs(storage_outputs.input_container, "")
    assert bad_key not in str(info.value)
    assert "Storage rejected the credentials" in str(info.value)


def test_unreachable_endpoint_is_one_clear_error(storage_outputs: Outputs) -> None:
    st = Storage(
        dataclasses.replace(storage_outputs, storage_blob_endpoint="http://127.0.0.1:9/devstoreaccount1")
    )
    with pytest.raises(UnreachableError, match="unreachable"):
        st.list_blobs("input", "")
