"""Every row of a collection, page by page, with the page boundary written as data.

pymilvus's `query_iterator` pages with `pk > "<last id>"` formatted unescaped: a document id (a
file's path) holding a quote broke it (`x"] or doc_id not in [".txt`: an error on every call) or
made it loop for ever (`zz" or doc_id != "x.txt`), and `documents`, `--prune` and the API's
document routes with it. This pages the same way, asking the server for rows in primary-key
order as the iterator does (`iterator`, `reduce_stop_for_best`), but builds the boundary with
`store/expr.literal`, like every other expression of asyncrag.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pymilvus import MilvusClient

from asyncrag.store import expr

PAGE_ROWS = 1000


def primary_key(client: MilvusClient, collection: str) -> str:
    info = client.describe_collection(collection)
    return next(str(f["name"]) for f in info["fields"] if f.get("is_primary"))


def pages(
    client: MilvusClient, collection: str, output_fields: list[str], *, rows: int = PAGE_ROWS, filter: str = ""
) -> Iterator[list[dict[str, Any]]]:
    """The collection's rows (these fields, and the primary key), `rows` at a time, in key order;
    only those `filter` matches, if given."""
    pk = primary_key(client, collection)
    fields = output_fields if "*" in output_fields or pk in output_fields else [*output_fields, pk]
    last: Any = None
    while True:
        page = client.query(
            collection,
            filter=expr.all_of(filter, "" if last is None else f"{pk} > {expr.literal(last)}"),
            output_fields=fields,
            limit=rows,
            consistency_level="Strong",
            iterator="True",  # rows in primary-key order, as pymilvus's QueryIterator asks for them
            reduce_stop_for_best="True",
        )
        if not page:
            return
        yield page
        last = page[-1][pk]
