"""Make ``docs/report.png``: the execution report of a real 200-file local job, in headless Chromium.

Starts a private Azurite + localbatch (2 nodes x 2 slots), runs ``runner submit`` on 200
generated text files (word counts by nodetask, plus the merge), writes the report and
screenshots it. Usage: ``python docs/report_screenshot.py [OUT.png]`` (about two minutes).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from typer.testing import CliRunner

from bench.harness import local_servers
from runner.cli import app
from runner.outputs import write_file
from runner.pool_spec import PoolSpec
from tests.e2e.test_submit import write_corpus
from tests.report.browser import file_url, open_page

REPO = Path(__file__).resolve().parent.parent


def main(out: Path) -> None:
    with local_servers(PoolSpec(dedicated_nodes=2, task_slots_per_node=2)) as servers:
        tmp = Path(tempfile.mkdtemp(prefix="report-shot-", dir=servers.root))
        outputs = tmp / "outputs.json"
        write_file(outputs, servers.outputs)
        write_corpus(tmp / "corpus", {f"book-{i:03d}.txt": 2000 + (i * 7919) % 30000 for i in range(200)})
        base = ["--outputs", str(outputs)]
        res = CliRunner().invoke(
            app, [*base, "submit", str(tmp / "corpus"), "--job-id", "demo-200", "--dest", str(tmp / "r")]
        )
        assert res.exit_code == 0, res.stderr
        res = CliRunner().invoke(app, [*base, "report", "demo-200", "-o", str(tmp / "report.html")])
        assert res.exit_code == 0, res.stderr
        page = open_page(file_url(tmp / "report.html"), {"ms": "document.body.dataset.renderMs"}, width=1280)
        assert not page.console_errors and not page.exceptions, (page.console_errors, page.exceptions)
        out.write_bytes(page.screenshot)
        print(f"{out}: rendered in {page.values['ms']} ms")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "docs" / "report.png")
