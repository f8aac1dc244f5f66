"""Logical export to Parquet and import into any Chroma (1.x → 1.x, 0.6.3 → 1.x)."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import httpx
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from chromactl.backup.recovery.logical import ChromaApi, ExportError, export
from chromactl.backup.repository.repository import Repository
from chromactl.cli import app

from .helpers import DB, get_all, run_chroma, seed

pytestmark = pytest.mark.slow


def records(url: str, name: str, database: str = "default_database") -> dict[str, Any]:
    base = f"{url}/api/v2/tenants/default_tenant/databases/{database}"
    cols = httpx.get(f"{base}/collections", timeout=30).json()
    cid = next(c["id"] for c in cols if c["name"] == name)
    got = httpx.post(
        f"{base}/collections/{cid}/get",
        json={"include": ["embeddings", "documents", "metadatas", "uris"]},
        timeout=60,
    ).json()
    out = {}
    for i, rid in enumerate(got["ids"]):
        emb = got["embeddings"][i]
        out[rid] = (
            struct.pack(f"<{len(emb)}f", *emb),
            got["documents"][i],
            got["metadatas"][i],
            (got.get("uris") or [None] * len(got["ids"]))[i],
        )
    return out


def test_export_resume_and_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = Repository(str(tmp_path / "export"))
    with run_chroma(tmp_path / "data") as chroma:
        seed(chroma.url, {"alpha": 1300, "beta": 250})
        cid = httpx.get(f"{chroma.url}{DB}/collections").json()
        beta = next(c["id"] for c in cid if c["name"] == "beta")
        httpx.post(
            f"{chroma.url}{DB}/collections/{beta}/upsert",
            json={
                "ids": ["beta-0"],
                "embeddings": [[0.5] * 16],
                "uris": ["s3://bucket/x.png"],
                "documents": ["with uri"],
                "metadatas": [{"k": "v"}],
            },
        ).raise_for_status()

        api = ChromaApi(chroma.url)
        real_get = api.get
        calls = {"n": 0}

        def flaky_get(collection_id: str, *, limit: int, offset: int) -> dict[str, Any]:
            calls["n"] += 1
            if calls["n"] == 4:
                raise ExportError("connection lost")
            return real_get(collection_id, limit=limit, offset=offset)

        monkeypatch.setattr(api, "get", flaky_get)
        with pytest.raises(ExportError):
            export(api, out, page_size=400)
        index = json.loads((tmp_path / "export" / "export.json").read_text())
        assert index["complete"] is False
        monkeypatch.undo()
        result = export(ChromaApi(chroma.url), out, page_size=400)
        assert result.resumed
        assert result.collections == {"alpha": 1300, "beta": 250}
        assert result.records < 1550  # pages written before the failure were not redone
        files = sorted(p.name for p in (tmp_path / "export").rglob("*.parquet"))
        assert len(files) == 4 + 1
        table = pq.read_table(next((tmp_path / "export").rglob("beta/part-00000.parquet")))
        assert table.schema.field("embedding").type.value_type == "float"
        assert set(table.column_names) == {"id", "embedding", "document", "metadata", "uri"}

        # import into another database of the same server
        runner = CliRunner()
        done = runner.invoke(
            app,
            [
                "import",
                "--url",
                chroma.url,
                "--source",
                out.url,
                "--database",
                "copy",
                "--json",
                "-H",
                "X-Test: 1",
            ],
        )
        assert done.exit_code == 0, done.output
        assert json.loads(done.stdout)["records"] == 1550
        for name in ("alpha", "beta"):
            assert records(chroma.url, name, "copy") == records(chroma.url, name)
        cols = {
            c["name"]: c
            for c in httpx.get(
                f"{chroma.url}/api/v2/tenants/default_tenant/databases/copy/collections"
            ).json()
        }
        assert cols["alpha"]["configuration_json"]["hnsw"]["ef_search"] == 400


def test_legacy_06_to_1x(tmp_path: Path) -> None:
    out = tmp_path / "export"
    with run_chroma(tmp_path / "legacy", legacy=True) as legacy:
        base = f"{legacy.url}{DB}"
        col = httpx.post(
            f"{base}/collections", json={"name": "legacy-docs", "metadata": {"owner": "team-a"}}
        ).json()
        cos = httpx.post(
            f"{base}/collections",
            json={"name": "legacy-cos", "metadata": {"hnsw:space": "cosine", "hnsw:M": 32}},
        ).json()
        httpx.post(
            f"{base}/collections/{cos['id']}/add",
            json={"ids": ["c1", "c2"], "embeddings": [[1.0, 0.0], [0.6, 0.8]], "documents": ["one", "two"]},
        ).raise_for_status()
        ids = [f"doc-{i}" for i in range(700)]
        for start in range(0, 700, 200):
            chunk = ids[start : start + 200]
            httpx.post(
                f"{base}/collections/{col['id']}/add",
                json={
                    "ids": chunk,
                    "embeddings": [
                        [((i * 7 + j) % 101) / 101 for j in range(8)]
                        for i in range(start, start + len(chunk))
                    ],
                    "documents": [f"text {c}" for c in chunk],
                    "metadatas": [{"i": int(c[4:]), "odd": int(c[4:]) % 2 == 1} for c in chunk],
                    "uris": [f"file:///{c}" for c in chunk],
                },
                timeout=60,
            ).raise_for_status()
        exported = CliRunner().invoke(
            app, ["export", "--url", legacy.url, "--dest", str(out), "--page-size", "300", "--json"]
        )
        assert exported.exit_code == 0, exported.output
        legacy_records = records(legacy.url, "legacy-docs")
        legacy_cos = records(legacy.url, "legacy-cos")
    assert len(legacy_records) == 700
    with run_chroma(tmp_path / "new") as new:
        imported = CliRunner().invoke(app, ["import", "--url", new.url, "--source", str(out), "--json"])
        assert imported.exit_code == 0, imported.output
        assert records(new.url, "legacy-docs") == legacy_records
        cols = {c["name"]: c for c in httpx.get(f"{new.url}{DB}/collections").json()}
        assert cols["legacy-docs"]["metadata"] == {"owner": "team-a"}
        hnsw = cols["legacy-cos"]["configuration_json"]["hnsw"]
        assert (hnsw["space"], hnsw["max_neighbors"]) == ("cosine", 32)
        # Chroma 1.x does not hand back cosine-space vectors bit for bit: compare values
        new_cos = get_all(new.url, cols["legacy-cos"]["id"])
        assert sorted(new_cos["ids"]) == sorted(legacy_cos)
        assert new_cos["documents"] == [legacy_cos[i][1] for i in new_cos["ids"]]
        for rid, emb in zip(new_cos["ids"], new_cos["embeddings"], strict=True):
            want = struct.unpack("<2f", legacy_cos[rid][0])
            assert all(abs(a - b) < 1e-6 for a, b in zip(emb, want, strict=True))
