"""Shared fixtures. Everything here is real: Milvus Lite, the bundled embedding model."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path

import pytest

from asyncrag.embed.local import LocalEmbedder, load_minilm
from asyncrag.rag import AsyncRAG

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The tutorial's own data, beside the checkout (never copied into the repo)."""
    if not (SHARED_DATA / "paul_graham_essay.txt").is_file():
        pytest.skip(f"../shared/data is absent (looked in {SHARED_DATA})")
    return SHARED_DATA


@pytest.fixture(scope="session")
def embedder() -> LocalEmbedder:
    return load_minilm()


@pytest.fixture
def lite_uri(tmp_path: Path) -> str:
    """A fresh Milvus Lite database for one test."""
    return str(tmp_path / "milvus.db")


@pytest.fixture
async def rag(lite_uri: str, embedder: LocalEmbedder):
    """An AsyncRAG on a fresh Milvus Lite, parsing in threads (no process start-up per test)."""
    async with AsyncRAG(embedder=embedder, uri=lite_uri, collection="test", parse_workers=0, llm="none") as r:
        yield r


@pytest.fixture(scope="session")
def make_pdf() -> Callable[[list[str]], bytes]:
    """examples/make_pdf.py's writer: text PDFs made on the fly."""
    spec = importlib.util.spec_from_file_location("make_pdf", ROOT / "examples" / "make_pdf.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module.make_pdf


# -- a real Milvus server (issue 3) ------------------------------------------------------------


@pytest.fixture(scope="session")
def milvus_server():
    """A real Milvus 2.3.5 standalone (the PyPI `milvus` package), once per session.

    It runs on 127.0.0.1 with free ports and a fresh data dir, and is killed at the end.
    Skipped when the package is not installed; when it is installed but the server cannot
    start, skipped too, unless ASYNCRAG_REQUIRE_MILVUS_SERVER=1 (CI) makes that a failure.
    """
    import os

    from asyncrag.testing import MilvusServer, MilvusServerError, milvus_package_available

    if not milvus_package_available():
        pytest.skip("the `milvus` package (Milvus 2.3.5 standalone) is not installed")
    try:
        server = MilvusServer().start()
    except MilvusServerError as e:
        if os.environ.get("ASYNCRAG_REQUIRE_MILVUS_SERVER") == "1":
            pytest.fail(f"could not start Milvus: {e}")
        pytest.skip(f"could not start Milvus: {e}")
    yield server
    server.stop()
