"""Split Documents into chunks that fit the embedding model's window, measured in its own tokens."""

from __future__ import annotations

import bisect
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from llama_index.core.node_parser import SentenceSplitter
from llama_index.core.schema import (
    BaseNode,
    Document,
    MediaResource,
    MetadataMode,
    NodeRelationship,
    RelatedNodeInfo,
    TextNode,
)

from asyncrag.config import OcrEngine
from asyncrag.errors import ConfigError
from asyncrag.ingest.tables import TABLE, read_out

# Room for [CLS]/[SEP] and the "key: value\n\n" glue that LlamaIndex puts around embedded metadata.
RESERVED_TOKENS = 8
# The default chunk: all-MiniLM-L6-v2 was trained on inputs of up to 128 tokens, and on the
# tutorial's data 128-token chunks found the right passage in the top 5 for 87 % of the questions
# (examples/eval/tutorial.jsonl), against 74 % for chunks that fill its 256-token window.
DEFAULT_CHUNK_TOKENS = 128
# Read as Markdown: HTML (ingest/html.py), Office files and EPUB (ingest/office.py, epub.py), data (ingest/data.py).
MARKDOWN_SUFFIXES = (".md", ".markdown", ".html", ".htm", ".docx", ".pptx", ".xlsx", ".epub", ".csv", ".tsv", ".json")
_HEADING = re.compile(r"(#{1,6})[ \t]+(.+?)(?:[ \t]+\{#([^}\s]+)\})?[ \t#]*")
SECTION_SEPARATOR = " › "
# Stored and shown, but neither embedded nor given to the LLM. The heading path is embedded: in API
# documentation a chunk often never names what it describes ("If the data ... is not a valid JSON
# document, a JSONDecodeError will be raised" sits under `json.loads`). With it, dense search on the
# python-doc questions went from hit@5 0.450 / MRR 0.290 to 0.467 / 0.339 (examples/eval/python-doc.jsonl).
HIDDEN_METADATA = ("position", "version", "anchor")
# A heading path is embedded on top of the chunk's tokens: a crafted (or generated) one of
# thousands of characters would push the chunk's own text out of the model's window. Its
# innermost part, the most specific, is kept.
MAX_HEADING_CHARS = 160
_SIGNATURE = re.compile(r"^((?:class |async |exception )?[\w.]+)\(.{12,}\)$")


@dataclass(frozen=True)
class ChunkSpec:
    """Everything a parser process needs to read and chunk exactly as the main process would."""

    chunk_size: int
    chunk_overlap: int
    tokenizer_file: Path | None = None  # None: count tokens with tiktoken
    # The engine that reads scanned pages and images (ingest/ocr.py). Not in the settings'
    # fingerprint: changing it re-reads only the documents that change next, not every one.
    ocr: OcrEngine = "rapidocr"
    pdf_tables: bool = True  # a PDF page's ruled tables as Markdown tables (ingest/pdf_tables.py)


def chunk_spec_for(
    max_tokens: int,
    tokenizer_file: Path | None,
    chunk_size: int | None,
    overlap: int,
    ocr: OcrEngine = "rapidocr",
    pdf_tables: bool = True,
) -> ChunkSpec:
    size = chunk_size or min(DEFAULT_CHUNK_TOKENS, max_tokens - RESERVED_TOKENS)
    if size > max_tokens - RESERVED_TOKENS and tokenizer_file is not None:
        raise ConfigError(
            f"chunk_size {size} exceeds the embedding model's window of {max_tokens} tokens: use at most "
            f"{max_tokens - RESERVED_TOKENS}, or leave it unset to fit the window"
        )
    return ChunkSpec(size, min(overlap, size // 4), tokenizer_file, ocr, pdf_tables)


def node_id(doc_id: str, version: str, unit: int | None, page: int | None, position: int) -> str:
    """Stable ids: the same chunk of the same version of a document gets the same id on every run,
    so a retried or resumed write overwrites instead of duplicating; another version gets other ids."""
    key = f"{doc_id}\x00{version}\x00{unit}\x00{page}\x00{position}"
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def token_counter(tokenizer_file: Path | None) -> Callable[[str], list[int]] | None:
    """The model's tokenizer as a function of text (None: no tokenizer file; tiktoken counts then)."""
    if tokenizer_file is None:
        return None
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tokenizer_file))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return lambda text: tokenizer.encode(text, add_special_tokens=False).ids


