"""The tutorial's own data (../shared/data), ingested once per module through the real process pool.

Embedding ~3300 chunks with MiniLM on 2 cores takes ~2-3 min: the ingest fixture is module-scoped,
and every test here that needs it is marked slow.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from llama_index.core.schema import MetadataMode
from llama_index.core.vector_stores.utils import metadata_dict_to_node
from tokenizers import Tokenizer

from asyncrag.embed.local import LocalEmbedder
from asyncrag.rag import AsyncRAG
from asyncrag.results import IngestReport
from asyncrag.store import scan

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.slow]

ESSAY = "paul_graham_essay.txt"
PDF = "uber_2021.pdf"
PDF_PAGES = 307


@pytest.fixture(scope="module")
def tutorial_db(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(tmp_path_factory.mktemp("tutorial") / "milvus.db")


@pytest.fixture(scope="module")
async def tutorial(shared_data: Path, embedder: LocalEmbedder, tutorial_db: str):
    """(rag, report) after ingesting the essay and the 10-K once, parsing in 2 worker processes."""
    async with AsyncRAG(embedder=embedder, uri=tutorial_db, collection="tutorial", llm="none", parse_workers=2) as rag:
        report = await rag.ingest([shared_data / ESSAY, shared_data / PDF])
        yield rag, report


@pytest.fixture(scope="module")
async def chunks(tutorial) -> list[dict]:
    """Every stored row, read back from Milvus (text, metadata and the node it came from)."""
    rag, _ = tutorial
    store = await rag.store()
    fields = ["text", "_node_content", "source", "page", "file_name", "doc_id"]
    rows: list[dict] = [row for page in scan.pages(store.client, store.collection_name, fields) for row in page]
    return rows


def _by_file(rows: list[dict], name: str) -> list[dict]:
    return [r for r in rows if Path(r["source"]).name == name]


async def test_report_counts_both_files(tutorial) -> None:
    _, report = tutorial
    assert isinstance(report, IngestReport)
    assert report.ok, report.failures
    assert report.files == 2
    assert report.chunks > 800


async def test_chunk_counts_are_sane(tutorial, chunks: list[dict]) -> None:
    _, report = tutorial
    essay, pdf = _by_file(chunks, ESSAY), _by_file(chunks, PDF)
    assert len(chunks) == report.chunks == len(essay) + len(pdf)
    # 75 KB of prose in ~128-token chunks: a couple of hundred; 307 dense 10-K pages: a few thousand.
    assert 100 <= len(essay) <= 400, len(essay)
    assert 1500 <= len(pdf) <= 6000, len(pdf)
    assert len({r["id"] for r in chunks}) == len(chunks)  # no duplicate ids
    assert all(r["text"].strip() for r in chunks)
    assert {r["doc_id"] for r in chunks} == {r["source"] for r in chunks}  # each chunk points at its file


async def test_no_chunk_exceeds_the_model_window(tutorial, chunks: list[dict], embedder: LocalEmbedder) -> None:
    """What the model embeds (text + embedded metadata + special tokens) fits its window, in its own tokens."""
    assert embedder.tokenizer_file is not None
    tokenizer = Tokenizer.from_file(str(embedder.tokenizer_file))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    embedded = [metadata_dict_to_node(r, text=r["text"]).get_content(metadata_mode=MetadataMode.EMBED) for r in chunks]
    assert "source:" not in embedded[0]  # the full path is kept out of the embedded text
    lengths = [len(e.ids) for e in tokenizer.encode_batch(embedded, add_special_tokens=True)]
    too_long = [
        (n, chunks[i]["source"], chunks[i].get("page")) for i, n in enumerate(lengths) if n > embedder.max_tokens
    ]
    assert not too_long, f"{len(too_long)} chunks over {embedder.max_tokens} tokens, e.g. {too_long[:3]}"
    # ... and they are not needlessly tiny either: most chunks use a good part of their size.
    lengths.sort()
    assert lengths[len(lengths) // 2] > (await tutorial[0].chunk_spec()).chunk_size // 2


async def test_pdf_chunks_keep_page_numbers_and_essay_has_none(chunks: list[dict]) -> None:
    pdf_pages = {r["page"] for r in _by_file(chunks, PDF)}
    assert all(isinstance(p, int) for p in pdf_pages)
    assert min(pdf_pages) == 1 and max(pdf_pages) == PDF_PAGES
    assert len(pdf_pages) >= PDF_PAGES - 5  # every page of this 10-K has text
    assert {r.get("page") for r in _by_file(chunks, ESSAY)} == {None}


async def test_a_known_fact_is_on_its_page(chunks: list[dict]) -> None:
    """Facts found on exactly one page of the 10-K: the stored chunks carry that page's number."""
    holding = [r for r in _by_file(chunks, PDF) if "1,418 holders" in r["text"]]
    assert holding and {r["page"] for r in holding} == {49}
    cover = [r for r in _by_file(chunks, PDF) if "45-2647441" in r["text"]]  # the IRS number, on the cover
    assert cover and {r["page"] for r in cover} == {1}
    last = [r for r in _by_file(chunks, PDF) if r["page"] == PDF_PAGES]
    assert last and any("Khosrowshahi" in r["text"] for r in last)  # the CEO's certification closes the filing


