"""Office files, EPUB and data files (.docx .pptx .xlsx .epub .csv .tsv .json): their text in reading
order, their tables as Markdown, ingested end to end; hostile ones fail alone, in one line.

Every file is made here with its own library (python-docx, python-pptx, openpyxl; zipfile for
EPUB): no binary fixtures in the repository.
"""

from __future__ import annotations

import datetime as dt
import json
import zipfile
from pathlib import Path

import pytest

from asyncrag.errors import ReadError
from asyncrag.ingest import data
from asyncrag.ingest.data import read_csv, read_json
from asyncrag.ingest.epub import read_epub
from asyncrag.ingest.office import MAX_UNZIPPED_BYTES, read_docx, read_pptx, read_xlsx
from asyncrag.ingest.read import SUFFIXES, read_file

ZIP_SUFFIXES = (".docx", ".pptx", ".xlsx", ".epub")

# -- builders ---------------------------------------------------------------------------------------


def make_docx(path: Path, figure: str = "1,377") -> Path:
    import docx

    document = docx.Document()
    document.add_heading("Annual report", 0)
    document.add_heading("Revenue by year", 1)
    document.add_paragraph("The paragraph before the table.")
    rows = [["Year", "Revenue", "Profit"], ["2023", "1,204", "87"], ["2024", figure, "91"]]
    table = document.add_table(rows=3, cols=3)
    for r, row in enumerate(rows):
        for c, value in enumerate(row):
            table.cell(r, c).text = value
    document.add_paragraph("The paragraph after the table.")
    document.add_heading("Outlook", 2)
    document.add_paragraph("Cautious optimism.", style="List Bullet")
    document.save(str(path))
    return path


def make_pptx(path: Path, figure: str = "4,521", slides: int = 1) -> Path:
    from pptx import Presentation
    from pptx.util import Inches

    deck = Presentation()
    for n in range(1, slides + 1):
        slide = deck.slides.add_slide(deck.slide_layouts[1])  # title and content
        slide.shapes.title.text = "Quarterly results" if n == 1 else f"Slide about topic {n}"
        slide.placeholders[1].text = f"Sales grew in every region\nMargins held at {n} points"
        table = slide.shapes.add_table(2, 2, Inches(1), Inches(4), Inches(4), Inches(1)).table
        for (r, c), value in {(0, 0): "Region", (0, 1): "Units", (1, 0): "North", (1, 1): figure}.items():
            table.cell(r, c).text = value
        slide.notes_slide.notes_text_frame.text = f"Thank the sales team ({n})."
    deck.slides.add_slide(deck.slide_layouts[6])  # blank: no text, left out
    deck.save(str(path))
    return path


def make_xlsx(path: Path, figure: int = 48213, rows: int = 2) -> Path:
    from openpyxl import Workbook

    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.title = "Sales"
    sheet.append(["Item", "Price", "Sold", "Date"])
    sheet.append(["Tea", 0.1 + 0.2, figure, dt.datetime(2024, 1, 2)])
    for i in range(rows - 1):
        sheet.append([f"Item {i}", i * 1.5, i, dt.datetime(2024, 1, 3, 9, 30)])
    workbook.create_sheet("Empty")
    workbook.create_sheet("Notes").append(["Checked by", "Ada"])
    workbook.save(path)
    return path


CONTAINER = (
    '<?xml version="1.0"?><container version="1.0" xmlns="urn:oasis:names:tc:opendocument:xmlns:container">'
    '<rootfiles><rootfile full-path="OEBPS/content.opf" media-type="application/oebps-package+xml"/>'
    "</rootfiles></container>"
)


