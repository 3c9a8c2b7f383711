"""One input blob and one result blob per pack (issue 16): where they are and how they are made.

A packed task that counts words (``nodetask pack``, :mod:`runner.packing`) costs one storage
request per file each way when each file is its own blob. A *bundled* job instead gives each
pack one input tar and one results tar (:mod:`nodetask.bundle` is the format):

* :func:`bundled`: a job's packs are bundled when it counts words (no ``--command``: the
  user's outputs are theirs, as they wrote them) and does not ``--allow-failures`` (its
  placeholders stand for per-file counts blobs). Derived from the manifest, so a resume,
  ``retry``, ``results`` and ``status`` agree with the submission that made the tasks.
* The input tar of pack ``p<k>`` is ``<job-id>/packs/p<k>.tar`` in the input container,
  members ``<file id>/<node name>`` in file-id order, built deterministically from the local
  files (:func:`input_tars`), so a resume skips one already there with the same size and
  Content-MD5 and uploads one that is missing. Per-file input blobs are not written for
  bundled files.
* Its results tar is ``<job-id>/p<k>/results.tar`` in the output container, members
  ``<file id>/<result name>``: what an unpacked task writes under ``<job-id>/<file id>/``.
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Mapping
from pathlib import Path

from nodetask.bundle import RESULTS_TAR, member_parts, read_member, write_tar
from runner.manifest import Manifest
from runner.storage import UploadItem


def bundled(manifest: Manifest) -> bool:
    """Whether the job's packs read an input tar and write a results tar (module docstring)."""
    return manifest.bundled


def input_tar_blob(job_id: str, pack_id: str) -> str:
    return f"{job_id}/packs/{pack_id}.tar"


def results_tar_blob(job_id: str, pack_id: str) -> str:
    return f"{job_id}/{pack_id}/{RESULTS_TAR}"


def bundled_files(manifest: Manifest) -> dict[str, str]:
    """File id -> the pack that carries it in a bundled job (empty otherwise)."""
    if not bundled(manifest):
        return {}
    return {fid: p.task_id for p in manifest.packs for fid in p.file_ids}


def input_tars(manifest: Manifest, local: Mapping[str, Path], workdir: Path) -> list[UploadItem]:
    """Write each pack's input tar under ``workdir`` from the local files (``{file id: path}``);
    the uploads that put them in place. Raises ``OSError`` when a file cannot be read."""
    by_id = manifest.by_task
    items = []
    for pack in manifest.packs if bundled(manifest) else ():
        path = workdir / f"{pack.task_id}.tar"
        write_tar(path, [(f"{fid}/{by_id[fid].node_name}", local[fid]) for fid in pack.file_ids])
        items.append(UploadItem(path, input_tar_blob(manifest.job_id, pack.task_id)))
    return items


def changed_members(tar_bytes: bytes, local: Mapping[str, Path]) -> list[str]:
    """The file ids of an input tar (its bytes) whose local file (``{file id: path}``) now holds
    other bytes than its member, or cannot be read. A tar that cannot be read tells nothing:
    then none (the tar is uploaded again, as a missing one is)."""
    held: dict[str, bytes] = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(tar_bytes), mode="r:") as tar:
            for info in tar:
                parts, why = member_parts(info)
                if why is None and parts[0] in local:
                    held[parts[0]] = read_member(tar, info)
    except tarfile.TarError:
        return []
    out = []
    for fid, data in held.items():
        try:
            same = local[fid].read_bytes() == data
        except OSError:
            same = False
        if not same:
            out.append(fid)
    return out
