"""Authentication through the rendered chart, from client pods, as users run it.

- The seed's documented command, verbatim (only the API path is 1.x's): the token from the
  ``chromadb-auth`` Secret, the header name from ConfigMap
  ``chroma-chromadb-token-auth-config``, for both token headers; ``curl -u`` for basic.
- The commands NOTES.txt prints, run as printed (``kubectl`` answered by a stand-in that
  reads the release's Secret and ConfigMap and port-forwards to the Service), for each
  auth type: NOTES cannot drift from what works.
- No or wrong credentials: 401; a read-only credential (one line of values) writing: 403;
  ``chromadb.auth.existingSecret`` mounted directly (no generated Secret).
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

from tests.e2e.conftest import SERVER_POD, SERVICE, assert_helm_tests_pass, install, render
from tests.podrunner.images import CLIENT_IMAGE
from tests.podrunner.runner import PodRunner

STANDIN = Path(__file__).with_name("kubectl_standin.py")
TOKEN_CONFIGMAP = "chroma-chromadb-token-auth-config"
COLLECTIONS = "/api/v2/tenants/default_tenant/databases/default_database/collections"
#: The seed README's command with the 1.x path, against the Service from a client pod.
SEED_CURL = (
    f'curl -v http://{SERVICE}:8000{COLLECTIONS} -H "${{CHROMA_HEADER_NAME}}: Bearer ${{CHROMA_TOKEN}}"'
)
CODE = "code() { curl -s -o /dev/null -w '%{http_code}' \"$@\"; }"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def secret(name: str, **data: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": "default"},
        "type": "Opaque",
        "data": {k: b64(v) for k, v in data.items()},
    }


def notes_commands(notes: str) -> tuple[list[str], str]:
    """The shell commands (kubectl/export/curl lines) and the Python snippet NOTES prints
    in its authentication part."""
    lines = notes.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("From your machine:"))
    shell: list[str] = []
    python: list[str] = []
    for line in lines[start:]:
        text = line.strip()
        if text.startswith("Check the installation:"):
            break
        if re.match(r"(kubectl|export|curl) ", text):
            shell.append(text)
        elif (python or text.startswith("import ")) and text:
            python.append(line[2:])
    return shell, "\n".join(python)


def shell_script(notes: str) -> str:
    """NOTES' commands as one script: the port-forward in the background, as a user keeps
    it in another terminal; every other line as printed."""
    shell, python = notes_commands(notes)
    out = ["set -eu", 'kubectl() { python3 /opt/kubectl/kubectl_standin.py "$@"; }']
    for cmd in shell:
        if " port-forward " in cmd:
            out += [
                f"{cmd} > /tmp/port-forward.log 2>&1 &",
                "for i in $(seq 50); do grep -q Forwarding /tmp/port-forward.log && break; sleep 0.1; done",
            ]
        else:
            out += [f"echo '== {cmd.split()[0]}'", cmd, "echo"]
    assert python, "NOTES print no Python example"
    out += ["echo '== python'", f"python3 - <<'EOF'\n{python}\nEOF"]
    return "\n".join(out)


def standin_configmap(cluster: PodRunner) -> None:
    """The kubectl stand-in and the release's Secrets and ConfigMaps, as a ConfigMap."""
    objects = {}
    for (kind, name), obj in cluster.store.objects.items():
        if kind in ("Secret", "ConfigMap"):
            objects[f"{kind.lower()}/{name}"] = obj.get("data") or {}
    cluster.apply(
        [
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "kubectl-standin", "namespace": "default"},
                "data": {"kubectl_standin.py": STANDIN.read_text(), "objects.json": json.dumps(objects)},
            }
        ]
    )


