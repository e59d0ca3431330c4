"""LlamaIndex's `MilvusVectorStore`, with concurrent async calls coalesced into few Milvus requests.

It is a subclass, so the schema, the row layout (`_node_content`, `doc_id`, dynamic metadata
fields), filters, deletes and every sync path are the official store's: collections written by
either class read the same with both. Only the two hot async paths change:

- `async_add`: nodes from concurrent callers share insert requests (bounded by rows and bytes);
- `aquery` in every mode (dense, sparse = BM25, hybrid = both fused): queries with the same mode,
  top-k, filter, output fields and search params become one multi-query search (or hybrid
  search) whose per-query hits go back to each caller.

Where the time goes, profiled: docs/runtime-notes.md, "Where the coalescing store's time goes".
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import json
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, NamedTuple

import pydantic_core
from llama_index.core.schema import BaseNode, TextNode
from llama_index.core.vector_stores.types import VectorStoreQuery
from llama_index.core.vector_stores.utils import node_to_metadata_dict
from llama_index.vector_stores.milvus import MilvusVectorStore
from llama_index.vector_stores.milvus.base import MILVUS_ID_FIELD
from pydantic import Field, PrivateAttr
from pymilvus import AsyncMilvusClient, CollectionSchema, DataType
from pymilvus import Function as BaseMilvusBuiltInFunction  # LlamaIndex's built-in sparse functions
from pymilvus.exceptions import ParamError

from asyncrag.errors import grpc_status, is_transient
from asyncrag.store import expr, tenants
from asyncrag.store.coalesce import Coalescer, ItemError
from asyncrag.store.fusion import DEFAULT_FUSION, Fusion, Hit, fuse

Row = dict[str, Any]
_TENANT_PARTITION_KEY: contextvars.ContextVar[bool] = contextvars.ContextVar("tenant_partition_key", default=True)
InsertKey = tuple[str | None, int]  # partition, vector length
# mode, top-k, filter, output fields, search params (JSON), partitions, vector length
SearchKey = tuple[str, int, str, tuple[str, ...], str, tuple[str, ...] | None, int]
BM25_PARAMS = {"metric_type": "BM25"}  # no drop_ratio_search: a short query's every term counts

# Node fields that `_parse_from_milvus_results` reads from a hit, besides the text field and
# the store's `output_fields`.
NODE_FIELDS = ("_node_content", "_node_type")
# The `_node_type` values `metadata_dict_to_node` reads as a `TextNode` (any but Node, IndexNode, ImageNode).
_PLAIN_TEXT_NODE = frozenset({"TextNode", None})

NO_ASYNC_CLIENT = (
    "async methods need the async Milvus client, and this store was made with use_async_client=False: "
    "pass use_async_client=True (the default) to the constructor, or call the sync methods"
)
FORCE_FLUSH_UNSUPPORTED = (
    "force_flush is not supported in async mode (nothing was written): await async_add(nodes), "
    "then store.client.flush(store.collection_name); or call add(nodes, force_flush=True)"
)


Found = tuple[list[BaseNode], list[float], list[str]]  # nodes, scores, ids: what LlamaIndex's search hooks return


class _Chunk(NamedTuple):
    """One caller's nodes (or a piece of them), with a rough size to plan batches by."""

    nodes: Sequence[BaseNode]
    nbytes: int


_Inserts = Coalescer[InsertKey, _Chunk, list[str]]


class _Query(NamedTuple):
    """One caller's query: its vector (dense, hybrid), its text (sparse, hybrid)."""

    vector: list[float] | None
    text: str | None


_Searches = Coalescer[SearchKey, _Query, list[Hit]]


