"""Quality on documents nobody here wrote: Debian's Python 3.11 documentation (issue 17).

Read from its Debian path (`apt-get install python3.11-doc`; `.ci/run` installs it), never copied
into the repo. The whole corpus (334 pages, ~20,000 chunks) is measured by `asyncrag eval` and
benchmarks/retrieval.py; here, the pages of examples/eval/python-doc.jsonl that are under 150
chunks, so that CI ingests them in about a minute, with the rest of the question set's pages as
distractors left out.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import pytest

from asyncrag.embed.local import LocalEmbedder, bundled_minilm_path
from asyncrag.evaluate import evaluate, evaluate_answers, load_questions
from asyncrag.ingest.chunk import chunk, chunk_spec_for, make_splitter
from asyncrag.ingest.read import read_file
from asyncrag.rag import AsyncRAG

PYDOC = Path("/usr/share/doc/python3.11/html")
QA = Path(__file__).resolve().parents[1] / "examples" / "eval" / "python-doc.jsonl"
SMALL_PAGE = 150_000  # bytes of HTML: about 150 chunks
MARKER = "The zephyrine calibration of quokka lanterns was first recorded by Ottoline Varga-Benedek in 1893."

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pydoc() -> Path:
    if not PYDOC.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"{PYDOC} is missing: apt-get install python3.11-doc")
        pytest.skip(f"{PYDOC} is missing (apt-get install python3.11-doc)")
    return PYDOC


def test_every_expectation_holds_in_a_chunk_of_its_page(pydoc: Path) -> None:
    """The set is checked against the text asyncrag stores: a phrase across a chunk edge or a
    Markdown link would make a question unanswerable, whatever the retrieval."""
    splitter = make_splitter(chunk_spec_for(256, bundled_minilm_path() / "tokenizer.json", None, 32))
    questions = load_questions(QA)
    assert len(questions) >= 60
    assert sum(q.kind == "lexical" for q in questions) == sum(q.kind == "paraphrase" for q in questions)
    assert sum(bool(q.history) for q in questions) >= 10
    pages: dict[str, list] = {}
    for q in questions:
        assert q.expect.source is not None
        path = pydoc / q.expect.source
        if q.expect.source not in pages:
            pages[q.expect.source] = chunk(splitter, read_file(path, str(path)), "d", "v")
        relevant = [n for n in pages[q.expect.source] if q.expect.matches(_source_of(n, str(path)))]
        assert relevant, f"no chunk of {q.expect.source} holds {q.expect.contains}"
        assert any(q.answered_by(n.text) for n in relevant), f"{q.question}: no relevant chunk holds {q.answer}"


def _source_of(node: object, path: str) -> object:
    from asyncrag.results import Source

    return Source(node.text, 0.0, path)  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def small_pages(pydoc: Path, tmp_path_factory: pytest.TempPathFactory, embedder: LocalEmbedder) -> tuple[str, list]:
    """The question set's smaller pages, copied to a temporary folder (not the repo) with a unique
    sentence added to one of them, in Milvus Lite."""
    questions = [q for q in load_questions(QA) if q.expect.source and (pydoc / q.expect.source).stat().st_size < SMALL_PAGE]
    folder = tmp_path_factory.mktemp("pydoc")
    for page in {q.expect.source for q in questions}:
        assert page is not None
        (folder / page).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(pydoc / page, folder / page)
    marked = folder / "library" / "pprint.html"
    html = marked.read_text(encoding="utf-8")
    at = html.index("</section>", len(html) // 2)  # mid-page, inside the main content
    marked.write_text(html[:at] + f"<p>{MARKER}</p>" + html[at:], encoding="utf-8")
    uri = str(folder.parent / "pydoc.db")

    async def fill() -> None:
        async with AsyncRAG(embedder=embedder, uri=uri, collection="pydoc", llm="none") as rag:
            report = await rag.ingest([folder], doc_id_prefix="")
            assert report.ok, report.failures

    asyncio.run(fill())
    return uri, questions


async def test_hybrid_keeps_an_exact_sentence_in_its_top_3(small_pages: tuple[str, list], embedder: LocalEmbedder) -> None:
    uri, _ = small_pages
    async with AsyncRAG(embedder=embedder, uri=uri, collection="pydoc", llm="none") as rag:
        for query in (MARKER, "zephyrine calibration of quokka lanterns"):
            found = await rag.search(query, 3, mode="hybrid")
            assert any(MARKER in s.text for s in found), [s.text[:60] for s in found]


async def test_retrieval_and_answers_on_the_python_docs(small_pages: tuple[str, list], embedder: LocalEmbedder) -> None:
    """Floors a little under what was measured on these pages, so a regression fails; the measured
    numbers on the whole corpus are in docs/architecture.md, "Answers"."""
    uri, questions = small_pages
    assert len(questions) >= 30
    async with AsyncRAG(embedder=embedder, uri=uri, collection="pydoc", llm="local") as rag:
        report = await evaluate(lambda q, k, m: rag.search(q, k, mode=m), questions, ["dense", "sparse", "hybrid"], 5)
        answers = await evaluate_answers(lambda q: rag.ask(q.question, history=q.history), questions)
    hit = {m.mode: m.scores.hit for m in report.modes}
    assert hit["hybrid"] >= max(hit["dense"], hit["sparse"]) - 0.05, hit
    assert hit["hybrid"] >= 0.6, hit  # measured: 0.686 (dense 0.600, BM25 0.543)
    assert answers.scores.cited == 1.0  # every answer cites a source
    assert answers.scores.correct >= 0.4, answers.to_dict()["wrong"]  # measured: 0.514
    assert answers.latency_s(50) < 5.0
