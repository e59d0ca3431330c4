"""One object owns a collection: its Milvus clients, its vector store and its document records.

    Collection.open(settings, embedder)  ─▶  store (CoalescingMilvusVectorStore: sync + async client)
                                              manifest (Manifest: `<collection>__documents`)

Everything the rest of the code does to a collection is a method here, in its own words (write
chunks, delete a document's other versions, put a record, flush): the ingest pipeline orders
these steps and retries them, and never builds a Milvus expression or calls a client itself.
"""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from llama_index.core.schema import BaseNode
from llama_index.core.vector_stores.utils import metadata_dict_to_node
from pymilvus import AsyncMilvusClient, MilvusClient

from asyncrag.config import Settings
from asyncrag.embed.base import Embedder
from asyncrag.errors import StoreError, milvus_errors
from asyncrag.results import CollectionStats
from asyncrag.store import expr, milvus, scan, tenants
from asyncrag.store.coalesce import Coalescer
from asyncrag.store.manifest import DocumentRecord, Manifest, manifest_name
from asyncrag.store.manifest import ensure as ensure_manifest
from asyncrag.store.vector_store import NODE_FIELDS, CoalescingMilvusVectorStore

REQUEST_TIMEOUT_S: float | None = CoalescingMilvusVectorStore.model_fields["request_timeout_s"].default
_ID_BATCH = 500  # ids per `in [...]` expression
VERSION_FIELD = "version"  # each chunk's metadata: the version of its document it belongs to


