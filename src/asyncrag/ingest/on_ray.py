"""Ingest on a Ray cluster: `asyncrag ingest DOCS --uri http://milvus:19530 --ray [local|auto|ADDRESS]`.

    driver (this process)                          Ray Data, on the cluster's nodes
    discover → what changed (records) → units
    → each document recorded "writing" ─units─▶ parse + chunk (tasks) ─▶ embed (actor pool) ─▶ write (writer actors)
    ◀──────────────────────────────────────── (document, unit, chunk id) of each chunk written ─────────────┘
    → a document's chunks all written: delete its other versions, record it complete

The driver decides what to do exactly as an in-process run does (`pipeline.ingest`: unchanged
files cost a stat, moved ones are copied) and owns every document record; Ray Data runs the heavy
stages: parsing and chunking as tasks (a file, 16 pages of a PDF, ~64 KB of a big text file each),
embedding in an actor pool that loads the model once per actor and grows from 1 to one actor
per node (or `ray_embed_actors`), and writing through `ray_writers` actors, each with its own
coalescing store. Each written chunk comes back to the driver as its ids alone.

The records keep the in-process order: every document is recorded "writing" before any chunk of
it can be stored, and "complete" only once the driver has seen each of its chunks written. Ray
re-runs a task or restarts an actor whose worker died; chunks are upserted under ids fixed by
their document, version and position, so a redone write stores nothing twice and the driver
counts chunk ids, not rows. A driver killed at any point leaves records the next run finishes:
completed documents are unchanged, the others are redone.

Milvus Lite is refused: it is a file that one process opens, and the writers are other processes.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import pickle
import socket
import time
from collections.abc import Awaitable, Generator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import ray
import ray.data
import ray.exceptions
from llama_index.core.schema import BaseNode

from asyncrag.config import Settings
from asyncrag.embed import Embedder, load_embedder
from asyncrag.embed.local import LocalEmbedder
from asyncrag.errors import ConfigError, ReadError, RunAborted, is_transient
from asyncrag.ingest.chunk import ChunkSpec, embed_text
from asyncrag.ingest.parse import Unit, parse, plan
from asyncrag.ingest.pipeline import Limits, Pipeline, _Doc, _marker, _reason, _with_retries
from asyncrag.store.collection import Collection
from asyncrag.store.milvus import is_local

log = logging.getLogger(__name__)
MARK_BATCH = 1000  # "writing" records put in one request
MAX_BLOCKS = 10_000  # Ray Data's blocks of units to parse; more units share blocks
# Ray's CPUs are logical: a parse task is mostly one core's work; a writer waits on Milvus. With
# whole CPUs each, an embedding actor and two writers on a 2-core node would leave no parse task room.
PARSE_CPUS = 0.5
WRITER_CPUS = 0.0
Batch = dict[str, np.ndarray]


@dataclass(frozen=True)
class Cluster:
    """Where and how a run uses Ray: the cluster's address and what its workers need to know."""

    address: str  # "local": start one in this process; "auto": the one running here (or RAY_ADDRESS); or an address
    settings: Settings  # the workers' Milvus (uri, token, collection, tenant) and embedding model
    embed_actors: int = 0  # at most this many embedding actors (0: one per node, or one per GPU share)
    embed_cpus: float = 1.0  # Ray's (logical) CPUs an embedding actor asks for; it encodes on all of its node's
    gpus: float = 0.0  # GPUs each embedding actor takes (the model runs on one where it has one)
    writers: int = 2
    embedder: Embedder | None = None  # sent to each actor (its weights load there); None: settings.embed_model

    @classmethod
    def from_settings(cls, settings: Settings, embedder: Embedder | None = None) -> Cluster:
        """The cluster `settings.ray` names; ConfigError for Milvus Lite (one process's file)."""
        if not settings.ray:
            raise ConfigError("no Ray address: give --ray local, --ray auto or --ray ADDRESS")
        if is_local(settings.uri):
            raise ConfigError(
                f"--ray needs a Milvus server: Milvus Lite ({settings.uri}) is a file one process opens, and Ray's "
                "writers are other processes. Give --uri http://HOST:19530, or ingest without --ray"
            )
        return cls(
            settings.ray,
            settings,
            settings.ray_embed_actors,
            settings.ray_embed_cpus,
            settings.ray_gpus,
            settings.ray_writers,
            embedder,
        )

    def make_embedder(self) -> Embedder:
        """The embedder, in an actor."""
        return self.embedder if self.embedder is not None else load_embedder(self.settings.embed_model)

    def connect(self) -> bool:
        """Join (or, for "local", start) the cluster; True when this call started Ray here."""
        if ray.is_initialized():
            return False
        address = None if self.address == "local" else self.address
        _check_reachable(os.environ.get("RAY_ADDRESS", "") if address == "auto" else address)
        # Asyncrag installed on every node is the runtime environment: no packaging of this folder.
        quiet: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.ERROR}
        try:
            if address is None:
                ray.init(include_dashboard=False, **quiet)
            else:
                ray.init(address=address, **quiet)
        except (ConnectionError, ValueError, RuntimeError) as e:
            how = "start one with `ray start --head`, or use --ray local" if self.address == "auto" else "check it"
            raise ConfigError(f"cannot join the Ray cluster at {self.address!r} ({_reason(e)}): {how}") from None
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False  # the run's own progress (IngestProgress) says where it stands
        context.verbose_stats_logs = False
        logging.getLogger("ray.data").setLevel(logging.ERROR)
        return True

    def check(self) -> None:
        """Refuse in one line what the cluster cannot give (Ray Data would wait for it for ever)."""
        gpus = _resources().get("GPU", 0)
        if self.gpus and gpus < self.gpus:
            raise ConfigError(
                f"ray_gpus = {self.gpus:g}, but the Ray cluster has {gpus:g} GPUs: set ASYNCRAG_RAY_GPUS=0 to embed "
                "on CPUs, or add nodes with GPUs"
            )

    def max_embed_actors(self) -> int:
        """The embedding pool's ceiling: `embed_actors`, else one per GPU share, else one per node
        (an actor encodes on every core of its node, as the in-process embedder does: one
        single-threaded worker per core, beside the parse tasks)."""
        if self.embed_actors:
            return self.embed_actors
        if self.gpus:
            return max(1, int(_resources().get("GPU", 0) // self.gpus))
        nodes: list[dict[str, Any]] = ray.nodes()  # type: ignore[no-untyped-call]
        return max(1, sum(1 for node in nodes if node.get("Alive")))


def _check_reachable(address: str | None, timeout_s: float = 5.0) -> None:
    """Fail in seconds on a HOST:PORT nothing listens on (Ray itself retries one for minutes)."""
    host, _, port = (address or "").removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return  # "auto" with no RAY_ADDRESS, or a form Ray resolves itself
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as e:
        raise ConfigError(
            f"cannot join the Ray cluster at {address!r} ({e.strerror or type(e).__name__}): check the address "
            "(`ray status` on the head node), or use --ray local"
        ) from None


def _resources() -> dict[str, float]:
    """The cluster's total resources ("CPU", "GPU", ...)."""
    resources: dict[str, float] = ray.cluster_resources()  # type: ignore[no-untyped-call]
    return resources


# -- the stages, run by Ray's workers ------------------------------------------------------------------


def _row(doc_id: str, *, unit: int = 0, chunks: int = 0, chunk_id: str = "", node: bytes = b"",
         error: str = "", fatal: bool = False) -> dict[str, Any]:
    """One row of every stage: the same columns throughout (Arrow blocks need one schema).
    A unit with no chunks is one row with no chunk id, so the driver hears of it too."""
    return {"doc_id": doc_id, "unit": unit, "chunks": chunks, "chunk_id": chunk_id, "node": node,
            "error": error, "fatal": fatal}


def parse_unit(row: dict[str, Any], spec: ChunkSpec) -> list[dict[str, Any]]:
    """A unit's chunks, each pickled (LlamaIndex nodes, as the in-process pipeline hands them on)."""
    unit: Unit = pickle.loads(row["work"])
    doc_id, index = unit.doc_id, int(row["unit"])
    try:
        nodes = parse(unit, spec)
    except Exception as e:  # noqa: BLE001 - one file's problem, reported in its row
        return [_row(doc_id, unit=index, error=str(e) if isinstance(e, ReadError) else _reason(e))]
    if not nodes:
        return [_row(doc_id, unit=index)]
    return [_row(doc_id, unit=index, chunks=len(nodes), chunk_id=n.node_id, node=pickle.dumps(n)) for n in nodes]


class _Worker:
    """A stage's actor: an event loop of its own, for the retries the in-process pipeline makes."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.loop = asyncio.new_event_loop()

    @staticmethod
    def _live(batch: Batch) -> tuple[np.ndarray, list[BaseNode]]:
        """Which rows hold a chunk still to do (not an empty unit's row, nor a failure), and those chunks."""
        live = (batch["chunk_id"] != "") & (batch["error"] == "")
        return live, [pickle.loads(b) for b in batch["node"][live]]

    def _failed(self, batch: Batch, live: np.ndarray, error: Exception, what: str) -> Batch:
        """Rows that could not be done: a transient error that outlived its retries stops the run
        (`fatal`), any other fails their documents."""
        batch["error"] = np.where(live, f"{what} failed: {_reason(error)}", batch["error"]).astype(object)
        batch["fatal"] = np.where(live, is_transient(error), batch["fatal"])
        batch["node"] = np.full(len(live), b"", dtype=object)
        return batch


class Embed(_Worker):
    """The embedding actor: the model loaded once (on its first batch), encoding with one
    single-threaded worker per core of its node, as the in-process embedder does, or on a GPU."""

    def __init__(self, cluster: Cluster, limits: Limits) -> None:
        super().__init__(limits)
        self.embedder = cluster.make_embedder()
        gpu = cluster.gpus > 0
        if isinstance(self.embedder, LocalEmbedder):  # before its weights load (on the first embed)
            self.embedder.workers = 1 if gpu else os.cpu_count() or 1
            self.embedder.device = "cuda" if gpu else "cpu"

    def __call__(self, batch: Batch) -> Batch:
        live, nodes = self._live(batch)
        if not nodes:
            return batch
        texts = [embed_text(n) for n in nodes]
        try:
            vectors = self.loop.run_until_complete(
                _with_retries(lambda: asyncio.to_thread(self.embedder.embed, texts), self.limits, "embedding")
            )
        except Exception as e:  # noqa: BLE001
            return self._failed(batch, live, e, f"embedding with {self.embedder.name}")
        for node, vector in zip(nodes, vectors, strict=True):
            node.embedding = vector
        embedded = batch["node"].astype(object)
        embedded[np.flatnonzero(live)] = [pickle.dumps(n) for n in nodes]
        batch["node"] = embedded
        return batch


class Write(_Worker):
    """A writer actor: its own Milvus clients and coalescing store, as the driver's collection is opened."""

    def __init__(self, cluster: Cluster, limits: Limits) -> None:
        super().__init__(limits)
        self.collection = self.loop.run_until_complete(self._open(cluster.settings, cluster.make_embedder()))

    @staticmethod
    async def _open(settings: Settings, embedder: Embedder) -> Collection:
        """The collection, opened as the driver's is (its model's identity checked; no weights load)."""

        async def model() -> Embedder:
            return embedder

        whole = await Collection.open(settings, model)
        await whole.open_store()
        return await whole.scoped(settings.tenant) if settings.tenant else whole

    def __call__(self, batch: Batch) -> Batch:
        live, nodes = self._live(batch)
        if nodes:
            try:
                self.loop.run_until_complete(
                    _with_retries(lambda: self.collection.write(nodes), self.limits, "writing to Milvus")
                )
            except Exception as e:  # noqa: BLE001
                return self._failed(batch, live, e, "writing to Milvus")
        batch["node"] = np.full(len(live), b"", dtype=object)  # the driver needs the ids alone
        return batch


# -- the driver --------------------------------------------------------------------------------------


@dataclass
class _Units:
    """What the driver has heard of one document's units: each unit's chunk count, and its chunks written."""

    chunks: dict[int, int] = field(default_factory=dict)
    written: dict[int, set[str]] = field(default_factory=dict)

    def add(self, unit: int, chunks: int, chunk_id: str) -> bool:
        """Record a chunk (or an empty unit); True when it is news (a redone write is not)."""
        self.chunks[unit] = chunks
        seen = self.written.setdefault(unit, set())
        if not chunk_id or chunk_id in seen:
            return False
        seen.add(chunk_id)
        return True

    def done(self) -> int:
        return sum(1 for u, n in self.chunks.items() if len(self.written.get(u, ())) >= n)


class RayPipeline(Pipeline):
    """The in-process pipeline's bookkeeping (completion, failures, progress, copies), with its
    parse, embed and write stages on a Ray cluster (`_make`)."""

    def __init__(self, cluster: Cluster, *args: Any) -> None:
        super().__init__(*args)
        self.cluster = cluster

    async def run(self, docs: list[_Doc]) -> None:
        # Joined here, on the main thread (Ray sets its signal handlers there), before any work:
        # a cluster that is not there fails the run in one line, with nothing recorded.
        started = self.cluster.connect()
        try:
            self.cluster.check()
            await super().run(docs)
        finally:
            if started:
                await asyncio.to_thread(ray.shutdown)

    async def _make(self, docs: list[_Doc]) -> None:
        work = await self._plan(docs)
        if not work:
            return
        await self._mark_all([d for d in docs if d.error is None])
        # One thread owns the stream: the next batch, then (when the run ends, stops or is cancelled)
        # closing it, which shuts Ray Data's executor down before this process lets go of Ray.
        puller = ThreadPoolExecutor(1, thread_name_prefix="ray-rows")
        loop = asyncio.get_running_loop()
        rows = await loop.run_in_executor(puller, self._rows, work)
        heard: dict[str, _Units] = {}
        try:
            while (batch := await self._next(loop.run_in_executor(puller, next, rows, None))) is not None:
                await self._take(batch, heard)
        finally:  # (blocking: on a stop or Ctrl-C, Ray Data's executor must end while Ray is still here)
            puller.submit(rows.close)
            puller.shutdown(wait=True)
        for doc in docs:  # rows whose task failed on every retry (a worker crashed on it each time) never came
            if not doc.finished:
                await self._fail(doc, "a Ray worker died on it on every retry: run again, or ingest it without --ray")

    async def _next(self, batch: Awaitable[Batch | None]) -> Batch | None:
        """The next batch of written chunks; a cluster that fails the run stops it in one line."""
        try:
            return await batch
        except ray.exceptions.RayError as e:
            self.fatal = self.fatal or RunAborted(
                f"the Ray cluster failed ({_reason(e)}); the run stopped. Nothing stored is lost: run the same "
                "command again to resume"
            )
            raise self.fatal from None

    async def _plan(self, docs: list[_Doc]) -> list[dict[str, Any]]:
        """Each document's units (here: the driver reads every file anyway, to hash it), as rows."""
        work: list[dict[str, Any]] = []
        for doc in docs:
            doc.started = time.perf_counter()
            whole = Unit(doc.found.path, str(doc.found.path), doc.found.doc_id, doc.version)
            try:
                units = await asyncio.to_thread(
                    plan, whole, self.limits.pdf_pages_per_task, self.limits.text_bytes_per_unit, self.spec.ocr
                )
            except Exception as e:  # noqa: BLE001 - one file's problem
                await self._fail(doc, _reason(e))
                continue
            doc.units_left = doc.units_total = len(units)
            work += [{"unit": i, "work": pickle.dumps(u)} for i, u in enumerate(units)]
        return work

    async def _mark_all(self, docs: list[_Doc]) -> None:
        """Record every document "writing" before Ray may store a chunk of any."""
        markers = [_marker(d) for d in docs]
        for i in range(0, len(markers), MARK_BATCH):
            part = markers[i : i + MARK_BATCH]
            await _with_retries(lambda p=part: self.collection.put_records(p), self.limits, "recording in Milvus")  # type: ignore[misc]
        for doc in docs:
            doc.marked = asyncio.get_running_loop().create_future()
            doc.marked.set_result(None)

    def _rows(self, work: list[dict[str, Any]]) -> Generator[Batch, None, None]:
        """The Ray Data pipeline over `work`, streamed: what each write did, batch by batch."""
        c, limits = self.cluster, self.limits
        # A block per unit (up to MAX_BLOCKS): a 300-page PDF's ranges parse on several workers at
        # once, and each unit's chunks go on to the embedder as soon as it is parsed.
        ds: ray.data.Dataset = ray.data.from_items(work, override_num_blocks=min(len(work), MAX_BLOCKS))
        ds.context.max_errored_blocks = -1  # a unit whose task fails for good fails its document, not the run
        ds = ds.flat_map(functools.partial(parse_unit, spec=self.spec), num_cpus=PARSE_CPUS)
        ds = ds.map_batches(
            Embed,
            fn_constructor_args=(c, limits),
            batch_size=limits.embed_batch_size,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(min_size=1, max_size=c.max_embed_actors()),
            num_cpus=c.embed_cpus,
            num_gpus=c.gpus or None,  # (Ray Data spreads a pool's actors over the nodes)
        )
        ds = ds.map_batches(
            Write,
            fn_constructor_args=(c, limits),
            batch_size=limits.embed_batch_size,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=c.writers),
            num_cpus=WRITER_CPUS,
        )
        written = ds.select_columns(["doc_id", "unit", "chunks", "chunk_id", "error", "fatal"])
        yield from written.iter_batches(batch_size=None, batch_format="numpy")

    async def _take(self, batch: Batch, heard: dict[str, _Units]) -> None:
        """The driver's side of a batch of written chunks: count them, finish complete documents."""
        touched: dict[str, _Doc] = {}
        for doc_id, unit, chunks, chunk_id, error, fatal in zip(
            batch["doc_id"], batch["unit"], batch["chunks"], batch["chunk_id"], batch["error"], batch["fatal"],
            strict=True,
        ):
            doc = self.docs[str(doc_id)]
            if fatal:
                self._abort(str(error))
            if error:
                await self._fail(doc, str(error))
            if doc.finished:  # failed, or complete (a row seen twice: Ray redid a write)
                continue
            units = heard.setdefault(doc.found.doc_id, _Units())
            if units.add(int(unit), int(chunks), str(chunk_id)):
                doc.chunks_written += 1
                self.chunks += 1
            touched[doc.found.doc_id] = doc
        for doc in touched.values():
            units = heard[doc.found.doc_id]
            doc.units_left = doc.units_total - units.done()
            doc.chunks_pending = sum(units.chunks.values()) - doc.chunks_written
            await self._check(doc)
            if doc.finished:  # its chunk ids are no longer needed: the driver's memory stays flat
                del heard[doc.found.doc_id]
        self._report()