def run_sh(cluster: PodRunner, name: str, script: str, env: list[dict[str, Any]] | None = None) -> str:
    """Run ``sh -c script`` in a client pod (the e2e client image: curl, python3 and chromadb);
    its log, after asserting it succeeded."""
    standin_configmap(cluster)
    result = cluster.run_pod(
        {
            "metadata": {"name": name, "labels": {"app": "e2e-client"}},
            "spec": {
                "containers": [
                    {
                        "name": "client",
                        "image": CLIENT_IMAGE,
                        "command": ["sh", "-c", script],
                        "env": [
                            {"name": "ANONYMIZED_TELEMETRY", "value": "False"},
                            {"name": "HOME", "value": "/tmp"},
                            {"name": "KUBECTL_OBJECTS", "value": "/opt/kubectl/objects.json"},
                            *(env or []),
                        ],
                        "volumeMounts": [{"name": "kubectl", "mountPath": "/opt/kubectl"}],
                    }
                ],
                "volumes": [{"name": "kubectl", "configMap": {"name": "kubectl-standin"}}],
            },
        },
        timeout=90,
    )
    logs = result.logs()
    assert result.succeeded, f"client pod {name} failed ({result.error}):\n{script}\n---\n{logs}"
    return logs


def seed_env(secret_name: str) -> list[dict[str, Any]]:
    """CHROMA_TOKEN and CHROMA_HEADER_NAME read from the Secret and the ConfigMap."""
    return [
        {"name": "CHROMA_TOKEN", "valueFrom": {"secretKeyRef": {"name": secret_name, "key": "token"}}},
        {
            "name": "CHROMA_HEADER_NAME",
            "valueFrom": {
                "configMapKeyRef": {"name": TOKEN_CONFIGMAP, "key": "CHROMA_AUTH_TOKEN_TRANSPORT_HEADER"}
            },
        },
    ]


def codes(logs: str) -> dict[str, str]:
    return dict(re.findall(r"^code (\S+) (\d{3})$", logs, re.M))


def assert_notes_work(logs: str) -> None:
    """Every NOTES curl listed the (empty or not) collections; the Python example ran."""
    for part in logs.split("== ")[1:]:
        head, _, body = part.partition("\n")
        if head == "curl":
            answer = body.strip().splitlines()[-1]  # after curl's progress meter
            assert answer.startswith(("[", '{"nanosecond heartbeat"', '{"user_id"')), (
                f"NOTES curl did not get an answer:\n{part}"
            )
        if head == "python":
            # client.heartbeat(): Chroma's clock in nanoseconds.
            assert re.fullmatch(r"\d{19}", body.strip().splitlines()[-1]), (
                f"NOTES Python example failed:\n{part}"
            )
    assert "== curl" in logs and "== python" in logs


def test_token_authorization_seed_command_notes_reader_and_401(cluster: PodRunner) -> None:
    reader_token = "reader-" + "r" * 30
    cluster.apply([secret("chroma-reader", token=reader_token)])
    install(
        cluster,
        {
            "chromadb": {
                "auth": {
                    "credentials": [{"name": "dashboards", "role": "reader", "secretName": "chroma-reader"}]
                }
            }
        },
        gateway=True,
    )
    assert cluster.store.data("ConfigMap", TOKEN_CONFIGMAP) == {
        "CHROMA_AUTH_TOKEN_TRANSPORT_HEADER": b"Authorization"
    }

    logs = run_sh(cluster, "seed-authorization", SEED_CURL, seed_env("chromadb-auth"))
    assert re.search(r"< HTTP/1.1 200", logs), logs
    assert "> Authorization: Bearer " in logs

    url = f"http://{SERVICE}:8000{COLLECTIONS}"
    write = " ".join(["-X", "POST", "-H", "'Content-Type: application/json'", "-d", '\'{"name": "e2e"}\''])
    script = "\n".join(
        [
            CODE,
            f'echo "code none $(code {url})"',
            f"echo \"code wrong $(code {url} -H 'Authorization: Bearer nope')\"",
            f'echo "code wrong-header-name $(code {url} -H "X-Api-Key: $CHROMA_TOKEN")"',
            f'echo "code reader-read $(code {url} -H "Authorization: Bearer $READER")"',
            f'echo "code reader-write $(code {url} {write} -H "Authorization: Bearer $READER")"',
            f'echo "code admin-write $(code {url} {write} -H "Authorization: Bearer $CHROMA_TOKEN")"',
            f'curl -s {url} -H "Authorization: Bearer $READER"',
        ]
    )
    logs = run_sh(
        cluster,
        "credentials",
        script,
        [
            *seed_env("chromadb-auth"),
            {"name": "READER", "valueFrom": {"secretKeyRef": {"name": "chroma-reader", "key": "token"}}},
        ],
    )
    assert codes(logs) == {
        "none": "401",
        "wrong": "401",
        "wrong-header-name": "401",
        "reader-read": "200",
        "reader-write": "403",
        "admin-write": "200",
    }, logs
    assert '"name":"e2e"' in logs.replace(" ", "")  # the reader sees what the admin wrote

    notes = cluster.notes
    assert "Authorization" in notes
    assert_notes_work(run_sh(cluster, "notes-token", shell_script(notes)))


