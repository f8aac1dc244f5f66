"""The pods' Kubernetes API (``PodRunner(kube=...)``) and the faults tests inject: service
account files and TLS from inside a pod, pods as API objects whose labels move Services, an API
DELETE that the StatefulSet stand-in answers with a new pod, partition/heal, kill_containers."""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.chart.fake_kube import FakeCluster
from tests.podrunner.kube import SERVICE_ACCOUNT_PATH
from tests.podrunner.runner import PodRunner
from tests.podrunner.test_runner import CHROMACTL, get, pod, sh, wait_for, web

LEASE = {
    "apiVersion": "coordination.k8s.io/v1",
    "kind": "Lease",
    "metadata": {"name": "primary", "namespace": "default"},
    "spec": {"holderIdentity": "nobody"},
}

#: A client as client-go is one: the service account's files, HTTPS verified with its ca.crt.
#: argv: path (``{ns}`` is the namespace), method, body, content type. Prints status and body.
API = """
import json, os, ssl, sys, urllib.error, urllib.request
sa = "/var/run/secrets/kubernetes.io/serviceaccount"
token, ns = open(sa + "/token").read(), open(sa + "/namespace").read()
host, port = os.environ["KUBERNETES_SERVICE_HOST"], os.environ["KUBERNETES_SERVICE_PORT"]
path, method = sys.argv[1].format(ns=ns), (sys.argv[2:3] or ["GET"])[0]
body = sys.argv[3].encode() if len(sys.argv) > 3 else None
headers = {"Authorization": "Bearer " + token, "Content-Type": (sys.argv[4:5] or ["application/json"])[0]}
req = urllib.request.Request(f"https://{host}:{port}/{path}", data=body, method=method, headers=headers)
ctx = ssl.create_default_context(cafile=sa + "/ca.crt")
try:
    with urllib.request.urlopen(req, context=ctx, timeout=float(os.environ.get("API_TIMEOUT", "5"))) as r:
        print(r.status, r.read().decode())
except urllib.error.HTTPError as e:
    print(e.code, e.read().decode())
except Exception as e:
    print("ERROR", type(e).__name__, e)
    sys.exit(2)
"""

LEASE_PATH = "apis/coordination.k8s.io/v1/namespaces/{ns}/leases/primary"
POD_PATH = "api/v1/namespaces/{ns}/pods/"


@pytest.fixture
def cluster() -> FakeCluster:
    return FakeCluster([LEASE])


@pytest.fixture
def runner(tmp_path: Path, cluster: FakeCluster) -> Iterator[PodRunner]:
    with PodRunner(tmp_path / "cluster", kube=cluster, backoff_base_s=0.5) as r:
        yield r


def api(
    runner: PodRunner,
    pod_name: str,
    container: str,
    *argv: str,
    timeout: float = 5,
    allow_killed: bool = False,
) -> tuple[str, str]:
    """Run the in-pod client; (status or "ERROR", the rest of its line). ``allow_killed``: the
    request may stop the client itself (its pod deleted): no line is then ("", "")."""
    python = "python" if runner.pod(pod_name).container(container).spec["image"] == CHROMACTL else "python3"
    done = runner.exec(
        pod_name, container, ["env", f"API_TIMEOUT={timeout}", python, "-c", API, *argv], timeout + 20
    )
    status, _, rest = done.stdout.strip().partition(" ")
    assert status or (allow_killed and done.returncode != 0), done.stderr
    return status, rest


