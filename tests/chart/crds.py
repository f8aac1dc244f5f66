"""Validate custom resources against the vendored Prometheus Operator CRD schemas (crds/README.md)."""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema

CRD_DIR = Path(__file__).parent / "crds"
#: apiVersion/kind of the custom resources we have schemas for.
CUSTOM_KINDS = {("monitoring.coreos.com/v1", p.stem) for p in CRD_DIR.glob("*.json")}


def _strict(schema: Any) -> Any:
    """Forbid fields the schema does not list (as ``kubectl --validate=strict`` does)."""
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items()}
        if (
            "properties" in out
            and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")
        ):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


@cache
def _validator(kind: str) -> jsonschema.protocols.Validator:
    doc = json.loads((CRD_DIR / f"{kind}.json").read_text())
    schema = _strict(copy.deepcopy(doc["openAPIV3Schema"]))
    # metadata is the API server's to check: the CRD lists it as a bare object.
    schema["properties"]["metadata"] = {"type": "object"}
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft7Validator)
    return cls(schema)


def is_custom(obj: dict[str, Any]) -> bool:
    return (obj.get("apiVersion"), obj.get("kind")) in CUSTOM_KINDS


def validate_custom(obj: dict[str, Any]) -> None:
    """Raise ``jsonschema.ValidationError`` unless ``obj`` fits its CRD's schema."""
    _validator(obj["kind"]).validate(obj)
