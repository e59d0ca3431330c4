"""Ingest on Ray vs in this process (issue 22), on one machine, same run, same Milvus 2.3.5 server.

Both ingest the same files of Debian's Python docs (python3.11-doc, read where Debian puts
them) into fresh collections with the bundled MiniLM: in-process (the default pipeline), then
`--ray` on a one-node Ray cluster started before the clock (as `ray start --head` would be), in
alternating repeats. Reported: chunks/s of each and their ratio (the target: Ray ≥ 0.85 of
in-process), and, for docs/scale.md's model, the two rates a cluster's throughput is made of,
measured here alone: one embedding actor's (the bare model on this machine's cores, chunks/s) and
the server's insert rate (pre-embedded 384-d rows written through `Collection.write`, rows/s).

    python benchmarks/ray_ingest.py [--files 40] [--repeats 2] [--out benchmarks/results/ray_ingest.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import ray
from rich.console import Console
from rich.table import Table

from asyncrag.config import Settings
from asyncrag.embed.local import load_minilm
from asyncrag.ingest.chunk import embed_text
from asyncrag.rag import AsyncRAG
from asyncrag.store.collection import Collection
from asyncrag.testing import MilvusServer

PYDOC = Path("/usr/share/doc/python3.11/html/library")
ROOT = Path(__file__).resolve().parents[1]


def corpus(files: int) -> list[Path]:
    """`files` pages spread evenly over the library reference (small and large ones alike)."""
    pages = sorted(PYDOC.glob("*.html"))
    if not pages:
        raise SystemExit(f"{PYDOC} is missing: apt-get install python3.11-doc")
    step = max(1, len(pages) // files)
    return pages[::step][:files]


async def ingest(uri: str, collection: str, paths: list[Path], ray_address: str | None) -> dict[str, Any]:
    async with AsyncRAG(uri=uri, collection=collection, llm="none", ray=ray_address) as rag:
        start = time.perf_counter()
        report = await rag.ingest(list(paths))
        seconds = time.perf_counter() - start
    chunks = sum(d.chunks for d in report.documents)
    assert report.ok, [d.error for d in report.documents if d.error]
    return {"seconds": round(seconds, 2), "chunks": chunks, "chunks_per_s": round(chunks / seconds, 2)}


async def embedding_rate(uri: str, collection: str) -> dict[str, Any]:
    """One embedding actor's rate on this machine: the bare model over the run's stored chunks."""
    embedder = load_minilm()
    async with AsyncRAG(uri=uri, collection=collection, llm="none") as rag:
        c = await rag.collection()
        texts = []
        for record in await c.records():
            async for page in c.chunks(record.doc_id, record.version, vectors=True):
                texts += [embed_text(n) for n in page]
    embedder.embed(texts[:64])  # weights loaded, threads started
    start = time.perf_counter()
    for i in range(0, len(texts), 64):
        embedder.embed(texts[i : i + 64])
    seconds = time.perf_counter() - start
    return {"chunks": len(texts), "seconds": round(seconds, 2), "chunks_per_s": round(len(texts) / seconds, 1)}


async def insert_rate(uri: str, source: str, rows: int = 20_000) -> dict[str, Any]:
    """The server's insert rate: stored chunks (vectors included) written again, under new ids, by 4 writers."""
    embedder = load_minilm()

    async def model() -> Any:
        return embedder

    settings = Settings(uri=uri, collection=source)
    c = await Collection.open(settings, model)
    nodes = []
    for record in await c.records():
        async for page in c.chunks(record.doc_id, record.version, vectors=True):
            nodes += page
    await c.close()
    target = await Collection.open(settings.model_copy(update={"collection": "insert_rate"}), model, create=True)
    await target.open_store()
    batches = []
    for i in range(rows // 64):
        batch = [n.model_copy() for n in nodes[(i * 64) % len(nodes) :][:64]]
        for j, n in enumerate(batch):
            n.id_ = f"r{i}-{j}"
        batches.append(batch)
    gate = asyncio.Semaphore(4)

    async def write(batch: list[Any]) -> None:
        async with gate:
            await target.write(batch)

    start = time.perf_counter()
    await asyncio.gather(*(write(b) for b in batches))
    seconds = time.perf_counter() - start
    await target.close()
    written = sum(len(b) for b in batches)
    return {"rows": written, "seconds": round(seconds, 2), "rows_per_s": round(written / seconds)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "ray_ingest.json")
    args = parser.parse_args()
    paths = corpus(args.files)
    runs: dict[str, list[dict[str, Any]]] = {"in-process": [], "ray, one node": []}
    with MilvusServer() as server:
        started = time.perf_counter()
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
        ray_start = time.perf_counter() - started
        for r in range(args.repeats):
            for name, address in (("in-process", None), ("ray, one node", "auto")):
                collection = f"{'ray' if address else 'local'}_{r}"
                runs[name].append(asyncio.run(ingest(server.uri, collection, paths, address)))
                print(name, runs[name][-1], flush=True)
        ray.shutdown()
        embed = asyncio.run(embedding_rate(server.uri, "local_0"))
        insert = asyncio.run(insert_rate(server.uri, "local_0"))

    best = {name: max(r["chunks_per_s"] for r in rs) for name, rs in runs.items()}
    median = {name: statistics.median(r["chunks_per_s"] for r in rs) for name, rs in runs.items()}
    table = Table(title=f"Ingest of {len(paths)} python3.11-doc pages, MiniLM, Milvus 2.3.5, {os.cpu_count()} cores")
    for column in ("pipeline", "runs (s)", "chunks", "chunks/s (median)", "vs in-process"):
        table.add_column(column)
    for name, rs in runs.items():
        ratio = median[name] / median["in-process"]
        table.add_row(
            name, ", ".join(str(r["seconds"]) for r in rs), str(rs[0]["chunks"]), f"{median[name]:.2f}", f"{ratio:.2f}"
        )
    Console().print(table)
    print(f"one embedding actor (the bare model, {os.cpu_count()} cores): {embed['chunks_per_s']} chunks/s")
    print(f"Milvus 2.3.5 standalone insert, 4 writers of 64 rows: {insert['rows_per_s']} rows/s")
    print(f"Ray's own start (one node, not in the runs): {ray_start:.1f} s")
    result = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "ray": ray.__version__},
        "files": len(paths),
        "runs": runs,
        "median_chunks_per_s": median,
        "best_chunks_per_s": best,
        "ray_vs_in_process": round(median["ray, one node"] / median["in-process"], 3),
        "embedding_actor_chunks_per_s": embed,
        "milvus_insert": insert,
        "ray_start_s": round(ray_start, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
