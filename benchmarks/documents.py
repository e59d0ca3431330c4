"""Documents people actually have (issue 21): tables as Markdown vs loose text, and scans by OCR.

1. `tables`: the Uber 10-K ingested twice with the default model, its PDF tables as Markdown
   (`pdf_tables`, the default) and as PDFium's loose lines, in one run; hit@5 and MRR on the
   questions whose answers sit in table cells (examples/eval/tables.jsonl, which the table reader
   was tuned on; tables-heldout.jsonl, written before it was tried on them) and on the tutorial's
   30 10-K questions (examples/eval/tutorial.jsonl), so that prose is seen not to lose.
2. `ocr`: a scanned copy of the 10-K (tests/scans.py: every page drawn at 200 dpi, bound into an
   image-only PDF, named uber_2021.pdf like the original) ingested with each OCR engine asked
   for; the same questions on it vs the text-layer copy, as ratios; OCR pages/s of each engine,
   alone, on a sample of pages, and the whole ingest's pages/s.

    python benchmarks/documents.py [--only tables|ocr] [--engines tesseract rapidocr]
        [--pages N] [--sample 8] [--out benchmarks/results/documents.json]

`--pages N` scans only the first N pages (RapidOCR takes ~8 s a dense page on 2 cores: the
whole 307-page 10-K is ~40 minutes); the text-layer copy is then cut to the same pages.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from asyncrag.evaluate import Question, evaluate, load_questions
from asyncrag.rag import AsyncRAG

ROOT = Path(__file__).resolve().parents[1]
TENK = ROOT.parent / "shared" / "data" / "uber_2021.pdf"
sys.path.insert(0, str(ROOT / "tests"))
K = 5


def questions() -> dict[str, list[Question]]:
    tutorial = load_questions(ROOT / "examples" / "eval" / "tutorial.jsonl")
    return {
        "table cells (tuned on)": load_questions(ROOT / "examples" / "eval" / "tables.jsonl"),
        "table cells (held out)": load_questions(ROOT / "examples" / "eval" / "tables-heldout.jsonl"),
        "10-K prose": [q for q in tutorial if q.expect.source == "uber_2021.pdf"],
    }


def within(qs: list[Question], pages: int | None) -> list[Question]:
    return [q for q in qs if pages is None or (q.expect.page is not None and q.expect.page <= pages)]


async def ingest_and_score(pdf: Path, db: str, name: str, pages: int | None, **settings: Any) -> dict[str, Any]:
    async with AsyncRAG(uri=db, collection=name, llm="none", **settings) as rag:
        start = time.perf_counter()
        report = await rag.ingest([pdf])
        seconds = time.perf_counter() - start
        assert report.ok, report.failures
        scores: dict[str, Any] = {}
        for label, qs in questions().items():
            qs = within(qs, pages)
            result = await evaluate(lambda q, k, mode: rag.search(q, k, mode=mode), qs, ["auto"], K)
            s = result.modes[0].scores
            scores[label] = {"questions": s.questions, "hit": round(s.hit, 4), "mrr": round(s.mrr, 4)}
        return {"chunks": report.chunks, "ingest_s": round(seconds, 1), "scores": scores}


def cut(pdf: Path, dest: Path, pages: int | None) -> Path:
    """`pdf`'s first `pages` pages (all: `pdf` itself)."""
    if pages is None:
        return pdf
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter()
    for page in PdfReader(pdf).pages[:pages]:
        writer.add_page(page)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with dest.open("wb") as f:
        writer.write(f)
    return dest


def ocr_rate(scan: Path, engine: str, sample: int) -> float:
    """Pages per second of `engine` alone (drawing the page included), on `sample` pages spread
    over the document, after one page to warm it up."""
    import pypdfium2 as pdfium

    from asyncrag.ingest.ocr import RENDER_SCALE
    from asyncrag.ingest.ocr import engine as ocr_engine

    pdf = pdfium.PdfDocument(scan)
    e = ocr_engine(engine)  # type: ignore[arg-type]
    pages = [round(i * (len(pdf) - 1) / max(1, sample - 1)) for i in range(sample)]
    e.read(pdf[pages[0]].render(scale=RENDER_SCALE[engine]).to_pil())
    start = time.perf_counter()
    for i in pages:
        e.read(pdf[i].render(scale=RENDER_SCALE[engine]).to_pil())
    return sample / (time.perf_counter() - start)


