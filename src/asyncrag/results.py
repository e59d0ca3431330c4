"""The small records that cross the library's boundary (CLI, JSON, Python API)."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any, Literal


@dataclass(frozen=True)
class Source:
    """One retrieved chunk: what an answer may cite, and where a reader finds it.

    `start`/`end` are the chunk's character offsets in its page (PDF) or file, so a reader can
    check the passage; `heading` is the path of Markdown (or HTML) headings it sits under, and
    `anchor` the nearest id on that path, so that `file.html#anchor` opens the page there. They
    are None where unknown (chunks stored before they were recorded). `ocr` names the engine
    that read the text off a scanned page or an image (None: the file's own text), so that a
    reader knows to allow for misread characters.
    """

    text: str
    score: float
    source: str
    page: int | None = None
    start: int | None = None
    end: int | None = None
    heading: str | None = None
    anchor: str | None = None
    ocr: str | None = None

    @property
    def citation(self) -> str:
        if self.page is not None:
            where = f"{self.source}:{self.page}"
        else:
            where = f"{self.source}#{self.anchor}" if self.anchor else self.source
        return f"{where} (OCR)" if self.ocr else where

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Answer:
    """An answer and the sources it may cite as [1], [2], ...

    `method` is "generated" (by the LLM `llm`, and checked), "extracted" (sentences quoted from the
    sources: the default with the bundled model, and what replaces an LLM answer that failed or
    failed its checks; `llm_error` then says why) or "none" (nothing was found). `query` is what
    was searched: the question, or a follow-up made standalone with the conversation's earlier turns.
    """

    answer: str
    sources: list[Source]
    llm: str | None = None
    llm_error: str | None = None
    method: Literal["generated", "extracted", "none"] = "extracted"
    query: str | None = None

    @property
    def cited(self) -> list[int]:
        """The source numbers (sorted) that the answer cites as [n] and that are among its sources.

        A small LLM may write [7] with three sources; such a number cites nothing and is left
        out, so each number here maps to `sources[n - 1]`. Inside a quotation (“...”) a [2] is the
        quoted document's own reference, not a citation.
        """
        numbers = (int(n) for n in re.findall(r"\[(\d{1,4})\]", re.sub(r"“[^”]*”", "", self.answer)))
        return sorted({n for n in numbers if 1 <= n <= len(self.sources)})

    def to_dict(self) -> dict[str, Any]:
        return {
            "answer": self.answer,
            "cited": self.cited,
            "sources": [s.to_dict() for s in self.sources],
            "method": self.method,
            "query": self.query,
            "llm": {"ok": self.llm_error is None, "model": self.llm, "error": self.llm_error},
        }


@dataclass(frozen=True)
class Failure:
    """An input that could not be ingested, and why, in words a user can act on."""

    path: str
    reason: str


class Status(StrEnum):
    """What an ingest run did with one file."""

    ADDED = "added"
    UPDATED = "updated"
    COPIED = "copied"  # its content was stored under another id (a rename, a move): chunks copied, nothing embedded
    UNCHANGED = "unchanged"  # nothing parsed, embedded or written
    DELETED = "deleted"  # gone from the given paths (--prune)
    FAILED = "failed"  # its stored chunks, if any, are kept as they were
    SKIPPED = "skipped"  # another shard's


_STORED = (Status.ADDED, Status.UPDATED, Status.COPIED)


@dataclass(frozen=True)
class FileReport:
    path: str
    doc_id: str | None  # None when the path never became a document (missing, unsupported, ...)
    status: Status
    chunks: int = 0  # written this run; for unchanged and deleted files, those stored
    seconds: float = 0.0
    error: str | None = None
    copied_from: str | None = None  # COPIED: the document whose stored chunks it took

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "status": str(self.status), "seconds": round(self.seconds, 3)}


@dataclass
class IngestReport:
    """One entry per file, in `documents`; the rest is summed up from them."""

    documents: list[FileReport] = field(default_factory=list)
    seconds: float = 0.0

    def count(self, status: Status) -> int:
        return sum(1 for d in self.documents if d.status is status)

    @property
    def files(self) -> int:
        """Files stored by this run (added, updated or copied)."""
        return sum(self.count(status) for status in _STORED)

    @property
    def chunks(self) -> int:
        """Chunks written by this run (copied ones too)."""
        return sum(d.chunks for d in self.documents if d.status in _STORED)

    @property
    def failures(self) -> list[Failure]:
        return [Failure(d.path, d.error or "") for d in self.documents if d.status is Status.FAILED]

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def chunks_per_second(self) -> float:
        return self.chunks / self.seconds if self.seconds else 0.0

    def counts(self) -> dict[str, int]:
        return {str(status): self.count(status) for status in Status}

    def to_dict(self) -> dict[str, Any]:
        return {
            "files": self.files,
            "chunks": self.chunks,
            "seconds": round(self.seconds, 3),
            "chunks_per_second": round(self.chunks_per_second, 2),
            "counts": self.counts(),
            "failures": [asdict(f) for f in self.failures],
            "documents": [d.to_dict() for d in self.documents],
        }


@dataclass(frozen=True)
class DocumentInfo:
    """A stored document, as the collection's record has it."""

    doc_id: str
    source: str
    chunks: int
    hash: str
    complete: bool  # False: a run was interrupted while writing it (the next run finishes it)
    updated_at: float
    size: int = 0  # the file's bytes when it was last read

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class CollectionStats:
    name: str
    documents: int
    chunks: int
    embed_model: str | None
    dim: int | None
    bm25: bool = False  # whether it has the BM25 field that sparse and hybrid search need

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
