"""Answers a user can trust (issue 17): quoted and cited by default, an LLM's checked, follow-ups condensed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from asyncrag.embed.local import LocalEmbedder
from asyncrag.query import check
from asyncrag.query.condense import condense
from asyncrag.query.extract import NOT_FOUND, extract, split_sentences
from asyncrag.rag import AsyncRAG
from asyncrag.results import Answer, Source

CORPUS = Path(__file__).resolve().parents[1] / "examples" / "corpus"
FOUNDING = (
    "The Kestrel Valley Tea Cooperative was founded in 1987 by Mara Lindqvist and eleven neighbouring\n"
    "farming families in the hill village of Orrin's Ford. Before the cooperative, each family sold green\n"
    "leaf to a single buyer in the lowlands at whatever price he offered."
)
SOURCES = [
    Source("Most bushes are of the Assam-hybrid cultivar \"Kestrel 12\", bred by the cooperative in 1994.", 0.5, "a.md"),
    Source(FOUNDING, 0.4, "about.md", heading="The Kestrel Valley Tea Cooperative › History"),
]


# -- sentences -----------------------------------------------------------------------------------


def test_sentences_are_whole_prose_sentences() -> None:
    text = (
        "tail of a sentence the chunk cut.\n\n"
        "# A heading\n\n"
        "If the data being deserialized is not a valid JSON document, a\n"
        "    [`JSONDecodeError`](#json.JSONDecodeError) will be raised.\n\n"
        "| a | table row |\n|---|---|\n\n"
        "The usual idiom is this:\n\n```\nif __name__ == \"__main__\":\n    main()\n```\n\n"
        "```\n>>> x = 1\n>>> also code the chunk cut"
    )
    assert split_sentences(text) == [
        "If the data being deserialized is not a valid JSON document, a `JSONDecodeError` will be raised.",
        'The usual idiom is this: `if __name__ == "__main__": main()`',
    ]


def test_a_chunk_that_starts_inside_code_keeps_its_prose() -> None:
    text = "    return x\n```\n\nThe function returns its argument unchanged here."
    assert split_sentences(text) == ["The function returns its argument unchanged here."]


# -- extractive answers ---------------------------------------------------------------------------


def test_the_answer_quotes_the_sentence_that_answers_and_cites_it(embedder: LocalEmbedder) -> None:
    found = extract("Who founded the cooperative, and when?", SOURCES, embedder)
    assert found.found
    assert found.answer.startswith("“The Kestrel Valley Tea Cooperative was founded in 1987 by Mara Lindqvist")
    assert found.answer.split("”")[1].strip().startswith("[2]")  # the source it is quoted from
    assert "\n" not in found.answer  # the PDF-like line breaks are gone


def test_sources_that_do_not_answer_are_said_not_to(embedder: LocalEmbedder) -> None:
    found = extract("What is the boiling point of tungsten?", SOURCES, embedder)
    assert not found.found and found.answer.startswith(NOT_FOUND) and "[" in found.answer


def test_without_a_whole_sentence_the_best_passage_is_quoted_and_cited() -> None:
    table = Source("| Revenue | 2021 | 17,455 |\n| Net loss | 2021 | (496) |", 0.1, "r.pdf", page=3)
    found = extract("What was the revenue?", [table], embedder=None)  # type: ignore[arg-type]  # nothing to embed
    assert not found.found and "17,455" in found.answer and found.answer.endswith("[1]")
    assert extract("anything?", [], embedder=None).answer == NOT_FOUND  # type: ignore[arg-type]


def test_a_table_row_answers_read_out_under_its_column_heads(embedder: LocalEmbedder) -> None:
    statement = Source(
        "| STATEMENTS OF OPERATIONS Year Ended December 31, | 2019 | 2020 | 2021 |\n|---|---|---|---|\n"
        "| Revenue | $13,000 | $11,139 | $17,455 |\n| Costs and expenses |  |  |  |\n| Sales and marketing | 4,626 | 3,583 | 4,789 |",
        0.5,
        "uber.pdf",
        page=77,
    )
    found = extract("How much did Uber spend on sales and marketing in 2019?", [SOURCES[0], statement], embedder)
    assert found.found
    assert "“Sales and marketing: 2019 4,626; 2020 3,583; 2021 4,789.” [2]" in found.answer


# -- checks on an LLM's answer ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "problem"),
    [
        ("", "empty"),
        ("The cooperative was founded in 1987 by Mara Lindqvist.", "cites no source"),
        ("It was founded in 1987 by Mara Lindqvist [7].", "[7]"),
        ("founded in 1987 by Mara " * 4 + "[2]", "repeats itself"),
        ("The cooperative was founded in 1962 by Gustav Ericsson in Stockholm [2].", "do not"),
    ],
)
def test_an_answer_that_fails_a_check_says_why(answer: str, problem: str) -> None:
    found = check.problems(answer, SOURCES)
    assert any(problem in p for p in found), found


@pytest.mark.parametrize(
    "answer",
    [
        "The cooperative was founded in 1987 by Mara Lindqvist and eleven farming families [2].",
        "The sources do not contain the answer.",
    ],
)
def test_a_supported_cited_answer_passes(answer: str) -> None:
    assert check.problems(answer, SOURCES) == []


# -- follow-ups -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("question", "history", "query"),
    [
        ("Does its input need to be sorted?", ["What does itertools.groupby do?"],
         "What does itertools.groupby do? Does its input need to be sorted?"),
        ("And json.dumps?", ["What does json.loads raise on bad input?"],
         "What does json.loads raise on bad input? And json.dumps?"),  # too few words to stand alone
        ("How do I read a CSV file with a header row?", ["What does itertools.groupby do?"],
         "How do I read a CSV file with a header row?"),  # a new topic stands alone
        ("Does its input need to be sorted?", [], "Does its input need to be sorted?"),
        ("Is it thread-safe?", ["a", "b", "c"], "b c Is it thread-safe?"),  # the last two turns at most
    ],
)
def test_a_follow_up_is_searched_with_the_turns_it_points_back_to(question: str, history: list[str], query: str) -> None:
    assert condense(question, history) == query


# -- the whole ask --------------------------------------------------------------------------------


class Uncited:
    name = "uncited"
    bundled = False

    async def astream(self, messages: list[dict[str, str]], max_tokens: int) -> AsyncIterator[str]:
        for piece in ("The cooperative ", "was founded ", "long ago."):
            yield piece


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory, embedder: LocalEmbedder) -> str:
    uri = str(tmp_path_factory.mktemp("answers") / "milvus.db")

    async def fill() -> None:
        async with AsyncRAG(embedder=embedder, uri=uri, collection="c", parse_workers=0, llm="none") as rag:
            assert (await rag.ingest([CORPUS])).ok

    asyncio.run(fill())
    return uri


async def test_an_llm_answer_that_cites_nothing_is_replaced_by_a_quote(corpus: str, embedder: LocalEmbedder) -> None:
    tokens: list[str] = []
    async with AsyncRAG(embedder=embedder, llm=Uncited(), uri=corpus, collection="c") as rag:
        answer = await rag.ask("When was the Kestrel Valley Tea Cooperative founded?", k=3, on_token=tokens.append)
    assert tokens  # it streamed, then failed its checks
    assert answer.method == "extracted" and answer.llm is None and answer.cited
    assert answer.llm_error and "uncited's answer was set aside: it cites no source" in answer.llm_error
    assert "1987" in answer.answer


async def test_the_bundled_model_is_not_loaded_by_default(corpus: str, embedder: LocalEmbedder) -> None:
    async with AsyncRAG(embedder=embedder, uri=corpus, collection="c", llm="local") as rag:
        answer = await rag.ask("When was the Kestrel Valley Tea Cooperative founded?", k=3)
        assert rag._llm is not None and not hasattr(rag._llm, "astream")  # still unloaded
    assert answer.method == "extracted" and answer.llm_error is None and "1987" in answer.answer


async def test_ask_with_history_searches_the_condensed_question(corpus: str, embedder: LocalEmbedder) -> None:
    async with AsyncRAG(embedder=embedder, uri=corpus, collection="c", llm="none") as rag:
        answer = await rag.ask("Who chairs its council?", k=3, history=["What is the Kestrel Valley Tea Cooperative?"])
    assert answer.query == "What is the Kestrel Valley Tea Cooperative? Who chairs its council?"
    assert "Ilse Okonkwo" in answer.answer


def test_a_documents_own_reference_numbers_are_not_citations(embedder: LocalEmbedder) -> None:
    """A paper's "as shown in [2]" is quoted verbatim; only the [n] after the quotation cites."""
    paper = Source("Attention costs grow with the square of the sequence length, as shown in [2].", 0.9, "p.md")
    other = Source("Tea is grown on the eastern slope of the valley.", 0.1, "t.md")
    found = extract("How does the cost of attention grow?", [paper, other], embedder)
    answer = Answer(found.answer, [paper, other])
    assert "as shown in [2].”" in answer.answer and answer.cited == [1]
