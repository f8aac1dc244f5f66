"""The chart's NetworkPolicy, enforced on the pod runner as Calico or Cilium enforce it
(tests/podrunner/netpol.py: nftables in each pod's network namespace).

Clients run as pods in namespaces of their own (`apps`, labelled `team: apps`; `other`;
`monitoring`). What is shown: who reaches the gateway and the metrics port with the default
values and with `ingressFrom`/`metricsFrom` set; that the helm tests, the backup CronJob (to
the agent API, and to an S3 API server running as its own pod through an egress rule) and the
restore init container all work under the policy; that with the egress allow-list on, an
address not listed is refused; and that dropping the backup jobs' rule breaks the backup.
"""

from __future__ import annotations

import base64
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.backup.helpers import make_bucket as make_s3_bucket
from tests.chart.helm import chart
from tests.e2e.conftest import RELEASE, SERVER_POD, assert_helm_tests_pass, probe
from tests.e2e.test_backup import credentials_secret, s3_repo, values
from tests.podrunner.images import CLIENT_IMAGE
from tests.podrunner.runner import PodRunner

pytestmark = pytest.mark.slow

NAMESPACE = "vectors"
S3_IMAGE = "localhost/chromadb-chart/s3:5.2.5"
CRONJOB = "chroma-chromadb-backup"


def render(values: dict[str, Any]) -> dict[str, str]:
    return chart().render(values, name=RELEASE, namespace=NAMESPACE)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[PodRunner]:
    with PodRunner(tmp_path / "cluster", namespace=NAMESPACE) as runner:
        runner.add_namespace("apps", {"team": "apps"})
        runner.add_namespace("other", {"team": "other"})
        runner.add_namespace("monitoring")
        yield runner


def start(cluster: PodRunner, values: dict[str, Any]) -> str:
    cluster.apply(render(values))
    cluster.prepare_images()
    cluster.start_workloads()
    cluster.wait_ready(SERVER_POD, 120)
    return cluster.pod(SERVER_POD).ip


def test_default_values_open_the_gateway_and_close_the_metrics_port(cluster: PodRunner) -> None:
    server = start(cluster, {})
    # the gateway: everyone (ingressFrom is empty), any namespace, any labels
    assert probe(cluster, "other", {"app": "anything"}, server, 8000, "/api/v2/heartbeat") == {
        "result": "open",
        "status": 200,
    }
    # the metrics port: nobody (metricsFrom is empty), the release's own namespace included
    assert probe(cluster, NAMESPACE, {}, server, 9464)["result"] == "timeout"
    assert probe(cluster, "monitoring", {}, server, 9464)["result"] == "timeout"
    assert_helm_tests_pass(cluster)


LIMITED = {
    "networkPolicy": {
        "ingressFrom": [
            {
                "namespaceSelector": {"matchLabels": {"team": "apps"}},
                "podSelector": {"matchLabels": {"role": "client"}},
            }
        ],
        "metricsFrom": [
            {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
        ],
    }
}


def test_ingress_from_and_metrics_from_let_only_the_listed_peers_in(cluster: PodRunner) -> None:
    server = start(cluster, LIMITED)
    client = {"role": "client"}
    heartbeat = probe(cluster, "apps", client, server, 8000, "/api/v2/heartbeat")
    assert heartbeat == {"result": "open", "status": 200}
    assert probe(cluster, "apps", {"role": "batch"}, server, 8000)["result"] == "timeout"  # other labels
    assert probe(cluster, "other", client, server, 8000)["result"] == "timeout"  # other namespace
    assert probe(cluster, "monitoring", {}, server, 9464, "/metrics") == {"result": "open", "status": 200}
    assert probe(cluster, "monitoring", {}, server, 8000)["result"] == "timeout"  # metrics only
    assert probe(cluster, "apps", client, server, 9464)["result"] == "timeout"
    assert_helm_tests_pass(cluster)  # the release's own test pods still reach the gateway


# ---------------------------------------------------------------------------- backups


def start_s3(cluster: PodRunner) -> str:
    """A real S3 API (moto) as a pod of namespace `storage`; its endpoint URL."""
    cluster.add_namespace("storage", {"team": "storage"})
    cluster.start_pod(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "s3", "namespace": "storage", "labels": {"app": "s3"}},
            "spec": {
                "containers": [
                    {
                        "name": "moto",
                        "image": S3_IMAGE,
                        "ports": [{"name": "s3", "containerPort": 5000}],
                        "readinessProbe": {"tcpSocket": {"port": 5000}, "periodSeconds": 1},
                    }
                ]
            },
        },
        "adhoc/s3",
    )
    cluster.wait_ready("s3", 60)
    return f"http://{cluster.pod('s3').ip}:5000"


