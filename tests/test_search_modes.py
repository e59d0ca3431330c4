"""Dense, BM25 and hybrid search on a real Milvus Lite (and what an older server lacks)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from llama_index.vector_stores.milvus import MilvusVectorStore

from asyncrag.errors import ConfigError, StoreError
from asyncrag.rag import AsyncRAG
from asyncrag.store import milvus

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "examples" / "corpus"
pytestmark = pytest.mark.asyncio(loop_scope="session")  # the fixtures' loop


@pytest.fixture
async def hashed(lite_uri: str, hash_embedder):
    """The example corpus, ingested with the hashing embedder: dense hits are noise, BM25 hits are not."""
    async with AsyncRAG(embedder=hash_embedder, uri=lite_uri, collection="modes", llm="none") as rag:
        await rag.ingest([str(CORPUS)])
        yield rag


async def test_new_collections_have_a_bm25_field_and_auto_means_hybrid(hashed: AsyncRAG) -> None:
    store = await hashed.store()
    assert store.builtin_sparse and store.sparse_embedding_field == milvus.SPARSE_FIELD
    hits = await hashed.search("Lindqvist founded the cooperative in 1987", k=5)
    assert hashed._retriever is not None and hashed._retriever.mode_for("auto") == "hybrid"
    assert any("Lindqvist" in h.text for h in hits)  # BM25's share of the fusion, past hashed vectors


async def test_bm25_finds_exact_tokens_that_hashed_vectors_cannot(hashed: AsyncRAG) -> None:
    sparse = await hashed.search("Lindqvist", k=1, mode="sparse")
    assert "Lindqvist" in sparse[0].text and sparse[0].score > 0  # Lite returns BM25 scores negated
    scores = [s.score for s in await hashed.search("tea cooperative", k=4, mode="sparse")]
    assert scores == sorted(scores, reverse=True)
    hybrid = await hashed.search("Lindqvist", k=3, mode="hybrid")
    assert any("Lindqvist" in s.text for s in hybrid)


async def test_concurrent_searches_of_each_mode_share_requests(hashed: AsyncRAG) -> None:
    await hashed.search("warm up", k=3, mode="dense")
    store = await hashed.store()
    searches = store._coalescers[2]  # type: ignore[index]
    for mode in ("dense", "sparse", "hybrid"):
        before = searches.batches_sent
        questions = [f"Who founded the cooperative? {i}" for i in range(40)]
        results = await asyncio.gather(*(hashed.search(q, k=3, mode=mode) for q in questions))
        assert all(len(r) == 3 for r in results)
        assert searches.batches_sent - before <= 3, mode  # 40 callers, a handful of requests


async def test_filters_apply_in_every_mode(hashed: AsyncRAG) -> None:
    for mode in ("dense", "sparse", "hybrid"):
        hits = await hashed.search("tea", k=5, filter='file_name == "faq.html"', mode=mode)
        assert hits and {Path(h.source).name for h in hits} == {"faq.html"}, mode


async def test_an_unknown_mode_is_a_clear_error(hashed: AsyncRAG) -> None:
    with pytest.raises(ConfigError, match="search mode must be one of auto, dense, sparse, hybrid"):
        await hashed.search("tea", mode="bm25")  # type: ignore[arg-type]


async def test_collections_without_bm25_search_dense_and_say_how_to_add_it(lite_uri: str, hash_embedder) -> None:
    """A collection made before hybrid search (LlamaIndex's dense-only schema) keeps working."""
    MilvusVectorStore(uri=lite_uri, collection_name="old", dim=hash_embedder.dim, embedding_field="embedding")
    milvus.release_lite(lite_uri)
    async with AsyncRAG(embedder=hash_embedder, uri=lite_uri, collection="old", llm="none") as rag:
        await rag.ingest([str(CORPUS / "about.md")])
        store = await rag.store()
        assert not store.enable_sparse
        assert await rag.search("founded", k=2)  # auto: dense
        with pytest.raises(StoreError, match=r"no BM25 field.*asyncrag reindex"):
            await rag.search("founded", k=2, mode="hybrid")


@pytest.mark.slow
async def test_a_server_without_bm25_searches_dense_and_says_what_it_lacks(milvus_server, hash_embedder) -> None:
    async with AsyncRAG(
        embedder=hash_embedder, uri=milvus_server.uri, collection="modes_old_server", llm="none"
    ) as rag:
        await rag.ingest([str(CORPUS / "about.md")])
        assert not (await rag.store()).enable_sparse
        assert await rag.search("founded", k=2)
        with pytest.raises(StoreError, match=r"lacks.*Milvus 2\.5"):
            await rag.search("founded", k=2, mode="sparse")


async def test_span_locates_the_cited_passage_in_its_file(hashed: AsyncRAG) -> None:
    hits = [h for h in await hashed.search("Lindqvist cooperative", k=5, mode="sparse") if h.source.endswith(".md")]
    assert hits
    for hit in hits:
        assert hit.start is not None and hit.end is not None
        assert Path(hit.source).read_text()[hit.start : hit.end] == hit.text
        assert hit.heading.split(" › ")[-1] in {"The Kestrel Valley Tea Cooperative", "History", "Governance", "Gardens"}


async def test_reindex_adds_bm25_keeping_every_chunk_and_record(lite_uri: str, hash_embedder) -> None:
    MilvusVectorStore(uri=lite_uri, collection_name="old", dim=hash_embedder.dim, embedding_field="embedding")
    milvus.release_lite(lite_uri)
    async with AsyncRAG(embedder=hash_embedder, uri=lite_uri, collection="old", llm="none") as rag:
        await rag.ingest([str(CORPUS)])
        before = {(h.source, h.text) for h in await rag.search("tea", k=50, mode="dense")}
        documents = await rag.documents()
        assert await rag.reindex() == len(before)
        assert await rag.reindex() is None  # nothing left to do
        assert (await rag.store()).builtin_sparse
        assert {(h.source, h.text) for h in await rag.search("tea", k=50, mode="dense")} == before
        assert "Lindqvist" in (await rag.search("Lindqvist", k=1, mode="sparse"))[0].text
        assert await rag.documents() == documents
        unchanged = await rag.ingest([str(CORPUS)])
        assert unchanged.counts()["unchanged"] == len(documents)
        assert [c.name for c in await rag.collections()] == ["old"]


async def test_reindex_finishes_a_swap_that_a_kill_interrupted(lite_uri: str, hash_embedder) -> None:
    from asyncrag.store import reindex

    async with AsyncRAG(embedder=hash_embedder, uri=lite_uri, collection="c", llm="none") as rag:
        await rag.ingest([str(CORPUS / "about.md")])
        chunks = (await rag.stats()).chunks
        await rag.aclose()
        client = milvus.connect(lite_uri)
        client.rename_collection("c", reindex.temporary_name("c"))  # killed between the drop and the rename
        client.close()
        assert await rag.reindex() is None
        assert (await rag.stats()).chunks == chunks
