"""Quality you can measure: questions with expected passages and answers -> hit@k, MRR, nDCG@k,
latency; with `evaluate_answers`, answers correct, cited, and cited to a relevant source.

A QA file is JSONL, one question a line:

    {"question": "...", "expect": {"source": "uber_2021.pdf", "page": 53, "contains": ["90,415"]}, "kind": "lexical"}
    {"question": "Does its input need to be sorted?", "history": ["What does itertools.groupby do?"],
     "expect": {"source": "library/itertools.html", "contains": ["sorted on the same key function"]},
     "answer": ["sorted"], "kind": "paraphrase"}

A retrieved chunk is relevant when it meets every part of `expect` that is given: its file is
`source` (by name or path suffix, so a set names files, not this machine's paths), its page is
`page`, and its text holds any of `contains` (case and whitespace ignored, because PDF text breaks
lines anywhere). Expectations are predicates, not chunk ids, so a set survives re-chunking and
works on any collection that holds the files. `history` makes the question a follow-up (its
earlier user turns, oldest first: it is searched as `ask` would, query/condense.py); `answer` lists
phrases any of which a correct answer holds (default: `expect.contains`).
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from asyncrag.config import SEARCH_MODES, SearchMode
from asyncrag.errors import AsyncRAGError, ConfigError, QAFileError
from asyncrag.query.condense import condense
from asyncrag.results import Answer, Source

MODES: tuple[SearchMode, ...] = ("dense", "sparse", "hybrid")  # compared by default; "auto" is one of them
COLOURS = ("#4c72b0", "#dd8452", "#55a868", "#8172b3")  # muted, told apart in grey too
Search = Callable[[str, int, SearchMode], Awaitable[list[Source]]]  # (question, k, mode) -> best first
Ask = Callable[["Question"], Awaitable[Answer]]


class Expect(BaseModel):
    """What makes a retrieved chunk relevant; every part given must hold."""

    model_config = ConfigDict(extra="forbid")

    source: str | None = None
    page: int | None = Field(default=None, ge=1)
    contains: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _says_something(self) -> Expect:
        if self.source is None and self.page is None and not self.contains:
            raise ValueError("give at least one of source, page, contains")
        if any(not " ".join(c.split()) for c in self.contains):
            raise ValueError("contains has an empty string, which every chunk would match")
        return self

    def matches(self, found: Source) -> bool:
        if self.source is not None and not same_file(self.source, found.source):
            return False
        if self.page is not None and found.page != self.page:
            return False
        text = normalise(found.text)
        return not self.contains or any(normalise(c) in text for c in self.contains)


class Question(BaseModel):
    """One line of a QA file; `kind` only groups the report (lexical facts vs paraphrases)."""

    model_config = ConfigDict(extra="forbid")

    question: str = Field(min_length=1)
    expect: Expect
    kind: Literal["lexical", "paraphrase"] | None = None
    answer: list[str] = Field(default_factory=list)
    history: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _phrases_say_something(self) -> Question:
        if any(not " ".join(a.split()) for a in self.answer):
            raise ValueError("answer has an empty string, which every answer would hold")
        return self

    @property
    def query(self) -> str:
        """What `ask` searches for this question: a follow-up made standalone with its history."""
        return condense(self.question, self.history)

    @property
    def groups(self) -> list[str]:
        """The report's groups this question counts in: its kind, and "follow-up" when it is one."""
        return [g for g in (self.kind, "follow-up" if self.history else None) if g]

    def answered_by(self, text: str) -> bool:
        """Whether `text` holds an expected answer phrase (case and whitespace ignored)."""
        return any(normalise(p) in normalise(text) for p in self.answer or self.expect.contains)


def normalise(text: str) -> str:
    """Lower case, runs of whitespace as one space: a phrase survives the line breaks of PDF text."""
    return " ".join(text.split()).lower()


