"""Read one file (or a range of PDF pages) into LlamaIndex `Document`s, or say in words why not.

Runs in parser processes: keep it free of heavy imports and of global state.
"""

from __future__ import annotations

import logging
import re
import zipfile
from pathlib import Path

from llama_index.core.schema import Document

TEXT_SUFFIXES = {".txt", ".md", ".markdown"}
SUFFIXES = TEXT_SUFFIXES | {".pdf", ".html", ".htm", ".docx"}


# pypdf logs what it repairs ("EOF marker not found", ...) as warnings on stderr; failures are reported per file.
logging.getLogger("pypdf").setLevel(logging.ERROR)


class ReadError(Exception):
    """A file we cannot ingest; the message is the reason shown to the user."""


def document(text: str, source: str, page: int | None = None) -> Document:
    metadata: dict = {"source": source, "file_name": Path(source).name}
    if page is not None:
        metadata["page"] = page
    return Document(
        id_=source if page is None else f"{source}#page={page}",  # chunk() points chunks at the file
        text=text,
        metadata=metadata,
        excluded_embed_metadata_keys=["source"],
        excluded_llm_metadata_keys=["source"],
    )


def read_text(path: Path) -> str:
    data = path.read_bytes()
    if b"\x00" in data[:8192]:
        raise ReadError("binary content in a text file (NUL bytes)")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ReadError(
            f"not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start}); convert it, "
            "e.g. `iconv -f latin1 -t utf-8`"
        ) from None
    return text


def read_html(path: Path) -> str:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(read_text(path), "html.parser")
    for tag in soup(["script", "style", "noscript", "template"]):
        tag.decompose()
    root = soup.body or soup
    return re.sub(r"\n\s*\n+", "\n\n", root.get_text("\n")).strip()


def read_docx(path: Path) -> str:
    import docx2txt

    try:
        return docx2txt.process(str(path))
    except (zipfile.BadZipFile, KeyError) as e:
        raise ReadError(f"not a valid .docx file ({e})") from None


def open_pdf(path: Path):
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    try:
        reader = PdfReader(path)
        if reader.is_encrypted and not reader.decrypt(""):
            raise ReadError("encrypted PDF: it needs a password")
        _ = len(reader.pages)
    except ReadError:
        raise
    except (PyPdfError, ValueError, KeyError, TypeError, OSError) as e:
        raise ReadError(f"corrupt or unreadable PDF ({type(e).__name__}: {e})") from None
    return reader


def pdf_page_count(path: Path) -> int:
    return len(open_pdf(path).pages)


def read_pdf_pages(path: Path, source: str, first: int, last: int) -> list[Document]:
    """Pages first..last-1 (0-based) as one Document each, numbered from 1 as people cite them."""
    reader = open_pdf(path)
    docs = []
    for i in range(first, min(last, len(reader.pages))):
        try:
            text = reader.pages[i].extract_text() or ""
        except Exception as e:  # pypdf raises many types on damaged content streams
            raise ReadError(f"cannot extract text from page {i + 1} ({type(e).__name__}: {e})") from None
        if text.strip():
            docs.append(document(text, source, page=i + 1))
    return docs


def read_file(path: Path, source: str) -> list[Document]:
    """A whole non-PDF file as one Document."""
    suffix = path.suffix.lower()
    if suffix in TEXT_SUFFIXES:
        text = read_text(path)
    elif suffix in (".html", ".htm"):
        text = read_html(path)
    elif suffix == ".docx":
        text = read_docx(path)
    else:
        raise ReadError(f"unsupported file type {suffix or '(none)'}")
    if not text.strip():
        raise ReadError("no text in file")
    return [document(text, source)]