# (question, file, the pages that state the answer (None: not a PDF), a phrase the retrieved passage must contain).
# PDF pages were located by searching the extracted text: e.g. "74%" of Gross Bookings paid by card is on page 30 only.
QUESTIONS = [
    ("What computer did the author's father buy around 1980?", ESSAY, None, "TRS-80"),
    ("Which computer did the author first program on in 9th grade, using punch cards?", ESSAY, None, "1401"),
    # Hybrid ranked this passage 6th (dense 6th, BM25 2nd) until the 10-K's tables were read as
    # tables (Dec 1): the corpus's BM25 statistics moved, and it is in the top 3 since.
    ("How much seed funding did Viaweb get, and from whom?", ESSAY, None, "$10,000"),
    ("Which two art schools did the author apply to?", ESSAY, None, "Accademia"),
    ("What car did the author buy when Yahoo bought Viaweb?", ESSAY, None, "GTI"),
    ("What happens if Uber loses its credit card acceptance privileges?", PDF, {30}, "74%"),
    ("How many holders of record of Uber common stock were there?", PDF, {49}, "1,418"),
    ("How many rentable square feet is the Mission Bay headquarters in San Francisco?", PDF, {109}, "423,000"),
    ("What was the net loss attributable to Uber in 2021?", PDF, {53, 56}, "496"),
]


@pytest.mark.parametrize(
    ("question", "file", "page", "phrase"), QUESTIONS, ids=[str(q[0] if isinstance(q, tuple) else q.values[0])[:40] for q in QUESTIONS]
)
async def test_the_right_passage_is_in_the_top_3(
    tutorial, question: str, file: str, page: set[int] | None, phrase: str
) -> None:
    rag, _ = tutorial
    hits = await rag.search(question, k=3)
    assert len(hits) == 3
    assert hits[0].score >= hits[1].score >= hits[2].score
    found = [
        h
        for h in hits
        if Path(h.source).name == file and (h.page in page if page else h.page is None) and phrase in h.text
    ]
    assert found, (
        f"{question!r}: expected {file} p.{page} with {phrase!r}, got {[(h.citation, h.text[:80]) for h in hits]}"
    )


async def test_filter_restricts_search_to_one_file(tutorial) -> None:
    rag, _ = tutorial
    hits = await rag.search("revenue and gross bookings", k=5, filter=f'file_name == "{ESSAY}"')
    assert hits and all(Path(h.source).name == ESSAY for h in hits)


async def test_stats_and_reingest_without_duplicates(tutorial, shared_data: Path) -> None:
    rag, report = tutorial
    before = await rag.stats()
    assert before.documents == 2
    assert before.chunks == report.chunks
    assert before.embed_model == "sentence-transformers/all-MiniLM-L6-v2" and before.dim == 384

    again = await rag.ingest([shared_data / ESSAY])  # unchanged: skipped
    assert again.ok and (again.files, again.chunks) == (0, 0) and again.counts()["unchanged"] == 1
    after = await rag.stats()
    assert after.documents == 2
    assert after.chunks == before.chunks
    hits = await rag.search("What computer did the author's father buy around 1980?", k=3)
    assert len({(h.source, h.text) for h in hits}) == 3  # no chunk came back twice
