"""Validated configuration of the Pulumi program.

:func:`load_config` reads the project's configuration (the keys declared in
``Pulumi.yaml``; the engine hands them to the program as ``azbatch:<key>``) and
returns an :class:`InfraConfig`. Every rule is checked before any resource is
declared; a bad value raises :class:`InfraConfigError`, whose message names the
full key (``azbatch:nodeCount``) and the values it accepts. ``pulumi up`` shows
that one line instead of a traceback (it is a ``pulumi.RunError``).

The pool itself is a :class:`runner.pool_spec.PoolSpec`: the same definition the
local target uses. Keys without a value take the defaults of ``PoolSpec``; the
defaults declared in ``Pulumi.yaml`` are the same values (a test checks it).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import TypeVar

import pulumi

from runner.pool_spec import AutoscaleSpec, ImageSpec, PoolSpec

_T = TypeVar("_T")
_E = TypeVar("_E", bound="_StrEnum")

# Batch pool ids: letters, digits, hyphens and underscores, at most 64 characters.
_POOL_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# Batch accepts at most 256 task slots per node (and at most 4x the node's vCPUs).
MAX_TASK_SLOTS_PER_NODE = 256
# Azure VM size names carry the vCPU count after the family letters: Standard_D2s_v5 (2),
# Standard_NC24ads_A100_v4 (24), Standard_E8-4s_v5 (8, of which 4 active).
_VM_SIZE_VCPUS = re.compile(r"^Standard_[A-Za-z]+([0-9]+)", re.IGNORECASE)


def vcpus_of(vm_size: str) -> int | None:
    """The vCPUs an Azure VM size name states, or None when the name does not follow the scheme."""
    match = _VM_SIZE_VCPUS.match(vm_size.strip())
    vcpus = int(match.group(1)) if match else 0
    return vcpus or None


class _StrEnum(str, Enum):
    """An enum whose values are the configuration's spelling."""


class AuthMode(_StrEnum):
    """How clients authenticate to the Batch and Storage data planes."""

    SHARED_KEY = "sharedKey"
    """Account keys (exported as secrets); Entra ID is accepted as well."""
    ENTRA = "entra"
    """Entra ID only: shared keys are disabled and never exported."""


class PrincipalKind(_StrEnum):
    """What kind of principal runs ``pulumi up`` (role assignments must say it in ``entra`` mode)."""

    USER = "User"
    SERVICE_PRINCIPAL = "ServicePrincipal"
    GROUP = "Group"


class InfraConfigError(pulumi.RunError):
    """A configuration value is ill-typed, out of range or not one of the allowed values.

    ``key`` is the full configuration key (``azbatch:nodeCount``); the message
    starts with it and says which values are allowed.
    """

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key


@dataclass(frozen=True)
class InfraConfig:
    """Everything the program needs, validated.

    ``location`` is ``None`` when the stack does not set ``azbatch:location``: the
    resource group then takes the provider's ``azure-native:location``.
    ``deployer_type`` is the kind of the principal that runs ``pulumi up`` (a person
    or a CI service principal); it matters only in ``entra`` mode.
    """

    pool: PoolSpec
    auth_mode: AuthMode = AuthMode.SHARED_KEY
    location: str | None = None
    deployer_type: PrincipalKind = PrincipalKind.USER

    @property
    def entra(self) -> bool:
        """True when shared keys are disabled (``authMode: entra``)."""
        return self.auth_mode is AuthMode.ENTRA


