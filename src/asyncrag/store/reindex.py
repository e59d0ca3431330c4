"""Rebuild a collection in today's schema (a BM25 field for hybrid search, the tenant field),
keeping its vectors; and its document records (the tenant field).

Milvus cannot add a field to an existing collection, so the rows are copied, embeddings
and all (nothing is embedded again), into `<name>__reindex`, which then takes the old
collection's place. A run killed at any point leaves either the old collection whole (and a
partial copy, which the next run drops and makes again) or, between the drop and the rename,
the complete copy under the temporary name, which the next run renames into place.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pymilvus import MilvusClient

from asyncrag.store import scan, tenants

SUFFIX = "__reindex"
BATCH_ROWS = 1000


def temporary_name(collection: str) -> str:
    return collection + SUFFIX


def finish_interrupted(client: MilvusClient, collection: str) -> bool:
    """Finish a swap that a killed run left half done; whether there was one."""
    temp = temporary_name(collection)
    if client.has_collection(collection) or not client.has_collection(temp):
        return False
    client.rename_collection(temp, collection)
    return True


def copy_rows(client: MilvusClient, source: str, target: str, missing: dict[str, Any] | None = None) -> int:
    """Every row of `source` into `target` (upserts: a retried batch cannot duplicate); `missing`
    gives the fields the old rows lack their values."""
    made = _function_outputs(client, target)  # Milvus fills them (BM25) and refuses them given
    copied = 0
    for rows in scan.pages(client, source, ["*"], rows=BATCH_ROWS):
        client.upsert(target, [{k: v for k, v in ((missing or {}) | row).items() if k not in made} for row in rows])
        copied += len(rows)
    client.flush(target)
    return copied


def records(client: MilvusClient, name: str, create: Callable[[str], None]) -> int:
    """Copy the document records `name` into a collection `create` makes in today's schema, which
    then takes its place (old rows get the tenant field empty: no tenant); the rows copied."""
    temp = temporary_name(name)
    if client.has_collection(temp):  # a copy that a killed run left incomplete
        client.drop_collection(temp)
    create(temp)
    copied = copy_rows(client, name, temp, {tenants.FIELD: ""})
    swap(client, name)
    return copied


def _function_outputs(client: MilvusClient, collection: str) -> set[str]:
    functions = client.describe_collection(collection).get("functions", [])
    return {name for function in functions for name in function.get("output_field_names", [])}


def swap(client: MilvusClient, collection: str) -> None:
    """The complete copy takes the collection's place (its document records stay: same name)."""
    client.drop_collection(collection)
    client.rename_collection(temporary_name(collection), collection)
    client.load_collection(collection)
