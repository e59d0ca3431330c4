"""Retrieval evaluation (issue 11): the metrics by hand, QA files, the shipped sets against their data,
and `evaluate` / `asyncrag eval` end to end on examples/corpus in a real Milvus Lite.

The end-to-end tests use the hash embedder, whose ranking means nothing: with k above the number of
chunks every answer is somewhere in the top k, so hit@k must be 1.0 exactly when each expectation
matches a stored chunk (its file, its page, its text).
"""

from __future__ import annotations

import json
import math
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from conftest import HashEmbedder, cli_environment
from pydantic import ValidationError
from typer.testing import CliRunner

from asyncrag import cli
from asyncrag.errors import ConfigError, QAFileError
from asyncrag.evaluate import (
    AnswerReport,
    Expect,
    Question,
    evaluate,
    first_rank,
    hit_at_k,
    judge,
    load_questions,
    ndcg_at_k,
    normalise,
    parse_modes,
    percentile,
    reciprocal_rank,
    same_file,
    write_chart,
)
from asyncrag.ingest.read import read_file, read_pdf_pages
from asyncrag.rag import AsyncRAG
from asyncrag.results import Answer, Source

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "examples" / "corpus"
CORPUS_SET = ROOT / "examples" / "eval" / "corpus.jsonl"
TUTORIAL_SET = ROOT / "examples" / "eval" / "tutorial.jsonl"
BIG_K = 200  # more than examples/corpus has chunks

# -- metrics, by hand ----------------------------------------------------------------------------


def test_metrics_of_a_ranking_with_two_relevant_chunks() -> None:
    relevant = [False, True, False, True, False]
    assert first_rank(relevant) == 2
    assert hit_at_k(relevant, 5) == 1.0 and hit_at_k(relevant, 1) == 0.0
    assert reciprocal_rank(relevant, 5) == 0.5 and reciprocal_rank(relevant, 1) == 0.0
    # DCG = 1/log2(3) + 1/log2(5) = 0.63093 + 0.43068; ideal (two relevant first) = 1 + 0.63093
    assert ndcg_at_k(relevant, 5) == pytest.approx(1.06161 / 1.63093, abs=1e-5)
    assert ndcg_at_k(relevant, 3) == pytest.approx(0.63093, abs=1e-5)  # one relevant in the top 3
    assert ndcg_at_k(relevant, 1) == 0.0


def test_metrics_of_one_relevant_chunk_and_of_none() -> None:
    assert (hit_at_k([True], 5), reciprocal_rank([True], 5), ndcg_at_k([True], 5)) == (1.0, 1.0, 1.0)
    third = [False, False, True]
    assert reciprocal_rank(third, 5) == pytest.approx(1 / 3)
    assert ndcg_at_k(third, 5) == pytest.approx(0.5)  # 1/log2(4)
    assert ndcg_at_k([True, True], 5) == 1.0  # two copies of the answer at the top are ideal, not more
    for nothing in ([], [False] * 5):
        assert (first_rank(nothing), hit_at_k(nothing, 5), reciprocal_rank(nothing, 5)) == (None, 0.0, 0.0)
        assert ndcg_at_k(nothing, 5) == 0.0


def test_percentile_interpolates_between_ranks() -> None:
    assert percentile([4.0, 1.0, 3.0, 2.0], 50) == pytest.approx(2.5)
    assert percentile([1.0, 2.0, 3.0, 4.0], 95) == pytest.approx(3.85)
    assert percentile([7.0], 95) == 7.0 and percentile([], 50) == 0.0


# -- what makes a chunk relevant -----------------------------------------------------------------


def test_same_file_by_name_or_path_suffix() -> None:
    stored = "/home/me/shared/data/uber_2021.pdf"
    assert same_file("uber_2021.pdf", stored) and same_file("data/uber_2021.pdf", stored)
    assert not same_file("other/uber_2021.pdf", stored)
    assert not same_file("ber_2021.pdf", stored)  # whole path components, not a string suffix
    assert same_file("kb/notes.md", "kb/notes.md")


def test_expect_matches_text_page_and_source() -> None:
    chunk = Source(text="Gross Bookings\n$ 57,897 $  90,415", score=1.0, source="/x/uber_2021.pdf", page=53)
    assert Expect(contains=["57,897 $ 90,415"]).matches(chunk)  # whitespace and line breaks
    assert Expect(contains=["GROSS bookings"]).matches(chunk)
    assert Expect(contains=["nope", "90,415"]).matches(chunk)  # any of them
    assert Expect(source="uber_2021.pdf", page=53).matches(chunk)
    assert not Expect(source="uber_2021.pdf", page=52, contains=["90,415"]).matches(chunk)
    assert not Expect(source="essay.txt", contains=["90,415"]).matches(chunk)
    assert not Expect(page=53).matches(Source(text="90,415", score=1.0, source="/x/uber_2021.pdf"))


