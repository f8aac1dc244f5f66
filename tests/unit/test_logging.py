from __future__ import annotations

import json
import logging

import pytest

from chromactl.config import LogSettings
from chromactl.logging import configure_logging


def test_json_lines_carry_extra_fields(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(LogSettings(level="INFO", format="json"))
    logging.getLogger("chromactl.test").info("snapshot done", extra={"bytes": 42})
    logging.getLogger("chromactl.test").debug("hidden")
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1
    entry = json.loads(lines[0])
    assert entry["message"] == "snapshot done"
    assert entry["bytes"] == 42
    assert entry["level"] == "INFO"
    assert entry["logger"] == "chromactl.test"
