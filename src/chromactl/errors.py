"""Errors chromactl reports to a user: a message that says what to change."""

from __future__ import annotations


class ChromactlError(Exception):
    """An error with a message meant for the person running chromactl.

    ``exit_code`` is what the CLI exits with; 2 means bad input, 1 a failure.
    """

    exit_code: int = 1

    def __init__(self, message: str, *, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class ConfigError(ChromactlError):
    """The configuration file or a setting in it is wrong."""

    exit_code = 2
