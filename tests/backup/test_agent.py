"""The in-pod backup agent: the gateway takes snapshots itself, `backup trigger` follows them."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
import yaml
from prometheus_client.parser import text_string_to_metric_families

from chromactl.backup import Repository
from chromactl.backup.operations.service import BackupService
from chromactl.backup.recovery.verify import verify
from chromactl.backup.snapshot.create import BackupResult
from chromactl.backup.snapshot.hold import WriteHold
from chromactl.config import Settings, parse_config
from chromactl.gateway.server import serve
from chromactl.pod import build_pod

from .helpers import DB, VENV_BIN, Writer, free_port, run_chroma, seed, stop, wait_http

ADMIN = "ck_agent-admin-token"
READER = "ck_agent-reader-token"
CHROMACTL = str(VENV_BIN / "chromactl")


def gateway_config(
    tmp_path: Path, chroma_url: str, data_dir: Path, target: str, *, auth: bool = True, **backup: Any
) -> dict:
    secrets = tmp_path / "secrets"
    secrets.mkdir(exist_ok=True)
    (secrets / "admin").write_text(ADMIN)
    (secrets / "reader").write_text(READER)
    return {
        "chroma": {"url": chroma_url, "persist_path": str(data_dir), "version": "1.5.9"},
        "gateway": {
            "listen_address": "127.0.0.1",
            "port": free_port(),
            "metrics_port": free_port(),
            "metrics_address": "127.0.0.1",
            "auth": {
                "enabled": auth,
                "token": {
                    "credentials": [
                        {"name": "backup-agent", "role": "admin", "token_file": str(secrets / "admin")},
                        {"name": "dashboards", "role": "reader", "token_file": str(secrets / "reader")},
                    ]
                },
            },
        },
        "backup": {"target": target, "staging_dir": str(tmp_path), **backup},
    }


def metrics(settings: Settings) -> dict[str, float]:
    text = httpx.get(f"http://127.0.0.1:{settings.gateway.metrics_port}/metrics", timeout=10).text
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name.startswith("chromactl_backup"):
            for s in family.samples:
                labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()) if k != "le")
                if "le" in s.labels:
                    continue
                out[s.name + (f"{{{labels}}}" if labels else "")] = s.value
    return out


def trigger(url: str, token_file: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            CHROMACTL,
            "backup",
            "trigger",
            "--gateway",
            url,
            "--token-file",
            str(token_file),
            "--poll-interval",
            "0.2",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )


@contextlib.contextmanager
def chromactl_gateway(tmp_path: Path, config: dict) -> Iterator[tuple[str, Settings]]:
    """`chromactl gateway --config FILE` as the pod runs it."""
    path = tmp_path / f"gateway-{config['gateway']['port']}.yaml"
    path.write_text(yaml.safe_dump(config))
    log = open(tmp_path / "gateway.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [CHROMACTL, "gateway", "--config", str(path)], stdout=log, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{config['gateway']['port']}"
    try:
        wait_http(f"{url}/api/v2/heartbeat", proc, timeout_s=30)
        yield url, parse_config(config)
    finally:
        stop(proc)
        log.close()


@pytest.mark.slow
def test_trigger_takes_a_consistent_snapshot_inside_the_gateway_under_a_writer(tmp_path: Path) -> None:
    data, target = tmp_path / "data", tmp_path / "snapshots"
    with run_chroma(data) as chroma:
        # auth off: the writer and seeding go through the gateway without credentials
        config = gateway_config(
            tmp_path,
            chroma.url,
            data,
            str(target),
            auth=False,
            retention={"keep_last": 1, "keep_daily": 0, "keep_weekly": 0, "keep_monthly": 0},
        )
        with chromactl_gateway(tmp_path, config) as (url, settings):
            ids = seed(url, {"static": 300, "busy": 200})
            writer = Writer(url, ids["busy"], batch=20).start()
            try:
                while len(writer.acked) < 5 and not writer.errors:
                    time.sleep(0.05)
                first = trigger(url, tmp_path / "secrets" / "admin")
                second = trigger(url, tmp_path / "secrets" / "admin", "--prune", "--json")
            finally:
                writer.stop()
            assert first.returncode == 0, first.stderr
            assert "writes held" in first.stderr and "started on" in first.stderr
            assert second.returncode == 0, second.stderr
            assert not writer.errors, writer.errors  # writes waited during the holds, none failed
            repo = Repository(str(target))
            snaps = repo.complete()
            # --prune with keep_last 1: the first snapshot is gone, the newest stays
            assert len(snaps) == 1
            run = yaml.safe_load(second.stdout)
            assert run["state"] == "succeeded"
            assert run["result"]["snapshot_id"] == snaps[0].snapshot_id
            assert run["prune_result"]["removed"] and run["prune_result"]["removed"][0] < snaps[0].snapshot_id
            assert verify(repo, "latest").ok
            assert snaps[0].manifest is not None
            assert {c.name: c.count for c in snaps[0].manifest.collections}["static"] == 300
            m = metrics(settings)
            assert m["chromactl_backup_runs_total{outcome=success}"] == 2
            assert m["chromactl_backup_runs_total{outcome=failure}"] == 0
            assert m["chromactl_backup_last_outcome"] == 1
            assert m["chromactl_backup_size_bytes"] == snaps[0].manifest.stored_size
            assert abs(m["chromactl_backup_last_success_timestamp_seconds"] - time.time()) < 60
            assert m["chromactl_backup_hold_seconds_count"] == 2
            assert 0 < m["chromactl_backup_hold_seconds_sum"] < 20  # seconds, each under hold_timeout_s
            assert m["chromactl_backup_duration_seconds_count"] == 2

        # A restarted gateway reports the newest snapshot of its target before any run.
        config["gateway"]["port"], config["gateway"]["metrics_port"] = free_port(), free_port()
        with chromactl_gateway(tmp_path, config) as (url, settings):
            deadline = time.monotonic() + 60
            while "chromactl_backup_last_success_timestamp_seconds" not in metrics(settings):
                assert time.monotonic() < deadline, "the agent did not read the last backup from the target"
                time.sleep(0.1)
            m = metrics(settings)
            assert m["chromactl_backup_size_bytes"] == snaps[0].manifest.stored_size
            assert m["chromactl_backup_runs_total{outcome=success}"] == 0


@pytest.mark.slow
def test_a_failing_target_fails_the_trigger_with_the_error(tmp_path: Path) -> None:
    data = tmp_path / "data"
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with run_chroma(data) as chroma:
        seed(chroma.url, {"coll": 10})
        config = gateway_config(tmp_path, chroma.url, data, "s3://backups/chroma", endpoint_url=dead)
        with chromactl_gateway(tmp_path, config) as (url, settings):
            m = metrics(settings)
            # nothing known yet: the gauges are absent, the counters are zero
            assert "chromactl_backup_last_outcome" not in m
            assert "chromactl_backup_last_success_timestamp_seconds" not in m
            done = trigger(url, tmp_path / "secrets" / "admin")
            assert done.returncode == 1
            assert "failed" in done.stderr and "127.0.0.1" in done.stderr, done.stderr
            m = metrics(settings)
            assert m["chromactl_backup_last_outcome"] == 0
            assert m["chromactl_backup_runs_total{outcome=failure}"] == 1
            assert "chromactl_backup_last_success_timestamp_seconds" not in m
            # writes are not left held after a failed backup
            resp = httpx.post(
                f"{url}{DB}/collections",
                json={"name": "after", "get_or_create": True},
                headers={"Authorization": f"Bearer {ADMIN}"},
                timeout=10,
            )
            assert resp.status_code == 200


# -- the agent API on an in-thread gateway with a controllable backup --------------------


class SlowRunner:
    """A backup that takes the hold, then waits for ``go`` (optionally past the hold timeout)."""

    def __init__(self) -> None:
        self.go = threading.Event()
        self.holding = threading.Event()

    def __call__(self, settings: Settings, hold: WriteHold) -> BackupResult:
        start = time.perf_counter()
        with hold:
            self.holding.set()
            self.go.wait(30)
        return BackupResult(
            "success",
            "20260101T000000Z-abcdef",
            hold_s=time.perf_counter() - start,
            duration_s=time.perf_counter() - start,
            stored_bytes=123,
        )


@contextlib.contextmanager
def agent_gateway(
    tmp_path: Path,
    runner: SlowRunner,
    *,
    target: str = "snapshots",
    tls: dict[str, Any] | None = None,
    **backup: Any,
) -> Iterator[tuple[str, BackupService]]:
    config = gateway_config(tmp_path, "http://127.0.0.1:9", tmp_path / "data", target, **backup)
    if tls:
        config["gateway"]["tls"] = {"enabled": True, **tls}
    settings = parse_config(config)
    pod = build_pod(settings, runner=runner)
    agent, gateway = pod.backups, pod.gateway
    servers: list[uvicorn.Server] = []
    thread = threading.Thread(
        target=lambda: asyncio.run(serve(settings, gateway, on_started=servers.append)), daemon=True
    )
    thread.start()
    url = f"{'https' if tls else 'http'}://127.0.0.1:{settings.gateway.port}"
    deadline = time.monotonic() + 30
    while not (servers and servers[0].started):
        assert time.monotonic() < deadline, "the gateway did not start"
        time.sleep(0.05)
    try:
        yield url, agent
    finally:
        runner.go.set()
        agent.join(10)
        servers[0].should_exit = True
        thread.join(20)


def test_one_backup_at_a_time_and_a_second_trigger_follows_it(tmp_path: Path) -> None:
    runner = SlowRunner()
    with agent_gateway(tmp_path, runner) as (url, _agent):
        admin = {"Authorization": f"Bearer {ADMIN}"}
        first = httpx.post(f"{url}/chromactl/v1/backups", headers=admin, timeout=10)
        assert first.status_code == 202
        backup_id = first.json()["backup_id"]
        assert first.headers["location"] == f"/chromactl/v1/backups/{backup_id}"
        assert runner.holding.wait(10)
        held = httpx.get(f"{url}/chromactl/v1/hold", headers=admin, timeout=10).json()
        assert len(held["holds"]) == 1  # the agent holds the gateway's own write gate
        again = httpx.post(f"{url}/chromactl/v1/backups", headers=admin, timeout=10)
        assert again.status_code == 409
        assert again.json()["backup_id"] == backup_id
        follower = subprocess.Popen(
            [
                CHROMACTL,
                "backup",
                "trigger",
                "--gateway",
                url,
                "--token-file",
                str(tmp_path / "secrets" / "admin"),
                "--poll-interval",
                "0.1",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert follower.stderr is not None
        first_line = follower.stderr.readline()  # printed once it has asked the agent
        assert f"backup {backup_id} already running, following" in first_line
        time.sleep(0.5)
        assert follower.poll() is None  # still following the running backup
        runner.go.set()
        _, err = follower.communicate(timeout=60)
        assert follower.returncode == 0, err
        assert f"backup {backup_id}: snapshot 20260101T000000Z-abcdef" in err
        status = httpx.get(f"{url}/chromactl/v1/backups/{backup_id}", headers=admin, timeout=10).json()
        assert status["state"] == "succeeded" and status["result"]["stored_bytes"] == 123
        assert httpx.get(f"{url}/chromactl/v1/hold", headers=admin, timeout=10).json()["holds"] == []
        listing = httpx.get(f"{url}/chromactl/v1/backups", headers=admin, timeout=10).json()
        assert listing["running"] is None and [b["backup_id"] for b in listing["backups"]] == [backup_id]
        unknown = httpx.get(f"{url}/chromactl/v1/backups/nope", headers=admin, timeout=10)
        assert unknown.status_code == 404


def test_only_admins_reach_the_backup_agent(tmp_path: Path) -> None:
    with agent_gateway(tmp_path, SlowRunner()) as (url, _agent):
        assert httpx.post(f"{url}/chromactl/v1/backups", timeout=10).status_code == 401
        reader = {"Authorization": f"Bearer {READER}"}
        assert httpx.post(f"{url}/chromactl/v1/backups", headers=reader, timeout=10).status_code == 403
        assert httpx.get(f"{url}/chromactl/v1/backups", headers=reader, timeout=10).status_code == 403
        denied = trigger(url, tmp_path / "secrets" / "reader")
        assert denied.returncode == 2 and "refused the agent's credentials" in denied.stderr


def test_a_hold_that_outlives_its_timeout_fails_the_backup(tmp_path: Path) -> None:
    runner = SlowRunner()
    with agent_gateway(tmp_path, runner, hold_timeout_s=0.3) as (url, agent):
        admin = {"Authorization": f"Bearer {ADMIN}"}
        backup_id = httpx.post(f"{url}/chromactl/v1/backups", headers=admin, timeout=10).json()["backup_id"]
        assert runner.holding.wait(10)
        time.sleep(0.6)  # the gate released the hold by itself
        runner.go.set()
        agent.join(10)
        status = httpx.get(f"{url}/chromactl/v1/backups/{backup_id}", headers=admin, timeout=10).json()
        assert status["state"] == "failed"
        assert "ended by itself" in status["error"] and "holdTimeoutSeconds" in status["error"]


def test_unconfigured_agent_says_what_to_set(tmp_path: Path) -> None:
    with agent_gateway(tmp_path, SlowRunner(), target="") as (url, _agent):
        resp = httpx.post(
            f"{url}/chromactl/v1/backups", headers={"Authorization": f"Bearer {ADMIN}"}, timeout=10
        )
        assert resp.status_code == 400 and "backup.target" in resp.json()["message"]


def test_trigger_reports_an_unreachable_gateway() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "chromactl",
            "backup",
            "trigger",
            "--gateway",
            f"http://127.0.0.1:{free_port()}",
            "--poll-interval",
            "0.1",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1 and "cannot reach the gateway" in done.stderr


def test_trigger_presents_the_client_certificate_a_gateway_requires(tmp_path: Path) -> None:
    from tests.gateway.helpers import make_cert

    ca_file, _, ca, ca_key = make_cert(tmp_path / "pki", "ca", common_name="test-ca", ca=True)
    cert, key, _, _ = make_cert(tmp_path / "pki", "server", issuer=(ca, ca_key))
    client_cert, client_key, _, _ = make_cert(
        tmp_path / "pki", "client", common_name="backup", issuer=(ca, ca_key)
    )
    runner = SlowRunner()
    runner.go.set()
    tls = {
        "cert_file": str(cert),
        "key_file": str(key),
        "client_auth": "required",
        "client_ca_file": str(ca_file),
    }
    with agent_gateway(tmp_path, runner, tls=tls) as (url, _agent):
        token = tmp_path / "secrets" / "admin"
        refused = subprocess.run(
            [CHROMACTL, "backup", "trigger", "--gateway", url, "--token-file", str(token)],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "CHROMA_CA_FILE": str(ca_file)},
        )
        assert refused.returncode == 1 and "cannot reach the gateway" in refused.stderr
        done = subprocess.run(
            [
                CHROMACTL,
                "backup",
                "trigger",
                "--gateway",
                url,
                "--token-file",
                str(token),
                "--client-cert",
                str(client_cert),
                "--client-key",
                str(client_key),
                "--poll-interval",
                "0.1",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "CHROMA_CA_FILE": str(ca_file)},
        )
        assert done.returncode == 0, done.stderr
        assert "snapshot 20260101T000000Z-abcdef" in done.stderr


def test_holds_given_back_are_counted() -> None:
    from prometheus_client import CollectorRegistry

    from chromactl.backup.metrics import BackupMetrics

    registry = CollectorRegistry()
    metrics = BackupMetrics(registry)
    for given_back in (2, 0, 1):
        metrics.observe(
            BackupResult("success", "s", hold_s=0.02, duration_s=1.0, holds_given_back=given_back)
        )
    assert registry.get_sample_value("chromactl_backup_holds_given_back_total") == 3
    assert registry.get_sample_value("chromactl_backup_hold_seconds_count") == 3
