"""Prometheus metrics, one registry per app (so that several apps in one process do not collide)."""

from __future__ import annotations

from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

from asyncrag.embed import Embedder
from asyncrag.results import IngestReport


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "asyncrag_http_requests",
            "HTTP requests by route and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "asyncrag_http_request_seconds",
            "Time to the response's headers, by route",
            ["method", "route"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=self.registry,
        )
        self.jobs = Counter(
            "asyncrag_ingest_jobs", "Ingest jobs finished, by status", ["status"], registry=self.registry
        )
        self.files = Counter("asyncrag_ingest_files", "Files ingested, by result", ["result"], registry=self.registry)
        self.chunks = Counter("asyncrag_ingest_chunks", "Chunks written by ingest jobs", registry=self.registry)
        self.embed_batch = Histogram(
            "asyncrag_embed_batch_size",
            "Texts per embedding call: coalesced questions, or an ingest batch",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
            registry=self.registry,
        )
        self.milvus_batch = Histogram(
            "asyncrag_milvus_batch_size",
            "Query vectors per Milvus search request, rows per insert request (concurrent callers coalesced)",
            ["kind"],
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1000),
            registry=self.registry,
        )

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)

    def milvus_batch_sent(self, kind: str, size: int) -> None:
        """The store's `on_batch` hook: one Milvus request of `size` vectors or rows."""
        self.milvus_batch.labels(kind).observe(size)

    def ingested(self, status: str, report: IngestReport | None) -> None:
        self.jobs.labels(status).inc()
        if report is not None:
            self.files.labels("ok").inc(report.files)
            self.files.labels("failed").inc(len(report.failures))
            self.chunks.inc(report.chunks)

    def response(self) -> Response:
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)


class MeasuredEmbedder:
    """An embedder that reports each call's batch size: how well concurrent questions coalesce."""

    def __init__(self, inner: Embedder, metrics: Metrics) -> None:
        self.inner = inner
        self.metrics = metrics
        self.name, self.identity, self.dim = inner.name, inner.identity, inner.dim
        self.max_tokens, self.tokenizer_file = inner.max_tokens, inner.tokenizer_file

    def embed(self, texts: list[str]) -> list[list[float]]:
        self.metrics.embed_batch.observe(len(texts))
        return self.inner.embed(texts)
