"""Tables as Markdown: one writer for every format that has them (PDF, DOCX, XLSX, CSV, PPTX).

A table read as loose text loses which figure belongs to which year and line item; as a
Markdown pipe table each row keeps its cells, and the chunker (ingest/chunk.py) repeats the
header row in every chunk of a table too long for one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

# A Markdown pipe table: a row, the separator row, then rows (as `markdown_table` writes them).
TABLE = re.compile(r"^\|.*\|[ \t]*\n\|(?:[ \t]*:?-+:?[ \t]*\|)+[ \t]*\n(?:\|.*\|[ \t]*(?:\n|$))*", re.MULTILINE)
MAX_CELL_CHARS = 2_000  # a cell is a label or a figure; a longer one is cut (a crafted sheet's megabyte cell)


def cell_text(value: object) -> str:
    """A cell as one line of Markdown: no newlines, no pipes that would open a column."""
    text = "" if value is None else " ".join(str(value).split())
    if len(text) > MAX_CELL_CHARS:
        text = text[: MAX_CELL_CHARS - 1] + "…"
    return text.replace("\\", "\\\\").replace("|", "\\|")


def markdown_table(rows: Iterable[Sequence[object]]) -> str:
    """`rows` (the first is the header) as a pipe table; empty rows and columns are dropped,
    short rows padded. "" when nothing is left."""
    cells = [[cell_text(value) for value in row] for row in rows]
    cells = [row for row in cells if any(row)]
    if not cells:
        return ""
    width = max(len(row) for row in cells)
    cells = [row + [""] * (width - len(row)) for row in cells]
    keep = [i for i in range(width) if any(row[i] for row in cells)]
    cells = [[row[i] for i in keep] for row in cells]
    lines = ["| " + " | ".join(row) + " |" for row in cells]
    lines.insert(1, "|" + "---|" * len(keep))
    return "\n".join(lines)


def read_out(table: str) -> tuple[str, list[str]]:
    """A Markdown table as a reader (or a model) takes it in, a line at a time: its stub (the
    header's first cell: a title, "" if none), and each row as its label and each figure under
    its column's head ("Revenue: 2019 $13,000; 2020 $11,139."; a row of no figures: "Costs.")."""
    rows = [_cells(line) for line in table.rstrip("\n").split("\n")]
    stub, *heads = rows[0]
    lines = []
    for label, *values in rows[2:]:
        said = [f"{head} {value}".strip() for head, value in zip(heads, values, strict=False) if value]
        lines.append(f"{label}: {'; '.join(said)}." if said else f"{label}.")
    return stub, lines


def _cells(row: str) -> list[str]:
    """A Markdown table row's cells (an escaped pipe is a pipe inside a cell)."""
    cells = re.split(r"(?<!\\)\|", row.strip())[1:-1]
    return [cell.strip().replace("\\|", "|").replace("\\\\", "\\") for cell in cells] or [""]