def host_api(runner: PodRunner, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    """A request from the host (a test's kubectl), over the same TLS, with the same CA."""
    assert runner.kube is not None
    endpoint = runner.kube.endpoint
    data = json.dumps(body).encode() if body is not None else None
    kind = "application/merge-patch+json" if method == "PATCH" else "application/json"
    req = urllib.request.Request(
        f"{endpoint.url}/{path}", data=data, method=method, headers={"Content-Type": kind}
    )
    ctx = ssl.create_default_context(cafile=str(endpoint.ca_file))
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def sleeper(name: str, image: str = CHROMACTL, **spec: Any) -> dict[str, Any]:
    argv = ["python", "-c", "import time; time.sleep(600)"] if image == CHROMACTL else ["sleep", "600"]
    return pod(name, {"name": "c", "image": image, "command": argv}, **spec)


def statefulset(name: str, replicas: int, *, init: bool = False) -> list[dict[str, Any]]:
    """A StatefulSet of web servers (serving /etc, so GET /hostname names the pod), its
    headless Service, and a Service ``<name>-primary`` selecting the pod labelled primary."""
    mounts = [{"name": "data", "mountPath": "/data"}]
    template: dict[str, Any] = {
        "metadata": {"labels": {"app": name}},
        "spec": {"containers": [web(directory="/etc", volumeMounts=mounts)]},
    }
    if init:
        template["spec"]["initContainers"] = [sh("init", "echo init >> /data/inits", volumeMounts=mounts)]
    return [
        {
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": {"name": name},
            "spec": {
                "serviceName": name,
                "replicas": replicas,
                "template": template,
                "volumeClaimTemplates": [{"metadata": {"name": "data"}}],
            },
        },
        {
            "kind": "Service",
            "metadata": {"name": name},
            "spec": {"clusterIP": "None", "selector": {"app": name}, "ports": [{"port": 8080}]},
        },
        {
            "kind": "Service",
            "metadata": {"name": f"{name}-primary"},
            "spec": {
                "selector": {"app": name, "chromactl.io/role": "primary"},
                "ports": [{"port": 8080, "targetPort": "http"}],
            },
        },
    ]


def resolve(runner: PodRunner, pod_name: str, name: str) -> str | None:
    """The address ``name`` has in the pod's /etc/hosts, None when it has none (read from the
    file: a name it lacks would go on to DNS, which pods here have not, and time out)."""
    hosts = runner.exec(pod_name, "web", ["cat", "/etc/hosts"]).stdout
    found = [line.split()[0] for line in hosts.splitlines() if name in line.split()[1:]]
    assert len(found) <= 1, hosts
    return found[0] if found else None


def read_all(sock: socket.socket) -> bytes:
    """What the peer sends until it closes (an HTTP/1.0 answer)."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


# --------------------------------------------------------------------------- API server


def test_a_pod_reads_its_service_account_and_reaches_the_api_over_tls(
    runner: PodRunner, cluster: FakeCluster
) -> None:
    runner.start_pod(sleeper("reader"), "Pod/reader")
    p = runner.wait_ready("reader", 30)
    c = p.container("c")
    assert c.who is not None and c.who.uid == 10001  # not root: the files must be readable by anyone
    env = c.env
    assert runner.kube is not None
    assert env["KUBERNETES_SERVICE_HOST"] == runner.network.gateway
    assert env["KUBERNETES_SERVICE_PORT"] == env["KUBERNETES_SERVICE_PORT_HTTPS"] == "443"
    files = (
        "import os; d = os.environ['SA']; print(*(open(f'{d}/{n}').read() for n in ('token', 'namespace')))"
    )
    out = runner.exec("reader", "c", ["env", f"SA={SERVICE_ACCOUNT_PATH}", "python", "-c", files])
    assert out.stdout.split() == [p.token, "default"], out.stderr
    write = runner.exec("reader", "c", ["python", "-c", f"open('{SERVICE_ACCOUNT_PATH}/token', 'a')"])
    assert write.returncode != 0 and ("Read-only" in write.stderr or "Permission" in write.stderr)

    status, body = api(runner, "reader", "c", LEASE_PATH)
    assert status == "200" and json.loads(body)["spec"]["holderIdentity"] == "nobody"
    # The request is the pod's: it carried the token the pod was given.
    assert runner.api_requests("reader") == ["/apis/coordination.k8s.io/v1/namespaces/default/leases/primary"]
    assert [t for t, _ in cluster.callers] == [p.token]
    # The CA is what makes it work: without it, the certificate is not trusted.
    unverified = runner.exec(
        "reader",
        "c",
        [
            "python",
            "-c",
            "import os, urllib.request as u; "
            "u.urlopen('https://%s/' % os.environ['KUBERNETES_SERVICE_HOST'])",
        ],
    )
    assert "CERTIFICATE_VERIFY_FAILED" in unverified.stderr
    # The `kubernetes` Service's name resolves to the API server and matches its certificate.
    by_name = runner.exec(
        "reader",
        "c",
        [
            "python",
            "-c",
            "import ssl, urllib.request as u; d = '/var/run/secrets/kubernetes.io/serviceaccount/ca.crt'; "
            "print(u.urlopen('https://kubernetes.default.svc/version', "
            "context=ssl.create_default_context(cafile=d)).read().decode())",
        ],
    )
    assert "v1.31.0" in by_name.stdout, by_name.stderr

    # An outage: the API server answers 503 while down, over the same TLS, then serves again.
    cluster.down = True
    assert api(runner, "reader", "c", LEASE_PATH)[0] == "503"
    cluster.down = False
    assert api(runner, "reader", "c", LEASE_PATH)[0] == "200"


def test_automount_false_leaves_the_token_out(runner: PodRunner) -> None:
    runner.apply(
        [
            {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": {"name": "quiet"},
                "automountServiceAccountToken": False,
            }
        ]
    )
    check = (
        f"import os; print(os.path.exists('{SERVICE_ACCOUNT_PATH}/token'), "
        "os.environ['KUBERNETES_SERVICE_HOST'])"
    )
    for name, spec in (
        ("own", {"automountServiceAccountToken": False}),
        ("by-account", {"serviceAccountName": "quiet"}),
        ("pod-wins", {"serviceAccountName": "quiet", "automountServiceAccountToken": True}),
    ):
        result = runner.run_pod(
            pod(name, {"name": "c", "image": CHROMACTL, "command": ["python", "-c", check]}, **spec), 30
        )
        assert result.succeeded, result.logs()
        exists = result.logs().splitlines()[-1].split()[0]
        assert exists == ("True" if name == "pod-wins" else "False"), name


def test_egress_policy_decides_whether_a_pod_reaches_the_api_server(runner: PodRunner) -> None:
    """The API server is outside the pods: an isolated pod reaches it only through an egress
    rule for its address and port (an ipBlock), as on a cluster."""

    def policy(name: str, egress: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "kind": "NetworkPolicy",
            "metadata": {"name": name},
            "spec": {
                "podSelector": {"matchLabels": {"app": name}},
                "policyTypes": ["Egress"],
                "egress": egress,
            },
        }

    runner.apply(
        [
            policy("sealed", [{"ports": [{"port": 53, "protocol": "UDP"}]}]),
            policy("pods-only", [{"to": [{"podSelector": {}}], "ports": [{"port": 443}]}]),
            policy("api", [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}], "ports": [{"port": 443}]}]),
        ]
    )
    outcome = {}
    for name in ("sealed", "pods-only", "api"):
        runner.start_pod(sleeper(name), f"Pod/{name}")
        runner.wait_ready(name, 30)
        outcome[name] = api(runner, name, "c", LEASE_PATH, timeout=2)[0]
    assert outcome == {"sealed": "ERROR", "pods-only": "ERROR", "api": "200"}


# --------------------------------------------------------------------------- pods as objects


def test_pods_are_api_objects_and_their_labels_move_services(runner: PodRunner, cluster: FakeCluster) -> None:
    runner.apply(statefulset("db", 2))
    runner.start_workloads()
    db0, db1 = runner.wait_ready("db-0", 30), runner.wait_ready("db-1", 30)
    obj = cluster.get("Pod", "db-0", "default")
    assert obj["metadata"]["uid"] == db0.uid and obj["metadata"]["labels"] == {"app": "db"}
    owner = obj["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["controller"]) == ("StatefulSet", "db", True)
    assert obj["status"]["podIP"] == db0.ip
    wait_for(
        lambda: (
            {c["type"]: c["status"] for c in cluster.get("Pod", "db-1", "default")["status"]["conditions"]}[
                "Ready"
            ]
            == "True"
        ),
        5,
        "db-1's Ready condition",
    )
    balanced = runner.balanced_service_url("db-primary", 8080)
    port = int(balanced.rsplit(":", 1)[1])

    def primary_from_host() -> str | None:
        try:
            return get("127.0.0.1", port, "/hostname")[1].decode().strip()
        except (OSError, http.client.HTTPException):
            return None

    # Nobody is primary: the name does not resolve, the balancer has nowhere to go.
    assert resolve(runner, "db-1", "db-primary") is None
    assert primary_from_host() is None

    # db-0 labels itself through the API, as chromactl does (a merge patch with its own token).
    patch = json.dumps({"metadata": {"labels": {"chromactl.io/role": "primary"}}})
    status, body = api(
        runner, "db-0", "web", POD_PATH + "db-0", "PATCH", patch, "application/merge-patch+json"
    )
    assert status == "200" and json.loads(body)["metadata"]["labels"]["chromactl.io/role"] == "primary"
    assert db0.labels == {"app": "db", "chromactl.io/role": "primary"}  # one truth, at once
    assert resolve(runner, "db-1", "db-primary") == db0.ip
    assert {primary_from_host() for _ in range(4)} == {"db-0"}
    # A connection opened to db-0 before it loses the label stays open (as kube-proxy keeps it).
    held = socket.create_connection(("127.0.0.1", port), timeout=5)

    # The primary moves: db-0's label goes (null removes it), db-1 gets it.
    assert (
        host_api(
            runner,
            "PATCH",
            "api/v1/namespaces/default/pods/db-0",
            {"metadata": {"labels": {"chromactl.io/role": None}}},
        )[0]
        == 200
    )
    assert resolve(runner, "db-1", "db-primary") is None
    assert primary_from_host() is None
    runner.set_labels("db-1", {"chromactl.io/role": "primary"})
    assert cluster.get("Pod", "db-1", "default")["metadata"]["labels"]["chromactl.io/role"] == "primary"
    assert resolve(runner, "db-0", "db-primary") == db1.ip
    assert resolve(runner, "db-1", "db-primary") == db1.ip
    assert {primary_from_host() for _ in range(4)} == {"db-1"}
    curl = runner.exec("db-0", "web", ["curl", "-sf", "--max-time", "5", "http://db-primary:8080/hostname"])
    assert curl.stdout.strip() == "db-1", curl.stderr
    held.sendall(b"GET /hostname HTTP/1.0\r\n\r\n")
    assert read_all(held).endswith(b"\r\n\r\ndb-0\n")
    held.close()

    # Deleting the pod through the runner removes its object.
    runner.delete_pod("db-1")
    assert cluster.find("Pod", "db-1", "default") is None


def test_an_api_delete_makes_the_statefulset_pod_again(runner: PodRunner, cluster: FakeCluster) -> None:
    runner.apply(statefulset("db", 1, init=True))
    runner.start_workloads()
    old = runner.wait_ready("db-0", 30)
    runner.set_labels("db-0", {"chromactl.io/role": "primary"})
    started = time.monotonic()
    # The pod deletes itself, as chromactl does to be rebuilt by its init container.
    status, _ = api(runner, "db-0", "web", POD_PATH + "db-0", "DELETE", allow_killed=True)
    # Answered before the pod is gone and back; or, on a busy machine, the client was stopped
    # with its pod before it printed the answer (as a kubelet's SIGTERM may stop it).
    assert status in ("200", ""), status
    assert time.monotonic() - started < 10
    assert (
        cluster.find("Pod", "db-0", "default") is None
        or cluster.get("Pod", "db-0", "default")["metadata"]["uid"] != old.uid
    )
    new = runner.wait_recreated("db-0", old.uid, 60)
    assert new is not old and new.uid != old.uid
    assert (runner.pvc_dir("data-db-0") / "inits").read_text() == "init\ninit\n"  # same PVC, init ran again
    obj = cluster.get("Pod", "db-0", "default")
    assert obj["metadata"]["uid"] == new.uid
    assert obj["metadata"]["labels"] == {"app": "db"}  # from the template: the role label is gone
    assert get(new.ip, 8080, "/hostname")[1].strip() == b"db-0"
    assert old.holder is not None and old.holder.poll() is not None
    # A pod nothing owns stays deleted.
    runner.start_pod(sleeper("lone"), "Pod/lone")
    lone = runner.wait_ready("lone", 30)
    assert host_api(runner, "DELETE", "api/v1/namespaces/default/pods/lone")[0] == 200
    assert lone.holder is not None
    holder = lone.holder
    wait_for(lambda: holder.poll() is not None, 30, "the unowned pod to stop")
    assert "lone" not in runner.pods
    assert runner.controller_errors == []


# --------------------------------------------------------------------------- faults


def test_partition_cuts_a_pod_off_and_heal_joins_it(runner: PodRunner, cluster: FakeCluster) -> None:
    runner.start_pod(pod("a", web(directory="/etc")), "Pod/a")
    runner.start_pod(pod("b", web(directory="/etc")), "Pod/b")
    a, _ = runner.wait_ready("a", 30), runner.wait_ready("b", 30)
    server = a.container("web").proc
    fetch = [
        "curl",
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "--max-time",
        "2",
        f"http://{a.ip}:8080/hostname",
    ]
    assert runner.exec("b", "web", fetch).stdout == "200"
    assert api(runner, "a", "web", LEASE_PATH)[0] == "200"
    held = socket.create_connection((a.ip, 8080), timeout=5)

    runner.partition("a")
    # Another pod times out (curl 28), not refused (7): the packets are dropped.
    cut = runner.exec("b", "web", fetch)
    assert cut.returncode == 28, (cut.returncode, cut.stdout, cut.stderr)
    # The pod cannot reach the API server.
    before = len(runner.api_requests("a"))
    status, detail = api(runner, "a", "web", LEASE_PATH, timeout=2)
    assert status == "ERROR" and "timed out" in detail.lower()
    assert len(runner.api_requests("a")) == before
    # An open connection stalls.
    held.sendall(b"GET /hostname HTTP/1.0\r\n\r\n")
    held.settimeout(2)
    with pytest.raises(TimeoutError):
        held.recv(65536)
    # The processes live on, the pod stays ready (its probes wait) and loopback works.
    time.sleep(1.5)
    assert a.container("web").proc is server and server is not None and server.poll() is None
    assert a.is_ready() and a.container("web").restarts == 0
    assert (
        runner.exec(
            "a", "web", ["curl", "-sf", "--max-time", "2", "http://127.0.0.1:8080/hostname"]
        ).stdout.strip()
        == "a"
    )
    # A NetworkPolicy reload (a pod starting) does not undo the cut.
    runner.start_pod(pod("c", web(directory="/etc")), "Pod/c")
    runner.wait_ready("c", 30)
    assert runner.exec("c", "web", fetch).returncode == 28

    runner.heal("a")
    assert runner.exec("b", "web", fetch).stdout == "200"
    assert api(runner, "a", "web", LEASE_PATH)[0] == "200"
    held.settimeout(15)
    assert read_all(held).endswith(b"\r\n\r\na\n")  # the stalled request went through after all
    held.close()


def test_kill_containers_restarts_them_with_backoff(runner: PodRunner, cluster: FakeCluster) -> None:
    runner.start_pod(
        pod("k", web(directory="/etc"), sh("side", "while [ ! -f /tmp/stop ]; do sleep 0.2; done; exit 3")),
        "Pod/k",
    )
    p = runner.wait_ready("k", 30)
    web_c, side = p.container("web"), p.container("side")
    assert web_c.proc is not None and side.proc is not None
    web_proc, side_proc = web_c.proc, side.proc
    assert runner.kill_containers("k", "web") == ["web"]
    wait_for(lambda: web_proc.poll() is not None, 5, "the killed container to exit")
    assert side.proc is side_proc and side_proc.poll() is None  # only the one named
    runner.wait_ready("k", 30)  # waits: a kill is not a crash
    assert web_c.proc is not None and web_c.proc is not web_proc
    assert web_c.crashes == 1 and web_c.kills == 1 and p.crashed() is None
    assert get(p.ip, 8080, "/hostname")[1].strip() == b"k"
    wait_for(
        lambda: cluster.get("Pod", "k", "default")["status"]["containerStatuses"][0]["restartCount"] == 1,
        5,
        "the restart count in the pod's status",
    )
    # Every container: both come back.
    assert sorted(runner.kill_containers("k")) == ["side", "web"]
    wait_for(lambda: side_proc.poll() is not None, 5, "the side container to exit")
    runner.wait_ready("k", 30)
    assert web_c.crashes == 2 and side.crashes == 1
    # A container that then exits on its own is still a crash.
    assert runner.exec("k", "side", ["touch", "/tmp/stop"]).returncode == 0
    wait_for(lambda: side.crashes == 2, 10, "the side container's own exit")
    assert p.crashed() is side


def test_runner_without_kube_sets_no_api(tmp_path: Path) -> None:
    with PodRunner(tmp_path / "c") as r:
        check = (
            "import os; print(os.path.exists('/run/secrets/kubernetes.io'), "
            "'KUBERNETES_SERVICE_HOST' in os.environ)"
        )
        result = r.run_pod(
            pod("plain", {"name": "c", "image": CHROMACTL, "command": ["python", "-c", check]}), 30
        )
        assert result.logs().splitlines()[-1] == "False False"
        r.start_pod(pod("l", web()), "Pod/l")
        r.wait_ready("l", 30)
        r.set_labels("l", {"x": "1"})
        assert r.pod("l").labels == {"app": "l", "x": "1"}
