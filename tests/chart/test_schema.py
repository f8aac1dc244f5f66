"""values.schema.json: every value typed, and a wrong value fails at install naming its key."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from tests.chart.helm import CHART_DIR, chart, names_key, render, render_error

SCHEMA = json.loads((CHART_DIR / "values.schema.json").read_text())
VALUES = yaml.safe_load((CHART_DIR / "values.yaml").read_text())


def leaves(values: dict[str, Any], schema: dict[str, Any], path: str = ""):
    for key, value in values.items():
        sub = schema["properties"].get(key)
        assert sub is not None, f"{path}{key} has no schema"
        if "properties" in sub and isinstance(value, dict):
            yield from leaves(value, sub, f"{path}{key}.")
        else:
            yield f"{path}{key}", sub


def test_every_value_has_a_typed_schema_and_description() -> None:
    found = list(leaves(VALUES, SCHEMA))
    assert len(found) > 60
    for key, sub in found:
        assert sub.get("description"), f"{key} has no description"
        assert "type" in sub or "enum" in sub, f"{key} has no type"


def test_defaults_pass_the_schema() -> None:
    chart().validate_schema(VALUES)


@pytest.mark.parametrize(
    ("values", "key"),
    [
        ({"replicaCount": 2}, "replicaCount"),
        ({"replicaCount": -1}, "replicaCount"),
        ({"chromadb": {"allowReset": "yes"}}, "chromadb.allowReset"),
        ({"chromadb": {"isPersistent": "maybe"}}, "chromadb.isPersistent"),
        ({"chromadb": {"serverHttpPort": 70000}}, "chromadb.serverHttpPort"),
        ({"chromadb": {"serverHttpPort": "8000"}}, "chromadb.serverHttpPort"),
        ({"chromadb": {"dataVolumeSize": "lots"}}, "chromadb.dataVolumeSize"),
        ({"chromadb": {"apiVersion": "latest"}}, "chromadb.apiVersion"),
        ({"chromadb": {"auth": {"type": "kerberos"}}}, "chromadb.auth.type"),
        ({"chromadb": {"auth": {"token": {"tokenHeader": "X-Api-Key"}}}}, "chromadb.auth.token.tokenHeader"),
        (
            {"chromadb": {"dataVolumeRetention": {"whenDeleted": "Keep"}}},
            "chromadb.dataVolumeRetention.whenDeleted",
        ),
        ({"chromadb": {"corsAllowOrigins": "*"}}, "chromadb.corsAllowOrigins"),
        ({"image": {"pullPolicy": "Sometimes"}}, "image.pullPolicy"),
        ({"image": {"digest": "abc"}}, "image.digest"),
        ({"service": {"type": "ExternalName"}}, "service.type"),
        (
            {"ingress": {"hosts": [{"host": "a", "paths": [{"path": "/", "pathType": "Regex"}]}]}},
            "ingress.hosts",
        ),
        ({"resources": "lots"}, "resources"),
        ({"startupProbe": {"failureThreshold": 0}}, "startupProbe.failureThreshold"),
    ],
)
def test_bad_value_fails_naming_the_key(values: dict[str, Any], key: str) -> None:
    message = render_error(values)
    assert names_key(message, key), message


@pytest.mark.parametrize(
    "typo", [{"replicaCont": 1}, {"chromadb": {"allowRest": True}}, {"image": {"tags": "1"}}]
)
def test_unknown_keys_are_rejected(typo: dict[str, Any]) -> None:
    message = render_error(typo)
    leaf = typo
    while isinstance(leaf, dict):
        ((name, leaf),) = leaf.items()
        if not isinstance(leaf, dict):
            break
    assert f"additional properties '{name}' not allowed" in message, message


def test_replica_rule_explains_itself_when_schema_is_skipped(tmp_path) -> None:
    """The schema rejects replicaCount > 1; the template says why and what to do instead
    (what a user sees with `helm install --skip-schema-validation`)."""
    import shutil

    import helm_python

    assert SCHEMA["properties"]["replicaCount"]["maximum"] == 1
    copy = shutil.copytree(CHART_DIR, tmp_path / "chromadb")
    (copy / "values.schema.json").unlink()
    with pytest.raises(helm_python.HelmError) as failure:
        helm_python.Chart.load(copy).render({"replicaCount": 3}, name="chroma")
    assert "single-node Chroma cannot run more than one replica" in str(failure.value)
    assert "Set replicaCount to 1" in str(failure.value)


def test_zero_replicas_stops_chroma() -> None:
    assert render({"replicaCount": 0}).statefulset["spec"]["replicas"] == 0
