"""Package the chart and write a Helm repository index, with the real Helm engine.

    python scripts/package_chart.py [CHART_DIR] [--destination dist] [--url URL] [--merge OLD_INDEX]

Refuses to package a chart whose generated README table or values.schema.json is stale, or
that `helm lint --strict` faults. Writes DESTINATION/<name>-<version>.tgz and
DESTINATION/index.yaml listing every archive in DESTINATION (plus, with --merge, the entries of
an already published index, so that older versions stay installable). Publishing is then a
copy of DESTINATION to the repository's web root (e.g. the gh-pages branch), or
`helm push DESTINATION/<name>-<version>.tgz oci://<registry>/<path>` for an OCI registry.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import helm_python
import yaml

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from scripts import chart_docs  # noqa: E402

DEFAULT_CHART = ROOT / "charts" / "chromadb"
DEFAULT_URL = "https://chromadb-chart.github.io/chromadb-chart"
#: The oldest Kubernetes the chart supports (Chart.yaml kubeVersion), linted against.
LINT_KUBE_VERSION = "v1.29.0"


class PackageError(Exception):
    """The chart cannot be released as it is."""


def check_docs(chart: Path) -> None:
    stale = [
        str(path.relative_to(chart))
        for path, content in chart_docs.generate(chart).items()
        if not path.exists() or path.read_text(encoding="utf-8") != content
    ]
    if stale:
        raise PackageError(f"{', '.join(stale)} out of date: run `make docs` and commit the result")


def check_lint(chart: Path) -> None:
    report = helm_python.lint(str(chart), strict=True, kube_version=LINT_KUBE_VERSION)
    problems = list(report["errors"]) + [
        m.get("message") or m.get("error") for m in report["messages"] if m["severity"] >= 2
    ]
    problems = list(dict.fromkeys(problems))
    if problems:
        raise PackageError("helm lint --strict: " + "; ".join(str(p) for p in problems))


def package(chart: Path, destination: Path, url: str, merge: Path | None = None) -> tuple[Path, Path]:
    """Archive ``chart`` into ``destination`` and (re)write its index.yaml; returns both paths."""
    check_docs(chart)
    check_lint(chart)
    metadata = yaml.safe_load((chart / "Chart.yaml").read_text(encoding="utf-8"))
    destination.mkdir(parents=True, exist_ok=True)
    archive = Path(helm_python.package(chart, destination=destination))
    expected = destination / f"{metadata['name']}-{metadata['version']}.tgz"
    if archive.resolve() != expected.resolve():
        raise PackageError(f"helm wrote {archive}, expected {expected}")
    with helm_python.Chart.load(archive) as packaged:
        if packaged.version != str(metadata["version"]):
            raise PackageError(f"{archive} holds version {packaged.version}")
    if merge is not None and not merge.is_file():
        raise PackageError(f"--merge {merge}: no such index file")
    helm_python.repo_index_generate(destination, base_url=url.rstrip("/"), merge=merge)
    return archive, destination / "index.yaml"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("chart", type=Path, nargs="?", default=DEFAULT_CHART)
    parser.add_argument("--destination", type=Path, default=ROOT / "dist")
    parser.add_argument("--url", default=DEFAULT_URL, help="where the repository is served")
    parser.add_argument("--merge", type=Path, help="the published index.yaml, to keep older versions")
    args = parser.parse_args(argv)
    try:
        archive, index = package(args.chart, args.destination, args.url, args.merge)
    except (PackageError, chart_docs.DocError, helm_python.HelmError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {archive}\nwrote {index}")
    print(f"publish: copy {args.destination}/ to {args.url}, or: helm push {archive} oci://<registry>/<path>")
    return 0


if __name__ == "__main__":
    sys.exit(main())
