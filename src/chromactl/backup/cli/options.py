"""What every backup command shares: options, settings, output."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from chromactl.backup.progress import NullProgress, Progress, RichBars
from chromactl.backup.repository.repository import Repository, repository_of
from chromactl.config import Settings, load_config
from chromactl.errors import ChromactlError
from chromactl.localstack import local_stack
from chromactl.logging import configure_logging
from chromactl.secrets import read_secret

console = Console(stderr=True, soft_wrap=True)  # log lines are not cut at 80 columns

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="Config file (default: $CHROMACTL_CONFIG).")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object, no progress bars.")]
RepoOpt = Annotated[
    str | None,
    typer.Option("--repo", help="Snapshot repository URL (default: backup.target).", show_default=False),
]
#: ``--to`` and ``--from``, the repository's names before ``--repo``: still read, not shown.
RepoAliasOpt = Annotated[str | None, typer.Option("--to", "--from", hidden=True)]
DataDirOpt = Annotated[
    Path | None, typer.Option("--data-dir", help="Chroma data directory (default: chroma.persist_path).")
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]


def repo_url(repo: str | None, alias: str | None) -> str | None:
    """``--repo``, or the same given by its former name."""
    if repo is not None and alias is not None and repo != alias:
        raise ChromactlError(
            f"--repo {repo} and --to/--from {alias} name two repositories: pass --repo alone", exit_code=2
        )
    return repo if repo is not None else alias


def renamed(new: str, old: str, value: Any) -> Any:
    """A value given by a flag's former name: taken, with a word to use the new one."""
    if value is not None:
        console.print(f"[yellow]{old} is now {new}[/]: {old} still works here, and will not for long")
    return value


def settings_of(config: Path | None) -> Settings:
    """The config file given, else $CHROMACTL_CONFIG, else the `chromactl up` stack of
    .chroma-data in this directory (its gateway and token when it runs), else defaults."""
    stack = None if config or os.environ.get("CHROMACTL_CONFIG") else local_stack()
    settings = stack.settings if stack else load_config(config)
    configure_logging(settings.log)
    return settings


def open_repo(settings: Settings, url: str | None) -> Repository:
    return repository_of(settings.backup, url=url)


def progress_of(as_json: bool, quiet: bool) -> Progress:
    return NullProgress() if as_json or quiet else RichBars(console)


def emit(data: dict[str, Any]) -> None:
    print(json.dumps(data, indent=2, default=str))


def headers_of(header: list[str] | None, token_env: str | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for h in header or []:
        if ":" not in h:
            raise ChromactlError(f"--header wants 'Name: value', got {h!r}", exit_code=2)
        name, value = h.split(":", 1)
        out[name.strip()] = value.strip()
    if token_env:
        token = read_secret(None, token_env, what="the bearer token (--token-env)", optional=True)
        if not token:
            raise ChromactlError(f"environment variable {token_env} is empty", exit_code=2)
        out["Authorization"] = f"Bearer {token}"
    return out
