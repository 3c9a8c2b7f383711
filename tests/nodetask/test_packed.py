"""``nodetask pack`` as a real process: per-file results byte for byte those of unpacked runs,
and a failing file inside a pack reported as that file's failure while the others deliver."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from nodetask.bundle import RESULTS_TAR, write_tar
from nodetask.errors import InputError
from nodetask.packed import ERROR_FILE, CountOptions, count_one, run_pack
from nodetask.tarpack import run_tar_pack
from tests.nodetask.process import run_nodetask
from tests.nodetask.reference import generate_text

ENV = {"AZ_BATCH_NODE_ID": "tvm-1", "AZ_BATCH_TASK_ID": "p1", "AZ_BATCH_JOB_ID": "j", "AZ_BATCH_POOL_ID": "p"}
#: File id -> node-side name (the runner's safe names keep dots, dashes, underscores, letters in
#: any script). Odd: no extension, a trailing dot, a leading underscore, Unicode, two dots.
CORPUS = {
    "1": "book.txt",
    "2": "R\u00e9sum\u00e9_\u00e9t\u00e9.md",
    "3": "no_extension",
    "4": "trailing.",
    "5": "_hidden.tar.gz",
    "10": "\u65e5\u672c\u8a9e.txt",
}


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _lay_out(tmp_path: Path) -> Path:
    in_dir = tmp_path / "in"
    for n, (file_id, name) in enumerate(CORPUS.items()):
        (in_dir / file_id).mkdir(parents=True)
        data = generate_text(seed=n, pieces=300 + 50 * n)
        if file_id == "3":
            data += b"\xff\xfe invalid \xc3 utf-8 \xe2\x82"
        (in_dir / file_id / name).write_bytes(data)
    return in_dir


def test_packed_results_are_byte_for_byte_those_of_unpacked_runs(tmp_path: Path) -> None:
    in_dir = _lay_out(tmp_path)
    packed = run_nodetask(
        ["pack", "--in-dir", "in", "--numwords", "7", "--output-dir", "packed", "--workers", "1"],
        tmp_path,
        ENV,
    )
    assert packed.returncode == 0, packed.stderr
    for file_id, name in CORPUS.items():
        single = run_nodetask(
            ["--filepath", f"in/{file_id}/{name}", "--numwords", "7", "--output-dir", f"single/{file_id}"],
            tmp_path,
            ENV,
        )
        assert single.returncode == 0, single.stderr
    assert _tree(tmp_path / "packed") == _tree(tmp_path / "single")
    assert len(_tree(tmp_path / "packed")) == 2 * len(CORPUS)
    # File-id order, numeric ids numerically (10 after 5), and no error file left behind.
    assert not list((tmp_path / "packed").rglob(ERROR_FILE))
    assert in_dir.is_dir()


def test_a_failing_file_is_that_files_failure_and_the_others_deliver(tmp_path: Path) -> None:
    in_dir = _lay_out(tmp_path)
    broken = in_dir / "2" / CORPUS["2"]
    broken.unlink()
    os.mkfifo(broken)  # not a regular file: nodetask's bad input (for root too, unlike chmod 0)
    (in_dir / "7").mkdir()
    (in_dir / "7" / "escape.txt").symlink_to(in_dir / "1" / CORPUS["1"])  # never followed
    proc = run_nodetask(["pack", "--in-dir", "in", "--numwords", "3", "--output-dir", "out"], tmp_path, ENV)
    assert proc.returncode == 2, proc.stderr
    out = tmp_path / "out"
    failed = sorted(p.parent.name for p in out.rglob(ERROR_FILE))
    assert failed == ["2", "7"]
    assert "not a regular file" in (out / "2" / ERROR_FILE).read_text(encoding="utf-8")
    assert "symbolic link" in (out / "7" / ERROR_FILE).read_text(encoding="utf-8")
    assert sorted(p.name for p in (out / "2").iterdir()) == [ERROR_FILE]  # nothing half-written
    for file_id in ("1", "3", "4", "5", "10"):
        assert len(list((out / file_id).iterdir())) == 2, file_id
    assert "2 of 7 file(s) failed: 2, 7" in proc.stderr


def test_a_command_runs_once_per_file_and_its_failure_is_that_files(tmp_path: Path) -> None:
    _lay_out(tmp_path)
    template = "case {input} in *no_ext*) echo broken >&2; exit 3;; esac; wc -c < {input} > {output_dir}/n"
    proc = run_nodetask(["pack", "--in-dir", "in", "--command", template, "--output-dir", "out"], tmp_path)
    assert proc.returncode == 2
    out = tmp_path / "out"
    assert "exited with code 3" in (out / "3" / ERROR_FILE).read_text(encoding="utf-8")
    assert "broken" in proc.stderr
    for file_id, name in CORPUS.items():
        if file_id != "3":
            size = (tmp_path / "in" / file_id / name).stat().st_size
            assert (out / file_id / "n").read_text().strip() == str(size)


def _hostile(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.mtime = 0
    return info


def _input_tar(tmp_path: Path, in_dir: Path) -> Path:
    """The runner's input tar of the corpus, plus members a hostile tar could hold."""
    tar_path = tmp_path / "in.tar"
    write_tar(tar_path, [(f"{fid}/{name}", in_dir / fid / name) for fid, name in CORPUS.items()])
    with tarfile.open(tar_path, "a") as tar:
        link = _hostile(tarfile.TarInfo("7/passwd"))
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        dev = _hostile(tarfile.TarInfo("11/dev"))
        dev.type = tarfile.CHRTYPE
        for info in (link, dev):
            tar.addfile(info)
        for name in ("8/../../escape.txt", "/abs.txt", "9/a.txt", "9/b.txt"):
            info = _hostile(tarfile.TarInfo(name))
            info.size = 3
            tar.addfile(info, io.BytesIO(b"hi\n"))
    return tar_path