def test_x_chroma_token_with_existing_secret(cluster: PodRunner) -> None:
    token = "existing-" + "e" * 31
    cluster.apply([secret("my-chroma-credentials", token=token)])
    values = {
        "chromadb": {
            "auth": {"existingSecret": "my-chroma-credentials", "token": {"tokenHeader": "X-CHROMA-TOKEN"}}
        }
    }
    # Mounted directly: the chart makes no Secret for the credential (its one Secret is the web
    # console's session key).
    secrets = [name for kind, name in _objects(render(values, gateway=True)) if kind == "Secret"]
    assert all(name.endswith("-console") for name in secrets), secrets
    install(cluster, values, gateway=True)
    assert cluster.store.data("ConfigMap", TOKEN_CONFIGMAP) == {
        "CHROMA_AUTH_TOKEN_TRANSPORT_HEADER": b"X-Chroma-Token"
    }

    # The seed's command verbatim: `X-Chroma-Token: Bearer <token>`.
    logs = run_sh(cluster, "seed-x-chroma-token", SEED_CURL, seed_env("my-chroma-credentials"))
    assert "> X-Chroma-Token: Bearer " in logs
    assert re.search(r"< HTTP/1.1 200", logs), logs
    url = f"http://{SERVICE}:8000{COLLECTIONS}"
    logs = run_sh(
        cluster,
        "x-token-codes",
        "\n".join(
            [
                CODE,
                f'echo "code plain $(code {url} -H "X-Chroma-Token: $CHROMA_TOKEN")"',
                f'echo "code wrong $(code {url} -H "X-Chroma-Token: Bearer nope")"',
            ]
        ),
        seed_env("my-chroma-credentials"),
    )
    assert codes(logs) == {"plain": "200", "wrong": "401"}, logs

    notes = cluster.notes
    assert "secret my-chroma-credentials" in notes
    assert_notes_work(run_sh(cluster, "notes-x-token", shell_script(notes)))


def test_basic_curl_u_and_notes(cluster: PodRunner) -> None:
    pod = install(cluster, {"chromadb": {"auth": {"type": "basic"}}}, gateway=True)
    assert pod.name == SERVER_POD
    data = cluster.store.data("Secret", "chromadb-auth")
    assert data is not None and data["username"] == b"chroma" and len(data["password"]) >= 20
    user, password = data["username"].decode(), data["password"].decode()
    url = f"http://{SERVICE}:8000{COLLECTIONS}"
    logs = run_sh(
        cluster,
        "basic",
        "\n".join(
            [
                CODE,
                f"curl -v -u {user}:{password} {url}",
                "echo",
                f'echo "code none $(code {url})"',
                f'echo "code wrong $(code -u {user}:wrong {url})"',
                f"curl -s -o /dev/null -D - {url}",
            ]
        ),
    )
    assert re.search(r"< HTTP/1.1 200", logs), logs
    assert codes(logs) == {"none": "401", "wrong": "401"}, logs
    assert re.search(r'^www-authenticate: .*Basic realm="chroma"', logs, re.M | re.I), logs

    notes = cluster.notes
    assert 'curl -u "${CHROMA_USER}:${CHROMA_PASSWORD}"' in notes
    assert_notes_work(run_sh(cluster, "notes-basic", shell_script(notes)))