class Collection:
    """A collection's chunks (in `store`) and its document records (in `manifest`).

    The chunks' store is opened on first need (`open_store`): an ingest with nothing to do, or a
    listing of the documents, reads the records alone, and Milvus Lite, which loads a collection's
    data whole when it is first touched, never loads the chunks (python-doc: 87 MB).
    `writable` says whether the records' collection is known to exist: reading commands never
    create anything, so a collection opened for reading is made writable on the first ingest.

    `tenant` (None: the whole collection) is the tenant every method works within
    (store/tenants.py); `scoped` gives a view of one tenant that shares the clients and batches.
    """

    tenant: str | None = None

    def __init__(
        self,
        store: CoalescingMilvusVectorStore | None = None,
        manifest: Manifest | None = None,
        *,
        writable: bool = True,
        opener: _StoreOpener | None = None,
    ) -> None:
        if store is None and opener is None:
            raise ValueError("a Collection needs its store, or the means to open it")
        self._store, self._opener = store, opener
        self.manifest = manifest or Manifest(
            self.store.async_client, self.store.collection_name, timeout=self.store.request_timeout_s
        )
        self.writable = writable
        self._has_records: bool | None = writable or None  # None: not yet asked (a collection opened to read)
        self._lookups: Coalescer[None, str, DocumentRecord | None] | None = None

    @classmethod
    async def open(
        cls, settings: Settings, embedder: Callable[[], Awaitable[Embedder]], *, create: bool = False
    ) -> Collection:
        """The collection `settings` names; only `create=True` (ingest) makes it where missing.

        Milvus is asked first: a wrong URI or name fails in a moment, before any model loads.
        Raises StoreError when Milvus does not answer or the collection is missing; a collection
        holding vectors of another embedding model is refused when its store is opened.
        """
        s = settings
        client = milvus.connect(s.uri, s.token, create=create)
        try:
            if not create:
                milvus.require_collection(client, s.uri, s.collection)
            with milvus_errors(f"Milvus at {s.uri} refused the records of {s.collection!r}"):
                records = manifest_name(s.collection)
                if create:
                    ensure_manifest(client, s.collection, milvus.server_partition_key_upserts(client))
                elif client.has_collection(records):
                    client.load_collection(records)  # written by another process: released
                tenant_field = not client.has_collection(records) or milvus.has_field(client, records, tenants.FIELD)
            # Made on the event loop's thread: an async client belongs to its loop.
            aclient = AsyncMilvusClient(uri=s.uri, token=s.token, **milvus.client_options(s.uri))
        except BaseException:
            client.close()
            raise
        manifest = Manifest(aclient, s.collection, timeout=REQUEST_TIMEOUT_S, tenant_field=tenant_field)
        opener = _StoreOpener(settings, embedder, create, client, aclient)
        return cls(manifest=manifest, writable=create, opener=opener)

    @property
    def store(self) -> CoalescingMilvusVectorStore:
        """The chunks' store; `open_store` first (RuntimeError when it is not open)."""
        if self._store is None:
            raise RuntimeError("the collection's store is not open: await open_store() first")
        return self._store

    async def open_store(self) -> CoalescingMilvusVectorStore:
        """Open the chunks' store (creating it for an ingest), once. Raises StoreError when it holds
        vectors of another embedding model."""
        if self._store is None:
            assert self._opener is not None
            self._store = await self._opener.open()
        return self._store

    async def scoped(self, tenant: str | None) -> Collection:
        """This collection as `tenant` sees it (None: whole), sharing its clients and batches (and
        its store, if open; else the view opens its own on first need, as this one would).

        Raises StoreError when the collection has no tenant field (made before tenants)."""
        if tenant is not None and not await asyncio.to_thread(self._has_tenant_fields):
            raise StoreError(tenants.BEFORE_TENANTS.format(collection=self.name))
        view = copy.copy(self)
        view.tenant, view.manifest, view._lookups = tenant, self.manifest.scoped(tenant), None
        return view

    def _has_tenant_fields(self) -> bool:
        if not self.manifest.tenant_field:
            return False
        if self._store is not None:
            return self._store.has_tenants
        client = self._client  # (a collection not made yet will have the field)
        return not client.has_collection(self.name) or milvus.has_field(client, self.name, tenants.FIELD)

    def search_filter(self, user_filter: str) -> str:
        """A user's filter, checked, within this collection's tenant (FilterError if it names the field)."""
        return expr.all_of(tenants.clause(self.tenant), tenants.refuse_field(expr.user_filter(user_filter)))

    @property
    def name(self) -> str:
        return self._opener.settings.collection if self._store is None and self._opener else self.store.collection_name

    @property
    def _client(self) -> MilvusClient:
        return self._opener.client if self._opener is not None else self.store.client

    async def make_writable(self) -> None:
        """Create the records' collection if it is missing (sync: Lite's async client cannot)."""
        if not self.writable:
            key = await asyncio.to_thread(milvus.server_partition_key_upserts, self._client)
            await asyncio.to_thread(ensure_manifest, self._client, self.name, key)
            self.writable = self._has_records = True
            if self._opener is not None:
                self._opener.create = True

    # -- document records ----------------------------------------------------------------------

    async def records(self) -> list[DocumentRecord]:
        """Every document record (any number: read through the sync client's iterator)."""
        return await self.manifest.all(self._client)

    async def get_records(self, doc_ids: Iterable[str]) -> dict[str, DocumentRecord]:
        return await self.manifest.get(doc_ids)

    async def put_records(self, records: Sequence[DocumentRecord]) -> None:
        await self.manifest.put(records)

    async def delete_records(self, doc_ids: Sequence[str]) -> None:
        await self.manifest.delete(doc_ids)

    async def complete_with(self, hashes: Iterable[str], fingerprint: str) -> list[DocumentRecord]:
        """This tenant's complete records of these contents under `fingerprint` (Manifest.complete_with)."""
        return await self.manifest.complete_with(hashes, fingerprint)

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
        level = self._opener.settings.consistency_level if self._opener else self.store.consistency_level
        records = await self.manifest.get(set(doc_ids), consistency_level=level)
        return [records.get(i) for i in doc_ids]

    async def _records_exist(self) -> bool:
        if self._has_records is None:
            name = self.manifest.name
            self._has_records = bool(await asyncio.to_thread(self._client.has_collection, name))
        return self._has_records

    # -- chunks ----------------------------------------------------------------------------------

    async def write(self, nodes: Sequence[BaseNode]) -> None:
        """Upsert chunks (with their vectors); concurrent writes share requests (store/coalesce.py).
        Each is marked with this collection's tenant, whatever it says ("" for none)."""
        store = await self.open_store()
        if store.has_tenants:
            for node in nodes:
                node.metadata[tenants.FIELD] = self.tenant or ""
                for excluded in (node.excluded_embed_metadata_keys, node.excluded_llm_metadata_keys):
                    if tenants.FIELD not in excluded:
                        excluded.append(tenants.FIELD)
        await store.async_add(list(nodes))

    async def delete_other_versions(self, doc_id: str, version: str) -> None:
        """Delete the document's chunks of every version but `version` (its new one is all written)."""
        await self._delete_chunks(doc_id, expr.differs(VERSION_FIELD, version))

    async def delete_version(self, doc_id: str, version: str) -> None:
        """Delete the document's chunks of `version` (half-written by a run that failed)."""
        await self._delete_chunks(doc_id, expr.equals(VERSION_FIELD, version))

    async def delete_documents(self, doc_ids: Sequence[str]) -> None:
        """Delete these documents: their chunks first, then their records (a crash between leaves
        a record whose chunks are gone, which the next run rewrites, never chunks without one)."""
        store = await self.open_store()
        for i in range(0, len(doc_ids), _ID_BATCH):
            await self._delete_where(expr.is_in(store.doc_id_field, doc_ids[i : i + _ID_BATCH]))
        await self.manifest.delete(doc_ids)

    async def texts(self, doc_id: str) -> list[str]:
        """The text of a document's chunks, in the order they were cut (its complete version's only)."""
        record = (await self.manifest.get([doc_id])).get(doc_id)
        store = await self.open_store()
        which = expr.equals(VERSION_FIELD, record.version) if record is not None and record.version else ""
        where = expr.all_of(tenants.clause(self.tenant), expr.equals(store.doc_id_field, doc_id), which)
        fields = [store.text_key, "_node_content"]

        def read() -> list[dict[str, Any]]:
            return [row for page in scan.pages(self._client, self.name, fields, filter=where) for row in page]

        rows = await asyncio.to_thread(read)
        return [str(row[store.text_key]) for row in sorted(rows, key=_position)]

    async def chunks(self, doc_id: str, version: str, *, vectors: bool = False) -> AsyncIterator[list[BaseNode]]:
        """The document's chunks of `version` as stored, a page at a time (in id order): their ids and
        metadata, and with `vectors` their text and embeddings too: what a copy of them is made from."""
        store = await self.open_store()
        where = expr.all_of(
            tenants.clause(self.tenant), expr.equals(store.doc_id_field, doc_id), expr.equals(VERSION_FIELD, version)
        )
        fields = [*NODE_FIELDS, *((store.text_key, store.embedding_field) if vectors else ())]
        pages = scan.pages(self._client, self.name, fields, filter=where)
        while page := await asyncio.to_thread(next, pages, None):
            yield [_node(row, store, vectors) for row in page]

    async def flush(self) -> None:
        """Seal what was written: searches right after read sealed segments (fast), not the memtable.
        A store never opened was not written to."""
        if self._store is not None:
            await asyncio.to_thread(self._store.client.flush, self.name)

    async def close(self) -> None:
        """Finish pending writes and searches, then close every client."""
        if self._store is not None:
            await self._store.aflush_pending()
            if self._store.aclient is not None:
                await self._store.aclient.close()
            self._store.client.close()
        if self._opener is not None:
            await self._opener.aclient.close()
            self._opener.client.close()

    async def _delete_chunks(self, doc_id: str, which: str) -> None:
        store = await self.open_store()
        await self._delete_where(expr.all_of(expr.equals(store.doc_id_field, doc_id), which))

    async def _delete_where(self, filter: str) -> None:
        store = await self.open_store()
        within = expr.all_of(tenants.clause(self.tenant), filter)
        await store.async_client.delete(self.name, filter=within, timeout=store.request_timeout_s)


