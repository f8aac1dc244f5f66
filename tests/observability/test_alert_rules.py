"""The chart's alerts, checked and unit-tested with Prometheus's own promtool."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart.helm import render

HERE = Path(__file__).parent
TESTS_FILE = HERE / "alerts.test.yaml"
#: The alerts highAvailability adds, unit-tested against a render with it on.
HA_TESTS_FILE = HERE / "alerts-ha.test.yaml"
HA_VALUES: dict[str, Any] = {"highAvailability": {"enabled": True}}
HA_ALERTS = {"ChromaNoStandbyInSync", "ChromaReplicationLagHigh", "ChromaFailover"}
PROMTOOL = shutil.which("promtool")


def rule_groups(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    values = values or {}
    values.setdefault("metrics", {}).setdefault("prometheusRule", {})["enabled"] = True
    groups: list[dict[str, Any]] = render(values).get("PrometheusRule")["spec"]["groups"]
    return groups


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None, "promtool is missing: run scripts/install-system-deps.sh"
    return subprocess.run([PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def write_rules(directory: Path, groups: list[dict[str, Any]]) -> Path:
    path = directory / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    return path


@pytest.mark.parametrize(
    "values",
    [
        {},
        {"metrics": {"prometheusRule": {"thresholds": {"errorRatio": 0.001, "backupMaxAgeHours": 0.5}}}},
        {"fullnameOverride": "v", "metrics": {"prometheusRule": {"additionalAlertLabels": {"team": "a"}}}},
    ],
    ids=["defaults", "other-thresholds", "other-name"],
)
def test_promtool_check_rules(values: dict[str, Any], tmp_path: Path) -> None:
    path = write_rules(tmp_path, rule_groups(values))
    proc = promtool("check", "rules", str(path), cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS: 15 rules found" in proc.stdout


def test_promtool_check_rules_catches_a_broken_rule(tmp_path: Path) -> None:
    groups = rule_groups()
    groups[0]["rules"][0]["expr"] = "sum(rate(chromactl_gateway_requests_total[5m]) >"
    proc = promtool("check", "rules", str(write_rules(tmp_path, groups)), cwd=tmp_path)
    assert proc.returncode != 0


def test_promtool_unit_tests_fire_and_do_not_fire_every_alert(tmp_path: Path) -> None:
    write_rules(tmp_path, rule_groups())
    shutil.copy(TESTS_FILE, tmp_path / TESTS_FILE.name)
    proc = promtool("test", "rules", TESTS_FILE.name, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_unit_tests_cover_every_alert_both_ways() -> None:
    alerts = {r["alert"] for r in rule_groups()[0]["rules"]}
    doc = yaml.safe_load(TESTS_FILE.read_text())
    fired: set[str] = set()
    quiet: set[str] = set()
    for test in doc["tests"]:
        for case in test["alert_rule_test"]:
            (fired if case["exp_alerts"] else quiet).add(case["alertname"])
    assert fired == alerts, f"never fired: {alerts - fired}"
    assert quiet == alerts, f"never checked quiet: {alerts - quiet}"


def test_unit_tests_fail_when_a_threshold_moves(tmp_path: Path) -> None:
    """The unit tests pin the thresholds: a changed rule makes them fail (they can fail)."""
    write_rules(tmp_path, rule_groups({"metrics": {"prometheusRule": {"thresholds": {"errorRatio": 0.5}}}}))
    shutil.copy(TESTS_FILE, tmp_path / TESTS_FILE.name)
    proc = promtool("test", "rules", TESTS_FILE.name, cwd=tmp_path)
    assert proc.returncode != 0
    assert "ChromaHighErrorRate" in proc.stdout + proc.stderr


def test_promtool_check_rules_with_high_availability(tmp_path: Path) -> None:
    path = write_rules(tmp_path, rule_groups(dict(HA_VALUES)))
    proc = promtool("check", "rules", str(path), cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS: 18 rules found" in proc.stdout


def test_promtool_unit_tests_of_the_high_availability_alerts(tmp_path: Path) -> None:
    write_rules(tmp_path, rule_groups(dict(HA_VALUES)))
    shutil.copy(HA_TESTS_FILE, tmp_path / HA_TESTS_FILE.name)
    proc = promtool("test", "rules", HA_TESTS_FILE.name, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_high_availability_unit_tests_cover_its_alerts_both_ways() -> None:
    alerts = {r["alert"] for r in rule_groups(dict(HA_VALUES))[0]["rules"]}
    assert alerts - {r["alert"] for r in rule_groups()[0]["rules"]} == HA_ALERTS
    doc = yaml.safe_load(HA_TESTS_FILE.read_text())
    fired: set[str] = set()
    quiet: set[str] = set()
    for test in doc["tests"]:
        for case in test["alert_rule_test"]:
            (fired if case["exp_alerts"] else quiet).add(case["alertname"])
    assert fired == HA_ALERTS and quiet == HA_ALERTS


def test_high_availability_unit_tests_fail_when_max_lag_moves(tmp_path: Path) -> None:
    write_rules(tmp_path, rule_groups({"highAvailability": {"enabled": True, "maxLagSeconds": 60}}))
    shutil.copy(HA_TESTS_FILE, tmp_path / HA_TESTS_FILE.name)
    proc = promtool("test", "rules", HA_TESTS_FILE.name, cwd=tmp_path)
    assert proc.returncode != 0
    assert "ChromaReplicationLagHigh" in proc.stdout + proc.stderr
