"""The small records that cross the library's boundary (CLI, JSON, Python API)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Source:
    """One retrieved chunk: what an answer may cite."""

    text: str
    score: float
    source: str
    page: int | None = None

    @property
    def citation(self) -> str:
        return f"{self.source}:{self.page}" if self.page is not None else self.source

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Answer:
    """An answer and the sources it may cite as [1], [2], ...

    `llm` names the model that wrote it; None means the answer is the retrieved passages
    themselves, because no LLM was wanted or because it failed (`llm_error` says why).
    """

    answer: str
    sources: list[Source]
    llm: str | None = None
    llm_error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "answer": self.answer,
            "sources": [s.to_dict() for s in self.sources],
            "llm": {"ok": self.llm_error is None, "model": self.llm, "error": self.llm_error},
        }


@dataclass(frozen=True)
class Failure:
    """An input that could not be ingested, and why, in words a user can act on."""

    path: str
    reason: str


@dataclass
class IngestReport:
    files: int = 0
    chunks: int = 0
    seconds: float = 0.0
    failures: list[Failure] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def chunks_per_second(self) -> float:
        return self.chunks / self.seconds if self.seconds else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "files": self.files,
            "chunks": self.chunks,
            "seconds": round(self.seconds, 3),
            "chunks_per_second": round(self.chunks_per_second, 2),
            "failures": [asdict(f) for f in self.failures],
        }


@dataclass(frozen=True)
class CollectionStats:
    name: str
    documents: int
    chunks: int
    embed_model: str | None
    dim: int | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
