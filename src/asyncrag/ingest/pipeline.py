"""The ingest pipeline: incremental, resumable, and parse → chunk → embed → write all overlapping.

    paths ─discover─▶ files ─plan─▶ changed documents ─parser─▶ chunks ─embedder─▶ vectors ─writes─▶ Milvus
                      (ids)   (manifest: skip the        (≤ max_units       (batches,          (≤ max_writes
                               unchanged ones)            in memory)         ≤ max_concurrency)  in flight)

Only documents whose content or settings changed are parsed, embedded and written; the record
of what is stored (store/manifest.py) lives in Milvus. A document's new chunks are written
(as upserts, with ids that derive from the document, its version and the chunk's position)
before its old ones are deleted, and its record says complete only after both: a run killed
at any point, run again, ends with exactly the chunks it should have.

A document whose content is stored already under another id, read the same way (a file moved
to another folder, a folder renamed, a copy), is not parsed or embedded: its chunks are copied
from the stored document, vectors and all, under the ids a fresh ingest would give them, in the
same order of writes (`_find_copies`, `Pipeline._copy`).

Each bound has one owner: `Pipeline._parse_all` holds parsed-but-not-embedded units to
`max_units`, `_embed_all` holds embedding calls to `max_concurrency`, `_write` holds writes to
`max_writes`. Transient failures of the embedder (429, 5xx, timeouts; `Retry-After` honoured)
and of Milvus are retried with exponential backoff and jitter; when they persist the run stops
with one clear message, and the next run resumes. Any other error fails its own file only.
The run's tasks live in one `asyncio.TaskGroup`, so a stop (RunAborted) cancels every task at
once and the documents being written stay recorded "writing", for the next run to redo.
"""

from __future__ import annotations

import asyncio
import bisect
import functools
import hashlib
import logging
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from multiprocessing import get_context
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

from llama_index.core.schema import BaseNode, MetadataMode, NodeRelationship, RelatedNodeInfo
from pymilvus.exceptions import MilvusException
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from asyncrag.config import Settings
from asyncrag.embed import Embedder
from asyncrag.embed.local import file_sha256
from asyncrag.errors import AsyncRAGError, ReadError, RunAborted, is_transient, one_line
from asyncrag.ingest.chunk import ChunkSpec, embed_text, node_id
from asyncrag.ingest.discover import Discovery, Found, discover, in_shard
from asyncrag.ingest.parse import Unit, parse, plan
from asyncrag.ingest.read import document
from asyncrag.results import FileReport, IngestReport, Status
from asyncrag.store.collection import Collection
from asyncrag.store.manifest import DocumentRecord, version_of
from asyncrag.store.milvus import LITE_FLUSH_EVERY_ROWS, is_local

if TYPE_CHECKING:
    from asyncrag.ingest.on_ray import Cluster

log = logging.getLogger(__name__)
T = TypeVar("T")



@dataclass(frozen=True)
class IngestProgress:
    """Where a run stands, after each write and each finished file.

    Files hold 1 to 500+ chunks, so time left is reckoned by bytes: a file counts its share of
    bytes as its chunks are written (once it is fully parsed, its chunk count is known).
    """

    files_done: int
    files_total: int
    chunks: int
    bytes_done: int
    bytes_total: int
    current: str | None  # the oldest file still in the works: what the run is waiting on


Progress = Callable[[IngestProgress], None]


def _setting(default: T) -> T:
    """A knob that is also a `Settings` field of the same name (`Limits.from_settings` copies it)."""
    return field(default=default, metadata={"setting": True})


