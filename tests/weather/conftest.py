"""The runner's target fixtures, for tests that put Azure's weather between it and the services."""

from tests.runner.conftest import outputs_file, storage_outputs, target_outputs

__all__ = ["outputs_file", "storage_outputs", "target_outputs"]
