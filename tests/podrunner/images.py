"""Container images for the pod runner: found in local image storage, run from their root.

``scripts/images.py build --standins`` (``make images``) builds every image the chart and the
tests name, with buildah, and tags them with the names the chart renders (the official Chroma
image's name for the Chroma stand-in). The runner looks an image up by that exact reference,
the way a kubelet with ``imagePullPolicy: Never`` would: a reference that is not in local
storage is an error naming it. An image's root filesystem is exposed with ``buildah mount`` of
one working container per image (read only as far as the runner is concerned: every container
gets its own overlay on top), and its config (Entrypoint, Cmd, Env, User, WorkingDir) is applied
under the pod spec as the kubelet applies it.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

from scripts.images import build_lock, buildah_inspect

REPO = Path(__file__).resolve().parents[2]
BUILDAH = shutil.which("buildah") or "/usr/bin/buildah"
#: What builds the images the runner looks for.
BUILD_HINT = "make images (scripts/images.py build --standins)"
#: The test client: Python with the chromadb client, curl and a shell.
CLIENT_IMAGE = "localhost/chromadb-chart/e2e-client:1.5.9"


class ImageNotFoundError(LookupError):
    """The reference is not in local image storage."""


@dataclass(frozen=True)
class Image:
    """An image in local storage: its root filesystem and what a container of it runs."""

    ref: str
    id: str
    root: Path
    entrypoint: list[str]
    cmd: list[str]
    env: dict[str, str]
    workdir: str
    user: str

    @functools.cached_property
    def accounts(self) -> list[Account]:
        """The users of the image's /etc/passwd."""
        return [Account(p[0], int(p[2]), int(p[3]), p[5]) for p in _table(self.root / "etc" / "passwd", 7)]

    @functools.cached_property
    def groups(self) -> dict[str, int]:
        """Group name -> gid, from the image's /etc/group."""
        return {p[0]: int(p[2]) for p in _table(self.root / "etc" / "group", 3)}

    def account(self, uid: int) -> Account | None:
        return next((a for a in self.accounts if a.uid == uid), None)


@dataclass(frozen=True)
class Account:
    name: str
    uid: int
    gid: int
    home: str


def _table(path: Path, fields: int) -> list[list[str]]:
    """The colon-separated rows of a passwd-style file (none if the image lacks it)."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return []
    return [row for row in (line.split(":") for line in lines) if len(row) >= fields]


def normalize(ref: str) -> str:
    """A reference as the container runtime names it: ``python:3.11`` is
    ``docker.io/library/python:3.11``, a reference without a tag is ``:latest``."""
    name, at, digest = ref.partition("@")
    head, _, last = name.rpartition("/")
    if not at and ":" not in last:
        last += ":latest"
    name = f"{head}/{last}" if head else last
    first = name.split("/", 1)[0]
    if "/" not in name:
        name = f"docker.io/library/{name}"
    elif not ("." in first or ":" in first or first == "localhost"):
        name = f"docker.io/{name}"
    return name + (f"@{digest}" if at else "")


def _buildah(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([BUILDAH, *argv], capture_output=True, text=True, timeout=120, check=False)


def _env(items: list[str] | None) -> dict[str, str]:
    return dict(item.split("=", 1) for item in items or [] if "=" in item)


class ImageStore:
    """Images of local storage by reference; each mounted once per process, on first use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cache: dict[str, Image] = {}

    def resolve(self, ref: str) -> Image:
        full = normalize(ref)
        with self._lock:
            if full not in self._cache:
                self._cache[full] = self._load(ref, full)
            return self._cache[full]

    def _load(self, ref: str, full: str) -> Image:
        info = buildah_inspect(full)
        if info is None:
            raise ImageNotFoundError(
                f"image {ref!r} ({full}) is not in local image storage; the tests build every "
                f"image the chart names with {BUILD_HINT}"
            )
        image_id = str(info["FromImageID"])
        config = (info.get("OCIv1") or {}).get("config") or {}
        root = self._mount(image_id)
        return Image(
            ref=full,
            id=image_id,
            root=root,
            entrypoint=list(config.get("Entrypoint") or []),
            cmd=list(config.get("Cmd") or []),
            env=_env(config.get("Env")),
            workdir=config.get("WorkingDir") or "/",
            user=config.get("User") or "",
        )

    @staticmethod
    def _mount(image_id: str) -> Path:
        name = f"podrunner-{image_id[:12]}"
        with build_lock():  # not while scripts/images.py replaces images
            if _buildah("inspect", "--type", "container", name).returncode != 0:
                made = _buildah("from", "--pull-never", "--name", name, image_id)
                if made.returncode != 0:
                    raise RuntimeError(f"buildah from {image_id}: {made.stderr.strip()}")
            mounted = _buildah("mount", name)
            if mounted.returncode != 0:
                raise RuntimeError(f"buildah mount {name}: {mounted.stderr.strip()}")
        return Path(mounted.stdout.strip())


#: One store for the test process: mounts are shared by every runner.
STORE = ImageStore()
