"""CoalescingMilvusVectorStore against Milvus Lite and a real Milvus 2.3.5 server.

Every test runs on both backends ("server" is skipped, with the reason, when the `milvus`
package is absent). Data is small: dim 8, tens of rows, one fresh collection per test.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from llama_index.core.schema import NodeRelationship, RelatedNodeInfo, TextNode
from llama_index.core.vector_stores import (
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
    VectorStoreQuery,
    VectorStoreQueryResult,
)
from llama_index.vector_stores.milvus import MilvusVectorStore
from llama_index.vector_stores.milvus.base import IndexManagement
from pydantic_core import PydanticSerializationError
from pymilvus.exceptions import MilvusException, ParamError

from asyncrag.store.indexes import create_indexes
from asyncrag.store.milvus import index_params, release_lite
from asyncrag.store.vector_store import CoalescingMilvusVectorStore

DIM = 8
GENRES = ("essay", "report", "letter")


@pytest.fixture(scope="module")
def lite_uri_of_module(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One Milvus Lite database for the module: each test has a collection of its own in it."""
    path = str(tmp_path_factory.mktemp("store") / "milvus.db")
    yield path
    release_lite(path)  # the in-process Lite server would live until the session ends


@pytest.fixture(params=["lite", pytest.param("server", marks=pytest.mark.server)])
def uri(request: pytest.FixtureRequest) -> str:
    backend = "milvus_server" if request.param == "server" else "lite_uri_of_module"
    value = request.getfixturevalue(backend)
    return str(getattr(value, "uri", value))


@pytest.fixture
def collection() -> str:
    return f"t_{uuid.uuid4().hex[:12]}"


@pytest.fixture
def make_store(uri: str, collection: str) -> Iterator[Callable[..., MilvusVectorStore]]:
    """Stores on one fresh collection (several stores may share it), dropped afterwards.

    The first store makes the collection with LlamaIndex's schema and indexes, built without
    pymilvus's fixed sleep (asyncrag's own way, store/indexes.py); the stores under test then open it.
    """
    made: list[MilvusVectorStore] = []

    def make(cls: type[MilvusVectorStore] = CoalescingMilvusVectorStore, **kwargs) -> MilvusVectorStore:
        options: dict[str, Any] = {
            "uri": uri,
            "collection_name": collection,
            "dim": DIM,
            "embedding_field": "embedding",
            "similarity_metric": "COSINE",
            "consistency_level": "Strong",  # a real server defaults to Bounded
            **kwargs,
        }
        if not made:
            first = cls(**options, index_management=IndexManagement.NO_VALIDATION)
            create_indexes(first.client, collection, index_params(first))
            first.client.close()
        store = cls(**options)
        made.append(store)
        return store

    yield make
    if made:
        with contextlib.suppress(Exception):
            made[0].client.drop_collection(collection)


def vector(rng: random.Random, dim: int = DIM) -> list[float]:
    return [rng.uniform(-1, 1) for _ in range(dim)]


def make_nodes(n: int, seed: int = 0, *, docs: int = 3, text: str | None = None) -> list[TextNode]:
    rng = random.Random(seed)
    return [
        TextNode(
            id_=f"node-{seed}-{i}",
            text=text if text is not None else f"text {i}",
            embedding=vector(rng),
            metadata={"genre": GENRES[i % len(GENRES)], "year": 2000 + i},
            relationships={NodeRelationship.SOURCE: RelatedNodeInfo(node_id=f"doc-{i % docs}")},
        )
        for i in range(n)
    ]


def nearest(nodes: list[TextNode], query: list[float]) -> str:
    def cosine(a: list[float], b: list[float]) -> float:
        return sum(x * y for x, y in zip(a, b)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))

    return max(nodes, key=lambda n: cosine(n.embedding, query)).node_id


def count(store: MilvusVectorStore, expr: str = "") -> int:
    rows = store.client.query(store.collection_name, filter=expr, output_fields=["count(*)"])
    return int(rows[0]["count(*)"]) if rows else 0


