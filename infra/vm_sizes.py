"""What an Azure VM size name says about the size: its vCPUs and whether it can use trusted launch.

Azure names sizes ``Standard_<family><vCPUs><features>[_v<version>]``; both answers
come from the name alone (no Azure call), so a bad combination is refused before
``pulumi up`` creates anything. Only sizes *known* not to support trusted launch
are refused; an unknown or future name is left to Azure.
"""

from __future__ import annotations

import re

# Azure VM size names carry the vCPU count after the family letters: Standard_D2s_v5 (2),
# Standard_NC24ads_A100_v4 (24), Standard_E8-4s_v5 (8, of which 4 active).
_VM_SIZE_VCPUS = re.compile(r"^Standard_[A-Za-z]+([0-9]+)", re.IGNORECASE)

# Families that cannot boot with trusted launch (learn.microsoft.com, "Trusted launch for
# Azure virtual machines" and "Support for generation 2 VMs"): generation-1-only sizes,
# the M-series up to v2, and confidential sizes (they take securityType confidentialVM).
_NO_TRUSTED_LAUNCH: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^Basic_A\d+$", re.I), "Basic A series, generation 1 only"),
    (re.compile(r"^Standard_A\d+m?(_v2)?$", re.I), "A/Av2 series, generation 1 only"),
    (
        re.compile(r"^Standard_(D|E)\d+_v[23]$", re.I),
        "Dv2/Dv3/Ev3 series without premium storage, generation 1 only",
    ),
    (re.compile(r"^Standard_F\d+$", re.I), "F series (v1), generation 1 only"),
    (re.compile(r"^Standard_(G|GS|H)\d+", re.I), "G/GS/H series, generation 1 only"),
    (re.compile(r"^Standard_M\d+[a-z-\d]*?(_v2)?$", re.I), "M-series up to v2"),
    (re.compile(r"^Standard_(DC|EC)\d+[a-z]*(as|ads|es|eds)_v\d$", re.I), "confidential VM series"),
)


def vcpus_of(vm_size: str) -> int | None:
    """The vCPUs an Azure VM size name states, or None when the name does not follow the scheme."""
    match = _VM_SIZE_VCPUS.match(vm_size.strip())
    vcpus = int(match.group(1)) if match else 0
    return vcpus or None


def trusted_launch_unsupported(vm_size: str) -> str | None:
    """Why ``vm_size`` cannot use trusted launch (its family), or None when it can or is unknown."""
    name = vm_size.strip()
    for pattern, reason in _NO_TRUSTED_LAUNCH:
        if pattern.match(name):
            return reason
    return None
