from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import chromactl


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "chromactl", *args], capture_output=True, text=True, timeout=60
    )


def test_version_json() -> None:
    proc = run("version", "--json")
    assert proc.returncode == 0
    info = json.loads(proc.stdout)
    assert info["chromactl"] == chromactl.__version__
    assert info["chromadb"] == "1.5.9"


def test_console_script_is_installed() -> None:
    script = Path(sys.executable).parent / "chromactl"
    proc = subprocess.run([str(script), "version"], capture_output=True, text=True, timeout=60)
    assert proc.stdout.startswith(f"chromactl {chromactl.__version__}")


def test_bad_config_is_a_clear_error_and_exit_2(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("log:\n  formatt: json\n")
    proc = run("config", "check", "--config", str(cfg))
    assert proc.returncode == 2
    assert "log.formatt" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_config_check_prints_defaults(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("{}\n")
    proc = run("config", "check", "--config", str(cfg))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["chroma"]["persist_path"] == "/data"


def test_error_messages_keep_their_brackets() -> None:
    """`chromactl up` without the chroma extra names the extra to install, brackets included."""
    script = (
        "import importlib.metadata as m, sys\n"
        "real = m.version\n"
        "def version(name):\n"
        "    if name == 'chromadb':\n"
        "        raise m.PackageNotFoundError(name)\n"
        "    return real(name)\n"
        "m.version = version\n"
        "from chromactl.cli import main\n"
        "sys.argv = ['chromactl', 'up', '--data-dir', sys.argv[1]]\n"
        "main()\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script, "/nonexistent/chroma-data"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode != 0
    assert "pip install 'chromactl[chroma]'" in proc.stderr, proc.stderr


def test_repo_means_the_repository_in_every_backup_command() -> None:
    from chromactl.backup.cli import BACKUP_COMMANDS

    for name in ("create", "list", "verify", "drill", "prune", "delete", "rekey", "copy"):
        shown = run("backup", name, "--help").stdout
        assert "--repo" in shown, name
        assert "--to " not in shown and "--from " not in shown, name  # former names: hidden
    assert set(BACKUP_COMMANDS) >= {"create", "list", "verify", "drill", "prune", "delete", "rekey", "copy"}
    shown = run("restore", "--help").stdout
    assert "--repo" in shown and "--data-dir" in shown and "--to " not in shown


def test_two_repositories_by_two_names_are_refused(tmp_path: Path) -> None:
    proc = run("backup", "list", "--repo", str(tmp_path / "a"), "--from", str(tmp_path / "b"))
    assert proc.returncode == 2
    assert "name two repositories: pass --repo alone" in proc.stderr


def test_the_former_names_still_work_and_say_the_new_one(tmp_path: Path) -> None:
    (tmp_path / "repo").mkdir()
    listed = run("backup", "list", "--from", str(tmp_path / "repo"), "--json")
    assert listed.returncode == 0 and json.loads(listed.stdout) == {"snapshots": []}
    restored = run(
        "restore",
        "--from",
        str(tmp_path / "repo"),
        "--to",
        str(tmp_path / "data"),
        "--skip-if-no-snapshot",
        "--json",
    )
    assert restored.returncode == 0, restored.stderr
    assert json.loads(restored.stdout)["outcome"] == "skipped"
    assert "--to is now --data-dir" in restored.stderr


def test_an_export_without_a_destination_says_which_flag(tmp_path: Path) -> None:
    proc = run("export", "--url", "http://127.0.0.1:9")
    assert proc.returncode == 2 and "--dest is required" in proc.stderr
    proc = run("import", "--url", "http://127.0.0.1:9")
    assert proc.returncode == 2 and "--source is required" in proc.stderr
