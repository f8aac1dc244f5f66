"""The gateway's metrics: bounded labels, record counts, Chroma's internals read safely."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from chromactl.gateway.chroma_metrics import InternalsCollector
from chromactl.gateway.labels import OTHER, LabelCap
from chromactl.gateway.request_metrics import GatewayMetrics, count_ids
from chromactl.gateway.routes import classify

D = "/api/v2/tenants/{t}/databases/{d}/collections/{c}/add"


def series(registry: CollectorRegistry, name: str) -> list[dict[str, str]]:
    text = generate_latest(registry).decode()
    return [s.labels for fam in text_string_to_metric_families(text) for s in fam.samples if s.name == name]


def test_tenant_database_labels_are_bounded() -> None:
    m = GatewayMetrics(database_series=5)
    for i in range(200):
        route = classify("POST", D.format(t=f"tenant-{i}", d=f"db-{i}", c="x"))
        m.observe(route, 201, seconds=0.01, request_bytes=10, response_bytes=2, authorized=True, records=1)
    pairs = {(s["tenant"], s["database"]) for s in series(m.registry, "chromactl_gateway_requests_total")}
    assert len(pairs) == 6  # five named pairs and __other__
    assert (OTHER, OTHER) in pairs
    assert ("tenant-0", "db-0") in pairs and ("tenant-199", "db-199") not in pairs
    counts = [s for s in series(m.registry, "chromactl_gateway_database_request_duration_seconds_count")]
    assert len(counts) == 6
    total = sum(
        float(s.value)
        for fam in text_string_to_metric_families(generate_latest(m.registry).decode())
        for s in fam.samples
        if s.name == "chromactl_gateway_requests_total"
    )
    assert total == 200  # nothing is lost, only aggregated


def test_refused_requests_name_no_tenant() -> None:
    m = GatewayMetrics(database_series=5)
    route = classify("POST", D.format(t="guessed", d="name", c="x"))
    m.observe(route, 401, seconds=0.001, request_bytes=0, response_bytes=50, authorized=False, records=None)
    labels = series(m.registry, "chromactl_gateway_requests_total")
    assert labels == [{"operation": "collection_add", "tenant": "", "database": "", "status_class": "4xx"}]


def test_rejections_are_counted_by_reason() -> None:
    m = GatewayMetrics()
    route = classify("POST", D.format(t="t", d="d", c="x"))
    for status in (413, 429, 413):
        m.observe(
            route, status, seconds=0.001, request_bytes=0, response_bytes=0, authorized=True, records=None
        )
    got = {
        (s.labels["reason"], s.value)
        for fam in text_string_to_metric_families(generate_latest(m.registry).decode())
        for s in fam.samples
        if s.name == "chromactl_gateway_rejected_requests_total"
    }
    # A 429 is not the gateway's (it has no rate limiter): not counted as a rejection.
    assert got == {("payload_too_large", 2.0)}


def test_label_cap_keeps_admitted_values() -> None:
    cap = LabelCap(2)
    assert cap(("a",)) == ("a",)
    assert cap(("b",)) == ("b",)
    assert cap(("c",)) == (OTHER,)
    assert cap(("a",)) == ("a",)
    assert cap(("x" * 500,)) == (OTHER,)
    assert len(LabelCap(1)(("y" * 500,))[0]) == 128


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"ids": ["a", "b", "c"], "embeddings": [[1, 2]]}', 3),
        (b'{"ids":[],"embeddings":null}', 0),
        (b'{"where": {"k": "v"}, "ids": null}', None),
        (b'{"documents": ["has \\"ids\\": [1]"], "ids": ["q"]}', 1),
        (b'{"embeddings": [[1]]}', None),
        (b'{"ids": ["a", "b"', None),  # cut off
    ],
)
def test_count_ids(body: bytes, expected: int | None) -> None:
    assert count_ids(body) == expected


def make_db(path: Path, collections: int) -> Path:
    """A data directory with Chroma 1.x's tables (the columns the reader uses)."""
    path.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path / "chroma.sqlite3")
    db.executescript(
        """
        CREATE TABLE databases (id TEXT PRIMARY KEY, name TEXT, tenant_id TEXT);
        CREATE TABLE collections (id TEXT PRIMARY KEY, name TEXT, database_id TEXT);
        CREATE TABLE segments (id TEXT PRIMARY KEY, type TEXT, scope TEXT, collection TEXT);
        CREATE TABLE embeddings (id INTEGER PRIMARY KEY, segment_id TEXT, embedding_id TEXT, seq_id BLOB);
        CREATE TABLE max_seq_id (segment_id TEXT PRIMARY KEY, seq_id INTEGER);
        CREATE TABLE embeddings_queue (seq_id INTEGER PRIMARY KEY, operation INTEGER, topic TEXT, id TEXT);
        INSERT INTO databases VALUES ('db0', 'default_database', 'default_tenant');
        """
    )
    seq = 0
    for i in range(collections):
        cid = f"{i:08d}-0000-0000-0000-000000000000"
        db.execute("INSERT INTO collections VALUES (?, ?, 'db0')", (cid, f"col-{i}"))
        db.execute("INSERT INTO segments VALUES (?, 'hnsw', 'VECTOR', ?)", (f"v{i}", cid))
        db.execute("INSERT INTO segments VALUES (?, 'sqlite', 'METADATA', ?)", (f"m{i}", cid))
        for r in range(i + 1):  # collection i has i+1 records
            seq += 1
            db.execute("INSERT INTO embeddings VALUES (NULL, ?, ?, ?)", (f"m{i}", f"r{r}", seq))
            db.execute(
                "INSERT INTO embeddings_queue VALUES (?, 0, ?, ?)",
                (seq, f"persistent://default/default/{cid}", f"r{r}"),
            )
        # the vector segment has persisted all but the last record
        db.execute("INSERT INTO max_seq_id VALUES (?, ?)", (f"v{i}", seq - 1))
    db.commit()
    db.close()
    (path / "v0").mkdir()
    (path / "v0" / "data_level0.bin").write_bytes(b"\0" * 4096)
    return path


