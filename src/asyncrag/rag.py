"""The library's front door: one object per collection, async first, with a sync twin.

    async with AsyncRAG(collection="docs") as rag:
        await rag.ingest(["papers/"])
        answer = await rag.ask("What is ...?")

Models load lazily: `stats()` needs no embedding model, `search()` no LLM.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

from asyncrag.config import Settings
from asyncrag.embed import Embedder, load_embedder
from asyncrag.ingest.chunk import ChunkSpec, chunk_spec_for
from asyncrag.ingest.pipeline import Limits, Progress, ingest
from asyncrag.llm import ChatModel, load_llm
from asyncrag.query.answer import retrieval_only, stream_answer
from asyncrag.query.retrieve import Retriever
from asyncrag.results import Answer, CollectionStats, IngestReport, Source
from asyncrag.store import milvus
from asyncrag.store.vector_store import CoalescingMilvusVectorStore

T = TypeVar("T")
_UNSET = object()


class AsyncRAG:
    """`embedder` may be given already loaded (tests, servers): loading a model takes seconds."""

    def __init__(self, settings: Settings | None = None, *, embedder: Embedder | None = None, **overrides: Any) -> None:
        self.settings = (settings or Settings()).override(**overrides)
        self._embedder = embedder
        self._store: CoalescingMilvusVectorStore | None = None
        self._retriever: Retriever | None = None
        self._llm: Any = _UNSET

    async def __aenter__(self) -> AsyncRAG:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._store is not None:
            await self._store.aflush_pending()
            if self._store.aclient is not None:
                await self._store.aclient.close()
            self._store.client.close()
            self._store = None

    # -- parts, loaded on first use ------------------------------------------------------

    async def embedder(self) -> Embedder:
        if self._embedder is None:
            s = self.settings
            self._embedder = await asyncio.to_thread(load_embedder, s.embed_model)
        return self._embedder

    async def store(self) -> CoalescingMilvusVectorStore:
        if self._store is None:
            s = self.settings
            client = milvus.connect(s.uri, s.token)  # a server that does not answer fails before model loading
            try:
                e = await self.embedder()
                # Built on the event loop's thread: its async client belongs to this loop.
                self._store = milvus.open_store(
                    client, s.uri, s.collection, embed_model=e.name, dim=e.dim, token=s.token,
                    consistency_level=s.consistency_level,
                )
            finally:
                client.close()
        return self._store

    async def llm(self) -> ChatModel | None:
        """The configured LLM; raises LLMUnavailable (with how to configure one) if it cannot load."""
        if self._llm is _UNSET:
            self._llm = await asyncio.to_thread(load_llm, self.settings.llm)
        return self._llm

    def disable_llm(self) -> None:
        self._llm = None

    async def chunk_spec(self) -> ChunkSpec:
        e = await self.embedder()
        s = self.settings
        return chunk_spec_for(e.max_tokens, e.tokenizer_file, s.chunk_size, s.chunk_overlap)

    # -- what users do -------------------------------------------------------------------

    async def ingest(self, paths: list[str | Path], on_progress: Progress | None = None) -> IngestReport:
        s = self.settings
        limits = Limits(
            embed_batch=s.embed_batch_size,
            parse_workers=s.parse_workers,
            pdf_pages_per_unit=s.pdf_pages_per_task,
            max_file_bytes=s.max_file_mb * 2**20,
        )
        return await ingest(
            paths,
            store=await self.store(),
            embedder=await self.embedder(),
            chunk_spec=await self.chunk_spec(),
            limits=limits,
            on_progress=on_progress,
        )

    async def search(self, question: str, k: int | None = None, filter: str = "") -> list[Source]:
        if self._retriever is None:
            self._retriever = Retriever(await self.store(), await self.embedder())
        return await self._retriever.retrieve(question, k or self.settings.top_k, filter)

    async def ask(
        self, question: str, k: int | None = None, filter: str = "", on_token: Callable[[str], None] | None = None
    ) -> Answer:
        sources = await self.search(question, k, filter)
        llm = await self.llm()
        if llm is None:
            return Answer(retrieval_only(sources), sources)
        pieces = []
        async for piece in stream_answer(llm, question, sources, self.settings.max_answer_tokens):
            pieces.append(piece)
            if on_token:
                on_token(piece)
        return Answer("".join(pieces).strip(), sources)

    async def stats(self) -> CollectionStats:
        s = self.settings
        client = milvus.connect(s.uri, s.token)
        try:
            if not client.has_collection(s.collection):
                raise milvus.StoreError(f"no collection {s.collection!r} at {s.uri}: ingest something first")
            return await asyncio.to_thread(milvus.stats, client, s.collection)
        finally:
            client.close()

    async def collections(self) -> list[CollectionStats]:
        s = self.settings
        client = milvus.connect(s.uri, s.token)
        try:
            names = sorted(client.list_collections())
            return [await asyncio.to_thread(milvus.stats, client, name) for name in names]
        finally:
            client.close()


class RAG:
    """The same API, blocking: an event loop runs in a background thread."""

    def __init__(self, settings: Settings | None = None, **overrides: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="asyncrag-loop", daemon=True)
        self._thread.start()
        self.rag = AsyncRAG(settings, **overrides)

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def ingest(self, paths: list[str | Path], on_progress: Progress | None = None) -> IngestReport:
        return self._run(self.rag.ingest(paths, on_progress))

    def search(self, question: str, k: int | None = None, filter: str = "") -> list[Source]:
        return self._run(self.rag.search(question, k, filter))

    def ask(self, question: str, k: int | None = None, filter: str = "") -> Answer:
        return self._run(self.rag.ask(question, k, filter))

    def stats(self) -> CollectionStats:
        return self._run(self.rag.stats())

    def collections(self) -> list[CollectionStats]:
        return self._run(self.rag.collections())

    def close(self) -> None:
        self._run(self.rag.aclose())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()

    def __enter__(self) -> RAG:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
