"""An extractive answer: the sentences of the retrieved passages that best answer the question,
quoted verbatim and cited [n].

Why: the bundled LLM (SmolLM2-135M) paraphrases its sources wrongly, repeats itself to the token
cap and cites nothing (issue 17: 0 of 5 right on Python's docs). A quoted sentence cannot
contradict its source, and costs one embedding batch (~0.1 s on 2 cores) instead of minutes of
generation. Sentences are scored by the embedding model (the question against each sentence,
read under its section's heading) plus the share of the question's words they contain; a best score
under `ANSWER_FLOOR` says the sources do not answer the question.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from asyncrag.embed import Embedder
from asyncrag.ingest.chunk import SECTION_SEPARATOR
from asyncrag.ingest.tables import TABLE, read_out
from asyncrag.results import Source

# The weights were chosen on the tuning halves of examples/eval/tutorial.jsonl and python-doc.jsonl
# (answers correct on their other halves: 0.565 and 0.467; docs/architecture.md, "Answers"). The
# floor was set by hand: no question set has unanswerable questions yet.
LEXICAL_WEIGHT = 0.15  # the share of the question's content words a sentence holds
RANK_WEIGHT = 0.05  # a sentence of the first source over one of the fifth
ANSWER_FLOOR = 0.35  # below this best score the sources do not answer the question
MAX_SENTENCES = 2
SECOND_WITHIN = 0.08  # a second sentence only when it scores nearly as well as the first
MAX_CHARS = 700
PASSAGE_CHARS = 300
NOT_FOUND = "The sources do not seem to answer this."

_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_ANCHOR = re.compile(r"[ \t]*\{#[^}\s]+\}")
_HEADING_MARK = re.compile(r"^#{1,6}[ \t]+", re.M)
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[`*_]*[A-Z0-9])")
_WORD = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.]*[A-Za-z0-9_]|[A-Za-z0-9]")
_STOPWORDS = (
    "a about an and are as at be by can could did do does doing for from how i if in into is it its me my "
    "of on or should so than that the their them then there these they this those to was we what when where "
    "which while who whom why will with would you your use used using get"
)
STOPWORDS = frozenset(_STOPWORDS.split())


@dataclass(frozen=True)
class Sentence:
    text: str  # as shown: links as their text, no heading marks or {#anchors}
    source: int  # 1-based: the [n] it cites
    context: str  # what is embedded: the section's last heading, then the sentence


def clean(text: str) -> str:
    """Markdown as a reader would quote it: links as their text, no {#anchor} or # marks."""
    text = _ANCHOR.sub("", _LINK.sub(r"\1", text))
    return _HEADING_MARK.sub("", text)


def split_sentences(text: str) -> list[str]:
    """Whole prose sentences of a chunk. Not answers: headings, tables, code, and the fragments a
    chunk's edges cut (a sentence must start like one and end with . ! ? or :). A sentence that
    introduces a short code block ("... the idiom is:") takes the code with it."""
    out: list[str] = []
    for part in re.split(r"(^```.*?^```[ \t]*$)", text, flags=re.S | re.M):
        if part.startswith("```"):
            code = [ln.strip() for ln in part.splitlines()[1:-1] if ln.strip()]
            if out and out[-1].endswith(":") and code and len(code) <= 3 and sum(map(len, code)) <= 160:
                out[-1] += " `" + "".join(ln + (" " if ln.endswith(":") else "; ") for ln in code).rstrip("; ") + "`"
            continue
        part = part.split("```")[-1 if part.count("```") % 2 else 0]  # an edge inside code: keep the prose side
        for block in re.split(r"\n\s*\n", part):
            lines = [ln.strip() for ln in block.splitlines() if ln.strip()]
            if not lines or any(ln.startswith(("#", "|", ">>>", "...", "$ ")) for ln in lines[:1]):
                continue
            flat = " ".join(ln.lstrip(":*-+> ").strip() for ln in lines)
            out.extend(p.strip() for p in _SENTENCE_END.split(clean(flat)) if _is_sentence(p.strip()))
    return out


def _is_sentence(text: str) -> bool:
    letters = sum(c.isalpha() or c.isspace() for c in text)
    starts = text[:1].isupper() or text[:1].isdigit() or text[:1] in "`\"'(*_"
    ends = text.endswith((".", "!", "?", ":"))
    return starts and ends and len(_WORD.findall(text)) >= 4 and letters >= 0.75 * len(text)


def content_words(text: str) -> set[str]:
    return {w.lower().strip("._") for w in _WORD.findall(text)} - STOPWORDS - {""}


def table_rows(text: str) -> list[tuple[str, str]]:
    """A chunk's table rows that hold figures, read out under their column heads, with the table's
    title: (the row as quoted, what is embedded). A figure in a table answers as well as a
    sentence does ("North: 2024 5,010."), and a table has no sentences to quote."""
    rows = []
    for table in TABLE.finditer(text):
        stub, lines = read_out(table.group())
        rows += [(line, f"{stub}: {line}" if stub else line) for line in lines if ": " in line]  # with figures
    return rows


def candidates(sources: Sequence[Source]) -> list[Sentence]:
    """Each sentence (and table row) once, cited to the first source that holds it (overlapping
    chunks share some)."""
    found: dict[str, Sentence] = {}
    for n, source in enumerate(sources, 1):
        heading = clean((source.heading or "").split(SECTION_SEPARATOR)[-1])
        quoted = [(text, text) for text in split_sentences(source.text)] + table_rows(source.text)
        for text, context in quoted:
            found.setdefault(" ".join(text.split()), Sentence(text, n, f"{heading}: {context}" if heading else context))
    return list(found.values())


def _cosine(a: Sequence[float], b: Sequence[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return dot / norm if norm else 0.0


def score(question: str, asked: Sequence[Sequence[float]], sentence: Sentence, vector: Sequence[float]) -> float:
    """Closeness to what was asked (the mean over `asked`: the question, and a follow-up's topic),
    plus the share of the question's own words the sentence holds, less a little for a later source."""
    words = content_words(question)
    overlap = len(words & content_words(sentence.context)) / len(words) if words else 0.0
    closeness = sum(_cosine(a, vector) for a in asked) / len(asked)
    return closeness + LEXICAL_WEIGHT * overlap - RANK_WEIGHT * (sentence.source - 1) / 4


@dataclass(frozen=True)
class Extract:
    answer: str
    found: bool  # False: the best sentence scored under ANSWER_FLOOR
    best: float


def extract(question: str, sources: Sequence[Source], embedder: Embedder, topic: str | None = None) -> Extract:
    """Blocking (it embeds): run it off the event loop. `topic` is a follow-up's standalone query:
    sentences are then judged half by it ("groupby ... sorted?"), half by the bare question."""
    sentences = candidates(sources)
    if not sentences:  # tables, code, fragments: no whole sentence to quote, so the best passage
        if not sources:
            return Extract(NOT_FOUND, False, 0.0)
        passage = " ".join(clean(sources[0].text).split())
        cut = passage if len(passage) <= PASSAGE_CHARS else passage[:PASSAGE_CHARS].rsplit(" ", 1)[0] + " …"
        return Extract(f"No sentence of the sources answers this directly; the best passage: “{cut}” [1]", False, 0.0)
    asking = [question, topic] if topic else [question]
    vectors = embedder.embed([*asking, *(s.context for s in sentences)])
    asked, found = vectors[: len(asking)], vectors[len(asking) :]
    scores = [score(question, asked, s, v) for s, v in zip(sentences, found, strict=True)]
    order = sorted(range(len(sentences)), key=lambda i: -scores[i])  # stable: ties keep the sources' order
    best = scores[order[0]]
    chosen = [sentences[order[0]]]
    if best < ANSWER_FLOOR:
        return Extract(f"{NOT_FOUND} The closest passage says: “{chosen[0].text}” [{chosen[0].source}]", False, best)
    for i in order[1:]:
        value, sentence = scores[i], sentences[i]
        if len(chosen) >= MAX_SENTENCES or best - value > SECOND_WITHIN:
            break
        if sum(len(s.text) for s in chosen) + len(sentence.text) <= MAX_CHARS:
            chosen.append(sentence)
    return Extract(" ".join(f"“{s.text}” [{s.source}]" for s in chosen), True, best)
