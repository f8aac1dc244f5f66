"""Build the project's container images (`make images`); one set of inputs for every builder.

Each image is a Dockerfile, its build arguments, its tags and the files it is built from. The
same table drives three builders:

* ``buildah``: no daemon (``--isolation chroot``); what ``make images`` and ``make test`` use.
  Images are cached by a hash of their inputs (the ``org.chromadb-chart.inputs`` label), so a
  second run builds nothing that has not changed.
* ``docker``: ``docker build``, what the kind workflow and a laptop with Docker use.
* ``buildx``: ``docker buildx build`` for several platforms, pushed with SBOM and provenance
  attestations, what the release workflow uses; the pushed digests are written for signing.

``--local-bases`` (implied by ``--standins``) builds the base images from Debian packages with
mmdebstrap instead of pulling them, for machines that reach no container registry, and
``--standins`` adds the images the tests run that upstream publishes: a Chroma 1.x image with
the official image's layout (from the chromadb wheel the tests pin), the legacy 0.x image under
its upstream name, and the test client. Package downloads may go through a TLS-intercepting
proxy: ``--ca-certs`` (default ``/etc/ssl/certs``) is mounted into the build steps, never copied
into an image.

    scripts/images.py build --standins            # everything the tests run, with buildah
    scripts/images.py build --builder docker --only chromactl
    scripts/images.py build --builder buildx --platform linux/amd64,linux/arm64 --push \\
        --metadata dist/images.json               # the release
    scripts/images.py list [--json]               # names, tags, Dockerfiles, build arguments
    scripts/images.py audit                       # pip-audit of the released images' packages
    scripts/images.py figures                     # their size and layers (image/README.md)
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "charts" / "chromadb" / "Chart.yaml"
STANDINS = "tests/images/standins"
INPUTS_LABEL = "org.chromadb-chart.inputs"
LOCK = Path("/run/lock/chromadb-chart-images.lock")
#: The packages of the python:3.11-slim-bookworm stand-in (mmdebstrap --variant=minbase).
BASE_SUITE = "bookworm"
BASE_PACKAGES = ("python3.11", "python3.11-venv", "python-is-python3", "ca-certificates")
#: The pinned upstream base every Dockerfile of image/ names in ARG BASE_IMAGE.
BASE_REF_PATTERN = re.compile(r"^ARG BASE_IMAGE=(\S+)$", re.M)


def chart_version() -> str:
    match = re.search(r"^version:\s*\"?([^\"\s]+)", CHART.read_text(), re.M)
    if not match:
        raise SystemExit(f"{CHART}: no version")
    return match[1]


def pinned(requirements: Path, dist: str) -> str:
    match = re.search(rf"^{re.escape(dist)}==(\S+)$", requirements.read_text(), re.M | re.I)
    if not match:
        raise SystemExit(f"{requirements}: {dist} is not pinned")
    return match[1]


def legacy_versions() -> list[str]:
    """Chroma 0.x versions with a lock under requirements/ (each gets a legacy image)."""
    found = (p.stem.removeprefix("chroma-") for p in (ROOT / "requirements").glob("chroma-*.txt"))
    return sorted(found)


@dataclass(frozen=True)
class Image:
    """One image: how it is built and what it is called."""

    name: str
    dockerfile: str
    tags: tuple[str, ...]
    args: dict[str, str] = field(default_factory=dict)
    #: Files and folders (relative to the repository) whose content the image is built from.
    inputs: tuple[str, ...] = ()
    #: With --local-bases: the image (by name) that is this one's BASE_IMAGE.
    base: str | None = None
    #: Published by the release workflow (the others exist only for the tests).
    released: bool = True
    #: Built only with --standins.
    standin: bool = False
    #: Further tags with --standins: upstream names this image stands in for.
    standin_tags: tuple[str, ...] = ()
    #: Built from a root filesystem of Debian packages (mmdebstrap), its only context file.
    rootfs_from_debian: bool = False

    @property
    def ref(self) -> str:
        return self.tags[0]


def images() -> list[Image]:
    version, chroma = chart_version(), pinned(ROOT / "constraints.txt", "chromadb")
    table = [
        Image(
            "base-python",
            f"{STANDINS}/base.Dockerfile",
            ("localhost/chromadb-chart/python:3.11-slim-bookworm",),
            inputs=(f"{STANDINS}/base.Dockerfile",),
            released=False,
            standin=True,
            rootfs_from_debian=True,
        ),
        Image(
            "chromactl",
            "image/chromactl/Dockerfile",
            (f"ghcr.io/chromadb-chart/chromactl:{version}",),
            {"VERSION": version},
            ("image/chromactl", "constraints.txt", "pyproject.toml", "README.md", "src"),
            base="base-python",
        ),
    ]
    for legacy in legacy_versions():
        # The chart's default image for chromadb.apiVersion 0.x is upstream's: ours stands in.
        table.append(
            Image(
                f"chroma-{legacy}",
                "image/chroma/Dockerfile",
                (f"ghcr.io/chromadb-chart/chroma:{legacy}",),
                {"CHROMA_VERSION": legacy},
                ("image/chroma", f"requirements/chroma-{legacy}.txt"),
                base="base-python",
                standin_tags=(f"ghcr.io/chroma-core/chroma:{legacy}",),
            )
        )
    table += [
        Image(
            "upstream-chroma",
            f"{STANDINS}/chroma.Dockerfile",
            (f"ghcr.io/chroma-core/chroma:{chroma}",),
            {"CHROMA_VERSION": chroma},
            (f"{STANDINS}/chroma.Dockerfile", "constraints.txt"),
            base="base-python",
            released=False,
            standin=True,
        ),
        Image(
            "s3",
            f"{STANDINS}/s3.Dockerfile",
            (f"localhost/chromadb-chart/s3:{pinned(ROOT / 'constraints.txt', 'moto')}",),
            {},
            (f"{STANDINS}/s3.Dockerfile", "constraints.txt"),
            base="base-python",
            released=False,
            standin=True,
        ),
        Image(
            "e2e-client",
            f"{STANDINS}/client.Dockerfile",
            (f"localhost/chromadb-chart/e2e-client:{chroma}",),
            {},
            (f"{STANDINS}/client.Dockerfile",),
            base="upstream-chroma",
            released=False,
            standin=True,
        ),
    ]
    return table


def files_of(inputs: tuple[str, ...]) -> Iterator[Path]:
    for item in inputs:
        path = ROOT / item
        if path.is_dir():
            yield from sorted(
                p
                for p in path.rglob("*")
                if p.is_file() and "__pycache__" not in p.parts and not p.name.endswith(".pyc")
            )
        elif path.exists():
            yield path
        else:
            raise SystemExit(f"input {item} of an image does not exist")


def inputs_hash(image: Image, base_id: str, build_args: dict[str, str]) -> str:
    digest = hashlib.sha256()
    digest.update(
        json.dumps(
            [image.name, image.dockerfile, sorted(build_args.items()), base_id, BASE_PACKAGES, BASE_SUITE]
        ).encode()
    )
    digest.update((ROOT / image.dockerfile).read_bytes())
    for path in files_of(image.inputs):
        digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def run(argv: list[str], *, quiet: bool = False) -> str:
    print("+ " + " ".join(argv), file=sys.stderr, flush=True)
    done = subprocess.run(
        argv,
        text=True,
        check=False,
        stdout=subprocess.PIPE if quiet else None,
        stderr=subprocess.STDOUT if quiet else None,
    )
    if done.returncode != 0:
        tail = "\n".join((done.stdout or "").splitlines()[-40:])
        raise SystemExit(f"{argv[0]} failed (exit {done.returncode}): {' '.join(argv)}\n{tail}")
    return done.stdout or ""


def json_items(text: str | None) -> list[dict]:
    """The items of a tool's JSON listing: a list, one object, or nothing.

    ``buildah containers --json`` and ``buildah images --json`` print ``null`` when storage holds
    none, and some tools print a lone object for a single item; each reads as a list here.
    """
    found = json.loads(text) if text and text.strip() else None
    if found is None:
        return []
    if isinstance(found, dict):
        return [found]
    if isinstance(found, list) and all(isinstance(item, dict) for item in found):
        return found
    raise ValueError(f"expected a JSON list of objects, one object or null, got: {text[:200]!r}")


def buildah_list(*argv: str) -> list[dict] | None:
    """``buildah <argv> --json`` as a list of items; None when buildah fails."""
    done = subprocess.run(["buildah", *argv, "--json"], capture_output=True, text=True, check=False)
    return json_items(done.stdout) if done.returncode == 0 else None


def buildah_inspect(ref: str) -> dict | None:
    done = subprocess.run(
        ["buildah", "inspect", "--type", "image", ref], capture_output=True, text=True, check=False
    )
    return json.loads(done.stdout) if done.returncode == 0 else None


def image_id(ref: str) -> str:
    found = buildah_inspect(ref)
    if found is None:
        raise SystemExit(f"image {ref} is not in local storage")
    return str(found["FromImageID"])


def labels_of(info: dict) -> dict[str, str]:
    return dict((info.get("OCIv1", {}).get("config") or {}).get("Labels") or {})


@contextlib.contextmanager
def build_lock() -> Iterator[None]:
    LOCK.parent.mkdir(parents=True, exist_ok=True)
    with open(LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


class Builder:
    def __init__(self, opts: argparse.Namespace) -> None:
        self.opts = opts
        self.table = {i.name: i for i in images()}
        #: Names of the images built (or found up to date) in this run.
        self.built: set[str] = set()

    def wanted(self) -> list[Image]:
        chosen = [
            i
            for i in self.table.values()
            if (self.opts.standins or not i.standin) and (not self.opts.only or i.name in self.opts.only)
        ]
        if self.opts.only:
            unknown = set(self.opts.only) - set(self.table)
            if unknown:
                raise SystemExit(
                    f"no image named {', '.join(sorted(unknown))} (known: {', '.join(self.table)})"
                )
        if self.opts.released:
            chosen = [i for i in chosen if i.released]
        return chosen

    def build_all(self, wanted: list[Image], jobs: int) -> None:
        """``wanted`` and their bases, in rounds: each round builds, ``jobs`` at a time, the
        images whose base is built (the stand-in base alone, then everything on it, ...)."""
        todo: dict[str, Image] = {}

        def add(image: Image) -> None:
            if image.name not in todo and image.name not in self.built:
                if self.opts.local_bases and image.base:
                    add(self.table[image.base])
                todo[image.name] = image

        for image in wanted:
            add(image)
        with ThreadPoolExecutor(max_workers=max(jobs, 1)) as pool:
            while todo:
                ready = [
                    i for i in todo.values() if not (self.opts.local_bases and i.base and i.base in todo)
                ]
                for image in ready:
                    del todo[image.name]
                for future in [pool.submit(self.build, image) for image in ready]:
                    future.result()

    def build_args(self, image: Image) -> dict[str, str]:
        args = dict(image.args)
        if self.opts.local_bases and image.base:
            args["BASE_IMAGE"] = self.table[image.base].ref
        for extra in self.opts.build_arg or []:
            key, _, value = extra.partition("=")
            args[key] = value
        return args

    def build(self, image: Image) -> None:
        """One image (its base built already: :meth:`build_all` sees to it)."""
        args = self.build_args(image)
        if self.opts.builder == "buildah":
            self._buildah(image, args)
        else:
            self._docker(image, args)
        self.built.add(image.name)

    def _buildah(self, image: Image, args: dict[str, str]) -> None:
        if self.opts.dry_run:
            print(
                shlex.join(
                    [
                        "buildah",
                        "build",
                        "-f",
                        image.dockerfile,
                        *(f"--build-arg={k}={v}" for k, v in sorted(args.items())),
                        *(f"--tag={tag}" for tag in image.tags),
                        ".",
                    ]
                )
            )
            return
        base_id = image_id(args["BASE_IMAGE"]) if "BASE_IMAGE" in args else ""
        digest = inputs_hash(image, base_id, args)
        tags = image.tags + (image.standin_tags if self.opts.standins else ())
        found = [buildah_inspect(tag) for tag in tags]
        if not self.opts.rebuild and all(
            f is not None and labels_of(f).get(INPUTS_LABEL) == digest for f in found
        ):
            print(f"{image.ref}: up to date (inputs {digest[:12]})", file=sys.stderr)
            return
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="images-") as tmp:
            context = str(ROOT)
            if image.rootfs_from_debian:
                context = tmp
                run(
                    [
                        "mmdebstrap",
                        "--variant=minbase",
                        f"--include={','.join(BASE_PACKAGES)}",
                        BASE_SUITE,
                        str(Path(tmp) / "rootfs.tar"),
                    ],
                    quiet=True,
                )
            argv = [
                "buildah",
                "build",
                "--isolation",
                "chroot",
                "--network",
                "host",
                "--layers=false",
                "--pull-never",
                "-f",
                str(ROOT / image.dockerfile),
                "--label",
                f"{INPUTS_LABEL}={digest}",
            ]
            if self.opts.ca_certs and Path(self.opts.ca_certs).is_dir():
                argv += ["-v", f"{self.opts.ca_certs}:/etc/ssl/certs:ro"]
            for key, value in sorted(args.items()):
                argv += ["--build-arg", f"{key}={value}"]
            for tag in tags:
                argv += ["-t", tag]
            run([*argv, context], quiet=not self.opts.verbose)
        print(f"{image.ref}: built in {time.monotonic() - started:.0f}s", file=sys.stderr)

    def _docker(self, image: Image, args: dict[str, str]) -> None:
        argv = ["docker", "buildx", "build"] if self.opts.builder == "buildx" else ["docker", "build"]
        argv += ["-f", str(ROOT / image.dockerfile)]
        for key, value in sorted(args.items()):
            argv += ["--build-arg", f"{key}={value}"]
        for tag in image.tags:
            argv += ["-t", tag]
        if self.opts.builder == "buildx":
            if self.opts.platform:
                argv += ["--platform", self.opts.platform]
            argv += ["--provenance=mode=max", "--sbom=true"]
            argv += ["--push"] if self.opts.push else ["--load"]
            if self.opts.metadata:
                meta = Path(self.opts.metadata).with_suffix(f".{image.name}.json")
                argv += ["--metadata-file", str(meta)]
        if self.opts.dry_run:
            print(shlex.join([*argv, "."]).replace(str(ROOT) + "/", ""))
            return
        run([*argv, str(ROOT)])

    def write_metadata(self) -> None:
        """``--metadata``: {name: {"tags": [...], "digest": "sha256:..."}} for signing."""
        if not self.opts.metadata:
            return
        out: dict[str, dict[str, object]] = {}
        for name in sorted(self.built):
            image = self.table[name]
            meta = Path(self.opts.metadata).with_suffix(f".{name}.json")
            digest = json.loads(meta.read_text()).get("containerimage.digest") if meta.exists() else None
            out[name] = {"tags": list(image.tags), "digest": digest}
        Path(self.opts.metadata).write_text(json.dumps(out, indent=2) + "\n")


# ------------------------------------------------------------------------------- inspection

#: Shells no image of ours may ship where a shell is removed (chromactl).
SHELLS = frozenset(
    {"sh", "bash", "rbash", "dash", "ash", "zsh", "ksh", "mksh", "csh", "tcsh", "fish", "busybox"}
)
AUDIT_IGNORE = ROOT / "image" / "audit-ignore.txt"


@contextlib.contextmanager
def mounted(ref: str) -> Iterator[Path]:
    """The root filesystem of a locally stored image (buildah), for the duration."""
    made = subprocess.run(
        ["buildah", "from", "--pull-never", ref], capture_output=True, text=True, check=False
    )
    if made.returncode != 0:
        raise SystemExit(f"image {ref} is not in local storage: make images\n{made.stderr}")
    container = made.stdout.strip()
    try:
        root = subprocess.run(
            ["buildah", "mount", container], capture_output=True, text=True, check=True
        ).stdout.strip()
        yield Path(root)
    finally:
        subprocess.run(["buildah", "rm", container], capture_output=True, check=False)


def shells_in(root: Path) -> list[str]:
    """Shell executables (by name, links included) anywhere on the image's usual paths."""
    found = []
    for directory in ("bin", "sbin", "usr/bin", "usr/sbin", "usr/local/bin", "usr/local/sbin"):
        base = root / directory
        if base.is_dir() and not base.is_symlink():
            found += [f"/{directory}/{p.name}" for p in base.iterdir() if p.name in SHELLS]
    for venv_bin in root.glob("opt/*/bin"):
        found += [f"/{p.relative_to(root)}" for p in venv_bin.iterdir() if p.name in SHELLS]
    return sorted(found)


