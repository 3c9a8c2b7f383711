"""localbatch: a local Azure Batch service that the official SDK drives unchanged.

Run it with ``python -m localbatch serve`` (see :mod:`localbatch.cli`). The
REST surface is in :mod:`localbatch.server`, the scheduler and simulated
nodes in :mod:`localbatch.scheduler` and :mod:`localbatch.node`, state in
:mod:`localbatch.store` (SQLite).
"""