def same_file(expected: str, stored: str) -> bool:
    """`uber_2021.pdf` or `data/uber_2021.pdf` names the stored `/any/where/data/uber_2021.pdf`."""
    want = [p for p in expected.replace("\\", "/").split("/") if p]
    have = [p for p in stored.replace("\\", "/").split("/") if p]
    return bool(want) and have[-len(want) :] == want


def parse_modes(text: str) -> list[SearchMode]:
    """'dense,hybrid' -> ["dense", "hybrid"]; an unknown mode is a ConfigError naming the allowed ones."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names or any(name not in SEARCH_MODES for name in names):
        raise ConfigError(f"--mode {text!r}: use a comma-separated list of {', '.join(SEARCH_MODES)}")
    return [cast(SearchMode, name) for name in names]


def load_questions(path: Path) -> list[Question]:
    """Parse a QA file; a bad line is one QAFileError naming the file, the line and what is wrong."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise QAFileError(f"cannot read the QA file {path}: {e}") from None
    questions = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            questions.append(Question.model_validate(json.loads(line)))
        except json.JSONDecodeError as e:
            raise QAFileError(f"{path}:{number}: not JSON ({e.msg}, column {e.colno})") from None
        except ValidationError as e:
            raise QAFileError(f"{path}:{number}: {_first_problem(e)}") from None
    if not questions:
        raise QAFileError(f"{path} has no questions: write one JSON object a line")
    return questions


def _first_problem(error: ValidationError) -> str:
    problem = error.errors()[0]
    where = ".".join(str(p) for p in problem["loc"])
    message = problem["msg"].removeprefix("Value error, ")
    return f"{where}: {message}" if where else message


# -- metrics: pure functions of the relevance of the top k, best first ---------------------------


def first_rank(relevant: Sequence[bool]) -> int | None:
    """The 1-based rank of the first relevant chunk, None when none is."""
    return next((i for i, r in enumerate(relevant, 1) if r), None)


def hit_at_k(relevant: Sequence[bool], k: int) -> float:
    return 1.0 if any(relevant[:k]) else 0.0


def reciprocal_rank(relevant: Sequence[bool], k: int) -> float:
    """1/rank of the first relevant chunk in the top k, 0 when none is (so MRR is "MRR@k")."""
    rank = first_rank(relevant[:k])
    return 1.0 / rank if rank else 0.0


def ndcg_at_k(relevant: Sequence[bool], k: int) -> float:
    """nDCG@k with binary relevance, in [0, 1].

    The ideal ranking puts the relevant chunks that were retrieved first (at least one). The full
    set of relevant chunks in a collection is unknown, because an expectation is a predicate, not a
    list of chunk ids; so a second copy of the answer (e.g. in the next chunk's overlap) is neither
    required nor penalised. With one relevant chunk this is 1/log2(1 + rank), the usual
    "one relevant at rank 1" ideal.
    """
    top = relevant[:k]
    dcg = sum(1.0 / math.log2(i + 1) for i, r in enumerate(top, 1) if r)
    ideal = sum(1.0 / math.log2(i + 1) for i in range(1, max(1, sum(top)) + 1))
    return dcg / ideal


def percentile(values: Sequence[float], q: float) -> float:
    """Linear interpolation between the closest ranks (numpy's default), for q in [0, 100]."""
    if not values:
        return 0.0
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


# -- the report --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """One question in one mode."""

    question: str
    kind: str | None
    relevant: tuple[bool, ...]  # of the chunks returned, best first
    seconds: float
    groups: tuple[str, ...] = ()

    @property
    def rank(self) -> int | None:
        return first_rank(self.relevant)


@dataclass(frozen=True)
class Scores:
    questions: int
    hit: float
    mrr: float
    ndcg: float

    @classmethod
    def of(cls, outcomes: Sequence[Outcome], k: int) -> Scores:
        n = len(outcomes) or 1
        return cls(
            questions=len(outcomes),
            hit=sum(hit_at_k(o.relevant, k) for o in outcomes) / n,
            mrr=sum(reciprocal_rank(o.relevant, k) for o in outcomes) / n,
            ndcg=sum(ndcg_at_k(o.relevant, k) for o in outcomes) / n,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "questions": self.questions,
            "hit": round(self.hit, 4),
            "mrr": round(self.mrr, 4),
            "ndcg": round(self.ndcg, 4),
        }


