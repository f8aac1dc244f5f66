"""The console's sealed session cookie and OIDC flow state, without a browser."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from chromactl.config import ConfigError, parse_config
from chromactl.gateway.console.app import load_sealer
from chromactl.gateway.console.session import Flow, Session, SessionSealer

#: Good for a day: the test may run long after this module is imported.
SESSION = Session("token", "Bearer ck_secret", "admin", time.time() + 86400)


def test_a_sealed_session_opens_with_its_key_only() -> None:
    sealer = SessionSealer(b"k" * 32)
    value = sealer.seal(SESSION)
    assert "ck_secret" not in value and sealer.open(value) == SESSION
    assert SessionSealer(b"o" * 32).open(value) is None


def test_a_changed_byte_or_an_expired_session_is_refused() -> None:
    sealer = SessionSealer(b"k" * 32)
    value = sealer.seal(SESSION)
    flipped = value[:10] + ("A" if value[10] != "A" else "B") + value[11:]
    assert sealer.open(flipped) is None
    assert sealer.open("not base64 at all!") is None
    assert sealer.open(value, now=SESSION.expires + 1) is None


def test_a_flow_is_not_a_session_and_the_reverse() -> None:
    sealer = SessionSealer(b"k" * 32)
    flow = Flow("state", "nonce", "verifier", "https://x/console/oidc/callback", time.time() + 60)
    sealed_flow = sealer.seal_flow(flow)
    assert sealer.open_flow(sealed_flow) == flow
    assert sealer.open(sealed_flow) is None
    assert sealer.open_flow(sealer.seal(SESSION)) is None


def test_a_short_session_key_file_is_refused_with_what_to_change(tmp_path: Path) -> None:
    key = tmp_path / "key"
    key.write_text("too short")
    settings = parse_config({"gateway": {"console": {"session_key_file": str(key)}}})
    with pytest.raises(ValueError, match="32 bytes or more"):
        load_sealer(settings)
    key.write_text("x" * 64)
    assert load_sealer(settings).open(load_sealer(settings).seal(SESSION)) == SESSION


def test_console_oidc_without_gateway_oidc_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"configure auth\.oidc"):
        parse_config({"gateway": {"console": {"oidc": {"client_id": "c"}}}})
