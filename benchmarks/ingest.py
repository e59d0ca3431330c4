"""Ingest benchmark: asyncrag end to end vs the bare embedding model vs the tutorial's way (`compare`),
and incremental ingest with peak RSS (`incremental`, issue 10: see incremental_bench.py).

`compare`, on the tutorial's data (../shared/data: the essay and the 307-page Uber PDF), in one run:

1. asyncrag: read, parse, chunk, embed, write (Milvus Lite), overlapping;
2. the bare embedding model on the very same chunk texts: the CPU ceiling for any pipeline;
3. the tutorial's way with the same model and chunk size: SimpleDirectoryReader (with
   llama-index-readers-file) + VectorStoreIndex.from_documents(use_async=True) into
   LlamaIndex's MilvusVectorStore.

Then the time to answer the sample question (retrieval + local LLM) on the sample corpus.

The machine's speed drifts by ±15 % over minutes, so the three run in rounds (`--rounds`, in
alternating order, so that drift favours none) and the table shows each one's best round;
the JSON keeps every round. The model is warmed up first, so that no pipeline pays for it.

    python benchmarks/ingest.py [--only compare|incremental] [--files A B ...] [--rounds 2] [--skip-tutorial]
        [--sections tutorial rss pydocs] [--corpus-limit N] [--big-mb 200] [--skip-llamaindex]
        [--out benchmarks/results/ingest.json]

The JSON file keeps the other part's results when only one part runs.
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
from collections.abc import Callable
from pathlib import Path

import incremental_bench
from rich.console import Console
from rich.table import Table

from asyncrag.embed.local import LocalEmbedder, load_minilm
from asyncrag.ingest.chunk import ChunkSpec, chunk_spec_for, make_splitter
from asyncrag.ingest.parse import Unit, parse, plan
from asyncrag.ingest.pipeline import Limits
from asyncrag.rag import AsyncRAG
from asyncrag.store.milvus import release_lite

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
SAMPLE_QUESTION = "When was the Kestrel Valley Tea Cooperative founded, and by whom?"


def chunk_texts(files: list[Path], spec: ChunkSpec) -> list[str]:
    """The exact texts asyncrag embeds, made the way its pipeline makes them (not timed)."""
    from llama_index.core.schema import MetadataMode

    limits = Limits()  # cut into units as the pipeline cuts them: a big text file's chunks end at its stretches
    cut = (limits.pdf_pages_per_task, limits.text_bytes_per_unit)
    units = [u for f in files for u in plan(Unit(f, str(f), str(f), ""), *cut)]
    return [n.get_content(metadata_mode=MetadataMode.EMBED) for u in units for n in parse(u, spec)]


def bench_asyncrag(files: list[Path], embedder: LocalEmbedder, db: str) -> dict:
    async def run():
        async with AsyncRAG(embedder=embedder, uri=db, collection="asyncrag_bench", llm="none") as rag:
            return await rag.ingest(files)

    report = asyncio.run(run())
    assert report.ok, report.failures
    return {"seconds": report.seconds, "chunks": report.chunks}


def bench_bare_model(texts: list[str], embedder: LocalEmbedder, vectors: dict[str, list[float]]) -> dict:
    started = time.perf_counter()
    vectors.update(zip(texts, embedder.embed(texts), strict=True))
    return {"seconds": time.perf_counter() - started, "chunks": len(texts)}


class KnownVectors:
    """The model's identity and window, with every vector already computed (by the bare model's
    run): asyncrag's pipeline then costs what reading, chunking and storing cost, without the model."""

    def __init__(self, model: LocalEmbedder, vectors: dict[str, list[float]]) -> None:
        self.name, self.identity, self.dim = model.name, model.identity, model.dim
        self.max_tokens, self.tokenizer_file = model.max_tokens, model.tokenizer_file
        self.vectors = vectors

    def embed(self, texts: list[str]) -> list[list[float]]:
        return [self.vectors[t] for t in texts]


