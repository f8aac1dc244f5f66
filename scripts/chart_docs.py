"""Generate a chart's values.schema.json and README parameter table from values.yaml.

values.yaml is the single source: each key carries a comment block

    # -- What the key does (one or more lines).
    # @example how to set it
    # @link https://where.to/read/more
    # @schema {"enum": ["a", "b"]}
    key: default

A key whose value is a mapping with documented keys below it is a *section*:
its schema lists those keys and rejects any other (a typo fails at install,
naming the key). Any other key is a *leaf*: its type comes from the default,
refined by ``@schema``. Every section and leaf must be documented.

Usage: python scripts/chart_docs.py CHART_DIR [--check]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

KEY_LINE = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z0-9_.-]+):(?:\s|$)")
TABLE_START = "<!-- values:start -->"
TABLE_END = "<!-- values:end -->"


@dataclass
class Doc:
    """The comment block of one key."""

    description: list[str] = field(default_factory=list)
    examples: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    schema: dict[str, Any] = field(default_factory=dict)

    @property
    def text(self) -> str:
        return " ".join(line.strip() for line in self.description).strip()


class DocError(Exception):
    """values.yaml does not follow the documentation rules."""


def parse_docs(text: str) -> dict[tuple[str, ...], Doc]:
    """Map each documented key path to its comment block."""
    docs: dict[tuple[str, ...], Doc] = {}
    stack: list[tuple[int, str]] = []
    pending: Doc | None = None
    tag = "description"
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped:
            pending = None
            continue
        if stripped.startswith("#"):
            body = stripped[1:].strip()
            if body.startswith("-- "):
                pending, tag = Doc(description=[body[3:]]), "description"
            elif pending is None:
                continue
            elif body.startswith("@example"):
                pending.examples.append(body[len("@example") :].strip())
                tag = "example"
            elif body.startswith("@link"):
                pending.links.append(body[len("@link") :].strip())
                tag = "link"
            elif body.startswith("@schema"):
                try:
                    pending.schema.update(json.loads(body[len("@schema") :]))
                except json.JSONDecodeError as exc:
                    raise DocError(f"line {number}: @schema is not JSON: {exc}") from None
                tag = "schema"
            elif tag == "description":
                pending.description.append(body)
            continue
        match = KEY_LINE.match(line)
        if not match or stripped.startswith("-"):
            pending = None
            continue
        indent = len(match["indent"])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, match["key"]))
        if pending is not None:
            docs[tuple(key for _, key in stack)] = pending
        pending = None
    return docs


def _type_of(value: Any) -> str | None:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return None


@dataclass
class Row:
    """One line of the README's parameter table."""

    key: str
    type: str
    default: Any
    doc: Doc


def build(values: dict[str, Any], docs: dict[tuple[str, ...], Doc]) -> tuple[dict[str, Any], list[Row]]:
    """The JSON schema of ``values`` and the README rows, in file order."""
    rows: list[Row] = []
    missing: list[str] = []

    def is_section(path: tuple[str, ...], value: Any) -> bool:
        return isinstance(value, dict) and any(
            key[: len(path)] == path and len(key) == len(path) + 1 for key in docs
        )

    def node(path: tuple[str, ...], value: Any) -> dict[str, Any]:
        doc = docs.get(path)
        if doc is None:
            missing.append(".".join(path))
            doc = Doc()
        if is_section(path, value):
            schema: dict[str, Any] = {
                "type": "object",
                "description": doc.text,
                "additionalProperties": False,
                "properties": {k: node((*path, k), v) for k, v in value.items()},
            }
            schema.update(doc.schema)
            return schema
        schema = {"description": doc.text}
        inferred = _type_of(value)
        if inferred and "type" not in doc.schema and "enum" not in doc.schema:
            schema["type"] = inferred
        schema.update(doc.schema)
        shown = schema.get("type", inferred or "null")
        rows.append(Row(".".join(path), "/".join(shown) if isinstance(shown, list) else shown, value, doc))
        return schema

    top = {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": "Values of the chromadb chart",
        "type": "object",
        "additionalProperties": False,
        "properties": {k: node((k,), v) for k, v in values.items()},
    }
    if missing:
        raise DocError("undocumented keys in values.yaml (add a `# --` comment): " + ", ".join(missing))
    return top, rows


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_table(rows: list[Row]) -> str:
    lines = ["| Key | Type | Default | Description |", "|---|---|---|---|"]
    for row in rows:
        default = json.dumps(row.default)
        extra = "".join(f"<br>Example: `{_cell(e)}`" for e in row.doc.examples)
        extra += "".join(f"<br>[More]({link})" for link in row.doc.links)
        lines.append(f"| `{row.key}` | {row.type} | `{_cell(default)}` | {_cell(row.doc.text)}{extra} |")
    return "\n".join(lines)


def generate(chart: Path) -> dict[Path, str]:
    """The generated files of ``chart`` and their content."""
    values_text = (chart / "values.yaml").read_text(encoding="utf-8")
    values = yaml.safe_load(values_text) or {}
    schema, rows = build(values, parse_docs(values_text))
    readme_path = chart / "README.md"
    readme = readme_path.read_text(encoding="utf-8")
    if TABLE_START not in readme or TABLE_END not in readme:
        raise DocError(f"{readme_path} needs the markers {TABLE_START} and {TABLE_END}")
    head, rest = readme.split(TABLE_START, 1)
    _, tail = rest.split(TABLE_END, 1)
    new_readme = f"{head}{TABLE_START}\n{render_table(rows)}\n{TABLE_END}{tail}"
    return {
        chart / "values.schema.json": json.dumps(schema, indent=2) + "\n",
        readme_path: new_readme,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("chart", type=Path)
    parser.add_argument("--check", action="store_true", help="fail if a generated file is stale")
    args = parser.parse_args(argv)
    try:
        outputs = generate(args.chart)
    except DocError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    stale = [
        path
        for path, content in outputs.items()
        if not path.exists() or path.read_text(encoding="utf-8") != content
    ]
    if args.check:
        for path in stale:
            print(f"{path} is out of date: run `make docs`", file=sys.stderr)
        return 1 if stale else 0
    for path in stale:
        path.write_text(outputs[path], encoding="utf-8")
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
