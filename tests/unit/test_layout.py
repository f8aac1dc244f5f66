"""The package layout: the gateway and backups are siblings, the pod is where they meet."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"


def _module(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """The chromactl modules ``path`` imports (relative imports resolved)."""
    package = _module(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            name = ".".join([*base, node.module] if node.module else base)
            found.add(name)
            found |= {f"{name}.{a.name}" for a in node.names}
    return {m for m in found if m == "chromactl" or m.startswith("chromactl.")}


GRAPH = {_module(p): _imports(p) for p in (SRC / "chromactl").rglob("*.py")}


def reachable(start: str) -> set[str]:
    """Every chromactl module that importing ``start`` imports, directly or not."""
    seen: set[str] = set()
    todo = [start]
    while todo:
        mod = todo.pop()
        for dep in GRAPH.get(mod, ()):
            if dep in GRAPH and dep not in seen:
                seen.add(dep)
                todo.append(dep)
    return seen


def _package(name: str) -> list[str]:
    return sorted(m for m in GRAPH if m == f"chromactl.{name}" or m.startswith(f"chromactl.{name}."))


@pytest.mark.parametrize(("package", "forbidden"), [("gateway", "backup"), ("backup", "gateway")])
def test_gateway_and_backup_do_not_import_each_other(package: str, forbidden: str) -> None:
    for module in _package(package):
        leaks = sorted(
            m for m in reachable(module) if m.startswith((f"chromactl.{forbidden}", "chromactl.pod"))
        )
        assert not leaks, f"{module} imports {leaks}"


def test_the_pod_composes_both() -> None:
    pod = reachable("chromactl.pod")
    assert "chromactl.gateway.app" in pod and "chromactl.backup.operations.service" in pod


def test_the_agent_api_contract_stands_alone() -> None:
    assert {m.split(".")[1] for m in reachable("chromactl.agentapi")} <= {"agentapi", "errors"}


def test_the_graph_is_read() -> None:
    """The checks above read real imports: a known edge is present."""
    assert "chromactl.gateway.hold_gate" in GRAPH["chromactl.gateway.app"]
    assert "chromactl.agentapi.contract" in reachable("chromactl.backup.operations.service")


def test_the_storage_layer_depends_on_nothing_of_backup() -> None:
    for module in _package("storage"):
        above = {m.split(".")[1] for m in reachable(module)} - {"storage"}
        assert above <= {"secrets", "errors"}, f"{module} reaches {sorted(above)}"


def _third_party(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def test_only_the_storage_layer_speaks_fsspec() -> None:
    speaking = sorted(
        _module(p)
        for p in (SRC / "chromactl").rglob("*.py")
        if {"fsspec", "s3fs", "gcsfs", "adlfs"} & _third_party(p)
    )
    assert speaking and all(m.startswith("chromactl.storage.") for m in speaking), speaking


def test_every_backup_layer_imports_only_the_layers_below_it() -> None:
    order = ["repository", "snapshot", "continuous", "recovery", "operations", "cli"]
    for i, layer in enumerate(order):
        for module in _package(f"backup.{layer}"):
            higher = {
                m.split(".")[2]
                for m in GRAPH[module]
                if m.startswith("chromactl.backup.") and m.split(".")[2] in order[i + 1 :]
            }
            assert not higher, f"{module} imports the layer(s) above it: {sorted(higher)}"
