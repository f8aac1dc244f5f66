"""The images and the chart cannot drift apart.

No container engine here, so the images are not built; instead these tests check that what
each Dockerfile installs, runs and runs as is what the chart renders: every chromactl command
the chart renders exists in the package (its console script and subcommand, with the options
given), the USER is the chart's runAsUser/runAsGroup, the package comes from the lock, and the
images Chart.yaml advertises are the ones the chart renders by default.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement

import chromactl
from tests.chart.helm import chart, everything_values, render
from tests.images.conftest import ROOT
from tests.images.dockerfile import Dockerfile, labels

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
VALUES = yaml.safe_load((ROOT / "charts" / "chromadb" / "values.yaml").read_text())

#: The renders whose pods are checked: defaults, every feature on, the legacy server, no gateway.
RENDERS: dict[str, dict[str, Any]] = {
    "default": {},
    "everything": everything_values(),
    "legacy": {"chromadb": {"apiVersion": "0.6.3"}},
    "no-gateway": {"gateway": {"enabled": False}},
}


def containers(values: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    found = []
    for pod, spec in render(values).pod_specs():
        for c in spec.get("initContainers", []) + spec["containers"]:
            found.append((f"{pod}/{c['name']}", c))
    return found


def is_chromactl(container: dict[str, Any]) -> bool:
    repository = VALUES["chromactl"]["image"]["repository"]
    return re.search(rf"(^|/){re.escape(repository)}[:@]", container["image"]) is not None


def chromactl_commands() -> list[tuple[str, list[str]]]:
    found = []
    for render_name, values in RENDERS.items():
        for name, c in containers(values):
            if is_chromactl(c):
                found.append((f"{render_name}:{name}", [*c.get("command", []), *c.get("args", [])]))
    return found


COMMANDS = chromactl_commands()


def test_the_chart_renders_chromactl_containers() -> None:
    names = {name.split("/", 1)[1] for name, _ in COMMANDS}
    assert {"gateway", "smoke"} <= names, names


def run_help(argv: list[str]) -> str:
    """``<console script> <subcommands...> --help`` through the installed entry point."""
    scripts = {ep.name: ep for ep in metadata.entry_points(group="console_scripts")}
    entry = scripts.get(argv[0])
    assert entry is not None, f"{argv[0]} is not a console script of any installed package"
    assert entry.dist is not None and entry.dist.name == "chromactl", entry
    # only the leading words name subcommands; stop at the first option
    words = []
    for arg in argv[1:]:
        if arg.startswith("-"):
            break
        words.append(arg)
    module, _, func = entry.value.partition(":")
    code = f"import sys; sys.argv[0] = {argv[0]!r}; from {module} import {func} as m; sys.exit(m())"
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"}
    result = subprocess.run(
        [sys.executable, "-c", code, *words, "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    command = " ".join([argv[0], *words, "--help"])
    assert result.returncode == 0, f"{command} failed:\n{result.stdout}{result.stderr}"
    return result.stdout


#: each distinct command once, named after the first container that runs it
UNIQUE_COMMANDS = {tuple(argv): name for name, argv in reversed(COMMANDS)}


@pytest.mark.parametrize("argv", [list(a) for a in UNIQUE_COMMANDS], ids=list(UNIQUE_COMMANDS.values()))
def test_every_rendered_chromactl_command_exists_with_its_options(argv: list[str]) -> None:
    assert argv, "a chromactl container must say what it runs: the image's CMD is only --help"
    help_text = run_help(argv)
    for option in (a.split("=", 1)[0] for a in argv[1:] if a.startswith("--")):
        assert re.search(rf"{re.escape(option)}\b", help_text), f"{option} is not an option of {argv}"


def test_a_command_that_is_not_there_fails_the_check() -> None:
    with pytest.raises(AssertionError):
        run_help(["chromactl", "no-such-subcommand"])
    with pytest.raises(AssertionError):
        run_help(["chroma-ctl", "gateway"])


def test_console_script_is_the_one_pyproject_declares() -> None:
    assert PYPROJECT["project"]["name"] == "chromactl"
    assert PYPROJECT["project"]["scripts"] == {"chromactl": "chromactl.cli:main"}


# ------------------------------------------------------------------------------ chromactl image


def test_entrypoint_is_what_the_chart_and_the_pod_runner_run(chromactl_dockerfile: Dockerfile) -> None:
    entrypoint = chromactl_dockerfile.final.last("ENTRYPOINT")
    assert entrypoint is not None
    assert entrypoint.exec_form() == ["chromactl"]
    for name, argv in COMMANDS:
        assert argv[0] == "chromactl", name
    # the entry point is found on PATH, where the build installs the package's scripts
    env = " ".join(i.value for i in chromactl_dockerfile.final.all("ENV"))
    assert re.search(r"PATH=/opt/chromactl/bin:", env), env


def test_chromactl_image_has_no_shell_and_needs_none(chromactl_dockerfile: Dockerfile) -> None:
    runs = chromactl_dockerfile.final.runs()
    last = runs.split("&&")[-1]
    for shell in ("/bin/sh", "/usr/bin/sh", "/bin/bash", "/usr/bin/bash", "/usr/bin/dash"):
        assert shell in last, f"{shell} is not removed (last, after every other RUN step)"
    assert chromactl_dockerfile.final.instructions[-1].keyword != "RUN"
    after = chromactl_dockerfile.final.instructions[
        max(i for i, ins in enumerate(chromactl_dockerfile.final.instructions) if ins.keyword == "RUN") + 1 :
    ]
    assert not [
        i
        for i in after
        if i.keyword == "RUN" or (i.keyword in ("ENTRYPOINT", "CMD") and not i.value.startswith("["))
    ]
    for name, argv in COMMANDS:
        assert argv[0] == "chromactl" and "sh" not in argv[:1], name
        assert not any(a in ("-c",) for a in argv[:2]), name


def user(dockerfile: Dockerfile) -> tuple[int, int]:
    instruction = dockerfile.final.last("USER")
    assert instruction is not None, f"{dockerfile.path} has no USER: it would run as root"
    uid, _, gid = instruction.value.partition(":")
    assert uid.isdigit() and gid.isdigit(), f"USER must be numeric uid:gid, got {instruction.value}"
    return int(uid), int(gid)


@pytest.mark.parametrize("image", ["chromactl", "chroma"])
def test_user_is_the_charts_run_as_user(image: str, request) -> None:
    dockerfile: Dockerfile = request.getfixturevalue(f"{image}_dockerfile")
    uid, gid = user(dockerfile)
    assert uid != 0 and gid != 0
    for block in ("podSecurityContext", "securityContext"):
        assert (VALUES[block]["runAsUser"], VALUES[block]["runAsGroup"]) == (uid, gid), block
    for render_name, values in RENDERS.items():
        for pod, spec in render(values).pod_specs():
            pod_sc = spec.get("securityContext", {})
            for c in spec.get("initContainers", []) + spec["containers"]:
                sc = {**pod_sc, **c.get("securityContext", {})}
                assert (sc.get("runAsUser"), sc.get("runAsGroup")) == (uid, gid), f"{render_name}:{pod}"
    # the user and group the image creates carry the same ids
    runs = dockerfile.final.runs()
    assert re.search(rf"groupadd [^&]*--gid {gid}\b", runs)
    assert re.search(rf"useradd [^&]*--uid {uid}\b", runs)


def test_installs_this_package_from_the_lock(chromactl_dockerfile: Dockerfile) -> None:
    build = chromactl_dockerfile.stage("build")
    copied = " ".join(i.value for i in build.all("COPY"))
    for path in ("constraints.txt", "pyproject.toml", "src"):
        assert re.search(rf"(^|\s){re.escape(path)}(\s|$)", copied), f"the build does not copy {path}"
    install = next(line for line in build.runs().split("&&") if "pip install" in line)
    assert "-c constraints.txt" in install or "--constraint constraints.txt" in install, install
    assert re.search(r"\"\./(\[[^\]]*\])?\"|\s\./?(\s|$)", install), f"no install of the package: {install}"
    assert "--only-binary=:all:" in install
    # the runtime stage takes the built environment, not a second, unpinned install
    final_copy = " ".join(i.value for i in chromactl_dockerfile.final.all("COPY"))
    assert "--from=build" in final_copy and "/opt/chromactl" in final_copy
    assert "pip install" not in chromactl_dockerfile.final.runs()


def pins(path: Path) -> dict[str, str]:
    found = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line and not line.startswith("-"):
            name, _, version = line.partition("==")
            found[re.sub(r"[-_.]+", "-", name).lower()] = version.strip()
    return found


def closure(dist: str, extras: set[str]) -> set[str]:
    """Names of every distribution ``dist[extras]`` pulls in, from the installed metadata."""
    seen: set[str] = set()
    todo = [(dist, extras)]
    while todo:
        name, wanted = todo.pop()
        for raw in metadata.requires(name) or []:
            req = Requirement(raw)
            env_ok = req.marker is None or any(req.marker.evaluate({"extra": e}) for e in (wanted or {""}))
            if not env_ok:
                continue
            key = re.sub(r"[-_.]+", "-", req.name).lower()
            if key not in seen:
                seen.add(key)
                todo.append((req.name, set(req.extras)))
    return seen


def test_the_lock_pins_everything_the_image_installs(chromactl_dockerfile: Dockerfile) -> None:
    extras = {chromactl_dockerfile.args["EXTRAS"]}
    locked = pins(ROOT / "constraints.txt")
    needed = closure("chromactl", extras)
    assert "s3fs" in needed and "uvicorn" in needed
    missing = sorted(n for n in needed if n not in locked)
    assert not missing, f"constraints.txt does not pin {missing}: run `make lock`"
    for name in needed:
        assert metadata.version(name) == locked[name], f"{name}: installed {metadata.version(name)}"


def test_image_version_is_the_charts_and_the_packages(chromactl_dockerfile: Dockerfile) -> None:
    version = chart().metadata["version"]
    assert chromactl.__version__ == version
    assert chromactl_dockerfile.args["VERSION"] == version
    assert labels(chromactl_dockerfile.final)["org.opencontainers.image.version"] == "${VERSION}"


@pytest.mark.parametrize("image", ["chromactl", "chroma"])
def test_oci_labels_and_no_healthcheck(image: str, request) -> None:
    dockerfile: Dockerfile = request.getfixturevalue(f"{image}_dockerfile")
    found = labels(dockerfile.final)
    for key in ("title", "source", "licenses", "version", "revision", "created", "description"):
        assert f"org.opencontainers.image.{key}" in found, key
    license_ = chart().metadata["annotations"]["artifacthub.io/license"]
    assert found["org.opencontainers.image.licenses"] == license_
    assert not dockerfile.final.all("HEALTHCHECK")
    assert "sudo" not in dockerfile.path.read_text().replace("no sudo", "").replace("the sudo", "")


@pytest.mark.parametrize("image", ["chromactl", "chroma"])
def test_base_is_pinned_by_digest(image: str, request) -> None:
    dockerfile: Dockerfile = request.getfixturevalue(f"{image}_dockerfile")
    for stage in dockerfile.stages:
        base = dockerfile.expand(stage.base)
        assert re.search(r"@sha256:[0-9a-f]{64}$", base), f"{stage.name or 'final'} stage base {base}"


# ------------------------------------------------------------------------------- legacy Chroma


def test_legacy_image_runs_what_the_chart_runs(chroma_dockerfile: Dockerfile) -> None:
    legacy = render({"chromadb": {"apiVersion": chroma_dockerfile.args["CHROMA_VERSION"]}})
    command = legacy.container()["command"]
    entrypoint = chroma_dockerfile.final.last("ENTRYPOINT")
    assert entrypoint is not None and entrypoint.exec_form() == command
    lock = ROOT / "requirements" / f"chroma-{chroma_dockerfile.args['CHROMA_VERSION']}.txt"
    assert lock.exists(), lock
    assert pins(lock)["chromadb"] == chroma_dockerfile.args["CHROMA_VERSION"]
    assert "uvicorn" in pins(lock)
    build = chroma_dockerfile.stages[0]
    assert "requirements/chroma-${CHROMA_VERSION}.txt" in " ".join(i.value for i in build.all("COPY"))
    # the settings the chart passes are environment variables the image leaves to the chart
    env = legacy.env()
    for key in ("IS_PERSISTENT", "PERSIST_DIRECTORY", "ALLOW_RESET"):
        assert key in env


# ---------------------------------------------------------------------------- Chart.yaml images


def default_images() -> set[str]:
    return {c["image"] for _, c in containers({})}


def test_chart_yaml_images_are_what_the_chart_renders_by_default() -> None:
    annotated = yaml.safe_load(chart().metadata["annotations"]["artifacthub.io/images"])
    assert {i["image"] for i in annotated} == default_images()


def test_every_stage_of_both_images_uses_one_base(
    chromactl_dockerfile: Dockerfile, chroma_dockerfile: Dockerfile
) -> None:
    """One digest to bump: the chromactl build and runtime stages and the legacy image agree, and the
    Python they run is the one the package supports."""
    bases = {d.expand(stage.base) for d in (chromactl_dockerfile, chroma_dockerfile) for stage in d.stages}
    assert len(bases) == 1, bases
    (base,) = bases
    major_minor = re.match(r"python:(\d+\.\d+)", base)
    assert major_minor, base
    requires = PYPROJECT["project"]["requires-python"]
    assert requires.startswith(">=") and tuple(map(int, major_minor[1].split("."))) >= tuple(
        map(int, requires[2:].split("."))
    )
