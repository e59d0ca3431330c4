"""Tables as Markdown: one writer for every format that has them (PDF, DOCX, XLSX, CSV, PPTX).

A table read as loose text loses which figure belongs to which year and line item; as a
Markdown pipe table each row keeps its cells, and the chunker (ingest/chunk.py) repeats the
header row in every chunk of a table too long for one.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

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
