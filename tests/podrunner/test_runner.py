"""The pod runner on small hand-written manifests."""

from __future__ import annotations

import base64
import http.client
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.podrunner import images
from tests.podrunner.runner import PodError, PodRunner, expand

#: Python, a shell and curl (the e2e client image, built by ``make images``).
PY = images.CLIENT_IMAGE
CHROMACTL = "ghcr.io/chromadb-chart/chromactl:0.2.0"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def runner(tmp_path: Path) -> Iterator[PodRunner]:
    with PodRunner(tmp_path / "cluster") as r:
        yield r


def pod(
    name: str, *containers: dict[str, Any], labels: dict[str, str] | None = None, **spec: Any
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels or {"app": name}},
        "spec": {"containers": list(containers), **spec},
    }


def web(name: str = "web", port: int = 8080, directory: str = "/srv", **extra: Any) -> dict[str, Any]:
    """A container serving ``directory`` on ``port`` with a readiness probe."""
    return {
        "name": name,
        "image": PY,
        "command": ["python3", "-m", "http.server", str(port), "-d", directory],
        "ports": [{"name": "http", "containerPort": port}],
        "readinessProbe": {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 1},
        **extra,
    }


def sh(name: str, script: str, image: str = PY, **extra: Any) -> dict[str, Any]:
    return {"name": name, "image": image, "command": ["sh", "-c", script], **extra}


def get(host: str, port: int, path: str = "/") -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(host, port, timeout=5)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


# --------------------------------------------------------------------------- units


def test_expand_follows_kubernetes_rules() -> None:
    env = {"A": "1", "B": "two"}
    assert expand("$(A)-$(B)", env) == "1-two"
    assert expand("$(MISSING)", env) == "$(MISSING)"
    assert expand("$$(A)", env) == "$(A)"
    assert expand("$A $(A", env) == "$A $(A"


def test_image_references_are_normalised_and_found_by_exact_name() -> None:
    assert images.normalize("python:3.11") == "docker.io/library/python:3.11"
    assert images.normalize("curlimages/curl") == "docker.io/curlimages/curl:latest"
    assert images.normalize("ghcr.io/chroma-core/chroma:1.5.9") == "ghcr.io/chroma-core/chroma:1.5.9"
    assert images.normalize("localhost:5000/x@sha256:ab") == "localhost:5000/x@sha256:ab"
    with pytest.raises(images.ImageNotFoundError, match=r"nginx:1\.27.*make images"):
        images.STORE.resolve("nginx:1.27")
    # A tag the tests did not build is not found either, even if the repository is.
    with pytest.raises(images.ImageNotFoundError, match=r"chroma:0\.0\.1"):
        images.STORE.resolve("ghcr.io/chroma-core/chroma:0.0.1")
    chroma = images.STORE.resolve("ghcr.io/chroma-core/chroma:1.5.9")
    assert chroma.entrypoint == ["dumb-init", "--", "chroma"]
    assert chroma.cmd == ["run", "/config.yaml"]
    assert (chroma.root / "config.yaml").is_file()
    chromactl = images.STORE.resolve(CHROMACTL)
    assert chromactl.user == "10001:10001" and chromactl.entrypoint == ["chromactl"]


# --------------------------------------------------------------------------- images


def test_containers_see_their_image_not_the_host(runner: PodRunner) -> None:
    """The image's root filesystem is /: the checkout and the host's files are not there."""
    marker = Path("/etc/podrunner-host-only")
    marker.write_text("host\n")
    try:
        script = (
            f"test -e {REPO} && echo sees-checkout; test -e {marker} && echo sees-host; "
            "test -x /opt/chroma/bin/python3 && echo image-venv; echo uid=$(id -u) home=$HOME"
        )
        result = runner.run_pod(pod("iso", sh("main", script)), 30)
    finally:
        marker.unlink()
    assert result.succeeded, result.logs()
    output = result.logs().splitlines()[1:]  # after the runner's own start line
    assert output == ["image-venv", "uid=0 home=/tmp"]  # no USER in the image: root


