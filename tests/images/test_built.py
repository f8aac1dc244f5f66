"""The images as built (``make images``): checked on their root filesystems, not their Dockerfiles."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from scripts import images as build

from tests.images.conftest import ROOT

RELEASED = {i.name: i for i in build.images() if i.released}
CHROMACTL = RELEASED["chromactl"]


@pytest.fixture(scope="module")
def roots() -> Iterator[dict[str, Path]]:
    with build.mounted(CHROMACTL.ref) as ctl, build.mounted(RELEASED["chroma-0.6.3"].ref) as legacy:
        yield {"chromactl": ctl, "chroma-0.6.3": legacy}


@pytest.fixture(scope="module")
def chromactl_root(roots: dict[str, Path]) -> Path:
    return roots["chromactl"]


def test_chromactl_image_has_no_shell(chromactl_root: Path) -> None:
    assert build.shells_in(chromactl_root) == []
    # what every container the chart runs from it needs is there
    assert os.access(chromactl_root / "opt/chromactl/bin/chromactl", os.X_OK)


@pytest.mark.parametrize("name", sorted(RELEASED))
def test_no_setuid_or_setgid_file(name: str, roots: dict[str, Path]) -> None:
    assert build.setid_files(roots[name]) == []


def test_the_checks_find_a_shell_and_a_setuid_file(tmp_path: Path) -> None:
    (tmp_path / "usr/bin").mkdir(parents=True)
    (tmp_path / "bin").symlink_to("usr/bin")
    shutil.copy("/bin/true", tmp_path / "usr/bin/dash")
    (tmp_path / "usr/bin/sh").symlink_to("dash")
    (tmp_path / "opt/venv/bin").mkdir(parents=True)
    (tmp_path / "opt/venv/bin/bash").write_text("")
    (tmp_path / "usr/bin/su").write_text("")
    (tmp_path / "usr/bin/su").chmod(0o4755)
    (tmp_path / "usr/bin/wall").write_text("")
    (tmp_path / "usr/bin/wall").chmod(0o2755)
    assert build.shells_in(tmp_path) == ["/opt/venv/bin/bash", "/usr/bin/dash", "/usr/bin/sh"]
    assert build.setid_files(tmp_path) == ["/usr/bin/su", "/usr/bin/wall"]


def test_legacy_image_keeps_its_shell_and_runs_as_the_chart_user(roots: dict[str, Path]) -> None:
    assert "/usr/bin/dash" in build.shells_in(roots["chroma-0.6.3"])  # upstream code, see README


@pytest.mark.parametrize("name", sorted(RELEASED))
def test_config_is_what_the_dockerfile_says(name: str) -> None:
    info = build.buildah_inspect(RELEASED[name].ref)
    assert info is not None
    config = info["OCIv1"]["config"]
    assert config["User"] == "10001:10001"
    assert config["Entrypoint"][0] in ("chromactl", "uvicorn")
    labels = config["Labels"]
    assert labels["org.opencontainers.image.version"] in RELEASED[name].ref
    assert build.INPUTS_LABEL in labels


def pins(path: Path) -> dict[str, str]:
    found = re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)$", path.read_text(), re.M)
    return {build.canonical(n): v for n, v in found}


def test_chromactl_installs_exactly_the_locked_versions(chromactl_root: Path) -> None:
    installed = build.installed_dists(chromactl_root)
    lock = pins(ROOT / "constraints.txt")
    assert installed.pop("chromactl") == build.chart_version()
    off_lock = {n: v for n, v in installed.items() if lock.get(n) != v}
    assert off_lock == {}, "installed but not at the locked version"
    assert {"uvicorn", "starlette", "s3fs", "pyarrow"} <= set(installed)
    assert "pip" not in installed  # removed at build time


def test_legacy_image_installs_its_lock(roots: dict[str, Path]) -> None:
    installed = build.installed_dists(roots["chroma-0.6.3"])
    lock = pins(ROOT / "requirements" / "chroma-0.6.3.txt")
    assert {n: installed.get(n) for n in lock} == lock


def test_audit_ignores_are_justified_and_current(roots: dict[str, Path]) -> None:
    shipped = {n for root in roots.values() for n in build.installed_dists(root)}
    for vuln, package, why in build.audit_ignores():
        assert re.fullmatch(r"(GHSA(-[0-9a-z]{4}){3}|PYSEC-\d{4}-\d+|CVE-\d{4}-\d+)", vuln), vuln
        assert package in shipped, f"{vuln}: {package} is in no image any more; drop the entry"
        assert len(why.split()) >= 4, f"{vuln}: say why it is accepted"


def test_readme_figures_are_the_built_images() -> None:
    readme = (ROOT / "image" / "README.md").read_text()
    for image in RELEASED.values():
        size, layers = build.figures(image.ref)
        row = re.search(rf"^\| `{re.escape(image.ref)}` \| (\d+) MB \| (\d+) \|$", readme, re.M)
        assert row, f"image/README.md has no figures row for {image.ref}: scripts/images.py figures"
        assert int(row[2]) == layers
        assert abs(int(row[1]) * 1e6 - size) / size < 0.15, (image.ref, size)