def test_internals_bound_collections_and_sum_the_rest(tmp_path: Path) -> None:
    data = make_db(tmp_path / "data", collections=30)
    c = InternalsCollector(data, collection_series=10)
    c.refresh()
    reg = CollectorRegistry()
    reg.register(c)
    records = series(reg, "chromactl_chroma_records")
    assert len(records) == 11
    named = {s["collection"] for s in records} - {OTHER}
    assert named == {f"col-{i}" for i in range(20, 30)}  # the ten largest
    values = {
        s.labels["collection"]: s.value
        for fam in text_string_to_metric_families(generate_latest(reg).decode())
        for s in fam.samples
        if s.name == "chromactl_chroma_records"
    }
    assert values[OTHER] == sum(i + 1 for i in range(20))
    tails = [
        s.value
        for fam in text_string_to_metric_families(generate_latest(reg).decode())
        for s in fam.samples
        if s.name == "chromactl_chroma_unpersisted_records"
    ]
    assert sum(tails) == 30  # one unpersisted record per collection
    text = generate_latest(reg).decode()
    assert "chromactl_chroma_segment_bytes 4096.0" in text
    assert "chromactl_chroma_volume_free_bytes" in text


def test_internals_never_wait_for_a_locked_database(tmp_path: Path) -> None:
    data = make_db(tmp_path / "data", collections=3)
    c = InternalsCollector(data, collection_series=10)
    c.refresh()
    before = c.snapshot.collections
    writer = sqlite3.connect(data / "chroma.sqlite3", isolation_level=None)
    writer.execute("BEGIN EXCLUSIVE")  # Chroma in the middle of a commit
    writer.execute("INSERT INTO databases VALUES ('db1', 'other', 'default_tenant')")
    try:
        start = time.monotonic()
        c.refresh()
        assert time.monotonic() - start < 1.0
        assert c.errors.get("busy") == 1
        assert c.snapshot.collections == before  # the last values are kept
        # Chroma can still commit while the reader is around.
    finally:
        writer.execute("COMMIT")
        writer.close()
    c.refresh()
    assert c.errors.get("busy") == 1


def test_internals_read_in_the_background_and_scrapes_do_not_read(tmp_path: Path) -> None:
    data = make_db(tmp_path / "data", collections=2)
    c = InternalsCollector(data, interval_s=0.05).start()
    try:
        deadline = time.monotonic() + 5
        while c.snapshot.last_success is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert c.snapshot.last_success is not None
        assert threading.current_thread() is not c._thread
    finally:
        c.stop()
    (data / "chroma.sqlite3").unlink()
    reg = CollectorRegistry()
    reg.register(c)
    # The cached values are served even though the file is gone.
    assert any(s["collection"] == "col-1" for s in series(reg, "chromactl_chroma_records"))


def test_certificate_expiry_is_read(tmp_path: Path) -> None:
    from tests.gateway.helpers import make_cert

    cert_path, _, cert, _ = make_cert(tmp_path, "gw")
    c = InternalsCollector(tmp_path, cert_file=cert_path)
    c.refresh()
    assert c.snapshot.cert_expiry == cert.not_valid_after_utc.timestamp()


