"""A moved file (issue 21): its stored chunks are copied under its new id, vectors and all, not
embedded again; what is stored afterwards is exactly what a fresh ingest of the new tree stores.

The embedder counts what it embeds (the hash model: vectors are a function of the embedded text,
so a copied vector equals a fresh one exactly); Milvus is real: Lite, and the server where it says so.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import HashEmbedder
from pymilvus import MilvusClient
from test_incremental import CountingEmbedder  # the hash model, counting what it embeds

from asyncrag.ingest.watch import watch
from asyncrag.rag import AsyncRAG
from asyncrag.results import IngestReport, Status
from asyncrag.store import manifest
from asyncrag.store.collection import Collection
from asyncrag.store.milvus import release_lite

COLLECTION = "moves"
WORDS = ["kettle", "teapot", "saucer", "ladle", "whisk", "colander", "skillet", "grater", "sieve", "trivet"]


@pytest.fixture
def uri(tmp_path: Path) -> Iterator[str]:
    path = str(tmp_path / "milvus.db")
    yield path
    release_lite(path)


@pytest.fixture
def tree(tmp_path: Path, make_pdf: Callable[[list[str]], bytes]) -> Path:
    """A small file, a Markdown file, a PDF (pages) and a text file big enough to be read in stretches."""
    root = tmp_path / "tree"
    (root / "notes").mkdir(parents=True)
    (root / "a.txt").write_text("Alpacas graze on the high plains.\n\nThey hum when they are worried.")
    (root / "notes" / "b.md").write_text("# Bees\n\nBees dance to tell the hive where flowers are.\n\n## Wax\n\nWax.")
    (root / "notes" / "c.pdf").write_bytes(make_pdf(["Cormorants dive for fish.", "Herons wait in the reeds."]))
    paragraphs = (f"Paragraph {i}: the {WORDS[i % 10]} sits beside the {WORDS[i * 7 % 10]} number {i}." for i in range(1600))
    (root / "notes" / "big.txt").write_text("\n\n".join(paragraphs))
    assert (root / "notes" / "big.txt").stat().st_size > 64 * 1024  # pipeline.Limits.text_bytes_per_unit
    return root


async def ingest(uri: str, embedder: HashEmbedder, paths: list[Path], **options: Any) -> IngestReport:
    async with AsyncRAG(embedder=embedder, uri=uri, collection=COLLECTION, llm="none", **options.pop("rag", {})) as rag:
        return await rag.ingest(paths, **options)  # type: ignore[arg-type]


def statuses(report: IngestReport) -> dict[str, str]:
    """Each file's status by name; a pruned one's name ends in " (old)"."""
    return {Path(d.path).name + (" (old)" if d.status is Status.DELETED else ""): str(d.status) for d in report.documents}


def stored(uri: str, collection: str = COLLECTION) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """Every chunk row (all fields, vectors and BM25's included) by id, and every record by doc id
    (without its time)."""
    client = MilvusClient(uri)
    try:
        client.load_collection(collection)
        rows = client.query(collection, filter="", output_fields=["*"], limit=16384, consistency_level="Strong")
        name = manifest.manifest_name(collection)
        client.load_collection(name)
        records = client.query(name, filter="", output_fields=["*"], limit=16384, consistency_level="Strong")
    finally:
        client.close()
    chunks = {row["id"]: {k: _plain(v) for k, v in row.items()} for row in rows}
    assert len(chunks) == len(rows), "an id is stored twice"
    return chunks, {r["doc_id"]: {k: v for k, v in r.items() if k not in ("updated_at", "_v")} for r in records}


def _plain(value: Any) -> Any:
    return [float(x) for x in value] if hasattr(value, "__len__") and not isinstance(value, (str, dict)) else value


async def fresh(tmp_path: Path, root: Path) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """What a fresh ingest of `root`, as it is now, stores."""
    uri = str(tmp_path / f"fresh-{uuid.uuid4().hex[:6]}.db")
    report = await ingest(uri, HashEmbedder(), [root])
    assert report.ok
    try:
        return stored(uri)
    finally:
        release_lite(uri)


async def sources(uri: str, words: str) -> set[str]:
    async with AsyncRAG(embedder=HashEmbedder(), uri=uri, collection=COLLECTION, llm="none") as rag:
        return {s.source for s in await rag.search(words, k=50, mode="sparse")}


async def test_moved_files_are_copied_not_embedded_and_end_as_a_fresh_ingest(tree: Path, uri: str, tmp_path: Path) -> None:
    embedder = CountingEmbedder()
    assert (await ingest(uri, embedder, [tree])).counts()["added"] == 4
    embedder.texts.clear()
    (tree / "notes").rename(tree / "kept")  # a folder renamed: every file in it moves
    (tree / "kept" / "deeper").mkdir()
    shutil.move(tree / "a.txt", tree / "kept" / "deeper" / "a.txt")  # a file moved into a subfolder

    report = await ingest(uri, embedder, [tree], prune=True)

    assert embedder.texts == []
    assert statuses(report) == {
        "a.txt": "copied", "b.md": "copied", "c.pdf": "copied", "big.txt": "copied",
        "a.txt (old)": "deleted", "b.md (old)": "deleted", "c.pdf (old)": "deleted", "big.txt (old)": "deleted",
    }
    copied = {d.doc_id: d.copied_from for d in report.documents if d.status is Status.COPIED}
    assert copied[str((tree / "kept" / "deeper" / "a.txt").resolve())] == str((tree / "a.txt").resolve())
    assert report.files == 4 and report.chunks == sum(d.chunks for d in report.documents if d.status is Status.COPIED)
    # Every row (ids, texts, metadata, vectors, BM25's) and record is a fresh ingest's of the new tree.
    chunks, records = stored(uri)
    want_chunks, want_records = await fresh(tmp_path, tree)
    assert chunks.keys() == want_chunks.keys()
    assert chunks == want_chunks
    assert records == want_records
    # Searches find the files under their new names only; running again changes nothing.
    found = await sources(uri, "kettle alpacas bees cormorants herons")
    assert found and all("/kept/" in s for s in found), found
    assert {Path(s).name for s in found} == {"a.txt", "b.md", "c.pdf", "big.txt"}
    again = await ingest(uri, embedder, [tree], prune=True)
    assert set(statuses(again).values()) == {"unchanged"} and embedder.texts == []


async def test_a_new_name_or_an_edit_is_embedded(tree: Path, uri: str, tmp_path: Path) -> None:
    """A file's name is split and embedded with its text (unless too long: ingest/read.py), so a
    renamed file makes other chunks and vectors: it is embedded again, as is a moved, edited one.
    Two names too long to be embedded read alike: that rename is a copy."""
    long_name = "a-report-whose-name-is-far-too-long-to-be-embedded-with-it.txt"
    (tree / long_name).write_text("Ibises probe the mud with curved bills.")
    embedder = CountingEmbedder()
    await ingest(uri, embedder, [tree])
    embedder.texts.clear()
    (tree / "a.txt").rename(tree / "alpacas.txt")
    (tree / "notes" / "b.md").rename(tree / "b.md")
    (tree / "b.md").write_text((tree / "b.md").read_text() + "\n\nDrones do not dance.")
    (tree / long_name).rename(tree / long_name.replace("report", "summary"))

    report = await ingest(uri, embedder, [tree], prune=True)

    names = statuses(report)
    assert (names["alpacas.txt"], names["b.md"], names[long_name.replace("report", "summary")]) == (
        "added", "added", "copied",
    )
    assert {t.split("\n\n")[-1] for t in embedder.texts} >= {"Drones do not dance."}
    assert any("alpacas.txt" in t for t in embedder.texts)
    assert stored(uri) == await fresh(tmp_path, tree)


async def test_two_copies_of_a_file_are_two_documents(tree: Path, uri: str, tmp_path: Path) -> None:
    embedder = CountingEmbedder()
    await ingest(uri, embedder, [tree])
    embedder.texts.clear()
    (tree / "copy").mkdir()
    shutil.copy2(tree / "notes" / "c.pdf", tree / "copy" / "c.pdf")

    report = await ingest(uri, embedder, [tree], prune=True)

    assert statuses(report)["c.pdf"] == "copied" and report.count(Status.UNCHANGED) == 4
    assert embedder.texts == []
    assert stored(uri) == await fresh(tmp_path, tree)
    assert await sources(uri, "cormorants herons") == {str(tree / "notes" / "c.pdf"), str(tree / "copy" / "c.pdf")}


async def test_a_tenant_copies_only_its_own_documents(tmp_path: Path, uri: str) -> None:
    text = "The vault code is 4417."
    for folder in ("acme", "beta", "open"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "vault.txt").write_text(text)
    embedder = CountingEmbedder()
    await ingest(uri, embedder, [tmp_path / "acme"], rag={"tenant": "acme"})
    embedder.texts.clear()
    # Another tenant's file of the same content and name, and one of no tenant: embedded, not copied.
    beta = await ingest(uri, embedder, [tmp_path / "beta"], rag={"tenant": "beta"})
    assert statuses(beta) == {"vault.txt": "added"} and len(embedder.texts) == 1
    none = await ingest(uri, embedder, [tmp_path / "open"])
    assert statuses(none) == {"vault.txt": "added"} and len(embedder.texts) == 2
    # A tenant's own move is a copy, of its own document.
    (tmp_path / "beta" / "sub").mkdir()
    shutil.move(tmp_path / "beta" / "vault.txt", tmp_path / "beta" / "sub" / "vault.txt")
    moved = await ingest(uri, embedder, [tmp_path / "beta"], prune=True, rag={"tenant": "beta"})
    assert statuses(moved) == {"vault.txt": "copied", "vault.txt (old)": "deleted"} and len(embedder.texts) == 2
    assert next(d.copied_from for d in moved.documents) == f"beta::{(tmp_path / 'beta' / 'vault.txt').resolve()}"
    chunks, _ = stored(uri)
    assert sorted((row["tenant"], row["source"]) for row in chunks.values()) == [
        ("", str(tmp_path / "open" / "vault.txt")),
        ("acme", str(tmp_path / "acme" / "vault.txt")),
        ("beta", str(tmp_path / "beta" / "sub" / "vault.txt")),
    ]


async def test_a_copy_keeps_the_write_order_and_a_stopped_one_is_finished(
    tree: Path, uri: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Marked "writing" before its first chunk, complete after its last: a run stopped between the
    two (as by a kill) leaves the copy unseen and its source unpruned, and the next run finishes it."""
    embedder = CountingEmbedder()
    await ingest(uri, embedder, [tree])
    embedder.texts.clear()
    shutil.move(tree / "notes" / "c.pdf", tree / "c.pdf")
    real_put = Collection.put_records
    stopped = asyncio.Event()

    async def put_records(self: Collection, records: list[manifest.DocumentRecord]) -> None:
        if any(r.source == str(tree / "c.pdf") and r.hash and not r.writing for r in records):
            stopped.set()  # the copy's chunks are all written; recording it complete never happens
            await asyncio.Event().wait()
        await real_put(self, records)

    monkeypatch.setattr(Collection, "put_records", put_records)
    run = asyncio.ensure_future(ingest(uri, embedder, [tree], prune=True))
    await asyncio.wait_for(stopped.wait(), 30)
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    monkeypatch.setattr(Collection, "put_records", real_put)
    chunks, records = stored(uri)
    assert records[str((tree / "c.pdf").resolve())]["writing"]  # marked first
    assert sum(row["doc_id"] == str((tree / "c.pdf").resolve()) for row in chunks.values()) == 2  # then written
    assert await sources(uri, "cormorants herons") == {str(tree / "notes" / "c.pdf")}  # but not shown

    again = await ingest(uri, embedder, [tree], prune=True)
    assert statuses(again) == {**dict.fromkeys(["a.txt", "b.md", "big.txt"], "unchanged"),
                               "c.pdf": "copied", "c.pdf (old)": "deleted"}
    assert embedder.texts == []
    assert stored(uri) == await fresh(tmp_path, tree)


async def test_a_watched_move_is_one_run_without_embedding(tmp_path: Path) -> None:
    folder = tmp_path / "watched"
    (folder / "archive").mkdir(parents=True)
    (folder / "plan.md").write_text("# Plan\n\nThe garden gets a pond in spring.")
    uri = str(tmp_path / "milvus.db")
    embedder = CountingEmbedder()
    reports: list[IngestReport] = []
    stop = asyncio.Event()
    async with AsyncRAG(embedder=embedder, uri=uri, collection=COLLECTION, llm="none") as rag:
        task = asyncio.ensure_future(watch(rag, [folder], reports.append, stop))
        while not reports:
            await asyncio.sleep(0.05)
        embedder.texts.clear()
        os.rename(folder / "plan.md", folder / "archive" / "plan.md")
        for _ in range(400):
            if sum(r.count(Status.DELETED) for r in reports) == 1:
                break
            await asyncio.sleep(0.05)
        stop.set()
        await asyncio.wait_for(task, 10)
        found = {s.source for s in await rag.search("garden pond", k=5, mode="sparse")}
    assert [statuses(r) for r in reports[1:]] == [{"plan.md": "copied", "plan.md (old)": "deleted"}]
    assert embedder.texts == [] and found == {str(folder / "archive" / "plan.md")}
    release_lite(uri)


async def test_a_move_on_the_milvus_server(milvus_server: object, tmp_path: Path) -> None:
    """Milvus 2.3.5: dense-only collections, the tenant a plain field."""
    folder = tmp_path / "docs"
    (folder / "old").mkdir(parents=True)
    (folder / "old" / "a.txt").write_text("Alpacas graze on the high plains.")
    uri, collection = milvus_server.uri, f"moves_{uuid.uuid4().hex[:8]}"  # type: ignore[attr-defined]
    embedder = CountingEmbedder()

    async def run() -> IngestReport:
        async with AsyncRAG(embedder=embedder, uri=uri, collection=collection, llm="none") as rag:
            return await rag.ingest([folder], prune=True)

    await run()
    embedder.texts.clear()
    (folder / "old").rename(folder / "new")
    report = await run()
    assert statuses(report) == {"a.txt": "copied", "a.txt (old)": "deleted"} and embedder.texts == []
    async with AsyncRAG(embedder=embedder, uri=uri, collection=collection, llm="none") as rag:
        assert {s.source for s in await rag.search("alpacas", k=5, mode="dense")} == {str(folder / "new" / "a.txt")}