@dataclass
class Limits:
    """The pipeline's knobs; those made with `_setting` come from the `Settings` of the same names."""

    embed_batch_size: int = _setting(64)
    parse_workers: int = _setting(0)
    pdf_pages_per_task: int = _setting(16)
    max_file_mb: float = _setting(100.0)
    max_concurrency: int = _setting(1)  # embedding calls in flight: 1 suits a local model, more a remote endpoint
    embed_rps: float | None = _setting(None)  # embedding calls started per second, at most (an endpoint's quota)
    # Big text files are read and chunked in stretches of this size. Small enough that nltk's sentence
    # splitter, which gives each regex call 5 s, never meets a whole megabyte of paragraph (it did,
    # on a 200 MB file, with the embedder and Milvus Lite beside it: benchmarks/incremental_bench.py).
    text_bytes_per_unit: int = 64 * 1024
    max_units: int = 6  # parsed-but-not-embedded units held in memory
    max_writes: int = 4  # write requests in flight
    # Seal a segment every this many rows written (None: only at the end). Milvus Lite runs in this
    # process and its flush of a large memtable is the run's memory peak: small segments keep it low.
    flush_every_rows: int | None = None
    attempts: int = 4  # for transient failures of the embedder and of Milvus (each Milvus call has a deadline)
    max_backoff_s: float = 20.0

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        """The limits `settings` ask for; on Milvus Lite also a flush every few thousand rows."""
        knobs = {f.name: getattr(settings, f.name) for f in fields(cls) if f.metadata.get("setting")}
        flush_every_rows = LITE_FLUSH_EVERY_ROWS if is_local(settings.uri) else None
        return cls(**knobs, flush_every_rows=flush_every_rows)


@dataclass(frozen=True)
class Options:
    """What one run does besides its settings."""

    prune: bool = False  # delete the documents gone from the given paths
    shard: tuple[int, int] | None = None  # (i, n): only the documents whose id hashes to shard i
    doc_id_prefix: str | None = None  # ids relative to the given folders, under this prefix
    cluster: Cluster | None = None  # parse, embed and write on this Ray cluster (ingest/on_ray.py)


def fingerprint(spec: ChunkSpec, embedder: Embedder) -> str:
    """What, besides a document's content, decides its chunks and vectors."""
    tokenizer = hashlib.sha256(spec.tokenizer_file.read_bytes()).hexdigest() if spec.tokenizer_file else "tiktoken"
    tables = "pdf-tables" if spec.pdf_tables else "loose"
    key = f"chunker=4|{spec.chunk_size}|{spec.chunk_overlap}|{tokenizer}|{tables}|model={embedder.identity}"
    return hashlib.sha256(key.encode()).hexdigest()[:32]


# -- retries -------------------------------------------------------------------------------------


