"""Read secrets from mounted files or environment variables, never from the config."""

from __future__ import annotations

import os
from pathlib import Path

from chromactl.errors import ConfigError


def read_secret(file: Path | None, env: str | None, what: str) -> str:
    """The secret in ``file`` (whitespace stripped) or in the variable ``env``."""
    if file is not None:
        try:
            value = file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"cannot read {what} from {file}: {exc.strerror}") from None
        if not value:
            raise ConfigError(f"{what} file {file} is empty")
        return value
    if env is not None:
        value = os.environ.get(env, "").strip()
        if not value:
            raise ConfigError(f"{what}: environment variable {env} is not set or empty")
        return value
    raise ConfigError(f"{what}: no file or environment variable given")