def make_epub(path: Path, chapters: list[tuple[str, str]], encrypted: bool = False) -> Path:
    """A minimal EPUB 3: a nav document, then `chapters` (title, body HTML) in the spine, listed in
    the manifest in reverse, so that only the spine gives the reading order."""
    items = [
        f'<item id="c{i}" href="text/ch%20{i}.xhtml" media-type="application/xhtml+xml"/>' for i in range(len(chapters))
    ]
    opf = (
        '<?xml version="1.0" encoding="utf-8"?><package xmlns="http://www.idpf.org/2007/opf" version="3.0">'
        '<metadata xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:title>A book</dc:title></metadata><manifest>'
        '<item id="nav" href="nav.xhtml" media-type="application/xhtml+xml" properties="nav"/>'
        '<item id="css" href="style.css" media-type="text/css"/>'
        + "".join(reversed(items))
        + '</manifest><spine><itemref idref="nav"/>'
        + "".join(f'<itemref idref="c{i}"/>' for i in range(len(chapters)))
        + "</spine></package>"
    )
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(zipfile.ZipInfo("mimetype"), "application/epub+zip")
        z.writestr("META-INF/container.xml", CONTAINER)
        z.writestr("OEBPS/content.opf", opf)
        z.writestr("OEBPS/style.css", "p { color: black }")
        z.writestr(
            "OEBPS/nav.xhtml",
            '<html xmlns="http://www.w3.org/1999/xhtml"><body><nav epub:type="toc"><ol><li>'
            '<a href="text/ch%200.xhtml">Contents entry</a></li></ol></nav></body></html>',
        )
        for i, (title, body) in enumerate(chapters):
            z.writestr(
                f"OEBPS/text/ch {i}.xhtml",
                f'<?xml version="1.0" encoding="utf-8"?><html xmlns="http://www.w3.org/1999/xhtml"><head>'
                f"<title>{title}</title></head><body><h1>{title}</h1>{body}</body></html>",
            )
        if encrypted:
            z.writestr(
                "META-INF/encryption.xml",
                '<encryption xmlns="urn:oasis:names:tc:opendocument:xmlns:container" '
                'xmlns:enc="http://www.w3.org/2001/04/xmlenc#"><enc:EncryptedData><enc:CipherData>'
                '<enc:CipherReference URI="OEBPS/text/ch%200.xhtml"/></enc:CipherData></enc:EncryptedData></encryption>',
            )
    return path


def make_csv(path: Path, figure: str = "73619") -> Path:
    path.write_text(f'city;population;note\nOslo;{figure};capital\nBergen;291940;"rainy; west"\n', encoding="utf-8")
    return path


def make_json(path: Path, figure: int = 90210) -> Path:
    document = {
        "company": {"name": "Acme", "tags": ["tools", "anvils"]},
        "orders": [{"id": 1, "total": figure}, {"id": 2, "total": 12.5, "note": "rush"}],
        "weird key": None,
        "empty": [],
    }
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


# -- what each reader writes ------------------------------------------------------------------------


def test_docx_keeps_paragraphs_and_tables_in_document_order(tmp_path: Path) -> None:
    text = read_docx(make_docx(tmp_path / "report.docx"))
    assert text.split("\n\n") == [
        "# Annual report",
        "# Revenue by year",
        "The paragraph before the table.",
        "| Year | Revenue | Profit |\n|---|---|---|\n| 2023 | 1,204 | 87 |\n| 2024 | 1,377 | 91 |",
        "The paragraph after the table.",
        "## Outlook",
        "- Cautious optimism.",
    ]