def bench_tutorial(files: list[Path], embedder: LocalEmbedder, spec: ChunkSpec, db: str) -> dict:
    from llama_index.core import Settings, SimpleDirectoryReader, StorageContext, VectorStoreIndex
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding
    from llama_index.vector_stores.milvus import MilvusVectorStore

    Settings.embed_model = HuggingFaceEmbedding(model_name=str(embedder.path), device="cpu")
    Settings.text_splitter = make_splitter(spec)  # same chunk size, counted in the same tokens
    started = time.perf_counter()
    documents = SimpleDirectoryReader(input_files=[str(f) for f in files]).load_data()
    store = MilvusVectorStore(uri=db, collection_name="tutorial_bench", dim=embedder.dim, overwrite=True)
    VectorStoreIndex.from_documents(
        documents, storage_context=StorageContext.from_defaults(vector_store=store), use_async=True
    )
    seconds = time.perf_counter() - started
    store.client.flush("tutorial_bench")
    rows = store.client.query("tutorial_bench", filter="", output_fields=["count(*)"])
    store.client.close()
    return {"seconds": seconds, "chunks": int(rows[0]["count(*)"])}


def bench_answer(embedder: LocalEmbedder, db: str) -> dict:
    async def run():
        async with AsyncRAG(embedder=embedder, uri=db, collection="sample", parse_workers=0) as rag:
            await rag.ingest([ROOT / "examples" / "corpus"])
            started = time.perf_counter()
            llm = await rag.llm()
            loaded = time.perf_counter()
            first: list[float] = []
            answer = await rag.ask(SAMPLE_QUESTION, on_token=lambda _: first or first.append(time.perf_counter()))
            done = time.perf_counter()
            return {
                "llm": getattr(llm, "name", "none"),
                "load_seconds": loaded - started,
                "first_token_seconds": (first[0] if first else done) - loaded,
                "answer_seconds": done - loaded,
                "answer": answer.answer,
            }

    return asyncio.run(run())


def run_compare(args: argparse.Namespace, console: Console) -> dict:
    missing = [f for f in args.files if not f.is_file()]
    if missing:
        raise SystemExit(f"missing input files: {missing} (the tutorial's data lives in ../shared/data)")
    embedder = load_minilm()
    spec = chunk_spec_for(embedder.max_tokens, embedder.tokenizer_file, None, 32)  # asyncrag's default chunks
    texts = chunk_texts(args.files, spec)
    started = time.perf_counter()
    chunk_texts(args.files, spec)  # again, warm: reading and chunking alone, on one core
    parse_seconds = time.perf_counter() - started
    embedder.embed(texts[:16])  # warm-up: first-call costs belong to no pipeline
    vectors: dict[str, list[float]] = {}
    runs: dict[str, Callable[[str], dict]] = {
        "asyncrag": lambda db: bench_asyncrag(args.files, embedder, db),
        "bare_model": lambda _: bench_bare_model(texts, embedder, vectors),
    }
    if not args.skip_tutorial:
        runs["tutorial"] = lambda db: bench_tutorial(args.files, embedder, spec, db)
    rounds: dict[str, list[dict]] = {name: [] for name in runs}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.rounds):
            order = list(runs) if i % 2 == 0 else list(reversed(runs))
            for name in order:
                console.print(f"round {i + 1}/{args.rounds}: {name} ...")
                gc.collect()
                db = f"{tmp}/{name}{i}.db"
                rounds[name].append(runs[name](db))
                release_lite(db)  # its background threads would slow the next runs down
                console.print(f"  {rounds[name][-1]['seconds']:.1f} s")
        answer = None if args.skip_answer else bench_answer(embedder, f"{tmp}/s.db")
    results = {
        name: dict(min(rs, key=lambda r: r["seconds"]), rounds=[r["seconds"] for r in rs])
        for name, rs in rounds.items()
    }
    # The model keeps every core busy, so what else must be done can only be added to its time: on
    # n cores the best any pipeline can do is the bare model plus the rest spread over them. The rest
    # is asyncrag's own pipeline with the vectors known (reading, chunking, storing in Milvus), or, as
    # a lower bound for any pipeline, reading and chunking alone.
    with tempfile.TemporaryDirectory() as tmp:
        without_model = bench_asyncrag(args.files, KnownVectors(embedder, vectors), f"{tmp}/k.db")["seconds"]
        release_lite(f"{tmp}/k.db")
    cores = os.cpu_count() or 1
    bare = results["bare_model"]["seconds"]
    for name, rest in [("ceiling (+ reading, chunking)", parse_seconds), ("ceiling (+ storing too)", without_model)]:
        results[name] = {"seconds": bare + rest / cores, "chunks": len(texts), "rounds": [bare + rest / cores]}
    results["ceiling (+ storing too)"]["without_model_seconds"] = without_model
    results["ceiling (+ reading, chunking)"]["parse_seconds"] = parse_seconds
    for r in results.values():
        r["chunks_per_second"] = r["chunks"] / r["seconds"]
    meta = {
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "files": [f.name for f in args.files],
        "rounds": args.rounds,
        "shown": "each pipeline's best round",
    }
    return {"meta": meta, "results": results, "answer": answer}


