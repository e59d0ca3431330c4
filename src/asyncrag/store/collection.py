"""One object owns a collection: its Milvus clients, its vector store and its document records.

    Collection.open(settings, embedder)  ─▶  store (CoalescingMilvusVectorStore: sync + async client)
                                              manifest (Manifest: `<collection>__documents`)

Everything the rest of the code does to a collection is a method here, in its own words (write
chunks, delete a document's other versions, put a record, flush): the ingest pipeline orders
these steps and retries them, and never builds a Milvus expression or calls a client itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Sequence

from llama_index.core.schema import BaseNode

from asyncrag.config import Settings
from asyncrag.embed.base import Embedder
from asyncrag.results import CollectionStats
from asyncrag.store import expr, milvus
from asyncrag.store.coalesce import Coalescer
from asyncrag.store.manifest import DocumentRecord, Manifest
from asyncrag.store.manifest import ensure as ensure_manifest
from asyncrag.store.vector_store import CoalescingMilvusVectorStore

VERSION_FIELD = "version"  # each chunk's metadata: the version of its document it belongs to


class Collection:
    """A collection's chunks (in `store`) and its document records (in `manifest`).

    `writable` says whether the records' collection is known to exist: reading commands never
    create anything, so a collection opened for reading is made writable on the first ingest.
    """

    def __init__(self, store: CoalescingMilvusVectorStore, manifest: Manifest | None = None, *, writable: bool = True):
        self.store = store
        self.manifest = manifest or Manifest(store.async_client, store.collection_name, timeout=store.request_timeout_s)
        self.writable = writable
        self._has_records: bool | None = writable or None  # None: not yet asked (a collection opened to read)
        self._lookups: Coalescer[None, str, DocumentRecord | None] | None = None

    @classmethod
    async def open(
        cls, settings: Settings, embedder: Callable[[], Awaitable[Embedder]], *, create: bool = False
    ) -> Collection:
        """The collection `settings` names; only `create=True` (ingest) makes it where missing.

        Milvus is asked before `embedder()` loads the model: a wrong URI or name fails in a moment.
        Raises StoreError when Milvus does not answer, the collection is missing, or it holds
        vectors of another embedding model.
        """
        s = settings
        client = milvus.connect(s.uri, s.token, create=create)
        try:
            if not create:
                milvus.require_collection(client, s.uri, s.collection)
            model = await embedder()
            # Built on the event loop's thread: its async client belongs to this loop.
            store = milvus.open_store(
                client,
                s.uri,
                s.collection,
                embedder=model,
                create=create,
                token=s.token,
                consistency_level=s.consistency_level,
                bm25=s.bm25,
            )
        finally:
            client.close()
        return cls(store, writable=create)

    @property
    def name(self) -> str:
        return self.store.collection_name

    async def make_writable(self) -> None:
        """Create the records' collection if it is missing (sync: Lite's async client cannot)."""
        if not self.writable:
            await asyncio.to_thread(ensure_manifest, self.store.client, self.name)
            self.writable = self._has_records = True

    # -- document records ----------------------------------------------------------------------

    async def records(self) -> list[DocumentRecord]:
        """Every document record (any number: read through the sync client's iterator)."""
        return await self.manifest.all(self.store.client)

    async def get_records(self, doc_ids: Iterable[str]) -> dict[str, DocumentRecord]:
        return await self.manifest.get(doc_ids)

    async def put_records(self, records: Sequence[DocumentRecord]) -> None:
        await self.manifest.put(records)

    async def delete_records(self, doc_ids: Sequence[str]) -> None:
        await self.manifest.delete(doc_ids)

    async def visible(self, nodes: Sequence[BaseNode]) -> list[bool]:
        """Whether each chunk belongs to the version of its document that is all stored.

        Searches show nothing else: not a version being written (the old one stays visible until
        the new one is complete), nor one a crash left half-written. The records are read after
        the search, and a document is marked "writing" before its first chunk is written, so a
        chunk a search found is never newer than the record that judges it. Concurrent searches
        share the lookups (one query per batch). A chunk without a version, or a collection
        without records, was not written by asyncrag's pipeline: it is shown.
        """
        ids = {n.ref_doc_id for n in nodes if n.ref_doc_id and n.metadata.get(VERSION_FIELD)}
        if not ids or not await self._records_exist():
            return [True] * len(nodes)
        if self._lookups is None:  # created lazily: it belongs to the running event loop
            self._lookups = Coalescer(self._lookup_batch, max_items=500, max_in_flight=2)
        found = dict(zip(ids, await asyncio.gather(*(self._lookups.submit(None, i) for i in ids)), strict=True))
        return [_shows(found.get(n.ref_doc_id or ""), n) for n in nodes]

    async def _lookup_batch(self, _: None, doc_ids: list[str]) -> list[DocumentRecord | None]:
        records = await self.manifest.get(set(doc_ids), consistency_level=self.store.consistency_level)
        return [records.get(i) for i in doc_ids]

    async def _records_exist(self) -> bool:
        if self._has_records is None:
            name = self.manifest.name
            self._has_records = bool(await asyncio.to_thread(self.store.client.has_collection, name))
        return self._has_records

    # -- chunks ----------------------------------------------------------------------------------

    async def write(self, nodes: Sequence[BaseNode]) -> None:
        """Upsert chunks (with their vectors); concurrent writes share requests (store/coalesce.py)."""
        await self.store.async_add(list(nodes))

    async def delete_other_versions(self, doc_id: str, version: str) -> None:
        """Delete the document's chunks of every version but `version` (its new one is all written)."""
        await self._delete_chunks(expr.all_of(self._of(doc_id), expr.differs(VERSION_FIELD, version)))

    async def delete_version(self, doc_id: str, version: str) -> None:
        """Delete the document's chunks of `version` (half-written by a run that failed)."""
        await self._delete_chunks(expr.all_of(self._of(doc_id), expr.equals(VERSION_FIELD, version)))

    async def delete_documents(self, doc_ids: Sequence[str]) -> None:
        """Delete these documents: their chunks first, then their records (a crash between leaves
        a record whose chunks are gone, which the next run rewrites, never chunks without one)."""
        await self.store.adelete_documents(doc_ids)
        await self.manifest.delete(doc_ids)

    async def flush(self) -> None:
        """Seal what was written: searches right after read sealed segments (fast), not the memtable."""
        await asyncio.to_thread(self.store.client.flush, self.name)

    async def close(self) -> None:
        """Finish pending writes and searches, then close both clients."""
        await self.store.aflush_pending()
        if self.store.aclient is not None:
            await self.store.aclient.close()
        self.store.client.close()

    def _of(self, doc_id: str) -> str:
        return expr.equals(self.store.doc_id_field, doc_id)

    async def _delete_chunks(self, filter: str) -> None:
        await self.store.async_client.delete(self.name, filter=filter, timeout=self.store.request_timeout_s)


def _shows(record: DocumentRecord | None, node: BaseNode) -> bool:
    version = node.metadata.get(VERSION_FIELD)
    return not version or (record is not None and record.version == version)


async def read_stats(settings: Settings) -> CollectionStats:
    """Documents, chunks, model and dimension of the collection `settings` names, through a
    short-lived client: no model is loaded, so no `Collection` is opened."""
    client = milvus.connect(settings.uri, settings.token)
    try:
        milvus.require_collection(client, settings.uri, settings.collection)
        return await asyncio.to_thread(milvus.stats, client, settings.collection)
    finally:
        client.close()
