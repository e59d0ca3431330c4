"""The unit of parallel parsing: a whole file, a range of a PDF's pages, or a stretch of a big text file.

Big files are cut into units so that the first chunks reach the embedder at once, and so that a
file of any size streams through in bounded memory: a 300-page 10-K in ranges of 16 pages, a
200 MB text file in stretches of ~64 KB cut at paragraph breaks. Units run in a parser thread
or in parser processes; the splitter for a chunking spec is made once per worker.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from llama_index.core.node_parser import SentenceSplitter
from llama_index.core.schema import BaseNode

from asyncrag.config import OcrEngine
from asyncrag.ingest.chunk import ChunkSpec, chunk, make_splitter
from asyncrag.ingest.read import (
    TEXT_SUFFIXES,
    check_pdf_pages,
    pages_to_ocr,
    pdf_page_count,
    read_file,
    read_pdf_pages,
    read_text_range,
)

_CUT_SEARCH = 64 * 1024  # how far past a stretch's end to look for a paragraph break


@dataclass(frozen=True)
class Unit:
    path: Path
    source: str  # the path as people see it (citations)
    doc_id: str
    version: str  # of the document's content and the settings that chunk and embed it
    pdf_pages: tuple[int, int] | None = None  # [first, last)
    text_bytes: tuple[int, int] | None = None  # [start, end) of a big text file
    text_offset: int = 0  # where that stretch starts in the file's text, in characters (citation spans)

    @property
    def key(self) -> int | None:
        """Where the unit starts in its file, when it is not the whole file (chunk ids use it)."""
        return self.text_bytes[0] if self.text_bytes else None


@functools.lru_cache(maxsize=8)
def splitter_for(spec: ChunkSpec) -> SentenceSplitter:
    """One splitter per spec: concurrent ingests with different chunk sizes never share one."""
    return make_splitter(spec)


def plan(unit: Unit, pages_per_unit: int, text_bytes_per_unit: int, ocr: OcrEngine = "off") -> list[Unit]:
    """`unit` (a whole file) cut into the units to parse; a scanned page is a unit of its own when
    OCR is on (seconds each: they spread over the parsers, and progress moves page by page)."""
    suffix = unit.path.suffix.lower()
    if suffix == ".pdf":
        n = pdf_page_count(unit.path)
        check_pdf_pages(unit.path, 0, n)
        scans = set(pages_to_ocr(unit.path, 0, n)) if ocr != "off" else set()
        return [Unit(**{**unit.__dict__, "pdf_pages": r}) for r in _page_ranges(n, pages_per_unit, scans)]
    if suffix in TEXT_SUFFIXES and unit.path.stat().st_size > text_bytes_per_unit:
        cuts = _stretches(unit.path, text_bytes_per_unit)
        return [
            Unit(**{**unit.__dict__, "text_bytes": r, "text_offset": at})
            for r, at in zip(cuts, _char_offsets(unit.path, cuts), strict=True)
        ]
    return [unit]


def _page_ranges(pages: int, per_unit: int, scans: set[int]) -> list[tuple[int, int]]:
    """[first, last) ranges of up to `per_unit` pages; each page in `scans` alone."""
    ranges: list[tuple[int, int]] = []
    start = 0
    for i in range(pages):
        if i in scans or i - start == per_unit:
            if i > start:
                ranges.append((start, i))
            start = i
        if i in scans:
            ranges.append((i, i + 1))
            start = i + 1
    if start < pages:
        ranges.append((start, pages))
    return ranges or [(0, 0)]


def _stretches(path: Path, target: int) -> list[tuple[int, int]]:
    """Byte ranges of about `target` bytes, each ending after a blank line, else a newline, when one is near.

    A newline never occurs inside a UTF-8 character, so each stretch decodes on its own; with no
    newline near, the cut goes before the next character's first byte.
    """
    size = path.stat().st_size
    cuts = [0]
    with path.open("rb") as f:
        while size - cuts[-1] > target:
            f.seek(cuts[-1] + target)
            ahead = f.read(_CUT_SEARCH)
            at = ahead.find(b"\n\n") + 2 if b"\n\n" in ahead else ahead.find(b"\n") + 1
            if at <= 0:
                at = next((i for i, byte in enumerate(ahead) if byte & 0xC0 != 0x80), len(ahead))
            cut = cuts[-1] + target + at
            if cut >= size:
                break
            cuts.append(cut)
    return list(zip(cuts, [*cuts[1:], size], strict=True))


def _char_offsets(path: Path, cuts: list[tuple[int, int]]) -> list[int]:
    """Where each stretch starts in the file's decoded text, so that a chunk's span is the file's,
    not its stretch's: one pass over the file, decoded as `read_text_range` decodes it."""
    offsets, chars = [], 0
    with path.open("rb") as f:
        for start, end in cuts:
            offsets.append(chars)
            chars += len(f.read(end - start).decode("utf-8-sig" if start == 0 else "utf-8", "replace"))
    return offsets


def parse(unit: Unit, spec: ChunkSpec) -> list[BaseNode]:
    if unit.pdf_pages is not None:
        docs = read_pdf_pages(unit.path, unit.source, *unit.pdf_pages, spec.ocr, spec.pdf_tables)
    elif unit.text_bytes is not None:
        docs = read_text_range(unit.path, unit.source, *unit.text_bytes)
    else:
        docs = read_file(unit.path, unit.source, spec.ocr)
    return chunk(splitter_for(spec), docs, unit.doc_id, unit.version, unit.key, unit.text_offset)
