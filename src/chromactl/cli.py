"""The ``chromactl`` command line."""

from __future__ import annotations

import json
import sys
from importlib import metadata
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from chromactl import __version__
from chromactl.backup.cli import register as register_backup
from chromactl.config import load_config
from chromactl.errors import ChromactlError
from chromactl.gateway.token_cli import register as register_gateway
from chromactl.ha.cli import register as register_ha
from chromactl.logging import configure_logging
from chromactl.pod.cli import register as register_pod
from chromactl.secrets import require_secret

app = typer.Typer(
    name="chromactl",
    help="Run Chroma in production: gateway, backups and a local stack.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
config_app = typer.Typer(help="Inspect and check the chromactl config file.", no_args_is_help=True)
app.add_typer(config_app, name="config")
register_backup(app)
register_gateway(app)
register_pod(app)
register_ha(app)

console = Console(stderr=True, soft_wrap=True)  # log lines are not cut at 80 columns

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="Config file (default: $CHROMACTL_CONFIG).", show_default=False),
]


def _installed(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


@app.command()
def version(
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Print the chromactl version (and the local Chroma's, if installed)."""
    info = {"chromactl": __version__, "chromadb": _installed("chromadb")}
    if as_json:
        print(json.dumps(info))
        return
    print(f"chromactl {info['chromactl']}")
    if info["chromadb"]:
        print(f"chromadb {info['chromadb']}")


@app.command()
def smoke(
    url: Annotated[str, typer.Option(envvar="CHROMA_URL", help="Chroma (or gateway) base URL.")],
    check: Annotated[
        list[str] | None,
        typer.Option("--check", help="heartbeat and/or collection (default: both)."),
    ] = None,
    token: Annotated[str | None, typer.Option(envvar="CHROMA_TOKEN", help="Token to send.")] = None,
    token_file: Annotated[
        Path | None, typer.Option(envvar="CHROMA_TOKEN_FILE", help="File holding the token (a Secret).")
    ] = None,
    token_header: Annotated[
        str,
        typer.Option(envvar="CHROMA_AUTH_TOKEN_TRANSPORT_HEADER", help="AUTHORIZATION or X-CHROMA-TOKEN."),
    ] = "AUTHORIZATION",
    username: Annotated[str | None, typer.Option(envvar="CHROMA_USERNAME")] = None,
    password: Annotated[str | None, typer.Option(envvar="CHROMA_PASSWORD")] = None,
    username_file: Annotated[Path | None, typer.Option(envvar="CHROMA_USERNAME_FILE")] = None,
    password_file: Annotated[Path | None, typer.Option(envvar="CHROMA_PASSWORD_FILE")] = None,
    ca_file: Annotated[
        Path | None,
        typer.Option(envvar="CHROMA_CA_FILE", help="CA bundle for an https URL (absent file: system CAs)."),
    ] = None,
) -> None:
    """Check a running Chroma: heartbeat, then a collection round trip."""
    from chromactl import smoke as checks

    def read(file: Path | None, value: str | None, what: str) -> str | None:
        return require_secret(file, what=what) if file else value

    token = read(token_file, token, "the token")
    username = read(username_file, username, "the user name")
    password = read(password_file, password, "the password")
    client = checks.SmokeClient(
        url,
        checks.Credentials(token, token_header, username, password),
        checks.ca_bundle(ca_file),
    )
    for name in check or list(checks.CHECKS):
        if name not in checks.CHECKS:
            raise typer.BadParameter(f"unknown check {name!r}; use one of {', '.join(checks.CHECKS)}")
        print(json.dumps(checks.CHECKS[name](client)))


@config_app.command("check")
def config_check(config: ConfigOption = None) -> None:
    """Validate a config file and print it with every default filled in."""
    settings = load_config(config)
    configure_logging(settings.log)
    print(json.dumps(settings.model_dump(mode="json"), indent=2))


@app.command()
def up(
    data_dir: Annotated[Path, typer.Option("--data-dir", help="Where Chroma keeps its data.")] = Path(
        ".chroma-data"
    ),
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="Port to serve on.")] = 8000,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print what the banner says as one JSON line when ready.")
    ] = False,
    no_auth: Annotated[
        bool, typer.Option("--no-auth", help="No token: anyone who reaches the port is admin.")
    ] = False,
    tls: Annotated[bool, typer.Option("--tls", help="HTTPS with a local CA (its path is printed).")] = False,
    metrics_port: Annotated[
        int | None,
        typer.Option("--metrics-port", min=1, max=65535, help="Metrics port (default: a free one)."),
    ] = None,
    continuous_backup: Annotated[
        str | None,
        typer.Option(
            "--continuous-backup",
            help="Ship every write to this backup target (path, s3://...) for restores to any second.",
        ),
    ] = None,
) -> None:
    """Run Chroma behind the gateway until Ctrl-C; print the URL, token and how to connect."""
    from chromactl.up import up as run_up

    run_up(
        data_dir,
        port,
        as_json=as_json,
        auth=not no_auth,
        tls=tls,
        metrics_port=metrics_port,
        continuous_backup=continuous_backup,
    )


def main() -> None:
    """Console entry point: user errors become a message and an exit code."""
    try:
        app()
    except ChromactlError as exc:
        # The message is text, not markup: "pip install 'chromactl[chroma]'" keeps its brackets.
        console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