def setid_files(root: Path) -> list[str]:
    """Files with the setuid or setgid bit, anywhere in the image."""
    found = []
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            path = Path(dirpath) / name
            with contextlib.suppress(OSError):
                if not path.is_symlink() and path.lstat().st_mode & 0o6000:
                    found.append(f"/{path.relative_to(root)}")
    return sorted(found)


def installed_dists(root: Path) -> dict[str, str]:
    """name -> version of every Python distribution in the image's virtual environments."""
    out: dict[str, str] = {}
    for info in root.glob("opt/*/lib/python3*/site-packages/*.dist-info"):
        meta = info / "METADATA"
        if not meta.exists():
            continue
        headers = dict(
            line.split(": ", 1)
            for line in meta.read_text(errors="replace").split("\n\n", 1)[0].splitlines()
            if ": " in line
        )
        out[canonical(headers["Name"])] = headers["Version"]
    return dict(sorted(out.items()))


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def audit_ignores() -> list[tuple[str, str, str]]:
    """(vulnerability id, package, why) from image/audit-ignore.txt."""
    entries = []
    for number, line in enumerate(AUDIT_IGNORE.read_text().splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = line.split(None, 2)
        if len(parts) < 3:
            raise SystemExit(f"{AUDIT_IGNORE}:{number}: want `ID PACKAGE WHY`, got {line!r}")
        entries.append((parts[0], canonical(parts[1]), parts[2]))
    return entries


#: Run inside an image (its venv's python) to list its distributions, for --builder docker.
_LIST_DISTS = (
    "import importlib.metadata as m; print('\\n'.join(sorted("
    "f\"{d.metadata['Name']}=={d.version}\" for d in m.distributions())))"
)


def dists_of(ref: str, builder: str) -> dict[str, str]:
    if builder == "buildah":
        with mounted(ref) as root:
            return installed_dists(root)
    done = subprocess.run(
        ["docker", "run", "--rm", "--entrypoint", "python", ref, "-c", _LIST_DISTS],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"cannot list the packages of {ref}: {done.stderr.strip()}")
    pairs = (line.split("==", 1) for line in done.stdout.splitlines() if "==" in line)
    return dict(sorted((canonical(n), v) for n, v in pairs))


def audit(refs: list[str], builder: str = "buildah") -> int:
    """pip-audit over the packages installed in each image (its venvs), PyPI's advisories."""
    pip_audit = shutil.which("pip-audit", path=str(Path(sys.executable).parent)) or shutil.which("pip-audit")
    if not pip_audit:
        raise SystemExit("pip-audit is missing: make deps")
    ignore = [arg for vuln, _pkg, _why in audit_ignores() for arg in ("--ignore-vuln", vuln)]
    failed = 0
    for ref in refs:
        dists = dists_of(ref, builder)
        with tempfile.NamedTemporaryFile("w", suffix=".txt") as req:
            req.write("".join(f"{n}=={v}\n" for n, v in dists.items()))
            req.flush()
            print(f"== {ref}: {len(dists)} Python packages", flush=True)
            done = subprocess.run(
                [
                    pip_audit,
                    "--disable-pip",
                    "--no-deps",
                    "--strict",
                    "--progress-spinner",
                    "off",
                    "-s",
                    "pypi",
                    "-r",
                    req.name,
                    *ignore,
                ],
                check=False,
            )
            failed |= done.returncode
    return failed


def figures(ref: str) -> tuple[int, int]:
    """(size in bytes, number of layers) of a locally stored image."""
    info = buildah_inspect(ref)
    if info is None:
        raise SystemExit(f"image {ref} is not in local storage: make images")
    layers = json.loads(info["Manifest"])["layers"]  # uncompressed tar layers in local storage
    return sum(int(layer["size"]) for layer in layers), len(layers)


def check_tools(builder: str, local_bases: bool) -> None:
    needed = {"buildah": ["buildah"], "docker": ["docker"], "buildx": ["docker"]}[builder]
    needed += ["mmdebstrap"] if local_bases and builder == "buildah" else []
    missing = [t for t in needed if shutil.which(t) is None]
    if missing:
        raise SystemExit(
            f"missing {', '.join(missing)}: scripts/install-system-deps.sh installs buildah and mmdebstrap"
        )
    if local_bases and builder != "buildah":
        raise SystemExit("--local-bases needs --builder buildah")
    if builder == "buildah" and os.geteuid() != 0:
        raise SystemExit("buildah builds here run as root (sudo make images)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="build images")
    build.add_argument("--builder", choices=("buildah", "docker", "buildx"), default="buildah")
    build.add_argument("--only", nargs="+", metavar="NAME", help="these images (and their bases)")
    build.add_argument("--released", action="store_true", help="only the images a release publishes")
    build.add_argument(
        "--standins",
        action="store_true",
        help="also the upstream images the tests run (implies --local-bases)",
    )
    build.add_argument(
        "--local-bases",
        action="store_true",
        help="bases from Debian packages (mmdebstrap) instead of a registry",
    )
    build.add_argument("--build-arg", action="append", metavar="KEY=VALUE")
    build.add_argument(
        "--ca-certs",
        default="/etc/ssl/certs",
        help="CA directory mounted into build steps, never into images",
    )
    build.add_argument("--rebuild", action="store_true", help="ignore the input-hash cache")
    build.add_argument(
        "--jobs",
        type=int,
        default=3,
        help="images built at once once their base is built (default 3: the builds wait on downloads)",
    )
    build.add_argument("--platform", help="buildx: e.g. linux/amd64,linux/arm64")
    build.add_argument("--push", action="store_true", help="buildx: push instead of --load")
    build.add_argument("--metadata", help="buildx: write tags and pushed digests to this JSON file")
    build.add_argument("-v", "--verbose", action="store_true", help="show the builder's output")
    build.add_argument("--dry-run", action="store_true", help="print the build commands only")
    audit_cmd = sub.add_parser("audit", help="pip-audit the Python packages of the released images")
    audit_cmd.add_argument(
        "--builder",
        choices=("buildah", "docker"),
        default="buildah",
        help="where the built images are: buildah storage or docker",
    )
    sub.add_parser("figures", help="size and layers of the released images, as a Markdown table")
    listing = sub.add_parser("list", help="the images, their tags and build arguments")
    listing.add_argument("--json", action="store_true")
    listing.add_argument("--released", action="store_true")
    opts = parser.parse_args(argv)

    if opts.command == "list":
        table = [i for i in images() if i.released or not opts.released]
        if opts.json:
            print(
                json.dumps(
                    [
                        {
                            "name": i.name,
                            "dockerfile": i.dockerfile,
                            "tags": list(i.tags),
                            "args": i.args,
                            "released": i.released,
                        }
                        for i in table
                    ],
                    indent=2,
                )
            )
        else:
            for i in table:
                print(f"{i.name:24} {i.ref:56} {i.dockerfile}")
        return 0

    if opts.command == "audit":
        return audit([i.ref for i in images() if i.released], opts.builder)
    if opts.command == "figures":
        print("| image | size (uncompressed) | layers |\n|---|---|---|")
        for image in (i for i in images() if i.released):
            size, layers = figures(image.ref)
            print(f"| `{image.ref}` | {size / 1e6:.0f} MB | {layers} |")
        return 0

    opts.local_bases = opts.local_bases or opts.standins
    builder = Builder(opts)
    if opts.dry_run:
        builder.build_all(builder.wanted(), 1)
        return 0
    check_tools(opts.builder, opts.local_bases)
    with build_lock():
        builder.build_all(builder.wanted(), opts.jobs)
        if opts.builder == "buildah":
            prune_replaced()
    builder.write_metadata()
    return 0


def prune_replaced() -> None:
    """Drop the pod runner's mounts of images a rebuild replaced, then those images."""
    containers = buildah_list("containers")
    tagged = buildah_list("images")
    if containers is None or tagged is None:
        return
    named = {i["id"] for i in tagged if i.get("names")}
    for container in containers:
        if container["containername"].startswith("podrunner-") and container["imageid"][:12] not in {
            n[:12] for n in named
        }:
            subprocess.run(["buildah", "rm", container["id"]], capture_output=True, check=False)
    subprocess.run(["buildah", "rmi", "--prune"], capture_output=True, check=False)


if __name__ == "__main__":
    raise SystemExit(main())
