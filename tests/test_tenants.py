"""Tenants in one collection, and the keys that pick them (issue 20).

The store keeps tenants apart (store/tenants.py): these tests drive the library and the API as
callers would, on Milvus Lite and on the Milvus 2.3.5 server, and check what each tenant sees.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from api_support import serving, settings_for
from llama_index.core.vector_stores.types import VectorStoreQuery
from llama_index.vector_stores.milvus import MilvusVectorStore

from asyncrag.api import auth
from asyncrag.errors import ConfigError, FilterError, StoreError
from asyncrag.rag import AsyncRAG
from asyncrag.store import keys, milvus, tenants
from asyncrag.store.manifest import manifest_name

SECRET = "The cooperative's vault code is {word}, known to {tenant} alone."


@pytest.fixture(params=["lite", pytest.param("server", marks=pytest.mark.server)])
def uri(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "server":
        yield request.getfixturevalue("milvus_server").uri
        return
    path = str(tmp_path / "milvus.db")
    yield path
    milvus.release_lite(path)


def write_secret(folder: Path, tenant: str) -> Path:
    """The same file name in every tenant's folder, holding that tenant's word."""
    path = folder / tenant / "vault.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(SECRET.format(word=f"w{tenant}x", tenant=tenant))
    return path


async def test_each_tenant_sees_and_deletes_only_its_own(uri: str, tmp_path: Path, hash_embedder) -> None:
    collection = f"t_{uuid.uuid4().hex[:10]}"
    shared = tmp_path / "shared.txt"
    shared.write_text("A note every tenant ingests: the kettle whistles at dawn.")
    for tenant in ("acme", "beta"):
        async with AsyncRAG(embedder=hash_embedder, uri=uri, collection=collection, tenant=tenant, llm="none") as rag:
            report = await rag.ingest([write_secret(tmp_path, tenant), shared])
            assert report.ok and report.files == 2
            assert {d.doc_id for d in report.documents} == {str(shared), str(tmp_path / tenant / "vault.txt")}
    async with AsyncRAG(embedder=hash_embedder, uri=uri, collection=collection, llm="none") as whole:
        assert (await whole.stats()).documents == 4  # the same file is two documents: one a tenant
        acme, beta = await whole.for_tenant("acme"), await whole.for_tenant("beta")
        nobody = await whole.for_tenant("nobody")
        for mode in ("dense", "sparse", "hybrid") if (await whole.store()).builtin_sparse else ("dense",):
            hits = await acme.search("vault code wbetax wacmex kettle", k=10, mode=mode)
            assert hits and all("beta" not in h.text for h in hits)
            assert await nobody.search("vault code kettle", k=10, mode=mode) == []
        assert {d.doc_id for d in await acme.documents()} == {str(shared), str(tmp_path / "acme" / "vault.txt")}
        assert (await beta.stats()).documents == 2 and (await nobody.stats()).chunks == 0
        assert await acme.document_text(str(shared)) == ["A note every tenant ingests: the kettle whistles at dawn."]
        assert await nobody.document_text(str(shared)) == []
        # acme deletes its copy of the shared note: beta keeps its own, and nobody can delete another's.
        assert await acme.delete([str(shared)]) == [str(shared)]
        assert await nobody.delete([str(tmp_path / "beta" / "vault.txt")]) == []
        assert {d.doc_id for d in await beta.documents()} == {str(shared), str(tmp_path / "beta" / "vault.txt")}
        assert [h.source for h in await beta.search("kettle whistles", k=5, mode="dense")].count(str(shared)) == 1
        assert (await whole.stats()).documents == 3


async def test_a_filter_cannot_name_the_tenant_field(tmp_path: Path, hash_embedder) -> None:
    uri = str(tmp_path / "milvus.db")
    async with AsyncRAG(embedder=hash_embedder, uri=uri, collection="c", tenant="acme", llm="none") as rag:
        await rag.ingest([write_secret(tmp_path, "acme")])
        for named in (
            'tenant == "beta"',
            'tenant != ""',
            "(tenant like '%')",
            'page > 0 or tenant in ["b"]',
            '$meta["tenant"] == "b"',
        ):
            with pytest.raises(FilterError, match="set by the server"):
                await rag.search("vault", filter=named)
        assert await rag.search("vault", filter='source like "%tenant%"') == []  # a string is not the field
    for bad in ("", "a b", "-lead", "x" * 65, "a/b", 'q"uote'):
        with pytest.raises(ConfigError, match="tenant"):
            AsyncRAG(uri=uri, tenant=bad)
    milvus.release_lite(uri)


def test_the_tenant_field_is_the_partition_key_where_upserts_allow(uri: str, hash_embedder) -> None:
    """The field is the partition key where upserts route by it (Lite); a plain field on Milvus 2.3.5,
    whose upserts misplace such rows (measured: `tenant == "x"` then found nothing)."""
    import asyncio

    collection = f"t_{uuid.uuid4().hex[:10]}"

    async def make() -> None:
        async with AsyncRAG(embedder=hash_embedder, uri=uri, collection=collection, llm="none") as rag:
            await rag.store(create=True)

    asyncio.run(make())
    client = milvus.connect(uri)
    try:
        for name in (collection, manifest_name(collection)):
            (field,) = [f for f in client.describe_collection(name)["fields"] if f["name"] == tenants.FIELD]
            assert field.get("is_partition_key", False) is milvus.server_partition_key_upserts(client), field
    finally:
        client.close()


@pytest.mark.parametrize("bm25", [False, True], ids=["dense", "bm25"])
async def test_reindex_adds_the_tenant_field_to_an_old_collection(tmp_path: Path, hash_embedder, bm25: bool) -> None:
    """A collection from before tenants (with or without BM25, whose output Milvus fills itself)."""
    from llama_index.vector_stores.milvus.utils import BM25BuiltInFunction

    uri = str(tmp_path / "milvus.db")
    sparse = {"enable_sparse": True, "sparse_embedding_function": BM25BuiltInFunction("text", "sparse_embedding")}
    MilvusVectorStore(
        uri=uri, collection_name="old", dim=hash_embedder.dim, embedding_field="embedding", **(sparse if bm25 else {})
    )
    milvus.release_lite(uri)
    async with AsyncRAG(embedder=hash_embedder, uri=uri, collection="old", llm="none") as rag:
        await rag.ingest([write_secret(tmp_path, "old")])
        assert (await rag.store()).builtin_sparse is bm25
    _drop_tenant_field_of_records(uri, "old")
    async with AsyncRAG(embedder=hash_embedder, uri=uri, collection="old", llm="none") as rag:
        assert len(await rag.search("vault", mode="dense")) == 1  # an old collection works as it did
        with pytest.raises(StoreError, match="asyncrag reindex"):
            await rag.for_tenant("acme")
        with pytest.raises(StoreError, match="asyncrag reindex"):
            await AsyncRAG(uri=uri, collection="old", tenant="acme").stats()
        copied = await rag.reindex()
        assert copied == 2  # one chunk and one record
        assert await rag.reindex() is None
        documents = await rag.documents()
    async with AsyncRAG(embedder=hash_embedder, uri=uri, collection="old", llm="none") as rag:
        assert await rag.documents() == documents and len(await rag.search("vault", mode="dense")) == 1
        assert len(await rag.search("vault code", mode="sparse")) == 1
        acme = await rag.for_tenant("acme")
        assert await acme.search("vault", mode="dense") == [] and await acme.documents() == []
        assert (await rag.ingest([tmp_path / "old" / "vault.txt"])).counts()["unchanged"] == 1
    milvus.release_lite(uri)


def _drop_tenant_field_of_records(uri: str, collection: str) -> None:
    """Remake `<collection>__documents` as before tenants (no tenant field), keeping its rows."""
    from pymilvus import DataType

    from asyncrag.store import scan
    from asyncrag.store.indexes import create_indexes

    client = milvus.connect(uri)
    name = manifest_name(collection)
    rows = [row for page in scan.pages(client, name, ["*"]) for row in page]
    client.drop_collection(name)
    schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("doc_id", DataType.VARCHAR, max_length=65_535, is_primary=True)
    for text in ("hash", "fingerprint", "writing"):
        schema.add_field(text, DataType.VARCHAR, max_length=64)
    for number in ("chunks", "size", "mtime_ns"):
        schema.add_field(number, DataType.INT64)
    schema.add_field("source", DataType.VARCHAR, max_length=65_535)
    schema.add_field("updated_at", DataType.DOUBLE)
    schema.add_field("_v", DataType.FLOAT_VECTOR, dim=2)
    index = client.prepare_index_params()
    index.add_index("_v", index_type="FLAT", metric_type="L2")
    client.create_collection(name, schema=schema, consistency_level="Strong")
    create_indexes(client, name, index)
    client.insert(name, [{k: v for k, v in row.items() if k != tenants.FIELD} for row in rows])
    client.close()
    milvus.release_lite(uri)


# -- keys and roles over HTTP -------------------------------------------------------------------------


def make_keys(uri: str, collection: str) -> dict[str, str]:
    client = milvus.connect(uri, create=True)
    try:
        return {
            "acme-reader": keys.add(client, collection, "acme-reader", "reader", "acme"),
            "acme-writer": keys.add(client, collection, "acme-writer", "writer", "acme"),
            "beta-writer": keys.add(client, collection, "beta-writer", "writer", "beta"),
            "admin": keys.add(client, collection, "admin", "admin"),
        }
    finally:
        client.close()


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def upload(client: httpx.AsyncClient, key: str, name: str, text: str) -> httpx.Response:
    import asyncio

    response = await client.post(
        "/v1/documents", files=[("files", (name, text.encode(), "text/plain"))], headers=bearer(key)
    )
    if response.status_code != 202:
        return response
    for _ in range(400):
        job = await client.get(f"/v1/jobs/{response.json()['id']}", headers=bearer(key))
        if job.json()["status"] not in ("queued", "running"):
            assert job.json()["status"] == "done", job.text
            return job
        await asyncio.sleep(0.05)
    raise AssertionError("the job did not finish")


async def test_keys_have_roles_and_tenants(tmp_path: Path, hash_embedder, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = settings_for(str(tmp_path / "milvus.db"), tenant_max_documents=2)
    made = make_keys(settings.uri, settings.collection)
    async with serving(settings, hash_embedder, upload_dir=tmp_path / "up", api_key="env-admin") as (_, client):
        for who in ("acme-writer", "beta-writer"):
            assert (
                await upload(client, made[who], "vault.txt", SECRET.format(word=who, tenant=who))
            ).status_code == 200
        listed = (await client.get("/v1/documents", headers=bearer(made["acme-reader"]))).json()["documents"]
        assert len(listed) == 1
        hits = (
            await client.post(
                "/v1/search", json={"query": "vault code", "top_k": 10}, headers=bearer(made["acme-reader"])
            )
        ).json()["sources"]
        assert [h["text"] for h in hits] == [SECRET.format(word="acme-writer", tenant="acme-writer")]
        # A reader cannot upload or delete; a wrong key is a 401; an admin sees every tenant.
        refused = await upload(client, made["acme-reader"], "x.txt", "words")
        assert refused.status_code == 403 and "writer" in refused.json()["error"]["message"]
        gone = await client.delete(f"/v1/documents/{listed[0]['id']}", headers=bearer(made["acme-reader"]))
        assert gone.status_code == 403
        assert (await client.get("/v1/stats", headers=bearer("ark_wrong"))).status_code == 401
        assert (await client.get("/metrics", headers=bearer(made["acme-writer"]))).status_code == 403
        for admin in (made["admin"], "env-admin"):
            assert (await client.get("/v1/stats", headers=bearer(admin))).json()["documents"] == 2
            assert (await client.get("/metrics", headers=bearer(admin))).status_code == 200
        # An admin may act within a tenant; nobody else may name one.
        named = {**bearer(made["admin"]), auth.TENANT_HEADER: "beta"}
        assert (await client.get("/v1/stats", headers=named)).json()["documents"] == 1
        other = {**bearer(made["acme-writer"]), auth.TENANT_HEADER: "beta"}
        assert (await client.get("/v1/stats", headers=other)).status_code == 403
        for bad in ('b" or tenant != "', "../beta", ""):
            named_badly = await client.get("/v1/stats", headers={**bearer(made["admin"]), auth.TENANT_HEADER: bad})
            assert named_badly.status_code == 400 and "invalid tenant name" in named_badly.text, named_badly.text
        # Quotas: acme has 1 document of 2.
        assert (await upload(client, made["acme-writer"], "b.txt", "second")).status_code == 200
        over = await upload(client, made["acme-writer"], "c.txt", "third")
        assert over.status_code == 403 and over.json()["error"]["type"] == "quota_exceeded", over.text
        assert "quota is 2" in over.json()["error"]["message"]
        # A revoked key stops working once the keys are read again.
        client_ = milvus.connect(settings.uri)
        assert keys.revoke(client_, settings.collection, "acme-reader")
        client_.close()
        monkeypatch.setattr(auth, "REFRESH_S", 0.0)
        assert (await client.get("/v1/stats", headers=bearer(made["acme-reader"]))).status_code == 401
        assert (await client.get("/v1/stats", headers=bearer(made["acme-writer"]))).status_code == 200
    milvus.release_lite(settings.uri)


async def test_without_keys_the_server_is_open_as_before(tmp_path: Path, hash_embedder) -> None:
    settings = settings_for(str(tmp_path / "milvus.db"))
    async with serving(settings, hash_embedder, upload_dir=tmp_path / "up") as (_, client):
        assert (await upload(client, "anything", "a.txt", "open server")).status_code == 200
        assert (await client.get("/v1/stats")).json()["documents"] == 1
        assert (await client.get("/metrics")).status_code == 200
    milvus.release_lite(settings.uri)


def test_keys_store_only_a_hash(tmp_path: Path) -> None:
    uri = str(tmp_path / "milvus.db")
    client = milvus.connect(uri, create=True)
    key = keys.add(client, "c", "alice", "writer", "acme")
    stored = keys.stored(client, "c")
    assert list(stored) == [keys.digest(key)] and stored[keys.digest(key)].tenant == "acme"
    rows = client.query(keys.keys_name("c"), filter="", output_fields=["*"], limit=10)
    assert key not in str(rows)
    with pytest.raises(ConfigError, match="already a key"):
        keys.add(client, "c", "alice", "reader")
    assert keys.revoke(client, "c", "alice") and not keys.revoke(client, "c", "alice")
    assert milvus.collection_names(client) == []  # a collection's keys are not a collection
    client.close()
    milvus.release_lite(uri)


async def test_an_admin_manages_keys_over_http_and_they_work_at_once(tmp_path: Path, hash_embedder) -> None:
    """On Milvus Lite the server holds the database, so `asyncrag keys` cannot reach it: the routes can."""
    settings = settings_for(str(tmp_path / "milvus.db"))
    async with serving(settings, hash_embedder, upload_dir=tmp_path / "up", api_key="root") as (_, client):
        made = await client.post(
            "/v1/keys", json={"name": "carol", "role": "writer", "tenant": "acme"}, headers=bearer("root")
        )
        assert made.status_code == 201 and made.json()["tenant"] == "acme", made.text
        carol = made.json()["key"]
        assert (await upload(client, carol, "a.txt", "Carol's note.")).status_code == 200
        assert (await client.get("/v1/keys", headers=bearer(carol))).status_code == 403
        listed = (await client.get("/v1/keys", headers=bearer("root"))).json()["keys"]
        assert [k["name"] for k in listed] == ["carol"] and "key" not in listed[0]
        assert (await client.delete("/v1/keys/carol", headers=bearer("root"))).status_code == 200
        assert (await client.get("/v1/stats", headers=bearer(carol))).status_code == 401
    milvus.release_lite(settings.uri)


async def test_prune_within_a_tenant_leaves_the_others(tmp_path: Path, hash_embedder) -> None:
    uri = str(tmp_path / "milvus.db")
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "a.txt").write_text("Alpha.")
    (folder / "b.txt").write_text("Beta.")
    for tenant in ("acme", "beta"):
        async with AsyncRAG(embedder=hash_embedder, uri=uri, collection="c", tenant=tenant, llm="none") as rag:
            assert (await rag.ingest([folder])).files == 2
    (folder / "b.txt").unlink()
    async with AsyncRAG(embedder=hash_embedder, uri=uri, collection="c", tenant="acme", llm="none") as rag:
        report = await rag.ingest([folder], prune=True)
        assert [d.doc_id for d in report.documents if str(d.status) == "deleted"] == [str(folder / "b.txt")]
    async with AsyncRAG(embedder=hash_embedder, uri=uri, collection="c", tenant="beta", llm="none") as rag:
        assert len(await rag.documents()) == 2
    milvus.release_lite(uri)


async def test_concurrent_uploads_cannot_pass_a_quota_together(tmp_path: Path, hash_embedder) -> None:
    import asyncio

    settings = settings_for(str(tmp_path / "milvus.db"), tenant_max_documents=3)
    made = make_keys(settings.uri, settings.collection)
    async with serving(settings, hash_embedder, upload_dir=tmp_path / "up") as (_, client):
        posts = [
            client.post(
                "/v1/documents", files=[("files", (f"n{i}.txt", b"a note"))], headers=bearer(made["acme-writer"])
            )
            for i in range(8)
        ]
        statuses = sorted(r.status_code for r in await asyncio.gather(*posts))
        assert statuses == [202] * 3 + [403] * 5
    milvus.release_lite(settings.uri)


async def test_both_defences_hold_on_their_own(tmp_path: Path, hash_embedder) -> None:
    """A tenant's search is filtered by the store, and what it finds is shown only if the tenant's
    own records hold it: each layer alone keeps another tenant's chunks out (the property test
    in test_isolation.py only fails when both are removed)."""
    uri = str(tmp_path / "milvus.db")
    for tenant in ("acme", "beta"):
        async with AsyncRAG(embedder=hash_embedder, uri=uri, collection="c", tenant=tenant, llm="none") as rag:
            await rag.ingest([write_secret(tmp_path, tenant)])
    async with AsyncRAG(embedder=hash_embedder, uri=uri, collection="c", llm="none") as whole:
        acme = await whole.for_tenant("acme")
        collection = await acme.collection()
        assert collection.search_filter("") == 'tenant == "acme"'
        assert collection.search_filter("page > 1") == '(tenant == "acme") and (page > 1)'
        # the records alone: beta's chunks, found by an unfiltered search, are not acme's to show
        store = await whole.store()
        beta_hits = await store.aquery(
            VectorStoreQuery(query_embedding=hash_embedder.embed(["vault"])[0], similarity_top_k=10),
            string_expr='tenant == "beta"',
        )
        assert beta_hits.nodes and await collection.visible(beta_hits.nodes) == [False] * len(beta_hits.nodes)
        assert await (await whole.collection()).visible(beta_hits.nodes) == [True] * len(beta_hits.nodes)
    milvus.release_lite(uri)


def test_serve_warns_of_an_open_server_only_when_no_key_is_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hash_embedder
) -> None:
    import uvicorn
    from conftest import cli_environment
    from typer.testing import CliRunner

    from asyncrag import cli

    env = cli_environment(monkeypatch, tmp_path, hash_embedder)
    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: None)

    def serve() -> str:
        result = CliRunner().invoke(cli.app, ["serve", "--host", "0.0.0.0"], env=env)
        assert result.exit_code == 0, result.output
        return result.stderr

    assert "anyone who can reach it can use it" in serve()
    assert CliRunner().invoke(cli.app, ["keys", "add", "ops", "--role", "admin"], env=env).exit_code == 0
    assert "anyone who can reach it" not in serve()
    milvus.release_lite(env["ASYNCRAG_URI"])
