"""runner.storage against the session's real Azurite."""

from __future__ import annotations

import dataclasses
import secrets
import urllib.error
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from bench.harness import TcpProxy, port_of, with_endpoints
from runner.errors import AuthError, NotFoundError, UnreachableError, UsageError
from runner.outputs import Outputs
from runner.storage import DownloadItem, Storage, UploadItem, common_dir_prefix

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


@pytest.mark.parametrize(
    ("names", "prefix"),
    [
        (["j/inputs/a.txt", "j/inputs/b/c.txt"], "j/inputs/"),
        (["j/inputs/a.txt", "j/inputs2/b.txt"], "j/"),
        (["j/inputs/a.txt"], "j/inputs/"),
        (["j-a.txt", "j-b.txt"], ""),
        (["a/x.txt", "b/x.txt"], ""),
        ([], ""),
    ],
)
def test_common_dir_prefix(names: list[str], prefix: str) -> None:
    assert common_dir_prefix(names) == prefix


def _sized(tmp_path: Path, n: int) -> list[Path]:
    paths = []
    for i in range(n):
        p = tmp_path / f"f{i}.bin"
        p.write_bytes(bytes([i]) * (1000 + i))
        paths.append(p)
    return paths


def test_upload_lists_the_common_prefix_once_instead_of_a_head_per_blob(
    tmp_path: Path, storage_outputs: Outputs
) -> None:
    n = 12
    container = storage_outputs.input_container
    prefix = f"job-{secrets.token_hex(3)}/inputs/"
    paths = _sized(tmp_path, n)
    items = [UploadItem(p, f"{prefix}{'sub/' if i % 2 else ''}{p.name}") for i, p in enumerate(paths)]
    total = sum(p.stat().st_size for p in paths)
    # A blob under the prefix that is not an item, and one with the same name but another size:
    # the listing sees them, neither is taken for a match.
    Storage(storage_outputs).upload_bytes(container, prefix + "unrelated.txt", b"x")
    Storage(storage_outputs).upload_bytes(container, items[0].blob_name, b"stale")

    with TcpProxy(port_of(storage_outputs.storage_blob_endpoint), count=True) as proxy:
        st = Storage(with_endpoints(storage_outputs, blob_port=proxy.port))
        seen: list[int] = []
        first = st.upload_files(container, items, seen.append)
        after_first = proxy.snapshot().requests
        assert (first.uploaded, first.skipped, first.bytes_uploaded) == (n, 0, total)
        assert sum(seen) == total
        assert after_first == n + 1  # one listing + n puts, not a HEAD + a put per blob

        # Unchanged: everything skipped, one request (the listing), progress still complete.
        seen.clear()
        second = st.upload_files(container, items, seen.append)
        assert (second.uploaded, second.skipped, second.bytes_uploaded) == (0, n, 0)
        assert sum(seen) == total
        assert proxy.snapshot().requests - after_first == 1

    # One file changed, same size: only the MD5 tells, and exactly that blob is uploaded.
    changed = paths[5]
    new_content = bytes([0xAB]) * changed.stat().st_size
    assert new_content != changed.read_bytes()
    changed.write_bytes(new_content)
    direct = Storage(storage_outputs)
    third = direct.upload_files(container, items)
    assert (third.uploaded, third.skipped, third.bytes_uploaded) == (1, n - 1, len(new_content))
    assert direct.download_bytes(container, items[5].blob_name) == new_content
    for item in items:
        assert direct.download_bytes(container, item.blob_name) == item.path.read_bytes()
    assert direct.delete_prefix(container, prefix) == n + 1


def test_upload_without_a_common_prefix_checks_each_blob(tmp_path: Path, storage_outputs: Outputs) -> None:
    n = 4
    container = storage_outputs.input_container
    tag = secrets.token_hex(3)
    paths = _sized(tmp_path, n)
    # No common directory: one name at the top of the container, the others in different folders.
    items = [UploadItem(paths[0], f"top-{tag}.bin")] + [
        UploadItem(p, f"d{i}-{tag}/{p.name}") for i, p in enumerate(paths[1:])
    ]
    assert common_dir_prefix([i.blob_name for i in items]) == ""

    with TcpProxy(port_of(storage_outputs.storage_blob_endpoint), count=True) as proxy:
        st = Storage(with_endpoints(storage_outputs, blob_port=proxy.port))
        first = st.upload_files(container, items)
        after_first = proxy.snapshot().requests
        assert (first.uploaded, first.skipped) == (n, 0)
        assert after_first == 2 * n  # a HEAD (404) and a put per blob

        paths[2].write_bytes(bytes([0xCD]) * paths[2].stat().st_size)
        second = st.upload_files(container, items)
        assert (second.uploaded, second.skipped) == (1, n - 1)
        assert proxy.snapshot().requests - after_first == n + 1  # n HEADs + one put

    direct = Storage(storage_outputs)
    for item in items:
        assert direct.download_bytes(container, item.blob_name) == item.path.read_bytes()
        direct.delete_prefix(container, item.blob_name)


def test_upload_to_a_missing_container_is_one_clear_error(tmp_path: Path, storage_outputs: Outputs) -> None:
    st = Storage(storage_outputs)
    items = [UploadItem(p, f"j/inputs/{p.name}") for p in _sized(tmp_path, 2)]
    with pytest.raises(NotFoundError, match="listing j/inputs/"):
        st.upload_files(f"missing{secrets.token_hex(3)}", items)


def test_upload_of_an_unreadable_file_is_a_usage_error(tmp_path: Path, storage_outputs: Outputs) -> None:
    st = Storage(storage_outputs)
    items = [UploadItem(tmp_path / "absent.bin", f"u-{secrets.token_hex(3)}/inputs/absent.bin")]
    with pytest.raises(UsageError, match="cannot read"):
        st.upload_files(storage_outputs.input_container, items)
