from pathlib import Path

from asyncrag.rag import AsyncRAG

CORPUS = Path(__file__).resolve().parents[1] / "examples" / "corpus"


async def test_sample_corpus_answers_from_the_right_file(rag: AsyncRAG) -> None:
    report = await rag.ingest([CORPUS])
    assert report.ok, report.failures
    assert report.files == 4 and report.chunks >= 4
    top = (await rag.search("Who founded the cooperative and when?", k=3))[0]
    assert top.source.endswith("about.md") and "1987" in top.text
    revenue = (await rag.search("What was the revenue in 2025?", k=3))[0]
    assert revenue.source.endswith("annual-report-2025.pdf") and revenue.page == 1
