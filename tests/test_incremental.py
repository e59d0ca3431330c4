"""Incremental, resumable ingestion (issue 10): each step checks the exact set of stored chunks.

The hash embedder stands in for the model (these are tests of plumbing); Milvus is real: Lite,
and the real server fixture where it says so.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import HashEmbedder
from pymilvus import MilvusClient
from pymilvus.exceptions import MilvusException

from asyncrag.ingest import pipeline
from asyncrag.rag import AsyncRAG
from asyncrag.results import IngestReport, Status
from asyncrag.store.collection import Collection
from asyncrag.store.milvus import release_lite
from asyncrag.store.vector_store import CoalescingMilvusVectorStore

ROOT = Path(__file__).resolve().parents[1]
ASYNCRAG = str(Path(sys.executable).parent / "asyncrag")


class CountingEmbedder(HashEmbedder):
    def __init__(self) -> None:
        super().__init__()
        self.texts: list[str] = []

    def embed(self, texts: list[str]) -> list[list[float]]:
        self.texts += texts
        return super().embed(texts)


@pytest.fixture
def counts(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """How many units were parsed and how many write requests were made."""
    seen = {"parsed": 0, "writes": 0}
    real_parse = pipeline.parse

    def parse(unit: object, spec: object) -> object:
        seen["parsed"] += 1
        return real_parse(unit, spec)  # type: ignore[arg-type]

    monkeypatch.setattr(pipeline, "parse", parse)
    real_add = CoalescingMilvusVectorStore.async_add

    async def async_add(self: object, nodes: list, **kwargs: object) -> list[str]:
        seen["writes"] += 1
        return await real_add(self, nodes, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(CoalescingMilvusVectorStore, "async_add", async_add)
    return seen


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    folder = tmp_path / "corpus"
    (folder / "sub").mkdir(parents=True)
    for name, text in {
        "a.txt": "Alpacas graze on the high plains.\n\nThey hum when they are worried.",
        "b.md": "# Bees\n\nBees dance to tell the hive where flowers are.",
        "sub/c.txt": "Cormorants dive for fish off the rocky coast.",
    }.items():
        (folder / name).write_text(text)
    return folder


@pytest.fixture
def uri(tmp_path: Path) -> Iterator[str]:
    path = str(tmp_path / "milvus.db")
    yield path
    release_lite(path)


def chunks(uri: str, collection: str = "inc") -> dict[str, tuple[str, str]]:
    """Every stored chunk, id -> (doc_id, text); also checks that no id is stored twice."""
    client = MilvusClient(uri)
    try:
        client.load_collection(collection)
        rows = client.query(
            collection, filter="", output_fields=["doc_id", "text"], limit=16384, consistency_level="Strong"
        )
    finally:
        client.close()
    ids = [row["id"] for row in rows]
    assert len(ids) == len(set(ids)), "an id is stored twice"
    return {row["id"]: (row["doc_id"], row["text"]) for row in rows}


def statuses(report: IngestReport) -> dict[str, str]:
    return {Path(d.path).name: str(d.status) for d in report.documents}


async def ingest(uri: str, embedder: HashEmbedder, paths: list[Path | str], **kwargs: object) -> IngestReport:
    async with AsyncRAG(embedder=embedder, uri=uri, collection="inc", llm="none") as rag:
        return await rag.ingest(paths, **kwargs)  # type: ignore[arg-type]


async def test_each_step_stores_exactly_what_it_should(
    corpus: Path, uri: str, counts: dict[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    embedder = CountingEmbedder()
    first = await ingest(uri, embedder, [corpus])
    assert first.ok and first.counts()["added"] == 3
    stored = chunks(uri)
    assert {doc for doc, _ in stored.values()} == {str(p.resolve()) for p in corpus.rglob("*.*")}

    # Unchanged: nothing parsed, embedded or written.
    counts.update(parsed=0, writes=0)
    embedder.texts.clear()
    again = await ingest(uri, embedder, [corpus])
    assert statuses(again) == {"a.txt": "unchanged", "b.md": "unchanged", "c.txt": "unchanged"}
    assert (counts["parsed"], counts["writes"], embedder.texts) == (0, 0, [])
    assert chunks(uri) == stored

    # Touched but not changed: hashed, still nothing parsed or written.
    os.utime(corpus / "a.txt", ns=(time.time_ns(), time.time_ns()))
    assert statuses(await ingest(uri, embedder, [corpus]))["a.txt"] == "unchanged"
    assert (counts["parsed"], counts["writes"]) == (0, 0)

    # One file changed: it alone is re-chunked and re-embedded; its old chunks are gone.
    (corpus / "b.md").write_text("# Bees\n\nBees sleep at night, holding on to flowers.")
    changed = await ingest(uri, embedder, [corpus])
    assert statuses(changed) == {"a.txt": "unchanged", "b.md": "updated", "c.txt": "unchanged"}
    assert embedder.texts and all("sleep at night" in t for t in embedder.texts)
    after = chunks(uri)
    b_id = str((corpus / "b.md").resolve())
    assert {k: v for k, v in after.items() if v[0] != b_id} == {k: v for k, v in stored.items() if v[0] != b_id}
    assert [text for doc, text in after.values() if doc == b_id] == ["# Bees\n\nBees sleep at night, holding on to flowers."]

    # Another spelling of the same root (relative, with ..): the same documents, nothing to do.
    monkeypatch.chdir(corpus.parent)
    spelled = await ingest(uri, embedder, ["./corpus/sub/../"])
    assert set(statuses(spelled).values()) == {"unchanged"}
    assert chunks(uri) == after

    # A stored file becomes unreadable: the failure is reported, its chunks survive.
    (corpus / "a.txt").write_bytes(b"caf\xe9 latin-1 now")
    broken = await ingest(uri, embedder, [corpus])
    assert statuses(broken)["a.txt"] == "failed" and not broken.ok
    assert "not UTF-8" in (broken.failures[0].reason)
    assert chunks(uri) == after

    # A file removed: kept without --prune, deleted with it (and only it).
    (corpus / "sub" / "c.txt").unlink()
    (corpus / "a.txt").write_text("Alpacas graze on the high plains.\n\nThey hum when they are worried.")
    await ingest(uri, embedder, [corpus])
    assert chunks(uri) == after
    pruned = await ingest(uri, embedder, [corpus], prune=True)
    assert {Path(d.path).name for d in pruned.documents if d.status is Status.DELETED} == {"c.txt"}
    c_id = str((corpus / "sub" / "c.txt").resolve())
    assert chunks(uri) == {k: v for k, v in after.items() if v[0] != c_id}


async def test_prune_only_looks_under_the_given_paths(corpus: Path, tmp_path: Path, uri: str) -> None:
    other = tmp_path / "other"
    other.mkdir()
    (other / "z.txt").write_text("Zebras have stripes.")
    embedder = HashEmbedder()
    await ingest(uri, embedder, [corpus, other])
    (other / "z.txt").unlink()
    report = await ingest(uri, embedder, [corpus], prune=True)  # `other` was not given: z.txt stays
    assert report.count(Status.DELETED) == 0
    assert str((other / "z.txt").resolve()) in {doc for doc, _ in chunks(uri).values()}
    report = await ingest(uri, embedder, [other / "z.txt"], prune=True)  # named, and gone: deleted
    assert report.count(Status.DELETED) == 1


async def test_new_settings_or_model_reingest_what_they_affect(corpus: Path, uri: str) -> None:
    embedder = HashEmbedder()
    await ingest(uri, embedder, [corpus])
    before = chunks(uri)
    async with AsyncRAG(embedder=embedder, uri=uri, collection="inc", llm="none", chunk_size=64) as rag:
        report = await rag.ingest([corpus])
    assert set(statuses(report).values()) == {"updated"}
    assert not set(chunks(uri)) & set(before)  # every chunk rewritten, no old one left
    assert len({doc for doc, _ in chunks(uri).values()}) == 3


async def test_doc_id_prefix_makes_ids_portable(corpus: Path, tmp_path: Path, uri: str) -> None:
    moved = tmp_path / "elsewhere"
    corpus.rename(moved)
    embedder = HashEmbedder()
    first = await ingest(uri, embedder, [moved], doc_id_prefix="kb/")
    assert sorted(d.doc_id for d in first.documents) == ["kb/a.txt", "kb/b.md", "kb/sub/c.txt"]
    moved.rename(corpus)
    again = await ingest(uri, embedder, [corpus], doc_id_prefix="kb/")  # the same corpus mounted elsewhere
    assert set(statuses(again).values()) == {"unchanged"}


async def test_embedding_calls_keep_to_the_rate_limit(corpus: Path, uri: str) -> None:
    calls: list[float] = []

    class Timed(HashEmbedder):
        def embed(self, texts: list[str]) -> list[list[float]]:
            calls.append(time.monotonic())
            return super().embed(texts)

    async with AsyncRAG(embedder=Timed(), uri=uri, collection="inc", llm="none", embed_batch_size=1, embed_rps=4) as rag:
        report = await rag.ingest([corpus])
    assert report.ok and len(calls) == 3
    assert calls[-1] - calls[0] >= 2 / 4 - 0.01  # three calls at 4 a second: at least half a second


async def test_documents_and_delete(corpus: Path, uri: str) -> None:
    embedder = HashEmbedder()
    await ingest(uri, embedder, [corpus])
    async with AsyncRAG(embedder=embedder, uri=uri, collection="inc", llm="none") as rag:
        docs = await rag.documents()
        assert [Path(d.doc_id).name for d in docs] == ["a.txt", "b.md", "c.txt"]
        assert all(d.complete and d.chunks == 1 and len(d.hash) == 64 for d in docs)
        a_id = docs[0].doc_id
        assert await rag.delete([a_id, "not-stored"]) == [a_id]
        assert [d.doc_id for d in await rag.documents()] == [d.doc_id for d in docs[1:]]
    assert a_id not in {doc for doc, _ in chunks(uri).values()}


async def test_a_big_text_file_streams_in_stretches(tmp_path: Path, uri: str) -> None:
    big = tmp_path / "big.txt"
    paragraphs = [f"Paragraph {i}: the ferry leaves the harbour at {i % 24} o'clock sharp." for i in range(4000)]
    big.write_text("\n\n".join(paragraphs))
    embedder = CountingEmbedder()
    async with AsyncRAG(embedder=embedder, uri=uri, collection="inc", llm="none") as rag:
        rag_limits = pipeline.Limits(text_bytes_per_unit=16 * 1024)
        report = await pipeline.ingest(
            [big], await rag.collection(create=True), embedder=embedder,
            chunk_spec=await rag.chunk_spec(), limits=rag_limits,
        )
    assert report.ok and report.chunks > 20
    stored = " ".join(text for _, text in chunks(uri).values())
    assert all(f"Paragraph {i}:" in stored for i in range(0, 4000, 97))  # nothing lost at the cuts


async def test_flushing_every_few_rows_stores_the_same_and_finds_it(
    tmp_path: Path, uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    big = tmp_path / "big.txt"
    big.write_text("\n\n".join(f"Paragraph {i}: lantern number {i} hangs by the door." for i in range(1500)))
    flushes = []
    real_flush = Collection.flush
    monkeypatch.setattr(Collection, "flush", lambda self: flushes.append(1) or real_flush(self))
    embedder = HashEmbedder()
    async with AsyncRAG(embedder=embedder, uri=uri, collection="inc", llm="none") as rag:
        report = await pipeline.ingest(
            [big], await rag.collection(create=True), embedder=embedder, chunk_spec=await rag.chunk_spec(),
            limits=pipeline.Limits(text_bytes_per_unit=8 * 1024, embed_batch_size=8, flush_every_rows=16),
        )
        target = next(text for text in (t for _, t in chunks(uri).values()) if "Paragraph 777:" in text)
        # The hash embedder finds a chunk only by the exact text it embedded: its file name, then its text.
        hits = await rag.search(f"file_name: big.txt\n\n{target}", k=3)
    assert report.ok and report.chunks > 40
    assert len(flushes) >= report.chunks // (16 + 8)  # one per 16 rows written (writes hold ≤ 8), + the last
    stored = " ".join(text for _, text in chunks(uri).values())
    assert all(f"Paragraph {i}:" in stored for i in range(1500))
    assert len(chunks(uri)) == report.chunks
    assert hits[0].text == target and hits[0].score > 0.99 > hits[1].score


@pytest.mark.slow
async def test_two_shards_at_once_equal_one_run(milvus_server: object, tmp_path: Path) -> None:
    """Two workers into one collection of the real server, concurrently: their union is a single run's."""
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(24):
        (folder / f"doc{i:02}.txt").write_text(f"Document {i} is about the number {i * 7}.")
    embedder = HashEmbedder()
    uri = milvus_server.uri  # type: ignore[attr-defined]
    single, sharded = f"one_{uuid.uuid4().hex[:8]}", f"two_{uuid.uuid4().hex[:8]}"

    async def run(collection: str, shard: tuple[int, int] | None) -> IngestReport:
        async with AsyncRAG(embedder=embedder, uri=uri, collection=collection, llm="none") as rag:
            return await rag.ingest([folder], shard=shard)

    await run(single, None)
    first, second = await asyncio.gather(run(sharded, (0, 2)), run(sharded, (1, 2)))
    assert first.files + second.files == 24 and first.files and second.files
    assert first.count(Status.SKIPPED) == second.files
    assert set(chunks(uri, sharded)) == set(chunks(uri, single))


