"""Data files (.csv .tsv .json) as text that people and the embedding model read, and the row budget
that every reader of tables (these, and .xlsx in ingest/office.py) takes its rows from.

A table is read as a Markdown pipe table (ingest/tables.py): each row keeps its cells and the
header says what they are. JSON is written as one `path: value` line per value, the path from the
document's root (`orders[2].customer.name: Ada`): a line read alone, as a chunk is, still says what
its value is, and the embedding model sees the key words next to the value. An array of two or
more flat records (objects of plain values, the usual shape of exported data) is written as a
table instead, one row a record: its keys are said once, in the header, rather than on every line.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from asyncrag.errors import ReadError
from asyncrag.ingest.tables import MAX_CELL_CHARS, markdown_table
from asyncrag.ingest.text import decode_text, read_bytes, read_text

# What a file's tables may hold, all of its sheets together. Rows are streamed from the file and
# the budget is checked as they come, so a sheet of a million rows costs the budget, not the sheet.
# 100,000 rows of 10 short cells are ~5 MB of Markdown and ~40,000 chunks: a lot to embed, but a
# real table; past that a file is more likely a data dump than a document.
MAX_TABLE_ROWS = 100_000
MAX_TABLE_COLUMNS = 100  # a wider row is not a table anyone reads, nor one that fits a chunk
MAX_TABLE_CHARS = 16 * 2**20  # a crafted sheet repeats one long shared string in every cell

MAX_JSON_DEPTH = 64  # real documents nest a dozen levels; a crafted one nests 100,000
MAX_JSON_BYTES = 32 * 2**20  # parsed whole: Python's objects take 5-10x the file's bytes
_SNIFF_CHARS = 16 * 1024
_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")


class RowBudget:
    """The rows one file's tables may still take; what was cut, said once in the text.

    One budget per file, shared by its sheets: a workbook of 1,000 sheets gets no more than a
    workbook of one. Every row read counts, empty ones too (a crafted sheet's cell at row 1,048,576
    makes its reader produce a million empty rows).
    """

    def __init__(self) -> None:
        self.limits = rows, self.columns, chars = MAX_TABLE_ROWS, MAX_TABLE_COLUMNS, MAX_TABLE_CHARS
        self.rows_left, self.chars_left = rows, chars
        self.cut_rows = self.cut_columns = False

    def take(self, rows: Iterable[Sequence[object]]) -> list[Sequence[object]]:
        """Rows from `rows` while the budget lasts, each cut to the column limit and its empty
        cells at the end dropped (a reader pads every row to the widest)."""
        taken: list[Sequence[object]] = []
        for row in rows:
            if len(row) > self.columns:
                self.cut_columns |= any(v is not None and v != "" for v in row[self.columns :])
                row = row[: self.columns]
            end = len(row)
            while end and (row[end - 1] is None or row[end - 1] == ""):
                end -= 1
            row = row[:end]
            chars = sum(min(len(str(v)), MAX_CELL_CHARS) for v in row if v is not None)
            if self.rows_left == 0 or chars > self.chars_left:
                self.cut_rows = True
                break
            self.rows_left -= 1
            self.chars_left -= chars
            taken.append(row)
        return taken

    def note(self) -> str:
        """What was not read, as a line of the text ("" when nothing was cut): a reader of the
        chunks, or of the answer that cites them, learns that the table goes on."""
        rows, columns, chars = self.limits
        cuts = []
        if self.cut_rows:
            cuts.append(f"rows after the first {rows:,} (or {chars / 2**20:g} MiB of cells)")
        if self.cut_columns:
            cuts.append(f"columns after the first {columns}")
        return f"(Not read: {' and '.join(cuts)} of this file's tables.)" if cuts else ""


# -- CSV ------------------------------------------------------------------------------------------


def read_csv(path: Path) -> str:
    """A CSV (or TSV) file as one Markdown table, its first row the header.

    The dialect (delimiter, quoting) is sniffed from the start of the file, so `;`-separated
    exports of European spreadsheets and tab-separated files read as well as commas; where the
    sniffer cannot tell (one column), the suffix decides.
    """

    text = read_text(path)  # UTF-8 or a one-line reason (NUL bytes, the offset of a bad byte)
    dialect = _dialect(text, tab=path.suffix.lower() == ".tsv")
    reader = csv.reader(io.StringIO(text, newline=""), dialect)
    budget = RowBudget()
    try:
        table = markdown_table(budget.take(reader))
    except csv.Error as e:
        raise ReadError(f"not a readable CSV file (line {reader.line_num}: {e})") from None
    return "\n\n".join(part for part in (table, budget.note()) if part)


def _dialect(text: str, tab: bool) -> type[csv.Dialect]:
    sample = text[:_SNIFF_CHARS]
    if len(text) > _SNIFF_CHARS and "\n" in sample:
        sample = sample[: sample.rindex("\n")]  # whole lines: a cut one looks like another dialect
    try:
        return csv.Sniffer().sniff(sample, delimiters=",;\t|")
    except csv.Error:
        return csv.excel_tab if tab else csv.excel


# -- JSON -----------------------------------------------------------------------------------------


def read_json(path: Path) -> str:
    """A JSON document as `path: value` lines, and its arrays of flat records as tables (see the
    module's docstring)."""

    data = read_bytes(path)
    if len(data) > MAX_JSON_BYTES:
        raise ReadError(
            f"{len(data) / 2**20:.0f} MiB of JSON, over the limit of {MAX_JSON_BYTES / 2**20:.0f} MiB "
            "(a JSON document is read whole); not read"
        )
    try:
        value = json.loads(decode_text(data))
    except json.JSONDecodeError as e:
        raise ReadError(f"not valid JSON ({e})") from None
    except RecursionError:  # Python's parser stops at ~1,000 levels; this one stops sooner, in words
        raise _too_deep() from None
    return "\n".join(_json_lines(value, "", 0))


def _too_deep() -> ReadError:
    return ReadError(f"JSON nested more than {MAX_JSON_DEPTH} levels deep; not read")


def _json_lines(value: object, path: str, depth: int) -> Iterator[str]:
    if depth > MAX_JSON_DEPTH:
        raise _too_deep()
    prefix = f"{path}: " if path else ""
    if isinstance(value, dict):
        if not value:
            yield f"{prefix}{{}}"
        for key, item in value.items():
            step = key if _PLAIN_KEY.fullmatch(key) else json.dumps(key, ensure_ascii=False)
            yield from _json_lines(item, f"{path}.{step}" if path else step, depth + 1)
    elif isinstance(value, list):
        if not value:
            yield f"{prefix}[]"
        elif _records(value):
            keys = list(dict.fromkeys(key for record in value for key in record))
            table = markdown_table([keys, *([_scalar(r[k]) if k in r else "" for k in keys] for r in value)])
            yield f"{path}:\n\n{table}\n" if path else f"{table}\n"
        else:
            for i, item in enumerate(value):
                yield from _json_lines(item, f"{path}[{i}]", depth + 1)
    else:
        yield prefix + _scalar(value)


def _records(items: list[object]) -> bool:
    """Two or more objects whose values are all plain (no objects or arrays inside)."""
    return len(items) > 1 and all(
        isinstance(item, dict) and item and not any(isinstance(v, dict | list) for v in item.values()) for item in items
    )


def _scalar(value: object) -> str:
    """A plain value as people write it: strings bare, numbers, true, false and null as in JSON."""
    return value if isinstance(value, str) else json.dumps(value)