@dataclass(frozen=True)
class ModeReport:
    mode: str
    k: int
    outcomes: list[Outcome]

    @property
    def scores(self) -> Scores:
        return Scores.of(self.outcomes, self.k)

    @property
    def by_kind(self) -> dict[str, Scores]:
        """Scores per kind (lexical, paraphrase) and of the follow-ups."""
        kinds = sorted({g for o in self.outcomes for g in o.groups})
        return {kind: Scores.of([o for o in self.outcomes if kind in o.groups], self.k) for kind in kinds}

    def latency_ms(self, q: float) -> float:
        return 1000 * percentile([o.seconds for o in self.outcomes], q)

    @property
    def misses(self) -> list[Outcome]:
        """The questions whose answer was not ranked first: rank None is not in the top k at all."""
        return [o for o in self.outcomes if o.rank != 1]

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            **self.scores.to_dict(),
            "p50_ms": round(self.latency_ms(50), 2),
            "p95_ms": round(self.latency_ms(95), 2),
            "by_kind": {kind: s.to_dict() for kind, s in self.by_kind.items()},
            "misses": [{"question": o.question, "kind": o.kind, "rank": o.rank} for o in self.misses],
        }


@dataclass(frozen=True)
class Report:
    k: int
    modes: list[ModeReport] = field(default_factory=list)

    @property
    def questions(self) -> int:
        return len(self.modes[0].outcomes) if self.modes else 0

    def to_dict(self) -> dict[str, Any]:
        return {"k": self.k, "questions": self.questions, "modes": [m.to_dict() for m in self.modes]}


async def evaluate(search: Search, questions: Sequence[Question], modes: Sequence[SearchMode], k: int) -> Report:
    """Each mode in turn: one warm-up query, then every question alone, so a latency is one search's."""
    report = Report(k=k)
    for mode in modes:
        if questions:
            await search(questions[0].query, k, mode)
        outcomes = []
        for q in questions:
            start = time.perf_counter()
            found = await search(q.query, k, mode)
            seconds = time.perf_counter() - start
            relevant = tuple(q.expect.matches(s) for s in found[:k])
            outcomes.append(Outcome(q.question, q.kind, relevant, seconds, tuple(q.groups)))
        report.modes.append(ModeReport(mode, k, outcomes))
    return report


# -- answers ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AnswerOutcome:
    """One question's answer: right or not, cited or not, and whether a cited source is relevant."""

    question: str
    groups: tuple[str, ...]
    correct: bool
    cited: bool
    cited_relevant: bool
    method: str
    seconds: float
    answer: str


@dataclass(frozen=True)
class AnswerScores:
    questions: int
    correct: float
    cited: float
    cited_relevant: float

    @classmethod
    def of(cls, outcomes: Sequence[AnswerOutcome]) -> AnswerScores:
        n = len(outcomes) or 1
        return cls(
            questions=len(outcomes),
            correct=sum(o.correct for o in outcomes) / n,
            cited=sum(o.cited for o in outcomes) / n,
            cited_relevant=sum(o.cited_relevant for o in outcomes) / n,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "questions": self.questions,
            "correct": round(self.correct, 4),
            "cited": round(self.cited, 4),
            "cited_relevant": round(self.cited_relevant, 4),
        }