# -- killed mid-run ------------------------------------------------------------------------------------


def _cli(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [ASYNCRAG, *args], env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )


@pytest.mark.slow
def test_killed_at_any_point_a_rerun_stores_exactly_the_right_chunks(tmp_path: Path, shared_data: Path) -> None:
    """SIGKILL a real `asyncrag ingest` at several points (parsing, embedding, writing), then run it again."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    essay = (shared_data / "paul_graham_essay.txt").read_text()
    parts = essay.split("\n\n")
    for i in range(8):  # eight documents of ~1/8 of the essay each: ~70 chunks, a few seconds of embedding
        (corpus / f"part{i}.txt").write_text("\n\n".join(parts[i::8]))
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASYNCRAG_")}
    env.update(ASYNCRAG_CONFIG="", ASYNCRAG_LLM="none", ASYNCRAG_EMBED_BATCH_SIZE="8")

    reference = tmp_path / "reference.db"
    done = subprocess.run([ASYNCRAG, "ingest", str(corpus), "--uri", str(reference)], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    expected = chunks(str(reference), "asyncrag")
    release_lite(str(reference))

    mid_run = 0
    for delay in (1.0, 4.0):  # after model loading (~5 s): while the first files are parsed and embedded, then written
        db = tmp_path / f"killed-{delay}.db"
        proc = _cli(["ingest", str(corpus), "--uri", str(db), "--json"], env, tmp_path)
        assert proc.stderr is not None
        proc.stderr.readline()  # "loading the embedding model": the model loads next, then the run starts
        time.sleep(4.0 + delay)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        if proc.returncode != 0 and db.exists():
            with_partial = chunks(str(db), "asyncrag") if _has_collection(db) else {}
            mid_run += 0 < len(with_partial) < len(expected) or not with_partial
            release_lite(str(db))
        rerun = subprocess.run([ASYNCRAG, "ingest", str(corpus), "--uri", str(db), "--json"], env=env, cwd=tmp_path,
                               capture_output=True, text=True, timeout=300, check=False)
        assert rerun.returncode == 0, rerun.stderr
        report = json.loads(rerun.stdout)
        assert report["counts"]["failed"] == 0
        assert chunks(str(db), "asyncrag") == expected  # none missing, none duplicated, same ids
        release_lite(str(db))
    assert mid_run >= 1  # at least one kill landed mid-run


def _has_collection(db: Path) -> bool:
    client = MilvusClient(str(db))
    try:
        return client.has_collection("asyncrag")
    finally:
        client.close()


# -- an embedding endpoint that rate-limits, then fails, then answers ---------------------------------


@pytest.mark.slow
def test_rate_limits_and_server_errors_are_retried(tmp_path: Path) -> None:
    import http.server
    import threading

    calls: list[int] = []

    class Endpoint(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            calls.append(len(calls))
            n = len(calls)
            if n == 2:  # the probe (call 1) passes; then a rate limit, then a server error
                self._send(429, {"error": {"message": "slow down"}}, {"Retry-After": "1"})
            elif n == 3:
                self._send(500, {"error": {"message": "overloaded"}})
            else:
                texts = body["input"]
                data = [{"object": "embedding", "index": i, "embedding": HashEmbedder().embed([t])[0]}
                        for i, t in enumerate(texts)]
                self._send(200, {"object": "list", "data": data, "model": "m", "usage": {"prompt_tokens": 1, "total_tokens": 1}})

        def _send(self, status: int, payload: dict, headers: dict[str, str] | None = None) -> None:
            raw = json.dumps(payload).encode()
            self.send_response(status)
            for key, value in {"Content-Type": "application/json", **(headers or {})}.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Endpoint)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        (tmp_path / "a.txt").write_text("Herons stand still in the shallows.")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ASYNCRAG_", "OPENAI_"))}
        env.update(ASYNCRAG_CONFIG="", ASYNCRAG_LLM="none", ASYNCRAG_EMBED_MODEL="openai:m",
                   OPENAI_BASE_URL=f"http://127.0.0.1:{server.server_address[1]}/v1", OPENAI_API_KEY="k")
        started = time.perf_counter()
        proc = subprocess.run([ASYNCRAG, "ingest", str(tmp_path / "a.txt"), "--uri", str(tmp_path / "r.db"),
                               "--report", str(tmp_path / "report.json")],
                              env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False)
    finally:
        server.shutdown()
    assert proc.returncode == 0, proc.stderr
    assert "embedding failed (RateLimitError" in proc.stderr and "retry 1 of" in proc.stderr
    assert "embedding failed (InternalServerError" in proc.stderr and "retry 2 of" in proc.stderr
    assert time.perf_counter() - started >= 1.0  # Retry-After was honoured
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["counts"]["added"] == 1 and report["chunks"] == 1


# -- a Milvus server that goes down mid-run --------------------------------------------------------------


def _documents_in(uri: str) -> int:
    """Documents recorded complete (a record still "writing" is not: its re-run redoes it)."""
    client = MilvusClient(uri)
    try:
        if not client.has_collection("inc__documents"):
            return 0
        rows = client.query(
            "inc__documents", filter='hash != "" and writing == ""', output_fields=["count(*)"],
            consistency_level="Strong",
        )
        return int(rows[0]["count(*)"])
    except MilvusException as e:  # made a moment ago by the run, and not loaded yet
        if "not loaded" not in str(e):
            raise
        return 0
    finally:
        client.close()


class SlowEmbedder(HashEmbedder):
    def embed(self, texts: list[str]) -> list[list[float]]:
        time.sleep(0.15)
        return super().embed(texts)


@pytest.mark.slow
async def test_a_server_that_goes_down_stops_the_run_in_bounded_time_and_the_rerun_completes(
    tmp_path: Path, uri: str
) -> None:
    from asyncrag.errors import StoreError
    from asyncrag.testing import MilvusServer, milvus_package_available

    if not milvus_package_available():
        pytest.skip("the `milvus` package (Milvus 2.3.5 standalone) is not installed")
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(40):
        (folder / f"doc{i:02}.txt").write_text(f"Document {i} is about the number {i * 7}.")
    embedder = SlowEmbedder()
    reference = await ingest(uri, embedder, [folder])  # on Lite: the chunk ids a complete run stores
    assert reference.files == 40
    expected = set(chunks(uri))

    data = tmp_path / "milvus-data"
    server = MilvusServer(data_dir=data).start()
    try:
        async with AsyncRAG(embedder=embedder, uri=server.uri, collection="inc", llm="none", embed_batch_size=2) as rag:
            run = asyncio.ensure_future(rag.ingest([folder]))
            while not run.done() and not await asyncio.to_thread(_documents_in, server.uri):
                await asyncio.sleep(0.1)  # until some documents are in (most are not yet)
            assert not run.done()
            server.stop()
            started = time.perf_counter()
            with pytest.raises(StoreError, match="run the same command again to resume"):
                await run
            assert time.perf_counter() - started < 150
    finally:
        server.stop()

    server = MilvusServer(data_dir=data).start()  # the same data, as after a restart
    try:
        async with AsyncRAG(embedder=embedder, uri=server.uri, collection="inc", llm="none") as rag:
            rerun = await rag.ingest([folder])
            counts = rerun.counts()
            assert rerun.ok and counts["added"] + counts["updated"] + counts["unchanged"] == 40, counts
            assert counts["unchanged"] > 0  # what the first run finished is not redone
        assert set(chunks(server.uri)) == expected
    finally:
        server.stop()


async def test_a_files_seconds_are_its_own(tmp_path: Path, uri: str) -> None:
    """--report's seconds per file: from when the parser took it up to when it was finished (issue 18)."""

    class Slow(CountingEmbedder):
        def embed(self, texts: list[str]) -> list[list[float]]:
            time.sleep(0.05 * len(texts))  # the run takes a while; no single small file does
            return super().embed(texts)

    folder = tmp_path / "docs"
    folder.mkdir()
    for i in range(6):
        (folder / f"f{i}.txt").write_text(f"Document {i}. " + "Tea and more tea. " * 20)
    report = await ingest(uri, Slow(), [folder])
    assert report.ok and len(report.documents) == 6
    seconds = sorted(d.seconds for d in report.documents)
    assert all(0 < s < report.seconds for s in seconds), (seconds, report.seconds)
    assert seconds[0] < 0.75 * report.seconds  # not the whole run's, as it was


