"""The HTTP API against the real app (lifespan and all) on a real Milvus Lite holding examples/corpus.

The hash embedder keeps these about plumbing: status codes, shapes, limits, auth, SSE framing.
test_api_quality.py asks the real model real questions.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from api_support import BrokenLLM, ScriptedLLM, ingest_corpus, serving, settings_for, sse_events
from fastapi import FastAPI

from asyncrag.api import models as m
from asyncrag.rag import AsyncRAG

CITED = [1]  # what ScriptedLLM's answer cites

pytestmark = pytest.mark.asyncio(loop_scope="module")
ROOT = Path(__file__).resolve().parents[1]
KEY = "s3cret-key"
DOCS_ASSETS = ["favicon.png", "swagger-ui-bundle.js", "swagger-ui.css"]


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("api")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def served(db: Path, hash_embedder) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    settings = settings_for(str(db / "milvus.db"))
    await ingest_corpus(settings, hash_embedder)
    async with serving(settings, hash_embedder, ScriptedLLM(), upload_dir=db / "uploads") as pair:
        yield pair


@pytest.fixture(scope="module")
def app(served) -> FastAPI:
    return served[0]


@pytest.fixture(scope="module")
def client(served) -> httpx.AsyncClient:
    return served[1]


@contextmanager
def options(app: FastAPI, **changes: object) -> Iterator[None]:
    """The running server's ServeOptions changed for one test."""
    server = app.state.server
    saved = server.options
    server.options = dataclasses.replace(saved, **changes)
    try:
        yield
    finally:
        server.options = saved


