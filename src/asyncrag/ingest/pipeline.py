"""The ingest pipeline: parse → chunk → embed → write, all overlapping.

    files ──plan──▶ units ──parser thread/processes──▶ chunks ──embedder──▶ vectors ──async writes──▶ Milvus
                     (≤ max_units in flight)                   (batches)             (≤ max_writes in flight)

Parsing runs in a parser thread or worker processes; embedding runs off the event loop (the
local model in one single-threaded worker per core, releasing the GIL); writes go through the
coalescing store. Two semaphores bound what is in memory, so a corpus of any size streams
through in flat memory: a parser blocks when the embedder is behind, the embedder when Milvus
is behind.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import TypeVar

from llama_index.core.schema import BaseNode, MetadataMode

from asyncrag.embed import Embedder
from asyncrag.ingest.chunk import ChunkSpec
from asyncrag.ingest.discover import discover
from asyncrag.ingest.parse import Unit, init_worker, parse, plan
from asyncrag.errors import ReadError
from asyncrag.results import Failure, IngestReport
from asyncrag.store.vector_store import CoalescingMilvusVectorStore

log = logging.getLogger(__name__)
T = TypeVar("T")

Progress = Callable[[int, int, int], None]  # (files done, files total, chunks written)


@dataclass
class Limits:
    """The pipeline's knobs; the first four are the `Settings` of the same names."""

    embed_batch_size: int = 64
    parse_workers: int = 0
    pdf_pages_per_task: int = 16
    max_file_mb: float = 100
    max_units: int = 6  # parsed-but-not-embedded units held in memory
    max_writes: int = 4  # write requests in flight
    attempts: int = 3  # for embedding and writing: transient failures are retried


@dataclass
class _File:
    units_left: int | None = None  # None until its units are planned
    chunks_pending: int = 0
    chunks_written: int = 0
    error: str | None = None


@dataclass
class _Tracker:
    """Per-file bookkeeping, so that progress and failures are reported by file."""

    files: dict[str, _File]
    on_progress: Progress | None = None
    done: int = 0
    chunks: int = 0
    _finished: set[str] = field(default_factory=set)

    def planned(self, source: str, units: int) -> None:
        self.files[source].units_left = units
        self._check(source)

    def parsed(self, source: str, nodes: list[BaseNode]) -> None:
        f = self.files[source]
        f.units_left = max(0, (f.units_left or 0) - 1)
        f.chunks_pending += len(nodes)
        self._check(source)

    def written(self, nodes: list[BaseNode]) -> None:
        for node in nodes:
            f = self.files[node.metadata["source"]]
            f.chunks_pending -= 1
            f.chunks_written += 1
            self.chunks += 1
        for source in {n.metadata["source"] for n in nodes}:
            self._check(source)

    def fail(self, source: str, reason: str) -> None:
        f = self.files[source]
        f.error = f.error or reason
        f.units_left = 0
        f.chunks_pending = 0
        self._check(source)

    def fail_nodes(self, nodes: list[BaseNode], reason: str) -> None:
        for source in {n.metadata["source"] for n in nodes}:
            self.fail(source, reason)

    def _check(self, source: str) -> None:
        f = self.files[source]
        if source in self._finished or f.units_left != 0 or f.chunks_pending > 0:
            return
        self._finished.add(source)
        if f.error is None and f.chunks_written == 0:
            f.error = "no extractable text (a scanned PDF needs OCR first)"
        self.done += 1
        if self.on_progress:
            self.on_progress(self.done, len(self.files), self.chunks)


async def retry(call: Callable[[], Awaitable[T]], attempts: int, what: str) -> T:
    for attempt in range(1, attempts + 1):
        try:
            return await call()
        except Exception as e:
            if attempt == attempts:
                raise
            delay = 0.25 * 2**attempt
            log.warning(
                "%s failed (%s: %s); retry %d/%d in %.1fs", what, type(e).__name__, e, attempt, attempts - 1, delay
            )
            await asyncio.sleep(delay)
    raise AssertionError("unreachable")


def _executor(spec: ChunkSpec, workers: int) -> Executor:
    if workers <= 0:  # one thread of this process (PDFium is not thread-safe): no start-up cost
        return ThreadPoolExecutor(1, initializer=init_worker, initargs=(spec,))
    return ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=init_worker, initargs=(spec,))


async def _clear(store: CoalescingMilvusVectorStore, sources: Iterable[str]) -> None:
    """Re-ingesting a file replaces its chunks instead of adding a second copy."""
    sources = list(sources)
    for i in range(0, len(sources), 64):
        await store.adelete_documents(sources[i : i + 64])


