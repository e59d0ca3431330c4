"""Checks an LLM's answer must pass before it is presented: it cites its sources with valid [n],
does not repeat itself, and says nothing its cited sources do not contain.

What fails is replaced by the extractive answer (query/extract.py), with the reason given, so a
model's text that cites nothing or loops to its token cap never reaches the user as the answer.
The support check is lexical (a sentence's content words must be in the sources it cites): it
catches invented names and numbers, not a negation flipped with the same words.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

from asyncrag.query.extract import content_words
from asyncrag.results import Source

_CITE = re.compile(r"\[(\d{1,4})\]")
_SENTENCES = re.compile(r"(?<=[.!?])\s+")
# An answer that says the sources lack the answer need not cite them.
_DECLINES = re.compile(r"\b(do(es)? not|don't|doesn't|cannot|can't)\s+(know|contain|say|answer|mention|cover)", re.I)
SUPPORTED = 0.6  # share of a sentence's content words that its cited sources must hold
REPEATED_NGRAM = 4  # words
REPEATS = 3  # the same 4 words this often is a loop


def problems(answer: str, sources: Sequence[Source]) -> list[str]:
    """What is wrong with `answer` as an answer from `sources`; empty when it may be presented."""
    text = answer.strip()
    if not text:
        return ["the answer is empty"]
    found: list[str] = []
    numbers = [int(n) for n in _CITE.findall(text)]
    invalid = sorted({n for n in numbers if not 1 <= n <= len(sources)})
    if invalid:
        found.append(f"it cites {', '.join(f'[{n}]' for n in invalid)}, which are not among its {len(sources)} sources")
    if not numbers and not _DECLINES.search(text):
        found.append("it cites no source")
    if repeats(text):
        found.append("it repeats itself")
    vocabulary = [content_words(s.text) for s in sources]  # each source's words, once per answer
    unsupported = [s for s in _SENTENCES.split(text) if not supported(s, vocabulary)]
    if unsupported:
        found.append(f"it says what its sources do not: {unsupported[0][:80]!r}")
    return found


def repeats(text: str) -> bool:
    words = text.lower().split()
    grams = Counter(tuple(words[i : i + REPEATED_NGRAM]) for i in range(len(words) - REPEATED_NGRAM + 1))
    return bool(grams) and max(grams.values()) >= REPEATS


def supported(sentence: str, vocabulary: Sequence[set[str]]) -> bool:
    """Whether the sources the sentence cites (all of them, when it cites none) hold most of its
    words; `vocabulary` is each source's content words, in source order."""
    words = content_words(_CITE.sub(" ", sentence))
    if len(words) < 3 or _DECLINES.search(sentence):
        return True
    cited = [int(n) for n in _CITE.findall(sentence) if 1 <= int(n) <= len(vocabulary)]
    pool = [vocabulary[n - 1] for n in cited] if cited else list(vocabulary)
    held: set[str] = set().union(*pool)
    return len(words & held) / len(words) >= SUPPORTED
