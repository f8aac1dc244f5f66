"""The chromactl configuration file.

One format, one source of truth: the Helm chart renders this file into a
ConfigMap for the pod, and ``chromactl up`` writes the same file for the
local stack. Every component (gateway, backup agent, restore) reads it
through :func:`load_config`.

Secrets are never values in this file: it names files (mounted Secrets) or
environment variables that hold them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from chromactl.errors import ConfigError

Port = Annotated[int, Field(ge=1, le=65535)]

#: Environment variable naming the config file when no path is given.
CONFIG_ENV = "CHROMACTL_CONFIG"


class Section(BaseModel):
    """Base for every section: unknown keys are an error, never ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ChromaSettings(Section):
    """Where Chroma is and where its data lives."""

    #: URL of the Chroma server the gateway forwards to.
    url: str = "http://127.0.0.1:8001"
    #: Chroma's data directory (``persist_path``); read by backups and metrics.
    persist_path: Path = Path("/data")
    #: Chroma's version as deployed (the chart's ``chromadb.apiVersion``).
    version: str = "1.5.9"


class LogSettings(Section):
    """How chromactl logs."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    #: ``json`` for log collectors (the chart's default), ``console`` for people.
    format: Literal["json", "console"] = "console"


class RetentionSettings(Section):
    """Which complete snapshots ``backup prune`` keeps (restic-style windows)."""

    keep_last: int = Field(7, ge=0)
    keep_daily: int = Field(7, ge=0)
    keep_weekly: int = Field(4, ge=0)
    keep_monthly: int = Field(6, ge=0)
    #: Snapshots without a manifest younger than this may still be uploading.
    incomplete_grace_s: float = Field(6 * 3600, ge=0)


class BackupSettings(Section):
    """Where snapshots go and how they are taken (``chromactl backup``)."""

    #: fsspec URL of the snapshot repository: a path, ``s3://``, ``gs://``, ``az://``.
    target: str = ""
    #: S3-compatible endpoint (MinIO and others); empty for AWS.
    endpoint_url: str | None = None
    region: str | None = None
    #: Extra non-secret fsspec options for the target's backend.
    storage_options: dict[str, str | int | float | bool] = {}
    #: Directory of a mounted Secret: each file name is an environment variable
    #: (``AWS_ACCESS_KEY_ID``, ``AZURE_STORAGE_CONNECTION_STRING``, ...).
    credentials_dir: Path | None = None
    #: Gateway agent API used to hold writes during a snapshot.
    gateway_url: str | None = None
    #: File or environment variable holding the gateway admin token.
    token_file: Path | None = None
    token_env: str = "CHROMACTL_ADMIN_TOKEN"
    #: How long the gateway may hold writes before giving up.
    hold_timeout_s: float = Field(10.0, gt=0)
    #: Local scratch space for files copied during the hold.
    staging_dir: Path | None = None
    compression_level: int = Field(3, ge=1, le=22)
    retention: RetentionSettings = RetentionSettings()


class Settings(Section):
    """The whole chromactl configuration file."""

    chroma: ChromaSettings = ChromaSettings()
    log: LogSettings = LogSettings()
    backup: BackupSettings = BackupSettings()


def _location(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc) or "(top level)"


def parse_config(data: dict[str, Any], *, source: str = "config") -> Settings:
    """Validate a mapping as :class:`Settings`.

    Raises:
        ConfigError: naming every wrong key and what is expected there.
    """
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        problems = "\n".join(
            f"  - {_location(err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"{source} is not a valid chromactl config:\n{problems}") from None


def load_config(path: str | os.PathLike[str] | None = None) -> Settings:
    """Read the config from ``path``, ``$CHROMACTL_CONFIG``, or use defaults."""
    if path is None:
        path = os.environ.get(CONFIG_ENV) or None
    if path is None:
        return Settings()
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {file}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{file} is not valid YAML: {exc}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{file} must hold a mapping at the top level, not {type(data).__name__}")
    return parse_config(data, source=str(file))
