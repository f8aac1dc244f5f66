"""checkov's Kubernetes checks pass on the default and the everything-on render.

Skips live only in .checkov.yaml at the repository root, each with its reason; the one check a
render fails on purpose is named in EXPECTED below, for that render only.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart.helm import (
    CHART_DIR,
    ROOT,
    Render,
    everything_values,
    gateway_tier_values,
    high_availability_values,
    render,
)

CHECKOV = Path(os.environ.get("CHECKOV", ROOT / ".venvs" / "checkov" / "bin" / "checkov"))
CONFIG = ROOT / ".checkov.yaml"


def scan(r: Render, directory: Path) -> dict[str, Any]:
    directory.mkdir()
    (directory / "release.yaml").write_text(yaml.safe_dump_all(r.objects))
    assert CHECKOV.exists(), f"{CHECKOV} missing: run `make deps`"
    proc = subprocess.run(
        [str(CHECKOV), "-d", str(directory), "--config-file", str(CONFIG), "-o", "json"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "BC_SKIP_MAPPING": "TRUE", "LOG_LEVEL": "WARNING"},
    )
    assert proc.stdout, proc.stderr
    report = json.loads(proc.stdout)
    return report[0] if isinstance(report, list) else report


def failures(report: dict[str, Any]) -> list[str]:
    return [f"{c['check_id']} {c['resource']}" for c in report["results"]["failed_checks"]]


RENDERS = {
    "default": dict,
    "everything": everything_values,
    "gateway-tier": gateway_tier_values,
    "high-availability": high_availability_values,
}


#: Failures a render must have, and no other. highAvailability: the server pods call the
#: Kubernetes API (the Lease, their own role label), so their ServiceAccount token is mounted
#: (CKV_K8S_38); every other render keeps it out (tests/chart/test_security_context.py).
EXPECTED = {"high-availability": ["CKV_K8S_38 StatefulSet.vectors.chroma-chromadb"]}


@pytest.mark.parametrize("name", sorted(RENDERS))
def test_no_failed_checks(name: str, tmp_path: Path) -> None:
    r = render(RENDERS[name]())
    report = scan(r, tmp_path / name)
    assert report["summary"]["passed"] > 100
    assert failures(report) == EXPECTED.get(name, [])


def test_checkov_catches_an_insecure_render(tmp_path: Path) -> None:
    insecure = render(
        {
            "securityContext": {"privileged": True, "allowPrivilegeEscalation": True, "runAsNonRoot": False},
            "networkPolicy": {"enabled": False},
        }
    )
    found = {f.split()[0] for f in failures(scan(insecure, tmp_path / "insecure"))}
    assert {"CKV_K8S_16", "CKV_K8S_20", "CKV2_K8S_6"} <= found


def test_skips_only_in_the_config_file() -> None:
    for template in (CHART_DIR / "templates").rglob("*"):
        if template.is_file():
            assert "checkov.io/skip" not in template.read_text(), template
    lines = CONFIG.read_text().splitlines()
    for i, line in enumerate(lines):
        if line.strip().startswith("- CKV"):
            comments = [ln for ln in lines[max(0, i - 3) : i] if ln.strip().startswith("#")]
            assert comments, f"{line.strip()} is skipped without a reason"
