"""A real Prometheus scrapes a real gateway (TLS on) in front of a real Chroma while a workload runs.

The gateway runs as the pod runs it (``chromactl gateway --config``), with its backup agent;
two backups are taken through the agent API during the workload. Every dashboard panel's
query must return a finite value, except the panels listed in ``NOT_FROM_CHROMACTL`` (series
that cAdvisor and kube-state-metrics provide in a cluster). The chart's alert rules are loaded
too and must all evaluate.
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from scripts.dashboard import PANELS

from tests.chart.helm import render
from tests.gateway.helpers import (
    VENV_BIN,
    Chroma,
    free_port,
    make_cert,
    run_chroma,
    stop_process,
    wait_until,
    write_secret,
)

pytestmark = pytest.mark.slow

JOB = "chroma-chromadb-metrics"
NAMESPACE = "vectors"
POD = "chroma-chromadb-0"
ADMIN = "ck_e2e-admin"
READER = "ck_e2e-reader"
TENANT_B = "ck_e2e-tenant-b"
D = "/api/v2/tenants/default_tenant/databases/default_database"

#: Panels on series that chromactl does not export: in a cluster cAdvisor (kubelet) and
#: kube-state-metrics serve them, and kube-prometheus-stack scrapes both.
NOT_FROM_CHROMACTL = {
    "CPU by container": "container_cpu_usage_seconds_total comes from cAdvisor",
    "Memory by container": "container_memory_working_set_bytes comes from cAdvisor",
    "Restarts": "kube_pod_container_status_restarts_total comes from kube-state-metrics",
}


@contextlib.contextmanager
def run_prometheus(workdir: Path, target: str, rules: Path) -> Iterator[str]:
    binary = shutil.which("prometheus")
    assert binary, "prometheus is missing: run scripts/install-system-deps.sh"
    port = free_port()
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(rules)],
        "scrape_configs": [
            {
                "job_name": JOB,
                "scrape_timeout": "1s",
                # The labels a ServiceMonitor's target gets in a cluster.
                "static_configs": [{"targets": [target], "labels": {"namespace": NAMESPACE, "pod": POD}}],
            }
        ],
    }
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
    log = (workdir / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={workdir / 'prometheus.yml'}",
            f"--storage.tsdb.path={workdir / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _ok(url + "/-/ready"), 60, "Prometheus to start")
        yield url
    finally:
        stop_process(proc)
        log.close()


def _ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def workload(base: str, ca: Path, stop: threading.Event) -> None:
    """Writes, reads, and what the security metrics count: 401, 403, cross-tenant 404, 413."""
    tls = ssl.create_default_context(cafile=str(ca))
    admin = httpx.Client(base_url=base, verify=tls, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=30)
    reader = httpx.Client(base_url=base, verify=tls, headers={"X-Chroma-Token": READER}, timeout=30)
    tenant_b = httpx.Client(base_url=base, verify=tls, headers={"X-Chroma-Token": TENANT_B}, timeout=30)
    anon = httpx.Client(base_url=base, verify=tls, timeout=30)
    admin.post("/api/v2/tenants", json={"name": "tenant-b"})
    admin.post("/api/v2/tenants/tenant-b/databases", json={"name": "db"})
    cols = []
    for name in ("e2e-small", "e2e-large"):
        r = admin.post(f"{D}/collections", json={"name": name, "get_or_create": True})
        r.raise_for_status()
        cols.append(r.json()["id"])
    i = 0
    while not stop.is_set():
        i += 1
        for n, cid in enumerate(cols):
            ids = [f"r{i}-{k}" for k in range(5 + 20 * n)]
            admin.post(
                f"{D}/collections/{cid}/add",
                json={"ids": ids, "embeddings": [[float(k), 1.0, 2.0] for k in range(len(ids))]},
            ).raise_for_status()
            admin.post(
                f"{D}/collections/{cid}/query", json={"query_embeddings": [[1.0, 1.0, 2.0]], "n_results": 3}
            ).raise_for_status()
            reader.get(f"{D}/collections/{cid}/count").raise_for_status()
        anon.get(f"{D}/collections", headers={"Authorization": "Bearer wrong"})  # 401
        reader.post(f"{D}/collections", json={"name": "not-allowed"})  # 403
        tenant_b.get(f"/api/v2/tenants/tenant-b/databases/db/collections/{cols[0]}/count")  # cross-tenant
        admin.post(
            f"{D}/collections/{cols[0]}/add",
            content=b"x" * 70000,
            headers={"content-type": "application/json"},
        )  # 413
        time.sleep(0.2)


def query(prom: str, expr: str) -> list[dict[str, Any]]:
    r = httpx.get(f"{prom}/api/v1/query", params={"query": expr}, timeout=10)
    body = r.json()
    assert body.get("status") == "success", f"{expr}: {body}"
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def substitute(expr: str) -> str:
    return (
        expr.replace("$namespace", NAMESPACE)
        .replace("$job", JOB)
        .replace("$pod", POD)
        .replace("$__rate_interval", "1m")
    )


def finite(result: list[dict[str, Any]]) -> bool:
    return any(math.isfinite(float(s["value"][1])) for s in result)


def test_prometheus_scrapes_the_gateway_and_every_panel_has_data(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    groups = render({"metrics": {"prometheusRule": {"enabled": True}}}).get("PrometheusRule")["spec"][
        "groups"
    ]
    rules.write_text(yaml.safe_dump({"groups": groups}))
    cert, key, _, _ = make_cert(tmp_path / "tls", "gateway")
    secrets = tmp_path / "secrets"
    creds = [
        {"name": "admin", "role": "admin", "token_file": str(write_secret(secrets, "admin", ADMIN))},
        {"name": "reader", "role": "reader", "token_file": str(write_secret(secrets, "reader", READER))},
        {
            "name": "tenant-b",
            "role": "reader",
            "tenants": ["tenant-b"],
            "token_file": str(write_secret(secrets, "tenant-b", TENANT_B)),
        },
    ]
    with run_chroma(tmp_path / "chroma") as chroma:
        config = gateway_config(chroma, creds, cert, key, tmp_path / "snapshots")
        with chromactl_gateway(tmp_path, config, cert) as (url, metrics_url):
            target = metrics_url.removeprefix("http://").removesuffix("/metrics")
            with run_prometheus(tmp_path, target, rules) as prom:
                stop = threading.Event()
                worker = threading.Thread(target=workload, args=(url, cert, stop), daemon=True)
                worker.start()
                try:
                    wait_until(
                        lambda: finite(query(prom, f'sum(chromactl_chroma_records{{job="{JOB}"}}) > 100')),
                        60,
                        "records to be scraped",
                    )
                    for _ in range(2):
                        take_backup(url, cert)
                    time.sleep(6)  # a few more scrapes of the running workload
                    missing = panels_without_data(prom)
                finally:
                    stop.set()
                    worker.join(30)
                assert not missing, "panels without data:\n" + "\n".join(missing)
                assert_rules_evaluate(prom)
                security = {
                    name: query(prom, f'sum({name}{{job="{JOB}"}})')
                    for name in (
                        "chromactl_gateway_auth_failures_total",
                        "chromactl_gateway_authorization_denied_total",
                        "chromactl_gateway_cross_tenant_refusals_total",
                        "chromactl_gateway_rejected_requests_total",
                    )
                }
                for name, result in security.items():
                    assert result and float(result[0]["value"][1]) > 0, f"{name} counted nothing"


@contextlib.contextmanager
def chromactl_gateway(tmp_path: Path, config: dict[str, Any], ca: Path) -> Iterator[tuple[str, str]]:
    """``chromactl gateway --config FILE``, as the chart's pod runs it."""
    path = tmp_path / "chromactl.yaml"
    path.write_text(yaml.safe_dump(config))
    log = (tmp_path / "gateway.log").open("wb")
    proc = subprocess.Popen(
        [str(VENV_BIN / "chromactl"), "gateway", "--config", str(path)], stdout=log, stderr=subprocess.STDOUT
    )
    gw = config["gateway"]
    url = f"https://127.0.0.1:{gw['port']}"
    tls = ssl.create_default_context(cafile=str(ca))

    def up() -> bool:
        assert proc.poll() is None, (tmp_path / "gateway.log").read_text()
        try:
            return httpx.get(url + "/api/v2/heartbeat", verify=tls, timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(up, 30, "the gateway to listen")
        yield url, f"http://127.0.0.1:{gw['metrics_port']}/metrics"
    finally:
        stop_process(proc)
        log.close()


def take_backup(url: str, ca: Path) -> None:
    """One backup through the agent API, as the chart's CronJob asks for it."""
    client = httpx.Client(
        base_url=url,
        verify=ssl.create_default_context(cafile=str(ca)),
        headers={"Authorization": f"Bearer {ADMIN}"},
        timeout=30,
    )
    started = client.post("/chromactl/v1/backups")
    assert started.status_code == 202, started.text
    location = started.headers["location"]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        state = client.get(location).json()
        if state["state"] != "running":
            assert state["state"] == "succeeded", state
            # and a restore drill's report, as the drill Job sends it
            drill = {"snapshot_id": state["result"]["snapshot_id"], "outcome": "success", "problems": []}
            assert client.post("/chromactl/v1/drills", json=drill).status_code == 201
            return
        time.sleep(0.2)
    raise TimeoutError("backup did not finish")


def gateway_config(
    chroma: Chroma, creds: list[dict[str, Any]], cert: Path, key: Path, snapshots: Path
) -> dict[str, Any]:
    return {
        "chroma": {"url": chroma.url, "persist_path": str(chroma.path / "data")},
        "backup": {
            "target": str(snapshots),
            "staging_dir": str(snapshots.parent),
            "continuous": {"enabled": True, "ship_interval_s": 0.5},
            "copies": [{"target": str(snapshots.parent / "offsite")}],
        },
        "gateway": {
            "listen_address": "127.0.0.1",
            "port": free_port(),
            "metrics_port": free_port(),
            "metrics_address": "127.0.0.1",
            "max_body_bytes": 65536,
            "auth": {"token": {"credentials": creds}},
            "tls": {"enabled": True, "cert_file": str(cert), "key_file": str(key)},
            "metrics": {"internals_interval_s": 1, "collection_series": 1},
        },
    }


def panels_without_data(prom: str) -> list[str]:
    missing = []
    for panel in PANELS:
        if panel.title in NOT_FROM_CHROMACTL:
            for expr, _ in panel.queries:
                query(prom, substitute(expr))  # still valid PromQL
            continue
        for expr, _ in panel.queries:
            result = query(prom, substitute(expr))
            if not finite(result):
                missing.append(f"{panel.title}: {substitute(expr)} -> {json.dumps(result)[:200]}")
    return missing


def assert_rules_evaluate(prom: str) -> None:
    groups = httpx.get(f"{prom}/api/v1/rules", timeout=10).json()["data"]["groups"]
    wait_until(
        lambda: all(
            r.get("lastEvaluation", "").startswith("20")
            for g in httpx.get(f"{prom}/api/v1/rules", timeout=10).json()["data"]["groups"]
            for r in g["rules"]
        ),
        30,
        "every rule to be evaluated",
    )
    groups = httpx.get(f"{prom}/api/v1/rules", timeout=10).json()["data"]["groups"]
    rules = [r for g in groups for r in g["rules"]]
    assert len(rules) == 15
    bad = {r["name"]: r.get("lastError") for r in rules if r["health"] != "ok"}
    assert not bad, bad
    firing = {r["name"] for r in rules if r["state"] == "firing"}
    assert not firing & {"ChromaDown", "ChromaNotReady", "ChromaHighErrorRate"}, firing
