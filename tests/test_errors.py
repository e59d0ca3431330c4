"""What errors mean (asyncrag.errors): which are retried, which a batch is bisected for, what Milvus's become."""

from __future__ import annotations

import subprocess
import sys

import grpc
import httpx
import openai
import pytest
from pymilvus.exceptions import (
    ConnectError,
    ConnectionNotExistException,
    DataNotMatchException,
    MilvusException,
    MilvusUnavailableException,
    ParamError,
)

from asyncrag.errors import StoreError, is_transient, milvus_errors
from asyncrag.store.vector_store import _worth_splitting

REQUEST = httpx.Request("POST", "http://endpoint.test/v1/embeddings")


def http_error(status: int) -> openai.APIStatusError:
    return openai.APIStatusError("refused", response=httpx.Response(status, request=REQUEST), body=None)


TRANSIENT = {
    "a refused connection": ConnectionRefusedError(),
    "a timeout": TimeoutError(),
    "an endpoint that does not answer": openai.APIConnectionError(request=REQUEST),
    "an endpoint that answers too slowly": openai.APITimeoutError(request=REQUEST),
    "a rate limit": http_error(429),
    "a server error": http_error(503),
    "no Milvus at the address": ConnectError(message="Fail connecting to server"),
    "a closed Milvus connection": ConnectionNotExistException(),
    "Milvus unavailable": MilvusUnavailableException(),
    "Milvus unavailable, by its gRPC status": MilvusException(code=grpc.StatusCode.UNAVAILABLE, message="retry timeout"),
    "a Milvus deadline, by its gRPC status": MilvusException(code=grpc.StatusCode.DEADLINE_EXCEEDED),
    "Milvus unavailable, in its message": MilvusException(code=2, message="service unavailable: node down"),
}
PERMANENT = {
    "a bug": ValueError("unavailable"),
    "a bad request": http_error(400),
    "an unknown model": http_error(404),
    "a bad parameter": ParamError(message="bad"),
    "a wrong dimension": DataNotMatchException(message="dim 17, expected 16"),
    "an invalid argument": MilvusException(code=grpc.StatusCode.INVALID_ARGUMENT, message="bad filter"),
}


@pytest.mark.parametrize("error", TRANSIENT.values(), ids=TRANSIENT.keys())
def test_what_waiting_can_cure_is_retried_and_not_bisected(error: BaseException) -> None:
    assert is_transient(error)
    assert not _worth_splitting(error)


@pytest.mark.parametrize("error", PERMANENT.values(), ids=PERMANENT.keys())
def test_the_rest_fails_at_once_and_a_batch_is_bisected_to_find_it(error: BaseException) -> None:
    assert not is_transient(error)
    assert _worth_splitting(error)


def test_a_cancelled_request_is_neither_retried_nor_bisected() -> None:
    cancelled = MilvusException(code=grpc.StatusCode.CANCELLED, message="cancelled")
    assert not is_transient(cancelled) and not _worth_splitting(cancelled)


def test_milvus_errors_become_one_line_store_errors() -> None:
    with pytest.raises(StoreError, match=r"^Milvus error: bad expr; name == \(") as raised, milvus_errors():
        raise MilvusException(message="bad expr\nname == (\n        ^\n")
    assert isinstance(raised.value.__cause__, MilvusException)
    with pytest.raises(ValueError), milvus_errors():  # anything else passes through
        raise ValueError("a bug")


def test_importing_errors_imports_neither_pymilvus_nor_openai() -> None:
    code = "import sys, asyncrag.errors; print(sorted({'pymilvus', 'openai'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
