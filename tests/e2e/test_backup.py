"""Backups on the pod runner: the CronJob has the gateway snapshot into a real S3 API (moto),
a lost data volume comes back once through `backup.restore`, and never twice."""

from __future__ import annotations

import base64
import json
import shutil
import struct
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from chromactl.backup import Repository
from chromactl.backup.recovery.verify import verify
from chromactl.backup.repository.chunkstore import ChunkStore
from tests.backup.helpers import embedding, free_port, s3_repository, stop, wait_http
from tests.backup.helpers import make_bucket as make_s3_bucket
from tests.e2e.conftest import SERVER_POD, SERVICE, install, render
from tests.podrunner.runner import PodRunner

pytestmark = pytest.mark.slow

CRONJOB = "chroma-chromadb-backup"
DATA_PVC = f"data-{SERVER_POD}"
DB = "/api/v2/tenants/default_tenant/databases/default_database"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing-secret"}


class MotoServer:
    """A real S3 API server (moto) on ``address``, where pods reach the host."""

    def __init__(self, address: str) -> None:
        port = free_port()
        moto = Path(sys.executable).parent / "moto_server"
        self.proc = subprocess.Popen(
            [str(moto), "-H", address, "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        self.endpoint = f"http://{address}:{port}"
        try:
            wait_http(self.endpoint, self.proc, timeout_s=30)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        stop(self.proc)


def values(endpoint: str, bucket: str, **backup: Any) -> dict[str, Any]:
    return {
        "backup": {
            "enabled": True,
            "target": f"s3://{bucket}/chroma",
            "endpointUrl": endpoint,
            "region": "us-east-1",
            "existingSecret": "s3-creds",
            "cronJob": {"backoffLimit": 0},
            **backup,
        }
    }


def credentials_secret() -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "s3-creds"},
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in CREDENTIALS.items()},
    }


class Api:
    """Chroma's HTTP API through the gateway (the Service), with the release's token."""

    def __init__(self, cluster: PodRunner) -> None:
        secret = cluster.store.data("Secret", "chromadb-auth")
        assert secret is not None
        self.client = httpx.Client(
            base_url=cluster.service_url(SERVICE, 8000),
            timeout=60,
            headers={"Authorization": f"Bearer {secret['token'].decode()}"},
        )

    def collection(self, name: str = "records") -> str:
        resp = self.client.post(f"{DB}/collections", json={"name": name, "get_or_create": True})
        resp.raise_for_status()
        return str(resp.json()["id"])

    def add(self, cid: str, ids: list[str]) -> None:
        resp = self.client.post(
            f"{DB}/collections/{cid}/add",
            json={
                "ids": ids,
                "embeddings": [embedding(i) for i in ids],
                "documents": [f"document {i}" for i in ids],
                "metadatas": [{"id": i} for i in ids],
            },
        )
        resp.raise_for_status()

    def records(self, cid: str) -> dict[str, tuple[bytes, str, dict[str, Any]]]:
        resp = self.client.post(
            f"{DB}/collections/{cid}/get", json={"include": ["embeddings", "documents", "metadatas"]}
        )
        resp.raise_for_status()
        got = resp.json()
        return {
            i: (f32(e), d, m)
            for i, e, d, m in zip(
                got["ids"], got["embeddings"], got["documents"], got["metadatas"], strict=True
            )
        }


def f32(values: list[float]) -> bytes:
    """A vector as Chroma stores it: float32, compared bit for bit."""
    return struct.pack(f"<{len(values)}f", *values)


def expected(ids: list[str]) -> dict[str, tuple[bytes, str, dict[str, Any]]]:
    return {i: (f32(embedding(i)), f"document {i}", {"id": i}) for i in ids}


def s3_repo(endpoint: str, bucket: str) -> Repository:
    keys = {"key": "testing", "secret": "testing-secret"}
    repo: Repository = s3_repository(f"s3://{bucket}/chroma", endpoint, options=keys)
    return repo


def make_bucket(endpoint: str) -> str:
    bucket = f"chroma-{uuid.uuid4().hex[:8]}"
    make_s3_bucket(endpoint, bucket)
    return bucket


