"""Switching a running amikos-chart release to this chart and Chroma 1.x, on the pod runner
(docs/migrate-from-amikos-chart.md).

The volume and credentials are laid out as the amikos chart leaves them: the PVC's files
written by a real Chroma 0.x running as root (the amikos pods had no security context), the
`chromadb-auth` Secret (a hook object, or a release object in 0.1.19) and the token header
ConfigMap. `helm upgrade` of this chart runs against the fake API server holding that release
(tests/chart/amikos.py); the objects it leaves there are what the pod runner starts. Then:
every record is read through the gateway with the old credentials, a new write works, the
pre-1.x snapshot was taken once, and a restart neither snapshots nor migrates again. The app's
own old client (the Chroma 0.x version that wrote the volume) goes on reading and writing
through the gateway with no change of its own (docs/legacy-clients.md).
"""

from __future__ import annotations

import base64
import copy
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from chromactl.backup.repository.repository import SNAPSHOT_ID_RE
from tests.backup.helpers import REPO_ROOT
from tests.chart.amikos import STS, amikos_cluster
from tests.chart.fake_kube import helm_config
from tests.chart.helm import NAMESPACE, RELEASE, chart, set_values
from tests.gateway.helpers import chroma_0x_python
from tests.podrunner.images import CLIENT_IMAGE
from tests.podrunner.runner import PodRunner

POD = f"{STS}-0"
RECORDS = 600
#: (amikos release, the Chroma 0.x that wrote its volume): 0.1.19's default server was 0.4.14,
#: 0.1.23's 0.6.3; 0.2.2 with basic auth ran a 0.x server set by chromadb.apiVersion.
CASES = [("0.1.23-token", "0.6.3"), ("0.1.19-token", "0.4.14"), ("0.2.2-legacy-basic", "0.5.23")]
#: What the runner starts of what the upgrade left in the API server (not the release records,
#: nor the pod and claim the fake stands in for).
KINDS = {"Secret", "ConfigMap", "Service", "ServiceAccount", "StatefulSet"}

WRITE = """
import sys, chromadb
client = chromadb.PersistentClient(path=sys.argv[1])
col = client.get_or_create_collection("docs")
for start in range(0, RECORDS, 200):
    ids = [f"id-{i}" for i in range(start, start + 200)]
    col.add(ids=ids, embeddings=[[float(i % 7), 1.0, float(i % 3)] for i in range(start, start + 200)],
            documents=[f"doc {i}" for i in ids], metadatas=[{"n": int(i[3:])} for i in ids])
""".replace("RECORDS", str(RECORDS))

#: The credentials the amikos chart made (CHROMA_TOKEN, or CHROMA_USER and CHROMA_PASSWORD) as
#: the app sends them: ``headers``.
HEADERS = """
import base64, json, os, sys, chromadb
headers = {}
if os.environ.get("CHROMA_TOKEN"):
    headers["Authorization"] = "Bearer " + os.environ["CHROMA_TOKEN"]
if os.environ.get("CHROMA_USER"):
    pair = os.environ["CHROMA_USER"] + ":" + os.environ["CHROMA_PASSWORD"]
    headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
"""

CLIENT = (
    HEADERS
    + """
mode = sys.argv[1]
client = chromadb.HttpClient(host="chroma-chromadb", port=8000, headers=headers)
col = client.get_collection("docs")
if mode == "add":
    col.add(ids=["after-switch"], embeddings=[[0.5, 0.5, 0.5]], documents=["after the switch"])
got = col.get(include=["documents", "metadatas"])
rows = sorted(zip(got["ids"], got["documents"], [(m or {}).get("n") for m in got["metadatas"]]))
nearest = col.query(query_embeddings=[[3.0, 1.0, 0.0]], n_results=1)["ids"][0]
print(json.dumps({"count": col.count(), "rows": rows, "nearest": nearest}))
"""
)