def assert_same(ours: VectorStoreQueryResult, theirs: VectorStoreQueryResult) -> None:
    """Same ids in the same order, scores within 1e-5, same node content."""
    assert ours.ids == theirs.ids
    assert len(ours.similarities) == len(theirs.similarities)
    for a, b in zip(ours.similarities, theirs.similarities):
        assert abs(a - b) <= 1e-5
    assert [n.node_id for n in ours.nodes] == [n.node_id for n in theirs.nodes]
    assert [n.get_content() for n in ours.nodes] == [n.get_content() for n in theirs.nodes]
    assert [n.metadata for n in ours.nodes] == [n.metadata for n in theirs.nodes]


def inserts_of(store: CoalescingMilvusVectorStore):
    return store._coalescers_for_loop()[0]


async def query_all(
    store: MilvusVectorStore, queries: list[list[float]], top_k: int = 3, **kwargs: Any
) -> list[VectorStoreQueryResult]:
    """One concurrent `aquery` per query vector, as many independent callers would make them."""
    return await asyncio.gather(
        *(store.aquery(VectorStoreQuery(query_embedding=q, similarity_top_k=top_k, **kwargs)) for q in queries)
    )


def searches_of(store: CoalescingMilvusVectorStore):
    return store._coalescers_for_loop()[1]


# -- add / query ------------------------------------------------------------------------------


def test_sync_add_and_query(make_store) -> None:
    store = make_store()
    nodes = make_nodes(30)
    assert store.add(nodes) == [n.node_id for n in nodes]
    rng = random.Random(1)
    for _ in range(3):
        q = vector(rng)
        result = store.query(VectorStoreQuery(query_embedding=q, similarity_top_k=3))
        assert result.ids[0] == nearest(nodes, q)
        assert len(result.nodes) == 3


async def test_concurrent_async_adds_share_requests_and_each_gets_its_ids(make_store) -> None:
    store = make_store()
    nodes = make_nodes(40)
    ids = await asyncio.gather(*(store.async_add([n]) for n in nodes))
    assert ids == [[n.node_id] for n in nodes]
    assert inserts_of(store).batches_sent == 1  # 40 one-node calls, one insert request
    assert count(store) == 40
    # every node finds itself
    results = await query_all(store, [n.embedding for n in nodes[:10]], top_k=1)
    assert [r.ids[0] for r in results] == [n.node_id for n in nodes[:10]]
    assert all(abs(r.similarities[0] - 1.0) < 1e-4 for r in results)
    assert results[0].nodes[0].get_content() == "text 0"
    assert results[0].nodes[0].metadata == {"genre": "essay", "year": 2000}
    assert results[0].nodes[0].ref_doc_id == "doc-0"


async def test_one_large_async_add_is_split_into_requests(make_store) -> None:
    store = make_store(max_batch_rows=16)
    nodes = make_nodes(100)
    assert await store.async_add(nodes) == [n.node_id for n in nodes]
    assert inserts_of(store).batches_sent == 7  # ceil(100 / 16)
    assert count(store) == 100


async def test_insert_requests_stay_within_the_byte_budget(make_store) -> None:
    store = make_store(max_batch_bytes=16 * 1024)
    sizes: list[int] = []
    real_insert = store.aclient.insert

    async def insert(collection_name, data, **kwargs):
        sizes.append(sum(store._row_bytes(row) for row in data))
        return await real_insert(collection_name, data, **kwargs)

    store.aclient.insert = insert  # type: ignore[method-assign]
    nodes = make_nodes(20, text="x" * 3000)
    ids = await asyncio.gather(*(store.async_add([n]) for n in nodes))
    assert ids == [[n.node_id] for n in nodes]
    assert len(sizes) >= 4 and max(sizes) <= 16 * 1024
    assert count(store) == 20


