"""Question → top-k chunks. Concurrent questions share embedding batches and Milvus searches."""

from __future__ import annotations

import asyncio

from llama_index.core.vector_stores.types import BasePydanticVectorStore, VectorStoreQuery
from pymilvus.exceptions import MilvusException

from asyncrag.embed import Embedder
from asyncrag.errors import FilterError, StoreError, one_line
from asyncrag.results import Source
from asyncrag.store import expr
from asyncrag.store.coalesce import Coalescer


class Retriever:
    def __init__(self, store: BasePydanticVectorStore, embedder: Embedder) -> None:
        self.store = store
        self.embedder = embedder
        self._embeddings: Coalescer[None, str, list[float]] | None = None

    async def embed_query(self, text: str) -> list[float]:
        if self._embeddings is None:  # created lazily: it belongs to the running event loop
            self._embeddings = Coalescer(self._embed_batch, max_items=64, max_in_flight=1)
        return await self._embeddings.submit(None, text)

    async def _embed_batch(self, _: None, texts: list[str]) -> list[list[float]]:
        return await asyncio.to_thread(self.embedder.embed, texts)

    async def retrieve(self, question: str, k: int = 5, filter: str = "") -> list[Source]:
        """The top `k` chunks; `filter` is the user's Milvus expression (StoreError if it is invalid)."""
        filter = expr.user_filter(filter)
        query = VectorStoreQuery(query_embedding=await self.embed_query(question), similarity_top_k=k)
        try:
            result = await self.store.aquery(query, string_expr=filter)
        except MilvusException as e:
            if filter:
                raise FilterError(f"invalid filter {filter!r}: {one_line(e.message)}") from None
            raise StoreError(f"search failed: {one_line(e.message)}") from None
        return [
            Source(
                text=node.get_content(),
                score=float(score),
                source=str(node.metadata.get("source", "?")),
                page=node.metadata.get("page"),
            )
            for node, score in zip(result.nodes or [], result.similarities or [], strict=True)
        ]