def error_of(response: httpx.Response, status: int) -> str:
    """The one-line message of an error response, checked for status, shape and no leaks."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"type", "message"}
    message = body["error"]["message"]
    assert "\n" not in message and "Traceback" not in message and "/tmp" not in message and KEY not in message
    return message


# -- health, docs -------------------------------------------------------------------------------


async def test_health_and_readiness(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = (await client.get("/readyz")).json()
    assert ready == {"status": "ready", "collection": "api", "llm": "scripted"}


async def test_openapi_documents_every_endpoint(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    for path in ["/v1/search", "/v1/ask", "/v1/stats", "/v1/documents", "/v1/jobs/{job_id}", "/v1/chat/completions"]:
        assert path in paths
    assert paths["/v1/search"]["post"]["requestBody"]["content"]["application/json"]
    assert "multipart/form-data" in paths["/v1/documents"]["post"]["requestBody"]["content"]


async def test_docs_and_their_assets_are_served_by_the_app_with_no_cdn(app: FastAPI, client: httpx.AsyncClient) -> None:
    with options(app, api_key=KEY):  # like the page's shell they hold no data: open (Swagger UI asks for the key)
        docs = await client.get("/docs")
        assets = sorted(re.findall(r'(?:src|href)="([^"]+)"', docs.text))
        answers = [await client.get(asset) for asset in assets]
    assert docs.status_code == 200 and "://" not in docs.text
    assert "SwaggerUIBundle({" in docs.text and "url: '/openapi.json'" in docs.text
    assert assets == [f"/static/docs/{name}" for name in DOCS_ASSETS]
    assert all(a.status_code == 200 and len(a.content) > 1000 for a in answers)


# -- search -------------------------------------------------------------------------------------


async def test_search_returns_top_k_sources_named_by_document(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/search", json={"query": "tea harvest", "top_k": 4})
    assert r.status_code == 200
    sources = r.json()["sources"]
    assert len(sources) == 4
    assert all(set(s) == {"text", "score", "source", "page", "start", "end", "heading", "anchor", "ocr"} and s["text"] for s in sources)
    assert all(s["source"].startswith(str(Path("examples") / "corpus")) or "corpus" in s["source"] for s in sources)
    assert [s["score"] for s in sources] == sorted((s["score"] for s in sources), reverse=True)


async def test_search_filter(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/search", json={"query": "tea", "top_k": 10, "filter": 'file_name == "faq.html"'})
    names = {Path(s["source"]).name for s in r.json()["sources"]}
    assert names == {"faq.html"}


@pytest.mark.parametrize("bad", ['file_name == "a', "file_name === 3", "a == 1) or (b == 2"])
async def test_bad_filter_is_a_400(client: httpx.AsyncClient, bad: str) -> None:
    message = error_of(await client.post("/v1/search", json={"query": "tea", "filter": bad}), 400)
    assert message.startswith("invalid filter")


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({"query": "x" * (m.QUERY_MAX_CHARS + 1)}, "query"),
        ({"query": ""}, "query"),
        ({"query": "tea", "top_k": 0}, "top_k"),
        ({"query": "tea", "top_k": m.TOP_K_MAX + 1}, "top_k"),
        ({"query": "tea", "top_k": "many"}, "top_k"),
        ({"query": "tea", "topk": 3}, "topk"),
        ({}, "query"),
    ],
)
async def test_search_limits_are_422_naming_the_field(client: httpx.AsyncClient, body: dict, where: str) -> None:
    assert error_of(await client.post("/v1/search", json=body), 422).startswith(f"{where}: ")


async def test_whitespace_query_is_a_400(client: httpx.AsyncClient) -> None:
    assert "empty" in error_of(await client.post("/v1/search", json={"query": "   "}), 400)


async def test_malformed_json_is_a_400(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/search", content=b'{"query": "tea",', headers={"content-type": "application/json"})
    assert error_of(r, 400) == "the request body is not valid JSON"


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
async def test_wrong_content_type_is_a_415(client: httpx.AsyncClient, content_type: str | None) -> None:
    headers = {"content-type": content_type} if content_type else {}
    r = await client.post("/v1/search", content=b'{"query": "tea"}', headers=headers)
    assert "application/json" in error_of(r, 415)


# -- ask ----------------------------------------------------------------------------------------


async def test_ask_json(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/ask", json={"question": "When was it founded?", "top_k": 2})
    body = r.json()
    assert body["answer"] == "".join(ScriptedLLM.tokens).strip()
    assert body["llm"] == {"ok": True, "model": "scripted", "error": None}
    assert len(body["sources"]) == 2 and body["cited"] == [n for n in CITED if n <= 2]


@pytest.mark.parametrize("mode", ["dense", "sparse", "hybrid", "auto"])
async def test_search_in_each_mode(client: httpx.AsyncClient, mode: str) -> None:
    r = await client.post("/v1/search", json={"query": "Lindqvist", "top_k": 3, "mode": mode})
    sources = r.json()["sources"]
    assert r.status_code == 200
    if mode != "dense":  # dense search with the tests' hashing embedder finds nothing in particular
        assert any("Lindqvist" in s["text"] for s in sources)
    # BM25 returns only passages holding a word of the query; the others fill top_k
    assert len(sources) == 3 if mode != "sparse" else all("Lindqvist" in s["text"] for s in sources)


async def test_an_unknown_mode_is_a_422(client: httpx.AsyncClient) -> None:
    assert error_of(await client.post("/v1/search", json={"query": "tea", "mode": "bm25"}), 422).startswith("mode: ")


async def test_ask_stream_is_tokens_then_sources_then_done(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/ask", json={"question": "When was it founded?", "top_k": 3, "stream": True})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = sse_events(r.text)
    names = [name for name, _ in events]
    assert names == ["token"] * len(ScriptedLLM.tokens) + ["sources", "done"]
    assert [data["text"] for _, data in events[:-2]] == list(ScriptedLLM.tokens)
    assert len(events[-2][1]) == 3 and {"text", "source", "page", "score", "start", "end", "heading", "anchor", "ocr"} == set(
        events[-2][1][0]
    )
    assert events[-1][1] == {
        "answer": "".join(ScriptedLLM.tokens).strip(),
        "cited": CITED,
        "method": "generated",
        "llm": {"ok": True, "model": "scripted", "error": None},
    }


async def test_ask_stream_with_a_bad_filter_is_a_400_not_a_stream(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/ask", json={"question": "tea?", "filter": "(", "stream": True})
    assert error_of(r, 400).startswith("invalid filter")


async def test_ask_limits(client: httpx.AsyncClient) -> None:
    assert error_of(await client.post("/v1/ask", json={"question": "q" * 5000}), 422).startswith("question: ")
    assert error_of(await client.post("/v1/ask", json={"question": "tea", "stream": "yes please"}), 422).startswith(
        "stream: "
    )


async def test_a_failing_llm_answer_is_replaced_by_a_quoted_one(tmp_path: Path, hash_embedder) -> None:
    settings = settings_for(str(tmp_path / "milvus.db"))
    await ingest_corpus(settings, hash_embedder)
    async with serving(settings, hash_embedder, BrokenLLM(), upload_dir=tmp_path / "up") as (_, client):
        body = (await client.post("/v1/ask", json={"question": "tea?", "top_k": 2})).json()
        assert body["llm"] == {"ok": False, "model": None, "error": "RuntimeError: the model crashed"}
        assert body["method"] == "extracted" and body["cited"] and "“" in body["answer"]
        events = sse_events((await client.post("/v1/ask", json={"question": "tea?", "stream": True})).text)
        assert [n for n, _ in events] == ["token", "sources", "done"]
        assert events[0][1]["text"] == events[2][1]["answer"] and events[2][1]["llm"]["ok"] is False


async def test_without_an_llm_the_stream_sends_the_quoted_answer_as_one_token(tmp_path: Path, hash_embedder) -> None:
    settings = settings_for(str(tmp_path / "milvus.db"))
    await ingest_corpus(settings, hash_embedder)
    async with serving(settings, hash_embedder, "none", upload_dir=tmp_path / "up") as (_, client):
        assert (await client.get("/readyz")).json()["llm"] is None
        events = sse_events((await client.post("/v1/ask", json={"question": "tea?", "top_k": 1, "stream": True})).text)
        assert [n for n, _ in events] == ["token", "sources", "done"]
        assert events[0][1]["text"] == events[2][1]["answer"] and events[2][1]["cited"] == [1]
        assert events[2][1]["method"] == "extracted"
        assert events[2][1]["llm"] == {"ok": True, "model": None, "error": None}


# -- stats, auth --------------------------------------------------------------------------------


async def test_stats(client: httpx.AsyncClient) -> None:
    stats = (await client.get("/v1/stats")).json()
    assert stats["name"] == "api" and stats["embed_model"] == "test-hash-embedder" and stats["dim"] == 16
    assert stats["documents"] >= 4 and stats["chunks"] >= stats["documents"]


PROTECTED = [
    ("GET", "/readyz", None),
    ("GET", "/v1/stats", None),
    ("POST", "/v1/search", {"query": "tea"}),
    ("POST", "/v1/ask", {"question": "tea?"}),
    ("GET", "/v1/documents", None),
    ("GET", "/v1/jobs/nosuchjob", None),
    ("DELETE", "/v1/documents/nosuchdoc", None),
    ("POST", "/v1/chat/completions", {"messages": [{"role": "user", "content": "tea?"}]}),
    ("GET", "/metrics", None),
]


@pytest.mark.parametrize(("method", "path", "body"), PROTECTED)
async def test_with_a_key_every_endpoint_but_healthz_needs_it(
    app: FastAPI, client: httpx.AsyncClient, method: str, path: str, body: dict | None
) -> None:
    with options(app, api_key=KEY):
        for headers in [{}, {"authorization": "Bearer wrong"}, {"authorization": f"Basic {KEY}"}]:
            r = await client.request(method, path, json=body, headers=headers)
            assert "API key" in error_of(r, 401)
            assert r.headers["www-authenticate"] == "Bearer"
        r = await client.request(method, path, json=body, headers={"authorization": f"Bearer {KEY}"})
        assert r.status_code in (200, 404), r.text  # 404: the job / document does not exist
        assert (await client.get("/healthz")).status_code == 200
    r = await client.request(method, path, json=body)  # no key configured: open
    assert r.status_code in (200, 404)


# -- the guard: host, origin, key before body, body size (api/guard.py) ----------------------------


async def test_only_the_allowed_hosts_are_answered(app: FastAPI, client: httpx.AsyncClient) -> None:
    """DNS rebinding: a page on evil.example resolving to 127.0.0.1 sends Host: evil.example."""
    for host in ["evil.example", "evil.example:8000", "127.0.0.2", ""]:
        assert "Host" in error_of(await client.get("/v1/stats", headers={"host": host}), 400)
    for host in ["localhost:8000", "127.0.0.1", "[::1]:8000"]:
        assert (await client.get("/v1/stats", headers={"host": host})).status_code == 200
    with options(app, allowed_hosts=("rag.example.org",)):
        assert (await client.get("/v1/stats", headers={"host": "rag.example.org"})).status_code == 200
    with options(app, allowed_hosts=("*",)):
        assert (await client.get("/v1/stats", headers={"host": "evil.example"})).status_code == 200


async def test_allowed_hosts_follow_the_bind_address() -> None:
    from asyncrag.api.deps import allowed_hosts

    assert allowed_hosts("127.0.0.1", []) == ("localhost", "127.0.0.1", "::1")
    assert allowed_hosts("10.0.0.5", ["Rag.Example.org", " "]) == (
        "localhost", "127.0.0.1", "::1", "10.0.0.5", "rag.example.org",
    )
    assert allowed_hosts("0.0.0.0", []) == ("*",)
    assert "rag.example.org" in allowed_hosts("0.0.0.0", ["rag.example.org"])


@pytest.mark.parametrize(
    "headers",
    [{"sec-fetch-site": "cross-site"}, {"sec-fetch-site": "same-site"}, {"origin": "http://evil.example"}],
)
async def test_a_state_changing_request_from_another_site_is_refused(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    """Without a key any page could POST a multipart upload (no CORS preflight) to a local server."""
    files = [("files", ("a.txt", b"planted", "text/plain"))]
    assert "another site" in error_of(await client.post("/v1/documents", files=files, headers=headers), 403)
    assert "another site" in error_of(await client.delete("/v1/documents/x.txt", headers=headers), 403)
    search = {"query": "tea"}
    assert "another site" in error_of(await client.post("/v1/search", json=search, headers=headers), 403)
    assert (await client.get("/v1/stats", headers=headers)).status_code == 200  # reading is not refused


async def test_same_origin_pages_and_other_clients_may_change_state(client: httpx.AsyncClient) -> None:
    for headers in [{}, {"sec-fetch-site": "same-origin"}, {"origin": "http://localhost"}, {"sec-fetch-site": "none"}]:
        assert (await client.post("/v1/search", json={"query": "tea"}, headers=headers)).status_code == 200


class _Body:
    """A request body of `mib` MiB sent in 1 MiB pieces with no Content-Length; counts what was read."""

    def __init__(self, mib: int) -> None:
        self.mib, self.sent = mib, 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for _ in range(self.mib):
            self.sent += 1
            yield b" " * 2**20


async def test_a_body_without_the_key_is_refused_before_it_is_read(app: FastAPI, client: httpx.AsyncClient) -> None:
    with options(app, api_key=KEY):
        body = _Body(200)
        r = await client.post("/v1/search", content=body, headers={"content-type": "application/json"})
        assert "API key" in error_of(r, 401)
        assert body.sent <= 1
        length = {"content-type": "application/json", "content-length": str(200 * 2**20)}
        r = await client.post("/v1/chat/completions", content=b"{}", headers=length)  # a lying length: not read
        assert "API key" in error_of(r, 401)


async def test_json_bodies_are_bounded_before_they_are_parsed(app: FastAPI, client: httpx.AsyncClient) -> None:
    messages = [{"role": "user", "content": "tea " * 100}] * 5000  # ~2.5 MB
    assert "1 MiB" in error_of(await client.post("/v1/chat/completions", json={"messages": messages}), 413)
    body = _Body(200)
    r = await client.post("/v1/ask", content=body, headers={"content-type": "application/json"})
    assert "1 MiB" in error_of(r, 413)
    assert body.sent <= 2
    with options(app, max_json_mb=5):
        r = await client.post("/v1/chat/completions", json={"messages": messages[:5]})
        assert r.status_code == 200, r.text


# -- uploads, jobs, documents -------------------------------------------------------------------


async def wait_for(client: httpx.AsyncClient, job_id: str, timeout_s: float = 60) -> dict:
    import asyncio
    import time

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = (await client.get(f"/v1/jobs/{job_id}")).json()
        if job["status"] not in ("queued", "running"):
            return job
        await asyncio.sleep(0.05)
    raise AssertionError(f"job {job_id} still running after {timeout_s} s")


async def test_the_server_searches_with_session_consistency_unless_told(app: FastAPI, db: Path) -> None:
    """Its own uploads are visible to its searches once their job is done (the upload tests below
    find them), without every search waiting for the server's present as Strong does."""
    from asyncrag.api.app import server_settings

    assert (await app.state.server.rag.store()).consistency_level == "Session"
    assert server_settings(settings_for(str(db), consistency_level="Strong")).consistency_level == "Strong"


