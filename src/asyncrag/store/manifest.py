"""The record of what is stored, kept in Milvus beside the chunks: one row per document.

It lives in a companion collection, `<collection>__documents`, so it works from any machine and
for several ingest workers at once, on Milvus Lite and on a server, with nothing on local disk.

A row says which version of a document (its content hash, and the settings fingerprint that
chunked and embedded it) has all of its chunks stored, and which version, if any, is being
written. The pipeline's order of writes makes every crash recoverable by running again:

    1. row.writing = new hash         (before the first chunk of the new version is written)
    2. upsert the new chunks          (ids derive from the document, its hash and position)
    3. delete the document's other chunks (the old version)
    4. row.hash = new hash, writing = ""

A document whose content is already stored under another id (a renamed or moved file, a copy)
takes the same four steps; in step 2 its chunks are copied, vectors and all, from that
document's complete version (`Manifest.complete_with` finds it) instead of being embedded.

A run killed anywhere leaves either the old version complete (and maybe some new chunks,
replaced or removed by the re-run) or the new one; a document is listed as complete only when
every chunk of it is stored.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from pymilvus import AsyncMilvusClient, DataType, MilvusClient

from asyncrag.store import expr, scan, tenants
from asyncrag.store.indexes import create_indexes

SUFFIX = "__documents"
_ID_BATCH = 500  # ids per `in [...]` expression
_VECTOR = "_v"  # Milvus needs a vector field in every collection; this one holds a constant


@dataclass
class DocumentRecord:
    doc_id: str
    hash: str = ""  # content sha256 of the version whose chunks are all stored ("" while none is)
    fingerprint: str = ""  # chunking and embedding settings that produced that version
    chunks: int = 0
    size: int = 0  # file size and mtime when hashed: an unchanged stat skips re-hashing
    mtime_ns: int = 0
    writing: str = ""  # hash of a version being written ("" when none): set means "not finished"
    source: str = ""  # the file's path as last seen, for people
    updated_at: float = field(default_factory=time.time)

    @property
    def complete(self) -> bool:
        return bool(self.hash) and not self.writing

    @property
    def version(self) -> str:
        """The version whose chunks are all stored ("" while none is): the only one searches may show."""
        return version_of(self.hash, self.fingerprint) if self.hash else ""

    def row(self) -> dict[str, Any]:
        return {**asdict(self), _VECTOR: [0.0, 0.0]}

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> DocumentRecord:
        return cls(**{name: row[name] for name in cls.__dataclass_fields__})


def version_of(content_hash: str, fingerprint: str) -> str:
    """A version of a document: its content and the settings that chunked and embedded it.
    Every chunk carries it (metadata `version`); chunk ids derive from it."""
    return hashlib.sha256(f"{content_hash}|{fingerprint}".encode()).hexdigest()[:16]


def manifest_name(collection: str) -> str:
    return collection + SUFFIX


def ensure(client: MilvusClient, collection: str, partition_key: bool) -> None:
    """Create the manifest collection of `collection` if it is missing (sync: Lite's async client cannot)."""
    name = manifest_name(collection)
    if client.has_collection(name):
        client.load_collection(name)
        return
    create(client, name, partition_key)


def create(client: MilvusClient, name: str, partition_key: bool) -> None:
    """A records collection called `name`, in today's schema; the tenant is its partition key
    where the server's upserts allow (store/milvus.server_partition_key_upserts)."""
    schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("doc_id", DataType.VARCHAR, max_length=65_535, is_primary=True)
    for text in ("hash", "fingerprint", "writing"):
        schema.add_field(text, DataType.VARCHAR, max_length=64)
    for number in ("chunks", "size", "mtime_ns"):
        schema.add_field(number, DataType.INT64)
    schema.add_field("source", DataType.VARCHAR, max_length=65_535)
    schema.add_field("updated_at", DataType.DOUBLE)
    schema.add_field(tenants.FIELD, DataType.VARCHAR, max_length=tenants.MAX_LENGTH, is_partition_key=partition_key)
    schema.add_field(_VECTOR, DataType.FLOAT_VECTOR, dim=2)
    index = client.prepare_index_params()
    index.add_index(_VECTOR, index_type="FLAT", metric_type="L2")
    client.create_collection(name, schema=schema, consistency_level="Strong")
    create_indexes(client, name, index)


class Manifest:
    """Reads and writes a collection's document records through an async client, within one
    tenant (`tenant`; None: all of them). `tenant_field`: whether the records have the field."""

    def __init__(
        self,
        aclient: AsyncMilvusClient,
        collection: str,
        timeout: float | None = None,
        *,
        tenant: str | None = None,
        tenant_field: bool = True,
    ) -> None:
        self.aclient = aclient
        self.name = manifest_name(collection)
        self.timeout = timeout  # per request: see CoalescingMilvusVectorStore.request_timeout_s
        self.tenant = tenant
        self.tenant_field = tenant_field

    def scoped(self, tenant: str | None) -> Manifest:
        return Manifest(self.aclient, self.name.removesuffix(SUFFIX), self.timeout, tenant=tenant,
                        tenant_field=self.tenant_field)

    def _within(self, filter: str) -> str:
        return expr.all_of(tenants.clause(self.tenant), filter)

    async def get(self, doc_ids: Iterable[str], consistency_level: str = "Strong") -> dict[str, DocumentRecord]:
        ids = list(doc_ids)
        found: dict[str, DocumentRecord] = {}
        for i in range(0, len(ids), _ID_BATCH):
            rows = await self.aclient.query(
                self.name,
                filter=self._within(expr.is_in("doc_id", ids[i : i + _ID_BATCH])),
                output_fields=list(DocumentRecord.__dataclass_fields__),
                consistency_level=consistency_level,
                timeout=self.timeout,
            )
            found.update((row["doc_id"], DocumentRecord.from_row(row)) for row in rows)
        return found

    async def complete_with(self, hashes: Iterable[str], fingerprint: str) -> list[DocumentRecord]:
        """The complete records of these contents (sha256) under `fingerprint`: documents whose
        chunks a new document with the same content can be copied from (a rename, a move).

        Only this tenant's: with no tenant, the records of no tenant (tenant ""), not the whole
        collection's, so a copy never crosses tenants even when made by an admin's view."""
        wanted = sorted(set(hashes))
        same_tenant = expr.equals(tenants.FIELD, self.tenant or "") if self.tenant_field else ""
        found: list[DocumentRecord] = []
        for i in range(0, len(wanted), _ID_BATCH):
            rows = await self.aclient.query(
                self.name,
                filter=expr.all_of(
                    same_tenant,
                    expr.is_in("hash", wanted[i : i + _ID_BATCH]),
                    expr.equals("fingerprint", fingerprint),
                    expr.equals("writing", ""),
                ),
                output_fields=list(DocumentRecord.__dataclass_fields__),
                consistency_level="Strong",
                timeout=self.timeout,
            )
            found += [DocumentRecord.from_row(row) for row in rows]
        return found

    async def all(self, client: MilvusClient) -> list[DocumentRecord]:
        """Every record (page by page through a sync client, in a thread: any number of rows)."""

        def read() -> list[DocumentRecord]:
            fields = list(DocumentRecord.__dataclass_fields__)
            pages = scan.pages(client, self.name, fields, filter=tenants.clause(self.tenant))
            return [DocumentRecord.from_row(row) for page in pages for row in page]

        return await asyncio.to_thread(read)

    async def put(self, records: Sequence[DocumentRecord]) -> None:
        if records:
            now = time.time()
            for record in records:
                record.updated_at = now
            tenant = {tenants.FIELD: self.tenant or ""} if self.tenant_field else {}
            await self.aclient.upsert(self.name, [r.row() | tenant for r in records], timeout=self.timeout)

    async def delete(self, doc_ids: Sequence[str]) -> None:
        for i in range(0, len(doc_ids), _ID_BATCH):
            await self.aclient.delete(
                self.name, filter=self._within(expr.is_in("doc_id", doc_ids[i : i + _ID_BATCH])), timeout=self.timeout
            )
