"""Connecting to Milvus (Lite, server, cluster or Zilliz Cloud) and guarding a collection's identity.

A collection remembers the embedding model that filled it (a collection property); opening
it with another model is an error, since its vectors would not be comparable.

New collections get a BM25 field that Milvus fills from the chunk text (for sparse and hybrid
search) where the server has BM25: Milvus Lite, and Milvus 2.5 or later. Collections made
without it (older asyncrag, Milvus 2.3/2.4) keep working for dense search.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
from pathlib import Path
from typing import Any

from llama_index.vector_stores.milvus.base import IndexManagement
from llama_index.vector_stores.milvus.utils import BM25BuiltInFunction
from pymilvus import DataType, FunctionType, MilvusClient
from pymilvus.exceptions import MilvusException
from pymilvus.milvus_client.index import IndexParams

from asyncrag.embed.base import Embedder
from asyncrag.errors import StoreError, milvus_errors, one_line
from asyncrag.results import CollectionStats
from asyncrag.store import keys, manifest, reindex, scan, tenants
from asyncrag.store.indexes import create_indexes
from asyncrag.store.vector_store import CoalescingMilvusVectorStore

MODEL_PROPERTY = "asyncrag.embed_model"  # the model's identity (embed/base.py)
MODEL_NAME_PROPERTY = "asyncrag.embed_model_name"
EMBEDDING_FIELD = "embedding"
TEXT_FIELD = "text"  # LlamaIndex's text field; BM25 reads it
SPARSE_FIELD = "sparse_embedding"
BM25_SINCE = (2, 5)  # the first Milvus server version with BM25 functions
# Milvus 2.3.5 routes an upserted row by the wrong field's hash (milvus-io/milvus#30607, fixed in
# February 2024): `tenant == "x"` then finds nothing. Measured; before 2.4 the tenant is a plain field.
PARTITION_KEY_SINCE = (2, 4)
CONNECT_TIMEOUT_S = 10.0
# Per write or delete to a server; the ingest pipeline retries a few times on top. Milvus Lite runs
# in this process and cannot go down on its own: no deadline there (a big upsert on a loaded
# machine took over 20 s and a deadline turned it into a failure).
REQUEST_TIMEOUT_S = 20.0
# Milvus Lite runs in the ingest process and its memory peaks when it seals a segment, in proportion
# to the rows since the last seal (by default a 128 MB memtable, ~35k rows of 384 dims): sealing every
# 4000 rows cut a 50 MB text file's peak from 1404 to 1034 MB; 2000 took the whole python-doc ingest
# (MiniLM, tuned allocators) from 1.32 to 1.19 GB (docs/runtime-notes.md).
LITE_FLUSH_EVERY_ROWS = 2000
LITE_LOCK_FILE = "LOCK"  # milvus_lite.db.LOCK_FILENAME: one process at a time holds a database


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


def client_options(uri: str) -> dict[str, Any]:
    """Extra client arguments for `uri`.

    pymilvus pings its server every 10 s, even with no call in flight; Milvus Lite's in-process
    gRPC server keeps gRPC's default policy (no pings without data more often than every 5 min),
    answers with a "too_many_pings" GOAWAY, and after that new clients to it fail about half the
    time. A local server needs no keepalive: Lite clients do not ping while idle.
    """
    if not is_local(uri):
        return {}
    return {"grpc_options": {"grpc.keepalive_time_ms": 3_600_000, "grpc.keepalive_permit_without_calls": 0}}


def connect(uri: str, token: str = "", *, create: bool = False) -> MilvusClient:
    """A sync client, failing fast with a clear message when nothing answers at `uri`.

    A Milvus Lite database that does not exist is created only when `create` is set (ingest):
    a misspelled path must not leave an empty database behind.
    """
    if is_local(uri):
        _check_lite_path(Path(uri), create)
    try:
        return MilvusClient(uri=uri, token=token, timeout=CONNECT_TIMEOUT_S, **client_options(uri))
    except MilvusException as e:
        if is_local(uri) and _lite_locked(Path(uri)):
            raise StoreError(
                f"another process has the Milvus Lite database {uri} open; Milvus Lite serves one process at a time: "
                "wait for it, or run a Milvus server for several processes (--uri http://HOST:19530)"
            ) from None
        raise StoreError(f"cannot reach Milvus at {uri}: {one_line(e.message)}") from None


def _check_lite_path(path: Path, create: bool) -> None:
    if path.exists():
        if not path.is_dir():
            raise StoreError(f"{path} is a file, not a Milvus Lite database (a folder): choose another --uri")
        return
    if not create:
        raise StoreError(f"no Milvus Lite database at {path}: ingest something first, or check --uri")
    try:
        path.resolve().parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise StoreError(f"cannot create the Milvus Lite database {path}: {e.strerror}; choose another --uri") from None


def _lite_locked(path: Path) -> bool:
    """Whether another process holds the database's lock (only asked after opening it failed)."""
    try:
        fd = os.open(path / LITE_LOCK_FILE, os.O_RDWR)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def require_collection(client: MilvusClient, uri: str, collection: str) -> None:
    """Reading commands never create a collection: a misspelled name is an error that lists the real ones."""
    if client.has_collection(collection):
        return
    names = collection_names(client)
    there = f"collections there: {', '.join(names)}" if names else "it has no collections"
    raise StoreError(
        f"no collection {collection!r} at {uri} ({there}); ingest into it first, or pick another --collection"
    )


