"""The runner runs without the Pulumi program's dependencies (they are the ``infra`` extra).

``make demo`` and ``pipx install .`` install only the runner's own dependencies, so a
``runner submit`` must never import ``pulumi`` or ``pulumi_azure_native``. The check runs
the real CLI in a fresh interpreter in which importing either one fails.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

# A meta-path finder that refuses the Pulumi packages, installed before the runner loads.
_BLOCK = """
import importlib.abc, sys
class _NoPulumi(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("pulumi", "pulumi_azure_native"):
            raise ImportError(f"{name} is not installed (blocked by the test)")
        return None
sys.meta_path.insert(0, _NoPulumi())
import pkgutil, importlib, runner
for mod in pkgutil.iter_modules(runner.__path__):
    importlib.import_module("runner." + mod.name)
from runner.cli import main
sys.argv = ["runner", *sys.argv[1:]]
main()
"""


def test_submit_runs_without_pulumi_installed(tmp_path: Path, outputs_file: Path) -> None:
    corpus = tmp_path / "in"
    corpus.mkdir()
    (corpus / "a.txt").write_text("pulumi is not needed to count words words\n", encoding="utf-8")
    dest = tmp_path / "results"
    args = ["--outputs", str(outputs_file), "--json", "submit", str(corpus), "--job-id", "runtime-deps-only"]
    proc = subprocess.run(
        [sys.executable, "-c", _BLOCK, *args, "--dest", str(dest)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["corpus"]["words"] == 8
    assert "blocked by the test" not in proc.stderr


def test_only_the_sdk_edge_imports_azure_batch() -> None:
    """Progress, results, reports and views read Batch's state from runner.batch_types:
    importing them loads no Batch SDK (only runner/batch.py imports it)."""
    probe = (
        "import sys\n"
        "import runner.progress, runner.report, runner.results, runner.job_views, runner.execution\n"
        "import runner.pool_watch, runner.image_eol, runner.exec_summary, runner.trace, runner.report_html\n"
        "print('azure.batch' in sys.modules)\n"
    )
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"


# The real CLI in a fresh interpreter; at its end, which aiohttp modules it loaded.
_AIOHTTP_PROBE = """
import sys
from runner.cli import main
sys.argv = ["runner", *sys.argv[1:]]
try:
    main()
finally:
    names = ("aiohttp", "azure.core.pipeline.transport._aiohttp")
    loaded = sorted(m for m in sys.modules if m in names or m.startswith("aiohttp."))
    print("LOADED:" + ",".join(loaded), file=sys.stderr)
"""


def test_a_submit_does_not_import_aiohttp(tmp_path: Path, outputs_file: Path) -> None:
    """The runner's SDK clients are sync: a submit (shared key, upload, tasks, download) works
    without loading aiohttp, which the Blob SDK would import only to recognise async requests
    (runner/sync_sdk.py). aiohttp is installed here (localbatch runs on it)."""
    import importlib.util

    assert importlib.util.find_spec("aiohttp") is not None  # else this test could not fail
    corpus = tmp_path / "in"
    corpus.mkdir()
    (corpus / "a.txt").write_text("no aiohttp aiohttp here\n", encoding="utf-8")
    args = ["--outputs", str(outputs_file), "--json", "submit", str(corpus), "--no-cache"]
    args += ["--job-id", "no-aiohttp", "--dest", str(tmp_path / "results")]
    proc = subprocess.run(
        [sys.executable, "-c", _AIOHTTP_PROBE, *args], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["corpus"]["words"] == 4
    assert "LOADED:\n" in proc.stderr, proc.stderr[-2000:]
