"""The storage layer under every backup object: one interface, retries as a wrapper, schemes
registered with their own options and credentials."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any, TypeVar

import pytest

from chromactl.secrets import SecretError
from chromactl.storage import (
    Location,
    RetryingStore,
    RetryPolicy,
    StoreError,
    open_store,
    redact_url,
    scheme_of,
    without_retries,
)
from chromactl.storage.schemes import az, gs, s3

T = TypeVar("T")


def test_a_local_store_writes_whole_objects_and_lists_them(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "target"))
    assert store.is_local and not isinstance(store, RetryingStore)  # a full disk does not pass
    store.save("a/b/one.json", b"1")
    store.save("a/two.json", b"22")
    assert store.list("a") == ["b", "two.json"]
    assert store.walk("a") == {"b/one.json": 1, "two.json": 2}
    assert store.load("a/two.json") == b"22" and store.load("a/none") is None
    assert store.exists("a/b") and not store.exists("z")
    # written under a temporary name, then renamed: nothing half-written is ever left
    assert not [p for p in (tmp_path / "target").rglob(".tmp-*")]
    store.remove(["a/two.json", "a/already-gone"])
    store.remove_tree("a/b")
    assert store.walk("a") == {}
    assert store.save_stream("s/x", lambda fh: fh.write(b"stream")) == 6
    assert store.load_stream("s/x", lambda fh: fh.read()) == b"stream"


def test_temporary_files_of_an_upload_are_not_listed_as_objects(tmp_path: Path) -> None:
    store = open_store(str(tmp_path))
    (tmp_path / "chunks" / "ab").mkdir(parents=True)
    (tmp_path / "chunks" / "ab" / ".tmp-abcd-1234").write_bytes(b"half")
    store.save("chunks/ab/abcd", b"whole")
    assert store.walk("chunks") == {"ab/abcd": 5}


def test_every_scheme_is_registered_by_its_names() -> None:
    assert scheme_of("/backups").name == scheme_of("file:///backups").name == "file"
    assert scheme_of("s3://b/p") is scheme_of("s3a://b/p") is s3.S3
    assert scheme_of("gs://b/p") is scheme_of("gcs://b/p") is gs.GS
    assert scheme_of("az://c/p") is az.AZ
    with pytest.raises(
        StoreError, match=r"unknown storage scheme ftp:// \(known: .*s3://.*or a path\)"
    ) as err:
        scheme_of("ftp://user:pw@host/x")
    assert "pw" not in str(err.value) and err.value.exit_code == 2


def test_urls_lose_their_credentials_in_messages() -> None:
    assert redact_url("s3://key:secret@bucket/p") == "s3://bucket/p"
    assert redact_url("/plain/path") == "/plain/path"


def test_s3_takes_its_endpoint_region_timeouts_and_own_credentials(tmp_path: Path) -> None:
    (tmp_path / "AWS_ACCESS_KEY_ID").write_text("the-key\n")
    (tmp_path / "AWS_SECRET_ACCESS_KEY").write_text("the-secret")
    (tmp_path / "UNRELATED").write_text("ignored")
    location = Location("s3://b/p", endpoint_url="http://minio:9000", region="eu-west-1", io_timeout_s=7)
    credentials = {"AWS_ACCESS_KEY_ID": "the-key", "AWS_SECRET_ACCESS_KEY": "the-secret"}
    options = s3.client_options(location, credentials)
    assert options["endpoint_url"] == "http://minio:9000"
    assert options["client_kwargs"] == {"region_name": "eu-west-1"}
    assert options["config_kwargs"]["read_timeout"] == 7
    assert options["config_kwargs"]["retries"]["max_attempts"] == 1  # the wrapper retries
    assert (options["key"], options["secret"]) == ("the-key", "the-secret")


def test_credentials_go_to_the_client_and_never_into_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from chromactl.storage.opening import credentials_for

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "AWS_ACCESS_KEY_ID").write_text("from-file")
    (tmp_path / "AWS_SECRET_ACCESS_KEY").write_text("secret-from-file")
    (tmp_path / "..data").mkdir()  # what a mounted Secret also holds
    found = credentials_for(s3.S3, tmp_path)
    assert found == {"AWS_ACCESS_KEY_ID": "from-file", "AWS_SECRET_ACCESS_KEY": "secret-from-file"}
    assert "AWS_ACCESS_KEY_ID" not in os.environ
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "from-env")  # a variable already set wins
    assert "AWS_ACCESS_KEY_ID" not in credentials_for(s3.S3, tmp_path)
    with pytest.raises(SecretError, match="does not exist"):
        credentials_for(s3.S3, tmp_path / "missing")


def test_gs_and_az_refuse_s3_settings_and_take_their_own_credentials() -> None:
    with pytest.raises(StoreError, match="region is an S3 setting"):
        gs.client_options(Location("gs://b/p", region="eu"), {})
    key = gs.client_options(Location("gs://b/p"), {"GOOGLE_APPLICATION_CREDENTIALS": '{"type": "x"}'})
    assert key["token"] == {"type": "x"}
    path = gs.client_options(Location("gs://b/p"), {"GOOGLE_APPLICATION_CREDENTIALS": "/keys/sa.json"})
    assert path["token"] == "/keys/sa.json"
    with pytest.raises(StoreError, match="account_host"):
        az.client_options(Location("az://c/p", endpoint_url="http://x"), {})
    assert az.client_options(Location("az://c/p"), {"AZURE_STORAGE_CONNECTION_STRING": "cs"}) == {
        "connection_string": "cs"
    }


class Flaky:
    """A store whose first ``failures`` calls fail with a connection error."""

    url = "memory://flaky"
    is_local = False

    def __init__(self, failures: int, error: Exception | None = None) -> None:
        self.failures = failures
        self.calls = 0
        self.error = error or ConnectionError("connection reset by peer")

    def _call(self) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error

    def load(self, key: str, *, what: str = "") -> bytes | None:
        self._call()
        return b"data"

    def remove(self, keys: Sequence[str], *, what: str = "") -> None:
        self._call()

    def load_stream(self, key: str, consume: Callable[[IO[bytes]], T], *, what: str = "") -> T:
        self._call()
        raise NotImplementedError

    def __getattr__(self, name: str) -> Any:
        raise NotImplementedError(name)


def test_the_wrapper_retries_transient_errors_with_backoff() -> None:
    inner = Flaky(failures=2)
    store = RetryingStore(inner, RetryPolicy(attempts=3, backoff_s=0.01, time_limit_s=10), "memory://flaky")  # type: ignore[arg-type]
    assert store.load("k") == b"data" and inner.calls == 3


def test_the_wrapper_gives_up_naming_the_operation_and_the_limits() -> None:
    inner = Flaky(failures=10)
    store = RetryingStore(inner, RetryPolicy(attempts=3, backoff_s=0.01, time_limit_s=10), "s3://b/p")  # type: ignore[arg-type]
    with pytest.raises(StoreError) as err:
        store.load("chunks/ab/abcd", what="download chunk abcd")
    message = str(err.value)
    assert "object storage at s3://b/p failed to download chunk abcd: ConnectionError" in message
    assert "gave up after 3 attempts" in message and "backup.retry_attempts=3" in message
    assert inner.calls == 3


def test_permanent_errors_are_not_retried() -> None:
    inner = Flaky(failures=10, error=PermissionError("access denied"))
    store = RetryingStore(inner, RetryPolicy(attempts=5, backoff_s=0.01), "s3://b/p")  # type: ignore[arg-type]
    with pytest.raises(PermissionError):
        store.load("k")
    assert inner.calls == 1


def test_without_retries_is_the_store_under_the_wrapper() -> None:
    inner = Flaky(failures=1)
    store = RetryingStore(inner, RetryPolicy(attempts=5, backoff_s=0.01), "s3://b/p")  # type: ignore[arg-type]
    with pytest.raises(ConnectionError):
        without_retries(store).remove(["k"])
    assert inner.calls == 1


def test_a_remote_store_is_wrapped_and_bounded_in_time() -> None:
    store = open_store("memory://bounded/x", retry=RetryPolicy(attempts=2, time_limit_s=0.3))
    assert isinstance(store, RetryingStore)
    store.save("k", b"v")
    stuck = threading.Event()
    with pytest.raises(StoreError, match=r"did not finish to read k within backup\.op_timeout_s=0\.3s"):
        store.load_stream("k", lambda fh: stuck.wait(10), what="read k")


def test_a_missing_backend_package_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real_import = builtins.__import__

    def no_adlfs(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.startswith("adlfs"):
            raise ImportError("No module named 'adlfs'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_adlfs)
    with pytest.raises(StoreError, match="pip install adlfs"):
        open_store("az://container/prefix")
