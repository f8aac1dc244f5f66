"""chromactl's wheel and sdist (`make dist`): built once, checked, then published by the release.

    python scripts/python_dist.py build --outdir dist/python     # the sdist, then the wheel from it
    python scripts/python_dist.py check dist/python [--tag v0.2.0]

``build`` runs ``python -m build``: the sdist first, then the wheel built from that sdist, so a file
the sdist forgets fails here and not on a user's machine. ``check`` runs ``twine check --strict``
and requires exactly one wheel and one sdist whose version is ``src/chromactl/__init__.py``'s,
Chart.yaml's ``version`` (the chart, the chromactl image and the package are released together)
and, with ``--tag``, the release tag's.
"""

from __future__ import annotations

import argparse
import email.parser
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "charts" / "chromadb" / "Chart.yaml"
PACKAGE_INIT = ROOT / "src" / "chromactl" / "__init__.py"
NAME = "chromactl"


def chart_version() -> str:
    return str(yaml.safe_load(CHART.read_text())["version"])


def build(outdir: Path) -> list[Path]:
    """The sdist, then the wheel built from it, into ``outdir`` (emptied of earlier builds)."""
    outdir.mkdir(parents=True, exist_ok=True)
    for old in [*outdir.glob(f"{NAME}-*.tar.gz"), *outdir.glob(f"{NAME}-*.whl")]:
        old.unlink()
    subprocess.run([sys.executable, "-m", "build", "--outdir", str(outdir), str(ROOT)], check=True)
    return sorted(outdir.iterdir())


def metadata_version(path: Path) -> str:
    """The Version field of a wheel's METADATA or an sdist's PKG-INFO."""
    if path.name.endswith(".whl"):
        with zipfile.ZipFile(path) as wheel:
            (name,) = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
            text = wheel.read(name).decode()
    else:
        with tarfile.open(path) as sdist:
            (member,) = [
                m for m in sdist.getmembers() if m.name.count("/") == 1 and m.name.endswith("/PKG-INFO")
            ]
            extracted = sdist.extractfile(member)
            if extracted is None:
                raise SystemExit(f"{path.name}: PKG-INFO is not a file")
            text = extracted.read().decode()
    return str(email.parser.Parser().parsestr(text, headersonly=True)["Version"])


def problems(outdir: Path, tag: str | None = None) -> list[str]:
    """What is wrong with the distributions in ``outdir``: nothing when they may be published."""
    wheels = sorted(outdir.glob(f"{NAME}-*.whl"))
    sdists = sorted(outdir.glob(f"{NAME}-*.tar.gz"))
    if len(wheels) != 1 or len(sdists) != 1:
        return [
            f"{outdir} holds {len(wheels)} wheel(s) and {len(sdists)} sdist(s) of {NAME}: "
            "exactly one of each is published (python scripts/python_dist.py build)"
        ]
    found: list[str] = []
    wanted = {"Chart.yaml version": chart_version()}
    if tag is not None:
        wanted["tag"] = tag.removeprefix("v")
    for dist in (*wheels, *sdists):
        version = metadata_version(dist)
        for what, expected in wanted.items():
            if version != expected:
                found.append(f"{dist.name} has version {version}, the {what} is {expected}")
    twine = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", *map(str, (*wheels, *sdists))],
        capture_output=True,
        text=True,
        check=False,
    )
    if twine.returncode != 0:
        found.append("twine check --strict failed:\n" + twine.stdout + twine.stderr)
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    made = sub.add_parser("build", help="the sdist, then the wheel from it")
    made.add_argument("--outdir", type=Path, default=ROOT / "dist" / "python")
    checked = sub.add_parser("check", help="twine check and the versions")
    checked.add_argument("outdir", type=Path, nargs="?", default=ROOT / "dist" / "python")
    checked.add_argument("--tag", help="the release tag, v<version>")
    opts = parser.parse_args(argv)
    if opts.command == "build":
        for path in build(opts.outdir):
            print(path)
        return 0
    found = problems(opts.outdir, opts.tag)
    for problem in found:
        print(problem, file=sys.stderr)
    if not found:
        print(f"{NAME} {chart_version()}: wheel and sdist pass twine check --strict; versions agree")
    return 1 if found else 0


if __name__ == "__main__":
    raise SystemExit(main())
