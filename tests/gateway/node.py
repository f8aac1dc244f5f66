"""The npm packages the gateway tests use (tests/gateway/js), installed with ``npm ci``."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

JS_DIR = Path(__file__).resolve().parent / "js"


def ensure_node_modules(js_dir: Path = JS_DIR) -> Path:
    """Run ``npm ci`` in ``js_dir`` when node_modules is missing or older than the lockfile."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        raise RuntimeError("node and npm are needed for the gateway tests (Debian: nodejs npm)")
    marker = js_dir / "node_modules" / ".package-lock.json"
    lock = js_dir / "package-lock.json"
    if not marker.exists() or marker.stat().st_mtime < lock.stat().st_mtime:
        subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=js_dir,
            check=True,
            timeout=300,
        )
    return js_dir
