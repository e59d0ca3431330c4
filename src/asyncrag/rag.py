"""The library's front door: one object per collection, async first, with a sync twin.

    async with AsyncRAG(collection="docs") as rag:
        await rag.ingest(["papers/"])
        answer = await rag.ask("What is ...?")

Models load lazily: `stats()` needs no embedding model, `search()` no LLM.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypedDict, TypeVar, Unpack

from anyio.from_thread import start_blocking_portal

from asyncrag.config import SEARCH_MODES, TOP_K_MAX, SearchMode, Settings
from asyncrag.embed import Embedder, load_embedder
from asyncrag.errors import AsyncRAGError, ConfigError, milvus_errors
from asyncrag.ingest.chunk import ChunkSpec, chunk_spec_for
from asyncrag.ingest.pipeline import Limits, Options, Progress, delete_documents, ingest
from asyncrag.llm import ChatModel, load_llm
from asyncrag.query import answer
from asyncrag.query.answer import OnToken
from asyncrag.query.condense import condense
from asyncrag.query.retrieve import Retriever
from asyncrag.results import Answer, CollectionStats, DocumentInfo, IngestReport, Source
from asyncrag.store import keys, manifest, milvus, reindex, tenants
from asyncrag.store.collection import Collection, read_stats
from asyncrag.store.vector_store import CoalescingMilvusVectorStore

if TYPE_CHECKING:
    from asyncrag.ingest.on_ray import Cluster

log = logging.getLogger(__name__)
T = TypeVar("T")
P = ParamSpec("P")
_UNSET: Any = object()


class IngestOptions(TypedDict, total=False):
    """`ingest`'s keyword options (pipeline.Options): what one run does besides its settings."""

    prune: bool
    shard: tuple[int, int] | None
    doc_id_prefix: str | None


def _milvus_errors(method: Callable[P, Awaitable[T]]) -> Callable[P, Coroutine[Any, Any, T]]:
    """Milvus's own errors leave the library as StoreError: one line a user can act on."""

    @functools.wraps(method)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        with milvus_errors():
            return await method(*args, **kwargs)

    return wrapper


