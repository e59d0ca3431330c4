"""The unit of parallel parsing: a whole file, or a range of a PDF's pages.

Big PDFs are cut into page ranges so that the first chunks reach the embedder at once,
instead of after the whole file is parsed and chunked (~4 s for a 300-page 10-K).
Units run in parser processes or a parser thread; each builds its splitter once.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from llama_index.core.node_parser import SentenceSplitter
from llama_index.core.schema import BaseNode

from asyncrag.ingest.chunk import ChunkSpec, chunk, make_splitter
from asyncrag.ingest.read import pdf_page_count, read_file, read_pdf_pages


@dataclass(frozen=True)
class Unit:
    path: Path
    pages: tuple[int, int] | None = None  # [first, last) for a PDF; None for a whole file

    @property
    def source(self) -> str:
        return str(self.path)


_splitter: SentenceSplitter | None = None


def init_worker(spec: ChunkSpec) -> None:
    global _splitter
    _splitter = make_splitter(spec)


def plan(path: Path, pages_per_unit: int) -> list[Unit]:
    if path.suffix.lower() != ".pdf":
        return [Unit(path)]
    n = pdf_page_count(path)
    if n == 0:
        return [Unit(path, (0, 0))]
    return [Unit(path, (i, min(i + pages_per_unit, n))) for i in range(0, n, pages_per_unit)]


def parse(unit: Unit) -> list[BaseNode]:
    assert _splitter is not None, "init_worker() first"
    if unit.pages is None:
        docs = read_file(unit.path, unit.source)
    else:
        docs = read_pdf_pages(unit.path, unit.source, *unit.pages)
    return chunk(_splitter, docs)
