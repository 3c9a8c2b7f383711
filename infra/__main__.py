"""The Pulumi program (``Pulumi.yaml``: ``main: infra/``): config, one component, exports."""

from __future__ import annotations

import pulumi

from infra.config import load_config
from infra.environment import BatchEnvironment

environment = BatchEnvironment("azbatch", load_config())
for key, value in environment.exports().items():
    pulumi.export(key, value)