def test_docx_merged_cells_text_boxes_and_tracked_insertions(tmp_path: Path) -> None:
    """Text python-docx's `Paragraph.text` misses (an insertion, a text box, a content control) is
    read, a text box once; a merged cell repeats in every column it spans; deleted text is not text."""
    import docx
    from docx.oxml import parse_xml

    document = docx.Document()
    w = 'xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"'
    document.element.body.insert(
        0,
        parse_xml(
            f"<w:p {w}><w:r><w:t>Kept </w:t></w:r><w:ins><w:r><w:t>inserted</w:t></w:r></w:ins>"
            "<w:del><w:r><w:delText>deleted</w:delText></w:r></w:del></w:p>"
        ),
    )
    box = "<w:txbxContent><w:p><w:r><w:t>Boxed</w:t></w:r></w:p></w:txbxContent>"
    document.element.body.insert(  # Word's text box: a choice, and a fallback holding the same text
        1,
        parse_xml(
            f'<w:p {w} xmlns:mc="http://schemas.openxmlformats.org/markup-compatibility/2006"><w:r><w:t>Around</w:t>'
            f'</w:r><w:r><mc:AlternateContent><mc:Choice Requires="wps"><w:drawing>{box}</w:drawing></mc:Choice>'
            f"<mc:Fallback><w:pict>{box}</w:pict></mc:Fallback></mc:AlternateContent></w:r></w:p>"
        ),
    )
    document.element.body.insert(
        2,
        parse_xml(
            f"<w:sdt {w}><w:sdtContent><w:p><w:r><w:t>In a content control</w:t></w:r></w:p></w:sdtContent></w:sdt>"
        ),
    )
    table = document.add_table(rows=2, cols=3)
    table.cell(0, 0).merge(table.cell(0, 1)).text = "Both years"
    table.cell(0, 2).text = "Total"
    for c, value in enumerate(["1", "2", "3"]):
        table.cell(1, c).text = value
    path = tmp_path / "edits.docx"
    document.save(str(path))
    text = read_docx(path)
    assert text.startswith("Kept inserted\n\nAround\n\nBoxed\n\nIn a content control\n\n")
    assert "deleted" not in text
    assert "| Both years | Both years | Total |\n|---|---|---|\n| 1 | 2 | 3 |" in text


def test_pptx_is_a_section_per_slide_with_its_table_and_notes(tmp_path: Path) -> None:
    text = read_pptx(make_pptx(tmp_path / "deck.pptx"))
    assert text == (
        "# Slide 1: Quarterly results\n\n"
        "Sales grew in every region\nMargins held at 1 points\n\n"
        "| Region | Units |\n|---|---|\n| North | 4,521 |\n\n"
        "## Notes\n\nThank the sales team (1)."
    )  # slide 2 is blank: no section


def test_xlsx_is_a_section_per_sheet_with_values_as_excel_shows_them(tmp_path: Path) -> None:
    text = read_xlsx(make_xlsx(tmp_path / "book.xlsx"))
    assert text == (
        "# Sales\n\n| Item | Price | Sold | Date |\n|---|---|---|---|\n"
        "| Tea | 0.3 | 48213 | 2024-01-02 |\n| Item 0 | 0 | 0 | 2024-01-03 09:30:00 |\n\n"
        "# Notes\n\n| Checked by | Ada |\n|---|---|"
    )


def test_xlsx_rows_over_the_budget_are_cut_and_the_text_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(data, "MAX_TABLE_ROWS", 50)
    monkeypatch.setattr(data, "MAX_TABLE_COLUMNS", 3)
    text = read_xlsx(make_xlsx(tmp_path / "big.xlsx", rows=200))
    assert text.count("\n| Item ") == 49 and "# Notes" not in text  # the header, 49 rows; the next sheet: none
    assert "| Date |" not in text
    assert text.endswith(
        "(Not read: rows after the first 50 (or 16 MiB of cells) and columns after the first 3 of this file's tables.)"
    )


def test_xlsx_stated_size_is_not_trusted(tmp_path: Path) -> None:
    """A sheet that says it spans A1:XFD1048576 (17 billion cells) is read by its cells."""
    path = make_xlsx(tmp_path / "liar.xlsx")
    patched = tmp_path / "patched.xlsx"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(patched, "w", zipfile.ZIP_DEFLATED) as dst:
        for item in src.infolist():
            body = src.read(item)
            if item.filename == "xl/worksheets/sheet1.xml":
                body = body.replace(b'<dimension ref="A1:D3"/>', b'<dimension ref="A1:XFD1048576"/>')
                assert b"XFD1048576" in body
            dst.writestr(item, body)
    assert "| Tea | 0.3 | 48213 | 2024-01-02 |" in read_xlsx(patched)


def test_epub_follows_the_spine_and_reads_chapters_as_markdown(tmp_path: Path) -> None:
    path = make_epub(
        tmp_path / "book.epub",
        [
            ("Chapter One", "<p>It was a <em>dark</em> night.</p>"),
            ("Chapter Two", "<h2>A part</h2><p>Morning came.</p>"),
        ],
    )
    text = read_epub(path)
    assert text == "# Chapter One\n\nIt was a *dark* night.\n\n# Chapter Two\n\n## A part\n\nMorning came."
    assert "Contents entry" not in text  # the EPUB 3 table of contents is navigation