def test_without_a_data_directory_only_chroma_is_probed(tmp_path: Path) -> None:
    """In front of a Chroma elsewhere (the chart's gateway tier): up and ready, no sizes."""
    from chromactl.config import parse_config
    from chromactl.gateway.server import start_internals
    from tests.gateway.helpers import run_chroma

    with run_chroma(tmp_path / "chroma") as chroma:
        settings = parse_config(
            {
                "chroma": {"url": chroma.url, "persist_path": str(chroma.path / "data")},
                "gateway": {"metrics": {"data_directory": False, "internals_interval_s": 60}},
            }
        )
        reg = CollectorRegistry()
        collector = start_internals(settings, reg)
        assert collector is not None
        try:
            collector.refresh()
            text = generate_latest(reg).decode()
        finally:
            collector.stop()
    assert "chromactl_chroma_up 1.0" in text and "chromactl_chroma_ready 1.0" in text
    for absent in (
        "chromactl_chroma_volume_free_bytes",
        "chromactl_chroma_sqlite_bytes",
        "chromactl_chroma_records",
    ):
        assert absent not in text  # the data directory exists here, and was not read
    assert collector.errors == {}


def test_served_gateway_takes_the_bound_from_the_config(tmp_path: Path) -> None:
    from chromactl.config import parse_config
    from chromactl.pod import build_pod

    settings = parse_config(
        {"chroma": {"persist_path": str(tmp_path)}, "gateway": {"metrics": {"database_series": 3}}}
    )
    assert build_pod(settings).gateway.metrics.databases.limit == 3


def test_internals_recount_only_collections_that_changed(tmp_path: Path) -> None:
    data = make_db(tmp_path / "data", collections=3)
    c = InternalsCollector(data)
    c.refresh()
    assert [s.records for s in c.snapshot.collections] == [1, 2, 3]
    db = sqlite3.connect(data / "chroma.sqlite3")
    db.execute("INSERT INTO embeddings VALUES (NULL, 'm0', 'extra', 99)")  # no max_seq_id move yet
    db.commit()
    c.refresh()
    assert [s.records for s in c.snapshot.collections] == [1, 2, 3]  # not recounted
    db.execute("INSERT INTO max_seq_id VALUES ('m0', 99)")  # Chroma moves it with every write
    db.commit()
    db.close()
    c.refresh()
    assert [s.records for s in c.snapshot.collections] == [2, 2, 3]


def test_a_read_over_its_budget_is_interrupted_and_keeps_the_last_count(tmp_path: Path) -> None:
    data = make_db(tmp_path / "data", collections=2)
    db = sqlite3.connect(data / "chroma.sqlite3")
    db.executemany(
        "INSERT INTO embeddings VALUES (NULL, 'm1', ?, 1)", ((f"bulk{i}",) for i in range(200_000))
    )
    db.execute("INSERT INTO max_seq_id VALUES ('m1', 7)")
    db.commit()
    c = InternalsCollector(data, read_budget_s=5)
    c.refresh()
    assert [s.records for s in c.snapshot.collections] == [1, 200_002]
    db.execute("INSERT INTO embeddings VALUES (NULL, 'm1', 'one-more', 1)")
    db.execute("UPDATE max_seq_id SET seq_id = 8 WHERE segment_id = 'm1'")
    db.commit()
    db.close()
    c.read_budget_s = 0.000001
    start = time.monotonic()
    c.refresh()
    assert time.monotonic() - start < 1.0
    assert c.errors.get("over_budget") == 1
    assert [s.records for s in c.snapshot.collections] == [1, 200_002]  # the last good count
    c.read_budget_s = 5
    c.refresh()
    assert [s.records for s in c.snapshot.collections] == [1, 200_003]


def test_a_long_log_scan_is_interrupted_and_the_round_skipped(tmp_path: Path) -> None:
    data = make_db(tmp_path / "data", collections=2)
    c = InternalsCollector(data)
    c.refresh()
    before = c.snapshot.collections
    db = sqlite3.connect(data / "chroma.sqlite3")
    topic = "persistent://default/default/00000001-0000-0000-0000-000000000000"
    db.executemany(
        "INSERT INTO embeddings_queue VALUES (?, 0, ?, 'x')", ((1000 + i, topic) for i in range(100_000))
    )
    db.commit()
    db.close()
    c.read_budget_s = 0.000001
    c.refresh()
    assert c.errors.get("over_budget") == 1
    assert c.snapshot.collections == before
    c.read_budget_s = 5
    c.refresh()
    assert sum(s.log_depth for s in c.snapshot.collections) == sum(s.log_depth for s in before) + 100_000
