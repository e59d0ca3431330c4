"""Ingest on Ray (ingest/on_ray.py), on a real local Ray cluster of two nodes and the real 2.3.5 server.

What must hold: the chunks a Ray run stores are exactly those of an in-process run of the same
folder; a worker killed mid-run changes nothing in the end; a driver killed mid-run leaves
records the next run finishes, embedding only the documents that were not complete. One test
runs all three (each Ray run costs ~20 s of processes starting on 2 cores).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_hostile_names import HOSTILE, marker

from asyncrag.results import Status
from asyncrag.testing import HashEmbedder

ray = pytest.importorskip("ray")
STORED = 12 + len(HOSTILE)  # the corpus's documents with text
pytestmark = [pytest.mark.slow, pytest.mark.server]


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    """Two Ray nodes on this machine (a head and a worker, two logical CPUs each); this process joins it."""
    from ray.cluster_utils import Cluster

    nodes = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "include_dashboard": False})
    nodes.add_node(num_cpus=2)
    ray.init(address=nodes.address, log_to_driver=False)
    yield nodes.address
    ray.shutdown()
    nodes.shutdown()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Small files, a big one read in several stretches, files with hostile names, and two a run
    must report as failed."""
    folder = tmp_path_factory.mktemp("corpus")
    for i in range(10):
        body = "\n\n".join(f"Paragraph {j} of note {i}: the kestrel count was {i * 31 + j}." for j in range(12))
        (folder / f"note{i:02}.txt").write_text(body)
    (folder / "guide.md").write_text("# Guide\n\n## Setup\n\nInstall it.\n\n## Use\n\nRun it daily.\n")
    (folder / "big.txt").write_text("\n\n".join(f"Line {i}: " + "tea " * 40 for i in range(400)))  # 70 KB: 2 units
    (folder / "empty.txt").write_text("")
    (folder / "binary.txt").write_bytes(b"text\x00with a NUL")
    for i, name in enumerate(HOSTILE):  # names are data through every stage (pickled, never formatted)
        (folder / name).write_text(f"Document {i} holds the marker word {marker(i)}.")
    return folder


def stored(uri: str, collection: str) -> dict[str, Any]:
    """Every stored chunk of every complete document: id -> (document, text, vector rounded)."""
    from asyncrag.config import Settings
    from asyncrag.store.collection import Collection

    async def read() -> dict[str, Any]:
        async def model() -> HashEmbedder:
            return HashEmbedder()

        c = await Collection.open(Settings(uri=uri, collection=collection), model)  # type: ignore[arg-type]
        try:
            chunks: dict[str, Any] = {}
            for record in await c.records():
                assert record.complete, record
                async for page in c.chunks(record.doc_id, record.version, vectors=True):
                    for n in page:
                        chunks[n.node_id] = (n.ref_doc_id, n.get_content(), tuple(round(x, 5) for x in n.embedding))
            return chunks
        finally:
            await c.close()

    return asyncio.run(read())


def ingest(
    uri: str, collection: str, folder: Path, ray_address: str | None, embedder: HashEmbedder,
    progress: list[Any] | None = None,
) -> Any:
    from asyncrag.rag import AsyncRAG

    async def run() -> Any:
        async with AsyncRAG(
            uri=uri, collection=collection, ray=ray_address, embedder=embedder, llm="none", ray_writers=1
        ) as rag:
            return await rag.ingest([folder], doc_id_prefix="c", on_progress=None if progress is None else progress.append)

    return asyncio.run(run())


@pytest.fixture(scope="module")
def reference(milvus_server_process: Any, corpus: Path) -> dict[str, Any]:
    """The in-process run's chunks: what every Ray run must end with."""
    report = ingest(milvus_server_process.uri, "in_process", corpus, None, HashEmbedder())
    failed = {Path(d.path).name for d in report.documents if d.status is Status.FAILED}
    assert failed == {"empty.txt", "binary.txt"}
    return stored(milvus_server_process.uri, "in_process")


DRIVER = """
import asyncio, sys
from pathlib import Path
from asyncrag.rag import AsyncRAG
from asyncrag.testing import HashEmbedder

async def main():
    embedder = HashEmbedder(delay=0.2, log=Path(sys.argv[4]))
    async with AsyncRAG(
        uri=sys.argv[1], collection="killed", ray=sys.argv[2], embedder=embedder, embed_batch_size=4
    ) as rag:
        await rag.ingest([sys.argv[3]], doc_id_prefix="c")

asyncio.run(main())
"""


