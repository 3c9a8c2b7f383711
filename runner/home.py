"""Where the runner keeps its per-user state (the local target): ``RUNNER_HOME``.

``RUNNER_HOME`` when set (made absolute); otherwise platformdirs' user data
directory for ``azbatch-runner`` (``~/.local/share/azbatch-runner`` on Linux,
``$XDG_DATA_HOME`` honoured; ``~/Library/Application Support/…`` on macOS), so
the same local target answers whatever the current directory is.
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

HOME_ENV = "RUNNER_HOME"
APP_NAME = "azbatch-runner"


def runner_home() -> Path:
    """The runner's home directory (not created here)."""
    override = os.environ.get(HOME_ENV)
    if override:
        return Path(override).expanduser().resolve()
    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False)).resolve()