def collection_model(client: MilvusClient, collection: str) -> tuple[str | None, str | None, int | None]:
    """(embedding model's identity, its name, dim) recorded for an existing collection."""
    info = client.describe_collection(collection)
    dim = next((int(f["params"]["dim"]) for f in info["fields"] if f["name"] == EMBEDDING_FIELD), None)
    properties = info.get("properties", {})
    return properties.get(MODEL_PROPERTY), properties.get(MODEL_NAME_PROPERTY), dim


def server_has_bm25(client: MilvusClient) -> bool:
    """Whether the server can make BM25 fields: Milvus Lite 3, or a server >= 2.5 (its version
    string is 'v2.3.5-lite' for the PyPI server, '...Compatible with Milvus 2.6' on Zilliz Cloud)."""
    return _server_since(client, BM25_SINCE)


def server_partition_key_upserts(client: MilvusClient) -> bool:
    """Whether upserts put a row in its partition key's partition: Milvus Lite, or a server >= 2.4."""
    return _server_since(client, PARTITION_KEY_SINCE)


def _server_since(client: MilvusClient, since: tuple[int, int]) -> bool:
    version = client.get_server_version()
    if version.startswith("milvus_lite"):
        return True
    found = re.search(r"(\d+)\.(\d+)", version)
    return found is None or (int(found[1]), int(found[2])) >= since


def bm25_function(info: dict[str, Any]) -> BM25BuiltInFunction | None:
    """The collection's BM25 function, as LlamaIndex's store wants it; None for dense-only collections."""
    for function in info.get("functions", []):
        if function.get("type") == FunctionType.BM25:
            return BM25BuiltInFunction(
                input_field_names=list(function["input_field_names"]),
                output_field_names=list(function["output_field_names"]),
                function_name=function["name"],
            )
    return None