class AsyncRAG:
    """One collection: ingest files into it, search it, ask questions over it.

    Settings come from `settings` (default: flags > env > asyncrag.toml, see `Settings.load`) with
    `overrides` on top. `embedder` and `llm` may be given already loaded (tests, servers): loading a
    model takes seconds. `llm` may also be a spec string ("none", "openai:MODEL", ...).
    Errors a user can act on are `AsyncRAGError`s (asyncrag.errors).
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        embedder: Embedder | None = None,
        llm: ChatModel | str | None = None,
        **overrides: Any,
    ) -> None:
        if isinstance(llm, str):
            overrides["llm"] = llm
        self.settings = settings.override(**overrides) if settings else Settings.load(**overrides)
        self._embedder = embedder
        self._given_embedder = embedder  # what a Ray run's actors use too (else the embed_model setting)
        self._llm: ChatModel | None = _UNSET if llm is None or isinstance(llm, str) else llm
        self._collection: Collection | None = None  # as `tenant` sees it
        self._retriever: Retriever | None = None
        self._views: dict[str | None, AsyncRAG] = {}  # for_tenant's, sharing this one's clients
        self._owner = True  # a view (for_tenant) closes nothing: its clients are its owner's

    @property
    def tenant(self) -> str | None:
        """The tenant this works within (the `tenant` setting); None: the whole collection."""
        return self.settings.tenant

    async def __aenter__(self) -> AsyncRAG:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Finish pending writes and searches and close the Milvus clients."""
        if self._collection is not None and self._owner:
            await self._collection.close()
            self._collection = None
            self._retriever = None

    # -- parts, loaded on first use ------------------------------------------------------

    async def embedder(self) -> Embedder:
        """The embedding model, made on first use off the event loop (a local model's weights load
        on its first `embed`: a run with nothing to embed never loads them)."""
        if self._embedder is None:
            self._embedder = await asyncio.to_thread(load_embedder, self.settings.embed_model)
        return self._embedder

    async def collection(self, create: bool = False) -> Collection:
        """The collection, opened on first use. Only `create=True` (ingest) makes a missing one.

        Raises StoreError when Milvus does not answer, the collection is missing, or it holds
        vectors of another embedding model.
        """
        if self._collection is None:
            whole = await Collection.open(self.settings, self.embedder, create=create)
            try:
                self._collection = await whole.scoped(self.tenant) if self.tenant else whole
            except BaseException:
                await whole.close()
                raise
        elif create:  # opened for reading first
            await self._collection.make_writable()
        return self._collection

    async def for_tenant(self, tenant: str | None) -> AsyncRAG:
        """This collection as `tenant` sees it (None: the whole of it): the same Milvus clients,
        models and batches, every call within the tenant (store/tenants.py). Servers make one per
        tenant they serve; closing a view closes nothing. Raises StoreError for a collection
        made before tenants (`reindex` adds the field), ConfigError for a bad tenant name."""
        if tenant == self.tenant:
            return self
        if tenant is not None:
            tenants.check_name(tenant)
        view = self._views.get(tenant)
        if view is None:
            mine = await self.collection()
            await mine.open_store()
            view = copy.copy(self)
            view.settings = self.settings.model_copy(update={"tenant": tenant})  # (its name checked above)
            view._collection = await mine.scoped(tenant)
            view._retriever = (await self._retriever_for(mine)).scoped(view._collection)
            view._views, view._owner = {}, False
            self._views[tenant] = view
        return view

    async def _retriever_for(self, collection: Collection) -> Retriever:
        if self._retriever is None:
            await collection.open_store()
            self._retriever = Retriever(collection, await self.embedder())
        return self._retriever

    async def store(self, create: bool = False) -> CoalescingMilvusVectorStore:
        """The collection's vector store (LlamaIndex's `MilvusVectorStore`, coalescing)."""
        return await (await self.collection(create)).open_store()

    async def llm(self) -> ChatModel | None:
        """The configured LLM, None for "none"; raises LLMUnavailable (saying how to configure one)."""
        if self._llm is _UNSET:
            log.info("loading the LLM (%s)", self.settings.llm)
            self._llm = await asyncio.to_thread(load_llm, self.settings.llm)
        return self._llm

    def _small_llm(self) -> bool:
        """Whether the LLM is the bundled one or none (known before it loads: loading takes seconds)."""
        if self._llm is _UNSET:
            return not self.settings.llm.startswith("openai:")
        return self._llm is None or bool(getattr(self._llm, "bundled", False))

    async def chunk_spec(self) -> ChunkSpec:
        e = await self.embedder()
        s = self.settings
        return chunk_spec_for(e.max_tokens, e.tokenizer_file, s.chunk_size, s.chunk_overlap, s.ocr, s.pdf_tables)

    # -- what users do -------------------------------------------------------------------

    @_milvus_errors
    async def ingest(
        self, paths: list[str | Path], on_progress: Progress | None = None, **options: Unpack[IngestOptions]
    ) -> IngestReport:
        """Bring the collection up to date with files and folders (recursively); creates it if needed.

        Only what changed is parsed, embedded and written: unchanged files cost a stat. A changed
        file's new chunks replace its old ones once they are all written; a file that fails keeps
        its stored chunks. `prune` deletes the documents gone from `paths`; `shard=(i, n)` takes
        only the documents whose id hashes to shard i of n (workers sharing one Milvus);
        `doc_id_prefix` makes ids the prefix plus the path relative to the given folder (the default
        id is the file's absolute path). A run killed at any point resumes when run again.
        Returns a report with one entry per file (added / updated / unchanged / deleted / failed).
        Raises RunAborted when Milvus or the embedding endpoint stays down. The report's seconds
        include opening the collection (on Milvus Lite, most of an unchanged run's time).
        """
        started = time.perf_counter()
        report: IngestReport = await ingest(
            paths,
            await self.collection(create=True),
            embedder=await self.embedder(),
            chunk_spec=await self.chunk_spec(),
            limits=Limits.from_settings(self.settings),
            options=Options(**options, cluster=self._cluster()),
            on_progress=on_progress,
        )
        shown = [dataclasses.replace(d, doc_id=self._shown(d.doc_id)) if d.doc_id else d for d in report.documents]
        return dataclasses.replace(report, documents=shown, seconds=time.perf_counter() - started)

    def _cluster(self) -> Cluster | None:
        """The Ray cluster the `ray` setting names (ingest/on_ray.py), or None: ingest in this process."""
        if not self.settings.ray:
            return None
        try:
            from asyncrag.ingest.on_ray import Cluster
        except ModuleNotFoundError as e:
            if e.name != "ray":
                raise
            raise ConfigError("--ray needs Ray: pip install 'asyncrag[ray]'") from None
        return Cluster.from_settings(self.settings, self._given_embedder)

    def _shown(self, doc_id: str) -> str:
        return tenants.shown_id(self.tenant, doc_id)

    @_milvus_errors
    async def documents(self) -> list[DocumentInfo]:
        """Every stored document: id, source, chunks, content hash, whether complete, when written."""
        records = await (await self.collection()).records()
        shown = self._shown
        return sorted(
            (
                DocumentInfo(shown(r.doc_id), r.source, r.chunks, r.hash, r.complete, r.updated_at, r.size)
                for r in records
            ),
            key=lambda d: d.doc_id,
        )

    @_milvus_errors
    async def document_text(self, doc_id: str) -> list[str]:
        """A stored document's chunks' text, in order (overlapping where its chunks overlap)."""
        return await (await self.collection()).texts(tenants.scoped_id(self.tenant, doc_id))

    @_milvus_errors
    async def delete(self, doc_ids: list[str]) -> list[str]:
        """Delete these documents' chunks and records; returns the ids that were stored."""
        stored = [tenants.scoped_id(self.tenant, d) for d in doc_ids]
        return [self._shown(d) for d in await delete_documents(stored, await self.collection())]

    @_milvus_errors
    async def search(
        self, question: str, k: int | None = None, filter: str = "", mode: SearchMode | None = None
    ) -> list[Source]:
        """The `k` chunks that best match `question` (default: the `top_k` setting), best first.

        `filter` is a Milvus boolean expression over the stored metadata, e.g. `file_name == "a.pdf"`.
        `mode` (default: the `search_mode` setting): "dense" (embeddings), "sparse" (BM25), "hybrid"
        (both, each list normalised against itself and fused: store/fusion.py),
        or "auto" (hybrid where the collection has BM25).
        Concurrent searches share embedding batches and Milvus requests. Raises StoreError for a
        missing collection or an invalid filter, ConfigError for an empty question or k < 1.
        """
        if not question.strip():
            raise ConfigError("the question is empty: say what to search for")
        k = self.settings.top_k if k is None else k
        if not 1 <= k <= TOP_K_MAX:
            raise ConfigError(f"top_k (-k) must be between 1 and {TOP_K_MAX}, not {k}")
        if mode is not None and mode not in SEARCH_MODES:
            raise ConfigError(f"search mode must be one of {', '.join(SEARCH_MODES)}, not {mode!r}")
        retriever = await self._retriever_for(await self.collection())
        return await retriever.retrieve(question, k, filter, mode or self.settings.search_mode)

    @_milvus_errors
    async def ask(
        self, question: str, k: int | None = None, filter: str = "", on_token: OnToken | None = None,
        mode: SearchMode | None = None, history: Sequence[str] = (), max_tokens: int | None = None,
    ) -> Answer:
        """Answer `question` from the `k` best chunks, citing them as [n].

        `history` is the conversation's earlier user turns, oldest first: a follow-up that points
        back ("does it ...?") is searched together with them (query/condense.py). The answer is
        quoted from the sources, or written by the LLM when the `answer_mode` setting says so
        (query/answer.py); an LLM's tokens stream to `on_token`. If the LLM cannot load, fails,
        or its answer fails the checks, the quoted answer replaces it and `Answer.llm_error` says why.
        `max_tokens` lowers the `max_answer_tokens` setting for this answer.
        """
        query = condense(question, history)
        sources = await self.search(query, k, filter, mode)
        embedder = await self.embedder()
        asked = query if query != question else None
        if not answer.generates(self.settings.answer_mode, self._small_llm()):
            return await answer.extracted(question, sources, embedder, asked)
        try:
            llm = await self.llm()
        except AsyncRAGError as e:
            log.warning("no LLM; quoting the sources instead: %s", e)
            return await answer.extracted(question, sources, embedder, asked, llm_error=str(e))
        if llm is None:
            return await answer.extracted(question, sources, embedder, asked)
        cap = min(self.settings.max_answer_tokens, max_tokens or self.settings.max_answer_tokens)
        found = await answer.generated(llm, question, sources, embedder, cap, on_token, asked)
        if found.llm_error:
            log.warning("%s", found.llm_error)
        return found

    @_milvus_errors
    async def reindex(self) -> int | None:
        """Give the collection today's schema (a BM25 field, for sparse and hybrid search, where
        the server has BM25; the tenant field), keeping its vectors: nothing is embedded again.
        Returns the rows copied, or None when the collection already has it. Safe to kill and
        run again (store/reindex.py)."""
        s = self.settings
        client = milvus.connect(s.uri, s.token)
        try:
            records = manifest.manifest_name(s.collection)
            for name in (s.collection, records):
                if reindex.finish_interrupted(client, name):
                    log.info("finished the swap of a reindex of %s that was interrupted", name)
            old = await (await self.collection()).open_store()  # the collection's model must be the configured one
            copied = None
            if not old.has_tenants or (old.server_has_bm25 and not old.builtin_sparse):
                temp = reindex.temporary_name(s.collection)
                if client.has_collection(temp):  # a copy that a killed run left incomplete
                    client.drop_collection(temp)
                copy = milvus.open_store(client, s.uri, temp, embedder=await self.embedder(), token=s.token)
                await Collection(copy).close()
                copied = await asyncio.to_thread(reindex.copy_rows, client, s.collection, temp, {tenants.FIELD: ""})
                await self.aclose()
                await asyncio.to_thread(reindex.swap, client, s.collection)
            if client.has_collection(records) and not milvus.has_field(client, records, tenants.FIELD):
                await self.aclose()
                key = milvus.server_partition_key_upserts(client)
                make = functools.partial(manifest.create, client, partition_key=key)
                moved = await asyncio.to_thread(reindex.records, client, records, make)
                copied = (copied or 0) + moved
            return copied
        finally:
            client.close()

    # -- keys for servers (store/keys.py) --------------------------------------------------

    @_milvus_errors
    async def add_key(self, name: str, role: str = "reader", tenant: str | None = None) -> str:
        """Make an API key for `serve` with `role` (reader, writer, admin) within `tenant` (None: the
        whole collection); returns the key, which is not kept (only its hash is)."""
        return await asyncio.to_thread(self._with_client, keys.add, name, role, tenant, create=True)

    @_milvus_errors
    async def keys(self) -> list[keys.Key]:
        """Every API key's name, role, tenant and date (never the key)."""
        found = await asyncio.to_thread(self._with_client, keys.stored)
        return sorted(found.values(), key=lambda k: k.name)

    @_milvus_errors
    async def revoke_key(self, name: str) -> bool:
        """Remove the key named `name` (a server stops taking it within seconds); whether there was one."""
        revoked: bool = await asyncio.to_thread(self._with_client, keys.revoke, name)
        return revoked

    def _with_client(self, call: Callable[..., T], *args: Any, create: bool = False) -> T:
        client = milvus.connect(self.settings.uri, self.settings.token, create=create)
        try:
            return call(client, self.settings.collection, *args)
        finally:
            client.close()

    @_milvus_errors
    async def stats(self) -> CollectionStats:
        """Documents, chunks, embedding model and dimension of this collection, or of the tenant's
        part of it (no model is loaded)."""
        return await read_stats(self.settings, self.tenant)

    @_milvus_errors
    async def collections(self) -> list[CollectionStats]:
        """The stats of every collection at this URI."""
        s = self.settings
        client = milvus.connect(s.uri, s.token)
        try:
            names = milvus.collection_names(client)
            return [await asyncio.to_thread(milvus.stats, client, name) for name in names]
        finally:
            client.close()