async def test_upload_stores_good_files_reports_bad_ones_and_never_leaves_the_upload_dir(
    app: FastAPI, client: httpx.AsyncClient, db: Path, make_pdf
) -> None:
    files = [
        ("files", ("notes.txt", b"The heron named Quillon guards the north pond of the estate.", "text/plain")),
        (
            "files",
            ("report.pdf", make_pdf(["The warehouse on Brack Lane stores 40 tonnes of oolong."]), "application/pdf"),
        ),
        ("files", ("broken.pdf", b"%PDF-1.4 this is not really a pdf", "application/pdf")),
        ("files", ("../../etc/passwd", b"root:x:0:0:root:/root:/bin/bash", "text/plain")),
    ]
    r = await client.post("/v1/documents", files=files)
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["status"] in ("queued", "running") and job["files_total"] == 4
    assert job["files"] == [f"{job['id']}/{n}" for n in ["notes.txt", "report.pdf", "broken.pdf", "passwd"]]
    job = await wait_for(client, job["id"])
    assert job["status"] == "done" and job["files_done"] == 4
    assert job["seconds"] > 0 and job["chunks_per_second"] == pytest.approx(job["chunks"] / job["seconds"], rel=0.05)
    assert job["bytes_done"] == job["bytes_total"] > 0 and job["seconds_left"] == 0 and job["current"] is None
    report = job["report"]
    assert report["files"] == 2 and report["chunks"] >= 2
    failed = {f["path"]: f["reason"] for f in report["failures"]}
    assert set(failed) == {f"{job['id']}/broken.pdf", f"{job['id']}/passwd"}
    assert "unsupported file type" in failed[f"{job['id']}/passwd"]
    assert all(str(db) not in reason for reason in failed.values())  # no path of the upload dir

    folder = db / "uploads" / job["id"]
    assert sorted(p.name for p in folder.iterdir()) == [".job.json", "notes.txt", "report.pdf"]  # failures are not kept
    assert not (db / "etc").exists() and not (db / "uploads" / "etc").exists()

    hits = (await client.post("/v1/search", json={"query": "x", "filter": 'file_name == "notes.txt"'})).json()
    assert [s["source"] for s in hits["sources"]] == [f"{job['id']}/notes.txt"]
    assert "Quillon" in hits["sources"][0]["text"]
    pdf = (await client.post("/v1/search", json={"query": "x", "filter": 'file_name == "report.pdf"'})).json()
    assert pdf["sources"][0]["page"] == 1 and "Brack Lane" in pdf["sources"][0]["text"]

    listed = {d["id"]: d for d in (await client.get("/v1/documents")).json()["documents"]}
    assert listed[f"{job['id']}/notes.txt"]["name"] == "notes.txt" and listed[f"{job['id']}/notes.txt"]["chunks"] == 1
    assert not any(str(db) in d for d in listed)  # uploads are listed by their ids, not their paths

    deleted = await client.delete(f"/v1/documents/{job['id']}/notes.txt")
    assert deleted.json() == {"id": f"{job['id']}/notes.txt", "chunks": 1}
    assert not (folder / "notes.txt").exists()
    assert error_of(await client.delete(f"/v1/documents/{job['id']}/notes.txt"), 404)
    gone = (await client.post("/v1/search", json={"query": "x", "filter": 'file_name == "notes.txt"'})).json()
    assert gone["sources"] == []
    assert (await client.get("/healthz")).status_code == 200


