"""One family of errors: everything a user can act on is an `AsyncRAGError`.

Its message is one line that says what went wrong and what to do. The CLI prints it and exits 2;
any other exception is a bug and is reported as one.
"""

from __future__ import annotations


class AsyncRAGError(Exception):
    """A problem the user can fix: bad input, a bad setting, a server that does not answer."""


class ConfigError(AsyncRAGError, ValueError):
    """A setting is invalid; the message names it, where it came from, and what is allowed."""


class StoreError(AsyncRAGError):
    """A Milvus problem: unreachable, a missing collection, a bad filter, a database in use."""


class FilterError(StoreError):
    """A user's filter expression is malformed or names what the collection does not hold."""


class EmbedderError(AsyncRAGError):
    """The embedding model cannot be loaded or its endpoint does not answer."""


class LLMUnavailable(AsyncRAGError):
    """No LLM could be loaded or it failed; the message says how to configure one."""


class ReadError(AsyncRAGError):
    """A file we cannot ingest; the message is the reason shown next to its path."""


class QAFileError(AsyncRAGError, ValueError):
    """An evaluation set (QA JSONL) is unreadable or malformed; the message names the line."""


def one_line(message: str) -> str:
    """A server's multi-line message (Milvus Lite echoes the expression with a caret) as one line."""
    lines = [line.strip() for line in message.splitlines()]
    kept = [line for line in lines if line and set(line) != {"^"}]
    return "; ".join(dict.fromkeys(kept))
