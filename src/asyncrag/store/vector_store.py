"""LlamaIndex's `MilvusVectorStore`, with concurrent async calls coalesced into few Milvus requests.

It is a subclass, so the schema, the row layout (`_node_content`, `doc_id`, dynamic metadata
fields), filters, deletes and every sync path are the official store's: collections written by
either class read the same with both. Only the two hot async paths change:

- `async_add`: rows from concurrent callers share insert requests (bounded by rows and bytes);
- dense `aquery`: queries with the same top-k, filter, output fields and search params become
  one multi-vector search whose per-query hits go back to each caller.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

from llama_index.core.schema import BaseNode
from llama_index.core.vector_stores.utils import node_to_metadata_dict
from llama_index.vector_stores.milvus import MilvusVectorStore
from llama_index.vector_stores.milvus.base import MILVUS_ID_FIELD
from pydantic import PrivateAttr

from asyncrag.store.coalesce import Coalescer

Row = dict[str, Any]
SearchKey = tuple[int, str, tuple[str, ...], str, tuple[str, ...] | None]


class CoalescingMilvusVectorStore(MilvusVectorStore):
    """Drop-in `MilvusVectorStore` whose async adds and searches are batched across callers."""

    max_batch_rows: int = 1000
    max_batch_bytes: int = 32 * 1024 * 1024  # well under Milvus's 64 MB gRPC message limit
    max_search_batch: int = 1000
    max_wait_s: float = 0.002
    max_in_flight: int = 4

    _coalescers: tuple[asyncio.AbstractEventLoop, Coalescer, Coalescer] | None = PrivateAttr(default=None)

    @classmethod
    def class_name(cls) -> str:
        return "CoalescingMilvusVectorStore"

    async def async_add(self, nodes: list[BaseNode], **add_kwargs: Any) -> list[str]:
        if self.enable_sparse:  # sparse rows need the official per-call encoding path
            return await super().async_add(nodes, **add_kwargs)
        if add_kwargs.get("force_flush"):
            raise NotImplementedError("force_flush is not supported in async mode.")
        inserts, _ = self._coalescers_for_loop()
        partition = add_kwargs.get("milvus_partition_name")
        rows = [self._row(node) for node in nodes]
        parts = await asyncio.gather(*(inserts.submit(partition, chunk) for chunk in self._split(rows)))
        return [node_id for part in parts for node_id in part]

    async def _async_default_search(
        self, query: Any, string_expr: str, output_fields: list[str], **kwargs: Any
    ) -> tuple[list[BaseNode], list[float], list[str]]:
        _, searches = self._coalescers_for_loop()
        params = kwargs.get("milvus_search_config", self.search_config)
        partitions = kwargs.get("milvus_partition_names")
        key: SearchKey = (
            query.similarity_top_k,
            string_expr,
            tuple(output_fields),
            json.dumps(params, sort_keys=True),
            tuple(partitions) if partitions else None,
        )
        hits = await searches.submit(key, list(query.query_embedding))
        return self._parse_from_milvus_results([hits])

    async def aflush_pending(self) -> None:
        """Wait until every coalesced request sent so far has been answered."""
        if self._coalescers is not None:
            for coalescer in self._coalescers[1:]:
                await coalescer.drain()

    # -- internals -------------------------------------------------------------------------

    def _coalescers_for_loop(self) -> tuple[Coalescer, Coalescer]:
        """Coalescers hold futures bound to one event loop; make new ones for a new loop."""
        loop = asyncio.get_running_loop()
        if self._coalescers is None or self._coalescers[0] is not loop:
            inserts = Coalescer(
                self._insert_batch,
                max_items=self.max_batch_rows,
                max_bytes=self.max_batch_bytes,
                max_wait=self.max_wait_s,
                max_in_flight=self.max_in_flight,
                count_of=len,
                size_of=lambda rows: sum(self._row_bytes(r) for r in rows),
            )
            searches = Coalescer(
                self._search_batch,
                max_items=self.max_search_batch,
                max_wait=self.max_wait_s,
                max_in_flight=self.max_in_flight,
            )
            self._coalescers = (loop, inserts, searches)
        return self._coalescers[1], self._coalescers[2]

    def _row(self, node: BaseNode) -> Row:
        row = node_to_metadata_dict(node, remove_text=True, text_field=self.text_key)
        row[self.text_key] = node.get_content()
        row[MILVUS_ID_FIELD] = node.node_id
        row[self.embedding_field] = node.embedding
        return row

    def _row_bytes(self, row: Row) -> int:
        vector = row.get(self.embedding_field) or ()
        return 8 * len(vector) + sum(len(v) for v in row.values() if isinstance(v, str)) + 64

    def _split(self, rows: list[Row]) -> list[list[Row]]:
        """Cut one caller's rows into pieces that each fit a request."""
        pieces: list[list[Row]] = [[]]
        size = 0
        for row in rows:
            row_size = self._row_bytes(row)
            if pieces[-1] and (len(pieces[-1]) >= self.max_batch_rows or size + row_size > self.max_batch_bytes):
                pieces.append([])
                size = 0
            pieces[-1].append(row)
            size += row_size
        return [p for p in pieces if p]

    async def _insert_batch(self, partition: str | None, callers: list[list[Row]]) -> Sequence[list[str]]:
        rows = [row for caller in callers for row in caller]
        write = self.aclient.upsert if self.upsert_mode else self.aclient.insert
        await write(self.collection_name, rows, partition_name=partition)
        return [[row[MILVUS_ID_FIELD] for row in caller] for caller in callers]

    async def _search_batch(self, key: SearchKey, vectors: list[list[float]]) -> Sequence[list[dict]]:
        limit, expr, output_fields, params, partitions = key
        return await self.aclient.search(
            collection_name=self.collection_name,
            data=vectors,
            filter=expr,
            limit=limit,
            output_fields=list(output_fields),
            search_params=json.loads(params),
            anns_field=self.embedding_field,
            partition_names=list(partitions) if partitions else None,
        )
