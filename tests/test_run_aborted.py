"""A run stopped by a Milvus or an embedder that stays down (RunAborted), without a server.

The run's tasks live in one TaskGroup: the first RunAborted must cancel the rest at once, leave
the documents it was writing recorded "writing", and the next run must end with exactly the
chunks of a run that never failed.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import HashEmbedder
from pymilvus import MilvusClient

from asyncrag.ingest import pipeline
from asyncrag.rag import AsyncRAG
from asyncrag.store.collection import Collection
from asyncrag.store.milvus import release_lite

FAST_GIVE_UP = pipeline.Limits(embed_batch_size=1, attempts=2, max_backoff_s=0.01)


@pytest.fixture
def uri(tmp_path: Path) -> Iterator[str]:
    path = str(tmp_path / "milvus.db")
    yield path
    release_lite(path)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(12):
        (folder / f"doc{i:02}.txt").write_text(f"Document {i} is about the number {i * 7}.")
    return folder


def chunk_ids(uri: str, collection: str) -> set[str]:
    client = MilvusClient(uri)
    try:
        client.load_collection(collection)
        rows = client.query(collection, filter="", output_fields=["id"], limit=16384, consistency_level="Strong")
    finally:
        client.close()
    return {row["id"] for row in rows}


async def run(uri: str, collection: str, folder: Path, embedder: HashEmbedder, limits: pipeline.Limits | None) -> None:
    async with AsyncRAG(embedder=embedder, uri=uri, collection=collection, llm="none") as rag:
        if limits is None:
            report = await rag.ingest([folder])
            assert report.ok and len(report.documents) == 12
        else:
            await pipeline.ingest(
                [folder], await rag.collection(create=True), embedder=embedder,
                chunk_spec=await rag.chunk_spec(), limits=limits,
            )


async def stops(uri: str, folder: Path, embedder: HashEmbedder, why: str) -> None:
    """The run stops in moments, and leaves what it had not finished for the next run."""
    started = time.perf_counter()
    with pytest.raises(pipeline.RunAborted, match=f"{why} kept failing.*run the same command again to resume"):
        await run(uri, "inc", folder, embedder, FAST_GIVE_UP)
    assert time.perf_counter() - started < 10
    async with AsyncRAG(embedder=HashEmbedder(), uri=uri, collection="inc", llm="none") as rag:
        records = await rag.documents()
    assert sum(r.complete for r in records) < 12


async def resumes(uri: str, folder: Path) -> None:
    """The next run ends with exactly the chunks of a run that never failed."""
    await run(uri, "inc", folder, HashEmbedder(), None)
    await run(uri, "reference", folder, HashEmbedder(), None)
    assert chunk_ids(uri, "inc") == chunk_ids(uri, "reference")


async def test_writes_that_keep_failing_stop_the_run_and_the_next_one_completes(
    uri: str, folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_write = Collection.write
    writes = []

    async def write(self: Collection, nodes: list) -> None:
        writes.append(len(nodes))
        if len(writes) > 3:
            raise ConnectionError("Milvus went away")
        await real_write(self, nodes)

    monkeypatch.setattr(Collection, "write", write)
    await stops(uri, folder, HashEmbedder(), "writing to Milvus")
    monkeypatch.undo()
    await resumes(uri, folder)


async def test_an_embedder_that_stays_down_stops_the_run_and_the_next_one_completes(uri: str, folder: Path) -> None:
    class GoesDown(HashEmbedder):
        calls = 0

        def embed(self, texts: list[str]) -> list[list[float]]:
            GoesDown.calls += 1
            if GoesDown.calls > 4:
                raise TimeoutError("the endpoint stopped answering")
            return super().embed(texts)

    await stops(uri, folder, GoesDown(), "embedding with test-hash-embedder")
    await resumes(uri, folder)