class _Splitter(SentenceSplitter):
    """`SentenceSplitter`, without counting the tokens of texts that cannot fit.

    It counts a whole page's tokens before splitting it into sentences and counting those.
    Every word is at least one token, so a text with more words than `chunk_size` is too long
    without counting: it gets its word count, a lower bound that the splitter only compares with
    `chunk_size`. The chunks are the same; parsing the Uber 10-K takes ~30 % less time.
    """

    def _token_size(self, text: str) -> int:
        words = len(text.split())
        return words if words > self.chunk_size else super()._token_size(text)


def make_splitter(spec: ChunkSpec) -> SentenceSplitter:
    return _Splitter.from_defaults(
        chunk_size=spec.chunk_size,
        chunk_overlap=spec.chunk_overlap,
        tokenizer=token_counter(spec.tokenizer_file),
        include_prev_next_rel=False,  # ids are set after splitting; nothing must point at the old ones
    )


class _Headings:
    """The Markdown section each offset of a text is in: the path of headings above it, and the
    nearest anchor on that path (`{#id}` at a heading's end: ingest/html.py writes those).

    Lines in fenced code are not headings (a Python comment starts with `#`). An anchored heading
    may be indented: an API entry nested in another's definition (a method in its class's) is a
    level deeper than its parent. A long signature is shortened to its name, `json.loads(…)`: the
    path is embedded with the chunk, and its parameters would crowd out the chunk's words.
    """

    def __init__(self, text: str) -> None:
        self._starts: list[int] = []
        self._found: list[tuple[str, str | None]] = []
        path: list[tuple[int, str, str | None]] = []  # (level, title, anchor)
        fenced = False
        offset = 0
        for line in text.splitlines(keepends=True):
            start, offset = offset, offset + len(line)
            stripped = line.strip()
            if stripped.startswith("```"):
                fenced = not fenced
                continue
            found = None if fenced else _HEADING.fullmatch(stripped)
            indent = len(line) - len(line.lstrip())
            if found is None or (indent and not found[3]):
                continue
            level = len(found[1]) + indent // 4
            while path and path[-1][0] >= level:
                path.pop()
            path.append((level, _SIGNATURE.sub(r"\1(…)", found[2]), found[3]))
            anchor = next((a for _, _, a in reversed(path) if a), None)
            self._starts.append(start)
            self._found.append((SECTION_SEPARATOR.join(title for _, title, _ in path), anchor))

    def at(self, offset: int) -> tuple[str, str | None] | None:
        """(section path, anchor) at `offset`, or None before the first heading."""
        i = bisect.bisect_right(self._starts, offset) - 1
        return self._found[i] if i >= 0 else None


def embed_text(node: BaseNode) -> str:
    """What the embedding model reads of a chunk: its text with its embedded metadata, where each
    Markdown table is read out row by row ("Revenue: 2019 $13,000; 2020 $11,139.").

    The chunk keeps its table (people, the LLM and BM25 read that); only its vector is of the
    rows read out. Measured on the 10-K's table questions (examples/eval/tables.jsonl), MiniLM
    ranked pipe tables below prose that merely shares their dates; read out, a row says its
    label and each figure's column in one breath (docs/formats.md has the numbers).
    """
    text = node.get_content(metadata_mode=MetadataMode.EMBED)
    return TABLE.sub(_read_aloud, text) if "|" in text else text


def _read_aloud(table: re.Match[str]) -> str:
    stub, rows = read_out(table.group())
    return "\n".join([stub, *rows] if stub else rows) + "\n"


def _split(splitter: SentenceSplitter, doc: Document) -> list[TextNode]:
    """`doc`'s chunks in order: its prose by the splitter, its Markdown tables by rows.

    A table is cut between rows, never inside one, and each piece starts with the table's
    header (its first row and the separator), so that a figure in the 40th row of a statement
    still sits under "| | 2019 | 2020 | 2021 |". A piece's span is its own rows' place in the
    text; the header it repeats is not counted in it.
    """
    nodes: list[TextNode] = []
    at = 0
    for table in TABLE.finditer(doc.text):
        nodes += _prose(splitter, doc, at, table.start())
        nodes += _table(splitter, doc, table.start(), table.group().rstrip("\n"))
        at = table.end()
    return nodes + _prose(splitter, doc, at, len(doc.text))


