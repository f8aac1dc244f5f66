"""Chroma 0.4-0.6 clients through the gateway in front of Chroma 1.x (docs/legacy-clients.md).

The real old clients (the 0.4.14, 0.5.23 and 0.6.3 venvs ``make test`` builds, and npm
``chromadb`` 1.10 from tests/gateway/js) run one app's flow (``legacy_flow.py``: every
operation of the docs' matrix) through the gateway, and the same flow against the Chroma each
was made for (its own server, from its venv): the same ids, documents, metadatas, embeddings,
query results (distances within 1e-5) and exceptions. The JavaScript client is held to the
0.6.3 server's answers.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from .conftest import ADMIN_TOKEN, TENANT_B_TOKEN, token_config
from .helpers import Chroma, RunningGateway, chroma_0x_python, run_chroma_0x, run_gateway, write_secret

ROOT = Path(__file__).resolve().parents[2]
FLOW = Path(__file__).with_name("legacy_flow.py")
MOVED_TOKEN = "ck_moved-to-a-1x-client"
V2_CLIENTS = ["0.5.23", "0.6.3"]


def run_flow(python: Path, url: str, token: str = ADMIN_TOKEN) -> dict[str, Any]:
    host, port = url.removeprefix("http://").split(":")
    done = subprocess.run(
        [str(python), str(FLOW), host, port, token], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    found: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return found


def assert_same(got: Any, want: Any, where: str = "") -> None:
    """Equal, floats within 1e-5 (the HNSW of 1.x and of 0.6 may differ in the last bits)."""
    if isinstance(want, float) and isinstance(got, (int, float)):
        assert abs(got - want) <= 1e-5, f"{where}: {got} != {want}"
    elif isinstance(want, dict) and isinstance(got, dict):
        assert set(got) == set(want), f"{where}: keys {sorted(got)} != {sorted(want)}"
        for key in want:
            assert_same(got[key], want[key], f"{where}.{key}")
    elif isinstance(want, list) and isinstance(got, list):
        assert len(got) == len(want), f"{where}: {got} != {want}"
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            assert_same(g, w, f"{where}[{i}]")
    else:
        assert got == want, f"{where}: {got!r} != {want!r}"


@pytest.fixture(scope="module")
def audited_gateway(
    chroma: Chroma, secrets_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[RunningGateway, Path]]:
    audit = tmp_path_factory.mktemp("legacy-audit") / "audit.log"
    with run_gateway(token_config(chroma, secrets_dir, audit={"file": str(audit), "reads": True})) as gw:
        yield gw, audit


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """Each client's flow against its own Chroma (a fresh server each)."""
    out = {}
    for version in ["0.4.14", *V2_CLIENTS]:
        with run_chroma_0x(version, tmp_path_factory.mktemp(f"ref-{version}")) as server:
            out[version] = run_flow(chroma_0x_python(version), server.url)
    return out


@pytest.mark.parametrize("version", ["0.4.14", *V2_CLIENTS])
def test_an_old_client_sees_through_the_gateway_what_its_own_chroma_shows_it(
    audited_gateway: tuple[RunningGateway, Path], reference: dict[str, dict[str, Any]], version: str
) -> None:
    """0.4's errors included: the ValueError text its own server answered, raised by its
    client as a plain exception."""
    gw, _ = audited_gateway
    got = run_flow(chroma_0x_python(version), gw.url)
    want = reference[version]
    assert got["version"] == version
    assert "error" not in want["query"], want  # the reference flow itself ran
    for step in want:
        if step != "version":
            assert_same(got[step], want[step], step)


#: What the JavaScript client of those years raises for these against 1.x's answers, which pass
#: untouched (it cannot be told from the 1.x JavaScript client): a 404 and a 409. (Against a 0.5
#: or 0.6 server it raised InvalidCollectionError for the first.)
JS_ERRORS = {"get_missing": "ChromaNotFoundError", "create_taken": "ChromaUniqueError"}


def test_the_javascript_client_of_those_years_works_through_the_gateway(
    audited_gateway: tuple[RunningGateway, Path], reference: dict[str, dict[str, Any]], js_dir: Path
) -> None:
    """npm chromadb 1.10 runs the same flow: the same data as the Python 0.6 client gets."""
    gw, _ = audited_gateway
    got = run_js_flow(js_dir, gw.url, "chromadb-1")
    want = reference["0.6.3"]
    for step in want:
        if step in ("version", "use_deleted", "wrong_dimension"):  # not in the JavaScript flow
            continue
        if step in JS_ERRORS:
            assert got[step]["error"] == JS_ERRORS[step], got[step]
        elif step == "peek":  # the JS client's peek leaves the embeddings out
            for key in ("ids", "documents", "metadatas"):
                assert_same(got[step]["result"][key], want[step]["result"][key], f"peek.{key}")
        else:
            assert_same(got[step], want[step], step)