async def test_coalesced_results_equal_one_request_per_call(make_store) -> None:
    """Same collection, same data, same queries: the coalesced path answers like the official one."""
    ours = make_store()
    theirs = make_store(MilvusVectorStore)
    nodes = make_nodes(60)
    theirs.add(nodes)
    rng = random.Random(7)
    queries = [vector(rng) for _ in range(25)]
    filters = MetadataFilters(filters=[MetadataFilter(key="genre", value="report")])
    for top_k, kwargs in ((3, {}), (5, {"filters": filters})):
        batches_before = searches_of(ours).batches_sent
        coalesced = await query_all(ours, queries, top_k, **kwargs)
        assert searches_of(ours).batches_sent == batches_before + 1  # 25 calls, one search request
        per_call = await query_all(theirs, queries, top_k, **kwargs)  # MilvusVectorStore: a request per call
        for mine, official in zip(coalesced, per_call):
            assert len(official.ids) == top_k
            assert_same(mine, official)
        # and the sync path (inherited) agrees too
        assert_same(
            ours.query(VectorStoreQuery(query_embedding=queries[0], similarity_top_k=top_k, **kwargs)), coalesced[0]
        )


async def test_different_parameters_do_not_share_a_request(make_store) -> None:
    store = make_store()
    nodes = make_nodes(30)
    store.add(nodes)
    rng = random.Random(3)
    calls = [VectorStoreQuery(query_embedding=vector(rng), similarity_top_k=k) for k in (1, 2, 3) for _ in range(4)]
    results = await asyncio.gather(*(store.aquery(q) for q in calls))
    assert [len(r.ids) for r in results] == [q.similarity_top_k for q in calls]
    assert searches_of(store).batches_sent == 3
    assert [r.ids[0] for r in results] == [nearest(nodes, q.query_embedding) for q in calls]


# -- filters and deletes ----------------------------------------------------------------------


async def test_metadata_filters_and_raw_expressions(make_store) -> None:
    store = make_store()
    nodes = make_nodes(30)
    await store.async_add(nodes)
    q = vector(random.Random(5))
    by_genre = MetadataFilters(filters=[MetadataFilter(key="genre", value="letter")])
    recent = MetadataFilters(filters=[MetadataFilter(key="year", value=2020, operator=FilterOperator.GTE)])
    genre, year, raw, sync = await asyncio.gather(
        store.aquery(VectorStoreQuery(query_embedding=q, similarity_top_k=5, filters=by_genre)),
        store.aquery(VectorStoreQuery(query_embedding=q, similarity_top_k=20, filters=recent)),
        store.aquery(
            VectorStoreQuery(query_embedding=q, similarity_top_k=20), string_expr='year < 2005 and genre == "essay"'
        ),
        asyncio.to_thread(store.query, VectorStoreQuery(query_embedding=q, similarity_top_k=5, filters=by_genre)),
    )
    assert len(genre.nodes) == 5 and all(n.metadata["genre"] == "letter" for n in genre.nodes)
    assert genre.ids[0] == nearest([n for n in nodes if n.metadata["genre"] == "letter"], q)
    assert sorted(n.metadata["year"] for n in year.nodes) == list(range(2020, 2030))
    assert sorted(raw.ids) == sorted(
        n.node_id for n in nodes if n.metadata["year"] < 2005 and n.metadata["genre"] == "essay"
    )
    assert sync.ids == genre.ids


async def test_adelete_and_delete_remove_a_documents_nodes(make_store) -> None:
    store = make_store()
    nodes = make_nodes(30, docs=3)
    await asyncio.gather(*(store.async_add([n]) for n in nodes))
    assert count(store, 'doc_id == "doc-1"') == 10
    await store.adelete("doc-1")
    assert count(store, 'doc_id == "doc-1"') == 0
    store.delete("doc-2")
    assert count(store) == 10
    result = await store.aquery(VectorStoreQuery(query_embedding=nodes[1].embedding, similarity_top_k=30))
    assert {n.ref_doc_id for n in result.nodes} == {"doc-0"}


# -- failures stay with their callers ---------------------------------------------------------


