"""``chromactl backup rekey``: wrap the data key under a new secret."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from chromactl.backup.cli.options import (
    ConfigOpt,
    JsonOpt,
    RepoAliasOpt,
    RepoOpt,
    console,
    emit,
    open_repo,
    repo_url,
    settings_of,
)
from chromactl.backup.repository.repository import MIN_SECRET_BYTES, Repository
from chromactl.secrets import read_secret_bytes


def rekey_cmd(
    new_key_file: Annotated[Path, typer.Option(help="File holding the new encryption secret.")],
    config: ConfigOpt = None,
    repo: RepoOpt = None,
    repo_alias: RepoAliasOpt = None,
    remove_old: Annotated[
        bool, typer.Option("--remove-old", help="Then drop the current secret's wrapping of the data key.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Rotate the encryption secret: wrap the data key under a new one (nothing is re-uploaded)."""
    repo = repo_url(repo, repo_alias)
    settings = settings_of(config)
    current = open_repo(settings, repo)
    new_secret = read_secret_bytes(new_key_file, what="the new encryption key", min_length=MIN_SECRET_BYTES)
    assert new_secret is not None
    new_id = current.add_key(new_secret)
    # The new secret must open the repository before the old one goes.
    reopened = Repository(current.store, secret=new_secret)
    assert reopened.keyring is not None and current.keyring is not None
    old_id = current.keyring.key_id
    if remove_old:
        reopened.remove_key(old_id)
    if as_json:
        emit({"added": new_id, "removed": old_id if remove_old else None})
    else:
        console.print(
            f"added key {new_id}" + (f", removed key {old_id}" if remove_old else f"; key {old_id} kept")
        )