def _objects(rendered: dict[str, str]) -> list[tuple[str, str]]:
    import yaml

    found = []
    for path, text in rendered.items():
        if path.endswith("NOTES.txt"):
            continue
        found += [(d["kind"], d["metadata"]["name"]) for d in yaml.safe_load_all(text) if d]
    return found


def test_oidc_against_a_real_provider(cluster: PodRunner, tmp_path: Path) -> None:
    """npm oidc-provider on the host (reached from pods at the bridge's address), client
    credentials grant; the chart's OIDC values as a user writes them."""
    from tests.gateway.node import ensure_node_modules
    from tests.gateway.oidc_provider import AUDIENCE, get_token, provider, rsa_jwk

    _, jwk = rsa_jwk("e2e")
    with provider(ensure_node_modules(), tmp_path, {"keys": [jwk]}, host=cluster.network.gateway) as issuer:
        install(
            cluster,
            {
                "chromadb": {
                    "auth": {
                        "type": "oidc",
                        "oidc": {
                            "issuer": issuer,
                            "audience": [AUDIENCE],
                            "clockSkewSeconds": 0,
                            "rules": [
                                {"claim": "groups", "value": "chroma-admins", "role": "admin"},
                                {"claim": "groups", "value": "chroma-readers", "role": "reader"},
                            ],
                        },
                    }
                }
            },
            gateway=True,
        )
        admin, reader = get_token(issuer, "admin-client"), get_token(issuer, "reader-client")
        other_audience = get_token(issuer, "admin-client", resource="https://other.test")
        short = get_token(issuer, "short-client")
        url = f"http://{SERVICE}:8000{COLLECTIONS}"
        write = "-X POST -H 'Content-Type: application/json' -d '{\"name\": \"oidc\"}'"
        script = "\n".join(
            [
                CODE,
                "sleep 2",  # the short-lived token (1 s) has expired by now
                f'echo "code admin-write $(code {url} {write} -H "Authorization: Bearer $ADMIN")"',
                f'echo "code reader-read $(code {url} -H "Authorization: Bearer $READER")"',
                f'echo "code reader-write $(code {url} {write} -H "Authorization: Bearer $READER")"',
                f'echo "code other-audience $(code {url} -H "Authorization: Bearer $OTHER")"',
                f'echo "code expired $(code {url} -H "Authorization: Bearer $SHORT")"',
                f'echo "code none $(code {url})"',
                f'curl -s http://{SERVICE}:8000/api/v2/auth/identity -H "Authorization: Bearer $READER"',
                "echo",
            ]
        )
        env = [
            {"name": k, "value": v}
            for k, v in {"ADMIN": admin, "READER": reader, "OTHER": other_audience, "SHORT": short}.items()
        ]
        logs = run_sh(cluster, "oidc", script, env)
        assert codes(logs) == {
            "admin-write": "200",
            "reader-read": "200",
            "reader-write": "403",
            "other-audience": "401",
            "expired": "401",
            "none": "401",
        }, logs
        identity = json.loads(next(line for line in logs.splitlines() if line.startswith('{"user_id"')))
        assert identity == {"user_id": "reader-client", "tenant": "*", "databases": ["*"]}

        notes = cluster.notes
        assert f"access token from {issuer}" in notes
        logs = run_sh(
            cluster,
            "notes-oidc",
            shell_script(notes),
            [{"name": "ACCESS_TOKEN", "value": get_token(issuer, "reader-client")}],
        )
        assert_notes_work(logs)
        assert '{"user_id":"reader-client"' in logs.replace(" ", "")
        assert_helm_tests_pass(cluster)  # with the release's admin token