async def test_delete_cannot_reach_outside_the_upload_dir(client: httpx.AsyncClient, db: Path) -> None:
    (db / "precious.txt").write_text("keep me")
    error_of(await client.delete("/v1/documents/../precious.txt"), 404)
    error_of(await client.delete("/v1/documents/%2e%2e/precious.txt"), 404)
    error_of(await client.delete("/v1/documents/%00"), 404)
    error_of(await client.delete("/v1/documents/a%00b.txt"), 404)
    assert (db / "precious.txt").read_text() == "keep me"


async def test_a_300_byte_upload_name_is_stored_under_a_shorter_one(client: httpx.AsyncClient, db: Path) -> None:
    name = "茶" * 100 + ".txt"  # 304 bytes of UTF-8: over a file system's 255
    r = await client.post("/v1/documents", files=[("files", (name, "茶园在山上。".encode(), "text/plain"))])
    assert r.status_code == 202, r.text
    job = await wait_for(client, r.json()["id"])
    (stored,) = job["files"]
    assert job["status"] == "done" and job["report"]["files"] == 1, job["report"]["failures"]
    assert stored.endswith(".txt") and stored.split("/")[1].startswith("茶" * 60)
    assert len(stored.split("/")[1].encode()) <= 200
    assert (await client.delete(f"/v1/documents/{stored}")).status_code == 200


