"""Tables (issue 21): a PDF's ruled tables become Markdown tables with their column heads, and a
table too long for one chunk is cut between rows, each piece under the table's header row."""

from __future__ import annotations

from pathlib import Path

import pypdfium2 as pdfium
import pytest
from conftest import HashEmbedder
from llama_index.core.schema import MetadataMode

from asyncrag.ingest.chunk import ChunkSpec, chunk, embed_text, make_splitter
from asyncrag.ingest.pdf_tables import TableFinder
from asyncrag.ingest.read import document, read_pdf_pages
from asyncrag.ingest.tables import markdown_table
from asyncrag.rag import AsyncRAG

STATEMENT = 76  # the 10-K's consolidated statements of operations (0-based)
# the title (printed left of the figures) and the words every column head shares head the labels' column
HEAD = (
    "| CONSOLIDATED STATEMENTS OF OPERATIONS (In millions, except share amounts which are reflected in thousands, "
    "and per share amounts) Year Ended December 31, | 2019 | 2020 | 2021 |"
)


@pytest.fixture(scope="module")
def tenk(shared_data: Path) -> Path:
    return shared_data / "uber_2021.pdf"


def test_a_statement_becomes_a_markdown_table_with_its_years(tenk: Path) -> None:
    [page] = read_pdf_pages(tenk, str(tenk), STATEMENT, STATEMENT + 1)
    assert page.metadata["page"] == STATEMENT + 1
    lines = page.text.splitlines()
    assert HEAD in lines
    assert "| Revenue | $13,000 | $11,139 | $17,455 |" in lines  # "$" joined to its figure, one column a year
    assert "| Research and development | 4,836 | 2,205 | 2,054 |" in lines
    assert "CONSOLIDATED STATEMENTS OF OPERATIONS" in page.text  # the text around the table stays


def test_loose_text_when_tables_are_off(tenk: Path) -> None:
    [page] = read_pdf_pages(tenk, str(tenk), STATEMENT, STATEMENT + 1, tables=False)
    assert "|" not in page.text and "Revenue $ 13,000 $ 11,139 $ 17,455" in " ".join(page.text.split())


def test_pages_without_tables_are_not_searched(tenk: Path) -> None:
    pdf = pdfium.PdfDocument(tenk)
    finder = TableFinder(tenk)
    try:
        page = pdf[11]  # prose
        text = page.get_textpage().get_text_range()
        assert finder.page_text(page, text, 11) == text
        assert finder._pdf is None  # pdfplumber never opened
    finally:
        finder.close()
        pdf.close()


def test_a_long_table_is_cut_between_rows_under_its_header() -> None:
    rows = [["", "2019", "2020", "2021"], *([f"Line item {i}", f"{i},001", f"{i},002", f"({i})"] for i in range(60))]
    text = "# Statement\n\nThe table below.\n\n" + markdown_table(rows) + "\n\nProse after the table."
    nodes = chunk(make_splitter(ChunkSpec(128, 32)), [document(text, "s.md")], "s", "v1")
    pieces = [n for n in nodes if n.get_content().startswith("|")]
    assert len(pieces) > 3
    seen = []
    for piece in pieces:
        header, separator, *body = piece.get_content().split("\n")
        assert (header, separator) == ("|  | 2019 | 2020 | 2021 |", "|---|---|---|---|")
        assert all(row.startswith("| Line item ") and row.endswith("|") for row in body)  # whole rows only
        assert text[piece.start_char_idx : piece.end_char_idx].endswith("\n".join(body))  # its span: its rows
        seen += body
    assert seen == markdown_table(rows).split("\n")[2:]  # every row once, in order
    assert [n.get_content() for n in nodes if not n.get_content().startswith("|")] == [
        "# Statement\n\nThe table below.",
        "Prose after the table.",
    ]
    assert all(n.metadata["heading"] == "Statement" for n in nodes)


def test_a_row_too_long_for_a_chunk_is_split_as_prose() -> None:
    long_row = "| " + " ".join(["word"] * 400) + " | 1 |"
    text = markdown_table([["a", "b"], ["x", "1"]]) + "\n" + long_row + "\n| y | 2 |"
    nodes = chunk(make_splitter(ChunkSpec(64, 8)), [document(text, "t.md")], "t", "v1")
    contents = [n.get_content() for n in nodes]
    assert contents[0].startswith("| a | b |") and "| x | 1 |" in contents[0]
    assert contents[-1] == "| a | b |\n|---|---|\n| y | 2 |"
    assert "word word" in " ".join(contents[1:-1])


@pytest.mark.slow
async def test_a_figure_is_found_under_its_year(tenk: Path, tmp_path: Path, hash_embedder: HashEmbedder) -> None:
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter()
    writer.add_page(PdfReader(tenk).pages[STATEMENT])
    one = tmp_path / "statement.pdf"
    with one.open("wb") as f:
        writer.write(f)
    async with AsyncRAG(embedder=hash_embedder, uri=str(tmp_path / "m.db"), llm="none") as rag:
        assert (await rag.ingest([one])).ok
        hits = await rag.search("Net loss attributable to Uber Technologies", k=20)
        tables = [s.text for s in hits if s.text.startswith("|")]
        assert tables and all(t.startswith(HEAD) for t in tables)


def test_a_table_is_embedded_read_out_row_by_row_and_stored_as_markdown() -> None:
    table = markdown_table([["Year Ended December 31,", "2019", "2020"], ["Revenue", "$13,000", "$11,139"], ["a|b", "", "7"]])
    text = "Results of operations.\n\n" + table + "\n\nMore prose."
    before, node, _after = chunk(make_splitter(ChunkSpec(256, 32)), [document(text, "r.md")], "r", "v1")
    assert node.get_content() == table  # stored, shown and given to the LLM as the table
    assert embed_text(node) == "file_name: r.md\n\nYear Ended December 31,\nRevenue: 2019 $13,000; 2020 $11,139.\na|b: 2020 7.\n"
    assert embed_text(before) == before.get_content(metadata_mode=MetadataMode.EMBED)  # prose as it is


def test_an_html_table_is_a_markdown_table_with_its_first_row_as_header() -> None:
    from asyncrag.ingest.html import html_to_markdown

    text = html_to_markdown("<table><tr><td>Item</td><td>2024</td></tr><tr><td>Tea</td><td>5</td></tr></table>")
    assert text == "| Item | 2024 |\n| --- | --- |\n| Tea | 5 |"