@dataclass(frozen=True)
class AnswerReport:
    outcomes: list[AnswerOutcome]

    @property
    def scores(self) -> AnswerScores:
        return AnswerScores.of(self.outcomes)

    @property
    def by_kind(self) -> dict[str, AnswerScores]:
        kinds = sorted({g for o in self.outcomes for g in o.groups})
        return {kind: AnswerScores.of([o for o in self.outcomes if kind in o.groups]) for kind in kinds}

    def latency_s(self, q: float) -> float:
        return percentile([o.seconds for o in self.outcomes], q)

    @property
    def wrong(self) -> list[AnswerOutcome]:
        return [o for o in self.outcomes if not (o.correct and o.cited_relevant)]

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.scores.to_dict(),
            "p50_s": round(self.latency_s(50), 3),
            "p95_s": round(self.latency_s(95), 3),
            "by_kind": {kind: s.to_dict() for kind, s in self.by_kind.items()},
            "methods": dict(sorted(Counter(o.method for o in self.outcomes).items())),
            "wrong": [
                {"question": o.question, "correct": o.correct, "cited_relevant": o.cited_relevant, "answer": o.answer}
                for o in self.wrong
            ],
        }


def judge(q: Question, answer: Answer, seconds: float) -> AnswerOutcome:
    cited = [answer.sources[n - 1] for n in answer.cited]
    return AnswerOutcome(
        question=q.question,
        groups=tuple(q.groups),
        correct=q.answered_by(answer.answer),
        cited=bool(cited),
        cited_relevant=any(q.expect.matches(s) for s in cited),
        method=answer.method,
        seconds=seconds,
        answer=answer.answer,
    )


async def evaluate_answers(ask: Ask, questions: Sequence[Question]) -> AnswerReport:
    """Each question asked alone (with its history), in turn, so a latency is one answer's."""
    outcomes = []
    for q in questions:
        start = time.perf_counter()
        answer = await ask(q)
        outcomes.append(judge(q, answer, time.perf_counter() - start))
    return AnswerReport(outcomes)


def write_chart(report: Report, path: Path) -> None:
    """Modes side by side: quality as grouped bars, latency beside it. Needs matplotlib (asyncrag[bench])."""
    try:
        from matplotlib.figure import Figure  # a bare Figure renders with Agg: no pyplot, no global backend
    except ImportError:
        raise AsyncRAGError("--chart needs matplotlib: pip install matplotlib==3.11.2") from None

    modes = [m.mode for m in report.modes]
    metrics = [(f"hit@{report.k}", "hit"), ("MRR", "mrr"), (f"nDCG@{report.k}", "ndcg")]
    fig = Figure(figsize=(10, 4.2), layout="constrained")
    quality, latency = fig.subplots(1, 2, width_ratios=[3, 2])
    width = 0.8 / max(1, len(modes))
    for i, m in enumerate(report.modes):
        values = [getattr(m.scores, attr) for _, attr in metrics]
        xs = [j + (i - (len(modes) - 1) / 2) * width for j in range(len(metrics))]
        bars = quality.bar(xs, values, width, label=m.mode, color=COLOURS[i % len(COLOURS)])
        quality.bar_label(bars, fmt="%.2f", fontsize=8, padding=2)
    quality.set_xticks(range(len(metrics)), [label for label, _ in metrics])
    quality.set_ylim(0, 1.2)
    quality.set_title(f"Retrieval quality ({report.questions} questions)")
    quality.legend(loc="upper center", ncols=max(1, len(modes)), frameon=False)
    for spot in ("top", "right"):
        quality.spines[spot].set_visible(False)
        latency.spines[spot].set_visible(False)
    for i, (q, shade) in enumerate(((50, 0.9), (95, 0.5))):
        xs = [j + (i - 0.5) * 0.38 for j in range(len(modes))]
        values = [m.latency_ms(q) for m in report.modes]
        bars = latency.bar(xs, values, 0.38, label=f"p{q}", color="0.4", alpha=shade, edgecolor="0.3")
        latency.bar_label(bars, fmt="%.1f", fontsize=8, padding=2)
    latency.set_xticks(range(len(modes)), modes)
    latency.set_ylabel("ms per query")
    latency.set_title("Retrieval latency")
    latency.legend(frameon=False)
    fig.savefig(path, dpi=120)
