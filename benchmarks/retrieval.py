"""Retrieval quality and its cost (issues 11, 17): dense vs BM25 vs hybrid fusions, on two corpora, one run.

1. `cost`: the tutorial's data (../shared/data) ingested with and without the BM25 field, with
   the hashing embedder so that only the store's side differs (Milvus Lite computes BM25 in this
   process), in alternating rounds; chunks/s of each and the ratio. What this adds to a real
   ingest is the extra seconds over the real ingest's seconds (printed beside it).
2. `quality`: each corpus (the tutorial's data with examples/eval/tutorial.jsonl; Debian's
   python3.11-doc with examples/eval/python-doc.jsonl) ingested with the default model (MiniLM)
   and a BM25 field; per question, dense and BM25 candidates fetched once, then every fusion of a
   grid (store/fusion.py: rule x dense weight x candidates a side, and Milvus's weighted ranker as
   it was) applied with the store's own `fuse`. The even-numbered questions tune, the odd ones
   report: the fusion chosen is the best on the tuning halves of every corpus, and its
   report-half scores, per kind, are the ones to quote.

    python benchmarks/retrieval.py [--only cost|quality] [--rounds 2] [-k 5] [--db DIR]
        [--corpus tutorial pydoc] [--out benchmarks/results/retrieval.json]

`--db` keeps the quality collections between runs (an unchanged corpus re-ingests in seconds;
python-doc's first ingest takes ~10 minutes on 2 cores).
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
from asyncrag.store.fusion import DEFAULT_FUSION, Fusion, fuse
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


PYDOC = Path("/usr/share/doc/python3.11/html")  # Debian's python3.11-doc
CORPORA = {  # name: (files, question set); the collection is named after the corpus
    "tutorial": (FILES, ROOT / "examples" / "eval" / "tutorial.jsonl"),
    "pydoc": ([PYDOC / "library", PYDOC / "tutorial"], ROOT / "examples" / "eval" / "python-doc.jsonl"),
}
DEPTH = 40  # candidates fetched a side; every variant fuses a prefix of them


def fusion_grid() -> list[Fusion]:
    grid = [Fusion("milvus", 0.7, 10)]  # what hybrid search was before (Milvus's WeightedRanker, 0.7/0.3)
    for rule in ("relative", "dbsf", "rrf"):
        for weight in (0.3, 0.4, 0.5, 0.6, 0.7):
            for candidates in (10, 20, 40):
                for lead in (False, True):
                    grid.append(Fusion(rule, weight, candidates, lead=lead))  # type: ignore[arg-type]
    return grid


def halves(questions: list) -> dict[str, list[int]]:
    """Tune on the even lines, report on the odd ones: a default chosen on the questions it is scored on is not one."""
    return {"tune": list(range(0, len(questions), 2)), "report": list(range(1, len(questions), 2))}


def _hits(sources: list) -> list[dict]:
    return [{"id": (s.source, s.start, s.page, s.text[:64]), "distance": s.score, "entity": s} for s in sources]


def candidates(name: str, files: list[Path], questions: list, db_dir: str, embedder: object) -> tuple[dict, list, list]:
    """The corpus ingested (kept in `db_dir`), and each question's DEPTH best chunks, dense and BM25."""

    async def run() -> tuple[dict, list, list]:
        async with AsyncRAG(embedder=embedder, uri=f"{db_dir}/{name}.db", collection=name, llm="none") as rag:
            report = await rag.ingest(files)  # type: ignore[arg-type]
            assert report.ok, report.failures
            dense, sparse = [], []
            for q in questions:
                dense.append(await rag.search(q.query, DEPTH, mode="dense"))
                sparse.append(await rag.search(q.query, DEPTH, mode="sparse"))
            stored = (await rag.stats()).chunks
            return {"seconds": report.seconds, "chunks": report.chunks, "stored": stored}, dense, sparse

    return asyncio.run(run())


MARKER = {"id": "marker", "entity": None}


def keeps_exact_matches(fusion: Fusion, dense: list[list], sparse: list[list], k: int) -> float:
    """The share of questions for which a passage only BM25 finds, first there by a wide margin (a
    sentence quoted word for word: issue 17's 14.8 against MiniLM's ~0.5), lands in the fused top 3.
    The question's real dense candidates and its real BM25 ones below the marker."""
    kept = 0
    for d, s in zip(dense, sparse, strict=True):
        bm25 = _hits(s[: fusion.candidates - 1])
        top = max((h["distance"] for h in bm25), default=1.0)
        fused = fuse(_hits(d[: fusion.candidates]), [{**MARKER, "distance": 3 * top}, *bm25], fusion, k)
        kept += any(h["id"] == "marker" for h in fused[:3])
    return kept / max(1, len(dense))


def scores_of(questions: list, ranked: list[list], idx: list[int], k: int) -> dict[str, dict]:
    """hit@k, MRR, nDCG@k of the questions `idx`, overall and per group (kind, follow-up)."""
    from asyncrag.evaluate import Outcome, Scores

    outcomes = []
    for i in idx:
        q = questions[i]
        relevant = tuple(q.expect.matches(s) for s in ranked[i][:k])
        outcomes.append(Outcome(q.question, q.kind, relevant, 0.0, tuple(q.groups)))
    groups = sorted({g for o in outcomes for g in o.groups})
    found = {"all": Scores.of(outcomes, k)} | {g: Scores.of([o for o in outcomes if g in o.groups], k) for g in groups}
    return {g: sc.to_dict() for g, sc in found.items()}