def test_csv_is_one_table_in_its_sniffed_dialect(tmp_path: Path) -> None:
    assert read_csv(make_csv(tmp_path / "cities.csv")) == (
        "| city | population | note |\n|---|---|---|\n| Oslo | 73619 | capital |\n| Bergen | 291940 | rainy; west |"
    )
    tsv = tmp_path / "plain.tsv"
    tsv.write_text("name\tscore\nAda\t10\n")
    assert read_csv(tsv) == "| name | score |\n|---|---|\n| Ada | 10 |"


def test_json_is_path_lines_and_record_tables(tmp_path: Path) -> None:
    assert read_json(make_json(tmp_path / "acme.json")) == (
        "company.name: Acme\ncompany.tags[0]: tools\ncompany.tags[1]: anvils\n"
        "orders:\n\n| id | total | note |\n|---|---|---|\n| 1 | 90210 |  |\n| 2 | 12.5 | rush |\n\n"
        '"weird key": null\nempty: []'
    )


def test_every_format_is_a_supported_suffix() -> None:
    assert {".docx", ".pptx", ".xlsx", ".epub", ".csv", ".tsv", ".json"} <= SUFFIXES


# -- hostile files ----------------------------------------------------------------------------------


def corrupt_zip(d: Path, suffix: str) -> Path:
    path = d / f"broken{suffix}"
    path.write_bytes(b"PK\x03\x04 this is not really a zip archive" + bytes(range(256)) * 2)
    return path


def zip_bomb(d: Path, suffix: str, mib: int = 70) -> Path:
    """A small file (~70 KB) whose one XML member unzips to `mib` MiB."""
    path = d / f"bomb{suffix}"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("[Content_Types].xml", "<Types/>")
        z.writestr("part.xml", b"<x>" + b" " * mib * 2**20 + b"</x>")
    return path


def zip_of_nothing_expected(d: Path, suffix: str) -> Path:
    path = d / f"stranger{suffix}"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("hello.txt", "a zip, but not of this format")
    return path


def empty_xlsx(d: Path) -> Path:
    from openpyxl import Workbook

    path = d / "empty.xlsx"
    Workbook().save(path)
    return path


def empty_pptx(d: Path) -> Path:
    from pptx import Presentation

    path = d / "empty.pptx"
    Presentation().save(str(path))
    return path


def deep_json(d: Path) -> Path:
    path = d / "deep.json"
    path.write_text("[" * 10**5 + "]" * 10**5)
    return path


def nested_json(d: Path) -> Path:
    """Nested past our limit, but within Python's parser's: our walk stops it."""
    path = d / "nested.json"
    path.write_text('{"a": ' * (data.MAX_JSON_DEPTH + 5) + "1" + "}" * (data.MAX_JSON_DEPTH + 5))
    return path


def bad_json(d: Path) -> Path:
    path = d / "bad.json"
    path.write_text('{"a": 1,,}')
    return path


def nul_csv(d: Path) -> Path:
    path = d / "nul.csv"
    path.write_bytes(b"a,b\n1,\x002\n")
    return path


def latin1_csv(d: Path) -> Path:
    path = d / "latin1.csv"
    path.write_bytes("ville,prix\nCréteil,3\n".encode("latin-1"))
    return path


def old_word_doc(d: Path) -> Path:
    path = d / "renamed.docx"
    path.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(512))
    return path


def drm_epub(d: Path) -> Path:
    return make_epub(d / "drm.epub", [("Locked", "<p>Secret.</p>")], encrypted=True)


