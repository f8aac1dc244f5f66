"""The release's notes, from Chart.yaml; and the check that a tag is the chart's version.

    python scripts/release_notes.py                 # Markdown notes for the GitHub release
    python scripts/release_notes.py --check-tag v0.2.0

The notes are the chart's ``artifacthub.io/changes`` (what changed, by kind), the images it
runs by default (``artifacthub.io/images``) and how to install this version.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "charts" / "chromadb" / "Chart.yaml"
PACKAGE_INIT = ROOT / "src" / "chromactl" / "__init__.py"
KINDS = ("security", "added", "changed", "fixed", "deprecated", "removed")


def chart() -> dict:
    return yaml.safe_load(CHART.read_text())


def check_tag(tag: str) -> str | None:
    """None when ``tag`` releases this checkout; otherwise what is wrong."""
    meta = chart()
    version = str(meta["version"])
    if tag != f"v{version}":
        return f"tag {tag} does not match Chart.yaml version {version}: tag v{version}, or bump the chart"
    package = re.search(r'__version__\s*=\s*"([^"]+)"', PACKAGE_INIT.read_text())
    if not package or package[1] != version:
        found = package[1] if package else "none"
        return f"src/chromactl/__init__.py has version {found}, Chart.yaml {version}: make them equal"
    return None


def notes() -> str:
    meta = chart()
    annotations = meta.get("annotations") or {}
    changes = yaml.safe_load(annotations.get("artifacthub.io/changes") or "[]") or []
    images = yaml.safe_load(annotations.get("artifacthub.io/images") or "[]") or []
    lines = [f"Chart {meta['version']}, Chroma {meta['appVersion']} by default.", ""]
    for kind in KINDS:
        items = [c["description"] for c in changes if c.get("kind") == kind]
        if items:
            lines += [f"### {kind.capitalize()}", "", *(f"- {item}" for item in items), ""]
    lines += [
        "### Images",
        "",
        *(f"- `{i['image']}`" for i in images),
        "",
        "Signed keyless with cosign; verify as in image/README.md.",
        "",
        "### Install",
        "",
        "```bash",
        f"helm install chroma oci://ghcr.io/chromadb-chart/charts/chromadb --version {meta['version']}",
        "```",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check-tag", metavar="TAG")
    opts = parser.parse_args(argv)
    if opts.check_tag is not None:
        problem = check_tag(opts.check_tag)
        if problem:
            print(problem, file=sys.stderr)
            return 1
        return 0
    sys.stdout.write(notes())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
