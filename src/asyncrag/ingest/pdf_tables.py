"""Tables in PDF pages, as Markdown in the page's text where PDFium had loose lines.

PDFium's text of a financial statement is one line per row ("Revenue $ 13,000 $ 11,139 $ 17,455")
with the column heads ("2019 2020 2021") lines above: a chunk cut below them no longer says which
figure is which year. pdfplumber finds ruled tables (its "lines" strategy) and their cells; here
they are cleaned (a "$" or "%" cell joins its figure, a column repeated for a merged cell goes),
given the column heads printed above the rules, and written as Markdown tables, which the
chunker splits by rows, repeating the header (ingest/chunk.py).

Compared on the Uber 10-K's statements (docs/formats.md): pdfplumber's "lines" strategy found the
statements' rows and cells, its "text" strategy cut words apart; PyMuPDF's finder found the same
rows, is AGPL-licensed, and also splits "(44)%" in two. Neither finds the column heads above a
statement's rules; both take pdfplumber's ~0.17 s a page, so only pages that look like they hold a
table (drawn rules, and rows of figures: 72 of the 10-K's 307 pages, ~13 s in all) are searched.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from asyncrag.ingest.tables import markdown_table

if TYPE_CHECKING:
    import pypdfium2 as pdfium
    from pdfplumber.pdf import PDF

log = logging.getLogger(__name__)

FIGURE = re.compile(r"^\(?[$€£]?\s?[\d,.]+\)?%?$|^[—–-]$")
MIN_RULES = 10  # drawn paths (rules, shading) on a page that may hold a ruled table
MIN_FIGURE_ROWS = 3  # lines with two figures or more
HEAD_BAND_PT = 36  # how far above a table's first rule its column heads may be printed
TITLE_BAND_PT = 72  # and its title (which starts left of the figures)
MAX_TITLE_LINE_CHARS, MAX_TITLE_CHARS = 100, 160
MIN_ROWS, MIN_COLUMNS = 2, 2
ALIGN_PT = 8  # figures whose right edges are this close are one column


@dataclass(frozen=True)
class Table:
    top: float  # from the page's top, in points (pdfplumber's coordinates)
    bottom: float
    markdown: str


def may_hold_table(page: pdfium.PdfPage, text: str) -> bool:
    """Cheap (PDFium, ~3 ms): drawn rules and rows of figures. pdfplumber then looks (~0.17 s)."""
    import pypdfium2.raw as pdfium_c

    rows = sum(1 for line in text.splitlines() if sum(1 for w in line.split() if FIGURE.match(w)) >= 2)
    if rows < MIN_FIGURE_ROWS:
        return False
    paths = page.get_objects(filter=[pdfium_c.FPDF_PAGEOBJ_PATH], max_depth=2)
    return sum(1 for _ in zip(range(MIN_RULES), paths, strict=False)) >= MIN_RULES


class TableFinder:
    """The tables of one PDF's pages, by pdfplumber, opened at the first page that may hold one.

    A page pdfplumber cannot read keeps PDFium's loose text: pdfminer's errors on malformed
    files are many, and tables are a bonus on text the page already has.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._pdf: PDF | None = None
        self._broken = False

    def page_text(self, page: pdfium.PdfPage, text: str, index: int) -> str:
        """`text` (PDFium's, of page `index`) with its tables as Markdown."""
        if self._broken or not may_hold_table(page, text):
            return text
        try:
            if self._pdf is None:
                import pdfplumber

                self._pdf = pdfplumber.open(self.path)
            tables = _find_tables(self._pdf, index)
        except Exception as e:  # noqa: BLE001 - see the class's docstring
            log.debug("no tables read from page %d of %s (%s)", index + 1, self.path, e)
            self._broken = self._pdf is None
            return text
        return page_text(page, text, tables)

    def close(self) -> None:
        if self._pdf is not None:
            self._pdf.close()


def _find_tables(pdf: PDF, index: int) -> list[Table]:
    page = pdf.pages[index]
    found = sorted(page.find_tables(), key=lambda t: t.bbox[1])
    words = page.extract_words() if found else []
    tables = []
    above = 0.0
    for table in found:
        top, bottom = table.bbox[1], table.bbox[3]
        rows = _rows(table)
        columns = _columns([value for _, values in rows for value in values])
        if len(columns) >= MIN_COLUMNS - 1 and sum(1 for _, values in rows if values) >= MIN_ROWS:
            stub, head = _head(words, columns, max(above, top - TITLE_BAND_PT), top)
            body = [[label, *_place(values, columns)] for label, values in rows]
            tables.append(Table(top, bottom, markdown_table([[stub, *head], *body] if any(head) else body)))
        above = bottom
    return tables


_Cell = tuple[float, float, str]  # (x0, x1, text)


def _rows(table: Any) -> list[tuple[str, list[_Cell]]]:
    """Each row's label (its first column) and its other cells with their x-ranges; a lone "$"
    joins the figure after it, a lone "%" or ")" the figure before it."""
    rows = []
    for row, texts in zip(table.rows, table.extract(), strict=True):
        label = " ".join((texts[0] or "").split()) if texts else ""
        cells: list[_Cell] = []
        for box, text in zip(row.cells[1:], texts[1:], strict=True):
            text = " ".join((text or "").split())
            if box is None or not text:
                continue
            if cells and text in ("%", ")%", ")"):
                x0, _, before = cells[-1]
                cells[-1] = (x0, box[2], before + text)
            elif cells and cells[-1][2] in ("$", "€", "£"):
                x0, _, sign = cells[-1]
                cells[-1] = (x0, box[2], sign + text)
            else:
                cells.append((box[0], box[2], text))
        rows.append((label, cells))
    return rows


