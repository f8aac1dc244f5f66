"""Secrets: read from mounted files or environment variables, never from the config file.

Every token, password, key and storage credential chromactl uses is read here, with one error
(:class:`SecretError`) that names the file or variable and what it was for; values are never
logged or put into the environment. The chart mounts its Secrets under :data:`MOUNT_ROOT`.
"""

from __future__ import annotations

import os
from pathlib import Path

from chromactl.errors import ConfigError

#: Where the chart mounts the Secrets and certificates chromactl reads (one folder each).
MOUNT_ROOT = Path("/etc/chromactl")
#: The gateway's TLS certificate and key (a ``kubernetes.io/tls`` Secret).
TLS_DIR = MOUNT_ROOT / "tls"


class SecretError(ConfigError):
    """A secret is missing, unreadable, empty or too short."""


def read_secret_bytes(
    file: Path | None = None,
    env: str | None = None,
    *,
    what: str,
    optional: bool = False,
    min_length: int = 1,
) -> bytes | None:
    """The secret in ``file`` (its bytes as they are, surrounding ASCII whitespace stripped: a
    key may be binary), else in the variable ``env``.

    With ``optional``, None when neither is given or the variable is unset; a file that is
    given must be readable and hold a value either way.
    """
    if file is not None:
        try:
            value = Path(file).read_bytes().strip()
        except OSError as exc:
            raise SecretError(f"cannot read {what} from {file}: {exc.strerror}") from None
        where = str(file)
        if not value:
            raise SecretError(f"{what} file {file} is empty")
    elif env:
        value = os.environ.get(env, "").strip().encode()
        where = f"${env}"
        if not value:
            if optional:
                return None
            raise SecretError(f"{what}: environment variable {env} is not set or empty")
    else:
        if optional:
            return None
        raise SecretError(f"{what}: no file or environment variable given")
    if len(value) < min_length:
        raise SecretError(f"{what}: {where} holds {len(value)} bytes, it needs {min_length} or more")
    return value


def read_secret(
    file: Path | None = None,
    env: str | None = None,
    *,
    what: str,
    optional: bool = False,
    min_length: int = 1,
) -> str | None:
    """:func:`read_secret_bytes` of a secret that is text (a token, a password), as text."""
    value = read_secret_bytes(file, env, what=what, optional=optional, min_length=min_length)
    if value is None:
        return None
    try:
        return value.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise SecretError(f"{what}: {file or '$' + str(env)} is not UTF-8 text") from None


def require_secret(
    file: Path | None = None, env: str | None = None, *, what: str, min_length: int = 1
) -> str:
    """:func:`read_secret` of a secret that must be there."""
    value = read_secret(file, env, what=what, min_length=min_length)
    assert value is not None
    return value


def read_secret_dir(directory: Path, *, what: str) -> dict[str, str]:
    """Every file of a mounted Secret, by name (hidden files, such as the ``..data`` links
    Kubernetes makes, left out), each value stripped."""
    if not directory.is_dir():
        raise SecretError(f"{what}: directory {directory} does not exist")
    out: dict[str, str] = {}
    for entry in sorted(directory.iterdir()):
        if entry.name.startswith(".") or not entry.is_file():
            continue
        try:
            out[entry.name] = entry.read_bytes().decode("utf-8").strip()
        except OSError as exc:
            raise SecretError(f"cannot read {what} from {entry}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise SecretError(f"{what}: {entry} is not UTF-8 text") from None
    return out