def test_image_config_applies_under_the_spec(runner: PodRunner) -> None:
    """Entrypoint + args, the image's USER and Env, WorkingDir, as the kubelet applies them."""
    result = runner.run_pod(pod("ctl", {"name": "ctl", "image": CHROMACTL, "args": ["version"]}), 30)
    assert result.succeeded, result.logs()
    assert "chromactl 0.2.0" in result.logs()
    probe = "import os; print(os.getuid(), os.getgid(), os.getcwd(), os.environ['HOME'], os.environ['ONE'])"
    result = runner.run_pod(
        pod(
            "who",
            {
                "name": "who",
                "image": CHROMACTL,
                "command": ["python", "-c", probe],
                "env": [{"name": "ONE", "value": "1"}],
            },
        ),
        30,
    )
    assert result.logs().splitlines()[-1] == "10001 10001 /tmp /tmp 1"
    result = runner.run_pod(
        pod(
            "as",
            {
                "name": "as",
                "image": CHROMACTL,
                "command": [
                    "python",
                    "-c",
                    "import os; print(os.getuid(), os.getgid(), sorted(os.getgroups()))",
                ],
                "securityContext": {"runAsUser": 2000, "runAsGroup": 3000},
            },
            securityContext={"fsGroup": 4000},
        ),
        30,
    )
    assert result.logs().splitlines()[-1] == "2000 3000 [4000]"


def test_a_command_the_image_lacks_fails_the_container(runner: PodRunner) -> None:
    """The chromactl image has no shell: ``sh -c`` fails to start, as on a cluster."""
    result = runner.run_pod(pod("nosh", sh("main", "echo hi", image=CHROMACTL)), 30)
    assert not result.succeeded
    assert result.error is not None and "exited with code 128" in result.error
    assert 'exec: "sh": executable file not found in $PATH' in result.logs()


def test_run_as_non_root_is_enforced_against_the_image(runner: PodRunner) -> None:
    spec = pod("root", sh("main", "true", securityContext={"runAsNonRoot": True}), restartPolicy="Never")
    result = runner.run_pod(spec, 30)
    assert not result.succeeded
    assert result.error is not None and "runAsNonRoot and image will run as root" in result.error
    ok = runner.run_pod(
        pod(
            "nonroot",
            {"name": "c", "image": CHROMACTL, "args": ["version"], "securityContext": {"runAsNonRoot": True}},
        ),
        30,
    )
    assert ok.succeeded, ok.error


# --------------------------------------------------------------------------- network


def test_pod_address_reachable_and_loopback_is_per_pod(runner: PodRunner) -> None:
    """Containers of one pod share 127.0.0.1; another pod does not see it."""
    script = (
        "mkdir -p /tmp/www && echo hello > /tmp/www/index.html && "
        "exec python3 -m http.server 9000 --bind 127.0.0.1 -d /tmp/www"
    )
    runner.start_pod(pod("a", web(directory="/etc"), sh("local", script)), "Pod/a")
    a = runner.wait_ready("a", 30)
    status, _ = get(a.ip, 8080, "/hostname")
    assert status == 200
    probe = "import urllib.request as u; print(u.urlopen('http://127.0.0.1:9000', timeout=3).read())"
    wait_for(
        lambda: runner.exec("a", "web", ["python3", "-c", probe]).returncode == 0,
        15,
        "the sibling container's loopback server",
    )
    assert "hello" in runner.exec("a", "web", ["python3", "-c", probe]).stdout
    other = runner.run_pod(pod("b", sh("probe", f'python3 -c "{probe}"')), 30)
    assert not other.succeeded
    assert "Connection refused" in other.logs()
    # The host does not reach the pod's loopback-only server either.
    with pytest.raises(OSError):
        socket.create_connection((a.ip, 9000), timeout=2).close()