OLD_APP = (
    HEADERS
    + """
host, port = sys.argv[1], int(sys.argv[2])
if chromadb.__version__.startswith("0.4"):
    from chromadb.config import Settings
    settings = Settings(anonymized_telemetry=False)
    client = chromadb.HttpClient(host=host, port=str(port), headers=headers, settings=settings)
else:
    client = chromadb.HttpClient(host=host, port=port, headers=headers)
col = client.get_collection("docs", embedding_function=None)
col.add(ids=["old-app"], embeddings=[[0.1, 0.2, 0.3]], documents=["written by the old client"])
got = col.get(ids=["id-5", "old-app"], include=["documents"])
nearest = col.query(query_embeddings=[[3.0, 1.0, 0.0]], n_results=1)["ids"][0]
print(json.dumps({"version": chromadb.__version__, "count": col.count(),
                  "docs": dict(zip(got["ids"], got["documents"])), "nearest": nearest}))
"""
)


def old_app(runner: PodRunner, version: str, secret: dict[str, Any]) -> dict[str, Any]:
    """:data:`OLD_APP` with the Chroma 0.x client of ``version``, from the host through the
    Service, with the credentials the amikos chart made."""
    python = chroma_0x_python(version)
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    env = {"ANONYMIZED_TELEMETRY": "False", "PATH": "/usr/bin:/bin", "HOME": "/tmp"}
    if "token" in data:
        env["CHROMA_TOKEN"] = data["token"]
    else:
        env |= {"CHROMA_USER": data["username"], "CHROMA_PASSWORD": data["password"]}
    host, port = runner.service_address(f"{RELEASE}-chromadb", 8000)
    done = subprocess.run(
        [str(python), "-c", OLD_APP, host, str(port)], capture_output=True, text=True, timeout=120, env=env
    )
    assert done.returncode == 0, done.stderr[-2000:]
    answer: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return answer


def write_as_amikos_did(version: str, data: Path) -> None:
    python = chroma_0x_python(version)
    env = {"ANONYMIZED_TELEMETRY": "False", "PATH": "/usr/bin:/bin", "HOME": "/tmp"}
    done = subprocess.run(
        [str(python), "-c", WRITE, str(data)], capture_output=True, text=True, timeout=300, env=env
    )
    assert done.returncode == 0, done.stderr[-2000:]


def client(runner: PodRunner, mode: str, secret: dict[str, Any], name: str) -> dict[str, Any]:
    """Run :data:`CLIENT` with the credentials the amikos chart made (from its Secret)."""
    env: list[dict[str, Any]] = [
        {"name": "ANONYMIZED_TELEMETRY", "value": "False"},
        {"name": "HOME", "value": "/tmp"},
    ]
    refs = (
        [("CHROMA_TOKEN", "token")]
        if "token" in secret["data"]
        else [("CHROMA_USER", "username"), ("CHROMA_PASSWORD", "password")]
    )
    env += [
        {"name": var, "valueFrom": {"secretKeyRef": {"name": "chromadb-auth", "key": key}}}
        for var, key in refs
    ]
    result = runner.run_pod(
        {
            "metadata": {"name": f"client-{name}", "labels": {"app": "e2e-client"}},
            "spec": {
                "containers": [
                    {
                        "name": "client",
                        "image": CLIENT_IMAGE,
                        "command": ["python3", "-c", CLIENT, mode],
                        "env": env,
                    }
                ]
            },
        },
        timeout=90,
    )
    logs = result.logs()
    assert result.succeeded, f"client failed ({result.error}):\n{logs}"
    answer: dict[str, Any] = json.loads(logs.strip().splitlines()[-1])
    return answer


def pre_1x_snapshots(data: Path) -> list[str]:
    repo = data / ".chromactl-pre-1.x"
    return sorted(p.name for p in repo.iterdir() if SNAPSHOT_ID_RE.match(p.name)) if repo.is_dir() else []


