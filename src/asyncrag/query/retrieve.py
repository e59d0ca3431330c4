"""Question → top-k chunks. Concurrent questions share embedding batches and Milvus searches."""

from __future__ import annotations

import asyncio
import copy

from llama_index.core.schema import BaseNode
from llama_index.core.vector_stores.types import BasePydanticVectorStore, VectorStoreQuery, VectorStoreQueryMode
from pymilvus.exceptions import MilvusException

from asyncrag.config import SearchMode
from asyncrag.embed import Embedder
from asyncrag.errors import FilterError, StoreError, one_line
from asyncrag.results import Source
from asyncrag.store.coalesce import Coalescer
from asyncrag.store.collection import Collection

QUERY_MODES = {
    "dense": VectorStoreQueryMode.DEFAULT,
    "sparse": VectorStoreQueryMode.SPARSE,
    "hybrid": VectorStoreQueryMode.HYBRID,
}


class Retriever:
    def __init__(self, collection: Collection, embedder: Embedder) -> None:
        self.collection = collection
        self.store: BasePydanticVectorStore = collection.store
        self.embedder = embedder
        self._embeddings: Coalescer[None, str, list[float]] | None = None

    def scoped(self, collection: Collection) -> Retriever:
        """A retriever of `collection` (a tenant's view of this one's) sharing this one's query
        embedding batches: a server's tenants share the model."""
        view = copy.copy(self)
        view.collection = collection
        view._embeddings = self._coalescer()
        return view

    def _coalescer(self) -> Coalescer[None, str, list[float]]:
        if self._embeddings is None:  # created lazily: it belongs to the running event loop
            self._embeddings = Coalescer(self._embed_batch, max_items=64, max_in_flight=1)
        return self._embeddings

    async def embed_query(self, text: str) -> list[float]:
        return await self._coalescer().submit(None, text)

    async def _embed_batch(self, _: None, texts: list[str]) -> list[list[float]]:
        return await asyncio.to_thread(self.embedder.embed, texts)

    def mode_for(self, mode: SearchMode) -> str:
        """The mode to run: "auto" is hybrid where the collection has a BM25 field, else dense."""
        sparse = getattr(self.store, "builtin_sparse", False)
        if mode == "auto":
            return "hybrid" if sparse else "dense"
        if mode != "dense" and not sparse:
            name = getattr(self.store, "collection_name", "the collection")
            if not getattr(self.store, "server_has_bm25", True):
                raise StoreError(
                    f"--mode {mode} needs BM25, which this Milvus server lacks (it arrived in Milvus 2.5): "
                    "use --mode dense, or a newer server"
                )
            raise StoreError(
                f"collection {name!r} has no BM25 field (it was made before hybrid search): "
                "run `asyncrag reindex` to add it, or use --mode dense"
            )
        return mode

    async def retrieve(self, question: str, k: int = 5, filter: str = "", mode: SearchMode = "auto") -> list[Source]:
        """The top `k` chunks; `filter` is the user's Milvus expression (FilterError if it is invalid).

        Dense and hybrid searches embed the question (batched with concurrent ones); a sparse
        (BM25) search needs no embedding: Milvus scores the words.
        """
        within = self.collection.search_filter(filter)
        run = self.mode_for(mode)
        query = VectorStoreQuery(
            query_embedding=None if run == "sparse" else await self.embed_query(question),
            query_str=question,
            similarity_top_k=k,
            mode=QUERY_MODES[run],
        )
        try:
            result = await self.store.aquery(query, string_expr=within)
        except MilvusException as e:
            if filter.strip():
                raise FilterError(f"invalid filter {filter.strip()!r}: {one_line(e.message)}") from None
            raise StoreError(f"search failed: {one_line(e.message)}") from None
        nodes = result.nodes or []
        shown = await self.collection.visible(nodes)
        return [
            _source(node, float(score))
            for node, score, show in zip(nodes, result.similarities or [], shown, strict=True)
            if show
        ]


def _source(node: BaseNode, score: float) -> Source:
    return Source(
        text=node.get_content(),
        score=score,
        source=str(node.metadata.get("source", "?")),
        page=node.metadata.get("page"),
        start=getattr(node, "start_char_idx", None),
        end=getattr(node, "end_char_idx", None),
        heading=node.metadata.get("heading"),
        anchor=node.metadata.get("anchor"),
        ocr=node.metadata.get("ocr"),
    )