async def test_documents_from_the_cli_are_listed_and_deletable_by_their_id(client: httpx.AsyncClient) -> None:
    listed = [d["id"] for d in (await client.get("/v1/documents")).json()["documents"]]
    brewing = next(d for d in listed if d.endswith("brewing-guide.txt"))
    assert (await client.delete(f"/v1/documents/{brewing}")).status_code == 200
    assert brewing not in [d["id"] for d in (await client.get("/v1/documents")).json()["documents"]]


async def test_no_path_of_the_server_reaches_a_client(app: FastAPI, client: httpx.AsyncClient) -> None:
    """CLI-ingested documents' ids are this machine's paths: clients see them relative to the
    source root (the server's folder), else as "…/folder/name", and delete them by that name."""
    question = {"question": "When was the cooperative founded?"}
    seen = [s["source"] for s in (await client.post("/v1/ask", json=question)).json()["sources"]]
    seen += [d["id"] for d in (await client.get("/v1/documents")).json()["documents"]]
    chat = await client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "tea"}]})
    assert seen and not any(s.startswith("/") for s in seen) and str(ROOT) not in chat.text
    assert "examples/corpus/about.md" in seen
    server = app.state.server
    saved, server.source_root = server.source_root, ROOT / "tests"  # the corpus is outside it
    try:
        listed = [d["id"] for d in (await client.get("/v1/documents")).json()["documents"]]
        assert "…/corpus/about.md" in listed
        assert (await client.delete("/v1/documents/…/corpus/none.md")).status_code == 404
    finally:
        server.source_root = saved


async def test_upload_limits(app: FastAPI, client: httpx.AsyncClient) -> None:
    one = [("files", ("a.txt", b"a small file", "text/plain"))]
    with options(app, max_files=2):
        message = error_of(await client.post("/v1/documents", files=one * 3), 400)
        assert "Too many files" in message and "2" in message
    with options(app, max_upload_mb=0.001):
        big = [("files", ("big.txt", b"x" * 2000, "text/plain"))]
        assert "0.001 MiB" in error_of(await client.post("/v1/documents", files=big), 413)
    assert "multipart" in error_of(await client.post("/v1/documents", json={"files": []}), 415)
    r = await client.post("/v1/documents", data={"note": "no files"}, files=[("other", ("a.txt", b"x", "text/plain"))])
    assert "no files" in error_of(r, 400)

    async def chunked() -> AsyncIterator[bytes]:
        yield b"--x\r\n"

    r = await client.post(
        "/v1/documents", content=chunked(), headers={"content-type": "multipart/form-data; boundary=x"}
    )
    assert "Content-Length" in error_of(r, 411)


async def test_unknown_job_is_a_404(client: httpx.AsyncClient) -> None:
    assert "no job" in error_of(await client.get("/v1/jobs/0123456789abcdef"), 404)


