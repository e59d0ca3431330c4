"""OCR (issue 21): scanned PDF pages and images are read, only the pages that need it, and say so.

The scans are made here from the tutorial's 10-K (tests/scans.py): its pages drawn to pictures and
bound into an image-only PDF, as a scanner makes them. Both engines are real: RapidOCR (bundled)
and Debian's tesseract (CI installs tesseract-ocr; elsewhere its tests skip when it is missing).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from conftest import HashEmbedder
from scans import scanned_copy

from asyncrag.ingest import ocr
from asyncrag.ingest.ocr import _lines
from asyncrag.ingest.pipeline import IngestProgress
from asyncrag.rag import AsyncRAG

COVER, STATEMENT = 0, 76  # the 10-K's cover page and its consolidated statements of operations
ENGINES = [
    "rapidocr",
    pytest.param(
        "tesseract",
        marks=pytest.mark.skipif(
            shutil.which("tesseract") is None and not os.environ.get("CI"),
            reason="tesseract-ocr is not installed (CI installs it)",
        ),
    ),
]


@pytest.fixture(scope="module")
def tenk(shared_data: Path) -> Path:
    return shared_data / "uber_2021.pdf"


@pytest.fixture(scope="module")
def scan(tenk: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return scanned_copy(tenk, tmp_path_factory.mktemp("scan") / "uber_scan.pdf", [COVER, STATEMENT], dpi=200)


@pytest.fixture(scope="module")
def mixed(tenk: Path, scan: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Page 1 a scan (the cover), page 2 the 10-K's own text page 3: as a PDF with one scanned insert."""
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter()
    writer.add_page(PdfReader(scan).pages[0])
    writer.add_page(PdfReader(tenk).pages[2])
    path = tmp_path_factory.mktemp("mixed") / "mixed.pdf"
    with path.open("wb") as f:
        writer.write(f)
    return path


def test_boxes_become_lines_in_reading_order() -> None:
    def box(left: float, top: float, right: float, bottom: float) -> list[list[float]]:
        return [[left, top], [right, top], [right, bottom], [left, bottom]]

    found = [
        (box(300, 12, 400, 30), "17,455"),  # a row's figure, a little lower than its label
        (box(10, 10, 200, 28), "Revenue"),
        (box(10, 40, 200, 58), "Cost of revenue"),
        (box(10, 120, 200, 138), "Next paragraph"),
    ]
    assert _lines(found) == "Revenue 17,455\nCost of revenue\n\nNext paragraph"


@pytest.mark.slow
@pytest.mark.parametrize("engine", ENGINES)
async def test_a_scanned_pdf_is_read_by_ocr_and_its_sources_say_so(
    engine: str, scan: Path, tmp_path: Path, hash_embedder: HashEmbedder
) -> None:
    seen: list[IngestProgress] = []
    async with AsyncRAG(embedder=hash_embedder, uri=str(tmp_path / "m.db"), llm="none", ocr=engine) as rag:
        report = await rag.ingest([scan], on_progress=seen.append)
        assert report.ok, report.failures
        done = [p.bytes_done for p in seen]
        assert done == sorted(done) and any(0 < d < scan.stat().st_size for d in done)  # it moved page by page
        hits = await rag.search("UBER TECHNOLOGIES consolidated statements of operations revenue", k=20)
        assert {s.page for s in hits} == {1, 2}
        assert all(s.ocr == engine and s.citation.endswith("(OCR)") for s in hits)
        text = " ".join(s.text for s in hits)
        for words in ("Francisco", "17,455", "Revenue"):  # the cover's address, a figure of the statement
            assert words in text, (words, text[:500])


@pytest.mark.slow
async def test_only_pages_without_a_text_layer_are_ocrd(mixed: Path, tmp_path: Path, hash_embedder: HashEmbedder) -> None:
    async with AsyncRAG(embedder=hash_embedder, uri=str(tmp_path / "m.db"), llm="none") as rag:
        assert (await rag.ingest([mixed])).ok
        hits = await rag.search("Uber Technologies annual report", k=50)
        assert {s.page: s.ocr for s in hits} == {1: "rapidocr", 2: None}


@pytest.mark.slow
async def test_an_image_file_is_read_by_ocr(tenk: Path, tmp_path: Path, hash_embedder: HashEmbedder) -> None:
    import pypdfium2 as pdfium

    image = tmp_path / "cover.png"
    pdfium.PdfDocument(tenk)[COVER].render(scale=200 / 72).to_pil().save(image)
    async with AsyncRAG(embedder=hash_embedder, uri=str(tmp_path / "m.db"), llm="none") as rag:
        assert (await rag.ingest([image])).ok
        hits = await rag.search("Securities and Exchange Commission Washington", k=5)
        assert hits and hits[0].source == str(image) and hits[0].ocr == "rapidocr" and hits[0].page is None
        assert "Washington" in " ".join(s.text for s in hits)


async def test_a_missing_engine_fails_the_file_in_one_line(
    scan: Path, tmp_path: Path, hash_embedder: HashEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no tesseract on it
    ocr.engine.cache_clear()
    try:
        async with AsyncRAG(embedder=hash_embedder, uri=str(tmp_path / "m.db"), llm="none", ocr="tesseract") as rag:
            report = await rag.ingest([scan])
    finally:
        ocr.engine.cache_clear()
    assert [f.reason for f in report.failures] == [
        "OCR engine tesseract is not installed: `apt-get install tesseract-ocr`, or use --ocr rapidocr"
    ]


async def test_with_ocr_off_a_scan_has_no_text(scan: Path, tmp_path: Path, hash_embedder: HashEmbedder) -> None:
    async with AsyncRAG(embedder=hash_embedder, uri=str(tmp_path / "m.db"), llm="none", ocr="off") as rag:
        report = await rag.ingest([scan])
    assert len(report.failures) == 1 and "no extractable text" in report.failures[0].reason


def test_a_huge_page_is_drawn_within_the_pixel_budget(tmp_path: Path) -> None:
    import pypdfium2 as pdfium
    from pypdf import PdfWriter

    from asyncrag.ingest.ocr import MAX_OCR_PIXELS, RENDER_SCALE
    from asyncrag.ingest.read import _draw

    writer = PdfWriter()
    writer.add_blank_page(14_400, 14_400)  # 200 inches a side: 57,600 px at the usual scale
    path = tmp_path / "huge.pdf"
    with path.open("wb") as f:
        writer.write(f)
    picture = _draw(pdfium.PdfDocument(path)[0], 1, RENDER_SCALE["tesseract"])
    assert picture.width * picture.height <= MAX_OCR_PIXELS and picture.width > 1000