async def ingest(
    paths: list[str | Path],
    *,
    store: CoalescingMilvusVectorStore,
    embedder: Embedder,
    chunk_spec: ChunkSpec,
    limits: Limits | None = None,
    on_progress: Progress | None = None,
) -> IngestReport:
    limits = limits or Limits()
    started = time.perf_counter()
    files, failures = discover(paths, limits.max_file_mb * 2**20)
    tracker = _Tracker({str(p): _File() for p in files}, on_progress)
    if not files:
        return IngestReport(failures=failures, seconds=time.perf_counter() - started)
    await _clear(store, tracker.files)

    loop = asyncio.get_running_loop()
    units_slots = asyncio.Semaphore(limits.max_units)
    write_slots = asyncio.Semaphore(limits.max_writes)
    parsed: asyncio.Queue[tuple[str, list[BaseNode]] | None] = asyncio.Queue()
    writes: set[asyncio.Task[None]] = set()

    async def parse_unit(pool: Executor, unit: Unit) -> None:
        try:
            nodes = await loop.run_in_executor(pool, parse, unit)
        except ReadError as e:
            units_slots.release()
            tracker.fail(unit.source, str(e))
        except Exception as e:  # a parser bug or a crashed worker: still one file's problem
            units_slots.release()
            tracker.fail(unit.source, f"{type(e).__name__}: {e}")
        else:
            await parsed.put((unit.source, nodes))

    async def produce(pool: Executor) -> None:
        parsing: list[asyncio.Task[None]] = []
        for path in files:
            try:
                units = await loop.run_in_executor(pool, plan, path, limits.pdf_pages_per_task)
            except Exception as e:
                tracker.fail(str(path), str(e) if isinstance(e, ReadError) else f"{type(e).__name__}: {e}")
                continue
            tracker.planned(str(path), len(units))
            for unit in units:
                await units_slots.acquire()
                parsing.append(asyncio.ensure_future(parse_unit(pool, unit)))
        await asyncio.gather(*parsing)
        await parsed.put(None)

    async def write(nodes: list[BaseNode]) -> None:
        try:
            await retry(lambda: store.async_add(nodes), limits.attempts, "write to Milvus")
            tracker.written(nodes)
        except Exception as e:
            tracker.fail_nodes(nodes, f"could not write to Milvus: {type(e).__name__}: {e}")
        finally:
            write_slots.release()

    async def embed_and_write(nodes: list[BaseNode]) -> None:
        live = [n for n in nodes if tracker.files[n.metadata["source"]].error is None]
        if not live:
            return
        texts = [n.get_content(metadata_mode=MetadataMode.EMBED) for n in live]
        try:
            vectors = await retry(lambda: asyncio.to_thread(embedder.embed, texts), limits.attempts, "embedding")
        except Exception as e:
            tracker.fail_nodes(live, f"embedding failed: {type(e).__name__}: {e}")
            return
        for node, vector in zip(live, vectors):
            node.embedding = vector
        await write_slots.acquire()
        task = asyncio.ensure_future(write(live))
        writes.add(task)
        task.add_done_callback(writes.discard)

    with _executor(chunk_spec, limits.parse_workers) as pool:
        producer = asyncio.ensure_future(produce(pool))
        buffer: list[BaseNode] = []
        finished = False
        while not finished or buffer:
            # Block for input only when there is nothing to embed; otherwise take what is ready.
            while not finished and len(buffer) < limits.embed_batch_size and (not buffer or not parsed.empty()):
                item = await parsed.get()
                if item is None:
                    finished = True
                    break
                source, nodes = item
                units_slots.release()
                tracker.parsed(source, nodes)
                buffer.extend(nodes)
            batch, buffer = buffer[: limits.embed_batch_size], buffer[limits.embed_batch_size :]
            if batch:
                await embed_and_write(batch)
        await producer
        while writes:
            await asyncio.gather(*list(writes))

    broken = [s for s, f in tracker.files.items() if f.error is not None and f.chunks_written]
    if broken:  # a file that failed half-way must not leave half of itself behind
        await _clear(store, broken)
    await asyncio.to_thread(store.client.flush, store.collection_name)

    failures += [Failure(s, f.error) for s, f in tracker.files.items() if f.error is not None]
    ok = [f for f in tracker.files.values() if f.error is None]
    return IngestReport(
        files=len(ok),
        chunks=sum(f.chunks_written for f in ok),
        seconds=time.perf_counter() - started,
        failures=failures,
    )
