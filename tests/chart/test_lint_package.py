"""helm lint (strict) and packaging with the real Helm engine."""

from __future__ import annotations

from pathlib import Path

import helm_python
import pytest

from tests.chart.helm import CHART_DIR, everything_values


@pytest.mark.parametrize("values", [None, "everything"])
def test_lint_strict_is_clean(values) -> None:
    report = helm_python.lint(
        str(CHART_DIR), everything_values() if values else None, strict=True, kube_version="v1.29.0"
    )
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


def test_lint_reports_a_bad_value() -> None:
    report = helm_python.lint(str(CHART_DIR), {"chromadb": {"serverHttpPort": "x"}})
    assert any("serverHttpPort" in e for e in report["errors"])


def test_package_round_trips(tmp_path: Path) -> None:
    with helm_python.Chart.load(CHART_DIR) as chart:
        archive = Path(chart.save(tmp_path))
    assert archive.name == "chromadb-0.2.0.tgz"
    with helm_python.Chart.load(archive) as packaged:
        assert packaged.metadata["appVersion"] == "1.5.9"
        assert packaged.schema is not None
        names = {t["name"] for t in packaged.templates}
        assert "templates/statefulset.yaml" in names
        files = {f["name"] for f in packaged.files}
        assert not any(name.startswith("ci/") for name in files), "ci/ is excluded by .helmignore"
        rendered = packaged.render({}, name="chroma")
        assert "chromadb/templates/statefulset.yaml" in rendered
