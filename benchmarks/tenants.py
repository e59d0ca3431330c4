"""Tenants in one collection: what isolation costs, and whether it holds under load.

A tenant is a `tenant` field that the store adds to every write and to every search's filter
(src/asyncrag/store/tenants.py). It is the collection's Milvus partition key on Milvus Lite (and on
servers >= 2.4), so a tenant's search reads its own partitions; on the 2.3.5 server, whose upserts
misroute partition-key rows, it is a plain field, and a tenant's search is a filtered search of the
whole collection. Two parts, `--part load,latency`:

load: `asyncrag serve`, its own process on loopback with its defaults and the bundled embedding
model (Milvus Lite by default; `--backend server` for the 2.3.5 server). Five tenants t0..t4 each get
a writer's key (`AsyncRAG.add_key`, what `asyncrag keys add NAME --tenant T --role writer` calls) and
upload their fifth of the tutorial's essay (../shared/data) through POST /v1/documents with it,
waited on through GET /v1/jobs/{id}. Every tenant's part has a word of its own (`zqt0mark`, ...) in
its file name and every few sentences of its text. Then N clients (500) send /v1/search with
questions about the essay for `--seconds`, each with its tenant's key, the clients spread evenly over
the five tenants. Reported: throughput, p50/p95/p99 latency, errors (non-200 or over 60 s) and
FOREIGN results: a returned source that is not one of the caller's own documents (as its GET
/v1/documents lists them), or a passage holding another tenant's word. Target: 0 errors, 0 foreign.
Baseline, same server and collection, same run: the same clients, all with t0's key; the two run
in `--rounds` (2) whose order alternates (the machine's speed drifts), pooled. The ratio
(5 tenants / 1 tenant) is what tenancy costs a server: searches are coalesced into one Milvus
request per filter, and five tenants' filters differ, so a batch becomes five requests. Ceiling:
the same clients on GET /healthz (HTTP alone; serve_load.py's `http_ceiling`).

latency: in-process through the library (no HTTP), with fast deterministic 384-dim vectors (a hash
per text, as tests/conftest.py's HashEmbedder; 384 like the bundled model, so Milvus compares the same
amount per row), on the 2.3.5 server by default (`--backend lite` or `lite,server` for Lite). Two
collections: "one", tenant t0 with R chunks (`--rows`, 400: R/10 documents of 10 sentences, one
chunk each), and "fifty", tenants t0..t49 (`--tenants`) with R chunks each (t0's are the same as in
"one"). Then t0's dense search (k=5): sequential (p50/p95 over 200 searches) and concurrent (50 at
once, wall time per batch; the store sends each batch as one Milvus request). In rounds, the order of
the two collections alternating (the machine's speed drifts). Ratio fifty/one; target within 1.2x.
Bare: raw pymilvus `client.search` with the same filter (`tenant == "t0"`), vectors, fields and
consistency, sequentially (and 50 vectors per request): the floor of any library above Milvus
(asyncrag's search also embeds the question in a thread and reads the found documents' records, one
more Milvus request: store/collection.py, `visible`).
Searches are Session-consistent, as `serve` searches (Strong makes every search on a server wait for
its clock, ~0.1-0.4 s, the same in both collections: `--consistency Strong` measures it).
Also reported: whether the tenant field is the partition key there (describe_collection).

    python benchmarks/tenants.py [--part load,latency] [--backend lite|server] [--clients 500]
        [--seconds 10] [--tenants 50] [--rows 400] [--rounds 2] [--consistency Session] [--quick]
        [--out benchmarks/results/tenants.json]

`--quick`: 100 clients, 3 s, 10 tenants, 100 rows, fewer searches. Without `--backend`, load runs on
Lite and latency on the server.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import platform
import random
import re
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from rich import box
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/ is a folder of scripts
import serve_load  # its servers' plumbing, load client and ceilings
from serve_load import backend, free_port, http_ceiling, percentile, server_process

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
ESSAY = DATA / "paul_graham_essay.txt"
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "tenants.json"
REQUEST_TIMEOUT_S = serve_load.REQUEST_TIMEOUT_S
QUESTIONS = [q for q in serve_load.QUESTIONS if "Uber" not in q]  # the essay's

# load
LOAD_COLLECTION = "tenants_bench"
LOAD_TENANTS = [f"t{i}" for i in range(5)]
LOAD_TOP_K = 3  # the server's (serve_load's)
MARK_EVERY_CHARS = 250  # a tenant's word at least this often in its text (a chunk is ~500 characters)

# latency
ONE, FIFTY = "tenants_one", "tenants_fifty"
LATENCY_TENANT = "t0"
LATENCY_K = 5
SENTENCES_PER_DOC = 10  # one chunk each: ~85 words, so two never fit a 128-token chunk
WORDS_PER_SENTENCE = 85
CONCURRENT = 50
LATENCY_TARGET = 1.2  # fifty/one
INGEST_AT_ONCE = 4  # tenants ingesting at the same time (the server does the work; 2 cores here)
SEARCH_FIELDS = ["text", "_node_content", "_node_type"]  # what the store fetches for a hit (serve_load's)


def marker(tenant: str) -> str:
    """A word no other tenant's text or name holds ("zqt1mark" is not in "zqt10mark")."""
    return f"zq{tenant}mark"