async def test_bad_queries_fail_only_themselves(make_store) -> None:
    store = make_store()
    theirs = make_store(MilvusVectorStore)
    nodes = make_nodes(30)
    store.add(nodes)
    rng = random.Random(11)
    good = [vector(rng) for _ in range(10)]
    calls = [store.aquery(VectorStoreQuery(query_embedding=q, similarity_top_k=3)) for q in good]
    calls.insert(3, store.aquery(VectorStoreQuery(query_embedding=vector(rng, DIM + 3), similarity_top_k=3)))
    calls.insert(
        7, store.aquery(VectorStoreQuery(query_embedding=good[0], similarity_top_k=3), string_expr="year >>> 3")
    )
    outcomes = await asyncio.gather(*calls, return_exceptions=True)
    bad = [outcomes.pop(7), outcomes.pop(3)]
    assert all(isinstance(e, MilvusException) for e in bad), bad
    per_call = await query_all(theirs, good)
    for mine, official in zip(outcomes, per_call):
        assert isinstance(mine, VectorStoreQueryResult), mine
        assert_same(mine, official)


async def test_a_bad_node_fails_only_its_own_add(make_store) -> None:
    store = make_store()
    nodes = make_nodes(12)
    bad = make_nodes(1, seed=99)[0]
    bad.embedding = [0.1] * (DIM + 1)  # wrong dimension, same batch key as nothing else
    worse = make_nodes(1, seed=98)[0]
    worse.embedding = [0.1] * DIM
    worse.id_ = "x" * 70_000  # longer than the id field's max_length: fails in Milvus, inside a batch
    calls = [store.async_add([n]) for n in nodes]
    calls.insert(4, store.async_add([bad]))
    calls.insert(9, store.async_add([worse]))
    outcomes = await asyncio.gather(*calls, return_exceptions=True)
    failures = [outcomes.pop(9), outcomes.pop(4)]
    assert all(isinstance(e, Exception) for e in failures), failures
    assert outcomes == [[n.node_id] for n in nodes]
    assert count(store) == 12


# -- compatibility ----------------------------------------------------------------------------


async def test_the_official_store_reads_what_we_write_and_back(make_store) -> None:
    ours = make_store()
    nodes = make_nodes(20)
    await asyncio.gather(*(ours.async_add([n]) for n in nodes[:10]))
    theirs = make_store(MilvusVectorStore)  # opens the collection ours created
    theirs.add(nodes[10:])
    for store in (ours, theirs):
        got = store.get_nodes(node_ids=[n.node_id for n in nodes])
        assert sorted(n.node_id for n in got) == sorted(n.node_id for n in nodes)
    for node in (nodes[2], nodes[15]):
        q = VectorStoreQuery(query_embedding=node.embedding, similarity_top_k=1)
        mine, official = await ours.aquery(q), theirs.query(q)
        assert_same(mine, official)
        hit = official.nodes[0]
        assert (hit.node_id, hit.get_content(), hit.metadata, hit.ref_doc_id) == (
            node.node_id,
            node.text,
            node.metadata,
            node.ref_doc_id,
        )


# -- cancellation -----------------------------------------------------------------------------


async def test_cancelling_a_waiting_caller_is_clean(make_store) -> None:
    store = make_store(max_wait_s=0.2)
    nodes = make_nodes(6)
    adds = [asyncio.create_task(store.async_add([n])) for n in nodes]
    await asyncio.sleep(0.01)  # all six are queued, the window is still open
    adds[2].cancel()
    outcomes = await asyncio.gather(*adds, return_exceptions=True)
    assert isinstance(outcomes[2], asyncio.CancelledError)
    assert [outcomes[i] for i in (0, 1, 3, 4, 5)] == [[nodes[i].node_id] for i in (0, 1, 3, 4, 5)]
    assert count(store) == 5
    assert count(store, f'id == "{nodes[2].node_id}"') == 0

    queries = [
        asyncio.create_task(store.aquery(VectorStoreQuery(query_embedding=n.embedding, similarity_top_k=1)))
        for n in nodes
    ]
    await asyncio.sleep(0.01)
    queries[0].cancel()
    results = await asyncio.gather(*queries, return_exceptions=True)
    assert isinstance(results[0], asyncio.CancelledError)
    assert [r.ids[0] for r in results[3:]] == [n.node_id for n in nodes[3:]]
    await store.aflush_pending()