def backup_values(endpoint: str, bucket: str, **extra: Any) -> dict[str, Any]:
    s3 = [
        {
            "namespaceSelector": {"matchLabels": {"team": "storage"}},
            "podSelector": {"matchLabels": {"app": "s3"}},
        }
    ]
    return {
        **values(endpoint, bucket, **extra),
        "networkPolicy": {
            **LIMITED["networkPolicy"],
            "egress": {"enabled": True, "rules": [{"to": s3, "ports": [{"port": 5000, "protocol": "TCP"}]}]},
        },
    }


def add_records(cluster: PodRunner, count: int) -> None:
    token = base64.b64decode(cluster.store.objects[("Secret", "chromadb-auth")]["data"]["token"]).decode()
    script = f"""
import chromadb
client = chromadb.HttpClient(host="chroma-chromadb", port=8000, headers={{"Authorization": "Bearer {token}"}})
col = client.get_or_create_collection("policy")
col.add(ids=[str(i) for i in range({count})], embeddings=[[float(i), 1.0] for i in range({count})])
print(col.count())
"""
    meta = {"name": "writer", "namespace": "apps", "labels": {"role": "client"}}
    result = cluster.run_pod(
        {
            "metadata": meta,
            "spec": {
                "containers": [{"name": "w", "image": CLIENT_IMAGE, "command": ["python3", "-c", script]}]
            },
        },
        timeout=90,
    )
    assert result.succeeded and result.logs().strip().endswith(str(count)), result.logs()


def test_backup_and_restore_work_under_the_policy_and_other_egress_is_refused(cluster: PodRunner) -> None:
    endpoint = start_s3(cluster)
    bucket = f"chroma-{uuid.uuid4().hex[:8]}"
    make_s3_bucket(endpoint, bucket)  # from the node: the s3 pod is not isolated
    cluster.apply([credentials_secret()])
    values = backup_values(endpoint, bucket, restore={"enabled": True, "requireSnapshot": False})
    start(cluster, values)
    add_records(cluster, 40)

    job = cluster.run_cronjob(CRONJOB, timeout=180)
    assert job.succeeded, f"backup under the policy failed ({job.error}):\n{job.logs()}"
    (snap,) = s3_repo(endpoint, bucket).complete()

    # egress allow-list: from a pod of the release, an address not listed is refused
    release_pod = {"app.kubernetes.io/name": "chromadb", "app.kubernetes.io/instance": RELEASE}
    other = probe(cluster, "apps", {"role": "client"}, endpoint.split("//")[1].split(":")[0], 5000)
    assert other["result"] == "open"  # the S3 pod itself is open to a pod the policy does not hold
    assert probe(cluster, NAMESPACE, release_pod, cluster.network.gateway, 22)["result"] == "timeout"
    assert probe(cluster, NAMESPACE, release_pod, cluster.pod("s3").ip, 5001)["result"] == "timeout"

    # the restore init container reads the snapshot back through the egress rule
    cluster.delete_pod(SERVER_POD)
    pvc = cluster.pvc_dir(f"data-{SERVER_POD}")
    for entry in pvc.iterdir():
        shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    cluster.start_workloads()
    cluster.wait_ready(SERVER_POD, 120)
    assert f"restored snapshot {snap.snapshot_id}" in cluster.logs(SERVER_POD, "restore")


def test_without_the_backup_jobs_rule_the_backup_fails(cluster: PodRunner) -> None:
    """The check above can fail: the same install with the policy's backup rule removed (what a
    values or template change that dropped it would render) refuses the job's call to the agent."""
    endpoint = start_s3(cluster)
    bucket = f"chroma-{uuid.uuid4().hex[:8]}"
    make_s3_bucket(endpoint, bucket)
    cluster.apply([credentials_secret()])
    rendered = render(backup_values(endpoint, bucket))
    cluster.apply(rendered)
    policy = cluster.store.objects[("NetworkPolicy", "chroma-chromadb")]
    backup_rule = {
        "from": [
            {
                "podSelector": {
                    "matchLabels": {
                        "app.kubernetes.io/name": "chromadb",
                        "app.kubernetes.io/instance": RELEASE,
                        "app.kubernetes.io/component": "backup",
                    }
                }
            }
        ],
        "ports": [{"port": "http", "protocol": "TCP"}],
    }
    assert backup_rule in policy["spec"]["ingress"]
    policy["spec"]["ingress"].remove(backup_rule)
    cluster.prepare_images()
    cluster.start_workloads()
    cluster.wait_ready(SERVER_POD, 120)
    job = cluster.run_cronjob(CRONJOB, timeout=180)
    assert not job.succeeded
    assert "cannot reach the gateway at http://chroma-chromadb:8000: timed out" in job.logs()
    assert s3_repo(endpoint, bucket).complete() == []