class _Reader:
    """Typed access to one configuration bag that reports errors by full key."""

    def __init__(self, config: pulumi.Config) -> None:
        self._config = config

    def key(self, name: str) -> str:
        return self._config.full_key(name)

    def _typed(self, name: str, read: Callable[[str], _T | None], kind: str) -> _T | None:
        try:
            return read(name)
        except pulumi.ConfigTypeError:
            raise InfraConfigError(
                self.key(name), f"must be {kind}, got {self._config.get(name)!r}"
            ) from None

    def string(self, name: str, default: str) -> str:
        value = self._config.get(name)
        if value is None:
            return default
        value = value.strip()
        if not value:
            raise InfraConfigError(self.key(name), "must not be empty")
        return value

    def optional_string(self, name: str) -> str | None:
        value = self._config.get(name)
        if value is None or not value.strip():
            return None
        return value.strip()

    def integer(self, name: str, default: int, minimum: int, maximum: int | None = None) -> int:
        value = self._typed(name, self._config.get_int, "an integer")
        result = default if value is None else value
        if result < minimum or (maximum is not None and result > maximum):
            allowed = f">= {minimum}" if maximum is None else f"between {minimum} and {maximum}"
            raise InfraConfigError(self.key(name), f"must be an integer {allowed}, got {result}")
        return result

    def choice(self, name: str, kind: type[_E], default: _E) -> _E:
        value = self.string(name, default.value)
        try:
            return kind(value)
        except ValueError:
            allowed = ", ".join(member.value for member in kind)
            raise InfraConfigError(self.key(name), f"must be one of {allowed}, got {value!r}") from None

    def boolean(self, name: str, default: bool) -> bool:
        value = self._typed(name, self._config.get_bool, "true or false")
        return default if value is None else value


def load_config(config: pulumi.Config | None = None) -> InfraConfig:
    """Read and validate the project configuration (default: the current project's bag)."""
    read = _Reader(config if config is not None else pulumi.Config())
    defaults = PoolSpec()
    default_image = ImageSpec()
    default_autoscale = AutoscaleSpec()

    auth_mode = read.choice("authMode", AuthMode, AuthMode.SHARED_KEY)
    deployer_type = read.choice("deployerPrincipalType", PrincipalKind, PrincipalKind.USER)

    pool_id = read.string("poolId", defaults.pool_id)
    if not _POOL_ID.match(pool_id):
        raise InfraConfigError(
            read.key("poolId"),
            f"must be 1 to 64 letters, digits, hyphens or underscores, got {pool_id!r}",
        )

    # The bounds are checked even when autoscale is off, so a stack that turns it on later
    # cannot discover a bad value only then.
    min_nodes = read.integer("minNodes", default_autoscale.min_nodes, minimum=0)
    max_nodes = read.integer("maxNodes", default_autoscale.max_nodes, minimum=1)
    if max_nodes < min_nodes:
        raise InfraConfigError(read.key("maxNodes"), f"must be >= minNodes ({min_nodes}), got {max_nodes}")
    autoscale = (
        AutoscaleSpec(
            min_nodes=min_nodes,
            max_nodes=max_nodes,
            evaluation_interval_minutes=default_autoscale.evaluation_interval_minutes,
        )
        if read.boolean("autoscale", False)
        else None
    )

    image = ImageSpec(
        publisher=read.string("imagePublisher", default_image.publisher),
        offer=read.string("imageOffer", default_image.offer),
        sku=read.string("imageSku", default_image.sku),
        version=read.string("imageVersion", default_image.version),
        node_agent_sku_id=read.string("nodeAgentSkuId", default_image.node_agent_sku_id),
    )
    vm_size = read.string("vmSize", defaults.vm_size)
    task_slots = read.integer(
        "taskSlotsPerNode", defaults.task_slots_per_node, minimum=1, maximum=MAX_TASK_SLOTS_PER_NODE
    )
    vcpus = vcpus_of(vm_size)
    if vcpus is not None and task_slots > 4 * vcpus:
        # Batch's own limit: at most 4 x the vCPUs of the pool's VM size (and 256).
        raise InfraConfigError(
            read.key("taskSlotsPerNode"),
            f"must be at most {4 * vcpus} (4 x the {vcpus} vCPUs of vmSize {vm_size}), got {task_slots}",
        )
    pool = PoolSpec(
        pool_id=pool_id,
        vm_size=vm_size,
        dedicated_nodes=read.integer("nodeCount", defaults.dedicated_nodes, minimum=0),
        spot_nodes=read.integer("spotNodeCount", defaults.spot_nodes, minimum=0),
        task_slots_per_node=task_slots,
        image=image,
        start_task=defaults.start_task,
        autoscale=autoscale,
        tags=defaults.tags,
    )
    return InfraConfig(
        pool=pool,
        auth_mode=auth_mode,
        location=read.optional_string("location"),
        deployer_type=deployer_type,
    )