# -- error paths: the official store's exception types ----------------------------------------

BOTH = pytest.mark.parametrize("cls", [MilvusVectorStore, CoalescingMilvusVectorStore], ids=["official", "ours"])


def odd_node(**changes: Any) -> TextNode:
    node = make_nodes(1, seed=42)[0]
    for name, value in changes.items():
        setattr(node, name, value)
    return node


# What a caller gets from one bad call, on either class and either backend: the exact type.
BAD_CALLS: dict[str, tuple[Callable[[MilvusVectorStore], Any], type[Exception]]] = {
    "nodes=None": (lambda s: s.async_add(None), TypeError),
    "a node without an embedding": (lambda s: s.async_add([odd_node(embedding=None)]), MilvusException),
    "a node of the wrong dimension": (lambda s: s.async_add([odd_node(embedding=[0.5] * (DIM + 1))]), MilvusException),
    "nodes of two dimensions": (
        lambda s: s.async_add([*make_nodes(2), odd_node(embedding=[0.5] * (DIM + 1))]),
        MilvusException,
    ),
    "an id over the field's max_length": (lambda s: s.async_add([odd_node(id_="x" * 70_000)]), MilvusException),
    "metadata that cannot be serialised": (
        lambda s: s.async_add([odd_node(metadata={"when": object()})]),
        PydanticSerializationError,
    ),
    "an unknown partition": (lambda s: s.async_add(make_nodes(1), milvus_partition_name="nope"), MilvusException),
    "a query of the wrong dimension": (
        lambda s: s.aquery(VectorStoreQuery(query_embedding=[0.5] * (DIM + 1), similarity_top_k=3)),
        MilvusException,
    ),
    "a malformed filter": (
        lambda s: s.aquery(VectorStoreQuery(query_embedding=[0.5] * DIM, similarity_top_k=3), string_expr="year >>> 3"),
        MilvusException,
    ),
    "top-k 0": (lambda s: s.aquery(VectorStoreQuery(query_embedding=[0.5] * DIM, similarity_top_k=0)), ParamError),
}


async def error_type(call: Any) -> type[BaseException] | None:
    try:
        await call
    except Exception as e:
        return type(e)
    return None


@BOTH
async def test_bad_calls_raise_the_official_stores_exception_types(make_store, cls) -> None:
    store = make_store(cls)
    store.add(make_nodes(5, seed=1))
    got = {name: await error_type(call(store)) for name, (call, _) in BAD_CALLS.items()}
    assert got == {name: expected for name, (_, expected) in BAD_CALLS.items()}
    assert await store.async_add([]) == []
    assert count(store) == 5  # no bad call wrote anything


@BOTH
async def test_force_flush_is_refused_and_ours_writes_nothing_first(make_store, cls) -> None:
    store = make_store(cls)
    with pytest.raises(NotImplementedError, match="force_flush"):
        await store.async_add(make_nodes(3), force_flush=True)
    # The official store inserts, then raises; ours raises before anything is queued.
    assert count(store) == (0 if cls is CoalescingMilvusVectorStore else 3)
    if cls is CoalescingMilvusVectorStore:
        assert inserts_of(store).batches_sent == 0


@BOTH
async def test_async_calls_without_the_async_client_say_how_to_get_it(make_store, cls) -> None:
    store = make_store(cls, use_async_client=False)
    query = VectorStoreQuery(query_embedding=[0.5] * DIM, similarity_top_k=3)
    for call in (lambda: store.async_add(make_nodes(3)), lambda: store.async_add([]), lambda: store.aquery(query)):
        with pytest.raises(AssertionError, match=r"use_async_client ?= ?True"):
            await call()
    assert count(store) == 0
    assert store.add(make_nodes(3)) == [n.node_id for n in make_nodes(3)]  # the sync path still works
    assert store.query(query).ids


