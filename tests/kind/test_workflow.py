"""The kind workflow cannot run here (no Docker, no cluster): check everything short of running it.

Its syntax against the GitHub workflow schema vendored by check-jsonschema, that every make
target, script, file and action it calls exists (and is pinned), that its shell is shellcheck
clean, that the matrix stays inside what the chart supports, and that chart-testing's config and
yamllint rules accept the chart, the way `ct lint` would.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart.helm import CHART_DIR, render, set_values

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / ".github" / "workflows" / "kind.yaml"
BIN = Path(sys.executable).parent
KIND_VALUES = sorted((ROOT / "tests" / "kind" / "values").glob("*-values.yaml"))
BACKUP_VALUES = ROOT / "tests" / "kind" / "backup-restore-values.yaml"


def tool(name: str) -> str:
    found = shutil.which(name, path=str(BIN))
    assert found, f"{name} is missing from .venv: `make deps`"
    return found


def workflow(path: Path = WORKFLOW) -> dict[Any, Any]:
    return yaml.safe_load(path.read_text())


def steps(path: Path = WORKFLOW) -> list[tuple[str, dict[str, Any]]]:
    return [(job, step) for job, spec in workflow(path)["jobs"].items() for step in spec["steps"]]


def run_blocks(path: Path = WORKFLOW) -> list[tuple[str, str]]:
    return [(job, step["run"]) for job, step in steps(path) if "run" in step]


def without_expressions(script: str) -> str:
    return re.sub(r"\$\{\{[^}]*\}\}", "EXPR", script)


def test_workflow_matches_the_github_schema() -> None:
    for path, schema in (
        (WORKFLOW, "vendor.github-workflows"),
        (ROOT / ".github" / "dependabot.yml", "vendor.dependabot"),
    ):
        result = subprocess.run(
            [tool("check-jsonschema"), "--builtin-schema", schema, str(path)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr


def test_the_schema_check_catches_a_broken_workflow(tmp_path: Path) -> None:
    broken = workflow()
    broken["jobs"]["lint"]["runs-on"] = {"unexpected": ["mapping"]}
    broken["jobs"]["lint"]["steps"][0]["with"] = "not a mapping"
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(broken))
    result = subprocess.run(
        [tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode != 0


def test_what_it_covers() -> None:
    jobs = workflow()["jobs"]
    matrix = jobs["install"]["strategy"]["matrix"]
    assert len(matrix["kubernetes"]) >= 2 and len(matrix["chroma"]) >= 2
    text = WORKFLOW.read_text()
    for needed in (
        "ct lint",
        "ct install",
        "helm/kind-action",
        "make kind-namespace",
        "make kind-backup-restore",
    ):
        assert needed in text, needed


def make_targets() -> list[str]:
    found = []
    for _, script in run_blocks():
        for line in script.splitlines():
            match = re.match(r"\s*make\s+(.*)", line)
            if match:
                found.extend(t for t in match[1].split() if "=" not in t and not t.startswith("-"))
    return found


def test_every_make_target_it_calls_exists() -> None:
    targets = make_targets()
    assert {"kind-images", "kind-namespace", "kind-stage", "kind-backup-restore", "test", "package"} <= set(
        targets
    )
    for target in targets:
        result = subprocess.run(["make", "-n", target], cwd=ROOT, capture_output=True, text=True, check=False)
        assert result.returncode == 0, f"make {target}: {result.stderr}"


PATH_TOKEN = re.compile(r"(?<![\w.$/-])((?:scripts|tests|charts|image|docs|\.ci)/[\w./-]+|[\w-]+\.ya?ml)")


def test_every_script_and_file_it_names_exists() -> None:
    """.ci/ is what `make kind-stage` writes: stage it, then every path must be there."""
    subprocess.run([str(ROOT / "scripts" / "kind.sh"), "stage"], cwd=ROOT, check=True, capture_output=True)
    named = set()
    for _, script in run_blocks():
        named.update(PATH_TOKEN.findall(without_expressions(script)))
    assert "ct.yaml" in named and ".ci/charts/chromadb" in named and "scripts/kind.sh" in named
    for path in named:
        assert (ROOT / path).exists(), f"the workflow uses {path}, which is not in the repository"
    staged = ROOT / ".ci" / "charts" / "chromadb" / "ci"
    assert sorted(p.name for p in staged.iterdir()) == [p.name for p in KIND_VALUES]
    # and every make target's recipe names scripts that exist and are executable
    script = ROOT / "scripts" / "kind.sh"
    assert os.access(script, os.X_OK)


def assert_actions_pinned(path: Path) -> None:
    """Every action of the workflow is pinned to a release tag or a commit."""
    for job, step in steps(path):
        if "uses" in step:
            assert re.fullmatch(r"[\w.-]+/[\w.-]+@(v\d+(\.\d+)*|[0-9a-f]{40})", step["uses"]), (
                job,
                step["uses"],
            )


def assert_shellcheck_clean(path: Path, tmp_path: Path, *scripts: Path) -> None:
    """The workflow's run blocks (expressions replaced) and ``scripts`` pass shellcheck."""
    files = list(scripts)
    for i, (job, script) in enumerate(run_blocks(path)):
        block = tmp_path / f"{job}-{i}.sh"
        block.write_text("#!/usr/bin/env bash\nset -e\n" + without_expressions(script))
        files.append(block)
    result = subprocess.run(
        [tool("shellcheck"), "--shell=bash", *map(str, files)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_actions_are_pinned_to_a_release() -> None:
    assert_actions_pinned(WORKFLOW)


def test_shell_is_shellcheck_clean(tmp_path: Path) -> None:
    assert_shellcheck_clean(WORKFLOW, tmp_path, ROOT / "scripts" / "kind.sh")


def minor(version: str) -> tuple[int, int]:
    major, minor_, *_ = version.lstrip("v").split(".")
    return int(major), int(minor_)


def test_matrix_stays_inside_what_the_chart_supports() -> None:
    chart_yaml = yaml.safe_load((CHART_DIR / "Chart.yaml").read_text())
    oldest = minor(re.search(r">=\s*([\d.]+)", chart_yaml["kubeVersion"])[1])
    from tests.chart.test_kubernetes_validate import VERSIONS

    validated = {minor(v) for v in VERSIONS}
    jobs = workflow()["jobs"]
    for job in ("install", "backup-restore"):
        for kube in jobs[job]["strategy"]["matrix"]["kubernetes"]:
            assert minor(kube) >= oldest and minor(kube) in validated, (job, kube)
    kubes = {minor(k) for k in jobs["install"]["strategy"]["matrix"]["kubernetes"]}
    assert min(validated) in kubes and max(validated) in kubes, "test the oldest and newest supported"
    for chroma in jobs["install"]["strategy"]["matrix"]["chroma"]:
        legacy = chroma.startswith("0.")
        assert chroma == chart_yaml["appVersion"] or (ROOT / "requirements" / f"chroma-{chroma}.txt").exists()
        assert legacy or chroma == chart_yaml["appVersion"]


#: (values file, Chroma version) as the workflow combines them: the install matrix runs every
#: kind values file on 1.x and 0.x; the backup round trip runs on 1.x (the agent is in the gateway).
COMBINATIONS = [(v, c) for v in KIND_VALUES for c in ("1.5.9", "0.6.3")] + [(BACKUP_VALUES, "1.5.9")]


@pytest.mark.parametrize(("values_file", "chroma"), COMBINATIONS, ids=lambda x: getattr(x, "name", x))
def test_kind_values_render_with_the_images_built_there(values_file: Path, chroma: str) -> None:
    env = {**os.environ, "CHROMA_VERSION": chroma}
    args = subprocess.run(
        [str(ROOT / "scripts" / "kind.sh"), "set-args"], env=env, capture_output=True, text=True, check=True
    ).stdout.strip()
    values = yaml.safe_load(values_file.read_text()) or {}
    r = render(_merge(values, set_values(args)))
    images = {c["image"] for _, spec in r.pod_specs() for c in containers(spec)}
    assert "chromactl:ci" in images
    if chroma.startswith("0."):
        assert f"chroma-legacy:{chroma}" in images
    for _, spec in r.pod_specs():
        for c in containers(spec):
            if c["image"].startswith(("chromactl:", "chroma-legacy:")):
                assert c["imagePullPolicy"] == "Never", c["name"]


def containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return spec.get("initContainers", []) + spec["containers"]


def _merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for key, value in b.items():
        both = isinstance(value, dict) and isinstance(out.get(key), dict)
        out[key] = _merge(out[key], value) if both else value
    return out


def test_yamllint_with_chart_testings_rules() -> None:
    ct = yaml.safe_load((ROOT / "ct.yaml").read_text())
    assert (ROOT / ct["lint-conf"]).is_file()
    assert all((ROOT / d).is_dir() for d in ct["chart-dirs"])
    files = [
        CHART_DIR / "Chart.yaml",
        CHART_DIR / "values.yaml",
        *sorted((CHART_DIR / "ci").glob("*.yaml")),
        *KIND_VALUES,
        BACKUP_VALUES,
        ROOT / "ct.yaml",
    ]
    result = subprocess.run(
        [tool("yamllint"), "--strict", "-c", str(ROOT / ct["lint-conf"]), *map(str, files)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_yamllint_rules_do_catch_problems(tmp_path: Path) -> None:
    bad = tmp_path / "values.yaml"
    bad.write_text("a: 1\na: 2\nb: [ x ]   \n")
    result = subprocess.run(
        [tool("yamllint"), "-c", str(ROOT / "lintconf.yaml"), str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    for rule in ("key-duplicates", "brackets", "trailing-spaces"):
        assert rule in result.stdout, result.stdout
