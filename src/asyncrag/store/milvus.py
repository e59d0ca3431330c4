"""Connecting to Milvus (Lite, server, cluster or Zilliz Cloud) and guarding a collection's identity.

A collection remembers the embedding model that filled it (a collection property); opening
it with another model is an error, since its vectors would not be comparable.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

from pymilvus import MilvusClient
from pymilvus.exceptions import MilvusException

from asyncrag.results import CollectionStats
from asyncrag.store.vector_store import CoalescingMilvusVectorStore

MODEL_PROPERTY = "asyncrag.embed_model"
EMBEDDING_FIELD = "embedding"
CONNECT_TIMEOUT_S = 10.0

# pymilvus logs every failed RPC with a traceback at ERROR; we report errors ourselves.
logging.getLogger("pymilvus").setLevel(logging.CRITICAL)


class StoreError(RuntimeError):
    """A Milvus problem, said in words a user can act on."""


def is_local(uri: str) -> bool:
    return "://" not in uri


def release_lite(uri: str) -> None:
    """Stop the in-process Milvus Lite server for `uri`; it would otherwise live, and keep its
    background threads on this process's GIL, until the process exits. A no-op for servers."""
    if not is_local(uri):
        return
    with contextlib.suppress(Exception):
        from milvus_lite.server_manager import server_manager_instance

        server_manager_instance.release_server(uri)


def connect(uri: str, token: str = "") -> MilvusClient:
    """A sync client, failing fast with a clear message when nothing answers at `uri`."""
    if is_local(uri):
        Path(uri).expanduser().resolve().parent.mkdir(parents=True, exist_ok=True)
    try:
        return MilvusClient(uri=uri, token=token, timeout=CONNECT_TIMEOUT_S)
    except MilvusException as e:
        raise StoreError(f"cannot reach Milvus at {uri}: {e.message}") from None


def collection_model(client: MilvusClient, collection: str) -> tuple[str | None, int | None]:
    """(embedding model, dim) recorded for an existing collection."""
    info = client.describe_collection(collection)
    dim = next((int(f["params"]["dim"]) for f in info["fields"] if f["name"] == EMBEDDING_FIELD), None)
    return info.get("properties", {}).get(MODEL_PROPERTY), dim


def open_store(
    client: MilvusClient,
    uri: str,
    collection: str,
    *,
    embed_model: str,
    dim: int,
    token: str = "",
    consistency_level: str = "Strong",
) -> CoalescingMilvusVectorStore:
    """The collection's store, created if new; `client` (from `connect`) vets an existing one first."""
    exists = client.has_collection(collection)
    if exists:
        model, stored_dim = collection_model(client, collection)
        if (model is not None and model != embed_model) or (stored_dim is not None and stored_dim != dim):
            raise StoreError(
                f"collection {collection!r} holds {stored_dim}-dim vectors of {model or 'an unknown model'}, "
                f"but the embedding model is {embed_model} ({dim} dims): use the same model, "
                "or another --collection"
            )
        client.load_collection(collection)  # a collection written by another process starts released
    try:
        return CoalescingMilvusVectorStore(
            uri=uri,
            token=token,
            collection_name=collection,
            dim=dim,
            embedding_field=EMBEDDING_FIELD,
            similarity_metric="COSINE",
            consistency_level=consistency_level,
            collection_properties=None if exists else {MODEL_PROPERTY: embed_model},
            timeout=CONNECT_TIMEOUT_S,
        )
    except MilvusException as e:
        raise StoreError(f"Milvus at {uri} refused collection {collection!r}: {e.message}") from None


def stats(client: MilvusClient, collection: str) -> CollectionStats:
    model, dim = collection_model(client, collection)
    client.load_collection(collection)
    rows = client.query(collection, filter="", output_fields=["count(*)"])
    chunks = int(rows[0]["count(*)"]) if rows else 0
    documents: set[str] = set()
    iterator = client.query_iterator(collection, batch_size=1000, filter="", output_fields=["doc_id"])
    try:
        while batch := iterator.next():
            documents.update(row["doc_id"] for row in batch)
    finally:
        iterator.close()
    return CollectionStats(collection, len(documents), chunks, model, dim)
