"""Office Open XML (.docx .pptx .xlsx) as Markdown: headings as `#` lines, tables as pipe tables.

The text a person sees, in the order they see it, with the structure that tells a chunk where it
is: a document's headings, a slide's number and title, a sheet's name. A table's cells keep their
row and column (ingest/tables.py): read as loose text, a figure loses its year and line item.

All three formats, and EPUB (ingest/epub.py), are zip archives of XML; `check_zip` refuses the
ones that unzip to far more than they weigh, before any library parses them.
"""

from __future__ import annotations

import datetime as dt
import warnings
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from asyncrag.errors import ReadError
from asyncrag.ingest.data import RowBudget
from asyncrag.ingest.tables import markdown_table

if TYPE_CHECKING:
    from docx.document import Document as DocxDocument
    from lxml.etree import _Element
    from pptx.shapes.base import BaseShape
    from pptx.slide import Slide

# What a zip-based file may unzip to: its XML, parsed whole by python-docx and python-pptx (lxml
# takes ~5-10x the XML's bytes), streamed by openpyxl. Upload and `max_file_mb` limits see the
# compressed bytes: 70 MiB of XML zip to 70 KB.
MAX_UNZIPPED_BYTES = 64 * 2**20
# A member that unzips to more than this many times its compressed size counts against the limit.
# XML compresses 5-20x, a bomb 1,000x; images, fonts and media are compressed already (~1x), are
# never parsed here, and are bounded by the file's own size.
_COMPRESSIBLE = 2
_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # the binary Office formats, and encrypted OOXML

_W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"
_MC_FALLBACK = "{http://schemas.openxmlformats.org/markup-compatibility/2006}Fallback"
_HEADING_STYLES = {"Title": 1, **{f"Heading {n}": min(n, 6) for n in range(1, 10)}}


def check_zip(path: Path) -> None:
    """Refuse a zip-based file that is not a zip, or whose members unzip past `MAX_UNZIPPED_BYTES`.

    The sizes come from the zip's directory, which a crafted file may lie in; `zipfile` never
    returns more than a member's stated size (and fails its CRC check when the data holds more),
    so what the libraries read is bounded by what is checked here.
    """
    kind = path.suffix.lower()
    try:
        with path.open("rb") as f:
            if f.read(len(_OLE_MAGIC)) == _OLE_MAGIC:
                raise ReadError(
                    f"not a valid {kind} file: it is password-protected, or an old binary Office file "
                    "(.doc .ppt .xls) under a new name; not read"
                )
        with zipfile.ZipFile(path) as z:
            members = z.infolist()
    except OSError as e:
        raise ReadError(f"cannot read file: {e.strerror}") from None
    except (zipfile.BadZipFile, ValueError) as e:  # ValueError: a zip directory whose numbers do not add up
        raise ReadError(f"not a valid {kind} file ({e})") from None
    unzipped = sum(m.file_size for m in members if m.file_size > _COMPRESSIBLE * m.compress_size)
    if unzipped > MAX_UNZIPPED_BYTES:
        raise ReadError(
            f"unzips to {unzipped / 2**20:.0f} MiB of XML, over the limit of "
            f"{MAX_UNZIPPED_BYTES / 2**20:.0f} MiB (a zip bomb?); not read"
        )


@contextmanager
def malformed_as_read_error(path: Path) -> Iterator[None]:
    """A library's complaint about a malformed file (a missing part, broken XML, a bad number) as
    one line naming the format: each library has its own exceptions, and a crafted file reaches
    the odd `KeyError` or `AttributeError` deep inside one, which is the file's fault, not ours."""
    try:
        yield
    except ReadError:
        raise
    except Exception as e:  # noqa: BLE001 - see above; the type is kept in the message for a report
        detail = " ".join(str(e).split())[:200] or "no detail"
        raise ReadError(f"not a valid {path.suffix.lower()} file ({type(e).__name__}: {detail})") from None


# -- .docx ----------------------------------------------------------------------------------------


def read_docx(path: Path) -> str:
    """A Word document's body as Markdown: paragraphs and tables in document order, "Heading N" and
    "Title" paragraphs as `#` lines, list items as `- ` lines, text boxes after their paragraph.

    Paragraph text is read from the XML rather than python-docx's `Paragraph.text`, which skips
    tracked insertions, fields and content controls inside a paragraph; deleted text (`w:delText`)
    and field codes are not text and stay out. Headers and footers are left out: they repeat on
    every page and would be chunks of their own.
    """
    check_zip(path)
    with malformed_as_read_error(path):
        import docx

        document = docx.Document(str(path))
        return "\n\n".join(_Word(document).blocks(document.element.body))


class _Word:
    """One document's reader: its style names, looked up once (python-docx's `Paragraph.style`
    searches the styles part on every call: 93 % of the time on a 100-page document)."""

    def __init__(self, document: DocxDocument) -> None:
        self.document = document
        self.styles = {style.style_id: style.name or "" for style in document.styles}

    def blocks(self, container: _Element, plain: bool = False) -> Iterator[str]:
        """Markdown blocks of a body, a content control, a cell or a text box, in order; `plain`:
        text only (inside a table's cell, where a heading mark or a nested table's pipes are noise)."""
        from docx.table import Table

        for child in container:
            if child.tag == f"{_W}p":
                boxes: list[_Element] = []
                text = "".join(_inline_text(child, boxes)).strip()
                if text:
                    yield text if plain else self.paragraph(child, text)
                for box in boxes:
                    yield from self.blocks(box, plain)
            elif child.tag == f"{_W}tbl":
                rows = self.rows(Table(child, self.document))
                table = " ".join(cell for row in rows for cell in row) if plain else markdown_table(rows)
                if table.strip():
                    yield table
            elif child.tag in (f"{_W}sdt", f"{_W}sdtContent", f"{_W}customXml"):
                yield from self.blocks(child, plain)

    def paragraph(self, p: Any, text: str) -> str:
        style = self.styles.get(p.style or "", "")
        level = _HEADING_STYLES.get(style)
        if level:
            return "#" * level + " " + " ".join(text.split())
        if style.startswith("List") or (p.pPr is not None and p.pPr.numPr is not None):
            return "- " + text
        return text

    def rows(self, table: Any) -> Iterator[list[str]]:
        """A table's rows as cell texts, one per column of its grid: a merged cell repeats in every
        column and row it spans (so that each row reads whole), a row that starts late is padded."""
        for row in table.rows:
            cells = [" ".join(self.blocks(cell._tc, plain=True)) for cell in row.cells]
            yield [""] * row.grid_cols_before + cells + [""] * row.grid_cols_after


