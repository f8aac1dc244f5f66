"""Where a `chromactl up` stack keeps its files, and finding it: what other commands need.

``chromactl backup create`` and ``restore`` find the stack of ``.chroma-data`` here by
themselves: its config, and while it runs its gateway, admin token and CA.
"""

from __future__ import annotations

import fcntl
from dataclasses import dataclass
from pathlib import Path

from chromactl.config import Settings, load_config

DEFAULT_DATA_DIR = Path(".chroma-data")
HOST = "127.0.0.1"
#: Held (flock) by a running `chromactl up`, in its run directory.
LOCK_NAME = "up.lock"


def run_dir_for(data_dir: Path) -> Path:
    """The generated files and logs live beside the data: ``<data>.run``."""
    return data_dir.with_name(data_dir.name + ".run")


@dataclass(frozen=True)
class LocalStack:
    """A stack `chromactl up` made: its config file, settings, and whether it runs now.

    While it runs, ``settings.backup`` names its gateway and admin token, so that an online
    snapshot finds the write hold without options.
    """

    config: Path
    settings: Settings
    running: bool


def local_stack(data_dir: Path = DEFAULT_DATA_DIR) -> LocalStack | None:
    """The `chromactl up` stack of ``data_dir`` (default: the one `make run` starts), if any."""
    run_dir = run_dir_for(data_dir.absolute())
    config = run_dir / "chromactl.yaml"
    if not config.is_file():
        return None
    settings = load_config(config)
    running = _held(run_dir / LOCK_NAME)
    gw = settings.gateway
    if running:
        token = gw.auth.token if gw.auth.enabled else None
        admin = [c.token_file for c in token.credentials if c.role == "admin"] if token else []
        # With TLS, the certificate names localhost and the stack's own CA signed it.
        url = f"https://localhost:{gw.port}" if gw.tls.enabled else f"http://{HOST}:{gw.port}"
        ca = run_dir / "tls" / "ca.crt" if gw.tls.enabled else None
        backup = settings.backup.model_copy(
            update={"gateway_url": url, "token_file": admin[0] if admin else None, "gateway_ca_file": ca}
        )
        settings = settings.model_copy(update={"backup": backup})
    return LocalStack(config, settings, running)


def _held(lock: Path) -> bool:
    """Whether a running `chromactl up` holds ``lock``."""
    if not lock.is_file():
        return False
    with open(lock) as f:
        try:
            fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(f, fcntl.LOCK_UN)
    return False