# -- fast vectors and synthetic documents (latency) ---------------------------------------------


class FastEmbedder:
    """Deterministic unit vectors from a hash of each text: retrieval means nothing, Milvus's work
    per row is the real one (384 dims, as the bundled model). Satisfies asyncrag's Embedder protocol."""

    name = identity = "bench-hash-embedder-384"
    dim = 384
    max_tokens = 256
    tokenizer_file = None

    def embed(self, texts: list[str]) -> list[list[float]]:
        vectors = []
        for text in texts:
            seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
            v = np.random.default_rng(seed).standard_normal(self.dim)
            vectors.append((v / np.linalg.norm(v)).tolist())
        return vectors


# fmt: off
WORDS = [
    "river", "stone", "garden", "window", "market", "ledger", "harbor", "signal", "copper", "lantern", "meadow",
    "engine", "orchard", "canvas", "thunder", "velvet", "anchor", "bridge", "castle", "forest", "glacier", "island",
    "jungle", "kettle", "ladder", "mirror", "needle", "ocean", "pepper", "quartz", "ribbon", "saddle", "tunnel",
    "umbrella", "valley", "wagon", "yellow", "zipper", "autumn", "basket", "candle", "desert", "feather", "granite",
    "hammer", "insect", "jacket", "kitten", "lemon", "marble", "nickel", "orange", "pencil", "quiver", "rocket",
    "silver", "tomato", "violin", "walnut", "yogurt", "barrel", "cactus", "dragon", "falcon", "goblet", "hollow",
    "igloo", "jigsaw", "koala", "lobster",
]
# fmt: on


def sentence(rng: random.Random, words: int = WORDS_PER_SENTENCE) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words)).capitalize() + "."