def test_job_reaches_service_by_name_through_port_mapping(runner: PodRunner) -> None:
    """A Service port 80 -> targetPort "http" (8080), resolved by name from a Job."""
    runner.apply(
        [
            {
                "kind": "Service",
                "metadata": {"name": "backend"},
                "spec": {
                    "selector": {"app": "backend"},
                    "ports": [{"name": "web", "port": 80, "targetPort": "http"}],
                },
            },
            {
                "kind": "StatefulSet",
                "metadata": {"name": "backend"},
                "spec": {
                    "serviceName": "backend",
                    "replicas": 1,
                    "template": {
                        "metadata": {"labels": {"app": "backend"}},
                        "spec": {"containers": [web(directory="/etc")]},
                    },
                },
            },
            {
                "kind": "Job",
                "metadata": {"name": "client"},
                "spec": {
                    "backoffLimit": 0,
                    "template": {
                        "spec": {
                            "restartPolicy": "Never",
                            "containers": [
                                sh(
                                    "curl",
                                    "curl -sf http://backend/hostname && "
                                    "echo host=$BACKEND_SERVICE_HOST port=$BACKEND_SERVICE_PORT"
                                    " && curl -sf http://backend.default.svc.cluster.local/"
                                    "hostname",
                                    image=PY,
                                )
                            ],
                        }
                    },
                },
            },
        ]
    )
    runner.start_workloads()
    backend = runner.wait_ready("backend-0", 30)
    result = runner.run_job("client", 60)
    assert result.succeeded, result.logs()
    logs = result.logs()
    assert logs.count("backend-0") == 2
    assert f"host={backend.ip} port=80" in logs
    assert runner.service_url("backend", 80) == f"http://{backend.ip}:80"
    assert "Job/client" in runner.ran and "StatefulSet/backend" in runner.ran


# --------------------------------------------------------------------------- volumes, env


def test_volumes_env_and_expansion(runner: PodRunner) -> None:
    runner.apply(
        [
            {
                "kind": "Secret",
                "metadata": {"name": "creds"},
                "data": {"token": base64.b64encode(b"s3cret").decode()},
                "stringData": {"user": "admin"},
            },
            {
                "kind": "ConfigMap",
                "metadata": {"name": "conf"},
                "data": {"app.yaml": "port: 1\n", "LEVEL": "debug"},
            },
        ]
    )
    script = (
        "set -e; cat /etc/app/app.yaml; ls /etc/app; stat -c '%a %n' /secrets/tok; "
        "cat /secrets/tok; echo; ls /secrets; "
        "echo TOKEN=$TOKEN LEVEL=$CFG_LEVEL POD=$POD NS=$NS URL=$URL; "
        "touch /etc/app/x 2>/dev/null && echo cm-writable || echo cm-readonly"
    )
    spec = pod(
        "vols",
        {
            "name": "main",
            "image": PY,
            "command": ["sh", "-c", script + "; echo ARG $1 $2", "--"],
            "args": ["$(POD)", "$$(POD)"],
            "env": [
                {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}},
                {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                {"name": "URL", "value": "http://$(POD):1"},
            ],
            "envFrom": [{"configMapRef": {"name": "conf"}, "prefix": "CFG_"}],
            "volumeMounts": [
                {"name": "conf", "mountPath": "/etc/app/app.yaml", "subPath": "app.yaml"},
                {"name": "sec", "mountPath": "/secrets"},
            ],
        },
        restartPolicy="Never",
        volumes=[
            {"name": "conf", "configMap": {"name": "conf"}},
            {
                "name": "sec",
                "secret": {
                    "secretName": "creds",
                    "defaultMode": 0o400,
                    "items": [{"key": "token", "path": "tok"}],
                },
            },
        ],
    )
    result = runner.run_pod(spec, 30)
    logs = result.logs()
    assert result.succeeded, logs
    assert "port: 1" in logs
    assert "400 /secrets/tok" in logs and "s3cret" in logs
    assert "user" not in logs.split("s3cret", 1)[1].split("TOKEN=")[0]  # only the item
    assert "TOKEN=s3cret LEVEL=debug POD=vols NS=default URL=http://vols:1" in logs
    assert "cm-readonly" in logs
    assert "ARG vols $(POD)" in logs


def test_missing_secret_names_pod_and_container(runner: PodRunner) -> None:
    spec = pod(
        "broken",
        sh("main", "true", env=[{"name": "X", "valueFrom": {"secretKeyRef": {"name": "nope", "key": "k"}}}]),
        restartPolicy="Never",
    )
    result = runner.run_pod(spec, 30)
    assert not result.succeeded
    assert result.error is not None
    assert "pod broken" in result.error and "container main" in result.error
    assert "'nope' not found" in result.error


def test_prepare_images_fails_early_on_unknown_image(runner: PodRunner) -> None:
    runner.apply(
        [
            {
                "kind": "Deployment",
                "metadata": {"name": "x"},
                "spec": {
                    "template": {
                        "spec": {
                            "initContainers": [{"name": "i", "image": PY}],
                            "containers": [{"name": "c", "image": "nginx:1.27"}],
                        }
                    }
                },
            }
        ]
    )
    with pytest.raises(images.ImageNotFoundError, match=r"nginx:1\.27"):
        runner.prepare_images()


