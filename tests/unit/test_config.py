from __future__ import annotations

from pathlib import Path

import pytest

from chromactl.config import ConfigError, Settings, load_config


def test_defaults_without_a_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CHROMACTL_CONFIG", raising=False)
    assert load_config() == Settings()


def test_file_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("chroma:\n  persist_path: /var/lib/chroma\nlog:\n  format: json\n")
    monkeypatch.setenv("CHROMACTL_CONFIG", str(cfg))
    settings = load_config()
    assert settings.chroma.persist_path == Path("/var/lib/chroma")
    assert settings.log.format == "json"


def test_unknown_and_wrong_keys_are_named(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("chroma:\n  persist_pth: /x\nlog:\n  level: LOUD\n")
    with pytest.raises(ConfigError) as err:
        load_config(cfg)
    message = str(err.value)
    assert "chroma.persist_pth" in message
    assert "log.level" in message
    assert err.value.exit_code == 2


@pytest.mark.parametrize(("text", "expected"), [("- a\n- b\n", "mapping"), ("a: [\n", "not valid YAML")])
def test_malformed_files(tmp_path: Path, text: str, expected: str) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(text)
    with pytest.raises(ConfigError, match=expected):
        load_config(cfg)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "nope.yaml")