def run_quality(corpora: list[str], k: int, db_dir: str, console: Console) -> dict:
    """Each corpus: dense and BM25 candidates fetched once per question, then every fusion of the grid
    applied to them with the store's own `fuse`, scored on the tuning half and the reporting half."""
    from asyncrag.evaluate import load_questions

    embedder = load_minilm()
    grid = fusion_grid()
    per_corpus: dict[str, dict] = {}
    for name in corpora:
        files, qa = CORPORA[name]
        if not all(f.exists() for f in files):
            console.print(f"[yellow]skipping {name}: {files[0]} is missing (apt-get install python3.11-doc)[/yellow]")
            continue
        questions = load_questions(qa)
        console.print(f"quality: {name} ({len(questions)} questions) ...")
        ingest, dense, sparse = candidates(name, files, questions, db_dir, embedder)
        rankings = {"dense": [d[:k] for d in dense], "sparse": [s[:k] for s in sparse]}
        for fusion in grid:
            rankings[fusion.label()] = [
                [h["entity"] for h in fuse(_hits(d[: fusion.candidates]), _hits(s[: fusion.candidates]), fusion, k)]
                for d, s in zip(dense, sparse, strict=True)
            ]
        split = halves(questions)
        variants = {
            label: {half: scores_of(questions, ranked, idx, k) for half, idx in split.items()}
            for label, ranked in rankings.items()
        }
        # The ceiling of any fusion (or reranking) of these candidates: one side holds a relevant chunk.
        either = [any(q.expect.matches(x) for x in d + s) for q, d, s in zip(questions, dense, sparse, strict=True)]
        ceiling = sum(either) / len(either)
        console.print(f"{name}: {ingest['stored']} chunks; {DEPTH} candidates a side hold one: {ceiling:.3f}")
        keeps = {f.label(): keeps_exact_matches(f, dense, sparse, k) for f in grid}
        per_corpus[name] = {
            "ingest": ingest,
            "questions": len(questions),
            "variants": variants,
            "ceiling": ceiling,
            "keeps_exact": keeps,
        }
    return choose(per_corpus, grid, k, console)


def choose(per_corpus: dict[str, dict], grid: list[Fusion], k: int, console: Console) -> dict:
    """The fusion with the best mean of hit@k and MRR over every corpus's tuning half; then its report half."""

    def tune_score(label: str) -> float:
        halves = [c["variants"][label]["tune"]["all"] for c in per_corpus.values()]
        return sum((h["hit"] + h["mrr"]) / 2 for h in halves) / max(1, len(halves))

    labels = ["dense", "sparse", *(f.label() for f in grid)]
    # Eligible: keeps every exact match in the top 3, on every corpus (the rule); then the best tuned.
    eligible = [f.label() for f in grid if all(c["keeps_exact"][f.label()] == 1.0 for c in per_corpus.values())]
    best = max(eligible, key=tune_score)
    table = Table(
        "ranking",
        "exact match in top 3",
        *(f"{n} {half} hit@{k} / MRR" for n in per_corpus for half in ("tune", "report")),
        title=f"fusions, ranked by their tuning halves (chosen: the best that keeps exact matches, {best})",
    )
    top = sorted(labels, key=tune_score, reverse=True)[:8]
    for label in dict.fromkeys(["dense", "sparse", grid[0].label(), *top, *sorted(eligible, key=tune_score)[-3:]]):
        kept = [c["keeps_exact"].get(label) for c in per_corpus.values()]
        cells = ["-" if None in kept else " / ".join(f"{x:.2f}" for x in kept)]
        for c in per_corpus.values():
            for half in ("tune", "report"):
                s = c["variants"][label][half]["all"]
                cells.append(f"{s['hit']:.3f} / {s['mrr']:.3f}")
        table.add_row(label + (" ← chosen" if label == best else ""), *cells)
    console.print(table)
    kinds = Table("corpus", "kind (report half)", "questions", *(f"{m} hit@{k}" for m in ("dense", "sparse", best)))
    for name, c in per_corpus.items():
        report = {m: c["variants"][m]["report"] for m in ("dense", "sparse", best)}
        for group in report["dense"]:
            hits = (f"{report[m][group]['hit']:.3f}" for m in report)
            kinds.add_row(name, group, str(report["dense"][group]["questions"]), *hits)
    console.print(kinds)
    return {"k": k, "chosen": best, "default": DEFAULT_FUSION.label(), "corpora": per_corpus}



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=["cost", "quality"])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("-k", type=int, default=5)
    parser.add_argument("--corpus", nargs="*", default=list(CORPORA), choices=list(CORPORA))
    parser.add_argument("--db", help="folder for the quality collections (kept between runs)")
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
            out["quality"] = run_quality(args.corpus, args.k, args.db or tmp, console)
    out["seconds"] = time.time() - started
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2, default=str))
    console.print(f"wrote {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")


if __name__ == "__main__":
    main()