def test_cronjob_backs_up_to_s3_and_a_lost_volume_is_restored_once(cluster: PodRunner) -> None:
    s3 = MotoServer(cluster.network.gateway)
    endpoint = s3.endpoint
    try:
        bucket = make_bucket(endpoint)
        cluster.apply([credentials_secret()])
        # Restore on from the first install: the bucket is empty, Chroma starts empty.
        install(
            cluster,
            values(endpoint, bucket, restore={"enabled": True, "requireSnapshot": False}),
            gateway=True,
        )
        assert "nothing to restore" in cluster.logs(SERVER_POD, "restore")
        api = Api(cluster)
        cid = api.collection()
        before = [f"r-{n}" for n in range(300)]
        for start in range(0, len(before), 100):
            api.add(cid, before[start : start + 100])

        # A writer keeps adding through the gateway while the CronJob's pod runs the backup.
        written: list[str] = []
        errors: list[str] = []
        done = threading.Event()

        def writer() -> None:
            n = 0
            while not done.is_set():
                ids = [f"w-{n + k}" for k in range(10)]
                try:
                    api.add(cid, ids)
                except httpx.HTTPError as exc:
                    errors.append(str(exc))
                    return
                written.extend(ids)
                n += 10

        thread = threading.Thread(target=writer, daemon=True)
        thread.start()
        try:
            job = cluster.run_cronjob(CRONJOB, timeout=180)
        finally:
            done.set()
            thread.join(30)
        log = job.logs()
        assert job.succeeded, f"backup job failed ({job.error}):\n{log}"
        assert "writes held" in log and "started on http://chroma-chromadb:8000" in log
        assert not errors, errors  # writes waited for the hold; none failed

        repo = s3_repo(endpoint, bucket)
        (snap,) = repo.complete()
        assert snap.snapshot_id in log
        assert verify(repo, "latest").ok
        assert snap.manifest is not None
        snapshot_count = {c.name: c.count for c in snap.manifest.collections}["records"]
        assert len(before) <= snapshot_count <= len(before) + len(written)

        # The data volume is lost; reinstalling with backup.restore brings the snapshot back.
        cluster.delete_pod(SERVER_POD)
        shutil.rmtree(cluster.pvc_dir(DATA_PVC))
        cluster.apply(render(values(endpoint, bucket, restore={"enabled": True}), gateway=True))
        cluster.start_workloads()
        cluster.wait_ready(SERVER_POD, 120)
        restore_log = cluster.logs(SERVER_POD, "restore")
        assert f"restored snapshot {snap.snapshot_id}" in restore_log, restore_log
        marker = json.loads((cluster.pvc_dir(DATA_PVC) / ".chromactl-restore.json").read_text())
        assert marker["snapshot_id"] == snap.snapshot_id

        api = Api(cluster)  # the re-rendered release has a new token
        cid = api.collection()
        restored = api.records(cid)
        assert len(restored) == snapshot_count
        want = expected(before)
        assert {i: restored[i] for i in before} == want  # embeddings bit for bit, documents, metadata
        assert set(restored) - set(before) <= set(written)

        # New writes, then a restart: the marker stops a second restore; the new records stay.
        # The restart does not even need the target: S3 is gone.
        api.add(cid, ["after-1", "after-2"])
        s3.stop()
        cluster.restart_pod(SERVER_POD)
        first_install, reinstall_start, restart = cluster.logs(SERVER_POD, "restore").split(
            "[podrunner] start restore"
        )[1:]
        assert "nothing to restore" in first_install and "into /data" not in first_install
        assert f"restored snapshot {snap.snapshot_id} into /data" in reinstall_start
        assert "not restoring again" in restart and "into /data" not in restart, restart
        api = Api(cluster)
        after = api.records(api.collection())
        assert len(after) == snapshot_count + 2
        assert after["after-1"] == expected(["after-1"])["after-1"]
    finally:
        s3.stop()


def test_backup_job_fails_with_a_clear_log_when_the_target_is_unreachable(cluster: PodRunner) -> None:
    dead = f"http://{cluster.network.gateway}:{free_port()}"  # nothing listens there
    cluster.apply([credentials_secret()])
    install(cluster, values(dead, "nowhere"), gateway=True)
    Api(cluster).collection()
    job = cluster.run_cronjob(CRONJOB, timeout=180)
    assert not job.succeeded
    assert len(job.pods) == 1  # backoffLimit 0
    log = " ".join(job.logs().split())
    assert "error: backup" in log and "failed:" in log, log
    assert dead.split("//")[1] in log, log  # names the endpoint it could not reach
    assert "testing-secret" not in log
    gateway_log = cluster.logs(SERVER_POD, "gateway")
    assert "backup failed" in gateway_log and "testing-secret" not in gateway_log
    # Writes are not left held by the failed backup.
    api = Api(cluster)
    api.add(api.collection(), ["x-1"])


def _lose_the_volume_and_restore(cluster: PodRunner, release: dict[str, Any], to_time: str) -> None:
    """The data volume is lost; the release comes back with ``backup.restore.toTime``."""
    cluster.delete_pod(SERVER_POD)
    shutil.rmtree(cluster.pvc_dir(DATA_PVC))
    release["backup"]["restore"] = {"enabled": True, "toTime": to_time}
    cluster.apply(render(release, gateway=True))
    cluster.start_workloads()
    cluster.wait_ready(SERVER_POD, 120)


