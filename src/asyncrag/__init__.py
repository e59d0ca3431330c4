"""asyncrag: fast asynchronous RAG over your documents, with LlamaIndex and Milvus."""

from asyncrag.config import Settings
from asyncrag.rag import RAG, AsyncRAG
from asyncrag.results import Answer, CollectionStats, Failure, IngestReport, Source

__all__ = ["RAG", "Answer", "AsyncRAG", "CollectionStats", "Failure", "IngestReport", "Settings", "Source"]
__version__ = "0.1.0"
