"""A container's sandbox: who its process is and the command line that starts it.

The container's root is its image's root filesystem under an overlay of its own, volumes
on top, nothing of the host but /proc, /dev and /sys (bubblewrap); the last step, setting
user and groups and exec'ing the command, is ``exec.c`` (``ExecShim``).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tests.podrunner import environment
from tests.podrunner import images as image_table
from tests.podrunner.common import BASH, BWRAP, CC, RUN_DIR, UNSHARE, PodError

if TYPE_CHECKING:
    from tests.podrunner.pod import Container, Pod
    from tests.podrunner.runner import PodRunner


def identity(runner: PodRunner, pod: Pod, c: Container, image: image_table.Image) -> Identity:
    """Who the container's process is: the securityContext over the image's USER.

    As the kubelet: ``runAsUser``/``runAsGroup`` win over the image's ``USER``; the group
    of a user without one is the user's group in the image's /etc/passwd, else 0;
    ``runAsNonRoot`` refuses uid 0 and a non-numeric image user it cannot verify.
    """
    pod_ctx = pod.spec.get("securityContext") or {}
    ctx = pod_ctx | (c.spec.get("securityContext") or {})
    image_user, _, image_group = image.user.partition(":")
    image_uid: int | None = None
    image_gid: int | None = None
    if image_user.isdigit():
        image_uid = int(image_user)
    elif image_user:
        named = next((a for a in image.accounts if a.name == image_user), None)
        if named is None:
            raise PodError(
                f"image {image.ref} runs as user {image_user!r}, which its /etc/passwd does not have"
            )
        image_uid, image_gid = named.uid, named.gid
    if image_group:
        image_gid = int(image_group) if image_group.isdigit() else image.groups.get(image_group)
    uid = ctx.get("runAsUser")
    if uid is None:
        if ctx.get("runAsNonRoot") and image_user and not image_user.isdigit():
            raise PodError(
                f"container has runAsNonRoot and image has non-numeric user "
                f"({image_user}), cannot verify user is non-root"
            )
        uid = image_uid or 0
    if ctx.get("runAsNonRoot") and int(uid) == 0:
        raise PodError("container has runAsNonRoot and image will run as root")
    gid = ctx.get("runAsGroup")
    if gid is None:
        if ctx.get("runAsUser") is None and image_gid is not None:
            gid = image_gid
        else:
            entry = image.account(int(uid))
            gid = entry.gid if entry else 0
    groups = [
        int(g) for g in [pod_ctx.get("fsGroup"), *(pod_ctx.get("supplementalGroups") or [])] if g is not None
    ]
    no_new_privs = ctx.get("allowPrivilegeEscalation") is False
    return Identity(int(uid), int(gid), groups, no_new_privs)


def exec_argv(runner: PodRunner, who: Identity, argv: list[str]) -> list[str]:
    """The container-side command: the exec helper, by its descriptor, then ``argv``."""
    return [
        f"/proc/self/fd/{runner.shim.fd}",
        str(who.uid),
        str(who.gid),
        ",".join(map(str, who.groups)) or "-",
        "1" if who.no_new_privs else "0",
        "--",
        *argv,
    ]


def container_command(
    runner: PodRunner, pod: Pod, c: Container
) -> tuple[list[str], dict[str, str], list[str], Identity]:
    """The argv, the environment, the host command line and the user of a container.

    The container's root is its image's root filesystem under an overlay of its own
    (``readOnlyRootFilesystem`` remounts it read-only), volumes are mounted on top, and
    nothing of the host is visible but /proc, /dev and /sys.
    """
    image = runner.images.resolve(runner.mirror(str(c.spec.get("image", ""))))
    env = dict(image.env)
    env |= {"HOSTNAME": pod.spec.get("hostname", pod.name)}
    env |= environment.service_env(runner, pod)
    if runner.kube is not None:
        env |= runner.kube.env()
    env |= environment.container_env(runner, pod, c)
    who = identity(runner, pod, c, image)
    if "HOME" not in env:
        entry = image.account(who.uid)
        env["HOME"] = entry.home if entry else "/"
    env.setdefault("PATH", environment.DEFAULT_PATH)
    argv = environment.command(c.spec, image, env)
    if not argv:
        raise PodError("no command: neither the spec nor the image names one")
    workdir = c.spec.get("workingDir") or image.workdir
    ctx = c.spec.get("securityContext") or {}
    read_only = bool(ctx.get("readOnlyRootFilesystem"))

    mounts: list[tuple[str, str, Path]] = []  # (kind, target, source)
    for m in c.spec.get("volumeMounts") or []:
        if m["name"] not in pod.volumes:
            raise PodError(f"volumeMount {m['mountPath']} names unknown volume {m['name']!r}")
        source, vol_ro = pod.volumes[m["name"]]
        sub = m.get("subPath") or environment.expand(m.get("subPathExpr") or "", env)
        if sub:
            source = source / sub
            if not source.exists():
                if vol_ro:
                    raise PodError(f"subPath {sub!r} does not exist in volume {m['name']}")
                source.mkdir(parents=True)
        kind = "--ro-bind" if vol_ro or m.get("readOnly") else "--bind"
        mounts.append((kind, m["mountPath"], source))
    hostname = pod.dir / "hostname"
    hostname.write_text(pod.spec.get("hostname", pod.name) + "\n")
    mounts += [("--ro-bind", "/etc/hosts", pod.hosts), ("--ro-bind", "/etc/hostname", hostname)]
    account = runner.kube.service_account_dir(pod) if runner.kube is not None else None
    if account is not None:
        from tests.podrunner.kube import SERVICE_ACCOUNT_PATH

        target = in_root(image.root, SERVICE_ACCOUNT_PATH)
        if not any(in_root(image.root, t) == target for _, t, _ in mounts):
            mounts.append(("--ro-bind", target, account))
    if not pod.hosts.exists():
        pod.hosts.write_text("127.0.0.1\tlocalhost\n")
        runner.pod_network_changed()

    layer = pod.dir / "rootfs" / f"{c.name}-{len(c.exit_codes)}"
    for part in ("upper", "work", "merged"):
        (layer / part).mkdir(parents=True, exist_ok=True)
    overlay = f"lowerdir={image.root},upperdir={layer / 'upper'},workdir={layer / 'work'}"
    args = [
        UNSHARE,
        "--mount",
        "--propagation",
        "private",
        "--",
        BASH,
        "-c",
        'mount -t overlay overlay -o "$1" "$2" && shift 2 && exec "$@"',
        "overlay",
        overlay,
        str(layer / "merged"),
        BWRAP,
        "--die-with-parent",
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-uts",
        "--hostname",
        pod.spec.get("hostname", pod.name),
        "--bind",
        str(layer / "merged"),
        "/",
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--ro-bind",
        "/sys",
        "/sys",
    ]
    # Mount points the image lacks: made 0755, as a container runtime makes them.
    missing = sorted(
        {
            str(d)
            for _, target, _ in mounts
            for d in [*Path(target).parents, Path(target)]
            if str(d) != "/" and not os.path.lexists(image.root / str(d)[1:])
        },
        key=lambda d: d.count("/"),
    )
    for directory in missing:
        if any(t == directory for _, t, s in mounts if s.is_file()):
            continue
        args += ["--perms", "0755", "--dir", directory]
    for kind, target, source in sorted(mounts, key=lambda m: m[1].count("/")):
        args += [kind, str(source), target]
    if read_only:
        args += ["--remount-ro", "/"]
    args += ["--chdir", workdir, "--", *exec_argv(runner, who, argv)]
    return argv, env, args, who


def in_root(root: Path, path: str) -> str:
    """``path`` as the container sees it with the image's symlinks resolved inside ``root``
    (``/var/run`` -> ``/run``), as a runtime resolves a mount point: never out onto the host."""
    parts = [p for p in path.split("/") if p]
    done: list[str] = []
    hops = 0
    while parts:
        part = parts.pop(0)
        if part == ".":
            continue
        if part == "..":
            if done:
                done.pop()
            continue
        candidate = root.joinpath(*done, part)
        if candidate.is_symlink():
            hops += 1
            if hops > 40:
                raise PodError(f"too many symlinks resolving {path} in the image")
            link = os.readlink(candidate)
            parts = [p for p in link.split("/") if p] + parts
            if link.startswith("/"):
                done = []
            continue
        done.append(part)
    return "/" + "/".join(done)


@dataclass(frozen=True)
class Identity:
    """The user a container's process runs as."""

    uid: int
    gid: int
    groups: list[int]
    no_new_privs: bool


class ExecShim:
    """``exec.c`` beside this file, compiled once (statically) and held open.

    Containers start it through ``/proc/self/fd/N``: it is never in an image's filesystem.
    """

    SOURCE = Path(__file__).with_name("exec.c")

    def __init__(self) -> None:
        source = self.SOURCE.read_bytes()
        binary = RUN_DIR / f"exec-{hashlib.sha256(source).hexdigest()[:16]}"
        if not binary.exists():
            RUN_DIR.mkdir(parents=True, exist_ok=True)
            tmp = binary.with_suffix(f".{os.getpid()}")
            done = subprocess.run(
                [CC, "-static", "-O2", "-o", str(tmp), str(self.SOURCE)],
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            if done.returncode != 0:
                raise PodError(
                    f"cannot compile {self.SOURCE} (gcc and libc6-dev, installed "
                    f"by scripts/install-system-deps.sh): {done.stderr.strip()}"
                )
            tmp.replace(binary)
        self.fd = os.open(binary, os.O_RDONLY)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)
