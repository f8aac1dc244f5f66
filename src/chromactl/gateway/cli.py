"""``chromactl gateway`` and ``chromactl token``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from chromactl.config import load_config
from chromactl.gateway.tokens import generate_token
from chromactl.logging import configure_logging

token_app = typer.Typer(help="Make API tokens for the gateway.", no_args_is_help=True)


def gateway(
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="Config file (default: $CHROMACTL_CONFIG)."),
    ] = None,
) -> None:
    """Run the gateway in front of Chroma: auth, TLS, metrics, write-hold."""
    from chromactl.gateway.server import run

    settings = load_config(config)
    configure_logging(settings.log)
    run(settings)


@token_app.command("generate")
def token_generate(
    nbytes: Annotated[int, typer.Option("--bytes", min=16, max=128, help="Random bytes.")] = 32,
) -> None:
    """Print a new random API token (put it in a Secret; never in the config file)."""
    print(generate_token(nbytes))


def register(app: typer.Typer) -> None:
    """Add the gateway commands to the ``chromactl`` app."""
    app.command("gateway")(gateway)
    app.add_typer(token_app, name="token")