def compare_table(part: dict) -> Table:
    results = part["results"]
    table = Table(
        "pipeline", "chunks", "best s", "rounds s", "chunks/s", "vs bare model", "asyncrag speed-up", title="Ingest",
        caption="ceilings: the bare model plus, spread over the cores, reading and chunking alone, or "
        "asyncrag's pipeline with the vectors known (reading, chunking and storing): the best any pipeline "
        "can do while the model uses every core",
    )
    bare, ours = results["bare_model"], results["asyncrag"]
    for name, r in results.items():
        table.add_row(
            name,
            str(r["chunks"]),
            f"{r['seconds']:.1f}",
            " / ".join(f"{x:.1f}" for x in r["rounds"]),
            f"{r['chunks_per_second']:.1f}",
            f"{r['chunks_per_second'] / bare['chunks_per_second']:.2f}",
            f"{r['seconds'] / ours['seconds']:.2f}×" if name != "asyncrag" and not name.startswith("ceiling") else "",
        )
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=["compare", "incremental"], help="run one part (default: both)")
    parser.add_argument(
        "--files", nargs="*", type=Path, default=[DATA / "paul_graham_essay.txt", DATA / "uber_2021.pdf"]
    )
    parser.add_argument("--rounds", type=int, default=2, help="rounds of all pipelines; each one's best is shown")
    parser.add_argument("--skip-tutorial", action="store_true")
    parser.add_argument("--skip-answer", action="store_true")
    parser.add_argument("--sections", nargs="*", choices=incremental_bench.SECTIONS, default=incremental_bench.SECTIONS)
    parser.add_argument("--corpus-limit", type=int, help="python3.11-doc: the first N HTML files only")
    parser.add_argument("--big-mb", type=float, default=200, help="size of the generated big text file")
    parser.add_argument("--skip-llamaindex", action="store_true", help="incremental: asyncrag only")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "ingest.json")
    args = parser.parse_args()

    console = Console(width=None if sys.stdout.isatty() else 150)  # a log file keeps whole table rows
    saved = json.loads(args.out.read_text()) if args.out.is_file() else {}
    args.out.parent.mkdir(parents=True, exist_ok=True)

    def save(incremental: dict | None = None) -> None:
        if incremental is not None:
            saved.setdefault("incremental", {}).update(incremental)
            saved["incremental_meta"] = {
                "cpus": os.cpu_count(),
                "corpus_limit": args.corpus_limit,
                "big_mb": args.big_mb,
            }
        args.out.write_text(json.dumps(saved, indent=2))

    if args.only != "incremental":
        saved.update(run_compare(args, console))
        save()
    if args.only != "compare":
        with tempfile.TemporaryDirectory() as tmp:
            incremental_bench.run(
                args.sections,
                Path(tmp),
                args.corpus_limit,
                args.big_mb,
                not args.skip_llamaindex,
                console.print,
                save,
                previous=saved.get("incremental"),
            )
    console.print(f"wrote {args.out}")

    if args.only != "incremental":
        console.print(compare_table(saved))
        answer = saved["answer"]
        if answer:
            console.print(
                f"sample question ({answer['llm']}): LLM load {answer['load_seconds']:.1f} s, first token "
                f"{answer['first_token_seconds']:.1f} s, answer {answer['answer_seconds']:.1f} s\n  {answer['answer']}"
            )
    if args.only != "compare":
        for table in incremental_bench.tables(saved.get("incremental", {})):
            console.print(table)


if __name__ == "__main__":
    main()
