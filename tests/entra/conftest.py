"""The session's shared-key target, to compare entra results with."""

from tests.runner.conftest import outputs_file, storage_outputs, target_outputs

__all__ = ["outputs_file", "storage_outputs", "target_outputs"]
