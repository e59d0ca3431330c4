"""One family of errors: everything a user can act on is an `AsyncRAGError`.

Its message is one line that says what went wrong and what to do. The CLI prints it and exits 2;
any other exception is a bug and is reported as one.

This module also decides what a library's error means: whether waiting can cure it
(`is_transient`, from one table), and how Milvus's errors become a `StoreError`.
It imports neither pymilvus nor openai: parser processes and the CLI import it, and pymilvus
alone takes 0.6 s to import (`python -X importtime`). An error of a library that was never
imported cannot exist, so their types are looked up only once the library is in `sys.modules`.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from enum import Enum


class AsyncRAGError(Exception):
    """A problem the user can fix: bad input, a bad setting, a server that does not answer."""


class ConfigError(AsyncRAGError, ValueError):
    """A setting is invalid; the message names it, where it came from, and what is allowed."""


class StoreError(AsyncRAGError):
    """A Milvus problem: unreachable, a missing collection, a bad filter, a database in use."""


class RunAborted(StoreError):
    """Milvus or the embedding endpoint stayed down: the run stopped; running it again resumes."""


class FilterError(StoreError):
    """A user's filter expression is malformed or names what the collection does not hold."""


class EmbedderError(AsyncRAGError):
    """The embedding model cannot be loaded or its endpoint does not answer."""


class LLMUnavailable(AsyncRAGError):
    """No LLM could be loaded or it failed; the message says how to configure one."""


class QuotaError(AsyncRAGError):
    """A tenant's quota (documents, bytes) would be passed: nothing was stored."""


class ReadError(AsyncRAGError):
    """A file we cannot ingest; the message is the reason shown next to its path."""


class QAFileError(AsyncRAGError, ValueError):
    """An evaluation set (QA JSONL) is unreadable or malformed; the message names the line."""


def one_line(message: str) -> str:
    """A server's multi-line message (Milvus Lite echoes the expression with a caret) as one line."""
    lines = [line.strip() for line in message.splitlines()]
    kept = [line for line in lines if line and set(line) != {"^"}]
    return "; ".join(dict.fromkeys(kept))


@contextmanager
def milvus_errors(what: str = "Milvus error") -> Iterator[None]:
    """Milvus's own errors leave as a StoreError: `what`, then Milvus's message, on one line.

    Errors that deserve their own message (an unreachable server, a locked Milvus Lite database,
    a bad filter) are caught before they get here.
    """
    from pymilvus.exceptions import MilvusException  # imported already wherever Milvus is called

    try:
        yield
    except MilvusException as e:
        raise StoreError(f"{what}: {one_line(e.message)}") from e


# -- what waiting can cure: the one table -------------------------------------------------------
#
# Mostly types (`_transient_types`). Where one type carries many meanings, what it carries says:
# the gRPC status a MilvusException ended with (pymilvus's retry wrapper gives up with it), the
# HTTP status of an OpenAI-compatible endpoint's answer, and, for a Milvus server that reports an
# unavailable service under a numeric code that varies between versions, words of its message.
TRANSIENT_GRPC_STATUSES = frozenset({"UNAVAILABLE", "DEADLINE_EXCEEDED"})
TRANSIENT_HTTP_STATUSES = frozenset({429, *range(500, 600)})  # rate limited, and every server error
TRANSIENT_MILVUS_WORDS = ("unavailable", "deadline")


def _transient_types() -> tuple[type[BaseException], ...]:
    """Types that always mean a lost connection or a timeout: Python's, and pymilvus's and
    openai's once imported (see the module's docstring)."""
    types: list[type[BaseException]] = [ConnectionError, TimeoutError]
    if "pymilvus.exceptions" in sys.modules:
        from pymilvus.exceptions import ConnectError, ConnectionNotExistException, MilvusUnavailableException

        types += [ConnectError, ConnectionNotExistException, MilvusUnavailableException]
    if "openai" in sys.modules:
        from openai import APIConnectionError, APITimeoutError

        types += [APIConnectionError, APITimeoutError]
    return tuple(types)


def _is_milvus_error(error: BaseException) -> bool:
    if "pymilvus.exceptions" not in sys.modules:
        return False
    from pymilvus.exceptions import MilvusException

    return isinstance(error, MilvusException)


def grpc_status(error: BaseException) -> str:
    """The name of the gRPC status a Milvus error ended with ("UNAVAILABLE", "CANCELLED", ...), or ""."""
    code = getattr(error, "code", None) if _is_milvus_error(error) else None
    # pymilvus's own codes are ints (its ErrorCode is an IntEnum); only gRPC's StatusCode is a plain Enum.
    return code.name if isinstance(code, Enum) and not isinstance(code, int) else ""


def http_status(error: BaseException) -> int | None:
    """The HTTP status of an OpenAI-compatible endpoint's error answer; None for any other error."""
    if "openai" not in sys.modules:
        return None
    from openai import APIStatusError

    return error.status_code if isinstance(error, APIStatusError) else None


def is_transient(error: BaseException) -> bool:
    """Whether waiting can cure `error`: a rate limit, an overloaded or restarting server, a lost
    connection, a timeout.

    The ingest pipeline retries these and stops the run when they persist (any other error fails
    its own file only); the store does not bisect a batch that failed with one.
    """
    if isinstance(error, _transient_types()):
        return True
    status = http_status(error)
    if status is not None:
        return status in TRANSIENT_HTTP_STATUSES
    if not _is_milvus_error(error):
        return False
    message = str(getattr(error, "message", "")).lower()
    return grpc_status(error) in TRANSIENT_GRPC_STATUSES or any(w in message for w in TRANSIENT_MILVUS_WORDS)