def open_store(
    client: MilvusClient,
    uri: str,
    collection: str,
    *,
    embedder: Embedder,
    create: bool = False,
    token: str = "",
    consistency_level: str = "Strong",
    bm25: bool = True,
) -> CoalescingMilvusVectorStore:
    """The collection's store; `create` (ingest) makes it, and its manifest, where missing, with
    a BM25 field if `bm25` and the server can (an existing collection keeps its schema).

    `client` (from `connect`) vets an existing collection first: its vectors must come from the
    same model, known by its weights.
    """
    exists = client.has_collection(collection)
    has_bm25 = server_has_bm25(client)
    sparse = BM25BuiltInFunction(TEXT_FIELD, SPARSE_FIELD, function_name="bm25") if has_bm25 and bm25 else None
    if exists:
        sparse = bm25_function(client.describe_collection(collection))
        identity, name, stored_dim = collection_model(client, collection)
        # Collections from before identities were recorded hold the model's name there.
        same = identity is None or identity in (embedder.identity, embedder.name)
        if not same or (stored_dim is not None and stored_dim != embedder.dim):
            raise StoreError(
                f"collection {collection!r} holds {stored_dim}-dim vectors of "
                f"{name or identity or 'an unknown model'}, "
                f"but the embedding model is {embedder.name} ({embedder.dim} dims): use the same model, "
                "or another --collection"
            )
        client.load_collection(collection)  # a collection written by another process starts released
        if client.has_collection(manifest.manifest_name(collection)):
            client.load_collection(manifest.manifest_name(collection))
    with milvus_errors(f"Milvus at {uri} refused collection {collection!r}"):
        store = CoalescingMilvusVectorStore(
            uri=uri,
            token=token,
            collection_name=collection,
            dim=embedder.dim,
            embedding_field=EMBEDDING_FIELD,
            similarity_metric="COSINE",
            consistency_level=consistency_level,
            upsert_mode=True,  # a retried or resumed write overwrites instead of duplicating
            enable_sparse=sparse is not None,
            sparse_embedding_function=sparse,
            sparse_embedding_field=sparse.output_field_names[0] if sparse else SPARSE_FIELD,
            scalar_field_names=[tenants.FIELD],
            scalar_field_types=[DataType.VARCHAR],
            tenant_partition_key=server_partition_key_upserts(client),
            collection_properties=None
            if exists
            else {MODEL_PROPERTY: embedder.identity, MODEL_NAME_PROPERTY: embedder.name},
            # A new collection's indexes are made below, without pymilvus's fixed sleep (store/indexes.py).
            index_management=IndexManagement.NO_VALIDATION,
            timeout=CONNECT_TIMEOUT_S,
            **client_options(uri),
        )
        if not exists:
            create_indexes(store.client, collection, index_params(store))
        store.request_timeout_s = None if is_local(uri) else REQUEST_TIMEOUT_S
        store.server_has_bm25 = has_bm25
        store.has_tenants = not exists or has_field(client, collection, tenants.FIELD)
        if create:
            manifest.ensure(client, collection, partition_key=server_partition_key_upserts(client))
    return store


def has_field(client: MilvusClient, collection: str, name: str) -> bool:
    return any(f["name"] == name for f in client.describe_collection(collection)["fields"])


def index_params(store: CoalescingMilvusVectorStore) -> IndexParams:
    """The indexes LlamaIndex's store would give a new collection (its own methods say which)."""
    params = store.client.prepare_index_params()
    store._add_dense_index_params(params)
    if store.enable_sparse:
        store._add_sparse_index_params(params)
    return params


def is_companion(name: str, names: set[str]) -> bool:
    """A collection's document records (store/manifest.py) or keys (store/keys.py), or a copy
    `reindex` is making of it: not a collection of its own."""
    owned = name.endswith(manifest.SUFFIX) and name.removesuffix(manifest.SUFFIX) in names
    # Keys may be made before the first ingest makes their collection (the name is reserved).
    return owned or name.endswith((keys.SUFFIX, reindex.SUFFIX))


def collection_names(client: MilvusClient) -> list[str]:
    names = set(client.list_collections())
    return sorted(n for n in names if not is_companion(n, names))


def stats(client: MilvusClient, collection: str, tenant: str | None = None) -> CollectionStats:
    """A collection's counts; `tenant`'s documents and chunks alone, if given."""
    _, name, dim = collection_model(client, collection)
    if tenant is not None and not has_field(client, collection, tenants.FIELD):
        raise StoreError(tenants.BEFORE_TENANTS.format(collection=collection))
    within = tenants.clause(tenant)
    client.load_collection(collection)
    rows = client.query(collection, filter=within, output_fields=["count(*)"])
    chunks = int(rows[0]["count(*)"]) if rows else 0
    records = manifest.manifest_name(collection)
    if client.has_collection(records):
        client.load_collection(records)
        counted = client.query(records, filter=within, output_fields=["count(*)"], consistency_level="Strong")
        documents = int(counted[0]["count(*)"]) if counted else 0
    else:  # a collection from before manifests, or written by LlamaIndex alone: count its doc ids
        documents = len({row["doc_id"] for page in scan.pages(client, collection, ["doc_id"]) for row in page})
    bm25 = bm25_function(client.describe_collection(collection)) is not None
    return CollectionStats(collection, documents, chunks, name, dim, bm25)