def _wait(limits: Limits) -> Callable[[RetryCallState], float]:
    backoff = wait_exponential_jitter(initial=0.5, max=limits.max_backoff_s)

    def wait(state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        response = getattr(error, "response", None)
        after = getattr(response, "headers", {}).get("retry-after") if response is not None else None
        try:
            return min(float(after), limits.max_backoff_s) if after is not None else backoff(state)
        except ValueError:  # an HTTP date: back off as usual
            return backoff(state)

    return wait


async def _with_retries(call: Callable[[], Any], limits: Limits, what: str) -> Any:
    def note(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        log.warning("%s failed (%s); retry %d of %d", what, _reason(error), state.attempt_number, limits.attempts - 1)

    async for attempt in AsyncRetrying(
        stop=stop_after_attempt(limits.attempts),
        wait=_wait(limits),
        retry=retry_if_exception(is_transient),
        before_sleep=note,
        reraise=True,
    ):
        with attempt:
            return await call()
    raise AssertionError("unreachable")


def _reason(error: BaseException | None) -> str:
    if error is None:
        return "unknown error"
    if isinstance(error, AsyncRAGError):
        return str(error)
    message = error.message if isinstance(error, MilvusException) else str(error)
    return f"{type(error).__name__}: {one_line(message)}"


# -- per-document state -----------------------------------------------------------------------------


@dataclass
class _Doc:
    found: Found
    record: DocumentRecord | None  # what the manifest held before this run
    new: DocumentRecord  # what it will hold once this document's chunks are all written
    version: str
    units_left: int | None = None  # None until its units are planned
    units_total: int = 0
    chunks_pending: int = 0
    chunks_written: int = 0
    error: str | None = None
    started: float | None = None  # when the parser took it up, and when it was finished or failed:
    ended: float | None = None  # a file's own seconds in the report, not the whole run's
    marked: asyncio.Future[None] | None = None  # the manifest says "writing" (before the first write)
    finished: bool = False
    copy: _Copy | None = None  # its chunks are copied from a stored document, not parsed and embedded

    @property
    def bytes_done(self) -> int:
        """The file's bytes, pro rata to its units parsed and its parsed chunks written: a scanned
        PDF, a page a unit and seconds a page, moves page by page."""
        if self.ended is not None:
            return self.new.size
        total = self.chunks_written + self.chunks_pending
        if not self.units_total or total == 0:
            return 0
        parsed = self.units_total - (self.units_left or 0)
        return self.new.size * parsed * self.chunks_written // (self.units_total * total)

    @property
    def replaces_itself(self) -> bool:
        """Re-writing the version that is already complete (after an interrupted run): same chunk ids."""
        return self.record is not None and self.record.complete and self.version == self.record.version




@dataclass(frozen=True)
class _Copy:
    """Where a document's chunks come from when its content is stored already: `source`'s complete
    version (the same version: the same content and settings), each chunk under a new id."""

    source: DocumentRecord
    ids: dict[str, str]  # a stored chunk's id -> the id ingesting the document would give it


class Pipeline:
    """One run over the documents that changed: parse, chunk, embed and write them, and finish each."""

    def __init__(
        self,
        collection: Collection,
        embedder: Embedder,
        spec: ChunkSpec,
        limits: Limits,
        on_progress: Progress | None,
        total: int,
    ) -> None:
        self.collection, self.embedder, self.spec, self.limits = collection, embedder, spec, limits
        self.on_progress = on_progress
        self.total = total
        self.done = 0
        self.chunks = 0
        self.fatal: RunAborted | None = None
        self.docs: dict[str, _Doc] = {}
        self._unit_slots = asyncio.Semaphore(limits.max_units)
        self._embed_slots = asyncio.Semaphore(limits.max_concurrency)
        self._write_slots = asyncio.Semaphore(limits.max_writes)
        self._next_call = 0.0  # when the next embedding call may start (embed_rps)
        self._unflushed = 0  # rows written since the last flush (flush_every_rows)
        # Every task of the run: the parser, each embedding call, write and finish. A document's
        # failure stays inside its task; a RunAborted raised in one cancels all the others.
        self._tasks = asyncio.TaskGroup()

    async def run(self, docs: list[_Doc]) -> None:
        self.docs = {d.found.doc_id: d for d in docs}
        try:
            async with self._tasks:
                self._spawn(self._copy_all([d for d in docs if d.copy is not None]))
                await self._make([d for d in docs if d.copy is None])
        except* RunAborted:
            pass  # self.fatal is the first one
        if self.fatal is not None:
            raise self.fatal  # documents left "writing" are redone by the next run
        # Only now, with no write in flight, can a failed document's half-written version be removed.
        for doc in docs:
            if doc.error is not None and doc.marked is not None and not doc.replaces_itself:
                await self._undo(doc)

    async def _make(self, docs: list[_Doc]) -> None:
        """Parse, chunk, embed and write `docs` in this process: a parser thread (or processes)
        and this process's embedder. (ingest/on_ray.py does the same on a Ray cluster.)"""
        parsed: asyncio.Queue[tuple[str, list[BaseNode]] | None] = asyncio.Queue()
        with _executor(self.limits.parse_workers) as pool:
            self._spawn(self._parse_all(pool, docs, parsed))
            await self._embed_all(parsed)

    # -- stage 1: plan and parse, ≤ max_units parsed units in memory --------------------------------

    async def _parse_all(
        self, pool: Executor, docs: list[_Doc], out: asyncio.Queue[tuple[str, list[BaseNode]] | None]
    ) -> None:
        loop = asyncio.get_running_loop()
        async with asyncio.TaskGroup() as parsing:  # the end of the input is sent once every unit is parsed
            for doc in docs:
                doc.started = time.perf_counter()
                whole = Unit(doc.found.path, str(doc.found.path), doc.found.doc_id, doc.version)
                try:
                    units = await loop.run_in_executor(
                        pool, plan, whole, self.limits.pdf_pages_per_task, self.limits.text_bytes_per_unit,
                        self.spec.ocr,
                    )
                except Exception as e:  # noqa: BLE001 - one file's problem
                    await self._fail(doc, _reason(e))
                    continue
                doc.units_left = doc.units_total = len(units)
                await self._check(doc)
                for unit in units:
                    await self._unit_slots.acquire()
                    parsing.create_task(self._parse_one(pool, unit, out))
        await out.put(None)

    async def _parse_one(
        self, pool: Executor, unit: Unit, out: asyncio.Queue[tuple[str, list[BaseNode]] | None]
    ) -> None:
        doc = self.docs[unit.doc_id]
        try:
            nodes = await asyncio.get_running_loop().run_in_executor(pool, parse, unit, self.spec)
        except Exception as e:  # noqa: BLE001 - a ReadError, a parser bug or a crashed worker: one file's
            self._unit_slots.release()
            await self._fail(doc, str(e) if isinstance(e, ReadError) else _reason(e))
            return
        doc.chunks_pending += len(nodes)
        await out.put((unit.doc_id, nodes))  # the slot is released when the embedder takes the unit

    # -- stage 2: embed, in batches, ≤ max_concurrency calls ---------------------------------------------

    async def _embed_all(self, parsed: asyncio.Queue[tuple[str, list[BaseNode]] | None]) -> None:
        buffer: list[BaseNode] = []
        finished = False
        while not finished or buffer:
            # Block for input only when there is nothing to embed; otherwise take what is ready.
            while not finished and len(buffer) < self.limits.embed_batch_size and (not buffer or not parsed.empty()):
                item = await parsed.get()
                if item is None:
                    finished = True
                    break
                self._unit_slots.release()
                doc_id, nodes = item
                buffer += nodes
                doc = self.docs[doc_id]
                doc.units_left = max(0, (doc.units_left or 0) - 1)
                await self._check(doc)
            batch, buffer = buffer[: self.limits.embed_batch_size], buffer[self.limits.embed_batch_size :]
            if batch:
                await self._embed_slots.acquire()
                self._spawn(self._embed(batch))

    async def _embed(self, nodes: list[BaseNode]) -> None:
        try:
            live = [n for n in nodes if self._doc(n).error is None]
            if not live:
                return
            texts = [embed_text(n) for n in live]
            await self._pace()
            try:
                vectors = await _with_retries(
                    lambda: asyncio.to_thread(self.embedder.embed, texts), self.limits, "embedding"
                )
            except Exception as e:  # noqa: BLE001
                await self._failed(e, live, f"embedding with {self.embedder.name}")
                return
            for node, vector in zip(live, vectors, strict=True):
                node.embedding = vector
        finally:
            self._embed_slots.release()
        await self._write_slots.acquire()
        self._spawn(self._write(live))

    # -- or a copy: stored chunks under new ids, into the same writes ----------------------------------------

    async def _copy_all(self, docs: list[_Doc]) -> None:
        for doc in docs:
            await self._copy(doc)

    async def _copy(self, doc: _Doc) -> None:
        """Write `doc` from its source's stored chunks: its units are known (none to parse) and its
        chunks pending from the start, so `_write` finishes it as it would any other document."""
        assert doc.copy is not None
        doc.started = time.perf_counter()
        doc.units_left, doc.chunks_pending = 0, len(doc.copy.ids)
        taken = 0
        readings: dict[int | None, dict[str, Any]] = {}
        try:
            async for page in self.collection.chunks(doc.copy.source.doc_id, doc.version, vectors=True):
                nodes = [_moved(n, doc, doc.copy.ids[n.node_id], readings) for n in page if n.node_id in doc.copy.ids]
                taken += len(nodes)
                if nodes and doc.error is None:
                    await self._write_slots.acquire()
                    self._spawn(self._write(nodes))
        except Exception as e:  # noqa: BLE001
            if is_transient(e):
                self._abort(f"reading the stored chunks of {doc.copy.source.source} kept failing ({_reason(e)})")
            await self._fail(doc, f"copying its stored chunks failed: {_reason(e)}")
            return
        if taken != len(doc.copy.ids):  # the source changed since it was planned (another shard's prune)
            await self._fail(doc, "the stored copy it was copied from changed; run again to ingest it")

    # -- stage 3: write, ≤ max_writes requests; then finish each document ---------------------------------

    async def _write(self, nodes: list[BaseNode]) -> None:
        try:
            docs = {self._doc(n).found.doc_id: self._doc(n) for n in nodes}
            for doc in docs.values():
                if doc.error is None:
                    await self._mark_writing(doc)
            live = [n for n in nodes if self._doc(n).error is None]
            if not live:
                return
            await _with_retries(lambda: self.collection.write(live), self.limits, "writing to Milvus")
        except Exception as e:  # noqa: BLE001
            await self._failed(e, nodes, "writing to Milvus")
            return
        finally:
            self._write_slots.release()
        for node in live:
            doc = self._doc(node)
            doc.chunks_pending -= 1
            doc.chunks_written += 1
            self.chunks += 1
        await self._maybe_flush(len(live))
        self._report()
        for doc in docs.values():
            await self._check(doc)

    async def _maybe_flush(self, rows: int) -> None:
        """Seal a segment once `flush_every_rows` rows were written since the last one."""
        every = self.limits.flush_every_rows
        self._unflushed += rows
        if every is None or self._unflushed < every:
            return
        self._unflushed = 0
        try:
            await _with_retries(self.collection.flush, self.limits, "flushing Milvus")
        except Exception as e:  # noqa: BLE001 - what was written is stored; a flush only seals it sooner
            log.warning("flushing Milvus failed (%s); going on", _reason(e))

    async def _mark_writing(self, doc: _Doc) -> None:
        """The manifest says 'writing this version' before the first chunk of it is stored."""
        if doc.marked is None:
            doc.marked = asyncio.get_running_loop().create_future()
            doc.marked.add_done_callback(lambda f: f.cancelled() or f.exception())  # seen, if no one else waits
            try:
                marker = _marker(doc)
                await _with_retries(lambda: self.collection.put_records([marker]), self.limits, "recording in Milvus")
                doc.marked.set_result(None)
            except BaseException as e:
                doc.marked.set_exception(e)
                raise
        await asyncio.shield(doc.marked)

    async def _check(self, doc: _Doc) -> None:
        """Finish a document once all of its units are parsed and all of its chunks written."""
        if doc.finished or doc.units_left != 0 or doc.chunks_pending > 0 or doc.error is not None:
            return
        if doc.chunks_written == 0:
            await self._fail(doc, "no extractable text (scanned pages are read by OCR unless --ocr off)")
            return
        doc.finished = True
        self._spawn(self._complete(doc))

    async def _complete(self, doc: _Doc) -> None:
        doc_id = doc.found.doc_id
        try:
            await _with_retries(
                lambda: self.collection.delete_other_versions(doc_id, doc.version), self.limits, "deleting old chunks"
            )
            doc.new.chunks = doc.chunks_written
            await _with_retries(lambda: self.collection.put_records([doc.new]), self.limits, "recording in Milvus")
        except Exception as e:  # noqa: BLE001
            doc.error = doc.error or f"could not finish in Milvus: {_reason(e)}"
            if is_transient(e):
                self._abort(f"finishing {doc.found.path} in Milvus kept failing ({_reason(e)})")
        self._progress(doc)

    async def _fail(self, doc: _Doc, reason: str) -> None:
        """This document failed: its old version stays as it was, the half-written new one goes."""
        if doc.error is not None or doc.finished:
            return
        doc.error = reason
        doc.finished = True
        self._progress(doc)

    async def _undo(self, doc: _Doc) -> None:
        doc_id = doc.found.doc_id
        try:
            await self.collection.delete_version(doc_id, doc.version)
            if doc.record is not None and doc.record.hash:  # its complete version stays, as complete
                await self.collection.put_records([DocumentRecord(**{**doc.record.__dict__, "writing": ""})])
            else:  # none was (or a killed run's marker was all there was)
                await self.collection.delete_records([doc_id])
        except Exception as e:  # noqa: BLE001 - the next run finds the row still "writing" and cleans up
            log.warning("could not clean up after %s (%s); the next run will", doc.found.path, _reason(e))

    async def _pace(self) -> None:
        """Start embedding calls no faster than `embed_rps` a second."""
        if self.limits.embed_rps is None:
            return
        now = asyncio.get_running_loop().time()
        start = max(now, self._next_call)
        self._next_call = start + 1 / self.limits.embed_rps
        await asyncio.sleep(start - now)

    async def _failed(self, error: BaseException, nodes: list[BaseNode], what: str) -> None:
        """A transient error that outlived its retries stops the run; any other fails these nodes' documents."""
        if is_transient(error):
            self._abort(f"{what} kept failing ({_reason(error)})")
        else:
            await self._fail_nodes(nodes, f"{what} failed: {_reason(error)}")

    async def _fail_nodes(self, nodes: list[BaseNode], reason: str) -> None:
        for doc in {self._doc(n).found.doc_id: self._doc(n) for n in nodes}.values():
            await self._fail(doc, reason)

    def _abort(self, why: str) -> NoReturn:
        """Stop the run: raised in a task of the run's TaskGroup, it cancels every other task."""
        if self.fatal is None:
            self.fatal = RunAborted(
                f"{why} after {self.limits.attempts} attempts; the run stopped. Nothing stored is lost: "
                "run the same command again to resume"
            )
        raise self.fatal

    def _doc(self, node: BaseNode) -> _Doc:
        return self.docs[node.ref_doc_id or ""]

    def _progress(self, doc: _Doc) -> None:
        doc.ended = time.perf_counter()
        self.done += 1
        self._report()

    def _report(self) -> None:
        if self.on_progress is None:
            return
        docs = self.docs.values()
        current = next((d for d in docs if d.started is not None and d.ended is None), None)
        self.on_progress(
            IngestProgress(
                self.done,
                self.total,
                self.chunks,
                sum(d.bytes_done for d in docs),
                sum(d.new.size for d in docs),
                str(current.found.path) if current else None,
            )
        )

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        self._tasks.create_task(work)


def _marker(doc: _Doc) -> DocumentRecord:
    """The record that says `doc`'s new version is being written (its stored one, if any, stays
    complete and searchable until the new one is)."""
    base = doc.record or DocumentRecord(doc.found.doc_id, source=str(doc.found.path))
    return DocumentRecord(**{**base.__dict__, "writing": doc.version})


def _executor(workers: int) -> Executor:
    if workers <= 0:  # one thread of this process (PDFium is not thread-safe): no start-up cost
        return ThreadPoolExecutor(1, thread_name_prefix="parse")
    return ProcessPoolExecutor(workers, mp_context=get_context("spawn"))


# -- the run ----------------------------------------------------------------------------------------


async def _changed(
    files: list[Found], records: dict[str, DocumentRecord], fp: str
) -> tuple[list[_Doc], list[FileReport], list[DocumentRecord]]:
    """The documents to (re)write, reports for the unchanged ones, and the records whose file was
    touched but not changed (their new stat is recorded). Only a changed stat costs a hash."""
    todo: list[_Doc] = []
    unchanged: list[FileReport] = []
    restat: list[DocumentRecord] = []
    for found in files:
        record = records.get(found.doc_id)
        stat = found.path.stat()
        same_stat = record is not None and (record.size, record.mtime_ns) == (stat.st_size, stat.st_mtime_ns)
        if record is not None and record.complete and record.fingerprint == fp and same_stat:
            unchanged.append(FileReport(str(found.path), found.doc_id, Status.UNCHANGED, record.chunks))
            continue
        digest = await asyncio.to_thread(file_sha256, found.path)
        new = DocumentRecord(found.doc_id, digest, fp, 0, stat.st_size, stat.st_mtime_ns, "", str(found.path))
        if record is not None and record.complete and (record.hash, record.fingerprint) == (digest, fp):
            unchanged.append(FileReport(str(found.path), found.doc_id, Status.UNCHANGED, record.chunks))
            if not same_stat:
                restat.append(DocumentRecord(**{**record.__dict__, "size": new.size, "mtime_ns": new.mtime_ns}))
            continue
        todo.append(_Doc(found, record, new, version=version_of(new.hash, new.fingerprint)))
    return todo, unchanged, restat


async def _find_copies(todo: list[_Doc], collection: Collection, fp: str, limits: Limits) -> None:
    """Plan a copy for each document to write whose content is stored complete under another id,
    of this tenant and with these settings (typically a file this run will prune: it moved).
    Documents this run rewrites are no sources: their chunks are about to change."""
    busy = {d.found.doc_id for d in todo}
    sources: dict[str, list[DocumentRecord]] = {}
    for record in await collection.complete_with((d.new.hash for d in todo), fp):
        if record.doc_id not in busy:
            sources.setdefault(record.hash, []).append(record)
    for doc in todo:
        for source in sources.get(doc.new.hash, []):
            try:
                doc.copy = await _plan_copy(doc, source, collection, limits)
            except Exception as e:  # noqa: BLE001 - then it is embedded, as it would be without a source
                log.warning("could not plan a copy of %s for %s (%s)", source.source, doc.found.path, _reason(e))
            if doc.copy is not None:
                break


async def _plan_copy(doc: _Doc, source: DocumentRecord, collection: Collection, limits: Limits) -> _Copy | None:
    """How `doc` is copied from `source`'s stored chunks; None where a copy would differ from what
    ingesting `doc` makes (then it is embedded).

    The same content makes the same chunks only when the file is read the same way under both
    paths (`_read_alike`): a file's name is split and embedded with its text. A chunk's id is
    `node_id(document, version, unit, page, position)`: page and position are in its metadata, and
    unit (where a big text file's stretch starts; None for any other file) is found from the
    chunk's offset among the stretches ingesting the file cuts. Every stored id must be remade
    exactly from these, and their count must be the record's, or nothing is copied.
    """
    if not _read_alike(source.source, str(doc.found.path)):
        return None
    stored = [n async for page in collection.chunks(source.doc_id, doc.version) for n in page]
    if not stored or len(stored) != source.chunks:
        return None
    origins = _origins(stored, source.doc_id, doc.version, [])
    if origins is None:  # a big text file? its stretches, as ingesting it cuts them
        whole = Unit(doc.found.path, str(doc.found.path), doc.found.doc_id, doc.version)
        units = await asyncio.to_thread(plan, whole, limits.pdf_pages_per_task, limits.text_bytes_per_unit)
        stretches = [u for u in units if u.text_bytes is not None]
        origins = _origins(stored, source.doc_id, doc.version, stretches) if stretches else None
    if origins is None:
        return None
    return _Copy(source, {old: node_id(doc.found.doc_id, doc.version, *origin) for old, origin in origins.items()})


Origin = tuple[int | None, int | None, int]  # what a chunk's id is made from besides its document and version


def _origins(stored: list[BaseNode], doc_id: str, version: str, stretches: list[Unit]) -> dict[str, Origin] | None:
    """Each stored chunk's (unit, page, position), checked by remaking its id; None if one fails.
    `stretches`: the units of a big text file (a chunk's is the last that starts at or before it)."""
    offsets = [u.text_offset for u in stretches]
    found: dict[str, Origin] = {}
    for node in stored:
        page, position = node.metadata.get("page"), int(node.metadata["position"])
        unit = None
        if stretches:
            unit = stretches[max(0, bisect.bisect_right(offsets, getattr(node, "start_char_idx", None) or 0) - 1)].key
        if node_id(doc_id, version, unit, page, position) != node.node_id:
            return None
        found[node.node_id] = (unit, page, position)
    return found


def _read_alike(old: str, new: str) -> bool:
    """Whether a file at `old` and at `new` is read into the same chunks with the same vectors: the
    same reader (its suffix), and the same metadata split and embedded with the text. The splitter
    counts a file's name against each chunk's tokens and the model embeds it, so a new name
    (unless too long to be embedded under either) makes other chunks and vectors; a move keeps them."""
    a, b = document("", old), document("", new)
    return (
        Path(old).suffix.lower() == Path(new).suffix.lower()
        and a.excluded_embed_metadata_keys == b.excluded_embed_metadata_keys
        and a.excluded_llm_metadata_keys == b.excluded_llm_metadata_keys
        and all(a.get_metadata_str(m) == b.get_metadata_str(m) for m in (MetadataMode.EMBED, MetadataMode.LLM))
    )


def _moved(node: BaseNode, doc: _Doc, new_id: str, readings: dict[int | None, dict[str, Any]]) -> BaseNode:
    """A stored chunk as ingesting `doc` makes it: its id, its document, and the metadata its reader
    derives from the file's path (`readings`: by page, made once each)."""
    page = node.metadata.get("page")
    if page not in readings:
        readings[page] = document("", str(doc.found.path), page).metadata
    node.id_ = new_id
    node.metadata.update(readings[page])
    node.relationships[NodeRelationship.SOURCE] = RelatedNodeInfo(node_id=doc.found.doc_id)
    return node


async def ingest(
    paths: list[str | Path],
    collection: Collection,
    *,
    embedder: Embedder,
    chunk_spec: ChunkSpec,
    limits: Limits | None = None,
    options: Options | None = None,
    on_progress: Progress | None = None,
) -> IngestReport:
    """Bring `collection` up to date with `paths`; see the module docstring."""
    limits, options = limits or Limits(), options or Options()
    started = time.perf_counter()
    found: Discovery = discover(paths, limits.max_file_mb * 2**20, options.doc_id_prefix, collection.tenant)
    files = [f for f in found.files if in_shard(f.doc_id, options.shard)]
    reports = [FileReport(f.path, None, Status.FAILED, error=f.reason) for f in found.failures]
    if len(files) < len(found.files):
        mine = {f.doc_id for f in files}
        reports += [FileReport(str(f.path), f.doc_id, Status.SKIPPED) for f in found.files if f.doc_id not in mine]

    records = await collection.get_records(f.doc_id for f in files)
    todo, unchanged, restat = await _changed(files, records, fingerprint(chunk_spec, embedder))
    reports += unchanged
    await collection.put_records(restat)

    if todo or options.prune:  # only now the chunks' store: a run with nothing to do never loads it
        await collection.open_store()  # (and a collection of another model is refused here, in one line)
    if todo:
        await _find_copies(todo, collection, fingerprint(chunk_spec, embedder), limits)
    pipeline = _pipeline(options.cluster, collection, embedder, chunk_spec, limits, on_progress, len(todo))
    try:
        if todo:
            await pipeline.run(todo)
    finally:
        for doc in todo:
            if doc.finished or doc.error:
                status = _status(doc)
                now = time.perf_counter()
                seconds = (doc.ended or now) - (doc.started or now)
                path, doc_id = str(doc.found.path), doc.found.doc_id
                source = doc.copy.source.doc_id if doc.copy and not doc.error else None
                reports.append(FileReport(path, doc_id, status, doc.chunks_written, seconds, doc.error, source))
    if options.prune:
        reports += await _prune(found, options, collection, limits)
    await collection.flush()
    return IngestReport(reports, time.perf_counter() - started)


def _pipeline(cluster: Cluster | None, *args: Any) -> Pipeline:
    """This process's pipeline, or the one whose stages run on a Ray cluster (Ray imported only then)."""
    if cluster is None:
        return Pipeline(*args)
    from asyncrag.ingest.on_ray import RayPipeline

    return RayPipeline(cluster, *args)


def _status(doc: _Doc) -> Status:
    if doc.error:
        return Status.FAILED
    if doc.copy:
        return Status.COPIED
    return Status.UPDATED if doc.record else Status.ADDED


async def _prune(found: Discovery, options: Options, collection: Collection, limits: Limits) -> list[FileReport]:
    """Delete the documents gone from the given paths (only those; chunks first, then the record)."""
    if found.blind:
        log.warning("not pruning: a folder could not be read, so what it holds is unknown")
        return []
    gone = [
        r for r in await collection.records()
        if found.may_prune(r.doc_id) and in_shard(r.doc_id, options.shard)
    ]
    reports = []
    for record in gone:
        ids = [record.doc_id]
        await _with_retries(functools.partial(collection.delete_documents, ids), limits, "deleting a document")
        reports.append(FileReport(record.source, record.doc_id, Status.DELETED, record.chunks))
    return reports


async def delete_documents(doc_ids: list[str], collection: Collection) -> list[str]:
    """Delete these documents (chunks first, then records); returns the ids that were stored."""
    known = await collection.get_records(doc_ids)
    await collection.delete_documents(doc_ids)
    await collection.flush()
    return [d for d in doc_ids if d in known]


__all__ = ["IngestProgress", "Limits", "Options", "Progress", "delete_documents", "fingerprint", "ingest"]