def _inline_text(element: _Element, boxes: list[_Element]) -> Iterator[str]:
    """A paragraph's text: its runs wherever they sit (hyperlinks, insertions, fields, controls).
    Text boxes are kept in `boxes`, blocks of their own; of an alternative (`mc:AlternateContent`),
    only the first choice is read, since its fallback holds the same text again."""
    for child in element:
        tag = child.tag
        if tag == f"{_W}t":
            yield child.text or ""
        elif tag == f"{_W}tab":
            yield "\t"
        elif tag in (f"{_W}br", f"{_W}cr"):
            yield "\n"
        elif tag == f"{_W}txbxContent":
            boxes.append(child)
        elif tag != _MC_FALLBACK and isinstance(tag, str):  # comments and processing instructions have no str tag
            yield from _inline_text(child, boxes)


# -- .pptx ----------------------------------------------------------------------------------------


def read_pptx(path: Path) -> str:
    """A presentation as one `# Slide N: title` section per slide: the slide's text frames (groups
    opened), its tables as Markdown, then its speaker notes under `## Notes`. Slides without text
    are left out, so a deck of pictures only is "no text in file"."""
    check_zip(path)
    with malformed_as_read_error(path):
        from pptx import Presentation

        slides = Presentation(str(path)).slides
        return "\n\n".join(section for n, slide in enumerate(slides, 1) if (section := _slide(n, slide)))


def _slide(number: int, slide: Slide) -> str:
    title_shape = slide.shapes.title
    title = " ".join(title_shape.text_frame.text.split()) if title_shape is not None else ""
    blocks = [block for shape in slide.shapes if shape != title_shape for block in _shape_blocks(shape)]
    if slide.has_notes_slide and (notes_frame := slide.notes_slide.notes_text_frame) is not None:
        notes = _frame_text(notes_frame)
        if notes:
            blocks += ["## Notes", notes]
    if not title and not blocks:
        return ""
    return "\n\n".join([f"# Slide {number}: {title}" if title else f"# Slide {number}", *blocks])


def _shape_blocks(shape: BaseShape) -> Iterator[str]:
    from pptx.shapes.autoshape import Shape
    from pptx.shapes.graphfrm import GraphicFrame
    from pptx.shapes.group import GroupShape

    if isinstance(shape, GroupShape):
        for member in shape.shapes:
            yield from _shape_blocks(member)
    elif isinstance(shape, GraphicFrame) and shape.has_table:
        table = markdown_table([cell.text for cell in row.cells] for row in shape.table.rows)
        if table:
            yield table
    elif isinstance(shape, Shape) and shape.has_text_frame:
        text = _frame_text(shape.text_frame)
        if text:
            yield text


def _frame_text(frame: Any) -> str:
    """A text frame's paragraphs, one a line (a line break inside one, `\\v` to python-pptx, too)."""
    lines = (p.text.replace("\v", "\n").strip() for p in frame.paragraphs)
    return "\n".join(line for line in lines if line)


# -- .xlsx ----------------------------------------------------------------------------------------


def read_xlsx(path: Path) -> str:
    """A workbook as one `# Sheet name` section per sheet that has cells, its rows as a Markdown
    table (the first row the header). Formulas are read as the values Excel last computed.

    openpyxl streams each sheet (`read_only`) and its rows are taken from one `RowBudget` for the
    whole file, so a huge sheet costs the budget, and the text says what was not read. A sheet's
    stated size is ignored (reset), since a crafted one makes openpyxl pad every row to it; rows
    are read to the budget's columns (`data.MAX_TABLE_COLUMNS`), one more to see whether any were cut.
    """
    check_zip(path)
    with malformed_as_read_error(path):
        from openpyxl import load_workbook

        # "Workbook contains no default style" and the like: notes on the file, for its writer
        warnings.filterwarnings("ignore", category=UserWarning, module=r"openpyxl\.")
        workbook = load_workbook(path, read_only=True, data_only=True)
        try:
            budget, sections = RowBudget(), []
            for sheet in workbook.worksheets:
                if budget.cut_rows:
                    break
                sheet.reset_dimensions()
                rows = sheet.iter_rows(max_col=budget.columns + 1, values_only=True)
                table = markdown_table([_cell_value(v) for v in row] for row in budget.take(rows))
                if table:
                    sections.append(f"# {sheet.title}\n\n{table}")
        finally:
            workbook.close()
    return "\n\n".join([*sections, budget.note()]).strip()


def _cell_value(value: object) -> object:
    """A cell's value as Excel shows it by default: 15 significant digits (not 0.30000000000000004),
    a date without a midnight time."""
    if isinstance(value, float):
        return f"{value:.15g}"
    if isinstance(value, dt.datetime):
        return value.date().isoformat() if value.time() == dt.time(0) else value.isoformat(sep=" ")
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    return value