def run_tables(db: str, pages: int | None, console: Console) -> dict[str, Any]:
    pdf = cut(TENK, Path(db).parent / "cut" / "uber_2021.pdf", pages)
    out = {
        variant: asyncio.run(ingest_and_score(pdf, db, f"tables_{variant}", pages, pdf_tables=variant == "markdown"))
        for variant in ("loose", "markdown")
    }
    table = Table(title=f"Tables: hit@{K} / MRR, the 10-K ingested two ways (same run)")
    for column in ("PDF tables as", "chunks", "ingest s", *questions()):
        table.add_column(column)
    for variant, r in out.items():
        cells = [f"{s['hit']:.3f} / {s['mrr']:.3f} ({s['questions']} q)" for s in r["scores"].values()]
        table.add_row(variant, str(r["chunks"]), f"{r['ingest_s']:.1f}", *cells)
    console.print(table)
    return out


def run_ocr(
    db: str, engines: list[str], pages: int | None, sample: int, text: dict[str, Any], console: Console
) -> dict[str, Any]:
    from scans import scanned_copy

    scan = scanned_copy(TENK, Path(db).parent / "scan" / "uber_2021.pdf", range(pages) if pages else None, dpi=200)
    n = pages or 307
    out: dict[str, Any] = {"pages": n, "text_layer": text}
    table = Table(title=f"OCR: the scanned 10-K ({n} pages, 200 dpi) vs its text layer, hit@{K} (ratio)")
    for column in ("copy", "OCR pages/s alone", "ingest pages/s", *questions()):
        table.add_column(column)
    hits = [f"{s['hit']:.3f}" for s in text["scores"].values()]
    table.add_row("text layer", "-", f"{n / text['ingest_s']:.2f}", *hits)
    for engine in engines:
        rate = ocr_rate(scan, engine, sample)
        # a 200 dpi scan of the 10-K is 142 MB: over the default max_file_mb
        settings = {"ocr": engine, "parse_workers": 2, "max_file_mb": 1000}
        r = asyncio.run(ingest_and_score(scan, db, f"scan_{engine}", pages, **settings))
        r["ocr_pages_per_s"] = round(rate, 3)
        r["ratio"] = {
            label: round(s["hit"] / text["scores"][label]["hit"], 3) if text["scores"][label]["hit"] else None
            for label, s in r["scores"].items()
        }
        out[engine] = r
        cells = [f"{s['hit']:.3f} ({r['ratio'][label]}x)" for label, s in r["scores"].items()]
        table.add_row(f"scan, {engine}", f"{rate:.3f}", f"{n / r['ingest_s']:.2f}", *cells)
        console.print(table)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=["tables", "ocr"])
    parser.add_argument("--engines", nargs="+", default=["tesseract", "rapidocr"])
    parser.add_argument("--pages", type=int, help="only the first N pages of the 10-K")
    parser.add_argument("--sample", type=int, default=8, help="pages timed for each engine's OCR rate")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "documents.json")
    args = parser.parse_args()
    console = Console()
    results: dict[str, Any] = {"machine": {"python": platform.python_version(), "cpus": os.cpu_count()}}
    with tempfile.TemporaryDirectory() as tmp:
        db = str(Path(tmp) / "documents.db")
        tables = run_tables(db, args.pages, console)
        if args.only != "ocr":
            results["tables"] = tables
        if args.only != "tables":
            results["ocr"] = run_ocr(db, args.engines, args.pages, args.sample, tables["markdown"], console)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    console.print(f"written {args.out}")


if __name__ == "__main__":
    main()
