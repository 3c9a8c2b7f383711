"""Entry point: ``python -m localbatch serve ...``."""

from __future__ import annotations

import sys

from localbatch.cli import main

if __name__ == "__main__":
    sys.exit(main())