async def test_progress_counts_bytes_and_names_the_file_in_the_works(tmp_path: Path, uri: str) -> None:
    """Progress moves by bytes, within a file too, and names the file the run waits on (issue 18)."""
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "big.txt").write_text("Tea grows on hills in the valley. " * 2000)  # many batches
    for i in range(3):
        (folder / f"small{i}.txt").write_text(f"Note {i}: the cooperative met on Tuesday.")
    sizes = sum(p.stat().st_size for p in folder.iterdir())
    seen: list[pipeline.IngestProgress] = []

    class SlowEmbedder(CountingEmbedder):  # the file's units are all parsed before its last chunks are written
        def embed(self, texts: list[str]) -> list[list[float]]:
            time.sleep(0.1)
            return super().embed(texts)

    async with AsyncRAG(embedder=SlowEmbedder(), uri=uri, collection="c", llm="none") as rag:
        report = await rag.ingest([folder], on_progress=seen.append)
    assert report.ok
    done = [p.bytes_done for p in seen]
    assert done == sorted(done) and all(p.bytes_total == sizes for p in seen)
    assert any(0 < d < (folder / "big.txt").stat().st_size for d in done)  # a big file moves the bar as it goes
    assert seen[-1].bytes_done == sizes and seen[-1].files_done == seen[-1].files_total == 4
    assert seen[-1].chunks == report.chunks and seen[-1].current is None
    assert {p.current for p in seen} - {None} <= {str(p) for p in folder.iterdir()}
    assert any(p.current for p in seen)


