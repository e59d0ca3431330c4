"""A follow-up question made standalone before retrieval (the condense-question step of
LlamaIndex's chat engines), by rule: "Does its input need to be sorted?" after "What does
itertools.groupby do?" is searched as both questions together.

A follow-up leans on the conversation when it points back ("it", "its", "that one", ...) or says
too little to search on alone; then the earlier user turns are put before it, the latest last, so
their topic words reach both dense and BM25 search. A question that stands alone is searched
as asked. Measured against the bundled LLM's rewrite and against the last message alone:
docs/architecture.md, "Conversations".
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from asyncrag.query.extract import content_words

_POINTERS = (
    "it its it's itself they them their theirs themselves this that these those he him his she her one ones "
    "there such same former latter above previous aforementioned also too either both another other"
)
POINTERS = frozenset(_POINTERS.split())
ALONE_WORDS = 4  # a question with at least this many content words, and no pointer, stands alone
TURNS = 2  # earlier user turns that may be added


def leans_on_history(question: str) -> bool:
    words = re.findall(r"[a-z']+", question.lower())
    return any(w in POINTERS for w in words) or len(content_words(question)) < ALONE_WORDS


def condense(question: str, history: Sequence[str] = ()) -> str:
    """The query to retrieve with: `question`, or the last `TURNS` user turns and `question`."""
    earlier = [turn.strip() for turn in history if turn.strip()]
    if not earlier or not leans_on_history(question):
        return question
    return " ".join([*earlier[-TURNS:], question])
