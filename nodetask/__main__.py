"""Entry point for ``python -m nodetask`` (the zipapp has its own two-line ``__main__``)."""

from __future__ import annotations

import sys

from nodetask.cli import main

if __name__ == "__main__":
    sys.exit(main())