def _text_node(entity: dict[str, Any], text_key: str) -> TextNode | None:
    """The `TextNode` that `metadata_dict_to_node` then `node.text = text` make of a hit, in one
    validation; None when that is not sure to give the same node (another node type, no JSON,
    a `text_resource` that would decide the text, a text that is not a string)."""
    content, text = entity.get("_node_content"), entity.get(text_key)
    if content is None or entity.get("_node_type") not in _PLAIN_TEXT_NODE or not isinstance(text, str):
        return None
    try:
        data = pydantic_core.from_json(content)  # what json.loads gives (NaN, big ints), ~2x faster
    except ValueError:  # e.g. a lone surrogate escape, which json.loads takes
        return None
    if not isinstance(data, dict) or "text_resource" in data:
        return None
    data.pop("class_name", None)
    data["text"] = text
    return TextNode(**data)


def _worth_splitting(error: BaseException) -> bool:
    """Bisect a failed batch only for errors a smaller batch could avoid (a bad row or vector).

    Not for what waiting may cure (the server unreachable, a request timed out: `is_transient`)
    nor for a cancelled request: retrying pieces only multiplies the failures, and an insert that
    timed out may have been written already.
    """
    return not is_transient(error) and grpc_status(error) != "CANCELLED"


class CoalescingMilvusVectorStore(MilvusVectorStore):
    """Drop-in `MilvusVectorStore` whose async adds and searches are batched across callers."""

    # Tuning; pass them to the constructor, or set them before the first async call.
    max_batch_rows: int = 250  # rows per insert request: small enough to pipeline, big enough to amortise
    max_batch_bytes: int = 32 * 1024 * 1024  # well under Milvus's 64 MB gRPC message limit
    max_search_batch: int = 1000  # query vectors per search request (Lite pays a fixed cost per search)
    max_wait_s: float = 0.002  # how long the first request of a batch waits for company
    max_in_flight: int = 4  # concurrent requests per kind (backpressure)
    # How a hybrid search fuses its dense and BM25 lists, and how many candidates each brings
    # (measured: docs/architecture.md, "Hybrid search"; benchmarks/retrieval.py).
    fusion: Fusion = DEFAULT_FUSION
    server_has_bm25: bool = True  # whether the server could make a BM25 field (open_store knows)
    has_tenants: bool = False  # whether the collection has the tenant field (open_store knows)
    # A deadline for each write and delete: pymilvus retries a server that does not answer until
    # then (none: for ever), so a server that is down shows up as an error in bounded time.
    request_timeout_s: float | None = None
    # Hears ("insert" or "search", rows or query vectors) for each request sent (the server's metrics).
    on_batch: Callable[[str, int], None] | None = Field(default=None, exclude=True)

    _coalescers: tuple[asyncio.AbstractEventLoop, _Inserts, _Searches] | None = PrivateAttr(default=None)
    _search_fields: dict[tuple[str, ...], list[str]] = PrivateAttr(default_factory=dict)

    def __init__(
        self,
        *args: Any,
        max_batch_rows: int | None = None,
        max_batch_bytes: int | None = None,
        max_search_batch: int | None = None,
        max_wait_s: float | None = None,
        max_in_flight: int | None = None,
        tenant_partition_key: bool = True,
        **kwargs: Any,
    ) -> None:
        # MilvusVectorStore hands unknown keyword arguments to MilvusClient, so take ours first;
        # it makes a new collection inside its constructor, before any field of ours can be set.
        token = _TENANT_PARTITION_KEY.set(tenant_partition_key)
        try:
            super().__init__(*args, **kwargs)
        finally:
            _TENANT_PARTITION_KEY.reset(token)
        tuning = {
            "max_batch_rows": max_batch_rows,
            "max_batch_bytes": max_batch_bytes,
            "max_search_batch": max_search_batch,
            "max_wait_s": max_wait_s,
            "max_in_flight": max_in_flight,
        }
        for name, value in tuning.items():
            if value is not None:
                setattr(self, name, value)

    @classmethod
    def class_name(cls) -> str:
        return "CoalescingMilvusVectorStore"

    def _add_fields_to_schema(self, schema: CollectionSchema) -> CollectionSchema:
        """The official schema; `tenant` among `scalar_field_names` becomes the partition key
        (store/tenants.py), which the official store cannot make, unless the constructor was told
        `tenant_partition_key=False` (a server whose upserts misplace it: store/milvus.py)."""
        names, types = self.scalar_field_names, self.scalar_field_types
        if not names or tenants.FIELD not in names:
            return super()._add_fields_to_schema(schema)
        at = names.index(tenants.FIELD)
        self.scalar_field_names = names[:at] + names[at + 1 :]
        self.scalar_field_types = (types or [])[:at] + (types or [])[at + 1 :]
        try:
            schema = super()._add_fields_to_schema(schema)
        finally:
            self.scalar_field_names, self.scalar_field_types = names, types
        key = _TENANT_PARTITION_KEY.get()
        schema.add_field(tenants.FIELD, DataType.VARCHAR, max_length=tenants.MAX_LENGTH, is_partition_key=key)
        return schema

    async def async_add(self, nodes: Sequence[BaseNode], **add_kwargs: Any) -> list[str]:
        """Insert `nodes`, sharing insert requests with concurrent callers; returns their ids.

        The caller only queues its nodes: rows are built inside the batch, so while Milvus
        stores one batch the client builds and packs the next one. A caller cancelled before
        its batch is sent inserts nothing; one cancelled later may still have its rows written.
        Errors are the official store's types; `force_flush=True` raises its NotImplementedError
        before writing anything (the official store writes first, then raises).
        """
        inserts, _ = self._coalescers_for_loop()  # fails like the official store without an async client
        if add_kwargs.get("force_flush"):
            raise NotImplementedError(FORCE_FLUSH_UNSUPPORTED)
        if self.enable_sparse and not self.builtin_sparse:  # client-side sparse vectors: the official path
            ids: list[str] = await super().async_add(list(nodes), **add_kwargs)
            return ids
        partition = add_kwargs.get("milvus_partition_name")
        chunks = self._split(nodes)  # [] gives no chunks and returns []; None raises TypeError, as officially
        if len(chunks) == 1:  # the usual case: no extra task per caller
            return await inserts.submit(self._insert_key(partition, chunks[0]), chunks[0])
        parts = await asyncio.gather(*(inserts.submit(self._insert_key(partition, c), c) for c in chunks))
        return [node_id for part in parts for node_id in part]

    @property
    def builtin_sparse(self) -> bool:
        """Whether Milvus itself makes the sparse vectors (BM25 from the text field)."""
        return self.enable_sparse and isinstance(self.sparse_embedding_function, BaseMilvusBuiltInFunction)

    async def _async_default_search(self, query: Any, string_expr: str, output_fields: list[str], **kw: Any) -> Found:
        return await self._coalesced_search("dense", query, string_expr, output_fields, **kw)

    async def _async_sparse_search(self, query: Any, string_expr: str, output_fields: list[str], **kw: Any) -> Found:
        if not self.builtin_sparse:
            return await super()._async_sparse_search(query, string_expr, output_fields, **kw)
        return await self._coalesced_search("sparse", query, string_expr, output_fields, **kw)

    async def _async_hybrid_search(self, query: Any, string_expr: str, output_fields: list[str], **kw: Any) -> Found:
        if not self.builtin_sparse:
            return await super()._async_hybrid_search(query, string_expr, output_fields, **kw)
        return await self._coalesced_search("hybrid", query, string_expr, output_fields, **kw)

    async def _coalesced_search(
        self, mode: str, query: Any, string_expr: str, output_fields: list[str], **kwargs: Any
    ) -> Found:
        _, searches = self._coalescers_for_loop()
        vector = None
        if mode != "sparse":
            if query.query_embedding is None:  # pymilvus's error type, raised before it can join a batch
                raise ParamError(message=f"aquery needs query.query_embedding for a {mode} search, and it is None")
            vector = list(query.query_embedding)
        if mode != "dense" and not query.query_str:
            raise ParamError(message=f"aquery needs query.query_str for a {mode} search, and it is empty")
        params = kwargs.get("milvus_search_config", self.search_config)
        partitions = kwargs.get("milvus_partition_names")
        key: SearchKey = (
            mode,
            query.similarity_top_k,
            string_expr,
            tuple(output_fields),
            json.dumps(params, sort_keys=True),
            tuple(partitions) if partitions else None,
            len(vector or ()),  # a wrong-sized vector gets a batch of its own: it can only fail itself
        )
        hits = await searches.submit(key, _Query(vector, query.query_str if mode != "dense" else None))
        return self._parse_from_milvus_results([hits])

    def _parse_from_milvus_results(self, results: list[Any]) -> Found:
        """The official parse, with one step less per hit: the same nodes, ids and scores.

        The official store validates a node from its JSON, then assigns the hit's text to it, which
        pydantic validates again; here the text joins the JSON's fields before the one validation
        (pydantic-core decodes them, ~2x faster than `json`). A hit whose node is not a plain
        `TextNode`, or whose JSON names its text another way, takes the official path.
        """
        if len(results) != 1:
            found: Found = super()._parse_from_milvus_results(results)
            return found
        nodes: list[BaseNode] = []
        scores: list[float] = []
        ids: list[str] = []
        text_key = self.text_key
        for hit in results[0]:
            node: BaseNode | None = _text_node(hit["entity"], text_key)
            nodes.append(node if node is not None else super()._parse_from_milvus_results([[hit]])[0][0])
            scores.append(hit["distance"])
            ids.append(self._get_id_from_hit(hit))
        return nodes, scores, ids

    async def aflush_pending(self) -> None:
        """Wait until every coalesced request sent so far has been answered."""
        if self._coalescers is not None:
            for coalescer in self._coalescers[1:]:
                await coalescer.drain()

    # -- ids in expressions: data, never code ----------------------------------------------
    # The official store writes ids into filters between bare quotes: an id holding a quote
    # becomes code (a crafted file name could delete every other document). These build the
    # same filters through `expr`, and delete by filter instead of query-then-delete, which
    # also has no query-size cap (16,384 rows on a server).

    def delete(self, ref_doc_id: str | list[str], **delete_kwargs: Any) -> None:
        """Delete the nodes of one document (or of a list of them)."""
        ids = ref_doc_id if isinstance(ref_doc_id, list) else [ref_doc_id]
        self.client.delete(
            self.collection_name,
            filter=expr.is_in(self.doc_id_field, ids),
            partition_name=delete_kwargs.get("milvus_partition_name"),
        )

    async def adelete(self, ref_doc_id: str | list[str], **delete_kwargs: Any) -> None:
        ids = ref_doc_id if isinstance(ref_doc_id, list) else [ref_doc_id]
        await self.adelete_documents(ids, partition=delete_kwargs.get("milvus_partition_name"))

    async def adelete_documents(self, doc_ids: Sequence[str], partition: str | None = None) -> None:
        """Delete every node of these documents."""
        client = self.async_client
        if doc_ids:
            await client.delete(
                self.collection_name,
                filter=expr.is_in(self.doc_id_field, doc_ids),
                partition_name=partition,
                timeout=self.request_timeout_s,
            )

    def _prepare_before_search(self, query: VectorStoreQuery, **kwargs: Any) -> tuple[str, list[str]]:
        if not query.doc_ids and not query.node_ids:  # nothing the official code would quote
            prepared: tuple[str, list[str]] = super()._prepare_before_search(query, **kwargs)
            return prepared
        plain = dataclasses.replace(query, doc_ids=None, node_ids=None)
        string_expr, output_fields = super()._prepare_before_search(plain, **kwargs)
        return expr.all_of(
            string_expr,
            expr.is_in(self.doc_id_field, query.doc_ids) if query.doc_ids else "",
            expr.is_in(MILVUS_ID_FIELD, query.node_ids) if query.node_ids else "",
        ), output_fields

    # -- internals -------------------------------------------------------------------------

    @property
    def async_client(self) -> AsyncMilvusClient:
        """The async client; AssertionError (as the official store asserts) when made without one."""
        if self.aclient is None:
            raise AssertionError(NO_ASYNC_CLIENT)
        client: AsyncMilvusClient = self.aclient
        return client

    def _coalescers_for_loop(self) -> tuple[_Inserts, _Searches]:
        """Coalescers hold futures bound to one event loop; make new ones for a new loop.

        They send through the async client, so this is where its absence is found: once per
        loop, not once per call. AssertionError, because the official store asserts.
        """
        loop = asyncio.get_running_loop()
        # Not self._coalescers: pydantic's __getattr__ for a private attribute costs ~2 us a call.
        state = (self.__pydantic_private__ or {}).get("_coalescers")
        if state is None or state[0] is not loop:
            if self.aclient is None:
                raise AssertionError(NO_ASYNC_CLIENT)
            inserts = Coalescer(
                self._insert_batch,
                max_items=self.max_batch_rows,
                max_bytes=self.max_batch_bytes,
                max_wait=self.max_wait_s,
                max_in_flight=self.max_in_flight,
                count_of=lambda chunk: len(chunk.nodes),
                size_of=lambda chunk: chunk.nbytes,
                split_on=_worth_splitting,
                on_batch=partial(self.on_batch, "insert") if self.on_batch else None,
            )
            searches = Coalescer(
                self._search_batch,
                max_items=self.max_search_batch,
                max_wait=self.max_wait_s,
                max_in_flight=self.max_in_flight,
                split_on=_worth_splitting,
                on_batch=partial(self.on_batch, "search") if self.on_batch else None,
            )
            state = self._coalescers = (loop, inserts, searches)
        return state[1], state[2]

    def row(self, node: BaseNode) -> Row:
        """The official store's row for `node`, built ~2.5x faster.

        `node_to_metadata_dict` dumps the whole node, embedding included, to JSON-ready data
        and then sets the embedding to None; dumping a shallow copy whose embedding is already
        None gives the same dict without converting 768 floats. (The official store also dumps
        the node a second time just to read its text.)
        """
        bare = node.model_copy(update={"embedding": None}) if node.embedding is not None else node
        row = node_to_metadata_dict(bare, remove_text=True, text_field=self.text_key)
        row[self.text_key] = node.get_content()
        row[MILVUS_ID_FIELD] = node.node_id
        row[self.embedding_field] = node.embedding
        return row

    def _row_bytes(self, row: Row) -> int:
        """An upper bound on the row's size in an insert request (float vectors go as float32)."""
        size = 64
        for value in row.values():
            if isinstance(value, str):
                size += 16 + (len(value) if value.isascii() else len(value.encode()))
            elif isinstance(value, list):
                size += 8 * len(value)
            else:
                size += 16
        return size

    def _node_bytes(self, node: BaseNode) -> int:
        """A cheap guess of a node's row size, to plan batches; `_insert_batch` checks real sizes."""
        text = getattr(node, "text", "") or ""
        metadata = sum(len(k) + len(str(v)) for k, v in node.metadata.items())
        return 1024 + 8 * len(node.embedding or ()) + 4 * len(text) + 8 * metadata

    def _split(self, nodes: Sequence[BaseNode]) -> list[_Chunk]:
        """Cut one caller's nodes into pieces that each fit a request."""
        chunks: list[_Chunk] = []
        piece: list[BaseNode] = []
        size = 0
        for node in nodes:
            node_size = self._node_bytes(node)
            if piece and (len(piece) >= self.max_batch_rows or size + node_size > self.max_batch_bytes):
                chunks.append(_Chunk(piece, size))
                piece, size = [], 0
            piece.append(node)
            size += node_size
        if piece:
            chunks.append(_Chunk(piece, size))
        return chunks

    def _insert_key(self, partition: str | None, chunk: _Chunk) -> InsertKey:
        """Rows go to one request only with rows of the same partition and vector length."""
        lengths = {len(node.embedding or ()) for node in chunk.nodes}
        return partition, lengths.pop() if len(lengths) == 1 else -1

    async def _insert_batch(self, key: InsertKey, chunks: list[_Chunk]) -> Sequence[list[str] | ItemError]:
        """Build the rows of every caller's chunk and insert them, in as few requests as fit.

        A chunk whose rows cannot be built fails alone (`ItemError`); the real row sizes decide
        where requests are cut, so no request exceeds `max_batch_bytes`. (A cut happens only when
        `_node_bytes` guessed low; if a later piece then fails, the bisecting retry re-sends rows
        already written, which an `insert` keeps twice and an `upsert` does not.)
        """
        results: list[list[str] | ItemError] = []
        rows: list[Row] = []
        for chunk in chunks:
            try:
                chunk_rows = [self.row(node) for node in chunk.nodes]
            except Exception as e:  # noqa: BLE001 - that caller's error, not the batch's
                results.append(ItemError(e))
                continue
            rows += chunk_rows
            results.append([row[MILVUS_ID_FIELD] for row in chunk_rows])
        client = self.async_client
        write = client.upsert if self.upsert_mode else client.insert
        request: list[Row] = []
        size = 0
        for row in rows:
            row_size = self._row_bytes(row)
            if request and size + row_size > self.max_batch_bytes:
                await write(self.collection_name, request, partition_name=key[0], timeout=self.request_timeout_s)
                request, size = [], 0
            request.append(row)
            size += row_size
        if request:
            await write(self.collection_name, request, partition_name=key[0], timeout=self.request_timeout_s)
        return results

    def fields_to_fetch(self, output_fields: tuple[str, ...]) -> list[str]:
        """`*` fetches the embedding of every hit, which nothing reads; ask for what is read.

        Only when the names can be asked for: fields of the schema, or any name when the
        collection has dynamic fields (as every collection LlamaIndex creates does).
        """
        cached = self._search_fields.get(output_fields)
        if cached is not None:
            return cached
        fields = list(output_fields)
        if fields == ["*"]:
            wanted = list(dict.fromkeys([self.text_key, *NODE_FIELDS, *self.output_fields]))
            with contextlib.suppress(Exception):  # keep "*", which always works
                info = self.client.describe_collection(self.collection_name)
                names = {f["name"] for f in info["fields"]}
                if info.get("enable_dynamic_field") or all(name in names for name in wanted):
                    fields = wanted
        self._search_fields[output_fields] = fields
        return fields

    async def _search_batch(self, key: SearchKey, queries: list[_Query]) -> Sequence[list[Hit]]:
        """One search request for every query of the batch; a hybrid batch is a dense and a BM25
        request over the same queries, sent together and fused here (store/fusion.py)."""
        mode, limit, filter, output_fields, params, partitions, _ = key
        common: dict[str, Any] = {
            "filter": filter,
            "output_fields": self.fields_to_fetch(output_fields),
            "partition_names": list(partitions) if partitions else None,
            # The store's level, not the collection's default (fixed when it was made): a server
            # can search with Session while the CLI keeps Strong (docs/architecture.md, "The server").
            "consistency_level": self.consistency_level,
        }
        if mode != "hybrid":
            return await self._search_side(mode == "dense", queries, json.loads(params), limit, common)
        depth = max(limit, self.fusion.candidates)
        dense, sparse = await asyncio.gather(
            self._search_side(True, queries, json.loads(params), depth, common),
            self._search_side(False, queries, json.loads(params), depth, common),
        )
        return [fuse(d, s, self.fusion, limit) for d, s in zip(dense, sparse, strict=True)]

    async def _search_side(
        self, dense: bool, queries: list[_Query], params: dict[str, Any], limit: int, common: dict[str, Any]
    ) -> Sequence[list[Hit]]:
        hits = await self.async_client.search(
            self.collection_name,
            data=[q.vector if dense else q.text for q in queries],
            search_params=params if dense else BM25_PARAMS,
            anns_field=self.embedding_field if dense else self.sparse_embedding_field,
            limit=limit,
            **common,
        )
        return hits if dense else [self._bm25_scores(h) for h in hits]

    @staticmethod
    def _bm25_scores(hits: list[Hit]) -> list[Hit]:
        """BM25 scores as positive numbers, higher is better: Milvus Lite returns them negated."""
        for hit in hits:
            hit["distance"] = abs(hit["distance"])
        return hits