def test_input_and_results_tars_carry_the_same_bytes_and_hostile_members_fail_alone(tmp_path: Path) -> None:
    source = _lay_out(tmp_path / "src")
    _input_tar(tmp_path, source)
    files = [(f"{fid}/{name}", source / fid / name) for fid, name in CORPUS.items()]
    write_tar(tmp_path / "a.tar", files)
    for _, path in files:
        os.utime(path, (12345, 12345))
        path.chmod(0o600)
    write_tar(tmp_path / "b.tar", files)  # deterministic: the same bytes give the same tar
    assert (tmp_path / "a.tar").read_bytes() == (tmp_path / "b.tar").read_bytes()
    # Disk mode (no --results-tar): the tar fills IN_DIR, results per file under OUT_DIR/<file id>/.
    # Tar mode (--in-tar and --results-tar): the same results, straight from the tar to the tar.
    args = ["pack", "--in-tar", "in.tar", "--numwords", "7", "--workers", "1", "--chunk-size", "100"]
    disk = run_nodetask([*args, "--in-dir", "in", "--output-dir", "disk"], tmp_path, ENV)
    proc = run_nodetask([*args, "--in-dir", "in2", "--output-dir", "out", "--results-tar"], tmp_path, ENV)
    assert disk.returncode == 2 and proc.returncode == 2, disk.stderr + proc.stderr
    assert _tree(tmp_path / "in") == _tree(source)  # the good members, nothing else
    assert not (tmp_path / "escape.txt").exists() and not (tmp_path.parent / "escape.txt").exists()
    out = tmp_path / "out"
    assert not (tmp_path / "in2").exists() and os.listdir(out) == [RESULTS_TAR]  # nothing per file
    with tarfile.open(out / RESULTS_TAR) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar}  # type: ignore[union-attr]
    assert members == _tree(tmp_path / "disk")  # exactly the names and bytes disk mode writes
    assert list(members) == sorted(members, key=lambda n: (int(n.split("/")[0]), n))  # file-id order
    (tmp_path / "expected").mkdir()
    write_tar(tmp_path / "expected" / "r.tar", [(n, tmp_path / "disk" / n) for n in members])
    assert (out / RESULTS_TAR).read_bytes() == (tmp_path / "expected" / "r.tar").read_bytes()
    failed = sorted((n.split("/")[0] for n in members if n.endswith(ERROR_FILE)), key=int)
    assert failed == ["7", "8", "9", "11"]
    assert "not a regular file" in members[f"7/{ERROR_FILE}"].decode()
    assert "unsafe member name" in members[f"8/{ERROR_FILE}"].decode()
    assert "more than one file" in members[f"9/{ERROR_FILE}"].decode()
    assert "names no file id" in proc.stderr and "names no file id" in disk.stderr
    assert sum(n.endswith("_counts.json") for n in members) == len(CORPUS)

    # A merge reads the counts members of the tar, only those of its range of file ids.
    (tmp_path / "counts").mkdir()
    (out / RESULTS_TAR).rename(tmp_path / "counts" / "p1.1-4.tar")
    merged = run_nodetask(["merge", "counts", "--numwords", "5", "--output-dir", "m"], tmp_path, ENV)
    plain = [
        str(p.relative_to(tmp_path))
        for fid in ("1", "2", "3", "4")
        for p in (tmp_path / "disk" / fid).glob("*_counts.json")
    ]
    direct = run_nodetask(["merge", *plain, "--numwords", "5", "--output-dir", "d"], tmp_path, ENV)
    assert merged.returncode == 0 and direct.returncode == 0, merged.stderr + direct.stderr
    assert (tmp_path / "m" / "corpus_counts.json").read_bytes() == (
        tmp_path / "d" / "corpus_counts.json"
    ).read_bytes()


def test_a_tar_cut_short_fails_the_pack_in_both_modes_and_writes_no_results(tmp_path: Path) -> None:
    source = _lay_out(tmp_path / "src")
    files = [(f"{fid}/{name}", source / fid / name) for fid, name in CORPUS.items()]
    write_tar(tmp_path / "whole.tar", files)
    cut = tmp_path / "cut.tar"
    cut.write_bytes((tmp_path / "whole.tar").read_bytes()[:5000])  # inside the second member
    opts = CountOptions(3, False, 1, 1024, 1 << 30)
    with pytest.raises(InputError, match="cannot read the pack's input tar"):
        run_tar_pack(cut, tmp_path / "tar_out", opts, ENV)
    with pytest.raises(InputError, match="cannot read the pack's input tar"):
        run_pack(tmp_path / "in", tmp_path / "disk_out", lambda p, o: count_one(p, opts, o, ENV), in_tar=cut)
    assert not (tmp_path / "tar_out").exists() and not (tmp_path / "disk_out").exists()