# -- OpenAI-compatible chat ---------------------------------------------------------------------


def openai_client(app: FastAPI, api_key: str = "unused"):
    from openai import AsyncOpenAI

    transport = httpx.ASGITransport(app=app)
    return AsyncOpenAI(
        base_url="http://localhost/v1", api_key=api_key, http_client=httpx.AsyncClient(transport=transport)
    )


async def test_openai_client_chats_with_the_collection(app: FastAPI) -> None:
    async with openai_client(app) as ai:
        assert [model.id async for model in ai.models.list()] == ["asyncrag"]
        reply = await ai.chat.completions.create(
            model="asyncrag",
            messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "When was it founded?"}],
            temperature=0.2,
        )
    content = reply.choices[0].message.content
    assert reply.choices[0].finish_reason == "stop" and reply.model == "asyncrag"
    answer, sources = content.split("\n\nSources:\n")
    assert answer == "".join(ScriptedLLM.tokens).strip()
    assert sources.splitlines()[0].startswith("[1] ") and len(sources.splitlines()) == 3  # the server's top_k


async def test_openai_client_streams(app: FastAPI) -> None:
    async with openai_client(app) as ai:
        stream = await ai.chat.completions.create(
            model="asyncrag",
            messages=[{"role": "user", "content": [{"type": "text", "text": "Founded when?"}]}],
            stream=True,
        )
        chunks = [chunk async for chunk in stream]
    pieces = [c.choices[0].delta.content or "" for c in chunks]
    assert pieces[1 : 1 + len(ScriptedLLM.tokens)] == list(ScriptedLLM.tokens)
    assert "".join(pieces).startswith("".join(ScriptedLLM.tokens)) and "\n\nSources:\n[1] " in "".join(pieces)
    assert chunks[-1].choices[0].finish_reason == "stop" and len({c.id for c in chunks}) == 1


async def test_openai_usage_max_tokens_and_checked_fields(app: FastAPI, hash_embedder) -> None:
    from asyncrag.ingest.chunk import token_counter

    async with openai_client(app) as ai:
        ask = {"model": "asyncrag", "messages": [{"role": "user", "content": "When was the cooperative founded?"}]}
        whole = await ai.chat.completions.create(**ask)
        assert whole.usage.prompt_tokens > 0 and whole.usage.completion_tokens > 10
        assert whole.usage.total_tokens == whole.usage.prompt_tokens + whole.usage.completion_tokens
        cut = await ai.chat.completions.create(**ask, max_tokens=5)
        assert cut.choices[0].finish_reason == "length" and 0 < cut.usage.completion_tokens <= 5
        assert whole.choices[0].message.content.startswith(cut.choices[0].message.content)
        stream = await ai.chat.completions.create(**ask, max_completion_tokens=5, stream=True)
        chunks = [c async for c in stream]
        assert chunks[-1].choices[0].finish_reason == "length"
        assert "".join(c.choices[0].delta.content or "" for c in chunks) == cut.choices[0].message.content
    count = token_counter(hash_embedder.tokenizer_file)
    text = cut.choices[0].message.content
    assert cut.usage.completion_tokens == (len(count(text)) if count else len(text.split()))
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://localhost")
    for field, value in [("temperature", 3), ("n", 2), ("max_tokens", 0)]:
        r = await client.post("/v1/chat/completions", json={**ask, field: value})
        assert field in error_of(r, 422)


async def test_openai_client_embeds_with_the_collections_model(app: FastAPI) -> None:
    server = app.state.server
    model = await server.rag.embedder()
    async with openai_client(app) as ai:  # it asks for base64 unless told
        got = await ai.embeddings.create(model="asyncrag", input=["heron", "the north pond"])
        floats = await ai.embeddings.create(model="asyncrag", input="heron", encoding_format="float")
    assert [d.index for d in got.data] == [0, 1] and got.usage.prompt_tokens > 0
    expected = model.embed(["heron", "the north pond"])
    for datum, vector in zip(got.data, expected, strict=True):
        assert datum.embedding == pytest.approx(vector, abs=1e-6)
    assert floats.data[0].embedding == pytest.approx(expected[0], abs=1e-6)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://localhost")
    assert "token ids" in error_of(await client.post("/v1/embeddings", json={"input": [1, 2, 3]}), 400)
    assert "dimensions" in error_of(await client.post("/v1/embeddings", json={"input": "x", "dimensions": 7}), 400)
    assert "at most" in error_of(await client.post("/v1/embeddings", json={"input": ["x"] * 300}), 400)


async def test_an_answer_nobody_waits_for_is_not_written() -> None:
    """A non-streamed /v1/ask or chat whose client went away is cancelled (it generated for ~30 s)."""
    import asyncio

    from asyncrag.api.answers import unless_gone

    class Gone:
        async def is_disconnected(self) -> bool:
            return True

    class Here:
        async def is_disconnected(self) -> bool:
            return False

    cancelled = asyncio.Event()

    async def long_answer() -> str:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "never"

    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(unless_gone(Gone(), long_answer()), 5)  # type: ignore[arg-type]
    assert cancelled.is_set()

    async def quick() -> str:
        await asyncio.sleep(0.3)
        return "done"

    assert await unless_gone(Here(), quick()) == "done"  # type: ignore[arg-type]


