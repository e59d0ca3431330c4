"""asyncrag: fast asynchronous RAG over your documents, with LlamaIndex and Milvus."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from asyncrag.config import Settings
    from asyncrag.rag import RAG, AsyncRAG
    from asyncrag.results import Answer, CollectionStats, Failure, IngestReport, Source

__version__ = "0.1.0"

# Exported lazily: parser processes import asyncrag.ingest.* and must not pay for Milvus and LlamaIndex stores.
_EXPORTS = {
    "Settings": "asyncrag.config",
    "RAG": "asyncrag.rag",
    "AsyncRAG": "asyncrag.rag",
    "Answer": "asyncrag.results",
    "CollectionStats": "asyncrag.results",
    "Failure": "asyncrag.results",
    "IngestReport": "asyncrag.results",
    "Source": "asyncrag.results",
}
__all__ = ["RAG", "Answer", "AsyncRAG", "CollectionStats", "Failure", "IngestReport", "Settings", "Source"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'asyncrag' has no attribute {name!r}")