@BOTH
async def test_a_dense_aquery_without_an_embedding_fails_only_itself(make_store, cls) -> None:
    store = make_store(cls)
    nodes = make_nodes(10)
    store.add(nodes)
    calls = [store.aquery(VectorStoreQuery(query_embedding=n.embedding, similarity_top_k=1)) for n in nodes[:4]]
    calls.insert(2, store.aquery(VectorStoreQuery(query_embedding=None, similarity_top_k=1)))
    outcomes = await asyncio.gather(*calls, return_exceptions=True)
    assert type(outcomes.pop(2)) is ParamError
    assert [r.ids for r in outcomes] == [[n.node_id] for n in nodes[:4]]
    if cls is CoalescingMilvusVectorStore:
        assert searches_of(store).batches_sent == 1  # the four good ones shared a request; None never joined


async def test_hits_of_every_node_kind_read_as_the_official_store_reads_them(make_store) -> None:
    """The store's own hit parsing (one validation per node) gives the official nodes, field for
    field, for each kind of node LlamaIndex stores, a row written without one, and JSON that only
    Python's `json` reads as it does (NaN, integers past 64 bits)."""
    from llama_index.core.schema import ImageNode, IndexNode

    ours = make_store()
    rng = random.Random(7)
    rich = TextNode(
        id_="rich",
        text="Ünïcödé \"quotes\" and\nnew lines 😀",
        metadata={"genre": "essay", "year": 1999, "tags": ["a", "b"], "nested": {"k": 1.5}},
        excluded_embed_metadata_keys=["year"],
        excluded_llm_metadata_keys=["tags"],
        relationships={
            NodeRelationship.SOURCE: RelatedNodeInfo(node_id="doc-1", metadata={"m": 1}),
            NodeRelationship.PREVIOUS: RelatedNodeInfo(node_id="prev"),
        },
        start_char_idx=3,
        end_char_idx=40,
        text_template="{metadata_str}::{content}",
    )
    nodes = [
        rich,
        TextNode(id_="empty", text=""),
        IndexNode(id_="index", text="an index node", index_id="other-index"),
        ImageNode(id_="image", text="a caption", image_url="https://example.invalid/x.png"),
    ]  # (not `Node`: the official store can neither write nor read one, and neither can this one)
    for node in nodes:
        node.embedding = vector(rng)
    await ours.async_add(nodes)
    odd = '{"id_": "odd", "metadata": {"nan": NaN, "inf": -Infinity, "big": 1000000000000000000000000000001}}'
    ours.client.insert(
        ours.collection_name,
        [
            {"id": "bare", "embedding": vector(rng), "text": "no node json", "doc_id": "d"},
            {"id": "odd", "embedding": vector(rng), "text": "odd JSON", "doc_id": "d", "_node_content": odd},
        ],
    )
    hits = ours.client.search(
        ours.collection_name, data=[vector(rng)], limit=10, output_fields=ours.fields_to_fetch(("*",)), anns_field="embedding"
    )[0]
    assert len(hits) == len(nodes) + 2
    mine = ours._parse_from_milvus_results([hits])
    official = MilvusVectorStore._parse_from_milvus_results(ours, [hits])
    assert mine[1:] == official[1:]  # scores, ids
    for a, b in zip(mine[0], official[0], strict=True):  # the bare row's node gets a random id, both ways
        assert (type(a), repr(a.model_dump(exclude={"id_"}))) == (type(b), repr(b.model_dump(exclude={"id_"})))
        assert a.node_id == b.node_id or a.text == "no node json"
    stored = {n.node_id: n for n in mine[0]}
    assert stored["rich"].text == rich.text and stored["rich"].relationships == rich.relationships
    assert stored["rich"].metadata == rich.metadata and isinstance(stored["index"], IndexNode)
    assert stored["odd"].metadata["big"] == 10**30 + 1 and math.isnan(stored["odd"].metadata["nan"])
