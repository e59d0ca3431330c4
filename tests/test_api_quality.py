"""The API with the real embedding model: the right passage comes back, and `asyncrag serve` runs."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from api_support import CORPUS, ingest_corpus, serving, settings_for

from asyncrag.rag import RAG


@pytest.mark.asyncio(loop_scope="module")
async def test_search_and_ask_find_the_founding_year(tmp_path: Path, embedder) -> None:
    settings = settings_for(str(tmp_path / "milvus.db"))
    await ingest_corpus(settings, embedder)
    async with serving(settings, embedder, "none", upload_dir=tmp_path / "up") as (_, client):
        question = "When was the Kestrel Valley Tea Cooperative founded, and by whom?"
        top = (await client.post("/v1/search", json={"query": question, "top_k": 1})).json()["sources"][0]
        assert top["source"].endswith("about.md") and "1987" in top["text"] and "Lindqvist" in top["text"]
        answer = (await client.post("/v1/ask", json={"question": question})).json()
        assert "1987" in answer["answer"] and answer["sources"][0]["source"].endswith("about.md")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_serve(tmp_path: Path, port: int) -> subprocess.Popen[str]:
    """`asyncrag serve` in its own process, with the key "k", up and answering."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASYNCRAG_")}
    env.update(ASYNCRAG_CONFIG="", ASYNCRAG_URI=str(tmp_path / "serve.db"), ASYNCRAG_LLM="none", ASYNCRAG_API_KEY="k")
    command = [sys.executable, "-c", "from asyncrag.cli import app; app()", "serve", "--port", str(port)]
    server = subprocess.Popen(
        [*command, "--upload-dir", str(tmp_path / "up")], env=env, cwd=tmp_path, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                return server
        except httpx.TransportError:
            time.sleep(0.3)
    server.kill()
    raise AssertionError("the server did not start")


def rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(status.split("VmRSS:")[1].split()[0]) / 1024


@pytest.mark.slow
def test_a_200_mb_body_costs_the_server_nothing(tmp_path: Path) -> None:
    """Unauthenticated: 401 before a byte of it is read; with the key: 413 (issue 19: it grew 0.78 → 1.37 GB)."""
    port = free_port()
    server = start_serve(tmp_path, port)
    try:
        before = rss_mb(server.pid)
        url = f"http://127.0.0.1:{port}/v1/search"

        def body() -> Iterator[bytes]:
            for _ in range(200):
                yield b" " * 2**20

        for headers in [{}, {"authorization": "Bearer k"}]:
            try:
                r = httpx.post(url, content=body(), headers={"content-type": "application/json", **headers})
                assert r.status_code == (413 if headers else 401), r.text
            except httpx.TransportError:  # the server answered and closed while the body was still being sent
                pass
            with_length = {"content-type": "application/json", "content-length": str(200 * 2**20), **headers}
            try:
                r = httpx.post(url, content=body(), headers=with_length)
                assert r.status_code == (413 if headers else 401), r.text
            except httpx.TransportError:
                pass
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
        assert rss_mb(server.pid) - before <= 50, (before, rss_mb(server.pid))
    finally:
        server.kill()
        server.wait()


@pytest.mark.slow
def test_serve_command_binds_loopback_and_shuts_down_cleanly(tmp_path: Path) -> None:
    port = free_port()
    server = start_serve(tmp_path, port)
    try:
        assert httpx.get(f"http://127.0.0.1:{port}/v1/stats").status_code == 401
        stats = httpx.get(f"http://127.0.0.1:{port}/v1/stats", headers={"authorization": "Bearer k"}).json()
        assert stats["chunks"] == 0 and stats["embed_model"]  # the collection was made at start
        job = httpx.post(
            f"http://127.0.0.1:{port}/v1/documents",
            files=[("files", ("about.md", (CORPUS / "about.md").read_bytes(), "text/markdown"))],
            headers={"authorization": "Bearer k"},
        ).json()
        server.send_signal(signal.SIGINT)  # a running ingest job finishes before the server stops
        _, stderr = server.communicate(timeout=120)
    finally:
        server.kill()
    assert server.returncode == 0, stderr
    assert f"Uvicorn running on http://127.0.0.1:{port}" in stderr
    assert "Application shutdown complete" in stderr and "Traceback" not in stderr
    assert (tmp_path / "up" / job["id"] / "about.md").is_file()
    with RAG(uri=str(tmp_path / "serve.db"), collection="asyncrag") as rag:  # the job finished before the exit
        assert rag.stats().documents == 1
