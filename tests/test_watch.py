"""`ingest --watch` (ingest/watch.py): a folder kept indexed as it changes (issue 21)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from asyncrag.ingest.watch import watch
from asyncrag.rag import AsyncRAG
from asyncrag.results import IngestReport
from asyncrag.store import milvus


async def until(condition: Callable[[], bool], seconds: float = 20.0) -> float:
    started = time.perf_counter()
    while not condition():
        assert time.perf_counter() - started < seconds, "timed out"
        await asyncio.sleep(0.05)
    return time.perf_counter() - started


@pytest.mark.slow
async def test_a_watched_folder_stays_indexed(tmp_path: Path, hash_embedder) -> None:
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "a.txt").write_text("The kettle is copper.")
    (folder / "b.txt").write_text("The teapot is clay.")
    uri = str(tmp_path / "milvus.db")
    reports: list[IngestReport] = []
    stop = asyncio.Event()
    async with AsyncRAG(embedder=hash_embedder, uri=uri, collection="c", llm="none") as rag:
        task = asyncio.ensure_future(watch(rag, [folder], reports.append, stop))
        await until(lambda: len(reports) == 1)
        assert reports[0].files == 2

        async def texts() -> set[str]:
            return {s.text for s in await rag.search("kettle teapot copper clay steel", k=10, mode="sparse")}

        # an edit: the new text is found, the old is gone, within 2 s (the hash model embeds at once)
        (folder / "a.txt").write_text("The kettle is steel.")
        seconds = await until(lambda: len(reports) == 2)
        assert seconds < 2.0 and reports[1].counts()["updated"] == 1
        assert await texts() == {"The kettle is steel.", "The teapot is clay."}
        # a deletion is pruned
        (folder / "b.txt").unlink()
        await until(lambda: len(reports) == 3)
        assert reports[2].counts()["deleted"] == 1 and await texts() == {"The kettle is steel."}
        # a burst of 300 new files is one run (or a few), and ends where a fresh ingest would
        runs = len(reports)
        for i in range(300):
            (folder / f"n{i:03}.txt").write_text(f"Note {i} about the garden.")
        await until(lambda: sum(r.files for r in reports[runs:]) == 300, seconds=60)
        assert len(reports) - runs <= 3, [r.counts() for r in reports[runs:]]
        watched = {(d.doc_id, d.chunks, d.hash) for d in await rag.documents()}
        stop.set()
        await asyncio.wait_for(task, 10)
    fresh_uri = str(tmp_path / "fresh.db")
    async with AsyncRAG(embedder=hash_embedder, uri=fresh_uri, collection="c", llm="none") as fresh:
        await fresh.ingest([folder])
        assert {(d.doc_id, d.chunks, d.hash) for d in await fresh.documents()} == watched
    milvus.release_lite(uri)
    milvus.release_lite(fresh_uri)


@pytest.mark.slow
def test_ingest_watch_from_the_command_line_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys

    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "a.txt").write_text("The kettle is copper.")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASYNCRAG_")}
    env.update(ASYNCRAG_CONFIG="", ASYNCRAG_URI=str(tmp_path / "rag.db"), ASYNCRAG_LLM="none", PYTHONUNBUFFERED="1")
    command = [sys.executable, "-c", "from asyncrag.cli import app; app()", "ingest", str(folder), "--watch"]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert "1 files, 1 chunks, 0 failures" in proc.stdout.readline()
        (folder / "a.txt").write_text("The kettle is steel, and it whistles.")
        assert ": 1 updated" in proc.stdout.readline()
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr
    assert "stopped watching" in stderr and "Traceback" not in stderr


async def test_serve_watch_keeps_a_folder_indexed_beside_uploads(tmp_path: Path, hash_embedder) -> None:
    from api_support import serving, settings_for

    folder = tmp_path / "shared"
    folder.mkdir()
    (folder / "menu.md").write_text("Today's soup is leek.")
    settings = settings_for(str(tmp_path / "milvus.db"))

    async def found(client: object, words: str) -> list[str]:
        response = await client.post("/v1/search", json={"query": words, "mode": "sparse"})  # type: ignore[attr-defined]
        return [s["text"] for s in response.json()["sources"]]

    async with serving(settings, hash_embedder, upload_dir=tmp_path / "up", watch=(folder,)) as (_, client):
        hits: list[str] = []

        async def sees(words: str, text: str) -> bool:
            hits[:] = await found(client, words)
            return text in hits

        for _ in range(200):
            if await sees("soup leek", "Today's soup is leek."):
                break
            await asyncio.sleep(0.05)
        (folder / "menu.md").write_text("Today's soup is tomato.")
        for _ in range(200):
            if await sees("soup tomato", "Today's soup is tomato."):
                break
            await asyncio.sleep(0.05)
        assert hits == ["Today's soup is tomato."]
    milvus.release_lite(settings.uri)