def test_a_killed_driver_and_a_killed_worker_end_in_exactly_the_chunks_of_an_in_process_run(
    milvus_server: Any, cluster: str, corpus: Path, reference: dict[str, Any], tmp_path: Path
) -> None:
    """The driver is killed mid-run; the next run, whose first embedding actor is killed on its
    first batch, finishes it: exactly the in-process run's chunks, only unfinished documents embedded."""
    from asyncrag.rag import AsyncRAG

    first, second, died = tmp_path / "first.log", tmp_path / "second.log", tmp_path / "died"
    driver = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(DRIVER), milvus_server.uri, cluster, str(corpus), str(first)],
        stderr=subprocess.DEVNULL,
    )

    async def complete() -> dict[str, int]:
        async with AsyncRAG(uri=milvus_server.uri, collection="killed", embedder=HashEmbedder()) as rag:
            return {d.doc_id: d.chunks for d in await rag.documents() if d.complete}

    try:
        deadline = time.monotonic() + 600  # Ray's processes start slowly on 2 cores shared with other tests
        while len(asyncio.run(complete()) if first.exists() else {}) < 3:  # some documents finished, not all
            assert driver.poll() is None and time.monotonic() < deadline, "the first run ended before it was killed"
            time.sleep(0.3)
    finally:
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait()
    done = asyncio.run(complete())
    assert 3 <= len(done) < STORED

    progress: list[Any] = []
    report = ingest(milvus_server.uri, "killed", corpus, cluster, HashEmbedder(log=second, die_once=died), progress)

    assert died.exists()  # an embedding actor's process was killed (SIGKILL) on its first batch: Ray redid it
    by_status = {Path(d.path).name: d.status for d in report.documents}
    assert by_status["empty.txt"] is Status.FAILED and by_status["binary.txt"] is Status.FAILED
    statuses = {d.doc_id: d.status for d in report.documents if d.error is None}
    assert {d for d, s in statuses.items() if s is Status.UNCHANGED} == set(done)
    redone = [d for d in report.documents if d.status in (Status.ADDED, Status.UPDATED)]
    assert len(done) + len(redone) == STORED
    # Only the unfinished documents were embedded (the killed call had embedded nothing yet).
    assert len(second.read_text().splitlines()) == sum(d.chunks for d in redone)
    assert stored(milvus_server.uri, "killed") == reference
    steps = progress  # progress moves as on one machine: chunk by chunk, to every file done
    assert len(steps) > 2 and steps[-1].files_done == steps[-1].files_total == len(redone) + 2
    assert [p.chunks for p in steps] == sorted(p.chunks for p in steps) and steps[-1].chunks == sum(d.chunks for d in redone)
    big = next(d for d in report.documents if d.path.endswith("big.txt"))
    assert big.status is not Status.UNCHANGED and big.chunks > 20  # two units, parsed by tasks of their own

    again = ingest(milvus_server.uri, "killed", corpus, cluster, HashEmbedder())
    assert {d.status for d in again.documents if d.error is None} == {Status.UNCHANGED}


def test_ray_refuses_milvus_lite_in_one_line(corpus: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ASYNCRAG_", "RAY_"))}
    asyncrag = Path(sys.executable).with_name("asyncrag")
    done = subprocess.run(
        [str(asyncrag), "ingest", str(corpus), "--uri", str(tmp_path / "lite.db"), "--ray", "local"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=180,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.startswith("error: --ray needs a Milvus server: Milvus Lite") and len(done.stderr.splitlines()) == 1


def test_a_cluster_nothing_answers_at_is_refused_in_seconds() -> None:
    from asyncrag.config import Settings
    from asyncrag.errors import ConfigError
    from asyncrag.ingest.on_ray import _check_reachable

    with pytest.raises(ConfigError, match=r"cannot join the Ray cluster at '127.0.0.1:9' .*--ray local"):
        _check_reachable(Settings(uri="http://127.0.0.1:19530", ray="127.0.0.1:9").ray)  # Ray retries for minutes


def test_gpu_actors_on_a_cluster_without_gpus_are_refused_in_one_line(
    milvus_server: Any, cluster: str, corpus: Path
) -> None:
    from asyncrag.errors import ConfigError
    from asyncrag.rag import AsyncRAG

    async def run() -> None:
        async with AsyncRAG(uri=milvus_server.uri, collection="gpus", ray=cluster, ray_gpus=1, embedder=HashEmbedder()) as rag:
            await rag.ingest([corpus])

    with pytest.raises(ConfigError, match="the Ray cluster has 0 GPUs"):
        asyncio.run(run())
