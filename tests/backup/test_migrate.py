"""Chroma 0.x data directories under Chroma 1.x, and `chromactl migrate snapshot`.

Each directory is written by a real Chroma 0.x (the venvs `make legacy-chroma` makes: 0.4.14,
the amikos chart's first 0.4 default; 0.5.23; 0.6.3), then opened by this project's Chroma 1.x.
What is shown: 1.x opens every one in place with the records intact; 0.x cannot read a
directory 1.x has opened (so the snapshot before is what makes going back possible); the
snapshot is taken once, restores, and 0.x reads the restored directory again.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from chromactl.backup.recovery.restore import restore
from chromactl.backup.repository.repository import repository_of
from chromactl.backup.snapshot.migrate import LOCAL_REPO, generation, snapshot_before_upgrade
from chromactl.config import Settings
from chromactl.errors import ChromactlError
from tests.gateway.helpers import chroma_0x_python

VERSIONS = ["0.4.14", "0.5.23", "0.6.3"]
RECORDS = 1200

WRITE = """
import json, random, sys, chromadb
client = chromadb.PersistentClient(path=sys.argv[1])
col = client.get_or_create_collection("docs", metadata={"hnsw:space": "cosine"})
rnd = random.Random(11)
for start in range(0, RECORDS, 300):
    ids = [f"id-{i}" for i in range(start, start + 300)]
    col.add(ids=ids, embeddings=[[rnd.random() for _ in range(8)] for _ in ids],
            documents=[f"doc {i}" for i in ids],
            metadatas=[{"n": int(i[3:])} for i in ids])
""".replace("RECORDS", str(RECORDS))

READ = """
import json, sys, chromadb
client = chromadb.PersistentClient(path=sys.argv[1])
col = client.get_collection("docs")
got = col.get(include=["documents", "metadatas", "embeddings"])
rows = sorted(zip(got["ids"], got["documents"], [m["n"] for m in got["metadatas"]],
                  [[round(float(x), 5) for x in e] for e in got["embeddings"]]))
nearest = col.query(query_embeddings=[rows[7][3]], n_results=1)["ids"][0]
if len(sys.argv) > 2:
    col.add(ids=["written-by-1x"], embeddings=[[0.5] * 8], documents=["new"])
out = {"version": chromadb.__version__, "count": col.count(), "rows": rows, "nearest": nearest}
print(json.dumps(out))
"""


def run(python: Path | str, script: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"ANONYMIZED_TELEMETRY": "False", "PATH": "/usr/bin:/bin", "HOME": "/tmp"}
    return subprocess.run(
        [str(python), "-c", script, *args], capture_output=True, text=True, env=env, timeout=300
    )


def read(python: Path | str, data: Path, *, write: bool = False) -> dict[str, object]:
    done = run(python, READ, str(data), *(["write"] if write else []))
    assert done.returncode == 0, done.stderr[-2000:]
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


@pytest.fixture(scope="module", params=VERSIONS)
def written(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    version = request.param
    data = tmp_path_factory.mktemp(f"chroma-{version}") / "data"
    done = run(chroma_0x_python(version), WRITE, str(data))
    assert done.returncode == 0, done.stderr[-2000:]
    return version, data


def copy_of(data: Path, tmp_path: Path) -> Path:
    target = tmp_path / "data"
    subprocess.run(["cp", "-a", str(data), str(target)], check=True)
    return target


def test_chroma_1x_opens_each_0x_directory_in_place(written: tuple[str, Path], tmp_path: Path) -> None:
    version, original = written
    data = copy_of(original, tmp_path)
    before = read(chroma_0x_python(version), data)
    assert before["version"] == version and before["count"] == RECORDS
    assert generation(data) == "0.x"
    after = read(sys.executable, data, write=True)  # this project's Chroma 1.x
    assert str(after["version"]).startswith("1.")
    assert after["rows"] == before["rows"] and after["nearest"] == before["nearest"]
    assert after["count"] == RECORDS + 1
    assert generation(data) == "1.x"


def test_0x_cannot_read_what_1x_converted_but_the_snapshot_brings_it_back(
    written: tuple[str, Path], tmp_path: Path
) -> None:
    version, original = written
    data = copy_of(original, tmp_path)
    before = read(chroma_0x_python(version), data)
    taken = snapshot_before_upgrade(Settings(), data)
    assert taken.outcome == "taken" and taken.repository == (data / LOCAL_REPO).as_uri()
    read(sys.executable, data, write=True)
    again = snapshot_before_upgrade(Settings(), data)
    assert again.outcome == "not-needed" and again.generation == "1.x"
    if version == "0.4.14":  # 0.4 fails on the tables 1.x changed; 0.5 and 0.6 still read them
        assert run(chroma_0x_python(version), READ, str(data)).returncode != 0
    # going back: restore the snapshot, Chroma 0.x reads exactly what it wrote
    assert taken.repository is not None
    repo = repository_of(Settings().backup, url=taken.repository)
    manifest = repo.resolve(taken.snapshot_id or "")
    assert manifest.chroma_version == "0" and [(c.name, c.count) for c in manifest.collections] == [
        ("docs", RECORDS)
    ]
    restored = restore(repo, data, force=True, target_chroma_version=version)
    assert restored.snapshot_id == taken.snapshot_id
    assert read(chroma_0x_python(version), data) == before
    assert (data / LOCAL_REPO).is_dir()  # the snapshot stays with the directory


def test_a_restart_before_1x_ran_does_not_snapshot_twice(written: tuple[str, Path], tmp_path: Path) -> None:
    _, original = written
    data = copy_of(original, tmp_path)
    first = snapshot_before_upgrade(Settings(), data)
    second = snapshot_before_upgrade(Settings(), data)
    assert second.outcome == "already-taken" and second.snapshot_id == first.snapshot_id
    assert first.repository is not None
    assert len(repository_of(Settings().backup, url=first.repository).snapshots()) == 1


def test_the_snapshot_goes_to_the_backup_target_when_one_is_set(
    written: tuple[str, Path], tmp_path: Path
) -> None:
    _, original = written
    data = copy_of(original, tmp_path)
    target = (tmp_path / "backups").as_uri()
    taken = snapshot_before_upgrade(Settings(), data, repo=target)
    assert taken.repository == target
    assert [s.snapshot_id for s in repository_of(Settings().backup, url=target).snapshots()] == [
        taken.snapshot_id
    ]
    assert not (data / LOCAL_REPO / taken.snapshot_id).exists()  # only the record is kept locally


def test_an_empty_or_1x_directory_needs_nothing(tmp_path: Path) -> None:
    assert snapshot_before_upgrade(Settings(), tmp_path).outcome == "not-needed"
    assert not (tmp_path / LOCAL_REPO).exists()


def test_a_volume_without_room_stops_before_chroma_starts(
    written: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    _, original = written
    data = copy_of(original, tmp_path)
    full = shutil.disk_usage(data)._replace(free=10)
    monkeypatch.setattr(shutil, "disk_usage", lambda _: full)
    with pytest.raises(ChromactlError, match=r"set migrate\.snapshot=false"):
        snapshot_before_upgrade(Settings(), data)
    assert generation(data) == "0.x"


def test_not_a_chroma_database_is_named(tmp_path: Path) -> None:
    (tmp_path / "chroma.sqlite3").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(ChromactlError, match="not a Chroma database"):
        generation(tmp_path)
