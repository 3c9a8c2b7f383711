"""Where the component's children go, shared by the modules that declare them.

A :class:`Scope` carries the parent component's resource options, the resource
group and its location, the tags, and the registry of every child by logical
name (``BatchEnvironment.children``), so a builder module can declare resources
without holding the component itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeVar

import pulumi
from pulumi import Output, ResourceOptions

_R = TypeVar("_R", bound=pulumi.Resource)


@dataclass
class Scope:
    """The parent, resource group, location and tags of new children, and the children so far."""

    parent: pulumi.Resource
    resource_group_name: Output[str]
    location: Output[str]
    tags: dict[str, str]
    children: dict[str, pulumi.Resource] = field(default_factory=dict)

    def opts(self, depends_on: list[pulumi.Resource] | None = None) -> ResourceOptions:
        """Options of a child: parented to the component, after ``depends_on``."""
        return ResourceOptions(parent=self.parent, depends_on=depends_on)

    def keep(self, name: str, resource: _R) -> _R:
        """Record ``resource`` under its logical ``name`` (unique within the component)."""
        if name in self.children:
            raise ValueError(f"two children named {name}")
        self.children[name] = resource
        return resource
