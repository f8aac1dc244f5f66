"""Restore drills: prove the newest snapshot restores, before the day it is needed.

A drill restores a snapshot into a scratch directory (every object checked against the
manifest: a damaged one fails the drill, named with its snapshot), runs Chroma on it (a
throwaway server that no client reaches), and checks it: each collection's count against the
manifest, and a sample of records, each queried with its own embedding, must come back as its
own nearest neighbour (the vector index holds what the metadata holds). The report goes to
the gateway's agent API (``POST /chromactl/v1/drills``), which exports it as metrics.

Where it runs: ``chromactl backup drill`` starts Chroma itself (``chroma`` beside chromactl);
the chart's drill CronJob runs Chroma's own image beside chromactl's (``--chroma-url``), the
two meeting on an emptyDir: chromactl restores, writes ``restored`` (and Chroma's config),
Chroma starts on it; chromactl checks and writes ``done``, and Chroma stops.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import yaml

from chromactl.backup.recovery.restore import restore
from chromactl.backup.recovery.verify import throwaway_chroma
from chromactl.backup.repository.manifest import Manifest
from chromactl.backup.repository.repository import Repository
from chromactl.errors import ChromactlError

#: Drill reports kept in the target, beside the snapshots: ``drills/<time>-<outcome>.json``.
REPORTS = "drills"
KEEP_REPORTS = 50
#: Marker files in the drill's shared directory (chart: the emptyDir both containers mount).
RESTORED = "restored"
DONE = "done"
CHROMA_CONFIG = "chroma.yaml"
#: Written by the Job's Chroma container when Chroma exited before ``done`` (its exit code),
#: beside Chroma's output.
CHROMA_EXITED = "chroma-exited"
CHROMA_LOG = "chroma.log"


@dataclass
class DrillReport:
    snapshot_id: str = ""
    outcome: str = "success"
    collections: int = 0
    records: int = 0
    sampled: int = 0
    problems: list[str] = field(default_factory=list)
    duration_s: float = 0.0
    finished_at: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def fail(self, problem: str) -> None:
        self.outcome = "failure"
        self.problems.append(problem)


def check_live(
    url: str,
    manifest: Manifest,
    report: DrillReport,
    sample: int,
    timeout_s: float = 120,
    workdir: Path | None = None,
) -> None:
    """Counts and a sample of self-queries against a Chroma serving the restored snapshot
    (``workdir``: where the Job's Chroma container says it exited)."""
    base = f"{url.rstrip('/')}/api/v2"
    with httpx.Client(timeout=60.0) as client:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                if client.get(f"{base}/heartbeat").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if workdir is not None and (workdir / CHROMA_EXITED).exists():
                log_tail = (workdir / CHROMA_LOG).read_text(errors="replace")[-400:]
                report.fail(f"the throwaway Chroma exited before answering: {log_tail.strip()}")
                return
            if time.monotonic() > deadline:
                report.fail(f"the throwaway Chroma did not answer within {timeout_s:.0f}s")
                return
            time.sleep(0.5)
        for col in manifest.collections:
            report.collections += 1
            coll = f"{base}/tenants/{col.tenant}/databases/{col.database}/collections/{col.id}"
            got = client.get(f"{coll}/count").json()
            report.records += int(got) if isinstance(got, int) else 0
            if got != col.count:
                report.fail(f"collection {col.name}: {got} records, the manifest says {col.count}")
                continue
            if sample <= 0 or col.count == 0:
                continue
            resp = client.post(f"{coll}/get", json={"limit": sample, "include": ["embeddings"]})
            if resp.status_code != 200:
                detail = f"HTTP {resp.status_code} {resp.text[:200]}"
                report.fail(f"collection {col.name}: reading records failed: {detail}")
                continue
            rows = resp.json()
            ids = rows.get("ids") or []
            embeddings = rows.get("embeddings") or [None] * len(ids)
            for rid, embedding in zip(ids, embeddings, strict=False):
                if embedding is None:
                    report.sampled += 1
                    report.fail(f"collection {col.name}: record {rid} has no embedding in the vector index")
                    continue
                resp = client.post(
                    f"{coll}/query",
                    json={"query_embeddings": [embedding], "n_results": 1, "include": ["distances"]},
                )
                report.sampled += 1
                if resp.status_code != 200:
                    report.fail(
                        f"collection {col.name}: querying record {rid} failed: HTTP {resp.status_code}"
                    )
                    continue
                found = resp.json()
                nearest, distances = found.get("ids", [[]])[0], found.get("distances", [[]])[0]
                if not nearest or (nearest[0] != rid and distances[0] > 1e-6):
                    report.fail(f"collection {col.name}: record {rid} is not found by its own embedding")


def chroma_config(base: Path | None, data: Path, port: int) -> str:
    """The throwaway Chroma's config: the live server's (``base``: its options such as
    ``sqlitedb.hash_type`` must match the data), serving ``data`` on the loopback only."""
    config: dict[str, Any] = {}
    if base is not None:
        loaded = yaml.safe_load(base.read_text(encoding="utf-8")) or {}
        if not isinstance(loaded, dict):
            raise ChromactlError(f"{base} is not a Chroma config (a YAML mapping)", exit_code=2)
        config = loaded
    config.update(
        {"persist_path": str(data), "port": port, "listen_address": "127.0.0.1", "allow_reset": False}
    )
    return yaml.safe_dump(config, sort_keys=False)


def drill(
    repo: Repository,
    *,
    snapshot: str = "latest",
    workdir: Path | None = None,
    chroma_url: str | None = None,
    chroma_bin: str | None = None,
    base_config: Path | None = None,
    sample: int = 20,
) -> DrillReport:
    """Run one drill (see the module doc). With ``chroma_url``, Chroma is the one started on
    ``workdir/data`` by someone else (the chart's drill Job); otherwise this starts it.
    ``base_config``: the live Chroma's config, for the options the data depends on."""
    start = time.perf_counter()
    report = DrillReport()
    scratch = workdir or Path(tempfile.mkdtemp(prefix="chromactl-drill-"))
    data = scratch / "data"
    try:
        manifest = repo.resolve(snapshot)
        report.snapshot_id = manifest.snapshot_id
        restore(repo, data, snapshot=manifest.snapshot_id, force=True)
        if chroma_url is not None:
            port = int(chroma_url.rstrip("/").rsplit(":", 1)[-1])
            (scratch / CHROMA_CONFIG).write_text(chroma_config(base_config, data, port), encoding="utf-8")
            (scratch / RESTORED).touch()
            check_live(chroma_url, manifest, report, sample, workdir=scratch)
        else:
            with throwaway_chroma(
                data, chroma_bin=chroma_bin, config=lambda port: chroma_config(base_config, data, port)
            ) as url:
                check_live(url, manifest, report, sample)
    except ChromactlError as exc:
        report.fail(str(exc))
    finally:
        if chroma_url is not None:
            (scratch / DONE).touch()
        if workdir is None:
            shutil.rmtree(scratch, ignore_errors=True)
    report.duration_s = time.perf_counter() - start
    report.finished_at = time.time()
    return report


def _report_name(report: DrillReport) -> str:
    stamp = datetime.fromtimestamp(report.finished_at, UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{report.outcome}.json"


def record(repo: Repository, report: DrillReport) -> None:
    """Keep the report in the target (the last :data:`KEEP_REPORTS`), so that a restarted
    gateway still knows when a drill last passed."""
    key = f"{REPORTS}/{_report_name(report)}"
    repo.save(key, json.dumps(report.to_dict(), indent=2).encode(), what="write the drill report")
    for old in _report_names(repo)[:-KEEP_REPORTS]:
        repo.store.remove([f"{REPORTS}/{old}"], what="remove an old drill report")


def _report_names(repo: Repository) -> list[str]:
    return [n for n in repo.store.list(REPORTS, what="list drill reports") if n.endswith(".json")]


def last_success(repo: Repository) -> float | None:
    """When the newest drill recorded in the target passed (Unix time), if one did."""
    for name in reversed(_report_names(repo)):
        if name.endswith("-success.json"):
            stamp = name.split("-", 1)[0]
            return datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC).timestamp()
    return None