@pytest.mark.parametrize(("case", "version"), CASES, ids=[f"{c}-chroma-{v}" for c, v in CASES])
def test_switch_keeps_records_and_credentials(tmp_path: Path, case: str, version: str) -> None:
    api = amikos_cluster(case)
    secret = copy.deepcopy(api.get("Secret", "chromadb-auth"))
    values = set_values("chromadb.auth.type=basic") if case.endswith("basic") else {}
    with PodRunner(tmp_path / "cluster", namespace=NAMESPACE) as runner:
        data = runner.pvc_dir(f"data-{POD}")
        write_as_amikos_did(version, data)
        with helm_config(api, NAMESPACE, storage="secret") as config:
            release = config.upgrade(chart(), RELEASE, values)
        assert release["status"] == "deployed"
        objects = [o for o in api.objects if o["kind"] in KINDS and o.get("type") != "helm.sh/release.v1"]
        runner.apply(objects)
        runner.prepare_images()
        runner.start_workloads()
        runner.wait_ready(POD, 120)

        first = client(runner, "add", secret, "add")
        assert first["count"] == RECORDS + 1
        originals = [r for r in first["rows"] if r[0] != "after-switch"]
        assert originals == sorted([f"id-{i}", f"doc id-{i}", i] for i in range(RECORDS))
        assert first["nearest"][0].startswith("id-")
        (snapshot,) = pre_1x_snapshots(data)
        manifest = json.loads((data / ".chromactl-pre-1.x" / snapshot / "manifest.json").read_text())
        assert manifest["chroma_version"] == "0"
        assert sum(c["count"] for c in manifest["collections"]) == RECORDS
        assert "snapshot" in runner.logs(POD, "migrate") and snapshot in runner.logs(POD, "migrate")

        runner.restart_pod(POD)
        again = client(runner, "read", secret, "read")
        assert again["rows"] == first["rows"]
        assert pre_1x_snapshots(data) == [snapshot]
        assert "no snapshot needed" in runner.logs(POD, "migrate")
        assert api.get("Secret", "chromadb-auth")["data"] == secret["data"]

        # the app's own 0.x client, unchanged, reads and writes through the gateway
        app = old_app(runner, version, secret)
        assert app["version"] == version
        assert app["count"] == RECORDS + 2
        assert app["docs"] == {"id-5": "doc id-5", "old-app": "written by the old client"}
        # an exact match of the query (several records tie: i % 7 == 3 and i % 3 == 0)
        (nearest,) = app["nearest"]
        assert int(nearest[3:]) % 7 == 3 and int(nearest[3:]) % 3 == 0

        # going back (the doc's commands): Chroma stopped, the snapshot restored by the doc's pod
        runner.delete_pod(POD)
        restored = runner.run_pod(restore_pod_from_doc(version), timeout=90)
        assert restored.succeeded, restored.logs()
        assert read_with(version, data) == RECORDS  # as Chroma 0.x wrote it, without the later write


DOC = REPO_ROOT / "docs" / "migrate-from-amikos-chart.md"

READ = """
import sys, chromadb
print(chromadb.PersistentClient(path=sys.argv[1]).get_collection("docs").count())
"""


def restore_pod_from_doc(version: str) -> dict[str, Any]:
    """The pod of the doc's `kubectl run chroma-restore ... --overrides='...'`, for ``version``."""
    command_line = "kubectl -n vectors run chroma-restore"
    line = next(ln for ln in DOC.read_text().splitlines() if ln.startswith(command_line))
    overrides: dict[str, Any] = json.loads(line.split("--overrides='", 1)[1].rstrip("'"))
    image = line.split("--image=", 1)[1].split()[0]
    container = overrides["spec"]["containers"][0]
    assert container["image"] == image == chart_chromactl_image()
    command = container["command"]
    command[command.index("--chroma-version") + 1] = version
    return {"metadata": {"name": "chroma-restore"}, "spec": overrides["spec"]}


def chart_chromactl_image() -> str:
    return f"ghcr.io/chromadb-chart/chromactl:{chart().version}"


def read_with(version: str, data: Path) -> int:
    python = chroma_0x_python(version)
    env = {"ANONYMIZED_TELEMETRY": "False", "PATH": "/usr/bin:/bin", "HOME": "/tmp"}
    done = subprocess.run(
        [str(python), "-c", READ, str(data)], capture_output=True, text=True, timeout=120, env=env
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return int(done.stdout.strip().splitlines()[-1])
