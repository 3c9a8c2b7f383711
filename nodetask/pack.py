"""Build ``nodetask.pyz``: the package as one reproducible zipapp file.

Layout of the archive: the ``nodetask/`` package (its ``*.py`` files) and a
two-line top-level ``__main__.py``, behind a ``#!/usr/bin/env python3``
line, so ``python3 nodetask.pyz --filepath ...`` works with nothing but the
standard library. The bytes depend only on the source files: entries are
sorted, timestamps fixed to 1980-01-01, permissions fixed, no compression
(compressed bytes could differ between zlib versions), so the runner can name
the uploaded file by its content hash.
"""

from __future__ import annotations

import io
import os
import tempfile
import zipfile
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
SHEBANG = b"#!/usr/bin/env python3\n"
ROOT_MAIN = (
    '"""nodetask zipapp entry point."""\n'
    "import sys\n\n"
    "from nodetask.cli import main\n\n"
    'if __name__ == "__main__":\n'
    "    sys.exit(main())\n"
)
_EPOCH = (1980, 1, 1, 0, 0, 0)


def _entry(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=_EPOCH)
    info.compress_type = zipfile.ZIP_STORED
    info.external_attr = 0o100644 << 16
    info.create_system = 3  # Unix, whatever the building OS
    return info


def pyz_bytes(package_dir: Path = PACKAGE_DIR) -> bytes:
    """The archive's bytes, built in memory."""
    sources = sorted(p for p in package_dir.glob("*.py") if p.is_file())
    buf = io.BytesIO()
    buf.write(SHEBANG)
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(_entry("__main__.py"), ROOT_MAIN.encode("utf-8"))
        for src in sources:
            zf.writestr(_entry(f"nodetask/{src.name}"), src.read_bytes())
    return buf.getvalue()


def build_pyz(dest: Path) -> Path:
    """Write the zipapp to ``dest`` (atomically, mode 0755) and return ``dest``."""
    data = pyz_bytes()
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o755)
        os.replace(tmp, dest)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return dest
