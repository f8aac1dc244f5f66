"""chromactl's wheel and sdist: built as the release builds them, installed alone, and published
to PyPI by the release workflow before the images that contain the same version."""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
import yaml
from scripts import python_dist

from tests.release.test_workflow import steps, workflow

ROOT = Path(__file__).resolve().parents[2]
VERSION = python_dist.chart_version()


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> Path:
    outdir = tmp_path_factory.mktemp("dist")
    done = subprocess.run(
        [sys.executable, "scripts/python_dist.py", "build", "--outdir", str(outdir)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return outdir


@pytest.fixture(scope="module")
def installed(dists: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new virtualenv with only the wheel (and its dependencies, as pinned) installed."""
    venv = tmp_path_factory.mktemp("venv") / "cli"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    (wheel,) = dists.glob("chromactl-*.whl")
    done = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", "-c", str(ROOT / "constraints.txt"), str(wheel)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return venv


def test_builds_one_wheel_and_one_sdist_that_pass_the_release_check(dists: Path) -> None:
    assert sorted(p.name for p in dists.iterdir()) == [
        f"chromactl-{VERSION}-py3-none-any.whl",
        f"chromactl-{VERSION}.tar.gz",
    ]
    assert python_dist.problems(dists, f"v{VERSION}") == []


def test_the_check_refuses_another_tag_and_a_missing_dist(dists: Path, tmp_path: Path) -> None:
    found = python_dist.problems(dists, "v99.0.0")
    assert len(found) == 2 and all("the tag is 99.0.0" in p for p in found)
    only_wheel = tmp_path / "only-wheel"
    only_wheel.mkdir()
    for wheel in dists.glob("*.whl"):
        shutil.copy(wheel, only_wheel)
    (problem,) = python_dist.problems(only_wheel)
    assert "1 wheel(s) and 0 sdist(s)" in problem


def test_the_check_catches_a_description_pypi_would_reject(dists: Path, tmp_path: Path) -> None:
    """twine check --strict runs: an sdist whose PKG-INFO declares reStructuredText that does not
    render is refused."""
    (sdist,) = dists.glob("*.tar.gz")
    broken = tmp_path / "broken"
    broken.mkdir()
    shutil.copy(next(dists.glob("*.whl")), broken)
    with tarfile.open(sdist) as src, tarfile.open(broken / sdist.name, "w:gz") as dst:
        for member in src.getmembers():
            data = src.extractfile(member) if member.isfile() else None
            if member.name.endswith("/PKG-INFO") and member.name.count("/") == 1 and data is not None:
                text = data.read().decode()
                text = text.replace(
                    "Description-Content-Type: text/markdown", "Description-Content-Type: text/x-rst"
                )
                text += "\n.. broken:: directive\n   `unclosed\n"
                raw = text.encode()
                member.size = len(raw)
                dst.addfile(member, io.BytesIO(raw))
            else:
                dst.addfile(member, data)
    assert any("twine check --strict failed" in p for p in python_dist.problems(broken))


def test_the_wheel_holds_the_package_and_not_the_tests(dists: Path) -> None:
    (wheel,) = dists.glob("*.whl")
    with zipfile.ZipFile(wheel) as opened:
        names = opened.namelist()
    assert "chromactl/py.typed" in names and "chromactl/cli.py" in names
    assert not [n for n in names if n.startswith(("tests/", "scripts/", "charts/"))]
    (sdist,) = dists.glob("*.tar.gz")
    with tarfile.open(sdist) as opened_sdist:
        members = opened_sdist.getnames()
    assert f"chromactl-{VERSION}/LICENSE" in members


def test_the_installed_wheel_runs_the_cli_alone(installed: Path) -> None:
    chromactl = installed / "bin" / "chromactl"
    for args in (["--help"], ["up", "--help"], ["backup", "--help"]):
        done = subprocess.run(
            [str(chromactl), *args], capture_output=True, text=True, timeout=120, check=False
        )
        assert done.returncode == 0, done.stderr
        assert "Usage" in done.stdout
    version = subprocess.run(
        [str(chromactl), "version", "--json"], capture_output=True, text=True, timeout=120, check=True
    )
    assert json.loads(version.stdout)["chromactl"] == VERSION
    # It runs from the venv, not from this checkout's src/.
    where = subprocess.run(
        [str(installed / "bin" / "python"), "-c", "import chromactl; print(chromactl.__file__)"],
        capture_output=True,
        text=True,
        check=True,
        cwd="/",
    )
    assert where.stdout.startswith(str(installed))


def test_the_release_publishes_to_pypi_with_trusted_publishing_before_the_images() -> None:
    jobs = workflow()["jobs"]
    assert jobs["pypi"]["needs"] == "python-dist"
    assert jobs["images"]["needs"] == "pypi"
    assert jobs["chart"]["needs"] == "images"
    assert jobs["pypi"]["permissions"] == {"id-token": "write"}
    assert jobs["pypi"]["environment"]["name"] == "pypi"
    (publish,) = [s for job, s in steps() if job == "pypi" and "uses" in s and "pypi-publish" in s["uses"]]
    assert publish["with"]["attestations"] is True
    assert "password" not in publish["with"]  # no stored token
    build_runs = [s["run"] for job, s in steps() if job == "python-dist" and "run" in s]
    joined = "\n".join(build_runs)
    assert "scripts/release_notes.py --check-tag" in build_runs[0]
    assert "python scripts/python_dist.py build --outdir dist/python" in joined
    assert 'python scripts/python_dist.py check dist/python --tag "$TAG"' in joined
    # Built once: the publish job downloads what the build job checked, it builds nothing.
    assert not [s for job, s in steps() if job == "pypi" and "run" in s]
    uploaded = next(
        s for job, s in steps() if job == "python-dist" and "upload-artifact" in s.get("uses", "")
    )
    downloaded = next(s for job, s in steps() if job == "pypi" and "download-artifact" in s.get("uses", ""))
    assert uploaded["with"]["name"] == downloaded["with"]["name"]
    assert downloaded["with"]["path"] == publish["with"]["packages-dir"]


def test_the_readme_says_how_to_install_the_cli_alone() -> None:
    readme = (ROOT / "README.md").read_text()
    assert re.search(r"pipx? install 'chromactl\[s3\]'", readme)
    chart = yaml.safe_load((ROOT / "charts/chromadb/Chart.yaml").read_text())
    assert f"chromactl:{chart['version']}" in chart["annotations"]["artifacthub.io/images"]
