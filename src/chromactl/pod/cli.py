"""``chromactl gateway``: the process the chart runs in Chroma's pod."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from chromactl.config import load_config
from chromactl.logging import configure_logging


def gateway(
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="Config file (default: $CHROMACTL_CONFIG)."),
    ] = None,
) -> None:
    """Run the gateway in front of Chroma: auth, TLS, metrics, write-hold, in-pod backups."""
    from chromactl.pod import run

    settings = load_config(config)
    configure_logging(settings.log)
    run(settings)


def register(app: typer.Typer) -> None:
    """Add ``chromactl gateway`` to the ``chromactl`` app."""
    app.command("gateway")(gateway)