def test_unknown_image_is_an_error(runner: PodRunner) -> None:
    runner.start_pod(pod("odd", {"name": "c", "image": "nginx:1.27"}), "Pod/odd")
    with pytest.raises(PodError, match=r"pod odd, container c .*nginx:1.27.*not in local image storage"):
        runner.wait_ready("odd", 10)


def test_read_only_root_filesystem(runner: PodRunner) -> None:
    script = (
        "touch /rootfile 2>/dev/null && echo root-writable || echo root-readonly; "
        "touch /tmp/x 2>/dev/null && echo tmp-writable || echo tmp-readonly; "
        "touch /scratch/x && echo scratch-writable"
    )
    spec = pod(
        "ro",
        sh(
            "main",
            script,
            securityContext={"readOnlyRootFilesystem": True},
            volumeMounts=[{"name": "scratch", "mountPath": "/scratch"}],
        ),
        restartPolicy="Never",
        volumes=[{"name": "scratch", "emptyDir": {}}],
    )
    logs = runner.run_pod(spec, 30).logs()
    assert "root-readonly" in logs and "tmp-readonly" in logs and "scratch-writable" in logs
    rw = runner.run_pod(pod("rw", sh("main", script.split(";")[1])), 30).logs()
    assert "tmp-writable" in rw


def test_init_containers_run_in_order(runner: PodRunner) -> None:
    mount = [{"name": "work", "mountPath": "/work-dir"}]
    spec = pod(
        "init",
        sh("main", "cat /work-dir/order", volumeMounts=mount),
        initContainers=[
            sh("first", "echo first >> /work-dir/order", volumeMounts=mount),
            sh("second", "echo second >> /work-dir/order", volumeMounts=mount),
        ],
        restartPolicy="Never",
        volumes=[{"name": "work", "emptyDir": {}}],
    )
    result = runner.run_pod(spec, 30)
    assert result.succeeded
    assert runner.logs("init", "main").splitlines()[-2:] == ["first", "second"]


def test_failing_init_container_stops_the_pod(runner: PodRunner) -> None:
    spec = pod(
        "initfail",
        sh("main", "echo never"),
        initContainers=[sh("setup", "echo boom; exit 3")],
        restartPolicy="Never",
    )
    result = runner.run_pod(spec, 30)
    assert not result.succeeded
    assert result.error is not None and "init container setup" in result.error
    assert "code 3" in result.error and "boom" in result.error
    assert "never" not in runner.logs("initfail", "main")


# --------------------------------------------------------------------------- probes, restarts


def test_crash_is_reported_with_log_lines(runner: PodRunner) -> None:
    runner.start_pod(pod("crash", sh("app", "echo cannot read /etc/nowhere.yaml; exit 1")), "Pod/crash")
    with pytest.raises(PodError) as err:
        runner.wait_ready("crash", 30)
    message = str(err.value)
    assert "pod crash, container app" in message
    assert "exited with code 1" in message
    assert "cannot read /etc/nowhere.yaml" in message


def test_failing_liveness_restarts_the_container(runner: PodRunner) -> None:
    script = "mkdir -p /tmp/www && touch /tmp/www/alive && exec python3 -m http.server 8080 -d /tmp/www"
    container = sh(
        "app",
        script,
        ports=[{"name": "http", "containerPort": 8080}],
        livenessProbe={
            "httpGet": {"path": "/alive", "port": 8080},
            "periodSeconds": 1,
            "failureThreshold": 2,
        },
        readinessProbe={"tcpSocket": {"port": "http"}, "periodSeconds": 1},
    )
    runner.start_pod(pod("live", container, terminationGracePeriodSeconds=2), "Pod/live")
    p = runner.wait_ready("live", 30)
    c = p.container("app")
    assert runner.exec("live", "app", ["rm", "/tmp/www/alive"]).returncode == 0
    wait_for(lambda: c.liveness_restarts >= 1, 20, "a liveness restart")
    runner.wait_ready("live", 30)
    assert get(p.ip, 8080, "/alive")[0] == 200  # a fresh container: fresh /tmp
    assert c.liveness_restarts == 1
    assert "liveness probe failed" in runner.logs("live", "app")


