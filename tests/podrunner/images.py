"""Which local executables stand in for a container image.

There is no container engine here, so each image the chart (or a test) names
maps to programs on this machine: a Chroma image runs the ``chroma`` of the
matching chromadb release from PyPI in its own virtual environment, the
chromactl image runs this repository's package, and a few small test images run
the local tools. An image that is not in the table is an error.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
#: The project's own environment (chromactl, and the default chromadb).
MAIN_VENV = REPO / ".venv"
#: Extra environments, one per Chroma release: ``.venvs/chroma-<version>``.
VENVS = REPO / ".venvs"
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PIP_TIMEOUT_S = 900


class UnknownImageError(LookupError):
    """The image has no local stand-in."""


@dataclass(frozen=True)
class Image:
    """What a container of this image runs when its spec does not say."""

    entrypoint: list[str]
    cmd: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    workdir: str = "/"
    #: Files the image ships, path -> content (mounted read-only).
    files: dict[str, str] = field(default_factory=dict)


def _path(*bins: Path) -> str:
    return ":".join([*(str(b) for b in bins), SYSTEM_PATH])


def _installed_version(venv: Path, dist: str) -> str | None:
    for site in venv.glob("lib/python*/site-packages"):
        for info in site.glob("*.dist-info"):
            name, _, version = info.name[: -len(".dist-info")].rpartition("-")
            if name.lower().replace("_", "-") == dist:
                return version
    return None


def chroma_venv(version: str) -> Path:
    """The virtual environment holding chromadb==``version``, created on demand.

    The project's ``.venv`` serves when it has that version; otherwise
    ``.venvs/chroma-<version>`` is created with pip from PyPI, pinned by
    ``requirements/chroma-<version>.txt`` when the repository has one (the
    Makefile's ``legacy-chroma`` target makes the same venv). A lock file keeps
    concurrent test runs from installing twice.
    """
    if _installed_version(MAIN_VENV, "chromadb") == version:
        return MAIN_VENV
    venv = VENVS / f"chroma-{version}"
    marker = venv / ".installed"
    if marker.exists():
        return venv
    VENVS.mkdir(parents=True, exist_ok=True)
    with open(VENVS / f".chroma-{version}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.exists():
            return venv
        python = Path(getattr(sys, "_base_executable", sys.executable))
        if not (venv / "bin" / "python").exists():
            subprocess.run([str(python), "-m", "venv", str(venv)], check=True)
        pins = REPO / "requirements" / f"chroma-{version}.txt"
        what = ["-r", str(pins)] if pins.exists() else [f"chromadb=={version}"]
        subprocess.run(
            [str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", *what],
            check=True, timeout=PIP_TIMEOUT_S,
        )
        if _installed_version(venv, "chromadb") != version:
            raise RuntimeError(f"{venv} does not hold chromadb {version} after pip install")
        marker.touch()
    return venv


def _major(version: str) -> int:
    head = version.lstrip("v").split(".", 1)[0]
    if not head.isdigit():
        raise UnknownImageError(f"Chroma image tag {version!r} is not a release version")
    return int(head)


#: The official 1.x image's /config.yaml (its CMD is ``run /config.yaml``; its entrypoint
#: is ``dumb-init -- chroma``, here the sandbox's reaper stands in for dumb-init).
_CHROMA_IMAGE_CONFIG = (
    'port: 8000\nlisten_address: "0.0.0.0"\npersist_path: "/data"\nallow_reset: false\n'
)


def chroma_image(tag: str) -> Image:
    venv = chroma_venv(tag.lstrip("v"))
    env = {"PATH": _path(venv / "bin")}
    if _major(tag) >= 1:
        return Image(["chroma"], ["run", "/config.yaml"], env,
                     files={"/config.yaml": _CHROMA_IMAGE_CONFIG})
    # The 0.x image: uvicorn serving the Python server, settings from env.
    env |= {"CHROMA_HOST_ADDR": "0.0.0.0", "CHROMA_HOST_PORT": "8000", "CHROMA_WORKERS": "1"}
    return Image(["uvicorn", "chromadb.app:app"],
                 ["--workers", "1", "--host", "0.0.0.0", "--port", "8000"], env, workdir="/")


def chromactl_image(_tag: str) -> Image:
    return Image(["chromactl"], [], {"PATH": _path(MAIN_VENV / "bin")})


def python_image(_tag: str) -> Image:
    return Image([], ["python3"], {"PATH": _path(MAIN_VENV / "bin")})


def curl_image(_tag: str) -> Image:
    return Image(["curl"], [], {"PATH": SYSTEM_PATH})


def busybox_image(_tag: str) -> Image:
    return Image([], ["sh"], {"PATH": SYSTEM_PATH})


#: repository -> stand-in (called with the tag).
TABLE: dict[str, Callable[[str], Image]] = {
    "ghcr.io/chroma-core/chroma": chroma_image,
    "chromadb/chroma": chroma_image,
    "ghcr.io/chromadb-chart/chromactl": chromactl_image,
    "python": python_image,
    "curlimages/curl": curl_image,
    "busybox": busybox_image,
}


def split_image(ref: str) -> tuple[str, str]:
    """``registry/repo:tag@digest`` -> (normalised repository, tag)."""
    name = ref.split("@", 1)[0]
    tag = "latest"
    head, _, last = name.rpartition("/")
    if ":" in last:
        last, tag = last.split(":", 1)
    repo = f"{head}/{last}" if head else last
    for prefix in ("docker.io/library/", "docker.io/", "index.docker.io/library/"):
        if repo.startswith(prefix):
            repo = repo[len(prefix):]
            break
    return repo, tag


def resolve(ref: str) -> Image:
    """The local stand-in for image ``ref``; :class:`UnknownImageError` if none."""
    repo, tag = split_image(ref)
    try:
        factory = TABLE[repo]
    except KeyError:
        known = ", ".join(sorted(TABLE))
        raise UnknownImageError(
            f"image {ref!r} has no local stand-in (known repositories: {known})"
        ) from None
    return factory(tag)


def main(argv: list[str]) -> int:
    """``python tests/podrunner/images.py chroma 0.6.3``: prepare a Chroma venv."""
    if len(argv) != 2 or argv[0] != "chroma":
        print("usage: python tests/podrunner/images.py chroma VERSION", file=sys.stderr)
        return 2
    print(chroma_venv(argv[1]))
    return 0


if __name__ == "__main__":
    os.chdir(REPO)
    raise SystemExit(main(sys.argv[1:]))
