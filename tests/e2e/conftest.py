"""The runner's target fixtures (an outputs file for the session's Azurite + localbatch)."""

from tests.runner.conftest import outputs_file, storage_outputs, target_outputs

__all__ = ["outputs_file", "storage_outputs", "target_outputs"]
