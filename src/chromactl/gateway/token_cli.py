"""``chromactl token``."""

from __future__ import annotations

from typing import Annotated

import typer

from chromactl.gateway.tokens import generate_token

token_app = typer.Typer(help="Make API tokens for the gateway.", no_args_is_help=True)


@token_app.command("generate")
def token_generate(
    nbytes: Annotated[int, typer.Option("--bytes", min=16, max=128, help="Random bytes.")] = 32,
) -> None:
    """Print a new random API token (put it in a Secret; never in the config file)."""
    print(generate_token(nbytes))


def register(app: typer.Typer) -> None:
    """Add the token commands to the ``chromactl`` app."""
    app.add_typer(token_app, name="token")