def write_tenant_docs(folder: Path, tenant: str, rows: int) -> list[Path]:
    """`rows` chunks' worth of `tenant`'s documents, the same for a tenant on every run:
    rows / SENTENCES_PER_DOC files of SENTENCES_PER_DOC sentences (a chunk each)."""
    rng = random.Random(f"tenant-{tenant}")
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for j in range(max(1, rows // SENTENCES_PER_DOC)):
        path = folder / f"{tenant}-doc-{j:03}.txt"
        path.write_text("\n\n".join(sentence(rng) for _ in range(SENTENCES_PER_DOC)) + "\n")
        files.append(path)
    return files


def latency_questions(count: int) -> list[str]:
    rng = random.Random("questions")
    return [f"Where is the {rng.choice(WORDS)} by the {rng.choice(WORDS)} {i}?" for i in range(count)]


# -- the essay, in tenants' parts (load) ---------------------------------------------------------


def essay_parts(tenants: list[str]) -> dict[str, tuple[str, str]]:
    """Each tenant's (file name, text): a contiguous share of the essay's paragraphs, of about the
    same size, with the tenant's word in its name and every MARK_EVERY_CHARS characters of text."""
    paragraphs = [p.strip() for p in ESSAY.read_text().splitlines() if p.strip()]
    total, parts, current, size = sum(map(len, paragraphs)), [], [], 0
    for p in paragraphs:
        current.append(p)
        size += len(p)
        if size >= total * (len(parts) + 1) / len(tenants) and len(parts) < len(tenants) - 1:
            parts.append(current)
            current = []
    parts.append(current)
    return {
        t: (f"essay-part{i}-{marker(t)}.txt", mark(part, marker(t)))
        for i, (t, part) in enumerate(zip(tenants, parts, strict=True))
    }


def mark(paragraphs: list[str], word: str) -> str:
    """Paragraphs with `word` at the start of each and after a sentence every MARK_EVERY_CHARS characters."""
    out = []
    for p in paragraphs:
        pieces, since = [f"({word})"], 0
        for s in re.split(r"(?<=[.!?])\s+", p):
            if since >= MARK_EVERY_CHARS:
                pieces.append(f"({word})")
                since = 0
            pieces.append(s)
            since += len(s)
        out.append(" ".join(pieces))
    return "\n\n".join(out) + "\n"


# -- part 1: asyncrag serve, five tenants' clients --------------------------------------------


@contextmanager
def serving(uri: str) -> Iterator[str]:
    """`asyncrag serve` as its own process on loopback, with its defaults (bundled model, Session
    consistency, search mode auto), no LLM and serve_load's top-k; yields its base URL."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASYNCRAG_")}
    env.update(ASYNCRAG_CONFIG="", ASYNCRAG_LLM="none", ASYNCRAG_TOP_K=str(LOAD_TOP_K), GRPC_VERBOSITY="NONE")
    uploads = tempfile.mkdtemp(prefix="asyncrag-tenants-bench-")
    command = ["-c", "from asyncrag.cli import app; app()", "serve", "--port", str(port), "--uri", uri]
    command += ["--collection", LOAD_COLLECTION, "--upload-dir", uploads]
    with server_process(command, env, port, "asyncrag") as url:
        yield url


def make_keys(uri: str, tenants: list[str]) -> dict[str, str]:
    """A writer's key per tenant, made before the server starts (it reads keys from Milvus)."""
    from asyncrag.rag import AsyncRAG
    from asyncrag.store.milvus import release_lite

    async def run() -> dict[str, str]:
        async with AsyncRAG(uri=uri, collection=LOAD_COLLECTION, llm="none") as rag:
            return {t: await rag.add_key(f"{t}-writer", "writer", t) for t in tenants}

    made = asyncio.run(run())
    release_lite(uri)  # Milvus Lite serves one process: the server needs it
    return made


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def upload_parts(url: str, keys: dict[str, str], parts: dict[str, tuple[str, str]]) -> dict[str, Any]:
    """Every tenant uploads its part with its key, all at once; waits for the jobs. Returns each
    tenant's documents as its GET /v1/documents lists them, the chunks and the seconds."""
    started = time.perf_counter()
    async with httpx.AsyncClient(base_url=url, timeout=REQUEST_TIMEOUT_S) as client:

        async def upload(tenant: str) -> tuple[int, list[str]]:
            name, text = parts[tenant]
            files = [("files", (name, text.encode(), "text/plain"))]
            response = await client.post("/v1/documents", files=files, headers=auth(keys[tenant]))
            if response.status_code != 202:
                raise RuntimeError(f"{tenant}'s upload was refused: {response.status_code} {response.text[:300]}")
            job = response.json()
            while job["status"] in ("queued", "running"):
                await asyncio.sleep(0.2)
                job = (await client.get(f"/v1/jobs/{job['id']}", headers=auth(keys[tenant]))).json()
            if job["status"] != "done":
                raise RuntimeError(f"{tenant}'s upload job ended {job['status']}: {job.get('error')}")
            listed = (await client.get("/v1/documents", headers=auth(keys[tenant]))).json()["documents"]
            return job["chunks"], [d["id"] for d in listed]

        done = await asyncio.gather(*(upload(t) for t in keys))
    documents = {t: ids for t, (_, ids) in zip(keys, done, strict=True)}
    for tenant, ids in documents.items():
        if len(ids) != 1 or not ids[0].endswith(parts[tenant][0]):
            raise RuntimeError(f"{tenant} lists {ids}, not its one upload {parts[tenant][0]}")
    return {"documents": documents, "chunks": sum(c for c, _ in done), "seconds": time.perf_counter() - started}


async def tenant_load(
    url: str, callers: list[str], keys: dict[str, str], own: dict[str, set[str]], seconds: float
) -> dict[str, Any]:
    """serve_load's `load` on /v1/search, with client i sending as tenant callers[i] (its key), and
    every answer checked: each source must be the caller's own document, and no passage may hold
    another tenant's word."""
    import aiohttp

    words = {t: marker(t) for t in keys}
    latencies: list[float] = []
    errors: dict[str, int] = {}
    counts = {"sent": 0, "sources": 0, "foreign_sources": 0, "foreign_words": 0, "own_word": 0, "empty": 0}
    by_tenant = dict.fromkeys(sorted(set(callers)), 0)
    connector = aiohttp.TCPConnector(limit=len(callers))
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    async with aiohttp.ClientSession(url, connector=connector, timeout=timeout) as session:

        async def search(tenant: str, question: str) -> str | None:
            try:
                async with session.post("/v1/search", json={"query": question}, headers=auth(keys[tenant])) as r:
                    body = await r.read()
                    if r.status != 200:
                        return f"HTTP {r.status}"
            except (aiohttp.ClientError, TimeoutError) as e:
                return type(e).__name__
            check(tenant, json.loads(body)["sources"])
            return None

        def check(tenant: str, sources: list[dict[str, Any]]) -> None:
            counts["sources"] += len(sources)
            counts["empty"] += not sources
            for s in sources:
                counts["foreign_sources"] += s["source"] not in own[tenant]
                counts["foreign_words"] += any(w in s["text"] for t, w in words.items() if t != tenant)
                counts["own_word"] += words[tenant] in s["text"]

        for tenant in by_tenant:  # warm-up, not measured (nor checked: a check would count twice)
            await search(tenant, QUESTIONS[0])
        counts.update(sources=0, foreign_sources=0, foreign_words=0, own_word=0, empty=0)
        started = time.perf_counter()
        deadline = started + seconds

        async def worker(tenant: str) -> None:
            while time.perf_counter() < deadline:
                question = QUESTIONS[counts["sent"] % len(QUESTIONS)]
                counts["sent"] += 1
                t = time.perf_counter()
                problem = await search(tenant, question)
                if problem:
                    errors[problem] = errors.get(problem, 0) + 1
                else:
                    latencies.append(time.perf_counter() - t)
                    by_tenant[tenant] += 1

        await asyncio.gather(*(worker(t) for t in callers))
        elapsed = time.perf_counter() - started
    return {
        "clients": len(callers),
        "seconds": elapsed,
        "latencies": latencies,
        "errors": errors,
        **counts,
        "ok_by_tenant": by_tenant,
    }


def load_summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One row from a run's rounds: their answers over their time, their latencies pooled."""
    latencies = [t for r in runs for t in r["latencies"]]
    seconds = sum(r["seconds"] for r in runs)
    errors: dict[str, int] = {}
    for r in runs:
        for kind, n in r["errors"].items():
            errors[kind] = errors.get(kind, 0) + n
    total = {k: sum(r[k] for r in runs) for k in ("sent", "sources", "foreign_sources", "foreign_words", "own_word")}
    return {
        "clients": runs[0]["clients"],
        "tenants": len(runs[0]["ok_by_tenant"]),
        "requests": total["sent"],
        "ok": len(latencies),
        "errors": errors,
        "seconds": seconds,
        "throughput": len(latencies) / seconds,
        "round_throughputs": [len(r["latencies"]) / r["seconds"] for r in runs],
        **{f"p{q}_ms": percentile(latencies, q) * 1000 for q in (50, 95, 99)},
        "sources": total["sources"],
        "foreign": total["foreign_sources"] + total["foreign_words"],
        "foreign_sources": total["foreign_sources"],
        "foreign_words": total["foreign_words"],
        "own_word_share": total["own_word"] / total["sources"] if total["sources"] else 0.0,
        "empty_answers": sum(r["empty"] for r in runs),
        "ok_by_tenant": {t: sum(r["ok_by_tenant"][t] for r in runs) for t in runs[0]["ok_by_tenant"]},
    }


def run_load(args: argparse.Namespace, backend_name: str, console: Console) -> dict[str, Any]:
    parts = essay_parts(LOAD_TENANTS)
    with tempfile.TemporaryDirectory(prefix="tenants-bench-") as workdir, backend(backend_name, Path(workdir)) as uri:
        console.print(f"[bold]load[/bold] on {backend_name}: keys for {', '.join(LOAD_TENANTS)}, then serve")
        keys = make_keys(uri, LOAD_TENANTS)
        with serving(uri) as url:
            ingest = asyncio.run(upload_parts(url, keys, parts))
            console.print(f"  uploads: {ingest['chunks']} chunks in {ingest['seconds']:.1f} s (bundled model)")
            own = {t: set(ids) for t, ids in ingest["documents"].items()}
            http = asyncio.run(http_ceiling(url, args.clients, args.ceiling_seconds))
            console.print(f"  ceiling: GET /healthz {http:.0f} req/s at {args.clients} clients")
            callers = {
                "1 tenant": [LOAD_TENANTS[0]] * args.clients,
                f"{len(LOAD_TENANTS)} tenants": [LOAD_TENANTS[i % len(LOAD_TENANTS)] for i in range(args.clients)],
            }
            runs: dict[str, list[dict[str, Any]]] = {label: [] for label in callers}
            for r in range(args.rounds):  # the order alternates: the machine's speed drifts
                for label in list(callers) if r % 2 == 0 else list(callers)[::-1]:
                    raw = asyncio.run(tenant_load(url, callers[label], keys, own, args.seconds))
                    runs[label].append(raw)
                    row = load_summary([raw])
                    console.print(
                        f"  round {r + 1} {label:10} {row['throughput']:7.1f} req/s, p50 {row['p50_ms']:.0f} ms, "
                        f"p99 {row['p99_ms']:.0f} ms, errors {sum(row['errors'].values())}, foreign {row['foreign']}"
                    )
    one, five = (load_summary(r) for r in runs.values())
    return {
        "backend": backend_name,
        "tenants": LOAD_TENANTS,
        "files": {t: name for t, (name, _) in parts.items()},
        "ingest": {"chunks": ingest["chunks"], "seconds": ingest["seconds"], "via": "POST /v1/documents"},
        "ceiling": {"http_healthz": http},
        "baseline": one,
        "tenanted": five,
        "ratio": five["throughput"] / one["throughput"] if one["throughput"] else float("nan"),
        "share_of_http_ceiling": five["throughput"] / http if http else float("nan"),
    }


# -- part 2: one tenant's latency beside 49 others ----------------------------------------------


async def ingest_tenants(uri: str, collection: str, folder: Path, tenants: list[str], rows: int) -> dict[str, Any]:
    """Each tenant ingests its own documents through the library, one AsyncRAG each: the first
    alone (it makes the collection), then INGEST_AT_ONCE tenants at a time."""
    from asyncrag.rag import AsyncRAG

    started, chunks, at_once = time.perf_counter(), 0, asyncio.Semaphore(INGEST_AT_ONCE)

    async def ingest(tenant: str) -> int:
        files = write_tenant_docs(folder / tenant, tenant, rows)
        async with (
            at_once,
            AsyncRAG(
                uri=uri, collection=collection, tenant=tenant, embedder=FastEmbedder(), llm="none", parse_workers=0
            ) as rag,
        ):
            report = await rag.ingest(files)
        if not report.ok:
            raise RuntimeError(f"{tenant}'s ingest into {collection} failed: {report.failures}")
        return report.chunks

    chunks = await ingest(tenants[0])
    chunks += sum(await asyncio.gather(*(ingest(t) for t in tenants[1:])))
    return {"tenants": len(tenants), "chunks": chunks, "seconds": time.perf_counter() - started}


async def library_searches(rag: Any, questions: list[str], concurrent: list[list[str]]) -> dict[str, Any]:
    """t0's searches: one at a time, then `concurrent` batches of CONCURRENT at once (wall time each).
    Returns the latencies and the foreign sources (any not of t0's documents)."""
    sequential, batches, foreign, short = [], [], 0, 0
    own = f"{LATENCY_TENANT}-doc-"

    def check(found: list[Any]) -> None:
        nonlocal foreign, short
        foreign += sum(not Path(s.source).name.startswith(own) for s in found)
        short += len(found) < LATENCY_K

    for q in questions:
        t = time.perf_counter()
        found = await rag.search(q, k=LATENCY_K, mode="dense")
        sequential.append(time.perf_counter() - t)
        check(found)
    for batch in concurrent:
        t = time.perf_counter()
        answers = await asyncio.gather(*(rag.search(q, k=LATENCY_K, mode="dense") for q in batch))
        batches.append(time.perf_counter() - t)
        for found in answers:
            check(found)
    return {"sequential": sequential, "batches": batches, "foreign": foreign, "short": short}


def bare_searches(client: Any, collection: str, vectors: list[list[float]], params: dict[str, Any], level: str) -> dict:
    """The same searches as raw pymilvus calls: one vector per request, then CONCURRENT per request."""
    from asyncrag.store import tenants
    from asyncrag.store.milvus import EMBEDDING_FIELD

    def search(data: list[list[float]]) -> None:
        hits = client.search(
            collection,
            data=data,
            filter=tenants.clause(LATENCY_TENANT),
            limit=LATENCY_K,
            output_fields=SEARCH_FIELDS,
            search_params=params,
            anns_field=EMBEDDING_FIELD,
            consistency_level=level,
        )
        assert len(hits) == len(data) and all(len(h) == LATENCY_K for h in hits), "a short bare search"

    single, batched = [], []
    for v in vectors:
        t = time.perf_counter()
        search([v])
        single.append(time.perf_counter() - t)
    for i in range(0, len(vectors) - CONCURRENT + 1, CONCURRENT):
        t = time.perf_counter()
        search(vectors[i : i + CONCURRENT])
        batched.append(time.perf_counter() - t)
    return {"sequential": single, "batches": batched}


def summary(times: dict[str, list[float]]) -> dict[str, float]:
    seq, batches = times["sequential"], times["batches"]
    return {
        "searches": len(seq),
        "p50_ms": percentile(seq, 50) * 1000,
        "p95_ms": percentile(seq, 95) * 1000,
        "batches": len(batches),
        "batch_p50_ms": percentile(batches, 50) * 1000,
        "batch_p95_ms": percentile(batches, 95) * 1000,
    }


async def measure_latency(uri: str, args: argparse.Namespace) -> dict[str, Any]:
    """Library and bare searches of t0 in both collections, in rounds whose order alternates."""
    from pymilvus import MilvusClient

    from asyncrag.rag import AsyncRAG
    from asyncrag.store.milvus import client_options

    per_round = max(1, args.searches // args.rounds)
    batches_per_round = max(1, args.batches // args.rounds)
    times = {where: {c: {"sequential": [], "batches": []} for c in (ONE, FIFTY)} for where in ("library", "bare")}
    foreign = short = 0
    rags = {
        c: AsyncRAG(
            uri=uri,
            collection=c,
            tenant=LATENCY_TENANT,
            embedder=FastEmbedder(),
            llm="none",
            consistency_level=args.consistency,
        )
        for c in (ONE, FIFTY)
    }
    client = MilvusClient(uri=uri, **client_options(uri))
    try:
        params = (await rags[FIFTY].store()).search_config  # the library's own search parameters
        for c, rag in rags.items():  # warm-up: clients, the coalescers, the loaded segments
            client.load_collection(c)
            warm_up = [f"warm-up {i}" for i in range(CONCURRENT)]
            await library_searches(rag, warm_up[:10], [warm_up])
        each = per_round + batches_per_round * CONCURRENT
        every = latency_questions(args.rounds * each)
        for r in range(args.rounds):
            questions = every[r * each : (r + 1) * each]
            single, rest = questions[:per_round], questions[per_round:]
            concurrent = [rest[i : i + CONCURRENT] for i in range(0, len(rest), CONCURRENT)]
            vectors = FastEmbedder().embed(questions)
            for c in (ONE, FIFTY) if r % 2 == 0 else (FIFTY, ONE):
                found = await library_searches(rags[c], single, concurrent)
                foreign, short = foreign + found["foreign"], short + found["short"]
                bare = bare_searches(client, c, vectors, params, args.consistency)
                for where, got in (("library", found), ("bare", bare)):
                    for kind in ("sequential", "batches"):
                        times[where][c][kind] += got[kind]
        fields = client.describe_collection(FIFTY)["fields"]
        partition_key = any(f["name"] == "tenant" and f.get("is_partition_key") for f in fields)
        rows = {c: client.query(c, filter="", output_fields=["count(*)"])[0]["count(*)"] for c in (ONE, FIFTY)}
    finally:
        client.close()
        for rag in rags.values():
            await rag.aclose()
    result = {where: {c: summary(t) for c, t in by.items()} for where, by in times.items()}
    ratio = {
        f"{where}_{m}": result[where][FIFTY][m] / result[where][ONE][m]
        for where in ("library", "bare")
        for m in ("p50_ms", "p95_ms", "batch_p50_ms")
    }
    return {
        **result,
        "ratio": ratio,
        "rows": rows,
        "tenant_is_partition_key": partition_key,
        "foreign": foreign,
        "short": short,
    }


def run_latency(args: argparse.Namespace, backend_name: str, console: Console) -> dict[str, Any]:
    from asyncrag.store.milvus import release_lite

    tenants = [f"t{i}" for i in range(args.tenants)]
    with tempfile.TemporaryDirectory(prefix="tenants-bench-") as workdir, backend(backend_name, Path(workdir)) as uri:
        docs = Path(workdir) / "docs"
        console.print(
            f"[bold]latency[/bold] on {backend_name}: ingesting {args.rows} rows for 1 and {len(tenants)} tenants"
        )
        ingest = {
            ONE: asyncio.run(ingest_tenants(uri, ONE, docs, tenants[:1], args.rows)),
            FIFTY: asyncio.run(ingest_tenants(uri, FIFTY, docs, tenants, args.rows)),
        }
        for c, i in ingest.items():
            console.print(f"  {c}: {i['chunks']} chunks of {i['tenants']} tenant(s) in {i['seconds']:.1f} s")
        result = asyncio.run(measure_latency(uri, args))
        release_lite(uri)
    lib = result["library"]
    console.print(
        f"  t0 dense search p50 {lib[ONE]['p50_ms']:.1f} ms (one) vs {lib[FIFTY]['p50_ms']:.1f} ms (fifty), "
        f"{CONCURRENT} at once {lib[ONE]['batch_p50_ms']:.0f} vs {lib[FIFTY]['batch_p50_ms']:.0f} ms; "
        f"partition key: {result['tenant_is_partition_key']}; foreign {result['foreign']}"
    )
    return {
        "backend": backend_name,
        "tenants": len(tenants),
        "rows_per_tenant": args.rows,
        "consistency": args.consistency,
        "ingest": ingest,
        **result,
    }


# -- the report --------------------------------------------------------------------------------


def print_tables(result: dict[str, Any], console: Console) -> None:
    """Markdown-boxed tables (ready for the README), each row against its baseline and ceiling."""
    for load in result["load"]:
        console.print(
            f"\n[bold]load[/bold], {load['backend']}: /v1/search, {load['baseline']['clients']} clients, "
            f"{len(load['tenants'])} tenants' keys vs one tenant's; ceiling GET /healthz"
        )
        table = Table(box=box.MARKDOWN)
        for column in ("run", "req/s", "× 1 tenant", "p50 / p95 / p99 ms", "errors", "sources", "foreign", "own word"):
            table.add_column(column, justify="left" if column == "run" else "right")
        tenanted = f"{len(load['tenants'])} tenants"
        for label, row in ((f"1 tenant ({LOAD_TENANTS[0]})", load["baseline"]), (tenanted, load["tenanted"])):
            table.add_row(
                label,
                f"{row['throughput']:.1f}",
                f"{row['throughput'] / load['baseline']['throughput']:.2f}",
                " / ".join(f"{row[f'p{q}_ms']:.0f}" for q in (50, 95, 99)),
                str(sum(row["errors"].values())),
                str(row["sources"]),
                f"{row['foreign']} ({row['foreign_sources']} sources, {row['foreign_words']} words)",
                f"{row['own_word_share']:.0%}",
            )
        http = load["ceiling"]["http_healthz"]
        table.add_row("GET /healthz (ceiling)", f"{http:.0f}", f"{http / load['baseline']['throughput']:.1f}", *"-" * 5)
        console.print(table)
    for lat in result["latency"]:
        console.print(
            f"\n[bold]latency[/bold], {lat['backend']}: {LATENCY_TENANT}'s dense search (k={LATENCY_K}), "
            f"{lat['tenants']} tenants × {lat['rows_per_tenant']} rows vs 1 tenant, {lat['consistency']}; "
            f"tenant is the partition key: {lat['tenant_is_partition_key']}"
        )
        table = Table(box=box.MARKDOWN)
        for column in ("search", "collection", "rows", "p50 ms", "p95 ms", f"{CONCURRENT} at once p50 ms", "p95 ms"):
            table.add_column(column, justify="left" if column in ("search", "collection") else "right")
        for where in ("library", "bare"):
            for c in (ONE, FIFTY):
                s = lat[where][c]
                table.add_row(
                    where if c == ONE else "",
                    c.removeprefix("tenants_"),
                    str(lat["rows"][c]),
                    *(f"{s[m]:.2f}" for m in ("p50_ms", "p95_ms", "batch_p50_ms", "batch_p95_ms")),
                )
            r = lat["ratio"]
            table.add_row(
                "",
                "× fifty/one",
                "",
                f"{r[f'{where}_p50_ms']:.2f}",
                f"{r[f'{where}_p95_ms']:.2f}",
                f"{r[f'{where}_batch_p50_ms']:.2f}",
                "",
                end_section=True,
            )
        console.print(table)
        verdict = "within" if lat["ratio"]["library_p50_ms"] <= LATENCY_TARGET else "OVER"
        console.print(
            f"  target fifty/one ≤ {LATENCY_TARGET}: {verdict}; foreign sources {lat['foreign']}, "
            f"short answers {lat['short']}"
        )


def _csv(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", type=_csv, default=["load", "latency"], help="load, latency or both")
    parser.add_argument("--backend", type=_csv, help="lite and/or server [default: load lite, latency server]")
    parser.add_argument("--clients", type=int, help="load: concurrent clients [default: 500; --quick 100]")
    parser.add_argument("--seconds", type=float, help="load: per run [default: 10; --quick 3]")
    parser.add_argument("--ceiling-seconds", type=float, default=3.0, help="load: GET /healthz")
    parser.add_argument("--tenants", type=int, help="latency: tenants of the big collection [default: 50; --quick 10]")
    parser.add_argument("--rows", type=int, help="latency: chunks per tenant [default: 400; --quick 100]")
    parser.add_argument("--searches", type=int, help="latency: sequential searches [default: 200; --quick 40]")
    parser.add_argument("--batches", type=int, help=f"latency: batches of {CONCURRENT} [default: 10; --quick 4]")
    parser.add_argument("--rounds", type=int, default=2, help="rounds, the order of what is compared alternating")
    parser.add_argument("--consistency", default="Session", choices=["Strong", "Session", "Bounded", "Eventually"])
    parser.add_argument("--quick", action="store_true", help="small: 100 clients, 3 s, 10 tenants, 100 rows")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()

    small = {"clients": 100, "seconds": 3.0, "tenants": 10, "rows": 100, "searches": 40, "batches": 4}
    full = {"clients": 500, "seconds": 10.0, "tenants": 50, "rows": 400, "searches": 200, "batches": 10}
    for name, value in (small if args.quick else full).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    bad = set(args.part) - {"load", "latency"} or set(args.backend or []) - {"lite", "server"}
    if bad or args.clients < 1 or args.tenants < 1 or args.rows < SENTENCES_PER_DOC or args.rounds < 1:
        parser.error("--part: load and/or latency; --backend: lite and/or server; positive counts, --rows >= 10")
    if "load" in args.part and not ESSAY.is_file():
        parser.error(f"the tutorial's essay is missing: {ESSAY}")
    for name in [n for n in os.environ if n.startswith("ASYNCRAG_")]:  # this process's own AsyncRAGs too
        del os.environ[name]
    os.environ["ASYNCRAG_CONFIG"] = ""

    console = Console(width=160)
    started = time.perf_counter()
    result: dict[str, Any] = {
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "processor": platform.machine(),
        },
        "settings": {**vars(args), "out": str(args.out)},
        "load": [],
        "latency": [],
    }
    for backend_name in args.backend or ["lite"]:
        if "load" in args.part:
            result["load"].append(run_load(args, backend_name, console))
    for backend_name in args.backend or ["server"]:
        if "latency" in args.part:
            result["latency"].append(run_latency(args, backend_name, console))
    result["seconds"] = time.perf_counter() - started
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print_tables(result, console)
    console.print(f"wrote {args.out} in {result['seconds']:.0f} s")


if __name__ == "__main__":
    main()
