"""Tables the CLI prints: no value is ever cut.

On a terminal a table is drawn with rich: the key columns (ids, names, times, the values a user
copies into the next command) keep their full width, and the other columns fold onto more lines
when the terminal is narrow; where even that does not fit, each row is printed as a block of
``column  value`` lines (psql's expanded display), so the terminal never splits a value.
Through a pipe or into a file it is plain text, one row a line, columns separated by two spaces
and never truncated, for ``grep``, ``awk`` and ``cut``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO

from rich.console import Console
from rich.table import Column, Table

#: The narrowest a folding column is drawn (fewer letters if it never holds more).
FOLDED_WIDTH = 6


@dataclass(frozen=True)
class Col:
    """A column: its header, and whether its values must stay whole on one line."""

    header: str
    key: bool = False
    justify: str = "left"


def print_table(
    columns: Sequence[Col], rows: Sequence[Sequence[str]], *, console: Console | None = None
) -> None:
    """Print ``rows`` under ``columns``: drawn on a terminal, plain through a pipe."""
    out = console or Console()
    if len(columns) == 0 or any(len(row) != len(columns) for row in rows):
        raise ValueError("every row needs one value per column")
    if not out.is_terminal:
        write_plain(columns, rows, out.file)
        return
    widths = _widths(columns, rows)
    least = [
        w if c.key else min(w, max(len(c.header), FOLDED_WIDTH)) for c, w in zip(columns, widths, strict=True)
    ]
    table = Table(
        *(
            Column(
                c.header,
                no_wrap=c.key,
                overflow="ignore" if c.key else "fold",
                min_width=narrowest,
                justify="right" if c.justify == "right" else "left",
            )
            for c, narrowest in zip(columns, least, strict=True)
        ),
    )
    for row in rows:
        table.add_row(*row)
    frame = 3 * len(columns) + 1  # a space either side of each value, and the borders
    if sum(least) + frame > out.width:
        # Even folded it would not fit: one block of ``column  value`` lines a row, as psql's
        # expanded display, so that no value is split by the terminal's wrapping.
        write_expanded(columns, rows, out)
        return
    out.print(table, crop=False)


def write_expanded(columns: Sequence[Col], rows: Sequence[Sequence[str]], out: Console) -> None:
    """Each row as ``header  value`` lines, rows apart by a blank line."""
    width = max(len(c.header) for c in columns)
    for n, row in enumerate(rows):
        if n:
            out.print()
        for column, value in zip(columns, row, strict=True):
            out.print(f"[bold]{column.header.ljust(width)}[/]  {value}", highlight=False, soft_wrap=True)


def write_plain(columns: Sequence[Col], rows: Sequence[Sequence[str]], file: IO[str]) -> None:
    """Aligned plain text: every value whole, two spaces between columns, no trailing blanks."""
    widths = _widths(columns, rows)
    for line in [[c.header for c in columns], *rows]:
        cells = [
            value.rjust(w) if c.justify == "right" else value.ljust(w)
            for value, w, c in zip(line, widths, columns, strict=True)
        ]
        file.write("  ".join(cells).rstrip() + "\n")


def _widths(columns: Sequence[Col], rows: Sequence[Sequence[str]]) -> list[int]:
    """Each column's widest value or header."""
    return [max([len(c.header), *(len(r[i]) for r in rows)]) for i, c in enumerate(columns)]
