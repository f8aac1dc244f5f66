"""API tokens: generated with the operating system's random source."""

from __future__ import annotations

import secrets

#: Prefix that makes a chromactl token recognisable to secret scanners.
PREFIX = "ck_"


def generate_token(nbytes: int = 32) -> str:
    """A new random token (``ck_`` + URL-safe base64 of ``nbytes`` random bytes)."""
    return PREFIX + secrets.token_urlsafe(nbytes)
