"""The images ``GET /supportedimages`` lists: a realistic, current Batch catalogue.

Each entry is what the service returns (``nodeAgentSKUId``, ``imageReference``,
``osType``, ``capabilities``, ``batchSupportEndOfLife``, ``verificationType``).
End-of-life dates follow the OS vendors' end of standard support; images Azure
has retired (Ubuntu 16.04/18.04/20.04, CentOS) are not listed, so samples that
pick them find nothing, as they do on Azure today.
"""

from __future__ import annotations

from typing import Any


def _image(
    agent: str,
    publisher: str,
    offer: str,
    sku: str,
    os_type: str,
    end_of_life: str,
    verified: bool = True,
    capabilities: tuple[str, ...] = (),
) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "nodeAgentSKUId": agent,
        "imageReference": {"publisher": publisher, "offer": offer, "sku": sku, "version": "latest"},
        "osType": os_type,
        "batchSupportEndOfLife": end_of_life,
        "verificationType": "verified" if verified else "unverified",
    }
    if capabilities:
        doc["capabilities"] = list(capabilities)
    return doc


_U22, _U24, _WIN = "batch.node.ubuntu 22.04", "batch.node.ubuntu 24.04", "batch.node.windows amd64"
_MWS = "microsoftwindowsserver"
_EOL = {
    "ubuntu 22.04": "2027-04-30T00:00:00Z",
    "ubuntu 24.04": "2029-04-30T00:00:00Z",
    "debian 12": "2026-06-10T00:00:00Z",
    "el 9": "2032-05-31T00:00:00Z",
    "windows 2019": "2029-01-09T00:00:00Z",
    "windows 2022": "2031-10-14T00:00:00Z",
    "windows 2025": "2034-10-10T00:00:00Z",
}

# (node agent SKU, publisher, offer, sku, OS type, end of life key, verified)
_CATALOGUE: tuple[tuple[str, str, str, str, str, str, bool], ...] = (
    (_U22, "canonical", "0001-com-ubuntu-server-jammy", "22_04-lts", "linux", "ubuntu 22.04", True),
    (_U22, "canonical", "0001-com-ubuntu-server-jammy", "22_04-lts-gen2", "linux", "ubuntu 22.04", True),
    (_U22, "microsoft-dsvm", "ubuntu-hpc", "2204", "linux", "ubuntu 22.04", True),
    (_U24, "canonical", "ubuntu-24_04-lts", "server", "linux", "ubuntu 24.04", True),
    (_U24, "canonical", "ubuntu-24_04-lts", "server-gen1", "linux", "ubuntu 24.04", True),
    (_U24, "microsoft-dsvm", "ubuntu-hpc", "2404", "linux", "ubuntu 24.04", True),
    ("batch.node.debian 12", "debian", "debian-12", "12", "linux", "debian 12", True),
    ("batch.node.debian 12", "debian", "debian-12", "12-gen2", "linux", "debian 12", True),
    ("batch.node.el 9", "almalinux", "almalinux-x86_64", "9-gen2", "linux", "el 9", True),
    ("batch.node.el 9", "resf", "rockylinux-x86_64", "9-base", "linux", "el 9", False),
    (_WIN, _MWS, "windowsserver", "2019-datacenter", "windows", "windows 2019", True),
    (_WIN, _MWS, "windowsserver", "2022-datacenter", "windows", "windows 2022", True),
    (_WIN, _MWS, "windowsserver", "2022-datacenter-smalldisk", "windows", "windows 2022", True),
    (_WIN, _MWS, "windowsserver", "2025-datacenter", "windows", "windows 2025", True),
)

SUPPORTED_IMAGES: tuple[dict[str, Any], ...] = tuple(
    _image(agent, publisher, offer, sku, os_type, _EOL[eol], verified)
    for agent, publisher, offer, sku, os_type, eol, verified in _CATALOGUE
)


def node_agent_skus() -> list[dict[str, Any]]:
    """The catalogue as ``GET /nodeagentskus`` (api-versions before 2020-09-01) lists it:
    one entry per node agent SKU with its verified images."""
    skus: dict[str, dict[str, Any]] = {}
    for image in SUPPORTED_IMAGES:
        sku = skus.setdefault(
            image["nodeAgentSKUId"],
            {"id": image["nodeAgentSKUId"], "verifiedImageReferences": [], "osType": image["osType"]},
        )
        if image["verificationType"] == "verified":
            sku["verifiedImageReferences"].append(dict(image["imageReference"]))
    return list(skus.values())


def supported_images() -> list[dict[str, Any]]:
    """Fresh copies of the catalogue (callers may filter and project them)."""
    return [{**d, "imageReference": dict(d["imageReference"])} for d in SUPPORTED_IMAGES]