async def test_openai_client_sees_errors_and_auth(app: FastAPI) -> None:
    import openai

    async with openai_client(app) as ai:
        with pytest.raises(openai.BadRequestError, match="no user message"):
            await ai.chat.completions.create(model="asyncrag", messages=[{"role": "system", "content": "hi"}])
    with options(app, api_key=KEY):
        async with openai_client(app, api_key="wrong") as ai:
            with pytest.raises(openai.AuthenticationError):
                await ai.chat.completions.create(model="asyncrag", messages=[{"role": "user", "content": "hi"}])
        async with openai_client(app, api_key=KEY) as ai:
            reply = await ai.chat.completions.create(model="asyncrag", messages=[{"role": "user", "content": "hi"}])
            assert reply.choices[0].message.content


# -- metrics ------------------------------------------------------------------------------------


def metric(text: str, prefix: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(prefix))


async def test_metrics_count_requests_by_route_and_ingests(client: httpx.AsyncClient) -> None:
    before = (await client.get("/metrics")).text
    for _ in range(3):
        await client.post("/v1/search", json={"query": "tea"})
    await client.post("/v1/search", json={"query": ""})
    job = (await client.post("/v1/documents", files=[("files", ("m.txt", b"metrics file text", "text/plain"))])).json()
    await wait_for(client, job["id"])
    after = await client.get("/metrics")
    assert after.headers["content-type"].startswith("text/plain")
    ok = 'asyncrag_http_requests_total{method="POST",route="/v1/search",status="200"}'
    bad = 'asyncrag_http_requests_total{method="POST",route="/v1/search",status="422"}'
    assert metric(after.text, ok) - metric(before, ok) == 3
    assert metric(after.text, bad) - metric(before, bad) == 1
    count = 'asyncrag_http_request_seconds_count{method="POST",route="/v1/search"}'
    assert metric(after.text, count) - metric(before, count) == 4
    assert metric(after.text, 'asyncrag_ingest_jobs_total{status="done"}') >= 1
    assert (
        metric(after.text, 'asyncrag_ingest_files_total{result="ok"}')
        - metric(before, 'asyncrag_ingest_files_total{result="ok"}')
        == 1
    )
    assert metric(after.text, "asyncrag_ingest_chunks_total") >= 1
    inserted = 'asyncrag_milvus_batch_size_sum{kind="insert"}'
    assert metric(after.text, inserted) - metric(before, inserted) >= 1  # the upload's chunks


async def test_concurrent_questions_share_embedding_batches_and_searches(client: httpx.AsyncClient) -> None:
    import asyncio

    before = (await client.get("/metrics")).text
    questions = [f"question number {i}" for i in range(40)]
    replies = await asyncio.gather(*(client.post("/v1/search", json={"query": q, "top_k": 1}) for q in questions))
    assert all(r.status_code == 200 and len(r.json()["sources"]) == 1 for r in replies)
    after = (await client.get("/metrics")).text
    calls = metric(after, "asyncrag_embed_batch_size_count") - metric(before, "asyncrag_embed_batch_size_count")
    texts = metric(after, "asyncrag_embed_batch_size_sum") - metric(before, "asyncrag_embed_batch_size_sum")
    assert texts == 40 and calls < 40 / 4, f"{calls} embedding calls for 40 concurrent questions"
    searches = 'asyncrag_milvus_batch_size_count{kind="search"}'
    vectors = 'asyncrag_milvus_batch_size_sum{kind="search"}'
    requests = metric(after, searches) - metric(before, searches)
    assert metric(after, vectors) - metric(before, vectors) == 40
    assert 0 < requests < 40 / 4, f"{requests} Milvus searches for 40 concurrent questions"


async def test_shutdown_finishes_the_running_job_and_cancels_queued_ones(tmp_path: Path, hash_embedder) -> None:
    import time

    class SlowEmbedder(type(hash_embedder)):
        def embed(self, texts: list[str]) -> list[list[float]]:
            time.sleep(0.5)  # in the embedding thread: the job is still running at shutdown
            return super().embed(texts)

    settings = settings_for(str(tmp_path / "milvus.db"))
    upload = [("files", ("a.txt", b"some text to embed slowly", "text/plain"))]
    async with serving(settings, SlowEmbedder(), upload_dir=tmp_path / "up") as (app, client):
        first = (await client.post("/v1/documents", files=upload)).json()
        second = (await client.post("/v1/documents", files=upload)).json()
        assert (tmp_path / "up" / second["id"] / "a.txt").is_file()
    jobs = app.state.server.jobs
    assert jobs.get(first["id"], None).status == "done" and jobs.get(first["id"], None).report.chunks == 1
    assert jobs.get(second["id"], None).status == "cancelled"
    assert [p.name for p in (tmp_path / "up" / second["id"]).iterdir()] == [".job.json"]  # its uploads are gone
    async with serving(settings, hash_embedder, upload_dir=tmp_path / "up") as (app, client):  # after a restart
        assert (await client.get(f"/v1/jobs/{first['id']}")).json()["status"] == "done"
        assert (await client.get(f"/v1/jobs/{second['id']}")).json()["status"] == "cancelled"


