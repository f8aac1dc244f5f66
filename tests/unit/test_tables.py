"""Tables never cut a value: `backup list` on a narrow terminal and through a pipe."""

from __future__ import annotations

import fcntl
import io
import os
import re
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest
from rich.console import Console

from chromactl.backup.repository.manifest import Manifest
from chromactl.backup.repository.repository import Repository
from chromactl.tables import Col, print_table

SNAPSHOT = "20261206T231509Z-00a3f1"
CREATED = "2026-12-06T23:15:09.123456+00:00"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A repository with one complete snapshot."""
    repository = Repository(str(tmp_path / "repo"))
    (tmp_path / "repo" / SNAPSHOT / "files").mkdir(parents=True)
    repository.write_manifest(Manifest(SNAPSHOT, CREATED, "1.5.9", "0.2.0", "offline"))
    return tmp_path / "repo"


def chromactl_list(repo: Path, *, stdout: int | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "chromactl", "backup", "list", "--repo", str(repo)],
        stdout=stdout if stdout is not None else subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "COLUMNS": "", "TERM": "xterm"},
        timeout=60,
        check=True,
    )


def test_backup_list_through_a_pipe_prints_every_value_whole(repo: Path) -> None:
    out = chromactl_list(repo).stdout.decode()
    header, row = out.splitlines()
    assert header.split() == ["snapshot", "created", "chroma", "size", "stored", "records", "complete"]
    assert row.split()[:3] == [SNAPSHOT, CREATED, "1.5.9"]
    assert "…" not in out and "│" not in out  # plain text, nothing elided


def test_backup_list_on_a_60_column_terminal_keeps_the_id_and_time_whole(repo: Path) -> None:
    leader, follower = os.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 60, 0, 0))
    try:
        chromactl_list(repo, stdout=follower)
        os.close(follower)
        screen = b""
        while chunk := _read(leader):
            screen += chunk
    finally:
        os.close(leader)
    text = re.sub(r"\x1b\[[0-9;]*m", "", screen.decode())  # no colours
    lines = text.splitlines()
    # too narrow for the id and the time side by side: one "column  value" line each
    assert any(re.fullmatch(rf"snapshot +{SNAPSHOT}", line.strip()) for line in lines), text
    assert any(re.fullmatch(rf"created +{re.escape(CREATED)}", line.strip()) for line in lines), text
    assert max(len(line) for line in lines) <= 60 and "…" not in text


def _read(fd: int) -> bytes:
    try:
        return os.read(fd, 65536)
    except OSError:  # EIO: the writer closed its end
        return b""


def test_narrow_terminal_folds_the_other_columns_and_never_elides() -> None:
    note = "a long note that has to fold over lines"
    buffer = io.StringIO()
    console = Console(file=buffer, width=50, force_terminal=True, color_system=None)
    print_table([Col("id", key=True), Col("note")], [("an-identifier-of-27-letters", note)], console=console)
    lines = buffer.getvalue().splitlines()
    assert max(len(line) for line in lines) == 50
    assert any("an-identifier-of-27-letters" in line for line in lines)
    assert "…" not in buffer.getvalue()
    assert note not in buffer.getvalue()  # folded onto several lines ...
    cells = [line.split("│")[2].strip() for line in lines if line.startswith("│")]
    assert " ".join(cells) == note  # ... with nothing left out


def test_where_even_folding_cannot_fit_each_row_is_a_block_of_lines() -> None:
    buffer = io.StringIO()
    console = Console(file=buffer, width=30, force_terminal=True, color_system=None)
    rows = [("an-identifier-of-27-letters", "short words"), ("second-identifier", "more")]
    print_table([Col("id", key=True), Col("note")], rows, console=console)
    assert buffer.getvalue().splitlines() == [
        "id    an-identifier-of-27-letters",
        "note  short words",
        "",
        "id    second-identifier",
        "note  more",
    ]


def test_plain_output_aligns_columns_and_right_justifies_numbers() -> None:
    buffer = io.StringIO()
    print_table(
        [Col("name", key=True), Col("size", justify="right")],
        [("a", "1,024"), ("a-longer-name", "7")],
        console=Console(file=buffer, force_terminal=False),
    )
    assert buffer.getvalue().splitlines() == [
        "name            size",
        "a              1,024",
        "a-longer-name      7",
    ]


def test_a_row_of_the_wrong_length_is_refused() -> None:
    with pytest.raises(ValueError, match="one value per column"):
        print_table([Col("a"), Col("b")], [("only one",)], console=Console(file=io.StringIO()))
