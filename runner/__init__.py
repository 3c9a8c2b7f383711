"""runner: submit word-count (or any per-file) work to Azure Batch or to the local target."""

__version__ = "0.1.0"