async def test_jobs_a_hard_stop_left_are_taken_up_at_start(tmp_path: Path, hash_embedder) -> None:
    """kill -9 leaves a job "running" in its state file, and a folder whose job was never recorded."""
    settings = settings_for(str(tmp_path / "milvus.db"))
    up = tmp_path / "up"
    (up / "0123456789abcdef").mkdir(parents=True)
    (up / "0123456789abcdef" / "heron.txt").write_text("The heron Quillon guards the north pond.")
    running = {"id": "0123456789abcdef", "status": "running", "files": ["0123456789abcdef/heron.txt"],
               "files_total": 1, "chunks": 3}
    (up / "0123456789abcdef" / ".job.json").write_text(json.dumps(running))
    (up / "fedcba9876543210").mkdir()
    (up / "fedcba9876543210" / "orphan.txt").write_text("uploaded, never recorded")
    async with serving(settings, hash_embedder, upload_dir=up) as (_, client):
        job = await wait_for(client, "0123456789abcdef")
        assert job["status"] == "done" and job["report"]["files"] == 1 and job["chunks"] == 1
        assert not (up / "fedcba9876543210").exists()
        listed = (await client.get("/v1/documents")).json()["documents"]
        assert [d["id"] for d in listed] == ["0123456789abcdef/heron.txt"]
        assert json.loads((up / "0123456789abcdef" / ".job.json").read_text())["status"] == "done"


async def test_the_page_and_its_assets_are_served_by_the_app_with_no_cdn(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    with options(app, api_key=KEY):  # the shell holds no data: it loads without the key, then asks for it
        page = await client.get("/")
        assets = [await client.get(path) for path in ("/static/app.js", "/static/style.css")]
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert all(a.status_code == 200 for a in assets)
    for text in [page.text, *(a.text for a in assets)]:
        assert "://" not in text  # every asset comes from this server
    assert 'src="/static/app.js"' in page.text and 'href="/static/style.css"' in page.text


async def test_documents_listed_even_when_their_ids_broke_the_paging(tmp_path: Path, hash_embedder) -> None:
    """The ids pymilvus's query_iterator made an error or an endless loop of (tests/test_data_safety.py),
    ingested by the CLI's library into the collection the server shares, sorted last so that one is a
    page boundary: GET /v1/documents lists every one, at once."""
    from test_data_safety import PAGING_NAMES

    folder = tmp_path / "paging"
    folder.mkdir()
    for i, name in enumerate(PAGING_NAMES):
        (folder / name).write_text(f"document {i}\n")
    settings = settings_for(str(tmp_path / "milvus.db"))
    async with AsyncRAG(settings, embedder=hash_embedder) as rag:
        assert (await rag.ingest([folder], doc_id_prefix="~paging/")).ok
    async with serving(settings, hash_embedder) as (_, client):
        listed = await client.get("/v1/documents")
    assert listed.status_code == 200
    assert sorted(d["id"] for d in listed.json()["documents"]) == sorted(f"~paging/{n}" for n in PAGING_NAMES)


async def test_a_follow_up_is_answered_with_its_conversation(tmp_path: Path, embedder) -> None:
    """/v1/ask's `history` and chat's earlier user messages: a follow-up that points back is searched with them."""
    settings = settings_for(str(tmp_path / "milvus.db"))
    await ingest_corpus(settings, embedder)
    async with serving(settings, embedder, "none", upload_dir=tmp_path / "up") as (app, client):
        first = "How is the Kestrel Valley Tea Cooperative governed?"
        body = (await client.post("/v1/ask", json={"question": "Who chairs its council?", "history": [first]})).json()
        assert body["query"] == f"{first} Who chairs its council?" and body["method"] == "extracted"
        assert "Ilse Okonkwo" in body["answer"] and body["cited"]
        alone = (await client.post("/v1/ask", json={"question": "Who chairs its council?"})).json()
        assert alone["query"] is None
        too_long = await client.post("/v1/ask", json={"question": "q", "history": ["x" * 5000]})
        assert error_of(too_long, 422).startswith("history.0: ")
        async with openai_client(app) as ai:
            reply = await ai.chat.completions.create(
                model="asyncrag",
                messages=[
                    {"role": "user", "content": first},
                    {"role": "assistant", "content": "A council of seven [1]."},
                    {"role": "user", "content": [{"type": "text", "text": "Who chairs its council?"}]},
                ],
            )
    assert "Ilse Okonkwo" in (reply.choices[0].message.content or "")