def test_exec_probe_and_startup_gate(runner: PodRunner) -> None:
    script = "sleep 1; touch /tmp/started; exec sleep 300"
    container = sh(
        "app",
        script,
        startupProbe={
            "exec": {"command": ["test", "-f", "/tmp/started"]},
            "periodSeconds": 1,
            "failureThreshold": 10,
        },
        readinessProbe={"exec": {"command": ["true"]}, "periodSeconds": 1},
    )
    runner.start_pod(pod("startup", container), "Pod/startup")
    p = runner.wait_ready("startup", 30)
    assert p.container("app").startup is not None
    assert p.container("app").startup.successes >= 1  # type: ignore[union-attr]


# --------------------------------------------------------------------------- workloads


def test_statefulset_restart_keeps_pvc_and_drops_empty_dir(runner: PodRunner) -> None:
    mounts = [{"name": "data", "mountPath": "/data"}, {"name": "cache", "mountPath": "/cache"}]
    script = "echo run >> /data/runs; echo run >> /cache/runs; exec python3 -m http.server 8080 -d /data"
    runner.apply(
        [
            {
                "kind": "StatefulSet",
                "metadata": {"name": "db"},
                "spec": {
                    "serviceName": "db",
                    "replicas": 1,
                    "template": {
                        "metadata": {"labels": {"app": "db"}},
                        "spec": {
                            "containers": [
                                sh(
                                    "db",
                                    script,
                                    volumeMounts=mounts,
                                    readinessProbe={"tcpSocket": {"port": 8080}, "periodSeconds": 1},
                                )
                            ],
                            "volumes": [{"name": "cache", "emptyDir": {}}],
                        },
                    },
                    "volumeClaimTemplates": [{"metadata": {"name": "data"}}],
                },
            }
        ]
    )
    runner.start_workloads()
    first = runner.wait_ready("db-0", 30)
    first_pid = first.container("db").proc.pid  # type: ignore[union-attr]
    runner.restart_pod("db-0", 30)
    second = runner.pod("db-0")
    assert second is not first
    assert second.container("db").proc.pid != first_pid  # type: ignore[union-attr]
    assert (runner.pvc_dir("data-db-0") / "runs").read_text() == "run\nrun\n"
    assert runner.exec("db-0", "db", ["cat", "/cache/runs"]).stdout == "run\n"
    assert get(second.ip, 8080, "/runs") == (200, b"run\nrun\n")


def test_cronjob_and_helm_test_hook(runner: PodRunner) -> None:
    runner.apply(
        [
            {
                "kind": "CronJob",
                "metadata": {"name": "tick"},
                "spec": {
                    "schedule": "* * * * *",
                    "jobTemplate": {
                        "spec": {
                            "backoffLimit": 1,
                            "template": {
                                "spec": {
                                    "restartPolicy": "OnFailure",
                                    "containers": [
                                        sh(
                                            "tick",
                                            "echo tick $JOB",
                                            env=[
                                                {
                                                    "name": "JOB",
                                                    "valueFrom": {
                                                        "fieldRef": {
                                                            "fieldPath": "metadata.labels['job-name']"
                                                        }
                                                    },
                                                }
                                            ],
                                        )
                                    ],
                                }
                            },
                        }
                    },
                },
            },
            {
                "kind": "Pod",
                "metadata": {"name": "t-ok", "annotations": {"helm.sh/hook": "test"}},
                "spec": {"restartPolicy": "Never", "containers": [sh("t", "exit 0")]},
            },
            {
                "kind": "Pod",
                "metadata": {"name": "t-bad", "annotations": {"helm.sh/hook": "test"}},
                "spec": {"restartPolicy": "Never", "containers": [sh("t", "echo nope; exit 2")]},
            },
        ]
    )
    assert runner.start_workloads() == []  # hooks are not workloads
    cron = runner.run_cronjob("tick", 30)
    assert cron.succeeded and "tick tick" in cron.logs()
    results = runner.run_tests(30)
    assert results["t-ok"].succeeded
    assert not results["t-bad"].succeeded and "nope" in results["t-bad"].logs()
    assert runner.pod_sources() == ["CronJob/tick", "Pod/t-bad", "Pod/t-ok"]
    assert set(runner.pod_sources()) <= runner.ran


