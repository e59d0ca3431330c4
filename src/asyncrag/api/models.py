"""The HTTP API's request and response bodies; their constraints are the API's documented limits."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from asyncrag.config import TOP_K_MAX, SearchMode

QUERY_MAX_CHARS = 2000  # a question, not a document: longer input is a client's mistake
FILTER_MAX_CHARS = 2000
MODE_HELP = "dense | sparse (BM25) | hybrid | auto (hybrid where the collection has BM25); default: the server's"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelled field is an error, not silently ignored


class SearchRequest(_Strict):
    query: str = Field(min_length=1, max_length=QUERY_MAX_CHARS, examples=["When was the cooperative founded?"])
    top_k: int | None = Field(None, ge=1, le=TOP_K_MAX, description="default: the server's top_k setting")
    filter: str = Field("", max_length=FILTER_MAX_CHARS, examples=['file_name == "about.md"'])
    mode: SearchMode | None = Field(None, description=MODE_HELP)


class AskRequest(_Strict):
    question: str = Field(min_length=1, max_length=QUERY_MAX_CHARS, examples=["Who founded the cooperative?"])
    top_k: int | None = Field(None, ge=1, le=TOP_K_MAX)
    filter: str = Field("", max_length=FILTER_MAX_CHARS)
    mode: SearchMode | None = Field(None, description=MODE_HELP)
    stream: bool = Field(False, description="Server-Sent Events: `token`s, then `sources`, then `done`")


class SourceOut(BaseModel):
    text: str
    score: float
    source: str = Field(description="the document id (for uploads: JOB_ID/FILE_NAME)")
    page: int | None = Field(None, description="PDF page, from 1")
    start: int | None = Field(None, description="where the passage starts in its page's (or file's) text")
    end: int | None = Field(None, description="where it ends (exclusive)")
    heading: str | None = Field(None, description="the path of headings it is under (Markdown, HTML), ' › ' between")
    anchor: str | None = Field(None, description="the nearest id on that path: SOURCE#ANCHOR opens an HTML page there")


class SearchResponse(BaseModel):
    sources: list[SourceOut]


class LLMStatus(BaseModel):
    ok: bool = Field(description="false when the LLM failed and the answer is the retrieved passages")
    model: str | None = Field(description="the model that wrote the answer; null: the passages themselves")
    error: str | None = None


class AskResponse(BaseModel):
    answer: str
    cited: list[int] = Field(description="the [n] the answer cites; n maps to sources[n - 1]")
    sources: list[SourceOut]
    llm: LLMStatus


class Stats(BaseModel):
    name: str
    documents: int
    chunks: int
    embed_model: str | None
    dim: int | None
    bm25: bool = Field(description="whether sparse and hybrid search work on this collection")


class ErrorBody(BaseModel):
    type: str
    message: str


class ErrorResponse(BaseModel):
    """Every error, in the shape OpenAI's clients read."""

    error: ErrorBody


class FailureOut(BaseModel):
    path: str
    reason: str


class IngestReportOut(BaseModel):
    files: int
    chunks: int
    seconds: float
    chunks_per_second: float
    failures: list[FailureOut]


class Job(BaseModel):
    id: str
    status: Literal["queued", "running", "done", "failed", "cancelled"]
    files: list[str] = Field(description="the uploaded files' document ids")
    files_done: int = 0
    files_total: int = 0
    chunks: int = 0
    report: IngestReportOut | None = None
    error: str | None = None


class Document(BaseModel):
    id: str = Field(description="use in DELETE /v1/documents/{id}")
    name: str
    chunks: int


class DocumentList(BaseModel):
    documents: list[Document]


class Deleted(BaseModel):
    id: str
    chunks: int