def run_js_flow(js_dir: Path, url: str, package: str) -> dict[str, Any]:
    done = subprocess.run(
        ["node", str(js_dir / "legacy_flow.mjs"), url, ADMIN_TOKEN, package],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    found: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return found


def test_the_v1_javascript_client_sees_through_the_gateway_what_chroma_0_4_shows_it(
    audited_gateway: tuple[RunningGateway, Path], js_dir: Path, tmp_path: Path
) -> None:
    """npm chromadb 1.8 (``/api/v1`` with tenant and database parameters) runs the same flow
    through the gateway and against Chroma 0.4.14, whose v1 the gateway answers as: the same
    data, and the same errors (0.4's text)."""
    gw, _ = audited_gateway
    with run_chroma_0x("0.4.14", tmp_path / "ref") as server:
        want = run_js_flow(js_dir, server.url, "chromadb-18")
    assert "error" not in want["query"], want  # the reference flow itself ran
    got = run_js_flow(js_dir, gw.url, "chromadb-18")
    assert set(got) == set(want)
    for step in want:
        assert_same(got[step], want[step], step)


#: What each client raises for a credential its server refuses: 0.5 and 0.6 servers answered
#: ``AuthError`` (their ``ChromaAuthError``); a 0.4 client raises any error it has no class for
#: as a plain exception.
AUTH_ERRORS = {
    "0.4.14": "builtins.Exception",
    "0.5.23": "chromadb.errors.ChromaAuthError",
    "0.6.3": "chromadb.errors.ChromaAuthError",
}
WRONG_TOKEN = """
import sys, chromadb
from chromadb.config import Settings
host, port = sys.argv[1], sys.argv[2]
try:
    client = chromadb.HttpClient(host=host, port=port, headers={"Authorization": "Bearer ck_wrong"},
                                 settings=Settings(anonymized_telemetry=False))
    client.list_collections()
except Exception as exc:
    print(f"{type(exc).__module__}.{type(exc).__name__}")
"""


@pytest.mark.parametrize("version", sorted(AUTH_ERRORS))
def test_an_old_client_with_a_wrong_credential_raises_its_own_auth_error(
    audited_gateway: tuple[RunningGateway, Path], version: str
) -> None:
    gw, _ = audited_gateway
    host, port = gw.url.removeprefix("http://").split(":")
    done = subprocess.run(
        [str(chroma_0x_python(version)), "-c", WRONG_TOKEN, host, port],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.stdout.strip().splitlines()[-1:] == [AUTH_ERRORS[version]], done.stdout + done.stderr[-2000:]


def test_a_1x_client_is_answered_as_chroma_answers_it(
    chroma: Chroma, audited_gateway: tuple[RunningGateway, Path]
) -> None:
    gw, audit = audited_gateway
    python = ROOT / ".venv" / "bin" / "python"
    through = run_flow(python, gw.url)
    direct = run_flow(python, chroma.url)
    assert through == direct
    assert "hnsw_configuration" not in json.dumps(through)
    lines = [json.loads(line) for line in audit.read_text().splitlines()]
    # its requests are not taken for an old client's (the 1.x client names itself)
    created = [
        line for line in lines if line["operation"] == "create_collection" and "client_api" not in line
    ]
    assert created, "the 1.x client's create_collection is in the audit log without client_api"


def test_the_audit_log_and_a_metric_say_which_credentials_use_old_clients(
    audited_gateway: tuple[RunningGateway, Path],
) -> None:
    gw, audit = audited_gateway
    run_flow(chroma_0x_python("0.4.14"), gw.url)
    run_flow(chroma_0x_python("0.6.3"), gw.url)
    lines = [json.loads(line) for line in audit.read_text().splitlines()]
    by_api = {line.get("client_api") for line in lines if line["principal"]["name"] == "admin"}
    assert {"v1", "v2-0.x"} <= by_api
    v1 = next(
        line for line in lines if line.get("client_api") == "v1" and line["operation"] == "collection_add"
    )
    # the 1.x request Chroma applied: its path, tenant and database
    assert v1["path"].startswith("/api/v2/tenants/default_tenant/databases/default_database/collections/")
    assert v1["tenant"] == "default_tenant" and v1["records"] == 4
    metrics = httpx.get(gw.metrics_url or "", timeout=5).text
    for api in ("v1", "v2-0.x"):
        assert (
            f'chromactl_gateway_legacy_client_requests_total{{client_api="{api}",credential="admin"}}'
            in metrics
        )


def test_a_v1_tenant_parameter_is_checked_as_a_path_is(audited_gateway: tuple[RunningGateway, Path]) -> None:
    gw, _ = audited_gateway
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    tenant_b = {"Authorization": f"Bearer {TENANT_B_TOKEN}"}
    httpx.post(f"{gw.url}/api/v2/tenants", json={"name": "tenant-b"}, headers=admin, timeout=10)
    httpx.post(
        f"{gw.url}/api/v2/tenants/tenant-b/databases", json={"name": "main"}, headers=admin, timeout=10
    )
    own = httpx.get(
        f"{gw.url}/api/v1/collections?tenant=tenant-b&database=main", headers=tenant_b, timeout=10
    )
    assert own.status_code == 200 and isinstance(own.json(), list)
    other = httpx.get(
        f"{gw.url}/api/v1/collections?tenant=default_tenant&database=default_database",
        headers=tenant_b,
        timeout=10,
    )
    assert other.status_code == 403 and other.json()["error"] == "AuthorizationError"
    # a name that would add path segments is refused, not forwarded
    odd = httpx.get(f"{gw.url}/api/v1/collections?tenant=tenant-b/databases/x", headers=admin, timeout=10)
    assert odd.status_code == 400 and "no '/'" in odd.json()["message"]


def test_a_v1_call_without_a_1x_counterpart_says_what_to_do(
    audited_gateway: tuple[RunningGateway, Path],
) -> None:
    gw, _ = audited_gateway
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    answer = httpx.post(f"{gw.url}/api/v1/collections/c1/create_index", headers=admin, timeout=10)
    assert answer.status_code == 400 and answer.json()["error"] == "InvalidArgumentError"
    assert (
        "POST /api/v1/collections/c1/create_index has no Chroma 1.x counterpart" in answer.json()["message"]
    )
    assert "chromadb>=1.0" in answer.json()["message"]


def test_a_credential_set_to_1x_clients_only_is_refused_an_old_clients_requests(
    chroma: Chroma, secrets_dir: Path
) -> None:
    config = token_config(chroma, secrets_dir)
    auth = config["gateway"]["auth"]  # type: ignore[index]
    path = write_secret(secrets_dir, "moved.token", MOVED_TOKEN)
    auth["token"]["credentials"].append(
        {"name": "moved", "token_file": str(path), "role": "writer", "legacy_clients": False}
    )
    moved = {"Authorization": f"Bearer {MOVED_TOKEN}"}
    with run_gateway(config) as gw:
        old = httpx.get(f"{gw.url}/api/v1/collections", headers=moved, timeout=10)
        assert old.status_code == 403 and old.json()["error"] == "AuthorizationError"
        assert "legacy_clients: false" in old.json()["message"] and "chromadb>=1.0" in old.json()["message"]
        listed = f"{gw.url}/api/v2/tenants/default_tenant/databases/default_database/collections"
        old_v2 = httpx.get(listed, headers={**moved, "User-Agent": "python-httpx/0.27.2"}, timeout=10)
        assert old_v2.status_code == 403
        # its 1.x client is served, and another credential's old client too
        assert httpx.get(listed, headers={**moved, "User-Agent": "curl/8.5.0"}, timeout=10).status_code == 200
        admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        assert httpx.get(f"{gw.url}/api/v1/collections", headers=admin, timeout=10).status_code == 200


def test_with_legacy_clients_off_old_clients_get_what_chroma_answers(
    chroma: Chroma, secrets_dir: Path
) -> None:
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    with run_gateway(token_config(chroma, secrets_dir, legacy_clients=False)) as gw:
        assert httpx.get(f"{gw.url}/api/v1/heartbeat", headers=admin, timeout=10).status_code == 410
        listed = httpx.get(
            f"{gw.url}/api/v2/tenants/default_tenant/databases/default_database/collections",
            headers={**admin, "User-Agent": "python-httpx/0.27"},
            timeout=10,
        )
        assert listed.status_code == 200 and "hnsw_configuration" not in listed.text
