"""Chunking: the faster splitter cuts exactly where LlamaIndex's own `SentenceSplitter` cuts."""

from __future__ import annotations

from pathlib import Path

import pytest
from llama_index.core.node_parser import SentenceSplitter
from llama_index.core.schema import Document

from asyncrag.embed.local import LocalEmbedder
from asyncrag.ingest.chunk import ChunkSpec, make_splitter

ROOT = Path(__file__).resolve().parents[1]


def texts(shared: Path | None) -> list[str]:
    corpus = [p.read_text() for p in sorted((ROOT / "examples" / "corpus").glob("*.md"))]
    corpus += [
        "word " * 2000,  # one paragraph, far too long, no sentence ends
        "\n\n".join(f"Sentence {i} of a page. " * 30 for i in range(12)),
        "x" * 5000,  # one 'word' of many tokens
        "",
    ]
    if shared is not None:
        corpus.append((shared / "paul_graham_essay.txt").read_text())
    return corpus


@pytest.mark.parametrize("chunk_size,overlap", [(248, 32), (64, 8)])
def test_same_chunks_as_sentence_splitter(embedder: LocalEmbedder, chunk_size: int, overlap: int) -> None:
    shared = ROOT.parent / "shared" / "data"
    spec = ChunkSpec(chunk_size, overlap, embedder.tokenizer_file)
    ours = make_splitter(spec)
    theirs = SentenceSplitter(chunk_size=chunk_size, chunk_overlap=overlap, tokenizer=ours._tokenizer)
    docs = [Document(text=t) for t in texts(shared if shared.is_dir() else None)]
    got = [n.get_content() for n in ours.get_nodes_from_documents(docs)]
    want = [n.get_content() for n in theirs.get_nodes_from_documents(docs)]
    assert len(got) > 20 and got == want


def test_long_texts_are_not_tokenized(embedder: LocalEmbedder) -> None:
    splitter = make_splitter(ChunkSpec(100, 10, embedder.tokenizer_file))
    calls: list[str] = []
    count = splitter._tokenizer
    object.__setattr__(splitter, "_tokenizer", lambda text: calls.append(text) or count(text))
    assert splitter._token_size("word " * 500) == 500  # the word count: a lower bound, > chunk_size
    assert calls == []
    short = "Tokenization, e.g. of hyphenated-words!"
    assert splitter._token_size(short) == len(count(short)) > len(short.split())  # counted exactly
    assert calls == [short]
