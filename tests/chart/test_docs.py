"""values.yaml documents every key; README table and schema are generated from it, not edited."""

from __future__ import annotations

import subprocess
import sys

import pytest
from scripts import chart_docs

from tests.chart.helm import CHART_DIR, ROOT


def test_generated_files_are_up_to_date() -> None:
    proc = subprocess.run(
        [sys.executable, "scripts/chart_docs.py", str(CHART_DIR), "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr


def test_every_documented_leaf_is_in_the_readme_table() -> None:
    readme = (CHART_DIR / "README.md").read_text()
    for key in (
        "chromadb.allowReset",
        "chromadb.dataVolumeSize",
        "image.digest",
        "ingress.hosts",
        "replicaCount",
    ):
        assert f"| `{key}` |" in readme


def test_undocumented_key_is_an_error() -> None:
    text = "# -- Documented.\na: 1\nb: 2\n"
    with pytest.raises(chart_docs.DocError, match=r"undocumented keys.*b"):
        chart_docs.build({"a": 1, "b": 2}, chart_docs.parse_docs(text))


def test_section_rejects_unknown_keys_and_leaf_types_follow_defaults() -> None:
    text = (
        '# -- Section.\nsec:\n  # -- A port.\n  # @schema {"maximum": 10}\n  port: 1\n'
        "  # -- A flag.\n  # @example sec.flag: true\n  flag: false\n"
    )
    schema, rows = chart_docs.build({"sec": {"port": 1, "flag": False}}, chart_docs.parse_docs(text))
    sec = schema["properties"]["sec"]
    assert sec["additionalProperties"] is False
    assert sec["properties"]["port"] == {"description": "A port.", "type": "integer", "maximum": 10}
    assert sec["properties"]["flag"]["type"] == "boolean"
    assert [r.key for r in rows] == ["sec.port", "sec.flag"]
    assert "Example: `sec.flag: true`" in chart_docs.render_table(rows)