@dataclass
class _StoreOpener:
    """What opening a collection's chunk store takes, kept until it is first needed."""

    settings: Settings
    embedder: Callable[[], Awaitable[Embedder]]
    create: bool
    client: MilvusClient  # the sync client the records use too
    aclient: AsyncMilvusClient  # the records' async client

    async def open(self) -> CoalescingMilvusVectorStore:
        s = self.settings
        model = await self.embedder()
        return milvus.open_store(
            self.client,
            s.uri,
            s.collection,
            embedder=model,
            create=self.create,
            token=s.token,
            consistency_level=s.consistency_level,
            bm25=s.bm25,
        )


def _position(row: dict[str, Any]) -> tuple[int, int]:
    """Where a stored chunk was cut from: its page, then its offset (LlamaIndex's node JSON)."""
    node = json.loads(row.get("_node_content") or "{}")
    return int(node.get("metadata", {}).get("page") or 0), int(node.get("start_char_idx") or 0)


def _node(row: dict[str, Any], store: CoalescingMilvusVectorStore, vectors: bool) -> BaseNode:
    """A stored row as the node that was written (LlamaIndex's node JSON), with its text and vector."""
    node = metadata_dict_to_node(row, text=row[store.text_key] if vectors else None)
    if vectors:
        node.embedding = [float(x) for x in row[store.embedding_field]]
    return node


def _shows(record: DocumentRecord | None, node: BaseNode) -> bool:
    version = node.metadata.get(VERSION_FIELD)
    return not version or (record is not None and record.version == version)


async def read_stats(settings: Settings, tenant: str | None = None) -> CollectionStats:
    """Documents, chunks, model and dimension of the collection `settings` names (of `tenant`'s
    alone, if given), through a short-lived client: no model is loaded, so no `Collection` is opened."""
    client = milvus.connect(settings.uri, settings.token)
    try:
        milvus.require_collection(client, settings.uri, settings.collection)
        return await asyncio.to_thread(milvus.stats, client, settings.collection, tenant)
    finally:
        client.close()
