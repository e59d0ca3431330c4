"""Chunking: the faster splitter cuts exactly where LlamaIndex's own `SentenceSplitter` cuts."""

from __future__ import annotations

from pathlib import Path

import pytest
from llama_index.core.node_parser import SentenceSplitter
from llama_index.core.schema import Document, MetadataMode

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


def test_chunks_know_their_span_and_markdown_section(embedder: LocalEmbedder) -> None:
    """A reader can check a citation: the span locates the chunk's text in its file, and a
    Markdown chunk names the section it is in."""
    from asyncrag.ingest.chunk import chunk
    from asyncrag.ingest.read import read_file

    path = ROOT / "examples" / "corpus" / "about.md"
    docs = read_file(path, str(path))
    nodes = chunk(make_splitter(ChunkSpec(64, 8, embedder.tokenizer_file)), docs, "about", "v1")
    text = docs[0].text
    assert len(nodes) > 3
    for node in nodes:
        assert text[node.start_char_idx : node.end_char_idx] == node.get_content()
        lines = [*text[: node.start_char_idx].split("\n")[:-1], text[node.start_char_idx :].split("\n", 1)[0]]
        nearest = next(line.lstrip("# ") for line in reversed(lines) if line.startswith("#"))
        assert node.metadata["heading"].split(" › ")[-1] == nearest  # the path of headings, the nearest last
    assert {"History", "Governance"} <= {n.metadata["heading"].split(" › ")[-1] for n in nodes}
    # The section path is embedded with the chunk (API docs rarely name what a paragraph is about),
    # its position and version are not.
    embedded = nodes[-1].get_content(metadata_mode=MetadataMode.EMBED)
    assert f"heading: {nodes[-1].metadata['heading']}\n" in embedded and "version" not in embedded


def test_a_huge_heading_or_name_leaves_the_chunk_its_window(embedder: LocalEmbedder, tmp_path: Path) -> None:
    """Crafted metadata cannot push the chunk's own text out of what the model reads."""
    from asyncrag.ingest.chunk import MAX_HEADING_CHARS, chunk
    from asyncrag.ingest.read import read_file

    path = tmp_path / ("n" * 200 + ".md")
    path.write_text("# " + "Very long title " * 300 + "\n\nThe heron guards the north pond.\n")
    nodes = chunk(make_splitter(ChunkSpec(64, 8, embedder.tokenizer_file)), read_file(path, str(path)), "d", "v1")
    node = nodes[-1]
    assert len(node.metadata["heading"]) == MAX_HEADING_CHARS and node.metadata["heading"].endswith("title")
    assert node.metadata["file_name"] == path.name  # stored (filters use it), not embedded
    embedded = node.get_content(metadata_mode=MetadataMode.EMBED)
    assert "nnnn" not in embedded and len(embedded) < 700 and embedded.endswith("north pond.")


def test_spans_of_a_big_file_read_in_stretches_are_the_files(embedder: LocalEmbedder, tmp_path: Path) -> None:
    """Stretches start mid-file (and bytes are not characters): spans still locate the text in the file."""
    from asyncrag.ingest.parse import Unit, parse, plan

    path = tmp_path / "big.txt"
    paragraphs = [
        f"Paragraph {i}: the café at Ørsted street sold {i} crêpes. Ünïcödé makes bytes ≠ chars." for i in range(300)
    ]
    path.write_bytes(b"\xef\xbb\xbf" + "\n\n".join(paragraphs).encode())  # with a BOM, which the text drops
    units = plan(Unit(path, str(path), "big", "v"), 16, 2000)
    assert len(units) > 5 and units[1].text_offset > 0
    text = path.read_bytes().decode("utf-8-sig")
    nodes = [n for u in units for n in parse(u, ChunkSpec(48, 8, embedder.tokenizer_file))]
    assert len(nodes) > len(units)
    for node in nodes:
        assert text[node.start_char_idx : node.end_char_idx] == node.get_content()