# (builder, words the one-line reason holds)
HOSTILE = {
    **{
        f"corrupt{s}": (lambda d, s=s: corrupt_zip(d, s), f"not a valid {s} file (File is not a zip file)")
        for s in ZIP_SUFFIXES
    },
    **{
        f"bomb{s}": (lambda d, s=s: zip_bomb(d, s), "unzips to 70 MiB of XML, over the limit of 64 MiB")
        for s in ZIP_SUFFIXES
    },
    **{
        f"foreign-zip{s}": (lambda d, s=s: zip_of_nothing_expected(d, s), f"not a valid {s} file (")
        for s in ZIP_SUFFIXES
    },
    "empty-xlsx": (empty_xlsx, "no text in file"),
    "empty-pptx": (empty_pptx, "no text in file"),
    "deep-json": (deep_json, f"JSON nested more than {data.MAX_JSON_DEPTH} levels deep"),
    "nested-json": (nested_json, f"JSON nested more than {data.MAX_JSON_DEPTH} levels deep"),
    "bad-json": (bad_json, "not valid JSON (Expecting property name"),
    "nul-csv": (nul_csv, "binary content"),
    "latin1-csv": (latin1_csv, "not UTF-8 text (byte 0xe9 at offset 13)"),
    "old-word-doc": (old_word_doc, "password-protected, or an old binary Office file"),
    "drm-epub": (drm_epub, "encrypted EPUB (DRM)"),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_file_is_a_one_line_read_error(case: str, tmp_path: Path) -> None:
    build, reason = HOSTILE[case]
    path = build(tmp_path)
    with pytest.raises(ReadError) as caught:
        read_file(path, str(path))
    message = str(caught.value)
    assert reason in message, message
    assert "\n" not in message and "Traceback" not in message


def test_bomb_limit_counts_what_unzips_not_what_is_stored(tmp_path: Path) -> None:
    """Pictures (stored, or deflated to ~their size) do not count; a deck of photos is no bomb."""
    import os

    path = make_pptx(tmp_path / "photos.pptx")
    with zipfile.ZipFile(path, "a", zipfile.ZIP_DEFLATED) as z:
        z.writestr("ppt/media/photo.jpg", os.urandom(MAX_UNZIPPED_BYTES + 2**20))  # incompressible
    assert "| North | 4,521 |" in read_pptx(path)


# -- end to end: ingest, search, and hostile files beside good ones ---------------------------------


async def test_every_format_is_ingested_and_a_table_figure_is_found(
    tmp_path: Path, lite_uri: str, hash_embedder: object
) -> None:
    from asyncrag.rag import AsyncRAG

    good = tmp_path / "good"
    good.mkdir()
    figures = {
        make_docx(good / "report.docx", figure="61734"): "61734",
        make_pptx(good / "deck.pptx", figure="52817"): "52817",
        make_xlsx(good / "book.xlsx", figure=48213): "48213",
        make_epub(
            good / "book.epub",
            [("Harvest", "<table><tr><th>Crop</th><th>Tonnes</th></tr><tr><td>Quince</td><td>39157</td></tr></table>")],
        ): "39157",
        make_csv(good / "cities.csv", figure="73619"): "73619",
        make_json(good / "acme.json", figure=90210): "90210",
    }
    bad_dir = tmp_path / "bad"
    bad_dir.mkdir()
    bad = [HOSTILE[case][0](bad_dir) for case in ("corrupt.xlsx", "bomb.pptx", "deep-json", "nul-csv", "empty-xlsx")]
    async with AsyncRAG(embedder=hash_embedder, uri=lite_uri, collection="formats", parse_workers=0, llm="none") as rag:  # type: ignore[arg-type]
        report = await rag.ingest([good, *bad])
        assert report.files == len(figures), report.failures
        assert sorted(f.path for f in report.failures) == sorted(map(str, bad))
        assert all("\n" not in f.reason for f in report.failures)
        for path, figure in figures.items():
            hits = await rag.search(f"figure {figure}", k=1, mode="sparse")
            assert hits and hits[0].source == str(path) and figure in hits[0].text, (path, hits)
            assert "|" in hits[0].text  # found in its table row
        docx_hit = (await rag.search("61734", k=1, mode="sparse"))[0]
        # Word headings are sections (which one the chunk starts under is the chunker's business)
        assert docx_hit.heading in ("Annual report", "Revenue by year")