def _columns(cells: list[_Cell]) -> list[tuple[float, float]]:
    """The table's columns of values, left to right: cells whose right edges line up (figures are
    right-aligned) are one column, however many drawn columns the PDF split it into."""
    columns: list[tuple[float, float]] = []
    for x0, x1, _ in sorted(cells, key=lambda c: c[1]):
        if columns and x1 - columns[-1][1] <= ALIGN_PT:
            columns[-1] = (min(columns[-1][0], x0), x1)
        else:
            columns.append((x0, x1))
    return columns


def _place(cells: list[_Cell], columns: list[tuple[float, float]]) -> list[str]:
    placed = [""] * len(columns)
    for _, x1, text in cells:
        i = min(range(len(columns)), key=lambda j: abs(columns[j][1] - x1))
        placed[i] = f"{placed[i]} {text}".strip()
    return placed


def _head(
    words: list[dict[str, Any]], columns: list[tuple[float, float]], top: float, bottom: float
) -> tuple[str, list[str]]:
    """The header row's cells from the lines printed between `top` and `bottom` (the table's first
    rule): its stub (the labels' column: the table's title, which starts left of the values) and
    each column's head (printed over the values, at most HEAD_BAND_PT above the rule).

    A phrase over several columns ("Year Ended December 31,") heads each of them; the words all
    heads begin with go to the stub once ("Year Ended December 31, | 2019 | 2020"), as does what
    starts left of the values ("(In millions)"): every piece of a long table repeats the header,
    and the embedding model should read its figures' years, not the same phrase three times.
    """
    if not columns:
        return "", []
    band = sorted((w for w in words if w["top"] >= top and w["bottom"] <= bottom), key=lambda w: (w["top"], w["x0"]))
    heads: list[list[str]] = [[] for _ in columns]
    stub: list[str] = []
    left = columns[0][0] - ALIGN_PT
    for x0, x1, text, line_top in _phrases(band):
        if x0 < left:
            stub = [*stub, text] if _title_like(text) else []  # prose above the title is not the table's
            continue
        if line_top < bottom - HEAD_BAND_PT:
            continue
        for i, (c0, c1) in enumerate(columns):
            if x0 < c1 and x1 > c0:
                heads[i].append(text)
    while sum(map(len, stub)) > MAX_TITLE_CHARS:  # the lines nearest the table say most about it
        stub.pop(0)
    cells = [" ".join(parts) for parts in heads]
    shared = _shared_words([c for c in cells if c])
    if shared and all(c == "" or len(c.split()) > shared for c in cells):
        stub.append(" ".join(next(c for c in cells if c).split()[:shared]))
        cells = [" ".join(c.split()[shared:]) for c in cells]
    return " ".join(stub), cells


def _title_like(line: str) -> bool:
    """A table's title or unit note ("CONSOLIDATED BALANCE SHEETS", "(In millions)", "Revenue"),
    not a line of the prose above it, which runs long or ends a sentence."""
    line = line.strip()
    if line.startswith("(") and line.endswith(")"):
        return len(line) <= MAX_TITLE_LINE_CHARS
    return (line.isupper() or len(line) <= 40) and not line.endswith((".", ":", ",", ";"))


def _shared_words(texts: list[str]) -> int:
    """How many leading words all `texts` (two or more) share."""
    if len(texts) < 2:
        return 0
    n = 0
    for words in zip(*(t.split() for t in texts), strict=False):
        if len(set(words)) > 1:
            break
        n += 1
    return n


def _phrases(words: list[dict[str, Any]]) -> list[tuple[float, float, str, float]]:
    """Words on a line less than a space apart, joined: (x0, x1, text, top)."""
    phrases: list[tuple[float, float, float, str]] = []  # (top, x0, x1, text)
    for w in words:
        if phrases and abs(phrases[-1][0] - w["top"]) < 2 and w["x0"] - phrases[-1][2] < 4:
            line_top, x0, _, text = phrases[-1]
            phrases[-1] = (line_top, x0, w["x1"], f"{text} {w['text']}")
        else:
            phrases.append((w["top"], w["x0"], w["x1"], w["text"]))
    return [(x0, x1, text, top) for top, x0, x1, text in phrases]


def page_text(page: pdfium.PdfPage, text: str, tables: list[Table]) -> str:
    """The page's text with each table's lines replaced by its Markdown: PDFium's text above,
    between and below the tables (full-width bands), the tables in their places."""
    if not tables:
        return text
    textpage = page.get_textpage()
    width, height = page.get_size()
    parts = []
    top = 0.0
    for table in tables:
        parts.append(textpage.get_text_bounded(0, height - table.top, width, height - top))
        parts.append("\n\n" + table.markdown + "\n\n")
        top = table.bottom
    parts.append(textpage.get_text_bounded(0, 0, width, height - top))
    return "".join(parts).replace("\r\n", "\n").replace("\r", "\n")