def _prose(splitter: SentenceSplitter, doc: Document, start: int, end: int) -> list[TextNode]:
    if start == 0 and end == len(doc.text):
        part = doc
    elif not doc.text[start:end].strip():
        return []
    else:
        part = doc.model_copy(update={"text_resource": MediaResource(text=doc.text[start:end])})
    nodes: list[TextNode] = splitter.get_nodes_from_documents([part])  # type: ignore[assignment]
    for node in nodes:
        if start and node.start_char_idx is not None and node.end_char_idx is not None:
            node.start_char_idx += start
            node.end_char_idx += start
    return nodes


def _table(splitter: SentenceSplitter, doc: Document, start: int, text: str) -> list[TextNode]:
    """A table's pieces: each its header and as many rows as fit a chunk beside it and the
    embedded metadata (at least one); a row that does not fit alone is split as prose.

    Measured on the 10-K's 28 table questions (hit@5, hybrid): pieces of a chunk's size, header
    counted, 0.79; the header not counted (twice the rows a piece) 0.68; a row a piece 0.68.
    """
    lines = text.split("\n")
    header = "\n".join(lines[:2])
    tokens = splitter._token_size
    budget = splitter.chunk_size - tokens(doc.get_metadata_str(MetadataMode.EMBED)) - tokens(header)
    nodes: list[TextNode] = []
    rows: list[str] = []
    size = 0
    first = at = start + len(header) + 1  # where the rows of the piece being filled start, and the next row

    def piece() -> None:
        if not rows:
            return
        body = "\n".join(rows)
        node = TextNode(
            text=f"{header}\n{body}",
            metadata=dict(doc.metadata),
            excluded_embed_metadata_keys=list(doc.excluded_embed_metadata_keys),
            excluded_llm_metadata_keys=list(doc.excluded_llm_metadata_keys),
            start_char_idx=start if first == start + len(header) + 1 else first,  # the first piece: with its header
            end_char_idx=first + len(body),
        )
        node.relationships[NodeRelationship.SOURCE] = doc.as_related_node_info()
        nodes.append(node)
        rows.clear()

    for row in lines[2:]:
        row_tokens = tokens(row) + 1
        if rows and size + row_tokens > budget:
            piece()
            first, size = at, 0
        if row_tokens > budget:
            nodes.extend(_prose(splitter, doc, at, at + len(row)))
            at = first = at + len(row) + 1
            continue
        rows.append(row)
        size += row_tokens
        at += len(row) + 1
    piece()
    return nodes


def chunk(
    splitter: SentenceSplitter,
    docs: list[Document],
    doc_id: str,
    version: str,
    unit: int | None = None,
    text_offset: int = 0,
) -> list[BaseNode]:
    """Chunks with stable ids, their document and version, their position (0, 1, ...) within
    their page (or unit of a big file), and where a reader finds them.

    Every chunk's ref_doc_id (Milvus's `doc_id` field) is its document's id, so that deleting a
    document deletes all of its pages' chunks; `version` tells its versions apart. The splitter
    records each chunk's character span in its document; a stretch of a big file starts
    `text_offset` characters into the file, so its spans are moved by that much.
    """
    nodes = [node for doc in docs for node in _split(splitter, doc)]
    headings = {
        doc.doc_id: _Headings(doc.text)
        for doc in docs
        if str(doc.metadata.get("source", "")).lower().endswith(MARKDOWN_SUFFIXES)
    }
    positions: dict[int | None, int] = {}
    for node in nodes:
        page = node.metadata.get("page")
        position = positions[page] = positions.get(page, -1) + 1
        sections = headings.get(node.ref_doc_id or "")
        if sections and node.start_char_idx is not None and (section := sections.at(node.start_char_idx)):
            heading = section[0]  # the stretch's own headings: a section above it is not seen
            if len(heading) > MAX_HEADING_CHARS:
                heading = "…" + heading[-(MAX_HEADING_CHARS - 1) :]
            node.metadata["heading"] = heading
            if section[1]:
                node.metadata["anchor"] = section[1]
        if text_offset and node.start_char_idx is not None and node.end_char_idx is not None:
            node.start_char_idx += text_offset
            node.end_char_idx += text_offset
        node.id_ = node_id(doc_id, version, unit, page, position)
        node.metadata["position"] = position
        node.metadata["version"] = version
        node.relationships[NodeRelationship.SOURCE] = RelatedNodeInfo(node_id=doc_id)
        node.excluded_embed_metadata_keys.extend(HIDDEN_METADATA)
        node.excluded_llm_metadata_keys.extend(HIDDEN_METADATA)
    return list[BaseNode](nodes)
