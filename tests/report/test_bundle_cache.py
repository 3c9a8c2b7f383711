"""The charts' JavaScript bundle is built once per vl-convert version and kept in RUNNER_HOME."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner import report_html


def test_the_bundle_is_built_once_and_then_read_from_runner_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RUNNER_HOME", str(tmp_path / "home"))
    first = report_html.vega_js()
    [kept] = (tmp_path / "home" / "cache").glob("vega-bundle-*.js")
    assert kept.read_text(encoding="utf-8") == first and "vegaEmbed" in first
    kept.write_text("/* read from the cache */", encoding="utf-8")
    assert report_html.vega_js() == "/* read from the cache */"


def test_a_home_that_cannot_be_written_only_costs_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory", encoding="utf-8")
    monkeypatch.setenv("RUNNER_HOME", str(blocker))
    assert "vegaEmbed" in report_html.vega_js()