# -- QA files ------------------------------------------------------------------------------------


def write(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "qa.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


GOOD = '{"question": "q?", "expect": {"contains": ["x"]}}'


@pytest.mark.parametrize(
    ("bad", "says"),
    [
        ('{"question": "q?", "expect": {"contains": ["x"]}', "not JSON"),
        ('{"expect": {"contains": ["x"]}}', "question: Field required"),
        ('{"question": "q?", "expect": {}}', "at least one of source, page, contains"),
        ('{"question": "q?", "expect": {"contains": [" "]}}', "empty string"),
        ('{"question": "q?", "expect": {"page": 0}}', "expect.page"),
        ('{"question": "q?", "expect": {"contains": ["x"]}, "kind": "fuzzy"}', "kind"),
        ('{"question": "q?", "expect": {"contain": ["x"]}}', "expect.contain: Extra inputs"),
        ('["q?"]', "Question"),
    ],
)
def test_a_malformed_line_is_one_line_naming_it(tmp_path: Path, bad: str, says: str) -> None:
    path = write(tmp_path, GOOD, "", bad)
    with pytest.raises(QAFileError) as caught:
        load_questions(path)
    message = str(caught.value)
    assert message.startswith(f"{path}:3: ") and says in message and "\n" not in message


def test_empty_and_missing_files(tmp_path: Path) -> None:
    with pytest.raises(QAFileError, match="has no questions"):
        load_questions(write(tmp_path, "", "  "))
    with pytest.raises(QAFileError, match="cannot read the QA file"):
        load_questions(tmp_path / "absent.jsonl")


def test_blank_lines_are_skipped_and_kind_is_optional(tmp_path: Path) -> None:
    questions = load_questions(write(tmp_path, "", GOOD, "", GOOD.replace("}}", '}, "kind": "paraphrase"}')))
    assert [q.kind for q in questions] == [None, "paraphrase"]


def test_parse_modes_keeps_the_order_given() -> None:
    assert parse_modes("hybrid, dense") == ["hybrid", "dense"] and parse_modes("auto") == ["auto"]
    for bad in ("", "dense,fuzzy", " , "):
        with pytest.raises(ConfigError, match="use a comma-separated list of auto, dense, sparse, hybrid"):
            parse_modes(bad)


# -- the shipped sets say what their data says ---------------------------------------------------


@cache
def pdf_pages(path: Path) -> dict[int, str]:
    """The PDF's text as ingestion reads it (PDFium), page number -> normalised text."""
    return {d.metadata["page"]: normalise(d.text) for d in read_pdf_pages(path, str(path), 0, 10_000)}


@cache
def pypdf_reader(path: Path) -> Any:
    import pypdf

    return pypdf.PdfReader(path)


def pypdf_page(path: Path, page: int) -> str:
    """The same page as pypdf (LlamaIndex's reader, the tutorial's way) extracts it."""
    return normalise(pypdf_reader(path).pages[page - 1].extract_text())


def assert_present(q: Question, folder: Path) -> None:
    """Every `contains` of `q` is in its file (on its page, for a PDF)."""
    assert q.expect.source and q.expect.contains, q.question
    path = folder / q.expect.source
    if path.suffix == ".pdf":
        pages = pdf_pages(path)
        texts = [pages[q.expect.page]] if q.expect.page else list(pages.values())
    else:
        texts = [normalise(doc.text) for doc in read_file(path, str(path))]
    for phrase in q.expect.contains:
        assert any(normalise(phrase) in text for text in texts), f"{phrase!r} not in {path.name}: {q.question}"
        if q.expect.page:
            assert normalise(phrase) in pypdf_page(path, q.expect.page), f"pypdf: {phrase!r}: {q.question}"


def test_corpus_set_matches_examples_corpus() -> None:
    questions = load_questions(CORPUS_SET)
    assert len(questions) >= 8 and {q.kind for q in questions} == {"lexical", "paraphrase"}
    for q in questions:
        assert_present(q, CORPUS)
    assert {q.expect.source for q in questions} == {p.name for p in CORPUS.iterdir()}


@pytest.mark.slow  # reads the 307-page 10-K twice (PDFium, and pypdf for the stated pages)
def test_tutorial_set_matches_the_shared_data(shared_data: Path) -> None:
    questions = load_questions(TUTORIAL_SET)
    for q in questions:
        assert_present(q, shared_data)
    kinds = [q.kind for q in questions]
    assert len(questions) >= 44 and kinds.count("lexical") == kinds.count("paraphrase")
    essay = [q for q in questions if q.expect.source == "paul_graham_essay.txt"]
    uber = [q for q in questions if q.expect.source == "uber_2021.pdf"]
    assert len(essay) >= 15 and len(uber) >= 30 and len(essay) + len(uber) == len(questions)
    pages = {q.expect.page for q in uber if q.expect.page}
    assert len(pages) >= 15 and max(pages) > 150  # the whole filing, exhibits included, not its first pages


# -- end to end ----------------------------------------------------------------------------------


async def test_evaluate_finds_every_answer_of_the_corpus_set(lite_uri: str, hash_embedder: HashEmbedder) -> None:
    questions = load_questions(CORPUS_SET)
    searched: list[tuple[str, int, str]] = []
    async with AsyncRAG(
        embedder=hash_embedder, uri=lite_uri, collection="evaluate", parse_workers=0, llm="none"
    ) as rag:
        ingested = await rag.ingest([str(CORPUS)])
        assert ingested.ok and ingested.files == 4

        async def search(question: str, k: int, mode: str) -> list[Source]:
            searched.append((question, k, mode))
            return await rag.search(question, k, mode=mode)

        report = await evaluate(search, questions, ["dense"], BIG_K)
    assert len(searched) == len(questions) + 1  # one warm-up
    assert searched[0] == searched[1] == (questions[0].question, BIG_K, "dense")
    [dense] = report.modes
    assert dense.scores.hit == 1.0 and all(o.rank is not None for o in dense.outcomes)
    assert 0 < dense.scores.ndcg <= 1 and 0 < dense.scores.mrr <= 1
    assert dense.scores.mrr == pytest.approx(sum(1 / (o.rank or math.inf) for o in dense.outcomes) / len(questions))
    assert [m.rank for m in dense.misses] == [o.rank for o in dense.outcomes if o.rank != 1]
    assert {k: s.questions for k, s in dense.by_kind.items()} == {"lexical": 6, "paraphrase": 6}
    assert 0 < dense.latency_ms(50) <= dense.latency_ms(95)
    as_dict = report.to_dict()
    assert as_dict["questions"] == 12 and as_dict["modes"][0]["hit"] == 1.0
    assert json.loads(json.dumps(as_dict)) == as_dict


async def test_a_ranking_is_scored_per_mode_and_per_kind() -> None:
    """A scripted search: the answer first in one mode, third in another, absent in the last."""
    questions = [
        Question(question="lex", expect=Expect(contains=["answer"]), kind="lexical"),
        Question(question="para", expect=Expect(contains=["answer"]), kind="paraphrase"),
    ]
    hit, miss = Source("the answer", 1.0, "a.txt"), Source("nothing", 0.5, "a.txt")
    rankings = {"dense": [hit, miss], "sparse": [miss, miss, hit], "hybrid": [miss]}

    async def search(question: str, k: int, mode: str) -> list[Source]:
        return rankings[mode] if question == "lex" else [miss]

    report = await evaluate(search, questions, ["dense", "sparse", "hybrid"], 5)
    scores = {m.mode: m.scores for m in report.modes}
    assert [(s.hit, s.mrr) for s in scores.values()] == [(0.5, 0.5), (0.5, pytest.approx(1 / 6)), (0.0, 0.0)]
    assert scores["sparse"].ndcg == pytest.approx(0.25)  # (1/log2(4)) / 2 questions
    sparse = report.modes[1]
    assert sparse.by_kind["lexical"].mrr == pytest.approx(1 / 3) and sparse.by_kind["paraphrase"].hit == 0.0
    assert sparse.to_dict()["misses"] == [
        {"question": "lex", "kind": "lexical", "rank": 3},
        {"question": "para", "kind": "paraphrase", "rank": None},
    ]


async def test_write_chart_writes_a_png(tmp_path: Path) -> None:
    async def search(question: str, k: int, mode: str) -> list[Source]:
        return [Source("x", 1.0, "a.txt")]

    report = await evaluate(search, [Question(question="q", expect=Expect(contains=["x"]))], ["dense", "hybrid"], 5)
    write_chart(report, tmp_path / "chart.png")
    assert (tmp_path / "chart.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def eval_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, hash_embedder: HashEmbedder) -> dict[str, str]:
    env = cli_environment(monkeypatch, tmp_path, hash_embedder)
    result = CliRunner().invoke(cli.app, ["ingest", str(CORPUS)], env=env)
    assert result.exit_code == 0, result.output
    return env


def test_cli_eval_writes_json_and_chart(eval_env: dict[str, str], tmp_path: Path) -> None:
    args = ["eval", str(CORPUS_SET), "--mode", "dense", "-k", str(BIG_K)]
    result = CliRunner().invoke(cli.app, [*args, "--json", "r.json", "--chart", "r.png"], env=eval_env)
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["k"] == BIG_K and report["questions"] == 12
    [dense] = report["modes"]
    assert dense["mode"] == "dense" and dense["hit"] == 1.0 and math.isclose(dense["by_kind"]["lexical"]["hit"], 1.0)
    assert (tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG"
    assert f"hit@{BIG_K}" in result.stdout and "dense" in result.stdout and "12 questions" in result.stdout


def test_cli_eval_user_errors_exit_2(eval_env: dict[str, str], tmp_path: Path) -> None:
    bad_mode = CliRunner().invoke(cli.app, ["eval", str(CORPUS_SET), "--mode", "dense,fuzzy"], env=eval_env)
    assert bad_mode.exit_code == 2 and "fuzzy" in bad_mode.output
    (tmp_path / "bad.jsonl").write_text('{"question": "q?", "expect": {}}\n')
    bad_file = CliRunner().invoke(cli.app, ["eval", "bad.jsonl", "--mode", "dense"], env=eval_env)
    assert bad_file.exit_code == 2
    assert bad_file.stderr.strip() == "error: bad.jsonl:1: expect: give at least one of source, page, contains"


# -- answers and follow-ups -----------------------------------------------------------------------


def test_a_follow_up_is_searched_with_its_history_and_counted_as_one() -> None:
    line = {
        "question": "Does its input need to be sorted?",
        "history": ["What does itertools.groupby do?"],
        "expect": {"source": "library/itertools.html", "contains": ["sorted on the same key function"]},
        "answer": ["sorted"],
        "kind": "paraphrase",
    }
    q = Question.model_validate(line)
    assert q.query == "What does itertools.groupby do? Does its input need to be sorted?"
    assert q.groups == ["paraphrase", "follow-up"]
    assert q.answered_by("“It needs to be SORTED\non the same key.” [1]") and not q.answered_by("no idea")
    with pytest.raises(ValidationError, match="answer has an empty string"):
        Question.model_validate({**line, "answer": [" "]})


def test_an_answer_is_judged_on_its_phrase_and_on_what_it_cites() -> None:
    q = Question(question="When?", expect=Expect(source="a.txt", contains=["founded in 1987"]), answer=["1987"])
    right, wrong = Source("It was founded in 1987.", 1.0, "/x/a.txt"), Source("Tea is nice.", 0.5, "/x/b.txt")
    cases = {
        "“It was founded in 1987.” [2]": (True, True, True),  # right, cited, cited relevant
        "In 1987 [1].": (True, True, False),  # the right words, citing the wrong source
        "In 1987.": (True, False, False),
        "Some other year [2].": (False, True, True),
    }
    for text, expected in cases.items():
        o = judge(q, Answer(text, [wrong, right]), 0.1)
        assert (o.correct, o.cited, o.cited_relevant) == expected, text
    report = AnswerReport([judge(q, Answer(text, [wrong, right]), 0.1) for text in cases])
    assert report.scores.correct == 0.75 and report.scores.cited_relevant == 0.5 and len(report.wrong) == 3
    assert json.loads(json.dumps(report.to_dict()))["correct"] == 0.75


def test_cli_eval_answers(eval_env: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "qa.jsonl").write_text(
        json.dumps({"question": "Who chairs the council?", "expect": {"contains": ["Ilse Okonkwo"]}, "kind": "lexical"})
        + "\n"
        + json.dumps(
            {
                "question": "Who is its current chair?",
                "history": ["How is the Kestrel Valley Tea Cooperative governed?"],
                "expect": {"source": "about.md", "contains": ["current chair"]},
                "answer": ["Ilse Okonkwo"],
            }
        )
        + "\n"
    )
    args = ["eval", "qa.jsonl", "--mode", "sparse", "--answers", "--json", "r.json", "--llm", "none"]
    result = CliRunner().invoke(cli.app, args, env=eval_env)
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "r.json").read_text())
    answers = report["answers"]
    assert answers["questions"] == 2 and answers["cited"] == 1.0 and answers["methods"] == {"extracted": 2}
    assert set(answers["by_kind"]) == {"lexical", "follow-up"}
    assert "answers" in result.stdout and "seconds per answer" in result.stdout