async def test_a_search_never_sees_a_version_before_it_is_complete(
    tmp_path: Path, uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 19: while a replace and a new document are written, every search (run after each
    write) shows the old version whole and nothing of a version not yet complete."""
    folder = tmp_path / "docs"
    folder.mkdir()
    doc, new = folder / "doc.txt", folder / "new.txt"
    doc.write_text(" ".join(f"Alpha fact number {i} is about herons." for i in range(200)))
    async with AsyncRAG(embedder=CountingEmbedder(), uri=uri, collection="vis", llm="none", embed_batch_size=4) as rag:
        assert (await rag.ingest([folder])).ok
        collection = await rag.collection()
        alpha = len([s for s in await rag.search("herons", k=100) if "Alpha" in s.text])
        assert alpha > 3
        doc.write_text(" ".join(f"Omega fact number {i} is about cranes." for i in range(200)))
        new.write_text(" ".join(f"Zebra fact number {i} is about storks." for i in range(200)))
        checks: list[tuple[int, int, int]] = []
        real_write = Collection.write

        async def write(self: Collection, nodes: list) -> None:
            await real_write(self, nodes)
            texts = [s.text for s in await rag.search("facts", k=100)]
            records = await self.get_records([str(doc), str(new)])  # after: what it says held when searched
            omega, zebra = sum("Omega" in t for t in texts), sum("Zebra" in t for t in texts)
            old = sum("Alpha" in t for t in texts)
            replaced = records[str(doc)].writing == ""  # the new version is complete
            assert omega == 0 or replaced, "a chunk of the version being written was shown"
            assert zebra == 0 or records[str(new)].complete, "a chunk of a new document was shown early"
            assert old == alpha or replaced, "the old version must stay whole until the new one is complete"
            checks.append((old, omega, zebra))

        monkeypatch.setattr(Collection, "write", write)
        report = await rag.ingest([folder])
        assert report.ok and report.counts()["updated"] == 1 and report.counts()["added"] == 1
        assert collection is await rag.collection()
        assert len(checks) >= 8 and any(old == alpha for old, _, _ in checks)  # searched while writing
        texts = [s.text for s in await rag.search("facts", k=100)]
        assert not any("Alpha" in t for t in texts) and any("Omega" in t for t in texts)
        assert any("Zebra" in t for t in texts)