class RAG:
    """The same API, blocking: AsyncRAG runs on an event loop in a background thread (anyio's blocking portal)."""

    def __init__(self, settings: Settings | None = None, **overrides: Any) -> None:
        self.rag = AsyncRAG(settings, **overrides)
        self._resources = ExitStack()  # closed in reverse: aclose on the loop, then the loop and its thread
        self._portal = self._resources.enter_context(start_blocking_portal(name="asyncrag-loop"))
        self._resources.callback(self._portal.call, self.rag.aclose)

    def ingest(
        self, paths: list[str | Path], on_progress: Progress | None = None, **options: Unpack[IngestOptions]
    ) -> IngestReport:
        report: IngestReport = self._portal.call(functools.partial(self.rag.ingest, **options), paths, on_progress)
        return report

    def documents(self) -> list[DocumentInfo]:
        return self._portal.call(self.rag.documents)

    def delete(self, doc_ids: list[str]) -> list[str]:
        return self._portal.call(self.rag.delete, doc_ids)

    def search(
        self, question: str, k: int | None = None, filter: str = "", mode: SearchMode | None = None
    ) -> list[Source]:
        return self._portal.call(self.rag.search, question, k, filter, mode)

    def ask(
        self, question: str, k: int | None = None, filter: str = "", on_token: OnToken | None = None,
        mode: SearchMode | None = None, history: Sequence[str] = (), max_tokens: int | None = None,
    ) -> Answer:
        """`AsyncRAG.ask`, blocking until the answer is complete.

        `on_token` is called with each token as it arrives, on the event loop's thread, not the
        caller's: the caller is blocked in this call meanwhile, so printing or appending is safe.
        """
        answer: Answer = self._portal.call(self.rag.ask, question, k, filter, on_token, mode, history)
        return answer

    def reindex(self) -> int | None:
        copied: int | None = self._portal.call(self.rag.reindex)
        return copied

    def stats(self) -> CollectionStats:
        stats: CollectionStats = self._portal.call(self.rag.stats)
        return stats

    def collections(self) -> list[CollectionStats]:
        return self._portal.call(self.rag.collections)

    def close(self) -> None:
        """Flush and close the store, then stop the loop's thread; closing twice does nothing."""
        self._resources.close()

    def __enter__(self) -> RAG:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