def test_continuous_backup_restores_the_second_chosen_in_values(cluster: PodRunner) -> None:
    """Writes go on after a point in time; the volume is lost; ``backup.restore.toTime`` brings
    back exactly the writes acknowledged before that time (docs/backup.md)."""
    s3 = MotoServer(cluster.network.gateway)
    endpoint = s3.endpoint
    try:
        bucket = make_bucket(endpoint)
        repo = s3_repo(endpoint, bucket)
        cluster.apply([credentials_secret()])
        continuous = {"enabled": True, "shipIntervalSeconds": 0.5}
        install(cluster, values(endpoint, bucket, continuous=continuous), gateway=True)
        api = Api(cluster)
        cid = api.collection()
        # The gateway takes the journal's base snapshot as it starts.
        deadline = time.monotonic() + 120
        while not any(s.manifest and s.manifest.cut_at for s in repo.complete()):
            assert time.monotonic() < deadline, cluster.logs(SERVER_POD, "gateway")
            time.sleep(0.5)
        before = [f"r-{n}" for n in range(200)]
        for start in range(0, len(before), 20):
            api.add(cid, before[start : start + 20])
        time.sleep(0.5)
        chosen = datetime.now(UTC)
        time.sleep(0.5)
        after = [f"late-{n}" for n in range(60)]
        for start in range(0, len(after), 20):
            api.add(cid, after[start : start + 20])
        # Past the recovery point goal: every write above is in the target.
        time.sleep(6)

        to_time = chosen.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        _lose_the_volume_and_restore(cluster, values(endpoint, bucket, continuous=continuous), to_time)
        log = cluster.logs(SERVER_POD, "restore")
        assert f"the data is as of {to_time}" in log, log
        api = Api(cluster)
        cid = api.collection()
        assert api.records(cid) == expected(before)

        # The restored pod journals on, from a base of its own: its writes come back with latest.
        again = [f"again-{n}" for n in range(40)]
        for start in range(0, len(again), 20):
            api.add(cid, again[start : start + 20])
        time.sleep(6)
        _lose_the_volume_and_restore(cluster, values(endpoint, bucket, continuous=continuous), "latest")
        api = Api(cluster)
        assert api.records(api.collection()) == expected(before + again)
    finally:
        s3.stop()


def test_a_drill_job_restores_the_newest_snapshot_and_a_damaged_one_fails_by_name(cluster: PodRunner) -> None:
    """backup.drill: the drill Job restores into its own emptyDir, runs Chroma's image on it,
    checks counts and sampled records, and reports to the gateway (docs/backup.md)."""
    s3 = MotoServer(cluster.network.gateway)
    try:
        bucket = make_bucket(s3.endpoint)
        cluster.apply([credentials_secret()])
        install(cluster, values(s3.endpoint, bucket, drill={"enabled": True, "sample": 5}), gateway=True)
        api = Api(cluster)
        cid = api.collection()
        ids = [f"r-{n}" for n in range(120)]
        for start in range(0, len(ids), 40):
            api.add(cid, ids[start : start + 40])
        backup = cluster.run_cronjob(CRONJOB, timeout=180)
        assert backup.succeeded, backup.logs()

        drill = cluster.run_cronjob("chroma-chromadb-drill", timeout=240)
        log = drill.logs()
        assert drill.succeeded, f"drill failed ({drill.error}):\n{log}"
        (snap,) = s3_repo(s3.endpoint, bucket).complete()
        assert f"drill of {snap.snapshot_id} passed: 1 collection(s), 120 records, 5 sampled" in log, log
        reported = api.client.get("/chromactl/v1/drills").json()["drills"]
        assert reported[0]["outcome"] == "success" and reported[0]["snapshot_id"] == snap.snapshot_id

        # A damaged chunk: the drill fails, naming the file, the chunk and the snapshot.
        repo = s3_repo(s3.endpoint, bucket)
        assert snap.manifest is not None
        entry = max(snap.manifest.files, key=lambda f: f.stored_size)
        assert entry.chunks
        store = ChunkStore(repo)
        key = store.object_key(store.key(entry.chunks[0]))
        data = bytearray(repo.store.load(key))
        data[len(data) // 2] ^= 0xFF
        repo.store.save(key, bytes(data))
        failed = cluster.run_cronjob("chroma-chromadb-drill", timeout=240)
        assert not failed.succeeded
        log = failed.logs()
        assert f"drill of {snap.snapshot_id} FAILED" in log and entry.path in log, log
        assert f"chunk {entry.chunks[0]} is damaged" in log, log
        reported = api.client.get("/chromactl/v1/drills").json()["drills"]
        assert reported[0]["outcome"] == "failure" and entry.path in " ".join(reported[0]["problems"])
    finally:
        s3.stop()
