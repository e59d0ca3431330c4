"""Retrieval quality and its cost (issue 11): dense vs BM25 vs hybrid on the tutorial's data, one run.

1. `cost`: the tutorial's data (../shared/data) ingested with and without the BM25 field, with
   the hashing embedder so that only the store's side differs (Milvus Lite computes BM25 in this
   process), in alternating rounds; chunks/s of each and the ratio. What this adds to a real
   ingest is the extra seconds over the real ingest's seconds (printed beside it).
2. `quality`: the question set (examples/eval/tutorial.jsonl, 40+ questions) against the data
   ingested with the default model (MiniLM) and a BM25 field, in every mode: hit@k, MRR,
   nDCG@k, p50/p95 retrieval latency. The table, JSON and a PNG chart.

    python benchmarks/retrieval.py [--only cost|quality] [--rounds 2] [-k 5] [--db DIR] [--chunk-sizes 248]
        [--qa examples/eval/tutorial.jsonl] [--out benchmarks/results/retrieval.json]

`--db` keeps the quality collection between runs (an unchanged corpus re-ingests in ~1 s).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from asyncrag.embed.local import load_minilm
from asyncrag.rag import AsyncRAG
from asyncrag.store.milvus import release_lite

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
FILES = [DATA / "paul_graham_essay.txt", DATA / "uber_2021.pdf"]
sys.path.insert(0, str(ROOT / "tests"))


def ingest_once(bm25: bool, db: str) -> dict[str, float]:
    from conftest import HashEmbedder  # the tests' deterministic embedder: embedding costs nothing

    async def run() -> dict[str, float]:
        async with AsyncRAG(embedder=HashEmbedder(), uri=db, collection="cost", llm="none", bm25=bm25) as rag:
            report = await rag.ingest(FILES)
            assert report.ok, report.failures
            assert (await rag.store()).builtin_sparse == bm25
            return {"seconds": report.seconds, "chunks": report.chunks}

    try:
        return asyncio.run(run())
    finally:
        release_lite(db)


def run_cost(rounds: int, console: Console) -> dict:
    results: dict[str, list[dict[str, float]]] = {"with_bm25": [], "without_bm25": []}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(rounds):
            order = [True, False] if i % 2 == 0 else [False, True]
            for bm25 in order:
                name = "with_bm25" if bm25 else "without_bm25"
                console.print(f"cost round {i + 1}/{rounds}: {name} ...")
                gc.collect()
                results[name].append(ingest_once(bm25, f"{tmp}/{name}{i}.db"))
    best = {name: min(runs, key=lambda r: r["seconds"]) for name, runs in results.items()}
    table = Table("ingest (hashing embedder)", "seconds", "chunks", "chunks/s")
    for name, r in best.items():
        table.add_row(name, f"{r['seconds']:.1f}", str(int(r["chunks"])), f"{r['chunks'] / r['seconds']:.1f}")
    console.print(table)
    extra = best["with_bm25"]["seconds"] - best["without_bm25"]["seconds"]
    console.print(f"the BM25 field costs {extra:+.1f} s for {int(best['with_bm25']['chunks'])} chunks")
    return {"rounds": results, "best": best, "extra_seconds": extra}


FUSIONS = {  # hybrid variants measured beside the default (weighted 0.7/0.3, 10 candidates a side)
    "hybrid, RRF k=60, 10 candidates": ("RRFRanker", {"k": 60}, 10),
    "hybrid, RRF k=60, 20 candidates": ("RRFRanker", {"k": 60}, 20),
    "hybrid, weighted 0.5/0.5, 10 candidates": ("WeightedRanker", {"weights": [0.5, 0.5]}, 10),
    "hybrid, weighted 0.7/0.3, 20 candidates": ("WeightedRanker", {"weights": [0.7, 0.3]}, 20),
}


def run_quality(qa: Path, k: int, db_dir: str, chunk_sizes: list[int | None], console: Console) -> dict:
    from asyncrag.evaluate import evaluate, load_questions, write_chart

    questions = load_questions(qa)
    embedder = load_minilm()
    results: dict[str, dict] = {}

    async def run(chunk_size: int | None) -> dict:
        db = f"{db_dir}/quality-{chunk_size or 'default'}.db"
        async with AsyncRAG(embedder=embedder, uri=db, collection="tutorial", llm="none", chunk_size=chunk_size) as rag:
            report = await rag.ingest(FILES)
            assert report.ok, report.failures
            ingest = {"seconds": report.seconds, "chunks": report.chunks, "counts": report.counts()}

            async def search(q: str, n: int, mode: str) -> list:
                return await rag.search(q, n, mode=mode)  # type: ignore[arg-type]

            result = await evaluate(search, questions, MODES, k)
            store = await rag.store()
            default = (store.hybrid_ranker, store.hybrid_ranker_params, store.hybrid_candidates)
            variants = {}
            for name, (ranker, params, depth) in FUSIONS.items():
                store.hybrid_ranker, store.hybrid_ranker_params, store.hybrid_candidates = ranker, params, depth
                variants[name] = (await evaluate(search, questions, ["hybrid"], k)).modes[0]
            store.hybrid_ranker, store.hybrid_ranker_params, store.hybrid_candidates = default
            # The ceiling of any fusion: a question can be ranked first only if one side's candidates hold it.
            depth = store.hybrid_candidates
            sides = await evaluate(search, questions, ["dense", "sparse"], depth)
            dense, sparse = (m.outcomes for m in sides.modes)
            either = [any(d.relevant) or any(s.relevant) for d, s in zip(dense, sparse, strict=True)]
            ceiling = sum(either) / len(either)
            return {"ingest": ingest, "report": result, "variants": variants, "ceiling": ceiling, "depth": depth}

    for chunk_size in chunk_sizes:
        console.print(f"quality: chunk size {chunk_size or 'default'} ...")
        got = asyncio.run(run(chunk_size))
        name = f"chunk {chunk_size or 'default'}"
        table = Table(name, f"hit@{k}", "MRR", f"nDCG@{k}", "p50 ms", "p95 ms")
        rows = [(m.mode, m) for m in got["report"].modes] + list(got["variants"].items())
        for label, m in rows:
            sc = m.scores
            table.add_row(
                label,
                f"{sc.hit:.3f}",
                f"{sc.mrr:.3f}",
                f"{sc.ndcg:.3f}",
                f"{m.latency_ms(50):.1f}",
                f"{m.latency_ms(95):.1f}",
            )
        console.print(table)
        modes = {m.mode: m for m in got["report"].modes}
        ratio = modes["hybrid"].latency_ms(50) / modes["dense"].latency_ms(50)
        console.print(
            f"{got['ingest']['chunks']} chunks; any fusion of {got['depth']} candidates a side can rank first at most "
            f"{got['ceiling']:.3f} of the questions; hybrid p50 = {ratio:.2f}x dense p50"
        )
        if chunk_size is None:
            chart = ROOT / "benchmarks" / "results" / "retrieval.png"
            chart.parent.mkdir(parents=True, exist_ok=True)
            write_chart(got["report"], chart)
            console.print(f"chart: {chart.relative_to(ROOT)}")
        results[name] = {
            "ingest_minilm": got["ingest"],
            "eval": got["report"].to_dict(),
            "variants": {n: m.to_dict() for n, m in got["variants"].items()},
            "fusion_ceiling": got["ceiling"],
            "hybrid_over_dense_p50": ratio,
        }
    return {"questions": len(questions), "k": k, "by_chunk_size": results}


MODES = ("dense", "sparse", "hybrid")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=["cost", "quality"])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("-k", type=int, default=5)
    parser.add_argument("--qa", type=Path, default=ROOT / "examples" / "eval" / "tutorial.jsonl")
    parser.add_argument("--db", help="folder for the quality collections (kept between runs)")
    parser.add_argument(
        "--chunk-sizes", type=int, nargs="*", default=[], help="also measure these chunk sizes beside the default"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "retrieval.json")
    args = parser.parse_args()
    missing = [f for f in FILES if not f.is_file()]
    if missing:
        raise SystemExit(f"missing input files: {missing} (the tutorial's data lives in ../shared/data)")
    console = Console()
    out: dict = {"machine": {"python": platform.python_version(), "cpus": os.cpu_count()}}
    started = time.time()
    if args.only in (None, "cost"):
        out["cost"] = run_cost(args.rounds, console)
    if args.only in (None, "quality"):
        with tempfile.TemporaryDirectory() as tmp:
            sizes: list[int | None] = [None, *args.chunk_sizes]
            out["quality"] = run_quality(args.qa, args.k, args.db or tmp, sizes, console)
    out["seconds"] = time.time() - started
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2, default=str))
    console.print(f"wrote {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")


if __name__ == "__main__":
    main()
