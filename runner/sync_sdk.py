"""The sync Azure SDKs without their async transport: what :mod:`runner.storage` imports under.

Contract:

* :func:`without_aiohttp_transport` is a context manager for the import of
  ``azure.storage.blob``. That package's shared-key policy imports azure-core's
  aiohttp transport at import time, only to recognise it in requests of *async*
  clients, and falls back to ``None`` when aiohttp is missing (a case the SDK
  handles). The runner's clients are sync and never send through aiohttp, so
  while the block runs the import of ``azure.core.pipeline.transport._aiohttp``
  fails as if aiohttp were not installed: a ``runner`` command does not pay
  aiohttp's import (0.3 s of CPU, over 1 s on a busy 2-core machine).
* Nothing else changes: after the block the module can be imported as usual
  (localbatch, which is built on aiohttp, is unaffected), and when the transport
  was already imported, or the Blob SDK already loaded, the block does nothing.
  It imports no SDK itself (each SDK is imported in one place: docs/architecture.md).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

#: azure-core's aiohttp transport, imported lazily by ``azure.core.pipeline.transport``.
AIOHTTP_TRANSPORT = "azure.core.pipeline.transport._aiohttp"


@contextmanager
def without_aiohttp_transport() -> Iterator[None]:
    """While the block runs, importing :data:`AIOHTTP_TRANSPORT` raises ``ImportError``."""
    if AIOHTTP_TRANSPORT in sys.modules or "azure.storage.blob" in sys.modules:
        yield
        return
    sys.modules[AIOHTTP_TRANSPORT] = None  # type: ignore[assignment]  # Python's "not importable"
    try:
        yield
    finally:
        if AIOHTTP_TRANSPORT in sys.modules and sys.modules[AIOHTTP_TRANSPORT] is None:
            del sys.modules[AIOHTTP_TRANSPORT]
