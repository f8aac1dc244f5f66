"""The objects a render produced: parsed manifests, by kind and name; label selection."""

from __future__ import annotations

import base64
from collections.abc import Iterable
from dataclasses import dataclass, field

import yaml

from tests.podrunner.common import Obj, PodError


@dataclass
class Store:
    """The objects a render produced, by kind and name."""

    namespace: str = "default"
    objects: dict[tuple[str, str], Obj] = field(default_factory=dict)
    notes: str = ""

    def add(self, obj: Obj) -> None:
        kind, name = obj.get("kind"), obj.get("metadata", {}).get("name")
        if not kind or not name:
            raise PodError(f"manifest without kind or name: {obj!r:.200}")
        self.objects[(kind, name)] = obj

    def get(self, kind: str, name: str) -> Obj | None:
        return self.objects.get((kind, name))

    def of_kind(self, kind: str) -> list[Obj]:
        return [o for (k, _), o in sorted(self.objects.items()) if k == kind]

    def data(self, kind: str, name: str) -> dict[str, bytes] | None:
        obj = self.get(kind, name)
        if obj is None:
            return None
        out = {k: str(v).encode() for k, v in (obj.get("stringData") or {}).items()}
        if kind == "Secret":
            out |= {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
        else:
            out |= {k: str(v).encode() for k, v in (obj.get("data") or {}).items()}
            out |= {k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()}
        return out


def parse_manifests(rendered: dict[str, str] | Iterable[Obj], namespace: str) -> Store:
    store = Store(namespace)
    if isinstance(rendered, dict):
        docs: list[Obj] = []
        for path, text in sorted(rendered.items()):
            if path.endswith("NOTES.txt"):
                store.notes = text
                continue
            try:
                docs += [d for d in yaml.safe_load_all(text) if d]
            except yaml.YAMLError as exc:
                raise PodError(f"{path} is not valid YAML: {exc}") from None
    else:
        docs = list(rendered)
    for doc in docs:
        store.add(doc)
    return store


def hook_kinds(obj: Obj) -> set[str]:
    raw = (obj.get("metadata", {}).get("annotations") or {}).get("helm.sh/hook", "")
    return {h.strip() for h in raw.split(",") if h.strip()}


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())