def test_close_kills_every_process(tmp_path: Path) -> None:
    with PodRunner(tmp_path / "c") as r:
        r.start_pod(pod("sleeper", sh("s", "exec sleep 600")), "Pod/sleeper")
        p = r.wait_ready("sleeper", 30)
        proc = p.container("s").proc
        holder = p.holder
        assert proc is not None and holder is not None
        bridge = r.network.bridge
    assert proc.poll() is not None and holder.poll() is not None
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert f" {bridge}:" not in links
    assert not any(
        Path(f"/proc/{pid}").exists()
        for pid in (proc.pid, holder.pid)
        if os.path.exists(f"/proc/{pid}/stat") and Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    )


def test_install_runs_hooks_around_a_deployment(runner: PodRunner) -> None:
    """pre-install hook, then the Deployment until ready, then post-install; downward API."""
    mount = [{"name": "info", "mountPath": "/info"}]
    runner.apply(
        [
            {
                "kind": "Job",
                "metadata": {"name": "pre", "annotations": {"helm.sh/hook": "pre-install"}},
                "spec": {
                    "template": {
                        "spec": {"restartPolicy": "Never", "containers": [sh("pre", "echo pre-ran")]}
                    }
                },
            },
            {
                "kind": "Deployment",
                "metadata": {"name": "app"},
                "spec": {
                    "replicas": 1,
                    "template": {
                        "metadata": {"labels": {"app": "app", "tier": "web"}},
                        "spec": {
                            "containers": [
                                web(
                                    directory="/info",
                                    volumeMounts=mount,
                                    env=[
                                        {
                                            "name": "MEM_MI",
                                            "valueFrom": {
                                                "resourceFieldRef": {
                                                    "resource": "limits.memory",
                                                    "divisor": "1Mi",
                                                }
                                            },
                                        }
                                    ],
                                    resources={"limits": {"memory": "64Mi"}},
                                )
                            ],
                            "volumes": [
                                {
                                    "name": "info",
                                    "downwardAPI": {
                                        "items": [
                                            {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
                                            {
                                                "path": "tier",
                                                "fieldRef": {"fieldPath": "metadata.labels['tier']"},
                                            },
                                        ]
                                    },
                                }
                            ],
                        },
                    },
                },
            },
            {
                "kind": "Job",
                "metadata": {"name": "post", "annotations": {"helm.sh/hook": "post-install"}},
                "spec": {
                    "template": {
                        "spec": {
                            "restartPolicy": "Never",
                            "containers": [
                                sh(
                                    "post",
                                    "curl -sf http://app:8080/tier; echo; "
                                    "curl -s --max-time 2 http://app-0:8080/ || echo no-name",
                                    image=PY,
                                )
                            ],
                        }
                    }
                },
            },
            {
                "kind": "Service",
                "metadata": {"name": "app"},
                "spec": {"selector": {"app": "app"}, "ports": [{"port": 8080}]},
            },
        ]
    )
    pods = runner.install(timeout=60)
    assert [p.name for p in pods] == ["app-0"]
    assert runner.ran == {"Job/pre", "Deployment/app", "Job/post"}
    post = next(p for p in runner.pods.values() if p.origin == "Job/post")
    # The Service name resolves; a Deployment pod's bare name does not (as in a cluster).
    assert runner.logs(post.name, "post").splitlines()[-2:] == ["web", "no-name"]
    assert get(pods[0].ip, 8080, "/labels")[1] == b'app="app"\ntier="web"'
    assert runner.exec("app-0", "web", ["sh", "-c", "echo $MEM_MI"]).stdout.strip() == "64"


def test_job_backoff_limit(runner: PodRunner) -> None:
    """Never: one new pod per retry; OnFailure: restarts inside one pod; both bounded."""

    def job(name: str, policy: str) -> dict[str, Any]:
        return {
            "kind": "Job",
            "metadata": {"name": name},
            "spec": {
                "backoffLimit": 1,
                "template": {
                    "spec": {"restartPolicy": policy, "containers": [sh("fail", "echo attempt; exit 1")]}
                },
            },
        }

    runner.apply([job("never", "Never"), job("onfailure", "OnFailure")])
    never = runner.run_job("never", 30)
    assert not never.succeeded and len(never.pods) == 2
    on_failure = runner.run_job("onfailure", 30)
    assert not on_failure.succeeded and len(on_failure.pods) == 1
    assert on_failure.logs().splitlines().count("attempt") == 2
    assert on_failure.error is not None and "exited with code 1" in on_failure.error
