"""Names are data, never code: Milvus expressions built from values, on Milvus Lite and a real server.

The property test ingests files with generated names (quotes, backslashes, newlines, brackets,
`or`/`and`/`not`, Unicode, very long) into a collection that holds other documents, re-ingests and
deletes them, and checks that exactly the intended documents changed.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pymilvus import MilvusClient

from asyncrag.errors import StoreError
from asyncrag.rag import AsyncRAG
from asyncrag.store import expr
from asyncrag.store.milvus import release_lite

ODD = ['"', "'", "\\", "\n", "\t", "]", "[", ")", "(", " or ", " and ", "not ", "doc_id", ", ", "€", "名前", "🦜", "%", "*"]
FILE_STEMS = (
    st.lists(st.one_of(st.sampled_from(ODD), st.text(st.characters(exclude_characters="/\x00", exclude_categories=("Cs",)), max_size=12)), max_size=8)
    .map("".join)
    .filter(lambda s: s.strip() and len(s.encode()) <= 200 and not s.startswith("."))
)


# -- the quoting function ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "written"),
    [
        ('x"] or doc_id not in ["', '"x\\"] or doc_id not in [\\""'),
        ("back\\slash", '"back\\\\slash"'),
        ("new\nline", '"new\\nline"'),
        ("it's", '"it\'s"'),
        ("名前🦜", '"名前🦜"'),
        (7, "7"),
        (-2.5, "-2.5"),
        (True, "true"),
        (["a", 'b"'], '["a", "b\\""]'),
    ],
)
def test_literals(value: object, written: str) -> None:
    assert expr.literal(value) == written  # type: ignore[arg-type]


def test_literals_reject_what_milvus_cannot_read() -> None:
    with pytest.raises(ValueError):
        expr.literal(float("nan"))
    with pytest.raises(ValueError):
        expr.field('doc_id == "x" or id')


def test_all_of_parenthesises_each_part_and_skips_empty_ones() -> None:
    assert expr.all_of("a > 1 or b < 2", "", 'c == "x"') == '(a > 1 or b < 2) and (c == "x")'
    assert expr.all_of("", "a > 1 or b < 2") == "a > 1 or b < 2"
    assert expr.all_of() == ""


@pytest.mark.parametrize(
    "text",
    ['page > 3 and file_name in ["a).pdf", "b"]', "source like \"%uber%\" and (page > 10 or page < 2)", "x == 'a\\'b'", ""],
)
def test_closed_user_filters_pass(text: str) -> None:
    assert expr.user_filter(text) == text.strip()


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ('file_name == "a") or (page > 1', "unmatched ')' at position 17"),
        ("(page > 1", "'(' is never closed"),
        ('file_name == "a', "string literal is not closed"),
        ("page in [1, 2)", "unmatched ')'"),
    ],
)
def test_open_user_filters_are_refused_with_the_bad_part(text: str, says: str) -> None:
    with pytest.raises(StoreError, match="invalid filter") as caught:
        expr.user_filter(text)
    assert says in str(caught.value)


# -- round trips through Milvus ------------------------------------------------------------------------


@pytest.fixture(params=["lite", pytest.param("server", marks=pytest.mark.server)])
def milvus_uri(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if request.param == "server":
        yield request.getfixturevalue("milvus_server").uri
        return
    uri = str(tmp_path_factory.mktemp("expr") / "milvus.db")
    yield uri
    release_lite(uri)


def _documents(uri: str, collection: str) -> dict[str, int]:
    """doc_id -> chunk count, read with Strong consistency."""
    client = MilvusClient(uri=uri)
    try:
        rows = client.query(collection, filter="", output_fields=["doc_id"], limit=16384, consistency_level="Strong")
    finally:
        client.close()
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["doc_id"]] = counts.get(row["doc_id"], 0) + 1
    return counts


@pytest.mark.slow
def test_generated_file_names_change_exactly_their_own_documents(
    milvus_uri: str, hash_embedder: object, tmp_path_factory: pytest.TempPathFactory
) -> None:
    collection = f"names_{uuid.uuid4().hex[:8]}"
    base = tmp_path_factory.mktemp("baseline")
    for name in ("alpha.txt", "beta.md", "gamma.txt"):
        (base / name).write_text(f"{name} is an ordinary document about tea.\n")
    examples = 25 if "://" not in milvus_uri else 8  # a server flush per ingest costs ~1 s

    with asyncio.Runner() as runner:
        rag = AsyncRAG(embedder=hash_embedder, uri=milvus_uri, collection=collection, llm="none", parse_workers=0)  # type: ignore[arg-type]
        assert runner.run(rag.ingest([base])).ok
        baseline = _documents(milvus_uri, collection)
        assert len(baseline) == 3

        @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck))
        @given(stems=st.lists(FILE_STEMS, min_size=1, max_size=3, unique_by=lambda s: s.lower()))
        def check(stems: list[str]) -> None:
            folder = tmp_path_factory.mktemp("names")
            paths = [folder / f"{stem}.txt" for stem in stems]
            for i, path in enumerate(paths):
                path.write_text(f"generated document number {i}\n")
            mine = {str(p) for p in paths}

            report = runner.run(rag.ingest(paths))
            assert report.ok and report.files == len(paths), report.failures
            after = _documents(milvus_uri, collection)
            assert after == {**baseline, **dict.fromkeys(mine, 1)}

            again = runner.run(rag.ingest(paths))  # re-ingest: replaced, not duplicated
            assert again.ok and _documents(milvus_uri, collection) == after

            store = runner.run(rag.store())
            runner.run(store.adelete_documents(sorted(mine)))
            assert _documents(milvus_uri, collection) == baseline

        try:
            check()
        finally:
            runner.run(rag.aclose())


async def test_delete_and_search_by_id_quote_their_ids(milvus_uri: str, hash_embedder: object, tmp_path: Path) -> None:
    """The store's LlamaIndex entry points (delete, doc_ids/node_ids in queries) quote ids too."""
    from llama_index.core.vector_stores.types import VectorStoreQuery

    folder = tmp_path / "docs"
    folder.mkdir()
    crafted = folder / 'x"] or doc_id not in [".txt'
    plain = folder / "plain.txt"
    crafted.write_text("a crafted name\n")
    plain.write_text("a plain name\n")
    collection = f"ids_{uuid.uuid4().hex[:8]}"
    async with AsyncRAG(embedder=hash_embedder, uri=milvus_uri, collection=collection, llm="none") as rag:  # type: ignore[arg-type]
        assert (await rag.ingest([folder])).ok
        store = await rag.store()
        vector = hash_embedder.embed(["a crafted name"])[0]  # type: ignore[attr-defined]
        found = await store.aquery(VectorStoreQuery(query_embedding=vector, similarity_top_k=5, doc_ids=[str(crafted)]))
        assert [n.ref_doc_id for n in found.nodes] == [str(crafted)]
        await store.adelete(str(crafted))
        assert set(_documents(milvus_uri, collection)) == {str(plain)}
        store.delete(str(plain))  # the sync path too
        assert _documents(milvus_uri, collection) == {}
